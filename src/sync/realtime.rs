//! Real-time work: users and groups named by change notifications or a delta round.
//!
//! A notification carries only an id, so each user is re-read from Graph and planned exactly as
//! the initial sync plans it; ZenQMS is searched for that user only (by external_id and email),
//! never loaded whole. A group change recomputes the holders of the roles mapped to it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::carried;
use crate::clients::graph::Graph;
use crate::clients::zenqms::{Zenqms, api};
use crate::config::{Config, RoleMapping};
use crate::domain::address::{self, Domains};
use crate::domain::entra::EntraUser;
use crate::domain::guard;
use crate::domain::plan::{self, Directory, Planned, Trust};
use crate::domain::roles;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;
use crate::platform::budget::{self, Step};
use crate::platform::round::{Round, Slot};
use crate::state::{DeactivationWindow, MembersCarry, Queue};
use crate::write::Applier;

/// Most users handled in one step: 300 are one `$batch` of `id in` reads (20 × 15).
const USER_CHUNK: usize = 300;

/// Rounds a call keeps after reading the guard's base (its deactivations and the rest of
/// its step): see [`Realtime::read_linked_base`].
///
/// (Requests a queued group costs a step: its ancestry read for the scope and for the roles.)
const GROUP_REQUESTS: usize = 2;

/// The warning for a user whose link two or more accounts carry, on the group path (said by
/// the directory's duplicates and by the grant check's, the same rule: [`roles::plan_roles`]).
const DUPLICATE_LINK_ROLES: &str = "user conflict: linked to more than one ZenQMS user: no role granted to either (mapped roles the user no longer holds are removed from both)";

/// Rounds a scope change's own reads take a step besides its groups' (the scope groups'
/// members, the linked accounts, a changed nested group's members: a round or two each).
const SCOPE_READ_ROUNDS: u64 = 4;
const BASE_READ_SPARE_ROUNDS: u64 = 3;

/// Up to this many users a step asks Graph `checkMemberGroups` per user; above it reads the
/// mapped groups' members once.
const CHECK_MEMBER_GROUPS_UP_TO: usize = 20;

pub struct Realtime<'a> {
    platform: &'a dyn Platform,
    config: &'a Config,
    graph: &'a Graph<'a>,
    pub out: Applier<'a>,
    /// The guard's rolling window as stored (read when the first deactivation is planned).
    pub window: Option<DeactivationWindow>,
    /// The guard's limit and what its window still allows, once a deactivation asked.
    pub guard: Option<(usize, usize)>,
    /// The limit in `guard` is final: explicit, or the default counted on the ZenQMS users
    /// linked to an Entra id (see [`Realtime::guard_left`]).
    guard_final: bool,
    /// Deactivations the guard let through this call and counts into its window: those whose
    /// write is sent, whatever its answer, and each time it is sent (a write that timed out, or
    /// failed after a try that timed out, may have been made: red teams let 6 and 10 through a
    /// limit of 3 by counting answered writes only, and more by counting a user once across
    /// calls). A deactivation left out before it is sent (its link refused) is given back,
    /// and so is one ZenQMS refused (429, 4xx: not made; `Applier::deactivations_refused`).
    pub deactivated: usize,
    /// The users of a step that a gone scope group failed, which it deactivated anyway (gone
    /// from Entra, disabled): done, taken out of the queue (see `Realtime::sync_users`).
    left_whatever_scope: BTreeSet<String>,
    /// The last group step recomputed every mapping (a group in it was gone).
    recomputed_all: bool,
    /// The scope groups were found to exist this call (read once, by the first grant check of
    /// a group change: [`Realtime::no_grants_outside_scope`]).
    scope_groups_exist: bool,
    /// A group change's grants were withheld because a scope group is gone: the error the call
    /// ends with once its other work is done (the group change itself is done: its removals
    /// made, its grants left to the full sync of the deploy that fixes `scope_groups`).
    pub grants_withheld: Option<Failure>,
    /// A scope group was found gone this call (a user step ended on it, see
    /// `Realtime::scope_broken_end`, or a scope change could not be judged).
    pub scope_broken: bool,
    /// The ZenQMS ids of those deactivations.
    pub approved: Vec<String>,
    /// Entra ids whose deactivation the guard held back this call.
    pub held: Vec<String>,
    /// Entra ids the guard holds already (the held set's named sample, from state): their
    /// deactivation waits for an admin's release, never let through one by one by a later
    /// notification (a bug hunt: a full sync held 4 at limit 2, then notifications
    /// deactivated two of them while every tick still reported 4 held).
    pub held_already: BTreeSet<String>,
    /// How many deactivations the guard holds beyond those `held_already` names (its record
    /// keeps a sample of 10): a scope change's leavers that may be among them are not
    /// deactivated (see [`Realtime::scope_changes`]).
    pub held_unnamed: usize,
    /// The verified domains learned so far (the state's `email_domains`): the member users
    /// this call reads are added, and the caller stores the set back.
    pub learned_domains: BTreeSet<String>,
    /// The mapped groups' transitive members, read once per call by the first burst step
    /// that needs them.
    members: Option<roles::Memberships>,
    /// The current users step reads by `$batch` and takes memberships from `members` (a
    /// burst, at a budget that lets a step take more than a few users).
    burst: bool,
    /// A scope change's leavers were judged this call (queued, or held whole by the guard):
    /// a later group chunk of the same call queues only the users it brings into the scope.
    scope_done: bool,
    /// The scope as this call read it for a scope change: the scope groups' members, the users
    /// in scope, the linked accounts' Entra ids (read once per call, whatever the chunks).
    scope_read: Option<(roles::Memberships, BTreeSet<String>, BTreeSet<String>)>,
    /// When set, `sync_users` records what it read and decided (`provision-user`).
    pub trace: Option<Trace>,
    /// A change was held whole this call: the guard's window is full for its 24 hours.
    pub tripped: bool,
    /// Work that the next call does not do again came before (a step of the queue, a delta
    /// round's reads): a group change's reads that do not fit the rounds left are then the
    /// next call's (see [`Realtime::sync_groups`]).
    worked: bool,
}

/// What [`Realtime::sync_users`] read and decided, for an admin's `provision-user`.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// The groups (of those read: mapped and scope groups) each user is a transitive member of.
    pub member_of: BTreeMap<String, BTreeSet<String>>,
    /// The ZenQMS users found for them (linked, or holding an address they may take), before
    /// any write.
    pub found: Vec<crate::clients::zenqms::api::ZUser>,
    /// The plans, before the guard.
    pub plans: Vec<Planned>,
    /// The role changes sent.
    pub roles: Vec<roles::RoleChange>,
    /// Whether each present user is in scope (always true without `scope_groups`).
    pub in_scope: BTreeMap<String, bool>,
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
            window: None,
            guard: None,
            guard_final: false,
            deactivated: 0,
            approved: Vec::new(),
            held: Vec::new(),
            held_already: BTreeSet::new(),
            left_whatever_scope: BTreeSet::new(),
            recomputed_all: false,
            scope_groups_exist: false,
            grants_withheld: None,
            scope_broken: false,
            held_unnamed: 0,
            learned_domains: BTreeSet::new(),
            members: None,
            burst: false,
            scope_done: false,
            scope_read: None,
            trace: None,
            tripped: false,
            worked: false,
        }
    }

    /// Passes plans through the mass-deactivation guard: a deactivation beyond what its window
    /// allows is taken out (the user's other changes stay) and its Entra id is held. The limit
    /// is looked up only when a deactivation is planned.
    fn guarded(&mut self, plans: Vec<Planned>) -> Result<Vec<Planned>, Failure> {
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            if !guard::deactivates(&p.action) {
                out.push(p);
                continue;
            }
            if self.held_already.contains(&p.entra_id) {
                self.out.log.warn(
                    "deactivation still held back by the guard: an admin's release decides",
                    &[("cause", &self.out.cause), ("entra_id", &p.entra_id)],
                );
                if let Some(action) = guard::without_deactivation(p.action.clone()) {
                    out.push(Planned { action, ..p });
                }
                continue;
            }
            // Counted per ZenQMS account (two accounts may carry one link).
            let account = match &p.action {
                plan::Action::Write { zenqms_id, .. } => zenqms_id.clone(),
                _ => p.entra_id.clone(),
            };
            let (limit, left) = self.guard_left(1, None)?;
            if left > 0 {
                self.guard = Some((limit, left - 1));
                self.deactivated += 1;
                self.approved.push(account);
                out.push(p);
            } else {
                self.guard = Some((limit, 0));
                self.held.push(p.entra_id.clone());
                if let Some(action) = guard::without_deactivation(p.action.clone()) {
                    out.push(Planned { action, ..p });
                }
            }
        }
        Ok(out)
    }

    /// The guard's limit and what its window still allows this call, `(limit, left)`, when
    /// `need` deactivations are asked. The default limit (10 % of the ZenQMS users linked to
    /// an Entra id, at least 10) needs its base only once the floor of 10 no longer allows
    /// them. The base is `linked` when the caller has read the linked users already, or else
    /// the linked users read now when that fits the call's budget (all of them: ZenQMS's
    /// search cannot tell an Entra id from another system's `external_id`); when it does not,
    /// the floor stays this call's limit (a warning says so): deactivations beyond it are held
    /// for an admin, never let through on a count that may be stale. A base never counts
    /// other systems' ids (a red team: 400 HR ids raised the limit from 10 to 50 on the
    /// real-time paths), and its read never runs a call past its budget (a second red team:
    /// 3,000 such ids, 2 s calls, 11 calls over; a count kept in state instead went stale
    /// when an admin unlinked accounts, a third found).
    ///
    /// Errors: ZenQMS could not be read.
    fn guard_left(
        &mut self,
        need: usize,
        linked: Option<&[api::ZUser]>,
    ) -> Result<(usize, usize), Failure> {
        if let Some((limit, left)) = self.guard
            && (left >= need || self.guard_final || self.tripped)
        {
            return Ok((limit, left));
        }
        let now = self.platform.now();
        // What the window allows under `limit`, less what this call has deactivated already
        // (counted into the window when the call ends).
        let (window, deactivated) = (self.window.clone(), self.deactivated);
        let left_under =
            |limit| guard::window_left(&window, limit, now).saturating_sub(deactivated);
        let floor = self.config.deactivation_limit(0);
        let mut guard = (floor, left_under(floor));
        let explicit = self.config.max_deactivations.is_some();
        if !explicit && guard.1 < need {
            let base = match linked {
                Some(users) => Some(guard::entra_links(users)),
                None => self.read_linked_base()?,
            };
            match base {
                Some(n) => {
                    let limit = self.config.deactivation_limit(n);
                    guard = (limit, left_under(limit));
                }
                None => self.out.log.warn(
                    "the default deactivation limit's base (the ZenQMS users linked to Entra) could not be read within this call's budget: the floor applies to this call",
                    &[("limit", &floor.to_string())],
                ),
            }
            self.guard_final = true;
        }
        self.guard_final |= explicit;
        self.guard = Some(guard);
        Ok(guard)
    }

    /// The ZenQMS users linked to an Entra id, read whole when that fits the call's budget
    /// ([`linked_base_within_budget`]); `None` when it does not.
    ///
    /// Errors: ZenQMS could not be read.
    fn read_linked_base(&mut self) -> Result<Option<usize>, Failure> {
        linked_base_within_budget(self.platform, &self.out.zen)
    }

    /// Leaves out the deactivations of accounts whose link ZenQMS refused (a 4xx for that
    /// user; a failing service stops the call before): the account is not linked, so it is not
    /// this user's to deactivate, and the one write of link and deactivation before them wrote
    /// neither (a red team: refused links left unlinked accounts deactivated and audited
    /// under Entra ids they were not linked to). The refused link is logged as a failed write.
    fn drop_unlinked(&mut self, then: &mut Vec<Planned>) {
        let failed = &self.out.failed;
        let mut dropped = Vec::new();
        then.retain(|p| match &p.action {
            plan::Action::Write { zenqms_id, .. } if failed.contains(zenqms_id) => {
                dropped.push(zenqms_id.clone());
                false
            }
            _ => true,
        });
        // Never sent: not counted into the guard's window.
        for id in dropped {
            if let Some(i) = self.approved.iter().position(|a| *a == id) {
                self.approved.remove(i);
                self.deactivated = self.deactivated.saturating_sub(1);
            }
        }
    }

    /// Works through the queue until it is empty (true) or the budget would run out (false).
    /// The queue only loses an item once its work is done, so a failure or a pause repeats
    /// nothing that finished and skips nothing that did not.
    pub fn run_queue(&mut self, queue: &mut Queue) -> Result<bool, Failure> {
        // More than the token (and a quiet tick's delta read) before the queue: a delta
        // round's reads, say, which the next call does not make again (a red team: its guard
        // reads, then a group change's, took a call 600 ms over).
        let used = (self.platform.rounds_in_call()).saturating_sub(self.platform.rounds_left());
        self.worked |= used > 2;
        // A queued user's step: its sequential rounds (reads, address search, holders, writes,
        // a second write round, role calls) and the mapped groups read in the first; per
        // user: the Graph and ZenQMS reads, one checkMemberGroups per 20 mapped groups, the
        // address search, a write, a role added and one removed.
        // A step of more than `CHECK_MEMBER_GROUPS_UP_TO` users reads them in a round of its
        // own (`$batch`) and the mapped groups' members (a round per page of 999): two rounds
        // more, for far fewer requests.
        let groups = self.config.mapped_groups().len();
        let fixed = 6 + groups.div_ceil(self.platform.concurrency().max(1)) as u64;
        let fixed_batched = fixed + 2;
        let per_user = 6 + groups.div_ceil(20);
        let platform = self.platform;
        let users_left = std::cell::Cell::new(!queue.users.is_empty());
        let scoped = self.config.scoped();
        let mut prejudged = false;
        // A scope group found gone by the prejudge: the users step goes first.
        let mut scope_gone = false;
        let burst = queue.users.len() > CHECK_MEMBER_GROUPS_UP_TO;
        let done = budget::run_steps(
            || {
                budget::fits(platform, budget::MIN_STEP_ROUNDS)
                    && (!users_left.get() || budget::one_fits(platform, fixed, per_user))
            },
            || {
                if queue.users.is_empty() && queue.groups.is_empty() {
                    return Ok(Step::Done);
                }
                // The queued groups a chunk at a time, as many as the budget lets their reads
                // take (each group's ancestry is read for scope and roles: about two requests,
                // and a scope's own reads besides): 600 groups in one step took a call 1.5 s
                // past its budget.
                let fixed = budget::MIN_STEP_ROUNDS + if scoped { SCOPE_READ_ROUNDS } else { 0 };
                let chunk =
                    budget::items_that_fit(platform, fixed, GROUP_REQUESTS, 1, queue.groups.len());
                // A scope change's leavers are judged before the queue's users are worked: one
                // of them notified on its own (in the same burst) must not slip past the
                // judgement of the whole. Once per queued group set (`scope_judged`: the
                // leavers it names stay queued until worked, so a later call does not read the
                // scope again for them), and once per call at most, on the set's first chunk
                // (the leavers are everyone the scope no longer holds, whichever group's change
                // took them out).
                if !queue.groups.is_empty()
                    && !self.scope_done
                    && !prejudged
                    && !queue.scope_judged
                    && !queue.users.is_empty()
                {
                    prejudged = true;
                    // The first chunk (their ancestry read), and every scope group queued
                    // (no read needed: a red team's scope group queued behind 40 other groups
                    // was judged only after the users it took out were worked one by one).
                    let scope_groups: BTreeSet<&String> = self.config.scope_groups.iter().collect();
                    let mut groups = queue.groups[..chunk].to_vec();
                    groups.extend(
                        queue.groups[chunk..]
                            .iter()
                            .filter(|g| scope_groups.contains(g))
                            .cloned(),
                    );
                    let users = match self.scope_changes(&groups, true, false) {
                        Ok(users) => users,
                        // A scope group is gone: no scope change can be judged, but the
                        // queued users go on (their leavers are deactivated whatever the
                        // scope, the others wait: see `sync_users`), and the call still
                        // fails loudly (a red team: a deleted scope group's own change kept
                        // every later leaver active).
                        Err(_) if self.scope_broken => {
                            scope_gone = true;
                            Vec::new()
                        }
                        Err(e) => return Err(e),
                    };
                    queue.push(&users, &[]);
                    queue.scope_judged |= self.scope_done;
                }
                // A prejudge that found no scope group among the first chunk and the queued
                // scope groups cannot tell whether a group nested in the scope is queued
                // later: then the groups go first, a chunk at a time, each judging the scope
                // if it touches it, and the users after (a red team: a nested group's leavers
                // queued behind 40 groups were deactivated one by one).
                let groups_first = scoped
                    && prejudged
                    && !scope_gone
                    && !self.scope_done
                    && !queue.scope_judged
                    && !queue.groups.is_empty();
                if queue.users.is_empty() || groups_first {
                    let groups = queue.groups[..chunk].to_vec();
                    // A scope group changed: the users whose account may change are queued,
                    // to be synced as notified users are (same rules, same guard) once the
                    // groups' roles are done and the groups leave the queue. (Queued with
                    // the groups' removal, so a user the guard holds or the rules skip is
                    // not queued again and again.) The leavers once per group set; those
                    // each chunk's groups bring in, for every chunk.
                    let users = self.scope_changes(&groups, !queue.scope_judged, true)?;
                    queue.scope_judged |= self.scope_done;
                    if !users.is_empty() {
                        queue.push(&users, &[]);
                        users_left.set(true);
                    }
                    let covered = (queue.gone_recomputed as usize).min(chunk);
                    self.recomputed_all = false;
                    match self.sync_groups(
                        &groups,
                        &mut queue.members,
                        covered,
                        &mut queue.roles_from,
                    )? {
                        GroupsEnd::Done => {}
                        // The budget ran out; the next call recomputes and goes on.
                        GroupsEnd::Later => return Ok(Step::Paused),
                    }
                    // A recompute of every mapping covers every group queued now (each
                    // changed before it read the mapped groups).
                    let covers = if self.recomputed_all {
                        queue.groups.len()
                    } else {
                        queue.gone_recomputed as usize
                    };
                    queue.gone_recomputed =
                        u32::try_from(covers.saturating_sub(chunk)).unwrap_or(u32::MAX);
                    queue.groups.drain(..chunk);
                    queue.members = MembersCarry::default();
                    queue.roles_from = None;
                    if queue.groups.is_empty() {
                        queue.scope_judged = false;
                    }
                } else {
                    // In a burst, a step the budget lets take more than a few users reads
                    // them by `$batch` (the tail of the burst too); otherwise, and at small
                    // budgets where that would cost more rounds than it saves, each alone.
                    let small = CHECK_MEMBER_GROUPS_UP_TO;
                    let big_step =
                        || budget::items_that_fit(platform, fixed_batched, per_user, 1, USER_CHUNK);
                    let mut big = if burst { big_step() } else { 0 };
                    if big > small && self.members.is_none() {
                        // The batched step decides roles from the mapped groups' members: read
                        // within the budget (over several calls when they must be), then the
                        // step sized to what is left.
                        if !self.members_for_burst(&mut queue.members, fixed_batched)? {
                            return Ok(Step::Paused);
                        }
                        big = big_step();
                    }
                    self.burst = big > small;
                    let fit = if self.burst {
                        big
                    } else {
                        budget::items_that_fit(platform, fixed, per_user, 1, small)
                    };
                    let n = queue.users.len().min(fit);
                    let chunk: Vec<String> = queue.users[..n].to_vec();
                    let synced = self.sync_users(&chunk);
                    if synced.is_err() && self.scope_broken {
                        // A scope group is gone: the leavers the step deactivated are done;
                        // the others wait (loudly) for `scope_groups` to be fixed, behind the
                        // users queued after them, so that each call reaches other users and
                        // no later leaver is held behind them (a red team: a step of one
                        // user at 2 s calls failed on the same user in every call).
                        let done = std::mem::take(&mut self.left_whatever_scope);
                        let waiting: Vec<String> = chunk
                            .iter()
                            .filter(|u| !done.contains(*u))
                            .cloned()
                            .collect();
                        queue.users.retain(|u| !chunk.contains(u));
                        queue.users.extend(waiting);
                    }
                    synced?;
                    queue.users.drain(..n);
                    users_left.set(!queue.users.is_empty());
                }
                self.worked = true;
                let empty = queue.users.is_empty() && queue.groups.is_empty();
                if empty {
                    // Members read for this queue are not kept for the next one.
                    queue.members = MembersCarry::default();
                }
                Ok(if empty { Step::Done } else { Step::More })
            },
        )?;
        // A group change whose grants a gone scope group withheld fails the call once the
        // queue is done (its error line is written already; a call that pauses goes on first).
        match self.grants_withheld.take() {
            Some(why) if done => Err(why),
            _ => Ok(done),
        }
    }

    /// The mapped and scope groups' members for a batched step of users: read within the
    /// budget, with `after` rounds left for the step, from where `carry` says an earlier call
    /// stopped (see [`super::carried`]). False when the budget ran out first: the read is
    /// checkpointed in `carry` and the call pauses.
    ///
    /// Errors: a member page failed after its retries, or a listing repeated a link.
    fn members_for_burst(&mut self, carry: &mut MembersCarry, after: u64) -> Result<bool, Failure> {
        let groups = self.config.read_groups();
        if groups.is_empty() {
            return Ok(true);
        }
        match carried::members_within(self.platform, self.graph, groups, carry, after)? {
            Some(members) => {
                self.members = Some(members);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Re-reads users and brings their ZenQMS account and mapped roles in line.
    pub fn sync_users(&mut self, ids: &[String]) -> Result<(), Failure> {
        // The groups whose membership decides: mapped groups (roles) and scope groups.
        let mapped = self.config.read_groups();
        let each_alone = !self.burst && ids.len() <= CHECK_MEMBER_GROUPS_UP_TO;
        // A burst: the users from Graph first, 15 to an `id in` filter and 20 filters to a
        // `$batch` (a request per 300 users, not one per user).
        let batched = if each_alone {
            None
        } else {
            Some(self.graph.users_by_ids(ids, "reading notified users")?)
        };
        // One round: the users (a few: each read alone), their ZenQMS accounts (100 to a
        // search), and their mapped groups: for a few users, checkMemberGroups each; for more,
        // the mapped groups' transitive members read once after it (cheaper than a request per
        // user once a step holds more than a few).
        let mut round = Round::new();
        let user_slots = if each_alone {
            round.add_all(self.graph.user_requests(ids)?)
        } else {
            Vec::new()
        };
        let id_chunks: Vec<&[String]> = ids.chunks(api::LINKS_PER_SEARCH).collect();
        let account_slots: Vec<Slot> = id_chunks
            .iter()
            .map(|c| {
                let search = api::search_users(api::with_links(c), 1);
                round.add(self.out.zen.request(&search))
            })
            .collect();
        let mut group_slots = Vec::new();
        let mut exists_slots = Vec::new();
        if each_alone && !mapped.is_empty() {
            for id in ids {
                let r = self.graph.member_group_requests(id, &mapped)?;
                group_slots.push((id, round.add_all(r)));
            }
            // The mapped groups themselves: checkMemberGroups leaves a deleted group out of
            // its answer, which must not read as "not a member" (missing is not empty).
            exists_slots = round.add_all(self.graph.group_requests(&mapped)?);
        }
        let mut answers = round.send(|reqs| self.graph.send_all(reqs));
        let users: Vec<Option<EntraUser>> = match &batched {
            Some(read) => ids
                .iter()
                .map(|id| read.get(id).and_then(EntraUser::from_json))
                .collect(),
            None => {
                let mut users = Vec::with_capacity(ids.len());
                for slot in user_slots {
                    let raw = Graph::read_user(answers.take(slot))?;
                    users.push(raw.as_ref().and_then(EntraUser::from_json));
                }
                users
            }
        };
        let mut found = Vec::new();
        for (chunk, slot) in id_chunks.iter().zip(account_slots) {
            let filter = api::with_links(chunk);
            found.extend(
                self.out
                    .zen
                    .search_rest(filter, answers.take(slot), Vec::new())?
                    .0,
            );
        }
        let mut member_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut gone = BTreeSet::new();
        if each_alone {
            // Graph returned the user and answered 404 to its membership (two requests, two
            // replicas: an object not replicated everywhere yet). That is not "member of
            // nothing", which removed its roles and, with a scope, deactivated it (a red
            // team). It is asked once more; a second 404 fails the step (missing is not
            // empty), done again by a later call.
            let mut again: Vec<&String> = Vec::new();
            for ((id, slots), user) in group_slots.into_iter().zip(&users) {
                let set = member_of.entry(id.clone()).or_default();
                for slot in slots {
                    match Graph::read_member_groups(answers.take(slot))? {
                        Some(groups) => set.extend(groups),
                        // Gone (its own read answered 404 too): member of nothing.
                        None if user.is_none() => {}
                        None => {
                            if !again.contains(&id) {
                                again.push(id);
                            }
                        }
                    }
                }
            }
            if !again.is_empty() {
                let unknown = |id: &str| {
                    Failure::transient(format!(
                        "Graph answered 404 to checkMemberGroups for user {id}, which it returned: its group membership is unknown, nothing is decided for it yet (tried again by the next call)"
                    ))
                };
                // The ask, then what the step still has to do after it (the address search,
                // the holders, the writes and a refused deactivation sent alone, the roles):
                // the step's admission did not count this round.
                if !budget::fits(self.platform, 5) {
                    return Err(unknown(again[0]));
                }
                let mut round = Round::new();
                let mut slots = Vec::new();
                for id in &again {
                    let reqs = self.graph.member_group_requests(id, &mapped)?;
                    slots.push((*id, round.add_all(reqs)));
                }
                let mut answers = round.send(|reqs| self.graph.send_all(reqs));
                for (id, chunk_slots) in slots {
                    let mut set = BTreeSet::new();
                    for slot in chunk_slots {
                        match Graph::read_member_groups(answers.take(slot))? {
                            Some(groups) => set.extend(groups),
                            None => return Err(unknown(id)),
                        }
                    }
                    member_of.insert(id.clone(), set);
                }
            }
            let exists = Graph::unpack_all(mapped.len(), answers.take_all(&exists_slots));
            for (g, answer) in mapped.iter().zip(exists) {
                if !Graph::read_group_exists(answer)? {
                    gone.insert(g.clone());
                }
            }
        } else if !mapped.is_empty() {
            if self.members.is_none() {
                self.members = Some(self.graph.transitive_members(&mapped)?);
            }
            let members = self.members.as_ref().expect("read above");
            for g in &mapped {
                match members.get(g) {
                    None => {
                        gone.insert(g.clone());
                    }
                    Some(set) => {
                        for id in ids.iter().filter(|id| set.contains(*id)) {
                            member_of.entry(id.clone()).or_default().insert(g.clone());
                        }
                    }
                }
            }
            for id in ids {
                member_of.entry(id.clone()).or_default();
            }
        }
        // A scope group that is gone decides nobody's scope: the step fails loudly (below), but
        // first the users leaving whatever the scope — gone from Entra, disabled — are
        // deactivated (a red team: one deleted scope group of two kept every leaver active
        // with its roles until an admin fixed `scope_groups`). Nobody else is written.
        let scope_broken =
            crate::domain::scope::check_exists(self.config, |g| !gone.contains(g)).err();
        // Only users already linked: one the scope may leave out is never linked, nor given
        // a role (a red team: a disabled user outside the scope had an account linked by
        // email, deactivated and granted a mapped role).
        let (ids, users): (Vec<String>, Vec<Option<EntraUser>>) = if scope_broken.is_some() {
            let linked: BTreeSet<String> = found.iter().filter_map(plan::link_of).collect();
            ids.iter()
                .cloned()
                .zip(users)
                .filter(|(id, u)| {
                    linked.contains(id)
                        && u.as_ref().is_none_or(|u| u.account_enabled == Some(false))
                })
                .unzip()
        } else {
            (ids.to_vec(), users)
        };
        let ids = &ids[..];
        let missing = roles::missing(&self.config.role_mappings, |g| !gone.contains(g));
        roles::log_missing(&self.out.log, &missing);
        for domain in users.iter().flatten().filter_map(EntraUser::member_domain) {
            address::learn(&mut self.learned_domains, domain);
        }
        // Round 2: ZenQMS searched for every address a write may set (a user not linked yet:
        // its match or a create; a linked one whose stored email differs at all: a rename),
        // so that the planner sees every other ZenQMS user holding it.
        let stored: BTreeMap<String, &str> = found
            .iter()
            .filter_map(|z| plan::link_of(z).map(|l| (l, z.email.as_str())))
            .collect();
        let emails: BTreeSet<String> = users
            .iter()
            .flatten()
            .filter_map(|u| {
                let a = u.match_address()?;
                (stored.get(&u.id) != Some(&a.as_str())).then(|| a.as_str().to_string())
            })
            .collect();
        let email_reqs: Vec<_> = emails
            .iter()
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
        let mut present: Vec<EntraUser> = users.iter().flatten().cloned().collect();
        for u in &mut present {
            u.in_scope = scope_broken.is_some()
                || crate::domain::scope::contains(self.config, member_of.get(&u.id));
            let reason = match (u.in_scope, u.account_enabled) {
                (false, Some(false)) => crate::domain::scope::LEFT_AND_DISABLED,
                (false, _) => crate::domain::scope::LEFT,
                _ => guard::DISABLED,
            };
            self.out.reasons.insert(u.id.clone(), reason.to_string());
        }
        if let Some(t) = &mut self.trace {
            t.member_of = member_of.clone();
            t.found = self.out.dir.users().cloned().collect();
            t.in_scope = present.iter().map(|u| (u.id.clone(), u.in_scope)).collect();
        }
        // Round 3, only when a user may link an existing account: who holds its address.
        let domains = Domains {
            configured: self.config.email_match_domains.clone(),
            learned: self.learned_domains.clone(),
        };
        let candidates: Vec<_> = plan::link_candidates(&present, &self.out.dir, &domains)
            .into_iter()
            .collect();
        let holders = if candidates.is_empty() {
            Default::default()
        } else {
            self.graph.mail_holders(&candidates)?
        };
        let mut trust = Trust { domains, holders };
        trust.add_batch_holders(&present);
        // Plan: present users as the initial sync does; absent ones (404) are leavers.
        let (mut plans, later) =
            plan::staged(plan::plan_batch(&present, &mut self.out.dir, &trust));
        for (id, user) in ids.iter().zip(&users) {
            if user.is_some() {
                continue;
            }
            self.out.reasons.insert(id.clone(), guard::GONE.to_string());
            let linked = self.out.dir.linked_to(id);
            // Every account linked to the user (two may carry one link).
            plans.extend(linked.iter().filter(|z| z.is_active).map(|z| Planned {
                entra_id: id.clone(),
                upn: String::new(),
                action: plan::deactivate(z),
                after_batch: false,
            }));
            if linked.is_empty() {
                self.out.log.info(
                    "user not in Entra (deleted) and not linked in ZenQMS: nothing to do",
                    &[("entra_id", id)],
                );
            }
        }
        if let Some(t) = &mut self.trace {
            t.plans.extend(plans.iter().cloned());
        }
        let (plans, mut then) = guard::split_link_deactivations(self.guarded(plans)?);
        self.out.apply(plans)?;
        self.drop_unlinked(&mut then);
        // Users taking an email another one just gave up: a round each, as long as a chain
        // goes (each waits for the move before it), within the budget.
        let mut later = later;
        while !later.is_empty() {
            if !self.out.dry_run && !budget::fits(self.platform, 1) {
                crate::sync::later_left_for_next_sync(&self.out.log, &later);
                break;
            }
            let (plans, next) = plan::staged(plan::plan_later(
                &present,
                &later,
                &mut self.out.dir,
                &trust,
            ));
            if let Some(t) = &mut self.trace {
                t.plans.extend(plans.iter().cloned());
            }
            let (plans, more) = guard::split_link_deactivations(self.guarded(plans)?);
            then.extend(plans);
            // The deactivations of those users, if they were linked: after their links.
            self.out.apply(then)?;
            then = more;
            self.drop_unlinked(&mut then);
            later = plan::fewer_later(later, next);
        }
        // The deactivations of users just linked, after their links.
        self.out.apply(then)?;
        // Mapped roles of the present users, now that every one that can be is linked. Roles
        // mapped to a group that is gone are left as they are.
        let mappings: Vec<RoleMapping> = self
            .config
            .role_mappings
            .iter()
            .filter(|m| !m.groups.iter().any(|g| gone.contains(g)))
            .cloned()
            .collect();
        if mappings.is_empty() {
            return self.scope_broken_end(scope_broken, ids);
        }
        let mut changes = present
            .iter()
            .filter_map(|u| {
                let z = self.out.dir.linked_once(&u.id)?;
                let groups = member_of.get(&u.id)?;
                let desired = desired_from_groups(&mappings, groups);
                let mut change = roles::change_for(z, &u.id, &mappings, &desired)?;
                // Outside the scope (or a scope that cannot be decided): not provisioned, no
                // mapped role granted (a red team).
                if !u.in_scope || scope_broken.is_some() {
                    change.add.clear();
                }
                (!change.add.is_empty() || !change.remove.is_empty()).then_some(change)
            })
            .collect::<Vec<_>>();
        // Users Graph answers 404 for are no group's members (Graph leaves them out of every
        // listing): their mapped roles go with their deactivation, as in the full sync's
        // leaver check. Only once the account is inactive: a deactivation the guard holds
        // holds its roles too.
        for (id, user) in ids.iter().zip(&users) {
            if user.is_none() {
                // Every account linked to the user (two may carry one link).
                for z in self
                    .out
                    .dir
                    .linked_to(id)
                    .into_iter()
                    .filter(|z| !z.is_active)
                {
                    changes.extend(roles::change_for(z, id, &mappings, &BTreeSet::new()));
                }
            }
        }
        if let Some(t) = &mut self.trace {
            t.roles = changes.clone();
        }
        self.out.apply_roles(changes)?;
        self.scope_broken_end(scope_broken, ids)
    }

    /// The end of a step a gone scope group failed (`broken`): its leavers (`ids`, those it
    /// kept) were deactivated and are done; the failure stands for the others.
    fn scope_broken_end(&mut self, broken: Option<Failure>, ids: &[String]) -> Result<(), Failure> {
        match broken {
            None => Ok(()),
            Some(f) => {
                self.left_whatever_scope = ids.iter().cloned().collect();
                self.scope_broken = true;
                Err(f)
            }
        }
    }

    /// When one of `ids` is a scope group or sits (transitively) in one: the Entra ids whose
    /// ZenQMS account the scope change may change ([`crate::domain::scope::entering`]): those
    /// leaving the scope (judged once per call, against the guard, whatever the chunk of
    /// groups) and those the changed groups bring into it. Empty when the groups do not touch
    /// the scope.
    ///
    /// Errors: a read failed, or a scope group is gone (fatal).
    fn scope_changes(
        &mut self,
        ids: &[String],
        leavers: bool,
        entering: bool,
    ) -> Result<Vec<String>, Failure> {
        let leavers = leavers && !self.scope_done;
        if !self.config.scoped() || ids.is_empty() || !(leavers || entering) {
            return Ok(Vec::new());
        }
        let scope: BTreeSet<&String> = self.config.scope_groups.iter().collect();
        let mut touches = ids.iter().any(|g| scope.contains(g));
        // The changed groups inside the scope (nested in a scope group): their members are
        // the users who may have entered it. (For the leavers alone, not read once a scope
        // group is among the groups: the leavers do not depend on which groups changed.)
        let mut nested = Vec::new();
        if !touches || (entering && ids.iter().any(|g| !scope.contains(g))) {
            let above = self.graph.transitive_member_of(ids)?;
            nested = ids
                .iter()
                .filter(|g| !scope.contains(g))
                .filter(|g| {
                    above
                        .get(*g)
                        .is_some_and(|up| up.iter().any(|s| scope.contains(s)))
                })
                .cloned()
                .collect();
            // A group that is gone (404) can no longer say which groups held it: the scope is
            // recomputed (missing is not empty), as its members may have left it.
            touches = touches || !nested.is_empty() || ids.iter().any(|g| !above.contains_key(g));
        }
        if !touches {
            return Ok(Vec::new());
        }
        let mut accounts = None;
        if self.scope_read.is_none() {
            let members = self.graph.transitive_members(&self.config.scope_groups)?;
            let in_scope =
                crate::domain::scope::members(self.config, &members).inspect_err(|_| {
                    self.scope_broken = true;
                })?;
            let linked = self.out.zen.search_all(api::linked())?;
            let linked_ids = linked.iter().filter_map(plan::link_of).collect();
            self.scope_read = Some((members, in_scope, linked_ids));
            accounts = Some(linked);
        }
        let (members, in_scope, linked_ids) = self.scope_read.as_ref().expect("read above");
        // Who may have entered: the members of the changed scope groups, and of the changed
        // groups nested in one (read here; a gone group has none).
        let mut touched: BTreeSet<String> = ids
            .iter()
            .filter_map(|g| members.get(g))
            .flatten()
            .cloned()
            .collect();
        if entering && !nested.is_empty() {
            touched.extend(
                self.graph
                    .transitive_members(&nested)?
                    .into_values()
                    .flatten(),
            );
        }
        let mut entering: Vec<String> = if entering {
            crate::domain::scope::entering(in_scope, linked_ids, &touched)
        } else {
            Vec::new()
        };
        // 300 users to a `$batch` request, side by side.
        let read_rounds =
            (entering.len().div_ceil(300)).div_ceil(self.platform.concurrency().max(1));
        if !entering.is_empty()
            && budget::fits(self.platform, read_rounds as u64 + budget::MIN_STEP_ROUNDS)
        {
            // Only those the rules would provision: a user missing a required field is
            // skipped whatever the scope says, and a changed scope group names every member
            // it holds (a red team: 1,000 members without a jobTitle, queued at every change
            // of the group, overflowed the queue into a full sync each time). When the read
            // does not fit the call, all are queued (the queue skips them one by one, or
            // overflows into a full sync).
            let read = self
                .graph
                .users_by_ids(&entering, "reading users entering the scope")?;
            entering.retain(|id| {
                read.get(id)
                    .and_then(EntraUser::from_json)
                    .is_some_and(|u| u.mapped().is_some())
            });
        }
        let in_scope_n = in_scope.len();
        // The leavers, once per call (the accounts as read with the scope: a later chunk of
        // the same call would count those this one took out again).
        let linked = match accounts {
            Some(linked) if leavers => linked,
            _ => {
                self.out.log.info(
                    "scope groups changed: users entering the scope are synced",
                    &[
                        ("groups", &ids.join(",")),
                        ("in_scope", &in_scope_n.to_string()),
                        ("to_sync", &entering.len().to_string()),
                    ],
                );
                return Ok(entering);
            }
        };
        self.scope_done = true;
        let all_leaving = crate::domain::scope::leaving(in_scope, &linked);
        let mut users: Vec<String> = all_leaving
            .iter()
            .cloned()
            .chain(entering)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // The users this change takes out of scope are judged together, as a delta round's
        // leavers are: when they do not all fit in what the guard's window allows, none of
        // them is deactivated (held, for an admin), and only those entering or returning are
        // synced.
        // (Accounts the guard holds already stay held, warned, and are not counted again: a
        // red team's four held scope leavers tripped the guard anew at every later scope
        // change, holding an unrelated leaver.)
        let mut leaving = all_leaving;
        leaving.retain(|u| !self.held_already.contains(u));
        if !leaving.is_empty() && self.held_unnamed > 0 {
            // The guard holds deactivations it does not name (its record keeps 10): any of
            // these may be among them (a red team: 12 held, 10 named, and the 2 others were
            // deactivated by the next scope change without a release). None is deactivated;
            // the admin's release (a full sync that counts them by name) decides.
            self.out.log.warn(
                "scope leavers not deactivated: the guard holds deactivations it does not name, and these may be among them; an admin's release decides (it counts them by name)",
                &[("leavers", &leaving.len().to_string())],
            );
            users.retain(|u| !leaving.contains(u));
            leaving.clear();
        }
        if !leaving.is_empty() {
            let (limit, left) = self.guard_left(leaving.len(), Some(&linked))?;
            if leaving.len() > left {
                // The guard is tripped: nobody is deactivated by notifications until the
                // window has passed (a leaver notified on its own later is held too).
                self.guard = Some((limit, 0));
                self.tripped = true;
                users.retain(|u| !leaving.contains(u));
                self.held.extend(leaving.iter().cloned());
            }
        }
        self.out.log.info(
            "scope groups changed: users entering or leaving the scope are synced",
            &[
                ("groups", &ids.join(",")),
                ("in_scope", &in_scope_n.to_string()),
                ("to_sync", &users.len().to_string()),
            ],
        );
        Ok(users)
    }

    /// Takes the grants out of `changes` for users whose link another account carries in a
    /// form the group path's look-up (Graph's form only) did not ask for: an admin's copy in
    /// capitals or with spaces makes a duplicate link, and neither account is granted a role
    /// (a red team: the account found got it, with no warning). Read in proportion to the
    /// grants (the link forms of [`api::link_forms`]).
    ///
    /// Errors: ZenQMS could not be read.
    fn no_grants_to_duplicates(
        &mut self,
        changes: &mut Vec<roles::RoleChange>,
    ) -> Result<(), Failure> {
        let granting = granting(changes);
        if granting.is_empty() {
            return Ok(());
        }
        let mut accounts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for z in self.out.zen.linked_to(&granting)? {
            if let Some(e) = plan::link_of(&z) {
                accounts.entry(e).or_default().insert(z.id);
            }
        }
        for c in changes.iter_mut() {
            if let Some(ids) = accounts.get(&c.entra_id).filter(|ids| ids.len() > 1)
                && !c.add.is_empty()
            {
                let ids: Vec<String> = ids.iter().cloned().collect();
                self.out.log.warn(
                    DUPLICATE_LINK_ROLES,
                    &[("entra_id", &c.entra_id), ("zenqms_ids", &ids.join(","))],
                );
                c.add.clear();
            }
        }
        changes.retain(|c| !c.add.is_empty() || !c.remove.is_empty());
        Ok(())
    }

    /// With `scope_groups` set, grants only to users in the scope: a user outside it is not
    /// provisioned (README, `scope_groups`), and a group change must not give a mapped role to
    /// the account of a user the scope took out (a red team: every out-of-scope member of a
    /// changed mapped group was granted its role, deactivated accounts included). Asked of
    /// Graph for each granting user, in one round: `checkMemberGroups` with the scope groups
    /// (transitive; 20 ids a request, 20 requests to a `$batch`:
    /// shared/reference/graph/05-membership.md, section 3), beside the scope groups' own read
    /// once a call (a deleted group is left out of checkMemberGroups' answer, which must not
    /// read as "outside"). Read in proportion to the grants, never to the scope's size.
    ///
    /// A user outside the scope, or gone from Entra (404), keeps its removals, not its grants
    /// (logged, with a sample of ids). A scope group that is gone decides nobody's scope: every
    /// grant is withheld (removals are made) and [`Realtime::grants_withheld`] holds the error
    /// the call ends with.
    ///
    /// Errors: a read failed (transient: the group change is done again by a later call).
    #[inline(never)] // one copy, not one in each step closure that calls it
    fn no_grants_outside_scope(
        &mut self,
        changes: &mut Vec<roles::RoleChange>,
    ) -> Result<(), Failure> {
        if !self.config.scoped() {
            return Ok(());
        }
        let granting = granting(changes);
        if granting.is_empty() {
            return Ok(());
        }
        let scope = &self.config.scope_groups;
        let mut outside: BTreeSet<String> = BTreeSet::new();
        if self.grants_withheld.is_none() {
            let mut round = Round::new();
            let check_slots = round.add_all(self.graph.member_check_requests(&granting, scope)?);
            let exists_slots = if self.scope_groups_exist {
                Vec::new()
            } else {
                round.add_all(self.graph.group_requests(scope)?)
            };
            let mut answers = round.send(|reqs| self.graph.send_all(reqs));
            if !self.scope_groups_exist {
                let exists = Graph::unpack_all(scope.len(), answers.take_all(&exists_slots));
                let mut gone = BTreeSet::new();
                for (g, answer) in scope.iter().zip(exists) {
                    if !Graph::read_group_exists(answer)? {
                        gone.insert(g.as_str());
                    }
                }
                match crate::domain::scope::check_exists(self.config, |g| !gone.contains(g)) {
                    Ok(()) => self.scope_groups_exist = true,
                    Err(why) => self.grants_withheld = Some(why),
                }
            }
            let per_user = scope.len().div_ceil(20);
            let mut results =
                Graph::unpack_all(granting.len() * per_user, answers.take_all(&check_slots))
                    .into_iter();
            for user in &granting {
                let mut inside = false;
                let mut found = true;
                for result in results.by_ref().take(per_user) {
                    match Graph::read_member_groups(result)? {
                        Some(groups) => inside |= scope.iter().any(|g| groups.contains(g)),
                        None => found = false,
                    }
                }
                if !(inside && found) {
                    outside.insert(user.clone());
                }
            }
        }
        let withheld = if let Some(why) = &self.grants_withheld {
            self.out.log.error(
                "group change: mapped roles not granted: a scope group is gone, so nobody's scope can be decided (roles the users no longer hold are still removed)",
                &[
                    ("users", &granting.len().to_string()),
                    ("error", &why.message),
                ],
            );
            granting.into_iter().collect()
        } else if outside.is_empty() {
            return Ok(());
        } else {
            let sample: Vec<&str> = outside.iter().take(10).map(String::as_str).collect();
            self.out.log.info(
                "group change: mapped roles not granted to users outside the scope (not transitive members of any scope group, or gone from Entra)",
                &[
                    ("users", &outside.len().to_string()),
                    ("entra_ids", &sample.join(",")),
                ],
            );
            self.out.counts.out_of_scope += u32::try_from(outside.len()).unwrap_or(u32::MAX);
            outside
        };
        for c in changes.iter_mut() {
            if withheld.contains(&c.entra_id) {
                c.add.clear();
            }
        }
        changes.retain(|c| !c.add.is_empty() || !c.remove.is_empty());
        Ok(())
    }

    /// Recomputes the holders of every role mapped to one of these groups (or to a group that
    /// contains one of them) and adds/removes those roles for linked users, a round of the
    /// platform's concurrency at a time while the budget lasts. [`GroupsEnd::Later`] when the
    /// budget ran out first: the next call recomputes (what was written is no longer a change)
    /// and goes on. The groups' members are read within the budget too, over several calls
    /// when they must be (checkpointed in `carry`, see [`super::carried`]); once read, the next
    /// calls take them from `carry`. The roles' holders and the members' accounts are read in
    /// every call that recomputes, whole: when they do not fit the rounds left after other work
    /// of the call, the next call's; a call that begins with them reads them whatever they take
    /// (known limit: thousands of holders at short budgets run past it).
    ///
    /// The first `covered` of `ids` were queued before a recompute of every mapping that
    /// followed a group found gone (`Queue::gone_recomputed`): found gone, they need no
    /// other.
    pub fn sync_groups(
        &mut self,
        ids: &[String],
        carry: &mut MembersCarry,
        covered: usize,
        roles_from: &mut Option<String>,
    ) -> Result<GroupsEnd, Failure> {
        let mapped: BTreeSet<String> = self.config.mapped_groups().into_iter().collect();
        if mapped.is_empty() {
            return Ok(GroupsEnd::Done);
        }
        // A changed group affects the mappings of itself and of every group that contains it
        // (a mapped group can itself be nested in another mapped group).
        let mut affected: BTreeSet<String> = ids
            .iter()
            .filter(|g| mapped.contains(*g))
            .cloned()
            .collect();
        let above = self.graph.transitive_member_of(ids)?;
        for ancestors in above.values() {
            affected.extend(ancestors.intersection(&mapped).cloned());
        }
        // A group that is gone (404) can no longer say which groups held it, and its members
        // have left them all: every mapping is recomputed (missing is not empty).
        if ids.iter().skip(covered).any(|g| !above.contains_key(g)) {
            affected.extend(mapped.iter().cloned());
            self.recomputed_all = true;
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
            return Ok(GroupsEnd::Done);
        }
        let groups: Vec<String> = mappings
            .iter()
            .flat_map(|m| m.groups.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // After the read: the roles' holders (a round), then at least one round of role calls.
        let Some(members) = carried::members_within(self.platform, self.graph, groups, carry, 2)?
        else {
            return Ok(GroupsEnd::Later);
        };
        let missing = roles::missing(&mappings, |g| members.contains_key(g));
        roles::log_missing(&self.out.log, &missing);
        // Only the users whose roles can change: the roles' holders and the members' linked
        // accounts. Reads in proportion to the groups, never to the ZenQMS directory.
        let roles: BTreeSet<&String> = mappings.iter().map(|m| &m.role).collect();
        let member_ids: Vec<String> = members
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut filters: Vec<_> = roles.into_iter().map(|r| api::holding_role(r)).collect();
        filters.extend(
            // Links in Graph's form only (`api::with_links` would be 8 forms an id: a search
            // per 12 members instead of 100). Holders are found by role, whatever their
            // link's form, so a removal is never missed; a hand-made link in another form
            // gets a role the group now grants from the next full sync, which rewrites it.
            member_ids
                .chunks(api::MAX_FILTER_IDS)
                .map(api::with_external_ids),
        );
        // Their first pages in a round, the pages that follow in one more, then at least a
        // round of role calls: within the rounds left, or the next call's when other work of
        // this call took them. (A call that begins with them reads whatever they take: the
        // reads before them — the scope's, the members' — are made again by every call, and
        // waiting would never end.)
        let wave = self.platform.concurrency().max(1) as u64;
        let first_rounds = (filters.len() as u64).div_ceil(wave);
        if self.worked && !budget::fits(self.platform, first_rounds + 2) {
            return Ok(GroupsEnd::Later);
        }
        let firsts = self.out.zen.first_pages(&filters)?;
        let rest_rounds = (firsts.rest.len() as u64).div_ceil(wave);
        if self.worked && !budget::fits(self.platform, rest_rounds + 1) {
            return Ok(GroupsEnd::Later);
        }
        let accounts = self.out.zen.rest_pages(firsts)?;
        self.out.dir = Directory::new(accounts);
        for (entra_id, accounts) in roles::duplicate_links(&self.out.dir) {
            self.out.log.warn(
                DUPLICATE_LINK_ROLES,
                &[("entra_id", &entra_id), ("zenqms_ids", &accounts.join(","))],
            );
        }
        let mut changes = roles::plan_roles(&mappings, &members, &self.out.dir);
        // Those an earlier call of this change finished (ZenQMS ids below `roles_from`, the
        // directory's order): a grant the scope refused is a change again in every recompute,
        // and without the mark a few hundred of them ahead of the rest kept a group change from
        // ever ending (a red team on the scope check).
        if let Some(from) = roles_from.as_deref() {
            changes.retain(|c| c.zenqms_id.as_str() >= from);
        }
        changes.reverse(); // popped from the end, in directory order
        if changes.is_empty() {
            return Ok(GroupsEnd::Done);
        }
        let wave = self.platform.concurrency().max(1);
        let platform = self.platform;
        // The changes checked for hand-made duplicate links, a round of searches at a time
        // (12 users a search, `wave` searches): checked all at once, a 1,000-member grant
        // took calls past their budget, and every call checked them again.
        let mut checked: Vec<roles::RoleChange> = Vec::new();
        let check_next = std::cell::Cell::new(true);
        // Rounds of checks before a chunk's role calls: the duplicate links' (a round), and
        // with a scope the grants' (a `checkMemberGroups` item per user and 20 scope groups,
        // 20 items to a `$batch`, `wave` batches a round).
        let scope_checks = if self.config.scoped() {
            let items = api::LINKS_PER_SEARCH * wave * self.config.scope_groups.len().div_ceil(20);
            items.div_ceil(20).div_ceil(wave) as u64
        } else {
            0
        };
        let checks = 1 + scope_checks;
        // A step is one round of `wave` role calls (and, every 12 of them, its rounds of
        // checks); the first always runs (progress).
        budget::run_steps(
            || budget::fits(platform, 1 + checks * u64::from(check_next.get())),
            || {
                if checked.is_empty() {
                    let n = (api::LINKS_PER_SEARCH * wave).min(changes.len());
                    checked = changes.split_off(changes.len() - n);
                    self.no_grants_outside_scope(&mut checked)?;
                    self.no_grants_to_duplicates(&mut checked)?;
                }
                self.out
                    .apply_roles(roles::take_calls(&mut checked, wave))?;
                check_next.set(checked.is_empty());
                // Done so far: everything below the first change still to make.
                if let Some(next) = checked.last().or(changes.last()) {
                    *roles_from = Some(next.zenqms_id.clone());
                }
                Ok(if changes.is_empty() && checked.is_empty() {
                    Step::Done
                } else {
                    Step::More
                })
            },
        )
        .map(|done| {
            if done {
                GroupsEnd::Done
            } else {
                GroupsEnd::Later
            }
        })
    }
}

/// How a queued group change's role recompute ended in a call ([`Realtime::sync_groups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsEnd {
    /// Every role call made.
    Done,
    /// The budget ran out: the next call recomputes and goes on.
    Later,
}

/// The number of ZenQMS users linked to an Entra id (the base of the default limit:
/// [`guard::entra_links`]), read whole — ZenQMS's search cannot tell an Entra id from another
/// system's `external_id` (docs/zenqms-api.md), so its count would let those raise the limit —
/// when that fits the call's budget with [`BASE_READ_SPARE_ROUNDS`] to spare (a count first,
/// then the pages: the first, then the rest side by side); `None` when it does not (the
/// caller applies the limit's floor, and says so).
///
/// Errors: ZenQMS could not be read.
pub fn linked_base_within_budget(p: &dyn Platform, zen: &Zenqms) -> Result<Option<usize>, Failure> {
    if !budget::fits(p, 2 + BASE_READ_SPARE_ROUNDS) {
        return Ok(None);
    }
    let total = zen.count(api::linked())?;
    let rest = total
        .div_ceil(u64::from(api::SEARCH_PAGE_SIZE))
        .saturating_sub(1)
        .div_ceil(p.concurrency().max(1) as u64);
    if !budget::fits(p, 1 + rest + BASE_READ_SPARE_ROUNDS) {
        return Ok(None);
    }
    let users = zen.search_all(api::linked())?;
    Ok(Some(guard::entra_links(&users)))
}

/// The mapped roles whose groups include one of `groups`.
/// The Entra ids `changes` grant a role to, each once, in order.
fn granting(changes: &[roles::RoleChange]) -> Vec<String> {
    let ids: BTreeSet<&String> = changes
        .iter()
        .filter(|c| !c.add.is_empty())
        .map(|c| &c.entra_id)
        .collect();
    ids.into_iter().cloned().collect()
}

fn desired_from_groups(mappings: &[RoleMapping], groups: &BTreeSet<String>) -> BTreeSet<String> {
    mappings
        .iter()
        .filter(|m| m.groups.iter().any(|g| groups.contains(g)))
        .map(|m| m.role.clone())
        .collect()
}
