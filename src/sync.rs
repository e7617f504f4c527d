//! The full sync (initial sync and redeploy): users page by page, then leavers, then roles.
//!
//! Resumable by construction: progress is checkpointed in [`FullSync`] after every step, each
//! phase is safe to repeat from its start, and the user cursor is the Graph URL of the next page,
//! so a call that runs out of budget returns `pending` and the next call continues exactly there.

use serde_json::json;

use std::collections::{BTreeMap, BTreeSet};

use crate::address::{self, Domains};
use crate::apply::{self, Applier, RoleCall, Write};
use crate::budget::{self, Step};
use crate::config::{Config, RoleMapping};
use crate::entra::EntraUser;
use crate::failure::Failure;
use crate::graph::{Graph, Page, USER_PAGE};
use crate::guard;
use crate::links;
use crate::log::Log;
use crate::plan::{self, Action, Directory, Planned, Trust, WriteKind};
use crate::platform::{HttpResult, Method, Platform};
use crate::roles::{self, Memberships, RoleChange};
use crate::round::{self, Round};
use crate::state::{Counts, DEFERRED_MAX, Deferred, FullSync, Phase};
use crate::zenqms::Zenqms;
use crate::zenqms::api::{self, ZUser};

/// Role calls sent per step (one `send-all`, rounded up to whole waves of the platform's
/// concurrency), so the budget is checked between them.
const ROLE_CHUNK: usize = 200;
/// Deactivations sent per step (rounded up the same way).
const DEACTIVATION_CHUNK: usize = 100;

/// Holds a deactivation back for the guard: by name while the checkpoint keeps fewer than
/// [`DEFERRED_MAX`] (and not twice), only counted beyond that (found again later, see
/// [`Phase::Deactivations`]).
fn defer(sync: &mut FullSync, d: Deferred) {
    if sync.deferred.iter().any(|x| x.zenqms_id == d.zenqms_id) {
        return;
    }
    if sync.deferred.len() < DEFERRED_MAX {
        sync.deferred.push(d);
    } else {
        sync.deferred_more = sync.deferred_more.saturating_add(1);
    }
}

/// Takes a plan's deactivation (is_active true -> false) out into the run's deferred ones;
/// returns what is left to apply now, if anything.
fn defer_deactivation(mut p: Planned, sync: &mut FullSync) -> Option<Planned> {
    let Action::Write {
        zenqms_id,
        kind,
        changes,
    } = &mut p.action
    else {
        return Some(p);
    };
    let Some(pos) = changes
        .iter()
        .position(|c| c.field == "is_active" && c.after == serde_json::Value::Bool(false))
    else {
        return Some(p);
    };
    changes.remove(pos);
    defer(
        sync,
        Deferred {
            zenqms_id: zenqms_id.clone(),
            entra_id: p.entra_id.clone(),
            upn: p.upn.clone(),
            reason: "disabled in Entra".into(),
        },
    );
    if changes.is_empty() {
        return None;
    }
    if *kind == WriteKind::Deactivate {
        *kind = WriteKind::Update;
    }
    Some(p)
}

/// Where a step of the user listing ended.
enum PageEnd {
    /// The page is done; the listing's next link, if any.
    Next(Option<String>),
    /// The page holds more users: these (lowercase ids) are done.
    More(Vec<String>),
}

/// A page item's id as the checkpoint keeps it (lowercase), if it has one.
fn item_key(item: &serde_json::Value) -> Option<String> {
    item.get("id")
        .and_then(serde_json::Value::as_str)
        .map(|id| id.trim().to_ascii_lowercase())
}

/// Whether a page item is among the ids done.
fn item_done(item: &serde_json::Value, done: &BTreeSet<&str>) -> bool {
    item_key(item).is_some_and(|id| done.contains(id.as_str()))
}

/// Where a walk over the linked users (in ZenQMS id order) stands after a step.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// Every user was checked.
    Done,
    /// More to check, after this ZenQMS id (`None`: from the start, or not a walk).
    At(Option<String>),
}

impl Walk {
    /// After a step that checked `chunk`, `last` saying whether nobody follows it.
    fn next<T>(last: bool, chunk: &[(ZUser, T)]) -> Walk {
        match chunk.last() {
            Some((z, _)) if !last => Walk::At(Some(z.id.clone())),
            _ => Walk::Done,
        }
    }
}

/// How one call of a full sync ended.
pub struct Progress {
    pub finished: bool,
    /// What this call did.
    pub counts: Counts,
}

/// The sync's working set for one call.
pub struct Engine<'a> {
    platform: &'a dyn Platform,
    config: &'a Config,
    graph: &'a Graph<'a>,
    out: Applier<'a>,
    role_plan: Option<Vec<RoleChange>>,
    /// Transitive members of the mapped groups, read once per call.
    members: Option<Memberships>,
    /// The role mappings whose every group was read (see `roles::known`).
    known: Vec<RoleMapping>,
    /// The next user page, fetched in the same round as the previous batch's writes.
    prefetched: Option<(String, Page)>,
    /// Role calls held for the next round: those of users created in the last one, and those
    /// held back so that a round is made of whole waves of the platform's concurrency.
    carry: Vec<RoleCall>,
    /// The verified domains learned before this run (the state's `email_domains`).
    pub learned_domains: BTreeSet<String>,
}

impl<'a> Engine<'a> {
    /// Loads the ZenQMS directory once for this call (no per-user lookups). `first` is the
    /// answer to the directory's first page when the caller sent it beside the token request;
    /// `next_page` (the sync's next Graph users page) is read beside the directory's other pages.
    pub fn new(
        platform: &'a dyn Platform,
        config: &'a Config,
        graph: &'a Graph<'a>,
        cause: &str,
        first: Option<HttpResult>,
        next_page: Option<&str>,
    ) -> Result<Self, Failure> {
        let zen = Zenqms::new(platform, config);
        let first =
            first.unwrap_or_else(|| platform.send(zen.request(&api::search_users(json!({}), 1))));
        let extra = match next_page {
            Some(url) => vec![graph.request(Method::Get, url, None)?],
            None => Vec::new(),
        };
        let (users, answers) = zen.search_rest(json!({}), first, extra)?;
        // A failed read is simply read again by the first step (with its own retries).
        let prefetched = next_page
            .zip(answers.into_iter().next())
            .and_then(|(url, answer)| {
                let page = Graph::read_page(answer, url, "listing users").ok()?;
                Some((url.to_string(), page))
            });
        let mut out = Applier::new(zen, Log::new(platform), cause, Directory::new(users));
        out.dry_run = config.dry_run;
        Ok(Engine {
            platform,
            config,
            graph,
            out,
            role_plan: None,
            members: None,
            known: Vec::new(),
            prefetched,
            carry: Vec::new(),
            learned_domains: BTreeSet::new(),
        })
    }

    /// `n` rounded up to whole rounds of the platform's concurrency, so no round goes out
    /// part-empty.
    fn whole_rounds(&self, n: usize) -> usize {
        let c = self.concurrency();
        n.div_ceil(c) * c
    }

    /// Requests of one `send-all` the platform runs at once.
    fn concurrency(&self) -> usize {
        self.platform.concurrency().max(1)
    }

    /// Runs steps until the sync finishes or the budget would run out (always at least one
    /// step, so every call makes progress). `sync` is checkpointed after each step.
    pub fn run(&mut self, sync: &mut FullSync) -> Result<Progress, Failure> {
        let mut counts = Counts::default();
        let platform = self.platform;
        let finished = budget::run_steps(
            || budget::fits(platform, budget::MIN_STEP_ROUNDS),
            || {
                self.out.counts = Counts::default();
                // A step that fails is done again from its start by a later call: what it
                // deferred is taken back, so the retry does not count anyone twice.
                let deferred = (sync.deferred.len(), sync.deferred_more);
                let finished = self.step_once(sync).inspect_err(|_| {
                    sync.deferred.truncate(deferred.0);
                    sync.deferred_more = deferred.1;
                })?;
                counts.add(&self.out.counts);
                sync.totals.add(&self.out.counts);
                Ok::<_, Failure>(if finished { Step::Done } else { Step::More })
            },
        )?;
        Ok(Progress { finished, counts })
    }

    fn step_once(&mut self, sync: &mut FullSync) -> Result<bool, Failure> {
        match sync.phase.clone() {
            Phase::Users { next, skip, done } => {
                let end = self.users_page(&next, skip, done, sync)?;
                sync.batches += 1;
                sync.phase = match end {
                    PageEnd::More(done) => Phase::Users {
                        next,
                        skip: 0,
                        done,
                    },
                    PageEnd::Next(Some(url)) => {
                        links::follow(&mut sync.recent_links, &url, sync.batches, "listing users")?;
                        Phase::Users {
                            next: url,
                            skip: 0,
                            done: Vec::new(),
                        }
                    }
                    PageEnd::Next(None) => Phase::Leavers { after: None },
                };
                Ok(false)
            }
            Phase::Leavers { after } => {
                sync.phase = match self.leavers(after, sync)? {
                    Walk::At(after) => Phase::Leavers { after },
                    Walk::Done => Phase::Deactivations { after: None },
                };
                Ok(false)
            }
            Phase::Deactivations { after } => {
                sync.phase = match self.deactivations(after, sync)? {
                    Walk::At(after) => Phase::Deactivations { after },
                    Walk::Done => Phase::Roles,
                };
                Ok(false)
            }
            Phase::Roles => self.roles_chunk(),
        }
    }

    /// Reads the transitive members of the mapped groups, once per call.
    fn load_members(&mut self) -> Result<(), Failure> {
        if self.members.is_none() {
            let groups = self.config.mapped_groups();
            let members = self.graph.transitive_members(&groups)?;
            // A mapped group that is gone has no entry: its role is left as it is, and every
            // call of the run says so.
            let mappings = &self.config.role_mappings;
            roles::log_missing(
                &self.out.log,
                &roles::missing(mappings, |g| members.contains_key(g)),
            );
            self.known = roles::known(mappings, &members);
            self.members = Some(members);
        }
        Ok(())
    }

    /// The role change one linked user needs, if any.
    fn role_change(&mut self, entra_id: &str) -> Result<Option<RoleChange>, Failure> {
        if self.config.role_mappings.is_empty() {
            return Ok(None);
        }
        self.load_members()?;
        let members = self.members.as_ref().expect("loaded above");
        let Some(z) = self.out.dir.by_external_id(entra_id) else {
            return Ok(None);
        };
        let mappings = &self.known;
        let desired = roles::desired_roles(mappings, members, entra_id);
        Ok(roles::change_for(z, entra_id, mappings, &desired))
    }

    /// One batch: a page of (up to) 100 users, planned and written — except deactivations,
    /// which are deferred until the run's total is known (the mass-deactivation guard). The
    /// batch's writes, its users' role changes, the previous batch's new users' roles and the
    /// next page's read all go out in one `send-all`, so Graph's sequential paging overlaps
    /// with the writes instead of waiting for them.
    fn users_page(
        &mut self,
        url: &str,
        skip: usize,
        mut done: Vec<String>,
        sync: &mut FullSync,
    ) -> Result<PageEnd, Failure> {
        let page = match self.prefetched.take() {
            Some((u, p)) if u == url => p,
            _ => self.graph.page(url, "listing users")?,
        };
        // A step works as many of the page's users as its writes fit in the rounds left (a
        // write, a role added and a role removed each at most; the address look-up, a second write round and the role
        // calls carried from the last step are the step's own), USER_PAGE at most: a page longer than asked for (Graph decides page
        // sizes) or a budget nearly spent is worked a slice per step, never past the budget.
        // The mapped groups' members are read before the slice is sized (once per call).
        if !self.config.role_mappings.is_empty() {
            self.load_members()?;
        }
        // The role calls carried from the last step go out in this step's writes round too.
        let carried = self.carry.len().div_ceil(self.concurrency()) as u64;
        let slice = budget::items_that_fit(
            self.platform,
            2 + carried,
            3,
            (self.concurrency() / 2).max(1),
            USER_PAGE as usize,
        );
        // The page's users not done yet (by id; a checkpoint from before ids were kept says
        // how many by position).
        let done_set: BTreeSet<&str> = done.iter().map(String::as_str).collect();
        let todo: Vec<&serde_json::Value> = page
            .items
            .iter()
            .skip(if done.is_empty() { skip } else { 0 })
            .filter(|item| !item_done(item, &done_set))
            .collect();
        let last_slice = todo.len() <= slice;
        let page_next = if last_slice { page.next.clone() } else { None };
        let this = &todo[..todo.len().min(slice)];
        let newly: Vec<String> = this.iter().filter_map(|i| item_key(i)).collect();
        let mut users = Vec::with_capacity(this.len());
        for item in this.iter().copied() {
            match EntraUser::from_json(item) {
                Some(u) => users.push(u),
                None => {
                    self.out.counts.skipped += 1;
                    self.out.log.warn(
                        "user skipped",
                        &[("reason", "Graph returned a user without an id")],
                    );
                }
            }
        }
        let trust = self.trust(&users, sync)?;
        let (plans, later) = plan::staged(plan::plan_batch(&users, &mut self.out.dir, &trust));
        let plans: Vec<Planned> = plans
            .into_iter()
            .filter_map(|p| defer_deactivation(p, sync))
            .collect();
        let writes = self.out.prepare(plans);
        let creating: BTreeSet<&str> = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Create)
            .map(|w| w.entra_id.as_str())
            .collect();
        let mut changes = Vec::new();
        for u in &users {
            if !creating.contains(u.id.as_str())
                && let Some(c) = self.role_change(&u.id)?
            {
                changes.push(c);
            }
        }
        let mut created: Vec<String> = creating.iter().map(|s| s.to_string()).collect();
        let mut role_calls = std::mem::take(&mut self.carry);
        role_calls.extend(apply::role_calls(changes));
        let mut round = Round::new();
        let mut next_slot = None;
        if let Some(next) = &page_next {
            next_slot = Some(round.add(self.graph.request(Method::Get, next, None)?));
            // Role calls (independent of the next page's plan) that would open a part-empty
            // last wave wait for the next round, which they fill instead.
            let total = 1 + writes.len() + role_calls.len();
            let spare = total % self.concurrency();
            if spare <= role_calls.len() {
                self.carry = role_calls.split_off(role_calls.len() - spare);
            }
        }
        let dry = self.out.dry_run;
        let (mut write_slots, mut role_slots) = (Vec::new(), Vec::new());
        if !dry {
            write_slots = round.add_all(writes.iter().map(|w| self.out.zen.request(&w.call)));
            role_slots = round.add_all(role_calls.iter().map(|r| self.out.zen.request(&r.call)));
        }
        let mut answers = round.send(|reqs| self.graph.send_all(reqs));
        if let (Some(next), Some(slot)) = (&page_next, next_slot) {
            // A failed read is simply read again by the next step (with its own retries).
            if let Ok(p) = Graph::read_page(answers.take(slot), next, "listing users") {
                self.prefetched = Some((next.clone(), p));
            }
        }
        let (write_results, role_results) = if dry {
            (
                self.out.simulate(&writes),
                self.out.simulate_roles(&role_calls),
            )
        } else {
            let read = |slots: Vec<_>, answers: &mut round::Answers| {
                answers
                    .take_all(&slots)
                    .into_iter()
                    .map(Zenqms::read_write)
                    .collect()
            };
            (
                read(write_slots, &mut answers),
                read(role_slots, &mut answers),
            )
        };
        self.out.absorb(writes, write_results)?;
        self.out.absorb_roles(role_calls, role_results)?;
        if !later.is_empty() {
            // Users taking an email another one just gave up: one more round (rare: an address
            // reused within one page).
            let plans: Vec<Planned> = plan::plan_later(&users, &later, &mut self.out.dir, &trust)
                .into_iter()
                .filter_map(|p| defer_deactivation(p, sync))
                .collect();
            let writes = self.out.prepare(plans);
            created.extend(
                writes
                    .iter()
                    .filter(|w| w.kind == WriteKind::Create)
                    .map(|w| w.entra_id.clone()),
            );
            self.out.write(writes)?;
        }
        for id in created {
            if let Some(c) = self.role_change(&id)? {
                self.carry.extend(apply::role_calls(vec![c]));
            }
        }
        if last_slice {
            Ok(PageEnd::Next(page.next))
        } else {
            if done.is_empty() && skip > 0 {
                // An old checkpoint's position, turned into the ids it covered.
                done = page.items.iter().take(skip).filter_map(item_key).collect();
            }
            done.extend(newly);
            // The rest of this page is the next step's (read again in a later call).
            self.prefetched = Some((url.to_string(), page));
            Ok(PageEnd::More(done))
        }
    }

    /// The linking rule's facts for one page: its member users' UPN suffixes are learned first
    /// (kept in the checkpoint), then Graph is asked who holds each link candidate's address
    /// (one round, only when the page has candidates).
    fn trust(&mut self, users: &[EntraUser], sync: &mut FullSync) -> Result<Trust, Failure> {
        for domain in users.iter().filter_map(EntraUser::member_domain) {
            address::learn(&mut sync.email_domains, domain);
        }
        let domains = Domains {
            configured: self.config.email_match_domains.clone(),
            learned: self
                .learned_domains
                .union(&sync.email_domains)
                .cloned()
                .collect(),
        };
        let candidates: Vec<_> = plan::link_candidates(users, &self.out.dir, &domains)
            .into_iter()
            .collect();
        let holders = if candidates.is_empty() {
            Default::default()
        } else {
            self.graph.mail_holders(&candidates)?
        };
        Ok(Trust { domains, holders })
    }

    /// The next linked, active ZenQMS users after `after` in ZenQMS id order, at most `n`,
    /// with their Entra ids; and whether these are the last.
    fn linked_after(&self, after: &Option<String>, n: usize) -> (Vec<(ZUser, String)>, bool) {
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        let mut rest = self
            .out
            .dir
            .between(from, std::ops::Bound::Unbounded)
            .filter(|z| z.is_active)
            .filter_map(|z| plan::link_of(z).map(|e| (z.clone(), e)));
        let chunk: Vec<(ZUser, String)> = rest.by_ref().take(n.max(1)).collect();
        let last = rest.next().is_none();
        (chunk, last)
    }

    /// How many linked users a walk's step takes: its Graph read (300 users to a `$batch`
    /// request: 20 `id in` filters of 15) in one round, with `per_round` of them able to be
    /// followed up (a 404 check, a write) in each of the rounds left after two.
    fn walk_size(&self, per_round: usize) -> usize {
        let c = self.concurrency();
        let read = c * crate::graph::BATCH_MAX * crate::graph::IN_MAX;
        let rounds =
            usize::try_from(self.platform.rounds_left().saturating_sub(2)).unwrap_or(usize::MAX);
        read.min(rounds.saturating_mul(per_round)).max(per_round)
    }

    /// Of these Entra ids, those whose object is gone (absent from an `id in` read, and then
    /// answered 404 when read alone: a read that is not a clear 404 never reads as gone) and
    /// those disabled (with their UPN), as `(gone, disabled)`.
    fn gone_or_disabled(
        &self,
        ids: &[String],
    ) -> Result<(BTreeSet<String>, BTreeMap<String, String>), Failure> {
        let found = self.graph.users_by_ids(ids, "checking linked users")?;
        let absent: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
        let gone = if absent.is_empty() {
            BTreeSet::new()
        } else {
            let exists = self.graph.users_exist(&absent)?;
            absent
                .into_iter()
                .zip(exists)
                .filter(|(_, e)| !e)
                .map(|(id, _)| id)
                .collect()
        };
        let disabled = found
            .iter()
            .filter(|(_, u)| u.get("accountEnabled") == Some(&serde_json::Value::Bool(false)))
            .map(|(id, u)| {
                let upn = u
                    .get("userPrincipalName")
                    .and_then(serde_json::Value::as_str);
                (id.clone(), upn.unwrap_or_default().to_string())
            })
            .collect();
        Ok((gone, disabled))
    }

    /// Finds linked ZenQMS users whose Entra object no longer exists and defers their
    /// deactivation: every linked, active user is checked against Graph by id (no set of users
    /// met is carried: the checkpoint is the last ZenQMS id checked, `after`), as many per step
    /// as fit in the rounds left.
    fn leavers(&mut self, after: Option<String>, sync: &mut FullSync) -> Result<Walk, Failure> {
        // A user Graph does not return costs a 404 check (20 to a `$batch` request).
        let n = self.walk_size(self.concurrency() * crate::graph::BATCH_MAX);
        let (chunk, last) = self.linked_after(&after, n);
        if chunk.is_empty() {
            return Ok(Walk::Done);
        }
        let ids: Vec<String> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let (gone, _) = self.gone_or_disabled(&ids)?;
        for (z, entra_id) in &chunk {
            if gone.contains(entra_id) {
                defer(
                    sync,
                    Deferred {
                        zenqms_id: z.id.clone(),
                        entra_id: entra_id.clone(),
                        upn: String::new(),
                        reason: "no longer in Entra (Graph answers 404)".into(),
                    },
                );
            }
        }
        Ok(Walk::next(last, &chunk))
    }

    /// Checks the run's deferred deactivations against the limit once, then applies them a
    /// chunk per step. Done when none is left (applied, or held back by the guard).
    fn deactivations(
        &mut self,
        after: Option<String>,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        if !sync.guard_checked {
            sync.guard_checked = true;
            let limit = self
                .config
                .deactivation_limit(self.out.dir.linked().count());
            let count = sync.deferred.len() + sync.deferred_more as usize;
            if guard::exceeds(count, limit, sync.allow_mass) {
                let ids: Vec<String> = sync.deferred.iter().map(|d| d.entra_id.clone()).collect();
                sync.blocked = Some(guard::block(
                    &self.out.log,
                    "nobody was deactivated",
                    &self.out.cause,
                    &ids,
                    count,
                    limit,
                    self.platform.now(),
                ));
                sync.deferred.clear();
                sync.deferred_more = 0;
                return Ok(Walk::Done);
            }
            if count > limit {
                self.out.log.warn(
                    "mass deactivation allowed by allow_mass_deactivation=true for this deploy; unset it again",
                    &[("deactivations", &count.to_string()), ("limit", &limit.to_string())],
                );
            }
            sync.approved = u32::try_from(count).unwrap_or(u32::MAX);
        }
        if sync.deferred_more > 0 {
            return self.deactivations_again(after, sync);
        }
        let fit = budget::items_that_fit(
            self.platform,
            1,
            1,
            self.concurrency(),
            self.whole_rounds(DEACTIVATION_CHUNK),
        );
        let n = sync.deferred.len().min(fit);
        let writes = sync.deferred[..n]
            .iter()
            .filter_map(|d| {
                let z = self.out.dir.get(&d.zenqms_id).filter(|z| z.is_active)?;
                Some(self.deactivation(z, &d.entra_id, &d.upn))
            })
            .collect();
        self.out.write(writes)?;
        sync.deferred.drain(..n);
        Ok(if sync.deferred.is_empty() {
            Walk::Done
        } else {
            Walk::At(None)
        })
    }

    /// More deactivations were planned than the checkpoint names: the linked, active users are
    /// walked again in ZenQMS id order and those whose Entra object is gone or disabled are
    /// deactivated, a step's Graph read at a time. (A user the user pages found disabled but
    /// left unplanned — a conflict on its address — is deactivated here too: disabled is
    /// disabled.)
    fn deactivations_again(
        &mut self,
        after: Option<String>,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        // Each user found may need a write.
        let n = self.walk_size(self.concurrency());
        let (chunk, last) = self.linked_after(&after, n);
        let ids: Vec<String> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let (gone, disabled) = if chunk.is_empty() {
            Default::default()
        } else {
            self.gone_or_disabled(&ids)?
        };
        let mut writes = Vec::new();
        let mut capped = false;
        for (z, e) in chunk
            .iter()
            .filter(|(_, e)| gone.contains(e) || disabled.contains_key(e))
        {
            // No more than the guard judged: users disabled since the count wait for the next
            // run (or the delta round), whose guard counts them.
            if sync.walked >= sync.approved {
                capped = true;
                break;
            }
            sync.walked += 1;
            let upn = disabled.get(e).map_or("", String::as_str);
            writes.push(self.deactivation(z, e, upn));
        }
        self.out.write(writes)?;
        if capped {
            self.out.log.warn(
                "more users to deactivate than the guard counted: the rest wait for the next run",
                &[("deactivated", &sync.walked.to_string())],
            );
        }
        let walk = if capped {
            Walk::Done
        } else {
            Walk::next(last, &chunk)
        };
        if walk == Walk::Done {
            sync.deferred.clear();
            sync.deferred_more = 0;
        }
        Ok(walk)
    }

    /// The write deactivating `z` (linked to `entra_id`; `upn` names it in the audit line:
    /// empty when Graph no longer has the user).
    fn deactivation(&self, z: &ZUser, entra_id: &str, upn: &str) -> Write {
        let Action::Write { changes, .. } = plan::deactivate(z) else {
            unreachable!("deactivate plans a write")
        };
        Write {
            call: api::update_user(&z.id, plan::patch_fields(&changes)),
            entra_id: entra_id.to_string(),
            upn: upn.to_string(),
            zenqms_id: Some(z.id.clone()),
            kind: WriteKind::Deactivate,
            changes,
        }
    }

    /// Reads the mapped groups' transitive members once per call, then applies one chunk of
    /// role changes. Returns true when no change is left.
    fn roles_chunk(&mut self) -> Result<bool, Failure> {
        if self.config.role_mappings.is_empty() {
            return Ok(true);
        }
        if self.role_plan.is_none() {
            self.carry.clear(); // the full pass below covers them
            self.load_members()?;
            let members = self.members.as_ref().expect("loaded above");
            let mut plan = roles::plan_roles(&self.config.role_mappings, members, &self.out.dir);
            plan.reverse(); // popped from the end, in directory order
            self.role_plan = Some(plan);
        }
        // Whole waves of role calls (a change is one add and/or one remove call).
        let limit = budget::items_that_fit(
            self.platform,
            1,
            1,
            self.concurrency(),
            self.whole_rounds(ROLE_CHUNK),
        );
        let plan = self.role_plan.as_mut().expect("set above");
        let chunk = roles::take_calls(plan, limit);
        self.out.apply_roles(chunk)?;
        Ok(self.role_plan.as_ref().is_none_or(Vec::is_empty))
    }
}
