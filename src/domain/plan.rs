//! The pure planner: what to do in ZenQMS for each Entra user, by the product decisions
//! (README, "What the sync does (product rules)"; the team's DESIGN.md). No I/O here;
//! `write::Applier` carries out what this decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde_json::{Map, Value};

use crate::clients::zenqms::api::{NewUser, ZUser};
use crate::config::is_guid;
use crate::domain::address::{Address, Domains};
use crate::domain::entra::{EntraUser, normalize_email};

/// What linking an existing ZenQMS account by email needs beyond the directory (the trust
/// rule, README "What the sync does"): the domains the tenant has verified, and for each
/// candidate address the Entra users Graph says hold it (`GET /users?$filter=mail eq '…'`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub domains: Domains,
    /// Candidate address -> ids (lowercase) of the Entra users whose `mail` it is.
    pub holders: BTreeMap<String, BTreeSet<String>>,
}

impl Trust {
    /// Counts the users of `users` (the page or notification batch being planned) among the
    /// holders of each address Graph was asked about, when their mail is that address as this
    /// rule compares addresses (ignoring case and surrounding spaces). Graph compares `mail`
    /// exactly but for case: a holder whose stored mail has a space around it is not among
    /// Graph's answer, yet holds the address here, and two holders link neither (a red team:
    /// with the real holder's mail padded, another object with the bare address took the
    /// account).
    pub fn add_batch_holders(&mut self, users: &[EntraUser]) {
        for u in users {
            let Some(address) = u.match_address() else {
                continue;
            };
            if let Some(holders) = self.holders.get_mut(address.as_str()) {
                holders.insert(u.id.to_ascii_lowercase());
            }
        }
    }
}

/// The addresses whose holders Graph must be asked for before `users` are planned: those of
/// users not linked yet whose (valid) address belongs to exactly one ZenQMS user with no
/// external_id, and who pass the other linking conditions (complete; a verified domain).
pub fn link_candidates(
    users: &[EntraUser],
    dir: &Directory,
    domains: &Domains,
) -> BTreeSet<Address> {
    users
        .iter()
        .filter(|u| u.account_enabled.is_some() && u.mapped().is_some())
        .filter(|u| dir.by_external_id(&u.id).is_none())
        .filter_map(EntraUser::match_address)
        .filter(|a| domains.verified(a.domain()))
        .filter(|a| match dir.by_email(a.as_str()).as_slice() {
            [z] => z.external_id.as_deref().is_none_or(|e| e.trim().is_empty()),
            _ => false,
        })
        .collect()
}

/// The ZenQMS users, indexed the two ways the matching rule needs.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: BTreeMap<String, ZUser>,
    /// Entra id -> the ZenQMS users linked to it: one, unless two accounts carry the same link
    /// (ZenQMS does not keep external_id unique).
    by_external: HashMap<String, BTreeSet<String>>,
    by_email: HashMap<String, BTreeSet<String>>,
}

impl Directory {
    pub fn new(users: impl IntoIterator<Item = ZUser>) -> Self {
        let mut d = Directory::default();
        for u in users {
            d.upsert(u);
        }
        d
    }

    /// Inserts or replaces a user (e.g. with the body ZenQMS returned after a write).
    pub fn upsert(&mut self, user: ZUser) {
        self.remove(&user.id.clone());
        if let Some(ext) = link_of(&user) {
            self.by_external
                .entry(ext)
                .or_default()
                .insert(user.id.clone());
        }
        self.by_email
            .entry(normalize_email(&user.email))
            .or_default()
            .insert(user.id.clone());
        self.users.insert(user.id.clone(), user);
    }

    /// Removes a user from the directory (and its indexes).
    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.users.remove(id) {
            if let Some(ext) = link_of(&old)
                && let Some(set) = self.by_external.get_mut(&ext)
            {
                set.remove(id);
                if set.is_empty() {
                    self.by_external.remove(&ext);
                }
            }
            if let Some(set) = self.by_email.get_mut(&normalize_email(&old.email)) {
                set.remove(id);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&ZUser> {
        self.users.get(id)
    }

    /// The ZenQMS user linked to an Entra id (the first by ZenQMS id when several are: see
    /// [`Directory::linked_to`]).
    pub fn by_external_id(&self, entra_id: &str) -> Option<&ZUser> {
        self.by_external
            .get(&entra_id.to_ascii_lowercase())
            .and_then(|ids| ids.first())
            .and_then(|id| self.users.get(id))
    }

    /// The ZenQMS user linked to an Entra id when it is the only one: whose roles to compute
    /// (two accounts carrying one link are a conflict: neither gets role calls).
    pub fn linked_once(&self, entra_id: &str) -> Option<&ZUser> {
        match self.linked_to(entra_id).as_slice() {
            [z] => Some(z),
            _ => None,
        }
    }

    /// Every ZenQMS user linked to an Entra id, in ZenQMS id order.
    pub fn linked_to(&self, entra_id: &str) -> Vec<&ZUser> {
        self.by_external
            .get(&entra_id.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|id| self.users.get(id))
            .collect()
    }

    pub fn by_email(&self, email: &str) -> Vec<&ZUser> {
        self.by_email
            .get(&normalize_email(email))
            .into_iter()
            .flatten()
            .filter_map(|id| self.users.get(id))
            .collect()
    }

    pub fn users(&self) -> impl Iterator<Item = &ZUser> {
        self.users.values()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Users whose id lies between the bounds, in id order (none when the bounds are crossed).
    pub fn between<'s>(
        &'s self,
        from: Bound<&str>,
        to: Bound<&str>,
    ) -> impl DoubleEndedIterator<Item = &'s ZUser> + 's {
        // BTreeMap::range panics on crossed bounds: check them first.
        let open = match (from, to) {
            (Bound::Included(a), Bound::Included(b)) => a <= b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a < b
            }
            _ => true,
        };
        let range = open.then(|| self.users.range::<str, _>((from, to)).map(|(_, u)| u));
        range.into_iter().flatten()
    }

    /// Users linked to an Entra object id (a GUID external_id).
    pub fn linked(&self) -> impl Iterator<Item = &ZUser> {
        self.users.values().filter(|u| link_of(u).is_some())
    }
}

/// The Entra object id a ZenQMS user is linked to: its external_id when that is a GUID.
pub fn link_of(user: &ZUser) -> Option<String> {
    user.external_id
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| is_guid(e))
}

/// One field changed by a write, with its value before and after (the audit trail's unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: &'static str,
    pub before: Value,
    pub after: Value,
}

/// What kind of write a ZenQMS user write is (the planner plans `Link`, `Update` and
/// `Deactivate`; `Create` and `Unlink` are written by their own paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Create a user for an Entra user with no ZenQMS account.
    Create,
    /// Set external_id on a user matched by email (and bring its fields in line).
    Link,
    /// Change mapped fields of a linked user.
    Update,
    /// Set a linked user inactive (disabled, deleted or gone from Entra).
    Deactivate,
    /// Clear a user's external_id (`on-delete`).
    Unlink,
}

impl WriteKind {
    /// The word the audit log uses for a write of this kind that happened: "ZenQMS user
    /// created", "plan: would be linked", `action=deactivated`.
    pub fn done(self) -> &'static str {
        match self {
            WriteKind::Create => "created",
            WriteKind::Link => "linked",
            WriteKind::Update => "updated",
            WriteKind::Deactivate => "deactivated",
            WriteKind::Unlink => "unlinked",
        }
    }
}

/// The planner's decision for one Entra user.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(NewUser),
    Write {
        zenqms_id: String,
        kind: WriteKind,
        changes: Vec<Change>,
    },
    Unchanged {
        zenqms_id: String,
    },
    /// Not synced; the reason is for the log.
    Skip {
        reason: String,
        missing: Vec<&'static str>,
    },
    /// Matching is ambiguous: nothing is touched.
    Conflict {
        reason: String,
    },
    /// Not in the configured scope and not linked: not provisioned, nothing touched (counted,
    /// not logged per user: most of a tenant may be out of scope).
    OutOfScope,
}

/// A decision together with the user it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub entra_id: String,
    pub upn: String,
    pub action: Action,
    /// To be written only after the rest of its batch: it takes an email that another user of
    /// the batch moves away from (ZenQMS refuses it while the email is taken). See [`staged`].
    pub after_batch: bool,
}

enum Match<'a> {
    Linked(&'a ZUser),
    ByEmail(&'a ZUser),
    None,
    Conflict(String),
}

fn find<'a>(user: &EntraUser, dir: &'a Directory) -> Match<'a> {
    if let Some(z) = dir.by_external_id(&user.id) {
        return Match::Linked(z);
    }
    let Some(email) = user.match_address() else {
        return Match::None;
    };
    match dir.by_email(email.as_str()).as_slice() {
        [] => Match::None,
        [z] => match (link_of(z), z.external_id.as_deref().map(str::trim)) {
            // An account this batch plans to create has no ZenQMS id yet: named by its user.
            (Some(other), _) if z.id.starts_with(PLANNED_PREFIX) => Match::Conflict(format!(
                "email {email} is planned for a ZenQMS user this sync creates for Entra user {other}"
            )),
            (Some(other), _) => Match::Conflict(format!(
                "email {email} belongs to ZenQMS user {} already linked to Entra user {other}",
                z.id
            )),
            // An external_id from another system is not ours to overwrite.
            (None, Some(ext)) if !ext.is_empty() => Match::Conflict(format!(
                "email {email} belongs to ZenQMS user {} whose external_id '{ext}' is not an Entra link",
                z.id
            )),
            (None, _) => Match::ByEmail(z),
        },
        many => Match::Conflict(format!(
            "email {email} matches {} ZenQMS users ({})",
            many.len(),
            many.iter()
                .map(|z| z.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn change(changes: &mut Vec<Change>, field: &'static str, before: Value, after: Value) {
    if before != after {
        changes.push(Change {
            field,
            before,
            after,
        });
    }
}

/// Plans one Entra user against the directory, under the linking rule of `trust`.
pub fn plan_user(user: &EntraUser, dir: &Directory, trust: &Trust) -> Action {
    if !user.in_scope {
        return out_of_scope(user, dir);
    }
    // Two accounts carrying one link: which is the user's is not ours to decide. A leaver's
    // are all deactivated ([`leaver_duplicates`]); anyone else's are left as they are.
    let linked = dir.linked_to(&user.id);
    if linked.len() > 1 && user.account_enabled == Some(false) {
        // Deactivated, every one ([`leaver_duplicates`] the others), nothing else written.
        return match linked.iter().find(|z| z.is_active) {
            Some(z) => deactivate(z),
            None => Action::Unchanged {
                zenqms_id: linked[0].id.clone(),
            },
        };
    }
    if linked.len() > 1 {
        return Action::Conflict {
            reason: format!(
                "Entra user {} is linked to {} ZenQMS users ({}): nothing written; keep the link on one of them in ZenQMS",
                user.id,
                linked.len(),
                linked
                    .iter()
                    .map(|z| z.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    let matched = find(user, dir);
    if let Match::Conflict(reason) = matched {
        return Action::Conflict { reason };
    }
    let Some(enabled) = user.account_enabled else {
        return Action::Skip {
            reason: "accountEnabled was not returned by Graph".into(),
            missing: vec!["accountEnabled"],
        };
    };
    let (zuser, linking) = match matched {
        Match::Linked(z) => (z, false),
        Match::ByEmail(z) => {
            if let Some(refused) = refuse_link(user, z, trust) {
                return refused;
            }
            (z, true)
        }
        Match::Conflict(_) => unreachable!("handled above"),
        Match::None => {
            return match user.mapped() {
                _ if !enabled => Action::Skip {
                    reason: "disabled in Entra and not in ZenQMS".into(),
                    missing: Vec::new(),
                },
                None => skip_incomplete(user, ""),
                Some(m) => Action::Create(NewUser {
                    email: m.email,
                    first_name: m.first_name,
                    last_name: m.last_name,
                    title: m.title,
                    is_active: true,
                    external_id: Some(user.id.clone()),
                }),
            };
        }
    };
    let mut changes = Vec::new();
    // Linking sets the link; a link stored in another form (case, padding: made by hand or by
    // another tool) is rewritten to the Entra id as Graph gives it, so that every later
    // look-up by external_id (notifications, group changes) finds it.
    change(
        &mut changes,
        "external_id",
        zuser.external_id.clone().into(),
        user.id.clone().into(),
    );
    match user.mapped() {
        Some(m) => {
            // Written whenever the stored value differs at all (padding and case included).
            if zuser.email != m.email {
                let owner = dir
                    .by_email(&m.email)
                    .into_iter()
                    .find(|o| o.id != zuser.id);
                match owner {
                    // A leaver's new address taken by someone else must not keep the
                    // leaver active: the address stays as it is, the rest is written.
                    Some(_) if !enabled && !linking => {}
                    Some(owner) => {
                        return Action::Conflict {
                            reason: format!(
                                "new email {} is already used by ZenQMS user {}",
                                m.email, owner.id
                            ),
                        };
                    }
                    None => change(
                        &mut changes,
                        "email",
                        zuser.email.clone().into(),
                        m.email.into(),
                    ),
                }
            }
            for (field, before, after) in [
                ("first_name", &zuser.first_name, m.first_name),
                ("last_name", &zuser.last_name, m.last_name),
                ("title", &zuser.title, m.title),
            ] {
                change(&mut changes, field, before.clone().into(), after.into());
            }
            change(
                &mut changes,
                "is_active",
                zuser.is_active.into(),
                enabled.into(),
            );
        }
        // Incomplete (or a refused address): only a linked leaver's deactivation is written.
        None if !enabled && zuser.is_active && !linking => {
            change(
                &mut changes,
                "is_active",
                zuser.is_active.into(),
                false.into(),
            );
        }
        None => return skip_incomplete(user, ""),
    }
    let kind = if linking {
        WriteKind::Link
    } else if zuser.is_active && !enabled {
        WriteKind::Deactivate
    } else {
        WriteKind::Update
    };
    if changes.is_empty() {
        Action::Unchanged {
            zenqms_id: zuser.id.clone(),
        }
    } else {
        Action::Write {
            zenqms_id: zuser.id.clone(),
            kind,
            changes,
        }
    }
}

/// A user outside the scope: its linked account is deactivated like a leaver's (the link and
/// every field kept; the guard counts it); anyone else is neither created nor linked.
fn out_of_scope(user: &EntraUser, dir: &Directory) -> Action {
    match dir.by_external_id(&user.id) {
        Some(z) if z.is_active => deactivate(z),
        Some(z) => Action::Unchanged {
            zenqms_id: z.id.clone(),
        },
        None => Action::OutOfScope,
    }
}

/// Why `user` may not link the unlinked ZenQMS user `z` its address matches, if it may not:
/// it is incomplete, the address's domain is not verified, or Graph does not confirm that
/// this user alone holds the address.
fn refuse_link(user: &EntraUser, z: &ZUser, trust: &Trust) -> Option<Action> {
    let not_linked = format!("ZenQMS user {} not linked", z.id);
    // An inactive account no Entra user is linked to is a former holder's (a recycled
    // address: a new hire given j.smith@ would take over John's account, its history and its
    // roles, and switch it back on) or a returning employee's: which it is, only an admin can
    // tell. Never claimed by email; an admin gives it by setting its external_id (or
    // reactivates it, and the next sync links it).
    if !z.is_active {
        return Some(match user.account_enabled {
            Some(false) => Action::Skip {
                reason: format!(
                    "disabled in Entra; its address matches inactive ZenQMS user {}, which is not linked: nothing to do",
                    z.id
                ),
                missing: Vec::new(),
            },
            _ => Action::Conflict {
                reason: format!(
                    "email matches inactive ZenQMS user {} that no Entra user is linked to (a former holder's account, or this user's from before): {not_linked} nor reactivated; to give it to this user set its external_id to {} in ZenQMS, or reactivate it there",
                    z.id, user.id
                ),
            },
        });
    }
    if user.mapped().is_none() {
        let why = format!("an incomplete Entra user never links an existing account: {not_linked}");
        return Some(skip_incomplete(user, &why));
    }
    let address = user.match_address()?;
    let domain = address.domain();
    if !trust.domains.verified(domain) {
        return Some(Action::Conflict {
            reason: format!(
                "email domain {domain} is not a verified domain of the tenant (from {}): {not_linked}",
                trust.domains.source()
            ),
        });
    }
    let Some(holders) = trust.holders.get(address.as_str()) else {
        return Some(Action::Conflict {
            reason: format!(
                "Graph was not asked which Entra users hold email {address}: {not_linked}"
            ),
        });
    };
    let others: Vec<&str> = holders
        .iter()
        .map(String::as_str)
        .filter(|h| *h != user.id)
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(Action::Conflict {
        reason: format!(
            "email {address} is the mail of {} Entra users ({}, {}): {not_linked}",
            others.len() + 1,
            user.id,
            others.join(", ")
        ),
    })
}

/// The skip for a user missing required fields or whose mail the address rule refuses.
fn skip_incomplete(user: &EntraUser, then: &str) -> Action {
    let missing = user.missing_fields();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing required fields: {}", missing.join(", ")));
    }
    if let Some(e) = user.address_error() {
        parts.push(e.to_string());
    }
    if !then.is_empty() {
        parts.push(then.to_string());
    }
    Action::Skip {
        reason: parts.join("; "),
        missing,
    }
}

/// The deactivations of a leaver's other accounts: when two ZenQMS users carry the same
/// link and the user leaves (disabled, or out of scope), every active one is deactivated,
/// not only the one its plan names (a bug hunt: the second account of a disabled user stayed
/// active through notifications and delta rounds).
pub fn leaver_duplicates(users: &[EntraUser], plans: &[Planned], dir: &Directory) -> Vec<Planned> {
    let mut out = Vec::new();
    for (u, p) in users.iter().zip(plans) {
        if u.in_scope && u.account_enabled != Some(false) {
            continue;
        }
        // The account the user's own plan deactivates, if it does.
        let planned = match &p.action {
            Action::Write {
                zenqms_id, changes, ..
            } if changes
                .iter()
                .any(|c| c.field == "is_active" && c.after == Value::Bool(false)) =>
            {
                Some(zenqms_id.as_str())
            }
            _ => None,
        };
        for z in dir.linked_to(&u.id) {
            if z.is_active && Some(z.id.as_str()) != planned {
                out.push(Planned {
                    entra_id: u.id.clone(),
                    upn: u.upn.clone(),
                    action: deactivate(z),
                    after_batch: false,
                });
            }
        }
    }
    out
}

/// The conflict lines for the other holders of an address that made a batch user's link a
/// conflict, when they are not in the batch themselves ("logged for both").
fn other_holders(users: &[EntraUser], plans: &[Planned], trust: &Trust) -> Vec<Planned> {
    let in_batch: BTreeSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut reported = BTreeSet::new();
    let mut out = Vec::new();
    for (u, p) in users.iter().zip(plans) {
        if !matches!(p.action, Action::Conflict { .. }) {
            continue;
        }
        let Some(address) = u.match_address() else {
            continue;
        };
        let Some(holders) = trust.holders.get(address.as_str()) else {
            continue;
        };
        for other in holders {
            if in_batch.contains(other.as_str()) || !reported.insert(other.clone()) {
                continue;
            }
            out.push(Planned {
                entra_id: other.clone(),
                upn: String::new(),
                action: Action::Conflict {
                    reason: format!(
                        "email {address} is also the mail of Entra user {}: nothing linked for either",
                        u.id
                    ),
                },
                after_batch: false,
            });
        }
    }
    out
}

/// The address a plan gives an account (a create's, an email change's new one) and the one it
/// moves an account away from (an email change's old one).
fn email_moves(action: &Action) -> (Option<&str>, Option<&str>) {
    match action {
        Action::Create(new) => (Some(new.email.as_str()), None),
        Action::Write { changes, .. } => changes
            .iter()
            .find(|c| c.field == "email")
            .map_or((None, None), |c| (c.after.as_str(), c.before.as_str())),
        _ => (None, None),
    }
}

/// The start of the stand-in id an account planned for creation has in the directory while
/// its batch is planned (`(planned 3)`): never shown as a ZenQMS id.
const PLANNED_PREFIX: &str = "(planned ";

/// How to take back one planned effect applied to the directory while planning a batch.
enum Undo {
    Remove(String),
    Restore(ZUser),
}

/// Applies one planned decision to the directory, remembering how to take it back.
fn apply_planned(i: usize, action: &Action, dir: &mut Directory, undo: &mut Vec<Undo>) {
    match action {
        Action::Create(new) => {
            let id = format!("{PLANNED_PREFIX}{i})");
            dir.upsert(expected_user(&id, new));
            undo.push(Undo::Remove(id));
        }
        Action::Write {
            zenqms_id, changes, ..
        } => {
            if let Some(z) = dir.get(zenqms_id).cloned() {
                dir.upsert(apply_changes(&z, changes));
                undo.push(Undo::Restore(z));
            }
        }
        _ => {}
    }
}

/// The most passes [`plan_batch`] makes over a batch's conflicts: a chain of moved addresses
/// longer than this, planned head first, leaves its last users in conflict until a later sync.
pub const CHAIN_PASSES: usize = 16;

/// Plans a batch in order. Each decision is applied to the directory before the next user is
/// planned, so two Entra users in one batch cannot claim the same email or ZenQMS user; the
/// directory is restored afterwards (cost: the batch, not the directory).
///
/// A user in conflict over an email that another user of the batch moves away from (an address
/// given up and reused) is planned again with the whole batch applied; if that resolves it, its
/// plan is marked `after_batch`, so one sync converges instead of leaving it for the next.
///
/// Other holders of an address whose link `trust` refused are appended as conflicts of their
/// own (not `after_batch`) when they are not in the batch.
pub fn plan_batch(users: &[EntraUser], dir: &mut Directory, trust: &Trust) -> Vec<Planned> {
    let mut undo = Vec::new();
    // Addresses an earlier plan of the batch moves an account away from: a later user taking
    // one (a create, an email change) is planned free of it only because that move is assumed
    // made, so it waits for the move's answer (`after_batch`), and a move that fails makes it
    // a conflict again instead of a write ZenQMS's own uniqueness check alone would refuse.
    let mut given_up: BTreeSet<String> = BTreeSet::new();
    let mut plans: Vec<Planned> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let action = plan_user(u, dir, trust);
            let (takes, gives_up) = email_moves(&action);
            let after_batch = takes.is_some_and(|e| given_up.contains(&normalize_email(e)));
            given_up.extend(gives_up.map(normalize_email));
            apply_planned(i, &action, dir, &mut undo);
            Planned {
                entra_id: u.id.clone(),
                upn: u.upn.clone(),
                action,
                after_batch,
            }
        })
        .collect();
    let moves_an_email = plans.iter().any(|p| {
        matches!(&p.action, Action::Write { changes, .. } if changes.iter().any(|c| c.field == "email"))
    });
    // Again while that resolves someone: in a chain (X takes b from Y, Y takes c from Z) with
    // X planned first, Y's move is planned only in the pass that resolves Y, and X only in the
    // next (a red team: X stayed a conflict and was never created). Each pass resolves one
    // user at least or ends; at most [`CHAIN_PASSES`] passes, since every pass plans the
    // batch's conflicts again (a chain of 300 planned head first took 15 s of CPU).
    let mut again = moves_an_email;
    let mut passes = 0;
    while again && passes < CHAIN_PASSES {
        passes += 1;
        again = false;
        for (i, u) in users.iter().enumerate() {
            if !matches!(plans[i].action, Action::Conflict { .. }) {
                continue;
            }
            let action = plan_user(u, dir, trust);
            if !matches!(action, Action::Conflict { .. }) {
                apply_planned(i, &action, dir, &mut undo);
                plans[i].action = action;
                plans[i].after_batch = true;
                again = true;
            }
        }
    }
    for step in undo.into_iter().rev() {
        match step {
            Undo::Remove(id) => dir.remove(&id),
            Undo::Restore(z) => dir.upsert(z),
        }
    }
    let others = other_holders(users, &plans, trust);
    plans.extend(others);
    let duplicates = leaver_duplicates(users, &plans, dir);
    plans.extend(duplicates);
    plans
}

/// Splits a batch's plans into those to write now and the Entra ids to plan again with
/// [`plan_later`] once those writes are made.
pub fn staged(plans: Vec<Planned>) -> (Vec<Planned>, BTreeSet<String>) {
    let (later, now): (Vec<Planned>, Vec<Planned>) = plans.into_iter().partition(|p| p.after_batch);
    (now, later.into_iter().map(|p| p.entra_id).collect())
}

/// Plans the users [`staged`] held back, against the directory as ZenQMS answered the rest of
/// their batch (so a write of theirs that failed makes them a conflict again, never a 409).
pub fn plan_later(
    users: &[EntraUser],
    later: &BTreeSet<String>,
    dir: &mut Directory,
    trust: &Trust,
) -> Vec<Planned> {
    let again: Vec<EntraUser> = users
        .iter()
        .filter(|u| later.contains(&u.id))
        .cloned()
        .collect();
    plan_batch(&again, dir, trust)
}

/// The users a round of [`plan_later`] left for the next: only when fewer than the round
/// took (each user of a chain waits for an earlier one only), else none, so the rounds end.
pub fn fewer_later(taken: BTreeSet<String>, left: BTreeSet<String>) -> BTreeSet<String> {
    if left.len() < taken.len() {
        left
    } else {
        BTreeSet::new()
    }
}

/// The user a create is expected to produce.
pub fn expected_user(id: &str, new: &NewUser) -> ZUser {
    ZUser {
        id: id.to_string(),
        email: new.email.clone(),
        first_name: new.first_name.clone(),
        last_name: new.last_name.clone(),
        title: new.title.clone(),
        is_active: new.is_active,
        external_id: new.external_id.clone(),
        roles: Vec::new(),
    }
}

/// The user after `changes` (what ZenQMS should return from the PATCH).
pub fn apply_changes(user: &ZUser, changes: &[Change]) -> ZUser {
    let mut u = user.clone();
    for c in changes {
        let s = c.after.as_str().unwrap_or_default().to_string();
        match c.field {
            "email" => u.email = s,
            "first_name" => u.first_name = s,
            "last_name" => u.last_name = s,
            "title" => u.title = s,
            "is_active" => u.is_active = c.after.as_bool().unwrap_or(u.is_active),
            "external_id" => u.external_id = c.after.as_str().map(str::to_string),
            _ => {}
        }
    }
    u
}

/// The PATCH body for a set of changes.
pub fn patch_fields(changes: &[Change]) -> Map<String, Value> {
    changes
        .iter()
        .map(|c| (c.field.to_string(), c.after.clone()))
        .collect()
}

/// Linked ZenQMS users whose Entra object no longer exists in the tenant, and are still active:
/// the leavers a full sync deactivates (after the caller confirms each with Graph).
pub fn leavers<'a>(dir: &'a Directory, entra_ids: &BTreeSet<String>) -> Vec<&'a ZUser> {
    dir.linked()
        .filter(|z| z.is_active)
        .filter(|z| link_of(z).is_some_and(|id| !entra_ids.contains(&id)))
        .collect()
}

/// The write that deactivates a leaver.
pub fn deactivate(user: &ZUser) -> Action {
    Action::Write {
        zenqms_id: user.id.clone(),
        kind: WriteKind::Deactivate,
        changes: vec![Change {
            field: "is_active",
            before: Value::Bool(user.is_active),
            after: Value::Bool(false),
        }],
    }
}

#[cfg(test)]
mod tests;
