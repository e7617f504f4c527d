//! Applying plans to ZenQMS: writes sent side by side with `send-all`, each logged with its
//! cause and field-level before -> after (the audit trail), failures counted and logged.

use serde_json::{Value, json};

use crate::clients::zenqms::api::{self, Call, ZUser};
use crate::clients::zenqms::{WriteError, Zenqms};
use crate::domain::plan::{self, Action, Directory, Planned, WriteKind};
use crate::domain::roles::RoleChange;
use crate::failure::Failure;
use crate::log::Log;
use crate::state::Counts;

/// One write and what it is about, for counting and the audit log.
pub struct Write {
    pub call: Call,
    pub entra_id: String,
    /// The Entra user's UPN; empty where the write is not about one (an unlink).
    pub upn: String,
    /// The ZenQMS user written; none for a create.
    pub zenqms_id: Option<String>,
    pub kind: WriteKind,
    pub changes: Vec<plan::Change>,
}

/// Applies plans against a directory it keeps in line with what ZenQMS answers.
pub struct Applier<'a> {
    pub zen: Zenqms<'a>,
    pub log: Log<'a>,
    /// What caused these writes (a sync run id, a notification id, a delta round).
    pub cause: String,
    /// Why a user is deactivated, by Entra id, where it is not the write itself that says
    /// so (left the scope, gone from Entra, disabled): logged as `reason` for the audit trail.
    pub reasons: std::collections::BTreeMap<String, String>,
    pub dir: Directory,
    pub counts: Counts,
    /// Dry run: log each write as a plan line and simulate its effect; send nothing.
    pub dry_run: bool,
    /// The ZenQMS ids (the Entra id for a create) of writes that failed, for a caller that
    /// names them in its failure.
    pub failed: Vec<String>,
    /// Writes setting `is_active` false sent (not in a dry run) that ZenQMS may have made:
    /// made, or answered so that it may have been (a timeout, a 5xx). The guard's window
    /// counts them.
    pub deactivations_sent: usize,
    /// Writes setting `is_active` false that ZenQMS refused (429, 4xx) or the platform
    /// denied: not made, so not counted into the guard's window (see
    /// `Realtime::deactivated`).
    pub deactivations_refused: usize,
    /// A refused deactivation was not sent alone for want of a round (see `absorb`).
    alone_deferred: bool,
}

/// The failure that ends a call when the service, not one user, is failing.
fn systemic(what: &str, e: &WriteError) -> Failure {
    Failure {
        message: format!("{what}: {e}"),
        retryable: e.status != Some(401) && e.status != Some(403),
    }
}

impl<'a> Applier<'a> {
    pub fn new(zen: Zenqms<'a>, log: Log<'a>, cause: &str, dir: Directory) -> Self {
        Applier {
            zen,
            log,
            cause: cause.to_string(),
            dir,
            counts: Counts::default(),
            dry_run: false,
            failed: Vec::new(),
            deactivations_sent: 0,
            deactivations_refused: 0,
            alone_deferred: false,
            reasons: Default::default(),
        }
    }

    /// In a dry run: the answers the writes would get (the user as it would be afterwards).
    pub fn simulate(&self, writes: &[Write]) -> Vec<Result<ZUser, WriteError>> {
        writes
            .iter()
            .map(|w| {
                let created = w
                    .call
                    .body
                    .clone()
                    .and_then(|b| serde_json::from_value::<api::NewUser>(b).ok());
                match (w.kind, created) {
                    (WriteKind::Create, Some(new)) => {
                        Ok(plan::expected_user(&format!("(new:{})", w.entra_id), &new))
                    }
                    _ => {
                        let id = w.zenqms_id.as_deref().unwrap_or_default();
                        let z = self.dir.get(id).ok_or_else(|| WriteError {
                            status: None,
                            message: "dry run: user not in the directory".into(),
                            outcome_unknown: false,
                        })?;
                        Ok(plan::apply_changes(z, &w.changes))
                    }
                }
            })
            .collect()
    }

    /// In a dry run: role calls answered with the user as last known (or an error when it is
    /// not known).
    pub fn simulate_roles(&self, calls: &[RoleCall]) -> Vec<Result<ZUser, WriteError>> {
        calls
            .iter()
            .map(|r| {
                // The roles the call would leave are worked out where it is taken in
                // (`absorb_roles`), from the roles as last known, as for a call ZenQMS answers.
                self.dir
                    .get(&r.change.zenqms_id)
                    .cloned()
                    .ok_or_else(|| WriteError {
                        status: None,
                        message: "dry run: user not in the directory".into(),
                        outcome_unknown: false,
                    })
            })
            .collect()
    }

    /// Applies planned actions: logs skips and conflicts, sends the writes side by side.
    pub fn apply(&mut self, plans: Vec<Planned>) -> Result<(), Failure> {
        let writes = self.prepare(plans);
        self.write(writes)
    }

    /// Logs and counts what needs no write; returns the writes.
    pub fn prepare(&mut self, plans: Vec<Planned>) -> Vec<Write> {
        let mut writes = Vec::new();
        for p in plans {
            match p.action {
                Action::Unchanged { .. } => self.counts.unchanged += 1,
                Action::OutOfScope => self.counts.out_of_scope += 1,
                Action::Skip { reason, missing } => {
                    self.counts.skipped += 1;
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
                    self.counts.conflicts += 1;
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
                        zenqms_id: None,
                        kind: WriteKind::Create,
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
                    zenqms_id: Some(zenqms_id),
                    kind,
                    changes,
                }),
            }
        }
        writes
    }

    /// Sends writes side by side; stops the call (after logging each) if ZenQMS itself fails.
    pub fn write(&mut self, writes: Vec<Write>) -> Result<(), Failure> {
        if writes.is_empty() {
            return Ok(());
        }
        let results = if self.dry_run {
            self.simulate(&writes)
        } else {
            let calls: Vec<Call> = writes.iter().map(|w| w.call.clone()).collect();
            self.zen.write_all(&calls)
        };
        self.absorb(writes, results)
    }

    /// Takes in the answers to writes sent (possibly in a round shared with other requests).
    pub fn absorb(
        &mut self,
        writes: Vec<Write>,
        results: Vec<Result<ZUser, WriteError>>,
    ) -> Result<(), Failure> {
        let (writes, results) = if self.dry_run {
            (writes, results)
        } else {
            let results = self.recheck_creates(&writes, results);
            self.deactivate_alone(writes, results)
        };
        // A deactivation to send alone that the budget left no round for: the step is done
        // again by the next call (which plans it again, and sends it alone at its start).
        let deferred = std::mem::take(&mut self.alone_deferred);
        let mut systemic = None;
        if !self.dry_run {
            // Counted for the guard's window when ZenQMS may have made it (made, or an answer
            // that leaves it open: a timeout, a 5xx). A refusal (429, 4xx) made nothing: a
            // red team's throttled ZenQMS at 3 s calls sent one deactivation in five calls,
            // each refused, and the window counted it five times (the leaver itself and the
            // next one were held as a mass deactivation).
            for (w, r) in writes.iter().zip(&results) {
                if !deactivates(&w.changes) {
                    continue;
                }
                if r.as_ref().err().is_none_or(|e| e.outcome_unknown) {
                    self.deactivations_sent += 1;
                } else {
                    self.deactivations_refused += 1;
                }
            }
        }
        for (w, result) in writes.into_iter().zip(results) {
            match result {
                Ok(mut user) => {
                    let zid = user.id.clone();
                    // A write changes no roles: the roles known stay (the answer's may
                    // reflect a role call of the same round, or not yet; see `absorb_roles`).
                    if let Some(known) = self.dir.get(&zid) {
                        user.roles = known.roles.clone();
                    }
                    self.dir.upsert(user);
                    self.count(w.kind);
                    let message = if self.dry_run {
                        format!("plan: would be {}", w.kind.done())
                    } else {
                        format!("ZenQMS user {}", w.kind.done())
                    };
                    let changes = describe(&w.changes);
                    let mut fields =
                        vec![("cause", self.cause.as_str()), ("entra_id", &w.entra_id)];
                    if w.kind != WriteKind::Unlink {
                        fields.push(("upn", &w.upn));
                    }
                    fields.extend([("zenqms_id", zid.as_str()), ("changes", &changes)]);
                    if w.kind == WriteKind::Deactivate
                        && let Some(reason) = self.reasons.get(&w.entra_id)
                    {
                        fields.push(("reason", reason));
                    } else if reactivates(&w.changes) {
                        // As a deactivation says why, so does its undoing.
                        fields.push(("reason", REACTIVATED));
                    }
                    self.log.info(&message, &fields);
                }
                Err(e) => {
                    self.counts.failed += 1;
                    let error = e.to_string();
                    let mut fields =
                        vec![("cause", self.cause.as_str()), ("entra_id", &w.entra_id)];
                    // An unlink is about a ZenQMS user, not an Entra one (the other kinds' lines
                    // keep the fields they have always had).
                    match (&w.zenqms_id, w.kind) {
                        (Some(zid), WriteKind::Unlink) => fields.push(("zenqms_id", zid)),
                        _ => fields.push(("upn", &w.upn)),
                    }
                    fields.extend([("action", w.kind.done()), ("error", &error)]);
                    // ZenQMS may have made it: the line is then an audit record too (the
                    // account, the change asked for, why), so a change whose answer was lost
                    // is never one nobody can trace (the replay report's `audit`).
                    let changes;
                    if e.outcome_unknown {
                        changes = describe(&w.changes);
                        if let (Some(zid), false) = (&w.zenqms_id, w.kind == WriteKind::Unlink) {
                            fields.push(("zenqms_id", zid));
                        }
                        fields
                            .extend([("changes", changes.as_str()), ("outcome", OUTCOME_UNKNOWN)]);
                        if w.kind == WriteKind::Deactivate
                            && let Some(reason) = self.reasons.get(&w.entra_id)
                        {
                            fields.push(("reason", reason));
                        }
                    }
                    self.log.error("ZenQMS write failed", &fields);
                    self.failed
                        .push(w.zenqms_id.clone().unwrap_or_else(|| w.entra_id.clone()));
                    if e.is_systemic() && systemic.is_none() {
                        systemic = Some(e);
                    }
                }
            }
        }
        // The service, not one user, is failing: stop before the checkpoint moves on.
        match systemic {
            Some(e) => Err(self::systemic("ZenQMS writes are failing", &e)),
            None if deferred => Err(Failure::transient(
                "a deactivation ZenQMS refused together with other changes is sent alone by the next call (this call's budget is spent)",
            )),
            None => Ok(()),
        }
    }

    fn count(&mut self, kind: WriteKind) {
        let c = &mut self.counts;
        match kind {
            WriteKind::Create => c.created += 1,
            WriteKind::Link => c.linked += 1,
            WriteKind::Update => c.updated += 1,
            WriteKind::Deactivate => c.deactivated += 1,
            WriteKind::Unlink => c.unlinked += 1,
        }
    }

    /// Deactivations ZenQMS refused together with other changes of the same write (409: an
    /// address another account holds by ZenQMS's own rule; 400/422: a value it does not
    /// take) are sent again alone, in a round of their own: a leaver never stays active over
    /// another field. (A red team: a disabled user renamed onto an address ZenQMS stored with
    /// a no-break space stayed active, notification after delta round after tick; the
    /// component's address index, which trims spaces only, did not see the clash.) The
    /// refusal is logged with the changes not written; the write's audit record is then the
    /// deactivation alone, as made.
    fn deactivate_alone(
        &mut self,
        mut writes: Vec<Write>,
        mut results: Vec<Result<ZUser, WriteError>>,
    ) -> (Vec<Write>, Vec<Result<ZUser, WriteError>>) {
        let refused: Vec<usize> = (0..writes.len())
            .filter(|&i| {
                let w = &writes[i];
                w.zenqms_id.is_some()
                    && w.changes.len() > 1
                    && deactivates(&w.changes)
                    && matches!(&results[i], Err(e) if !e.outcome_unknown
                        && !e.is_systemic()
                        && e.status.is_some_and(|s| s != 404))
            })
            .collect();
        if refused.is_empty() {
            return (writes, results);
        }
        if !crate::platform::budget::fits(self.zen.platform(), 1) {
            self.alone_deferred = true;
            return (writes, results);
        }
        let mut calls = Vec::with_capacity(refused.len());
        for &i in &refused {
            let w = &mut writes[i];
            let zid = w.zenqms_id.clone().unwrap_or_default();
            let error = results[i]
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            let others: Vec<plan::Change> = w
                .changes
                .iter()
                .filter(|c| c.field != "is_active")
                .cloned()
                .collect();
            self.log.warn(
                "ZenQMS refused a deactivation together with other changes: the deactivation is sent alone, the other changes are not written",
                &[
                    ("cause", self.cause.as_str()),
                    ("entra_id", &w.entra_id),
                    ("zenqms_id", &zid),
                    ("error", &error),
                    ("not_written", &describe(&others)),
                ],
            );
            w.changes.retain(|c| c.field == "is_active");
            w.kind = WriteKind::Deactivate;
            w.call = api::update_user(&zid, plan::patch_fields(&w.changes));
            calls.push(w.call.clone());
        }
        for (&i, again) in refused.iter().zip(self.zen.write_all(&calls)) {
            results[i] = again;
        }
        (writes, results)
    }

    /// A create that failed ambiguously (timeout, 5xx) may have happened: look the user up by
    /// external_id before sending it again, so a retry never creates a duplicate.
    fn recheck_creates(
        &self,
        writes: &[Write],
        mut results: Vec<Result<ZUser, WriteError>>,
    ) -> Vec<Result<ZUser, WriteError>> {
        let ambiguous: Vec<usize> = writes
            .iter()
            .zip(&results)
            .enumerate()
            .filter(|(_, (w, r))| {
                w.kind == WriteKind::Create
                    && matches!(r, Err(e) if e.status.is_none_or(|s| s >= 500))
            })
            .map(|(i, _)| i)
            .collect();
        if ambiguous.is_empty() {
            return results;
        }
        // The look-up and the second send are two more rounds of the step: when they do not
        // fit the budget, the creates stay failed for now (the step is done again by a later
        // call, whose look-ups by external_id find a create that did happen: no duplicate).
        let p = self.zen.platform();
        let waves = ambiguous.len().div_ceil(p.concurrency().max(1)) as u64;
        if !crate::platform::budget::fits(p, 2 * waves) {
            return results;
        }
        let lookups: Vec<Call> = ambiguous
            .iter()
            .map(|i| api::search_users(json!({ "external_id": writes[*i].entra_id }), 1))
            .collect();
        let found = self.zen.search_each(&lookups);
        let mut resend = Vec::new();
        for (i, hit) in ambiguous.into_iter().zip(found) {
            match hit {
                Ok(Some(user)) => results[i] = Ok(user),
                Ok(None) => resend.push(i),
                Err(_) => {} // still failing: keep the original error
            }
        }
        let calls: Vec<Call> = resend.iter().map(|i| writes[*i].call.clone()).collect();
        for (i, r) in resend.into_iter().zip(self.zen.write_all(&calls)) {
            results[i] = r;
        }
        results
    }

    /// Applies role changes side by side (one add and/or one remove call per user).
    pub fn apply_roles(&mut self, changes: Vec<RoleChange>) -> Result<(), Failure> {
        self.apply_role_calls(role_calls(changes))
    }

    /// Sends role calls side by side (or simulates them in a dry run) and takes in the answers.
    pub fn apply_role_calls(&mut self, about: Vec<RoleCall>) -> Result<(), Failure> {
        if about.is_empty() {
            return Ok(());
        }
        let results = if self.dry_run {
            self.simulate_roles(&about)
        } else {
            let calls: Vec<Call> = about.iter().map(|r| r.call.clone()).collect();
            self.zen.write_all(&calls)
        };
        self.absorb_roles(about, results)
    }

    /// Takes in the answers to role calls sent.
    pub fn absorb_roles(
        &mut self,
        about: Vec<RoleCall>,
        results: Vec<Result<ZUser, WriteError>>,
    ) -> Result<(), Failure> {
        let mut systemic = None;
        for (RoleCall { change, adding, .. }, result) in about.into_iter().zip(results) {
            let roles = if adding { &change.add } else { &change.remove };
            let (verb, field) = if adding {
                ("added", "roles_added")
            } else {
                ("removed", "roles_removed")
            };
            match result {
                Ok(answer) => {
                    // The call's own effect on the roles as last known: an add and a remove
                    // for one user go out in the same round, and each answer may predate the
                    // other call (or, in a dry run, both start from the same roles), so the
                    // answers' role lists would make the audit name the wrong role and leave
                    // the wrong roles known. Adding and removing are set operations (a success
                    // means the roles are there, or gone: docs/zenqms-api.md).
                    let mut user = match self.dir.get(&change.zenqms_id) {
                        Some(z) => z.clone(),
                        None => answer,
                    };
                    let before = std::mem::take(&mut user.roles);
                    user.roles = roles_after(&before, roles, adding);
                    let changes = describe_roles(verb, roles, &before, &user.roles);
                    self.dir.upsert(user);
                    let n = roles.len() as u32;
                    if adding {
                        self.counts.roles_added += n;
                    } else {
                        self.counts.roles_removed += n;
                    }
                    let message = if self.dry_run {
                        format!("plan: roles would be {verb}")
                    } else {
                        format!("ZenQMS roles {verb}")
                    };
                    self.log.info(
                        &message,
                        &[
                            ("cause", &self.cause),
                            ("entra_id", &change.entra_id),
                            ("zenqms_id", &change.zenqms_id),
                            (field, &roles.join(",")),
                            ("changes", &changes),
                        ],
                    );
                }
                Err(e) => {
                    self.counts.failed += 1;
                    let error = e.to_string();
                    let joined = roles.join(",");
                    let mut fields = vec![
                        ("cause", self.cause.as_str()),
                        ("entra_id", &change.entra_id),
                        ("zenqms_id", &change.zenqms_id),
                        (field, &joined),
                        ("error", &error),
                    ];
                    // As for a write whose answer was lost: an audit record of what may
                    // have been made.
                    let changes;
                    if e.outcome_unknown {
                        let before = self
                            .dir
                            .get(&change.zenqms_id)
                            .map(|z| z.roles.clone())
                            .unwrap_or_default();
                        let after = roles_after(&before, roles, adding);
                        changes = describe_roles(verb, roles, &before, &after);
                        fields
                            .extend([("changes", changes.as_str()), ("outcome", OUTCOME_UNKNOWN)]);
                    }
                    self.log.error("ZenQMS role change failed", &fields);
                    if e.is_systemic() && systemic.is_none() {
                        systemic = Some(e);
                    }
                }
            }
        }
        match systemic {
            Some(e) => Err(self::systemic("ZenQMS role changes are failing", &e)),
            None => Ok(()),
        }
    }
}

/// The `outcome` of a failed write or role call that ZenQMS may have made (a timeout, a 5xx:
/// [`WriteError::outcome_unknown`]); the replay report lists such lines in its audit trail.
pub const OUTCOME_UNKNOWN: &str = "unknown: ZenQMS did not answer; it may have made the change";

/// The `reason` of a write that sets an inactive account active again.
pub const REACTIVATED: &str = "enabled and in scope in Entra";

/// Whether `changes` set `is_active` from false to true.
/// Whether `changes` set the account inactive.
fn deactivates(changes: &[plan::Change]) -> bool {
    changes
        .iter()
        .any(|c| c.field == "is_active" && c.after == Value::Bool(false))
}

fn reactivates(changes: &[plan::Change]) -> bool {
    changes.iter().any(|c| {
        c.field == "is_active" && c.after == Value::Bool(true) && c.before == Value::Bool(false)
    })
}

/// The roles a successful add (or remove) of `roles` leaves from `before`, sorted: adding and
/// removing are set operations (docs/zenqms-api.md).
fn roles_after(before: &[String], roles: &[String], adding: bool) -> Vec<String> {
    let mut after = before.to_vec();
    if adding {
        after.extend(roles.iter().cloned());
    } else {
        after.retain(|r| !roles.contains(r));
    }
    after.sort();
    after.dedup();
    after
}

/// One role call and what it is about.
pub struct RoleCall {
    pub call: Call,
    pub change: RoleChange,
    /// Adding (else removing) the change's roles.
    pub adding: bool,
}

/// The calls for role changes: one add and/or one remove per user.
pub fn role_calls(changes: Vec<RoleChange>) -> Vec<RoleCall> {
    let mut out = Vec::new();
    for change in changes {
        if !change.add.is_empty() {
            out.push(RoleCall {
                call: api::add_roles(&change.zenqms_id, &change.add),
                change: change.clone(),
                adding: true,
            });
        }
        if !change.remove.is_empty() {
            out.push(RoleCall {
                call: api::remove_roles(&change.zenqms_id, &change.remove),
                change,
                adding: false,
            });
        }
    }
    out
}

/// A create's fields as changes from nothing, for the audit log.
pub fn create_changes(new: &api::NewUser) -> Vec<plan::Change> {
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
/// The audit record of a write's changes: `field: before -> after; …` (values as JSON), the
/// fields a write exists for first (`is_active`, `external_id`: the deactivation, the link),
/// then `email`, then the rest. The record is one log field, capped like any (1,024
/// characters): a red team's 1,151-character title stored in ZenQMS pushed the link and the
/// deactivation out of it. Values are whole (a second red team: cut at 120 characters, a
/// 122-character title changed at its end read the same before and after); the cap cuts the
/// record's tail only.
pub fn describe(changes: &[plan::Change]) -> String {
    let rank = |field: &str| match field {
        "is_active" => 0,
        "external_id" => 1,
        "email" => 2,
        _ => 3,
    };
    // By rank, a pass each (a sort grew the component by kilobytes).
    (0..4)
        .flat_map(|r| changes.iter().filter(move |c| rank(c.field) == r))
        .map(|c| format!("{}: {} -> {}", c.field, c.before, c.after))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The audit record of a role call: the roles it `verb` (added or removed) first, then the
/// account's roles before and after (an account holding many roles would otherwise push the
/// role changed out of the capped field: a red team's 14 roles).
fn describe_roles(verb: &str, roles: &[String], before: &[String], after: &[String]) -> String {
    format!("roles {verb}: {roles:?}; roles: {before:?} -> {after:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};
    use crate::platform::{HttpResult, Method, Response};
    use crate::testkit::Offline;

    fn config() -> Config {
        config::test_support::with_keys(&[])
    }

    fn user(id: &str, email: &str, external_id: Option<&str>) -> ZUser {
        ZUser {
            id: id.into(),
            email: email.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            title: String::new(),
            is_active: true,
            external_id: external_id.map(str::to_string),
            roles: Vec::new(),
        }
    }

    fn answer(status: u16, body: serde_json::Value) -> HttpResult {
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            unanswered_before: None,
        })
    }

    /// A writer for run `run-1` over `users`, on the test platform.
    fn applier<'a>(p: &'a Offline, config: &'a Config, users: Vec<ZUser>) -> Applier<'a> {
        Applier::new(
            Zenqms::new(p, config),
            Log::new(p),
            "run-1",
            Directory::new(users),
        )
    }

    fn link(z: &ZUser, entra_id: &str) -> Planned {
        Planned {
            entra_id: entra_id.into(),
            upn: z.email.clone(),
            action: Action::Write {
                zenqms_id: z.id.clone(),
                kind: WriteKind::Link,
                changes: vec![plan::Change {
                    field: "external_id",
                    before: Value::Null,
                    after: Value::String(entra_id.into()),
                }],
            },
            after_batch: false,
        }
    }

    #[test]
    fn a_dry_run_sends_nothing_and_logs_what_it_would_write() {
        // `Offline` without a responder fails the test on any request.
        let p = Offline::default();
        let config = config();
        let z = user("z1", "ada@acme.com", None);
        let mut out = applier(&p, &config, vec![z.clone()]);
        out.dry_run = true;
        out.apply(vec![link(&z, "e1")]).unwrap();
        assert_eq!(out.counts.linked, 1);
        assert_eq!(
            out.dir.get("z1").unwrap().external_id.as_deref(),
            Some("e1")
        );
        let log = p.log_text();
        assert!(log.contains("plan: would be linked"), "{log}");
        assert!(log.contains("external_id: null -> \"e1\""), "{log}");
    }

    #[test]
    fn each_write_is_counted_and_logged_and_one_users_failure_does_not_stop_the_rest() {
        // z1's write succeeds; z2's is refused (422, about that user alone).
        let p = Offline::answering(|req| {
            assert_eq!(req.method, Method::Patch);
            if req.url.ends_with("/z1") {
                answer(
                    200,
                    serde_json::json!({"id": "z1", "email": "a@acme.com",
                    "is_active": true, "external_id": "e1"}),
                )
            } else {
                answer(422, serde_json::json!({"error": "invalid"}))
            }
        });
        let config = config();
        let (z1, z2) = (
            user("z1", "a@acme.com", None),
            user("z2", "b@acme.com", None),
        );
        let mut out = applier(&p, &config, vec![z1.clone(), z2.clone()]);
        out.apply(vec![link(&z1, "e1"), link(&z2, "e2")]).unwrap();
        assert_eq!((out.counts.linked, out.counts.failed), (1, 1));
        assert_eq!(out.failed, vec!["z2".to_string()]);
        let log = p.log_text();
        assert!(
            log.contains("ZenQMS user linked cause=run-1 entra_id=e1"),
            "{log}"
        );
        assert!(log.contains("ZenQMS write failed"), "{log}");
        assert!(log.contains("action=linked"), "{log}");
        assert_eq!(p.sent.borrow().len(), 2);
    }

    #[test]
    fn a_failing_service_stops_the_call_after_every_answer_is_logged() {
        let p = Offline::answering(|_| answer(503, serde_json::json!({})));
        let config = config();
        let (z1, z2) = (
            user("z1", "a@acme.com", None),
            user("z2", "b@acme.com", None),
        );
        let mut out = applier(&p, &config, vec![z1.clone(), z2.clone()]);
        let err = out
            .apply(vec![link(&z1, "e1"), link(&z2, "e2")])
            .unwrap_err();
        assert!(err.retryable, "{}", err.message);
        assert_eq!(out.counts.failed, 2);
        assert_eq!(p.log_text().matches("ZenQMS write failed").count(), 2);
    }

    #[test]
    fn an_ambiguous_create_is_looked_up_before_it_is_sent_again() {
        // The create times out, but ZenQMS made the user: the look-up by external_id finds
        // it, and the create is not sent a second time.
        let p = Offline::answering(|req| match req.method {
            Method::Post if req.url.ends_with("/v2/users") => {
                Err(crate::platform::HttpError::Timeout)
            }
            _ => answer(
                200,
                serde_json::json!({"data": [{"id": "z9", "email": "n@acme.com",
                "is_active": true, "external_id": "e9"}], "total": 1}),
            ),
        });
        let config = config();
        let mut out = applier(&p, &config, Vec::new());
        let new = api::NewUser {
            email: "n@acme.com".into(),
            first_name: "New".into(),
            last_name: "Hire".into(),
            title: String::new(),
            is_active: true,
            external_id: Some("e9".into()),
        };
        out.apply(vec![Planned {
            entra_id: "e9".into(),
            upn: "n@acme.com".into(),
            action: Action::Create(new),
            after_batch: false,
        }])
        .unwrap();
        assert_eq!((out.counts.created, out.counts.failed), (1, 0));
        let creates = p
            .sent
            .borrow()
            .iter()
            .filter(|r| r.method == Method::Post && r.url.ends_with("/v2/users"))
            .count();
        assert_eq!(creates, 1, "the create was sent once");
        assert!(out.dir.get("z9").is_some());
    }
}
