//! The full sync (initial sync and redeploy): users page by page, then leavers, then roles.
//!
//! Resumable by construction: progress is checkpointed in [`FullSync`] after every step, each
//! phase is safe to repeat from its start, and the user cursor is the Graph URL of the next page,
//! so a call that runs out of budget returns `pending` and the next call continues exactly there.

use serde_json::json;

use crate::apply::{Applier, Write};
use crate::config::Config;
use crate::entra::EntraUser;
use crate::failure::Failure;
use crate::graph::Graph;
use crate::log::Log;
use crate::plan::{self, Action, Directory};
use crate::platform::Platform;
use crate::roles::{self, RoleChange};
use crate::state::{Counts, FullSync, Phase};
use crate::zenqms::Zenqms;
use crate::zenqms::api::{self, ZUser};

/// Role writes sent per step (one `send-all`), so the budget is checked between them.
const ROLE_CHUNK: usize = 200;

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
    graph: Graph<'a>,
    out: Applier<'a>,
    budget_ms: u64,
    role_plan: Option<Vec<RoleChange>>,
}

impl<'a> Engine<'a> {
    /// Loads the ZenQMS directory once for this call (no per-user lookups).
    pub fn new(
        platform: &'a dyn Platform,
        config: &'a Config,
        graph: Graph<'a>,
        budget_ms: u64,
        cause: &str,
    ) -> Result<Self, Failure> {
        let zen = Zenqms::new(platform, config);
        let users = zen.search_all(json!({}))?;
        Ok(Engine {
            platform,
            config,
            graph,
            out: Applier::new(zen, Log::new(platform), cause, Directory::new(users)),
            budget_ms,
            role_plan: None,
        })
    }

    /// Runs steps until the sync finishes or the budget would run out (always at least one
    /// step, so every call makes progress). `sync` is checkpointed after each step.
    pub fn run(&mut self, sync: &mut FullSync) -> Result<Progress, Failure> {
        let mut counts = Counts::default();
        let mut longest = 0u64;
        let mut steps = 0u32;
        loop {
            let start = self.platform.elapsed_ms();
            if steps > 0 && start + longest > self.budget_ms {
                return Ok(Progress {
                    finished: false,
                    counts,
                });
            }
            self.out.counts = Counts::default();
            let finished = self.step_once(sync)?;
            counts.add(&self.out.counts);
            sync.totals.add(&self.out.counts);
            steps += 1;
            longest = longest.max(self.platform.elapsed_ms() - start);
            if finished {
                return Ok(Progress {
                    finished: true,
                    counts,
                });
            }
        }
    }

    fn step_once(&mut self, sync: &mut FullSync) -> Result<bool, Failure> {
        match sync.phase.clone() {
            Phase::Users { next } => {
                let following = self.users_page(&next)?;
                sync.batches += 1;
                sync.phase = match following {
                    Some(url) => Phase::Users { next: url },
                    None => Phase::Leavers,
                };
                Ok(false)
            }
            Phase::Leavers => {
                self.leavers()?;
                sync.phase = Phase::Roles;
                Ok(false)
            }
            Phase::Roles => self.roles_chunk(),
        }
    }

    /// One batch: read a page of (up to) 100 users, plan it, apply it.
    fn users_page(&mut self, url: &str) -> Result<Option<String>, Failure> {
        let page = self.graph.page(url, "listing users")?;
        let mut users = Vec::with_capacity(page.items.len());
        for item in &page.items {
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
        let plans = plan::plan_batch(&users, &self.out.dir);
        self.out.apply(plans)?;
        Ok(page.next)
    }

    /// Deactivates linked ZenQMS users whose Entra object no longer exists. Each candidate is
    /// confirmed with its own Graph read (404) first, so a truncated listing cannot turn active
    /// employees into leavers.
    fn leavers(&mut self) -> Result<(), Failure> {
        if self.out.dir.linked().next().is_none() {
            return Ok(());
        }
        let ids = self.graph.all_user_ids()?;
        let candidates: Vec<ZUser> = plan::leavers(&self.out.dir, &ids)
            .into_iter()
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let entra_ids: Vec<String> = candidates.iter().filter_map(plan::link_of).collect();
        let exists = self.graph.users_exist(&entra_ids)?;
        let writes = candidates
            .iter()
            .zip(entra_ids)
            .zip(exists)
            .filter(|(_, still_there)| !still_there)
            .map(|((z, entra_id), _)| {
                let Action::Write { changes, .. } = plan::deactivate(z) else {
                    unreachable!("deactivate plans a write")
                };
                Write {
                    call: api::update_user(&z.id, plan::patch_fields(&changes)),
                    entra_id,
                    upn: String::new(),
                    kind: "deactivated",
                    changes,
                }
            })
            .collect();
        self.out.write(writes)
    }

    /// Reads the mapped groups' transitive members once per call, then applies one chunk of
    /// role changes. Returns true when no change is left.
    fn roles_chunk(&mut self) -> Result<bool, Failure> {
        if self.config.role_mappings.is_empty() {
            return Ok(true);
        }
        if self.role_plan.is_none() {
            let members = self
                .graph
                .transitive_members(&self.config.mapped_groups())?;
            let mut plan = roles::plan_roles(&self.config.role_mappings, &members, &self.out.dir);
            plan.reverse(); // popped from the end, in directory order
            self.role_plan = Some(plan);
        }
        let plan = self.role_plan.as_mut().expect("set above");
        let chunk: Vec<RoleChange> = (0..ROLE_CHUNK).map_while(|_| plan.pop()).collect();
        self.out.apply_roles(chunk)?;
        Ok(self.role_plan.as_ref().is_none_or(Vec::is_empty))
    }
}
