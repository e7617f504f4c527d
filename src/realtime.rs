//! Real-time work: users and groups named by change notifications or a delta round.
//!
//! A notification carries only an id, so each user is re-read from Graph and planned exactly as
//! the initial sync plans it; ZenQMS is searched for that user only (by external_id and email),
//! never loaded whole. A group change recomputes the holders of the roles mapped to it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::apply::Applier;
use crate::config::{Config, RoleMapping};
use crate::entra::EntraUser;
use crate::failure::Failure;
use crate::graph::Graph;
use crate::log::Log;
use crate::plan::{self, Directory, Planned};
use crate::platform::Platform;
use crate::roles;
use crate::state::Queue;
use crate::zenqms::{Zenqms, api};

/// Users handled per round of requests.
const USER_CHUNK: usize = 20;

pub struct Realtime<'a> {
    platform: &'a dyn Platform,
    config: &'a Config,
    graph: &'a Graph<'a>,
    pub out: Applier<'a>,
}

impl<'a> Realtime<'a> {
    pub fn new(
        platform: &'a dyn Platform,
        config: &'a Config,
        graph: &'a Graph<'a>,
        cause: &str,
    ) -> Self {
        let out = Applier::new(
            Zenqms::new(platform, config),
            Log::new(platform),
            cause,
            Directory::default(),
        );
        let mut out = out;
        out.dry_run = config.dry_run;
        Realtime {
            platform,
            config,
            graph,
            out,
        }
    }

    /// Works through the queue until it is empty (true) or the budget would run out (false).
    /// The queue only loses an item once its work is done, so a failure or a pause repeats
    /// nothing that finished and skips nothing that did not.
    pub fn run_queue(&mut self, queue: &mut Queue, budget_ms: u64) -> Result<bool, Failure> {
        let mut longest = 0u64;
        let mut steps = 0u32;
        while !queue.is_empty() {
            let start = self.platform.elapsed_ms();
            if steps > 0 && start + longest > budget_ms {
                return Ok(false);
            }
            if queue.users.is_empty() {
                let groups = queue.groups.clone();
                self.sync_groups(&groups)?;
                queue.groups.clear();
            } else {
                let n = queue.users.len().min(USER_CHUNK);
                let chunk: Vec<String> = queue.users[..n].to_vec();
                self.sync_users(&chunk)?;
                queue.users.drain(..n);
            }
            steps += 1;
            longest = longest.max(self.platform.elapsed_ms() - start);
        }
        Ok(true)
    }

    /// Re-reads users and brings their ZenQMS account and mapped roles in line.
    pub fn sync_users(&mut self, ids: &[String]) -> Result<(), Failure> {
        let mapped = self.config.mapped_groups();
        // Round 1: each user from Graph, its ZenQMS account by external_id, its mapped groups.
        let mut reqs = self.graph.user_requests(ids)?;
        for id in ids {
            reqs.push(
                self.out
                    .zen
                    .request(&api::search_users(json!({ "external_id": id }), 1)),
            );
        }
        let mut group_calls = Vec::new();
        for id in ids {
            let r = self.graph.member_group_requests(id, &mapped)?;
            group_calls.push(r.len());
            reqs.extend(r);
        }
        let mut answers = self.graph.send_all(reqs).into_iter();
        let mut users = Vec::new();
        for _ in ids {
            let raw = Graph::read_user(answers.next().expect("one answer per request"))?;
            users.push(raw.as_ref().and_then(EntraUser::from_json));
        }
        let mut found = Vec::new();
        for _ in ids {
            found.extend(Zenqms::read_search(
                answers.next().expect("one answer per request"),
            )?);
        }
        let mut member_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, n) in ids.iter().zip(group_calls) {
            let set = member_of.entry(id.clone()).or_default();
            for _ in 0..n {
                set.extend(Graph::read_member_groups(
                    answers.next().expect("one answer per request"),
                )?);
            }
        }
        // Round 2, only for users not linked yet: candidates by email.
        let linked: BTreeSet<String> = found.iter().filter_map(plan::link_of).collect();
        let email_reqs: Vec<_> = users
            .iter()
            .flatten()
            .filter(|u| !linked.contains(&u.id))
            .filter_map(EntraUser::match_email)
            .map(|email| {
                self.out
                    .zen
                    .request(&api::search_users(json!({ "email": email }), 1))
            })
            .collect();
        for result in self.platform.send_all(email_reqs) {
            found.extend(Zenqms::read_search(result)?);
        }
        self.out.dir = Directory::new(found);
        // Plan: present users as the initial sync does; absent ones (404) are leavers.
        let present: Vec<EntraUser> = users.iter().flatten().cloned().collect();
        let (mut plans, later) = plan::staged(plan::plan_batch(&present, &mut self.out.dir));
        for (id, user) in ids.iter().zip(&users) {
            if user.is_some() {
                continue;
            }
            match self.out.dir.by_external_id(id) {
                Some(z) if z.is_active => plans.push(Planned {
                    entra_id: id.clone(),
                    upn: String::new(),
                    action: plan::deactivate(z),
                    after_batch: false,
                }),
                Some(_) => {}
                None => self.out.log.info(
                    "user not in Entra (deleted) and not linked in ZenQMS: nothing to do",
                    &[("entra_id", id)],
                ),
            }
        }
        self.out.apply(plans)?;
        if !later.is_empty() {
            // Users taking an email another one just gave up.
            let plans = plan::plan_later(&present, &later, &mut self.out.dir);
            self.out.apply(plans)?;
        }
        // Mapped roles of the present users, now that every one that can be is linked.
        if self.config.role_mappings.is_empty() {
            return Ok(());
        }
        let changes = present
            .iter()
            .filter_map(|u| {
                let z = self.out.dir.by_external_id(&u.id)?;
                let groups = member_of.get(&u.id)?;
                let desired = desired_from_groups(&self.config.role_mappings, groups);
                roles::change_for(z, &u.id, &self.config.role_mappings, &desired)
            })
            .collect();
        self.out.apply_roles(changes)
    }

    /// Recomputes the holders of every role mapped to one of these groups (or to a group that
    /// contains one of them) and adds/removes those roles for linked users.
    pub fn sync_groups(&mut self, ids: &[String]) -> Result<(), Failure> {
        let mapped: BTreeSet<String> = self.config.mapped_groups().into_iter().collect();
        if mapped.is_empty() {
            return Ok(());
        }
        // A changed group affects the mappings of itself and of every group that contains it
        // (a mapped group can itself be nested in another mapped group).
        let mut affected: BTreeSet<String> = ids
            .iter()
            .filter(|g| mapped.contains(*g))
            .cloned()
            .collect();
        for ancestors in self.graph.transitive_member_of(ids)?.values() {
            affected.extend(ancestors.intersection(&mapped).cloned());
        }
        let mappings: Vec<RoleMapping> = self
            .config
            .role_mappings
            .iter()
            .filter(|m| m.groups.iter().any(|g| affected.contains(g)))
            .cloned()
            .collect();
        if mappings.is_empty() {
            self.out.log.debug(
                "group change does not touch a mapped group",
                &[("groups", &ids.join(","))],
            );
            return Ok(());
        }
        let groups: Vec<String> = mappings
            .iter()
            .flat_map(|m| m.groups.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let members = self.graph.transitive_members(&groups)?;
        let linked = self
            .out
            .zen
            .search_all(json!({ "has_external_id": true }))?;
        self.out.dir = Directory::new(linked);
        let changes = roles::plan_roles(&mappings, &members, &self.out.dir);
        self.out.apply_roles(changes)
    }
}

/// The mapped roles whose groups include one of `groups`.
fn desired_from_groups(mappings: &[RoleMapping], groups: &BTreeSet<String>) -> BTreeSet<String> {
    mappings
        .iter()
        .filter(|m| m.groups.iter().any(|g| groups.contains(g)))
        .map(|m| m.role.clone())
        .collect()
}
