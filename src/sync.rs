//! The full sync (initial sync and redeploy): users page by page, then leavers, then roles.
//!
//! Resumable by construction: progress is checkpointed in [`FullSync`] after every step, each
//! phase is safe to repeat from its start, and the user cursor is the Graph URL of the next page,
//! so a call that runs out of budget returns `pending` and the next call continues exactly there.

use serde_json::{Value, json};

use crate::config::Config;
use crate::entra::EntraUser;
use crate::failure::Failure;
use crate::graph::Graph;
use crate::log::Log;
use crate::plan::{self, Action, Directory, Planned, WriteKind};
use crate::platform::Platform;
use crate::roles::{self, RoleChange};
use crate::state::{Counts, FullSync, Phase};
use crate::zenqms::Zenqms;
use crate::zenqms::api::{self, Call, ZUser};

/// Role writes sent per step (one `send-all`), so the budget is checked between them.
const ROLE_CHUNK: usize = 200;

/// How one call of a full sync ended.
pub struct Progress {
    pub finished: bool,
    /// What this call did.
    pub counts: Counts,
}

/// One write and what it is about, for counting and the audit log.
struct Write {
    call: Call,
    entra_id: String,
    upn: String,
    kind: &'static str,
    changes: Vec<plan::Change>,
}

/// The sync's working set for one call.
pub struct Engine<'a> {
    log: Log<'a>,
    platform: &'a dyn Platform,
    config: &'a Config,
    graph: Graph<'a>,
    zen: Zenqms<'a>,
    dir: Directory,
    budget_ms: u64,
    cause: String,
    step: Counts,
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
            log: Log::new(platform),
            platform,
            config,
            graph,
            zen,
            dir: Directory::new(users),
            budget_ms,
            cause: cause.to_string(),
            step: Counts::default(),
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
            self.step = Counts::default();
            let finished = self.step_once(sync)?;
            counts.add(&self.step);
            sync.totals.add(&self.step);
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
                    self.step.skipped += 1;
                    self.log.warn(
                        "user skipped",
                        &[("reason", "Graph returned a user without an id")],
                    );
                }
            }
        }
        let plans = plan::plan_batch(&users, &self.dir);
        self.apply(plans)?;
        Ok(page.next)
    }

    /// Applies planned actions: logs skips and conflicts, sends the writes side by side.
    pub fn apply(&mut self, plans: Vec<Planned>) -> Result<(), Failure> {
        let mut writes = Vec::new();
        for p in plans {
            match p.action {
                Action::Unchanged { .. } => self.step.unchanged += 1,
                Action::Skip { reason, missing } => {
                    self.step.skipped += 1;
                    let missing = missing.join(",");
                    let mut fields = vec![
                        ("entra_id", p.entra_id.as_str()),
                        ("upn", p.upn.as_str()),
                        ("reason", reason.as_str()),
                    ];
                    if !missing.is_empty() {
                        fields.push(("missing_fields", &missing));
                    }
                    self.log.warn("user skipped", &fields);
                }
                Action::Conflict { reason } => {
                    self.step.conflicts += 1;
                    self.log.error(
                        "user conflict: nothing changed",
                        &[
                            ("entra_id", &p.entra_id),
                            ("upn", &p.upn),
                            ("reason", &reason),
                        ],
                    );
                }
                Action::Create(new) => {
                    let changes = create_changes(&new);
                    writes.push(Write {
                        call: api::create_user(&new),
                        entra_id: p.entra_id,
                        upn: p.upn,
                        kind: "created",
                        changes,
                    });
                }
                Action::Write {
                    zenqms_id,
                    kind,
                    changes,
                } => writes.push(Write {
                    call: api::update_user(&zenqms_id, plan::patch_fields(&changes)),
                    entra_id: p.entra_id,
                    upn: p.upn,
                    kind: match kind {
                        WriteKind::Link => "linked",
                        WriteKind::Update => "updated",
                        WriteKind::Deactivate => "deactivated",
                    },
                    changes,
                }),
            }
        }
        self.send_writes(writes)
    }

    fn send_writes(&mut self, writes: Vec<Write>) -> Result<(), Failure> {
        if writes.is_empty() {
            return Ok(());
        }
        let calls: Vec<Call> = writes.iter().map(|w| w.call.clone()).collect();
        let results = self.zen.write_all(&calls);
        let mut systemic = None;
        for (w, result) in writes.into_iter().zip(results) {
            match result {
                Ok(user) => {
                    let zid = user.id.clone();
                    self.dir.upsert(user);
                    self.count(w.kind);
                    self.log.info(
                        &format!("ZenQMS user {}", w.kind),
                        &[
                            ("cause", &self.cause),
                            ("entra_id", &w.entra_id),
                            ("upn", &w.upn),
                            ("zenqms_id", &zid),
                            ("changes", &describe(&w.changes)),
                        ],
                    );
                }
                Err(e) => {
                    self.step.failed += 1;
                    self.log.error(
                        "ZenQMS write failed",
                        &[
                            ("cause", &self.cause),
                            ("entra_id", &w.entra_id),
                            ("upn", &w.upn),
                            ("action", w.kind),
                            ("error", &e.to_string()),
                        ],
                    );
                    if e.is_systemic() && systemic.is_none() {
                        systemic = Some(e);
                    }
                }
            }
        }
        match systemic {
            // The service, not one user, is failing: stop before the checkpoint moves on.
            Some(e) => Err(Failure {
                message: format!("ZenQMS writes are failing: {e}"),
                retryable: e.status != Some(401) && e.status != Some(403),
            }),
            None => Ok(()),
        }
    }

    fn count(&mut self, kind: &str) {
        let c = &mut self.step;
        match kind {
            "created" => c.created += 1,
            "linked" => c.linked += 1,
            "updated" => c.updated += 1,
            "deactivated" => c.deactivated += 1,
            _ => {}
        }
    }

    /// Deactivates linked ZenQMS users whose Entra object no longer exists. Each candidate is
    /// confirmed with its own Graph read (404) first, so a truncated listing cannot turn active
    /// employees into leavers.
    fn leavers(&mut self) -> Result<(), Failure> {
        if self.dir.linked().next().is_none() {
            return Ok(());
        }
        let ids = self.graph.all_user_ids()?;
        let candidates: Vec<ZUser> = plan::leavers(&self.dir, &ids)
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
        self.send_writes(writes)
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
            let mut plan = roles::plan_roles(&self.config.role_mappings, &members, &self.dir);
            plan.reverse(); // popped from the end, in directory order
            self.role_plan = Some(plan);
        }
        let plan = self.role_plan.as_mut().expect("set above");
        let mut calls = Vec::new();
        let mut about = Vec::new();
        while calls.len() < ROLE_CHUNK {
            let Some(change) = plan.pop() else { break };
            if !change.add.is_empty() {
                calls.push(api::add_roles(&change.zenqms_id, &change.add));
                about.push((change.clone(), true));
            }
            if !change.remove.is_empty() {
                calls.push(api::remove_roles(&change.zenqms_id, &change.remove));
                about.push((change, false));
            }
        }
        let results = self.zen.write_all(&calls);
        let mut systemic = None;
        for ((change, adding), result) in about.into_iter().zip(results) {
            let roles = if adding { &change.add } else { &change.remove };
            let (verb, field) = if adding {
                ("added", "roles_added")
            } else {
                ("removed", "roles_removed")
            };
            match result {
                Ok(user) => {
                    self.dir.upsert(user);
                    let n = roles.len() as u32;
                    if adding {
                        self.step.roles_added += n;
                    } else {
                        self.step.roles_removed += n;
                    }
                    self.log.info(
                        &format!("ZenQMS roles {verb}"),
                        &[
                            ("cause", &self.cause),
                            ("entra_id", &change.entra_id),
                            ("zenqms_id", &change.zenqms_id),
                            (field, &roles.join(",")),
                        ],
                    );
                }
                Err(e) => {
                    self.step.failed += 1;
                    self.log.error(
                        "ZenQMS role change failed",
                        &[
                            ("cause", &self.cause),
                            ("entra_id", &change.entra_id),
                            ("zenqms_id", &change.zenqms_id),
                            (field, &roles.join(",")),
                            ("error", &e.to_string()),
                        ],
                    );
                    if e.is_systemic() && systemic.is_none() {
                        systemic = Some(e);
                    }
                }
            }
        }
        if let Some(e) = systemic {
            return Err(Failure {
                message: format!("ZenQMS role changes are failing: {e}"),
                retryable: e.status != Some(401) && e.status != Some(403),
            });
        }
        Ok(self.role_plan.as_ref().is_none_or(Vec::is_empty))
    }
}

/// A create's fields as changes from nothing, for the audit log.
fn create_changes(new: &api::NewUser) -> Vec<plan::Change> {
    let v = serde_json::to_value(new).unwrap_or(Value::Null);
    let Value::Object(map) = v else {
        return Vec::new();
    };
    [
        "email",
        "first_name",
        "last_name",
        "title",
        "is_active",
        "external_id",
    ]
    .into_iter()
    .filter_map(|f| {
        map.get(f).map(|after| plan::Change {
            field: f,
            before: Value::Null,
            after: after.clone(),
        })
    })
    .collect()
}

/// `field: before -> after; ...` for the audit log.
pub fn describe(changes: &[plan::Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{}: {} -> {}", c.field, c.before, c.after))
        .collect::<Vec<_>>()
        .join("; ")
}
