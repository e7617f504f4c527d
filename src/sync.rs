//! The full sync (initial sync and redeploy): users page by page, then leavers, then roles.
//!
//! Resumable by construction: progress is checkpointed in [`FullSync`] after every step, each
//! phase is safe to repeat from its start, and the user cursor is the Graph URL of the next page,
//! so a call that runs out of budget returns `pending` and the next call continues exactly there.

mod ahead;
mod carried;
pub mod realtime;

use std::collections::{BTreeMap, BTreeSet};

use crate::clients::graph::{Graph, Listings, MailQuery, Page, USER_PAGE};
use crate::clients::zenqms::Zenqms;
use crate::clients::zenqms::api::{self, ZUser};
use crate::config::{Config, RoleMapping};
use crate::domain::address;
use crate::domain::entra::EntraUser;
use crate::domain::guard;
use crate::domain::links;
use crate::domain::plan::{self, Action, Directory, Planned, Trust, WriteKind};
use crate::domain::roles::{self, RoleChange};
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::budget::{self, Step};
use crate::platform::round::{self, Round};
use crate::platform::{HttpResult, Method, Platform, Request};
use crate::state::{Counts, DEFERRED_MAX, Deferred, FullSync, PageKeys, Phase};
use crate::write::{self, Applier, RoleCall, Write};

/// Deactivations sent per step (rounded up the same way).
const DEACTIVATION_CHUNK: usize = 100;

/// Rounds a call must have left, besides the role calls the members' read may release, for a
/// user step other than its first to go beside that read (see [`Engine::beside_more`]): with
/// fewer, the read would seldom end within the call.
const BESIDE_MORE_ROUNDS: u64 = 3 * budget::MIN_STEP_ROUNDS;

/// The most rounds a members' read may have taken in this call for a step after the first to
/// go beside it (see [`Engine::beside_more`]). A read still going after them is long (a group
/// served a few members a page, 70 pages in a red team's world at concurrency 8); a second
/// step beside it would only double what its end releases in one go (two steps' users' role
/// calls, after a read that takes what it takes when it is not carried between calls).
const BESIDE_MORE_READ_ROUNDS: u64 = 3 * budget::MIN_STEP_ROUNDS;

/// The most users whose look-up keys the checkpoint carries for the next call (a page asked
/// for 100; Graph may serve a few more): about 7 KB of state.
const KEYS_MAX_USERS: usize = 120;

/// Holds a deactivation back for the guard: by name while the checkpoint keeps fewer than
/// [`DEFERRED_MAX`] (and not twice), only counted beyond that (found again later, see
/// [`Phase::Deactivations`]).
fn defer(sync: &mut FullSync, d: Deferred) {
    if sync.deferred.iter().any(|x| x.zenqms_id == d.zenqms_id) {
        return;
    }
    sync.deferred_digest = guard::digest_add(sync.deferred_digest, &d.entra_id);
    if sync.deferred.len() < DEFERRED_MAX {
        sync.deferred.push(d);
    } else {
        sync.deferred_more = sync.deferred_more.saturating_add(1);
    }
}

/// The default deactivation limit's base for a full sync: the ZenQMS users linked to an Entra
/// id when the guard judges. The walk counted those linked before the run's user pages (it
/// comes first: Entra ids only, as a link is read); the run's creates and links add to them
/// (a first deploy's walk counts 0, then links hundreds: judged against the floor, they were
/// held, or, read whole, the directory took calls past their budget; and a second judgement
/// used the walk's count alone).
fn guard_base(sync: &FullSync) -> usize {
    sync.linked_seen
        .saturating_add(sync.totals.created)
        .saturating_add(sync.totals.linked) as usize
}

/// Takes a plan's deactivation (is_active true -> false) out into the run's deferred ones;
/// returns what is left to apply now, if anything.
/// `outside` names the users deactivated for leaving the scope, with the reason to log (the
/// rest are disabled).
fn defer_deactivation(
    mut p: Planned,
    sync: &mut FullSync,
    outside: &BTreeMap<String, &'static str>,
) -> Option<Planned> {
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
            reason: outside
                .get(&p.entra_id)
                .copied()
                .unwrap_or(guard::DISABLED)
                .into(),
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

/// The searches finding the ZenQMS users a step's Graph users need: those linked to them
/// (their ids, 100 to a search) and those holding an address they may match or be written
/// with (100 to a search).
fn lookup_filters(users: &[EntraUser]) -> Vec<serde_json::Value> {
    let (ids, addresses) = lookup_keys(users);
    keyed_filters(&ids, &addresses)
}

/// What `users`' look-ups are made of: their Entra ids (lowercase) and the distinct
/// addresses they may be matched or written with.
fn lookup_keys(users: &[EntraUser]) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = users.iter().map(|u| u.id.to_ascii_lowercase()).collect();
    let addresses: Vec<String> = users
        .iter()
        .filter_map(|u| u.match_address().map(|a| a.as_str().to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (ids, addresses)
}

/// The look-up searches for these keys (see [`lookup_filters`]).
fn keyed_filters(ids: &[String], addresses: &[String]) -> Vec<serde_json::Value> {
    let mut filters: Vec<_> = ids
        .chunks(api::MAX_FILTER_IDS)
        .map(api::with_external_ids)
        .collect();
    filters.extend(addresses.chunks(api::MAX_FILTER_IDS).map(api::with_emails));
    filters
}

/// A page's users as the planner takes them (items without an id are left out).
fn page_users<'v>(items: impl IntoIterator<Item = &'v serde_json::Value>) -> Vec<EntraUser> {
    items.into_iter().filter_map(EntraUser::from_json).collect()
}

/// Where a step of the user listing ended.
enum PageEnd {
    /// The page is done; the listing's next link, if any.
    Next(Option<String>),
    /// The page holds more users: these (lowercase ids) are done.
    More(Vec<String>),
    /// Nothing was done: the members' read left by the call's first step does not fit the
    /// rounds left (the call pauses; the next reads them again).
    Paused,
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

/// Where a walk over the linked ZenQMS users (the `has_external_id` search, in ZenQMS id
/// order) stands after a step.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// Every user was checked.
    Done,
    /// More to check: after ZenQMS id `after`, from search page `page` on (`None`, 0: from the
    /// start).
    At { after: Option<String>, page: u64 },
}

/// A walk step's share of the linked users.
struct Chunk {
    /// The linked, active users after the cursor, with their Entra ids.
    users: Vec<(ZUser, String)>,
    /// Linked users after the cursor, active or not (the guard's base).
    linked: u32,
    /// Linked, inactive users after the cursor holding a mapped role (a leaver's roles are
    /// removed whether or not it was deactivated already).
    inactive_holders: Vec<(ZUser, String)>,
    /// Users after the cursor whose external_id names an Entra id in another form (case,
    /// spaces), with that id as Graph writes it.
    noncanonical: Vec<(ZUser, String)>,
    /// The last ZenQMS id of the pages read (active or not).
    last_id: Option<String>,
    /// Every linked user after the cursor (active or not), in ZenQMS id order, with the
    /// search page it was read from (where a walk cut after it resumes).
    order: Vec<(String, u64)>,
    /// The next page to read.
    next_page: u64,
    /// No page follows.
    last: bool,
}

impl Chunk {
    /// Where the walk goes on after this chunk (every user of it handled).
    fn walk(&self, after: &Option<String>) -> Walk {
        if self.last {
            return Walk::Done;
        }
        Walk::At {
            after: self.last_id.clone().or_else(|| after.clone()),
            page: self.next_page,
        }
    }
}

/// How one call of a full sync ended.
pub struct Progress {
    pub finished: bool,
    /// What this call did.
    pub counts: Counts,
}

/// The sync's working set for one call. It holds no copy of the ZenQMS directory: each step
/// looks up the ZenQMS users its Graph users need (by external_id and by address, 100 to a
/// search), so a call's reads follow its work, not the directory's size.
pub struct Engine<'a> {
    platform: &'a dyn Platform,
    config: &'a Config,
    graph: &'a Graph<'a>,
    out: Applier<'a>,
    /// Transitive members of the mapped groups and the scope groups, read once per call.
    members: Option<roles::MemberIndex>,
    /// The Entra ids in scope (`scope_groups` set), read with `members`.
    scope: Option<BTreeSet<String>>,
    /// The role mappings whose every group was read (see `roles::known`).
    known: Vec<RoleMapping>,
    /// User pages read ahead (the next, and the one after it), by URL: each is fetched in the
    /// round of an earlier step's writes, so Graph's sequential paging overlaps with them.
    prefetched: Vec<(String, Page)>,
    /// User pages (by URL) whose users' ZenQMS accounts this call has looked up already (in
    /// the round of a step before: see [`ahead`]).
    looked_up: BTreeSet<String>,
    /// User pages (by URL) whose link candidates' addresses Graph was asked about already (in
    /// the round of the step before: see [`ahead`]): address -> its holders' Entra ids.
    holders_ahead: Vec<(String, BTreeMap<String, BTreeSet<String>>)>,
    /// Role calls held for the next round: those of users created in the last one, and those
    /// held back so that a round is made of whole waves of the platform's concurrency. What
    /// is left when the call ends is checkpointed by Entra id (`FullSync::roles_due`).
    carry: Vec<RoleCall>,
    /// The verified domains learned before this run (the state's `email_domains`).
    pub learned_domains: BTreeSet<String>,
    /// Linked ZenQMS users, as the walk's last search said (read once per call).
    linked_total: Option<u64>,
    /// For a run the component started (`FullSync::window`): the deactivations the rolling
    /// 24-hour window counts as the call begins, taken off the run's limit.
    pub window_counted: usize,
    /// For such a run: the deactivations its guard approved in this call, which the window
    /// counts from the approval on, before they are sent (a red team: counted as sent, the
    /// rest of an approved set, sent in later calls, was not in the window when
    /// notifications between those calls were judged, and five of a limit of three were made
    /// within ten minutes).
    window_approved: usize,
    /// The run's guard judged in this call: what it approved stands for this call's sends.
    window_judged_now: bool,
    /// The mapped groups' members while they are read beside the call's first user step
    /// (see [`Engine::send_round`]); `None` once read, or when read in rounds of their own.
    members_read: Option<Listings>,
    /// Entra ids of users worked while `members_read` was under way: their role changes are
    /// computed once the members are read ([`Engine::load_members`]), and by the next call
    /// (`roles_due`) if this one ends first. One step's users, or two when a further step
    /// went beside the read (see [`Engine::beside_more`]).
    roles_pending: Vec<String>,
    /// The current step goes beside the members' read though users already wait for their
    /// roles (decided as the step begins: see [`Engine::beside_more`]).
    beside_more: bool,
    /// The call's rounds left when it began (or resumed) the members' read in its opening.
    read_from_left: Option<u64>,
    /// Bytes of the state without its full sync, as the call began (see
    /// [`crate::state::State::bytes_with`]); `usize::MAX` (no further step beside the read)
    /// until the caller sets it.
    pub state_rest_bytes: usize,
    /// Users whose role calls were carried during the current step (from `roles_pending`):
    /// due again if the step fails, like those carried into it.
    carried_in_step: Vec<String>,
    /// The step found the budget too short for the members' read it needs: the call pauses.
    paused: bool,
    /// What the second walk's counting pass found in this call (see [`AgainFound`]).
    again_found: Option<AgainFound>,
    /// Linked ZenQMS users as the run estimates them (`FullSync::linked_hint` and the users
    /// it created and linked since), for the call's first walk step.
    linked_estimate: Option<u64>,
    /// The members may be carried to the next call (`FullSync::members`; not once the run
    /// reads them whole in each call: `MembersCarry::whole`).
    members_carried_ok: bool,
    /// The members read whole, while they fit the checkpoint (see [`carried`]).
    members_whole_read: Option<roles::Memberships>,
}

/// The leaving users the second walk's counting pass found in this call, from where this
/// call's part of it began to where it reached. Once the set is judged, the writing pass
/// deactivates these from memory instead of reading them again (what it reads again is only
/// the part walked by earlier calls): the same users the guard judged, read seconds before.
struct AgainFound {
    /// The walk's cursor when this call's part began (`None`: the walk's start).
    start: Option<String>,
    /// The search page that part began at.
    start_page: u64,
    /// The counting pass reached the walk's end in this call.
    complete: bool,
    /// Leaving users in ZenQMS id order: the user, its Entra id, why it leaves, its UPN (empty
    /// when gone), and the search page of the step that read it (where a later call resumes).
    users: Vec<(ZUser, String, &'static str, String, u64)>,
}

impl<'a> Engine<'a> {
    pub fn new(
        platform: &'a dyn Platform,
        config: &'a Config,
        graph: &'a Graph<'a>,
        cause: &str,
    ) -> Self {
        let zen = Zenqms::new(platform, config);
        let mut out = Applier::new(zen, Log::new(platform), cause, Directory::default());
        out.dry_run = config.dry_run;
        Engine {
            platform,
            config,
            graph,
            out,
            members: None,
            scope: None,
            known: Vec::new(),
            prefetched: Vec::new(),
            looked_up: BTreeSet::new(),
            holders_ahead: Vec::new(),
            carry: Vec::new(),
            learned_domains: BTreeSet::new(),
            linked_total: None,
            window_counted: 0,
            window_approved: 0,
            window_judged_now: false,
            members_read: None,
            roles_pending: Vec::new(),
            beside_more: false,
            read_from_left: None,
            state_rest_bytes: usize::MAX,
            carried_in_step: Vec::new(),
            paused: false,
            again_found: None,
            linked_estimate: None,
            members_carried_ok: false,
            members_whole_read: None,
        }
    }

    /// Adds ZenQMS users read now to the call's directory, keeping the ones it already holds:
    /// those are what this call's own writes made of them (a look-up sent beside a write may
    /// predate it).
    fn learn_users(&mut self, users: Vec<ZUser>) {
        for z in users {
            if self.out.dir.get(&z.id).is_none() {
                self.out.dir.upsert(z);
            }
        }
    }

    /// Looks up the ZenQMS users a step's Graph users need: those linked to them and those
    /// holding an address they may match or be written with (one round: 100 ids, 100
    /// addresses to a search).
    fn look_up(&mut self, users: &[EntraUser]) -> Result<(), Failure> {
        let filters = lookup_filters(users);
        if filters.is_empty() {
            return Ok(());
        }
        let found = self.out.zen.search_many(filters)?;
        self.learn_users(found);
        Ok(())
    }

    /// Takes in the answers to look-ups sent ahead for a page's users (first pages only);
    /// true when every search fit its first page (else the page's own step looks up again).
    fn learn_lookups(&mut self, answers: Vec<HttpResult>) -> bool {
        let mut complete = true;
        for answer in answers {
            match Zenqms::read_page(answer) {
                Ok(page) => {
                    complete &= page.total <= page.data.len() as u64;
                    self.learn_users(page.data);
                }
                Err(_) => complete = false,
            }
        }
        complete
    }

    /// Removes and returns the page read ahead for `url`, if any.
    fn take_prefetched(&mut self, url: &str) -> Option<Page> {
        let i = self.prefetched.iter().position(|(u, _)| u == url)?;
        Some(self.prefetched.remove(i).1)
    }

    /// Role calls checkpointed by the last call (`roles_due`): recomputed for those users now
    /// (what was since written is no longer a change) and carried into this call's next round.
    /// `found`: their ZenQMS users were read already (by [`Engine::open`]).
    fn restore_roles_due(&mut self, sync: &mut FullSync, found: bool) -> Result<(), Failure> {
        if sync.roles_due.is_empty() || self.config.role_mappings.is_empty() {
            sync.roles_due.clear();
            return Ok(());
        }
        // Cleared only once every change is computed: a failure keeps them due.
        let ids = sync.roles_due.clone();
        if !found {
            let users = self.out.zen.linked_to(&ids)?;
            self.learn_users(users);
        }
        let mut changes = Vec::new();
        for id in &ids {
            changes.extend(self.role_change_or_later(id)?);
        }
        self.carry.extend(write::role_calls(changes));
        sync.roles_due.clear();
        Ok(())
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
    /// For a run the component started (`FullSync::window`): the deactivations this call adds
    /// to the rolling window. What the guard approved counts in the hour of the approval
    /// (before it is sent); what a later call sends counts again in that call's hour, so that
    /// a deactivation sent hours after its approval (a ZenQMS outage, a wait under `dry_run`)
    /// still counts for 24 hours from its sending (a red team: five automatic deactivations
    /// within a minute, the approval's hour having passed). On the safe side: a send is never
    /// counted less than once.
    pub fn window_count(&self) -> usize {
        let sent = if self.window_judged_now {
            0
        } else {
            self.out.deactivations_sent
        };
        self.window_approved + sent
    }

    pub fn run(&mut self, sync: &mut FullSync) -> Result<Progress, Failure> {
        let mut counts = Counts::default();
        let platform = self.platform;
        self.linked_estimate = (sync.linked_hint > 0).then(|| {
            u64::from(sync.linked_hint)
                + u64::from(sync.totals.created)
                + u64::from(sync.totals.linked)
        });
        self.resume_members(sync)?;
        let roles_due_found = self.open(sync)?;
        self.restore_roles_due(sync, roles_due_found)?;
        // The members' read (scope groups) did not fit beside the call's opening rounds: it
        // goes on in the next call.
        let opened = !std::mem::take(&mut self.paused);
        let concurrency = self.concurrency();
        // Role calls the next step sends first: those carried, and those of the users waiting
        // for the members' read (it may end within the step and release them: two each at
        // most, an add and a remove).
        let carry = std::cell::Cell::new(2 * self.roles_pending.len());
        let result = if !opened {
            Ok(false)
        } else {
            budget::run_steps(
                // A step sends the role calls carried from the last one too: their waves are
                // the step's own (a step that would not fit them is the next call's, which
                // recomputes them from `roles_due`).
                || {
                    let carried = carry.get().div_ceil(concurrency) as u64;
                    budget::fits(platform, budget::MIN_STEP_ROUNDS + carried)
                },
                || {
                    self.out.counts = Counts::default();
                    // A step that fails is done again from its start by a later call: what it
                    // deferred is taken back, so the retry does not count anyone twice; the role
                    // calls it carried in from the step before are due again (that step is not
                    // done again).
                    let deferred = (
                        sync.deferred.len(),
                        sync.deferred_more,
                        sync.deferred_digest,
                        sync.walked,
                    );
                    // What the walks count as they read: a step done again (it failed, or
                    // paused before its phase moved on) must not count its users twice (a red
                    // team: each retried step added its 100 links to the guard's base again,
                    // and a limit of 10 let 30 deactivations through after a Graph outage).
                    let counted = (
                        sync.phase.clone(),
                        sync.linked_seen,
                        sync.again_count,
                        sync.again_digest,
                    );
                    let carried: Vec<String> = self
                        .carry
                        .iter()
                        .map(|r| r.change.entra_id.clone())
                        .collect();
                    self.carried_in_step.clear();
                    self.beside_more = self.beside_more(sync);
                    let finished = self.step_once(sync).inspect_err(|_| {
                        (sync.linked_seen, sync.again_count, sync.again_digest) =
                            (counted.1, counted.2, counted.3);
                        sync.deferred.truncate(deferred.0);
                        sync.deferred_more = deferred.1;
                        sync.deferred_digest = deferred.2;
                        // The walk counts only the deactivations made (a write that failed is
                        // not one); those that succeeded are no longer a change when the step is
                        // done again, so they count now, in the walk and in the run's totals
                        // (which then match its audit trail).
                        sync.walked = deferred.3 + self.out.counts.deactivated;
                        sync.totals.add(&self.out.counts);
                        sync.roles_due.extend(carried);
                        sync.roles_due.append(&mut self.carried_in_step);
                    })?;
                    counts.add(&self.out.counts);
                    sync.totals.add(&self.out.counts);
                    carry.set(self.carry.len() + 2 * self.roles_pending.len());
                    let paused = std::mem::take(&mut self.paused);
                    if paused && sync.phase == counted.0 {
                        (sync.linked_seen, sync.again_count, sync.again_digest) =
                            (counted.1, counted.2, counted.3);
                    }
                    Ok::<_, Failure>(if paused {
                        Step::Paused
                    } else if finished {
                        Step::Done
                    } else {
                        Step::More
                    })
                },
            )
        };
        // The call stopped because its next step would not fit: the role calls still
        // carried go out now if they alone fit the rounds left (rounds the call would
        // otherwise leave unused; the next call would send them in waves of its own). A dry
        // run sends nothing, so it plans them now whatever the rounds left: the next call
        // would look for accounts it only pretended to create or link, find none, and leave
        // their role changes out of the preview.
        let result = match result {
            Ok(false) if !self.carry.is_empty() => {
                let waves = self.carry.len().div_ceil(concurrency) as u64;
                if self.out.dry_run || budget::fits(platform, waves) {
                    let calls = std::mem::take(&mut self.carry);
                    let ids: Vec<String> =
                        calls.iter().map(|r| r.change.entra_id.clone()).collect();
                    self.out.counts = Counts::default();
                    let sent = self.out.apply_role_calls(calls);
                    counts.add(&self.out.counts);
                    sync.totals.add(&self.out.counts);
                    // A failure: they are due again (recomputed: what was written is no
                    // longer a change).
                    sent.inspect_err(|_| sync.roles_due.extend(ids))
                        .map(|()| false)
                } else {
                    Ok(false)
                }
            }
            other => other,
        };
        // Role calls still carried, and those of a failed step: their users, for the next call
        // (a step's worth at most).
        sync.roles_due
            .extend(self.carry.iter().map(|r| r.change.entra_id.clone()));
        sync.roles_due.append(&mut self.roles_pending);
        sync.roles_due.sort();
        sync.roles_due.dedup();
        sync.next_keys = self.next_page_keys(sync);
        self.carry_members(sync, result.is_ok());
        let finished = result?;
        Ok(Progress {
            finished: finished && sync.roles_due.is_empty(),
            counts,
        })
    }

    /// The look-up keys of the run's next user page and of the page after it, those this
    /// call read ahead (see `FullSync::next_keys`); none for a page of more than
    /// [`KEYS_MAX_USERS`] users.
    fn next_page_keys(&self, sync: &FullSync) -> Vec<PageKeys> {
        let Phase::Users { next, .. } = &sync.phase else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        let mut url = Some(next.clone());
        while let Some(u) = url.take().filter(|_| keys.len() < 2) {
            let Some(page) = self.prefetched_page(&u) else {
                break;
            };
            let users = page_users(&page.items);
            if users.is_empty() || users.len() > KEYS_MAX_USERS {
                break;
            }
            let (ids, addresses) = lookup_keys(&users);
            url = page.next.clone();
            keys.push(PageKeys {
                url: u,
                ids,
                addresses,
            });
        }
        keys
    }

    fn step_once(&mut self, sync: &mut FullSync) -> Result<bool, Failure> {
        if !matches!(sync.phase, Phase::Users { .. }) && !self.roles_pending.is_empty() {
            // The listing ended while the members were read beside it: its users' roles
            // before anything else (the run's last step sends the role calls carried).
            if !self.members_within_budget()? {
                return Ok(false);
            }
        }
        match sync.phase.clone() {
            Phase::Users { next, skip, done } => {
                let end = self.users_page(&next, skip, done, sync)?;
                if matches!(end, PageEnd::Paused) {
                    return Ok(false);
                }
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
                    // (A run checkpointed before the walk came first walks now.)
                    PageEnd::Next(None) if !sync.leavers_done => Phase::Leavers {
                        after: None,
                        page: 0,
                    },
                    PageEnd::Next(None) => Phase::Deactivations {
                        after: None,
                        page: 0,
                    },
                    PageEnd::Paused => return Ok(false),
                };
                Ok(false)
            }
            Phase::Leavers { after, page } => {
                sync.phase = match self.leavers(after, page, sync)? {
                    Walk::At { after, page } => Phase::Leavers { after, page },
                    Walk::Done => {
                        sync.leavers_done = true;
                        if sync.batches == 0 {
                            // The walk comes first (links in another form are rewritten
                            // before any user page looks them up); then the user pages.
                            Phase::Users {
                                next: Graph::users_url(),
                                skip: 0,
                                done: Vec::new(),
                            }
                        } else {
                            Phase::Deactivations {
                                after: None,
                                page: 0,
                            }
                        }
                    }
                };
                Ok(false)
            }
            Phase::Deactivations { after, page } => {
                sync.phase = match self.deactivations(after, page, sync)? {
                    Walk::At { after, page } => Phase::Deactivations { after, page },
                    Walk::Done => Phase::Roles,
                };
                Ok(false)
            }
            Phase::Roles => self.roles_carried(),
        }
    }

    /// Reads the transitive members of the mapped groups and the scope groups, once per call.
    ///
    /// Errors: a read failed, or a scope group is gone (fatal: see [`crate::domain::scope`]).
    /// A read begun beside the call's first user step is finished in rounds of its own; the
    /// role changes of the users worked meanwhile (`roles_pending`) are then carried into the
    /// next round.
    fn load_members(&mut self) -> Result<(), Failure> {
        if self.members.is_none() {
            let members = match self.members_read.take() {
                Some(listings) => self.graph.finish_listings(listings)?,
                None => self.graph.transitive_members(&self.config.read_groups())?,
            };
            self.set_members(&members)?;
        }
        for id in std::mem::take(&mut self.roles_pending) {
            if let Some(c) = self.role_change(&id)? {
                self.carry.extend(write::role_calls(vec![c]));
                self.carried_in_step.push(id);
            }
        }
        Ok(())
    }

    /// The members' read begun in the call's opening rounds (see [`Engine::send_round`]) or
    /// by an earlier call (see [`carried`]), finished. Its rounds go on while a round and a
    /// step's minimum still fit after them. Then, false, and the call pauses
    /// ([`Engine::paused`]):
    /// - when the read fits the checkpoint: after reading on while a round fits (at least one
    ///   round in each call, so that the read moves on), the next call goes on from there;
    /// - else, when the call has waited on a retry: the next call, without those waits, reads
    ///   them again.
    ///
    /// Otherwise the read is finished whatever it takes: a pause would not help (the next call
    /// needs the same rounds).
    ///
    /// Errors: a member page failed after its retries, or a listing repeated a link.
    fn members_within_budget(&mut self) -> Result<bool, Failure> {
        let waited = self.platform.has_waited();
        let mut stopped = false;
        if let Some(listings) = self.members_read.as_mut() {
            let end = carried::read_within(
                self.platform,
                self.graph,
                listings,
                budget::MIN_STEP_ROUNDS,
                self.members_carried_ok,
                waited,
            )?;
            if end == carried::ReadEnd::Stopped {
                self.paused = true;
                return Ok(false);
            }
            stopped = !budget::fits(self.platform, 1 + budget::MIN_STEP_ROUNDS);
        }
        self.load_members()?;
        if stopped && self.members_whole_read.is_some() {
            // Read to its end, but no step fits after it: the members go to the next call.
            self.paused = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// When the read beside the user steps has reached its end: the members are taken in (see
    /// [`Engine::load_members`]).
    fn members_ready(&mut self) -> Result<(), Failure> {
        if self.members_read.as_ref().is_some_and(Listings::done) {
            self.load_members()?;
        }
        Ok(())
    }

    /// Whether this step works its users before the members are read (they are read beside
    /// it): the call's first user step, whose users' roles wait in `roles_pending`, and a
    /// step after it when [`Engine::beside_more`] let it; a later step finishes the read
    /// first. Only while the read's requests take at most half of each wave (at concurrency
    /// 1 a wave would carry nothing else). Never in a dry run: a user it pretends to create
    /// or link must not wait for its roles into a later call, which would look for an account
    /// that ZenQMS does not have and leave the user's role changes out of the preview.
    fn members_beside(&self) -> bool {
        !self.out.dry_run
            && self.members.is_none()
            && (self.roles_pending.is_empty() || self.beside_more)
            && self
                .members_read
                .as_ref()
                .is_some_and(|l| !l.stalled() && 2 * l.requests_per_round() <= self.concurrency())
    }

    /// Whether the step about to begin may go beside the members' read though users already
    /// wait for their roles. A members' read longer than one step (a large group's pages
    /// follow one another: 7 pages of 999 at 100,000 users) otherwise leaves the rounds after
    /// the call's first step with nothing but its pages. Only when all of these hold, so that
    /// nothing is ever taken back:
    /// - the run is at a user page, and this is a real run (a dry run works no step beside
    ///   the read: see [`Engine::members_beside`]);
    /// - at most one step's users wait ([`USER_PAGE`]), so at most two steps' do after it;
    /// - the read began in this call's opening at most [`BESIDE_MORE_READ_ROUNDS`] ago, or
    ///   still fits the checkpoint (a long read that would end "whatever it takes" would
    ///   release two steps' role calls at once);
    /// - the call has [`BESIDE_MORE_ROUNDS`] left after the role calls the read's end may
    ///   release (two for each user waiting or worked by the step: an add and a remove), so
    ///   the read most likely ends within the call;
    /// - should it not, the checkpoint naming those users still fits the platform's 64 KiB:
    ///   the state is within [`crate::state::BESIDE_MORE_STATE_MAX`] now.
    fn beside_more(&self, sync: &FullSync) -> bool {
        if self.out.dry_run
            || self.roles_pending.is_empty()
            || self.roles_pending.len() + self.carry.len() > USER_PAGE as usize
            || !matches!(sync.phase, Phase::Users { .. })
            || !(self.read_carried_so_far()
                || self.read_from_left.is_some_and(|from| {
                    from.saturating_sub(self.platform.rounds_left()) <= BESIDE_MORE_READ_ROUNDS
                }))
        {
            return false;
        }
        let released = 2 * (self.roles_pending.len() + self.carry.len() + USER_PAGE as usize);
        budget::fits(
            self.platform,
            BESIDE_MORE_ROUNDS + released.div_ceil(self.concurrency()) as u64,
        ) && crate::state::State::bytes_with(self.state_rest_bytes, sync)
            <= crate::state::BESIDE_MORE_STATE_MAX
    }

    /// Whether the members' read, as far as it got, still fits the checkpoint: one that goes on
    /// fitting pauses at the call's end instead of reading on past it (see
    /// [`carried::read_within`]).
    fn read_carried_so_far(&self) -> bool {
        self.members_carried_ok
            && self
                .members_read
                .as_ref()
                .is_some_and(|l| l.carried_bytes() <= crate::state::MEMBERS_CARRIED_MAX)
    }

    /// When the role calls carried (those a members' read that ended at this step's start
    /// released: up to two steps' users' after a read that took what it took, when it is not
    /// carried between calls) do not fit the rounds left beside a user slice: they go out as
    /// far as the rounds left carry (a wave at least, so that every call moves on), the rest
    /// wait for the next call (`roles_due`), and the step works no user, so that what waits
    /// never grows. True when it did so.
    ///
    /// Errors: a role call failed (its user is due again: see `Engine::run`).
    fn role_calls_only(&mut self) -> Result<bool, Failure> {
        let c = self.concurrency();
        let fit = usize::try_from(self.platform.rounds_left().saturating_sub(1))
            .unwrap_or(usize::MAX)
            .saturating_mul(c);
        if self.carry.len() <= fit {
            return Ok(false);
        }
        let rest = self.carry.split_off(fit.max(c).min(self.carry.len()));
        let calls = std::mem::replace(&mut self.carry, rest);
        self.out.apply_role_calls(calls)?;
        Ok(true)
    }

    /// The places in each wave the members' read beside the step takes (0 when it is not).
    fn members_share(&self) -> usize {
        match &self.members_read {
            Some(l) if self.members_beside() => l.requests_per_round(),
            _ => 0,
        }
    }

    /// The role change of `entra_id`, or, while the members are read beside the step
    /// (`members_read`), none yet: the user waits in `roles_pending`.
    fn role_change_or_later(&mut self, entra_id: &str) -> Result<Option<RoleChange>, Failure> {
        if self.members.is_none()
            && self.members_read.is_some()
            && !self.config.role_mappings.is_empty()
        {
            self.roles_pending.push(entra_id.to_string());
            return Ok(None);
        }
        self.role_change(entra_id)
    }

    /// Sends `round`. While the mapped groups' members are read beside the user steps
    /// (`members_read`), their next pages go with it, in each wave of the platform's
    /// concurrency: a listing's pages are sequential (each nextLink comes with the page before
    /// it), so a read of P pages rides the first P waves of the round instead of taking P
    /// rounds of its own before the step. When there are as many of the members' requests as
    /// the concurrency, they go once, beside the whole round. A member page that fails is
    /// asked again, with retries, by [`Engine::load_members`].
    fn send_round(&mut self, round: Round) -> round::Answers {
        let graph = self.graph;
        let concurrency = self.concurrency();
        let Some(listings) = self
            .members_read
            .as_mut()
            .filter(|l| !l.done() && !l.stalled())
        else {
            return round.send(|reqs| graph.send_all(reqs));
        };
        let mut send = |reqs: Vec<Request>| {
            let total = reqs.len();
            let mut out = Vec::with_capacity(total);
            let mut rest = reqs.into_iter().peekable();
            // At least one wave: a round of nothing else still reads the members' next pages.
            let mut first = true;
            while first || rest.peek().is_some() {
                first = false;
                let members = if listings.done() || listings.stalled() {
                    None
                } else {
                    // A repeated link stalls the read; finishing it reports the error.
                    match listings
                        .urls()
                        .map(|urls| (graph.get_requests(&urls), urls.len()))
                    {
                        Ok((Ok(reqs), n)) => Some((reqs, n)),
                        _ => {
                            listings.mark_stalled();
                            None
                        }
                    }
                };
                let Some((member_reqs, n)) = members else {
                    let left: Vec<Request> = rest.by_ref().collect();
                    let k = left.len();
                    out.extend(round::fitted(graph.send_all(left), k));
                    break;
                };
                let m = member_reqs.len();
                let take = if m < concurrency {
                    concurrency - m
                } else {
                    usize::MAX
                };
                let mut wave: Vec<Request> = rest.by_ref().take(take).collect();
                let k = wave.len();
                wave.extend(member_reqs);
                // A retry's wait in this wave leaves room for the round's waves after it.
                let after = rest.len().div_ceil(concurrency) as u64;
                let mut answers = round::fitted(graph.send_wave(wave, after), k + m);
                let theirs = answers.split_off(k);
                out.extend(answers);
                // Not strict: a failed page stalls the read (see above).
                let _ = listings.take(Graph::get_answers(n, theirs), false);
            }
            out
        };
        if round.is_empty() {
            send(Vec::new());
            return round::Answers::new(Vec::new(), 0);
        }
        round.send(send)
    }

    /// Takes in the members read (see [`Engine::load_members`]).
    fn set_members(&mut self, members: &roles::Memberships) -> Result<(), Failure> {
        self.keep_whole_read(members);
        if self.config.scoped() {
            self.scope = Some(crate::domain::scope::members(self.config, members)?);
        }
        // A mapped group that is gone has no entry: its role is left as it is, and every
        // call of the run says so.
        let mappings = &self.config.role_mappings;
        roles::log_missing(
            &self.out.log,
            &roles::missing(mappings, |g| members.contains_key(g)),
        );
        self.known = roles::known(mappings, members);
        self.members = Some(roles::MemberIndex::new(members));
        Ok(())
    }

    /// The call's first reads, when the run is at a user page and the mapped groups' members
    /// are to be read. Round 1: the members' first pages, the user page (unless read ahead)
    /// and the ZenQMS users of the role calls the last call checkpointed (`roles_due`).
    /// Round 2: the members' next pages, that page's look-ups and the page after it. Side by
    /// side instead of one after the other. The members' read then goes on beside the first
    /// user step ([`Engine::send_round`]) when that step's plan does not need them (no scope
    /// groups); else it is finished here. True when the `roles_due` users were all found this
    /// way (else [`Engine::restore_roles_due`] searches for them itself). A read that fails
    /// here is simply done again where it is needed.
    ///
    /// Errors: the members could not be read (as [`Engine::load_members`]).
    fn open(&mut self, sync: &FullSync) -> Result<bool, Failure> {
        let Phase::Users { next, .. } = &sync.phase else {
            return Ok(false);
        };
        let groups = self.config.read_groups();
        if self.members.is_some() || groups.is_empty() {
            return Ok(false);
        }
        if self.members_read.is_none() {
            self.members_read = Some(Graph::members_listings(&groups));
        }
        self.read_from_left = Some(self.platform.rounds_left());
        let mut round = Round::new();
        let page_slot = if self.prefetched.iter().any(|(u, _)| u == next) {
            None
        } else {
            Some(round.add(self.graph.request(Method::Get, next, None)?))
        };
        let filters: Vec<serde_json::Value> = if self.config.role_mappings.is_empty() {
            Vec::new()
        } else {
            sync.roles_due
                .chunks(api::MAX_FILTER_IDS)
                .map(api::with_external_ids)
                .collect()
        };
        let due_slots = round.add_all(
            filters
                .iter()
                .map(|f| self.out.zen.request(&api::search_users(f.clone(), 1))),
        );
        // The page's look-ups too, and the page after it with its look-ups, from the keys
        // the last call read them with.
        let keys: Vec<&PageKeys> = match sync.next_keys.as_slice() {
            [first, rest @ ..] if first.url == *next => std::iter::once(first)
                .chain(rest.first().filter(|k| k.url != *next))
                .collect(),
            _ => Vec::new(),
        };
        // Only what fits the round's one wave beside the rest (the members' share included):
        // the keys save a round, they must not add one (at a concurrency of 1 or 2 they would).
        let members_share = self
            .members_read
            .as_ref()
            .map_or(0, Listings::requests_per_round);
        let mut room = self
            .concurrency()
            .saturating_sub(round.len() + members_share);
        let mut key_slots = Vec::new();
        let mut used = Vec::new();
        let mut holders = ahead::AheadSlots::default();
        for (i, k) in keys.iter().enumerate() {
            let filters = keyed_filters(&k.ids, &k.addresses);
            // The page's address check too (see `Engine::add_holders_from_keys`).
            let check = match i {
                0 => self.holders_requests(&k.addresses, sync),
                _ => 0,
            };
            let need = filters.len() + usize::from(i > 0);
            if need > room {
                break;
            }
            room -= need;
            if i == 0 && check <= room {
                room -= check;
                holders = self.add_holders_from_keys(&mut round, &k.url, &k.addresses, sync)?;
            }
            let read = match i {
                0 => None,
                _ => Some(round.add(self.graph.request(Method::Get, &k.url, None)?)),
            };
            let lookups = round.add_all(
                filters
                    .into_iter()
                    .map(|f| self.out.zen.request(&api::search_users(f, 1))),
            );
            key_slots.push((read, lookups));
            used.push(*k);
        }
        let keys = used;
        let mut answers = self.send_round(round);
        if let Some(slot) = page_slot
            && let Ok(p) = Graph::read_page(answers.take(slot), next, "listing users")
        {
            self.prefetched.push((next.clone(), p));
        }
        let roles_due_answers = answers.take_all(&due_slots);
        self.take_ahead(&mut answers, holders);
        for (k, (read, lookups)) in keys.iter().zip(key_slots) {
            if let Some(slot) = read {
                // The page after it, when the page as read now still links to it.
                let linked = self
                    .prefetched_page(next)
                    .is_some_and(|p| p.next.as_deref() == Some(k.url.as_str()));
                match Graph::read_page(answers.take(slot), &k.url, "listing users") {
                    Ok(p) if linked => self.prefetched.push((k.url.clone(), p)),
                    _ => {}
                }
            }
            let complete = self.learn_lookups(answers.take_all(&lookups));
            // Trusted when the page as read now needs no key the look-ups did not cover.
            let covered = self.prefetched_page(&k.url).is_some_and(|p| {
                let (ids, addresses) = lookup_keys(&page_users(&p.items));
                ids.iter().all(|i| k.ids.contains(i))
                    && addresses.iter().all(|a| k.addresses.contains(a))
            });
            if complete && covered {
                self.looked_up.insert(k.url.clone());
            }
        }
        if self.looked_up.contains(next) && self.needs_holders(next, sync) {
            // Its look-ups are in: its address check (and the reads ahead of the pages after
            // it) now, so that its writes can go in the next round. (Asked already, or none to
            // ask: its step's round carries the reads ahead.) What was asked from the keys
            // missed a candidate: all of them are asked again here, in one round.
            self.holders_ahead.retain(|(u, _)| u != next);
            let mut round = Round::new();
            let slots = self.add_ahead(&mut round, Some(next), sync)?;
            let mut answers = self.send_round(round);
            self.take_ahead(&mut answers, slots);
        }
        // The page's look-ups, and the page after it.
        let page = self
            .prefetched
            .iter()
            .find(|(u, _)| u == next)
            .map(|(_, p)| p)
            .filter(|_| !self.looked_up.contains(next));
        if let Some(p) = page {
            let users = page_users(&p.items);
            let after = p
                .next
                .clone()
                .filter(|n| !self.prefetched.iter().any(|(u, _)| u == n));
            let mut round = Round::new();
            let lookups = self.add_lookups(&mut round, &users);
            let after_slot = match &after {
                Some(n) => Some(round.add(self.graph.request(Method::Get, n, None)?)),
                None => None,
            };
            let mut answers = self.send_round(round);
            if let (Some(n), Some(slot)) = (after, after_slot)
                && let Ok(p) = Graph::read_page(answers.take(slot), &n, "listing users")
            {
                self.prefetched.push((n, p));
            }
            if !lookups.is_empty() && self.learn_lookups(answers.take_all(&lookups)) {
                self.looked_up.insert(next.clone());
            }
        }
        if self.config.scoped() {
            // The plan needs the scope: read to the end now (or, when that does not fit, in
            // the next call: this one pauses).
            self.members_within_budget()?;
        } else {
            self.members_ready()?;
        }
        Ok(!filters.is_empty() && self.learn_lookups(roles_due_answers))
    }

    /// The role change one linked user needs, if any.
    fn role_change(&mut self, entra_id: &str) -> Result<Option<RoleChange>, Failure> {
        if self.config.role_mappings.is_empty() {
            return Ok(None);
        }
        self.load_members()?;
        let members = self.members.as_ref().expect("loaded above");
        let Some(z) = self.out.dir.linked_once(entra_id) else {
            return Ok(None);
        };
        let mappings = &self.known;
        let desired = members.desired_roles(mappings, entra_id);
        let mut change = roles::change_for(z, entra_id, mappings, &desired);
        // A user outside the scope is not provisioned: no mapped role is granted to its
        // account (one the guard keeps active, held as a scope leaver, got them: a red team).
        // Its roles are removed as anyone's are.
        if let (Some(scope), Some(c)) = (&self.scope, change.as_mut())
            && !scope.contains(entra_id)
        {
            c.add.clear();
        }
        Ok(change.filter(|c| !c.add.is_empty() || !c.remove.is_empty()))
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
        let page = match self.take_prefetched(url) {
            Some(p) => p,
            None => self.graph.page(url, "listing users")?,
        };
        // A step works as many of the page's users as its writes fit in the rounds left,
        // USER_PAGE at most: a page longer than asked for (Graph decides page sizes) or a
        // budget nearly spent is worked a slice per step, never past the budget. First the
        // bound that needs no plan: three requests a user (a write, a role added, a role
        // removed) after the step's own rounds (the address look-up, a second write round, the
        // role calls carried from the last step). When the rest of the page does not fit that
        // bound, the slice is sized by the page's plan instead (`slice_by_plan`).
        // The mapped groups' members are read before the slice is sized (once per call).
        // Unless they are read beside this step (see `Engine::send_round`), their share of
        // each wave then kept from the step's users.
        if self.beside_more && page.items.len() > KEYS_MAX_USERS {
            // A page longer than asked for: its users would pass the bound the checkpoint's
            // `roles_due` is counted with.
            self.beside_more = false;
        }
        let share = self.members_share();
        if !self.config.read_groups().is_empty() && share == 0 && !self.members_within_budget()? {
            return Ok(PageEnd::Paused);
        }
        if share == 0 && self.role_calls_only()? {
            // The page is worked by a later step.
            self.prefetched.insert(0, (url.to_string(), page));
            return Ok(PageEnd::Paused);
        }
        // The role calls carried from the last step go out in this step's writes round too.
        let carried = self.carry.len().div_ceil(self.concurrency()) as u64;
        let min = (self.concurrency() / 2).max(1);
        let (platform, concurrency) = (self.platform, self.concurrency());
        let bound_with = move |carried: u64| {
            let bound = budget::items_that_fit(platform, 3 + carried, 3, min, USER_PAGE as usize);
            if share > 0 {
                (bound * (concurrency - share) / concurrency).max(min)
            } else {
                bound
            }
        };
        let mut bound = bound_with(carried);
        // The page's users not done yet (by id; a checkpoint from before ids were kept says
        // how many by position).
        let done_set: BTreeSet<&str> = done.iter().map(String::as_str).collect();
        let todo: Vec<&serde_json::Value> = page
            .items
            .iter()
            .skip(if done.is_empty() { skip } else { 0 })
            .filter(|item| !item_done(item, &done_set))
            .collect();
        // Each item as a user (None: no id, skipped when its slice is worked).
        let parsed: Vec<Option<EntraUser>> = todo
            .iter()
            .map(|item| {
                EntraUser::from_json(item).map(|mut u| {
                    if let Some(scope) = &self.scope {
                        u.in_scope = scope.contains(&u.id);
                    }
                    u
                })
            })
            .collect();
        let all: Vec<EntraUser> = parsed.iter().flatten().cloned().collect();
        if !self.looked_up.contains(url) {
            // Not looked up ahead (the call's first page): the whole page's users now, and the
            // next page read in the same round, so that its look-ups can go ahead of it.
            let next = page
                .next
                .clone()
                .filter(|n| !self.prefetched.iter().any(|(u, _)| u == n));
            let mut round = Round::new();
            let next_slot = match &next {
                Some(n) => Some(round.add(self.graph.request(Method::Get, n, None)?)),
                None => None,
            };
            let slots = self.add_lookups(&mut round, &all);
            let mut answers = self.send_round(round);
            if let (Some(n), Some(slot)) = (&next, next_slot)
                && let Ok(p) = Graph::read_page(answers.take(slot), n, "listing users")
            {
                self.prefetched.push((n.clone(), p));
            }
            if !self.learn_lookups(answers.take_all(&slots)) {
                // A search with more than a page of answers: all of them, as a search does.
                self.look_up(&all)?;
            }
            self.looked_up.insert(url.to_string());
        }
        // The linking facts for the rest of the page (the slice's are among them).
        let fits = todo.len() <= bound;
        let trust = self.trust(&all, sync, url, page.next.as_deref().filter(|_| fits))?;
        // (Members read beside the rounds so far may be complete: this step's plan uses them.)
        self.members_ready()?;
        // Its end released the role calls of the users who waited for it: they go out in this
        // step's writes round, so the slice is sized with them (the step's admission counted
        // them: see `Engine::run`).
        let carried_now = self.carry.len().div_ceil(self.concurrency()) as u64;
        if carried_now > carried {
            bound = bound.min(bound_with(carried_now));
        }
        let fits = todo.len() <= bound;
        // The users this step works (by position in `todo`).
        let chosen = if fits {
            vec![true; todo.len()]
        } else {
            self.slice_by_plan(&parsed, &trust, bound)?
        };
        let last_slice = chosen.iter().all(|c| *c);
        let page_next = if last_slice { page.next.clone() } else { None };
        let newly: Vec<String> = todo
            .iter()
            .zip(&chosen)
            .filter(|(_, c)| **c)
            .filter_map(|(i, _)| item_key(i))
            .collect();
        let mut users = Vec::with_capacity(newly.len());
        for (user, _) in parsed.into_iter().zip(&chosen).filter(|(_, c)| **c) {
            match user {
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
        let outside: BTreeMap<String, &'static str> = users
            .iter()
            .filter(|u| !u.in_scope)
            .map(|u| {
                let reason = if u.account_enabled == Some(false) {
                    crate::domain::scope::LEFT_AND_DISABLED
                } else {
                    crate::domain::scope::LEFT
                };
                (u.id.clone(), reason)
            })
            .collect();
        let (plans, later) = plan::staged(plan::plan_batch(&users, &mut self.out.dir, &trust));
        let plans: Vec<Planned> = plans
            .into_iter()
            .filter_map(|p| defer_deactivation(p, sync, &outside))
            .collect();
        let writes = self.out.prepare(plans);
        // Users created or linked by these writes: their roles once the writes are in (until
        // then no ZenQMS user is linked to them).
        let creating: BTreeSet<&str> = writes
            .iter()
            .filter(|w| matches!(w.kind, WriteKind::Create | WriteKind::Link))
            .map(|w| w.entra_id.as_str())
            .collect();
        let mut changes = Vec::new();
        for u in &users {
            if !creating.contains(u.id.as_str())
                && let Some(c) = self.role_change_or_later(&u.id)?
            {
                changes.push(c);
            }
        }
        let mut created: Vec<String> = creating.iter().map(|s| s.to_string()).collect();
        let mut role_calls = std::mem::take(&mut self.carry);
        // A user whose role calls are carried in (due from the last call, or from the last
        // step) is not given them twice: both come from the roles as last known.
        let carried: BTreeSet<String> = role_calls
            .iter()
            .map(|r| r.change.entra_id.clone())
            .collect();
        let changes: Vec<RoleChange> = changes
            .into_iter()
            .filter(|c| !carried.contains(&c.entra_id))
            .collect();
        role_calls.extend(write::role_calls(changes));
        // The reads ahead for the next pages (see [`ahead`]) go out with this step's writes.
        let mut round = Round::new();
        let mut ahead = self.add_ahead(&mut round, page_next.as_deref(), sync)?;
        if !self.ahead_fits(&round, writes.len() + role_calls.len()) {
            round = Round::new();
            ahead = ahead::AheadSlots::default();
        }
        if page_next.is_some() {
            // Role calls (independent of the next page's plan) that would open a part-empty
            // last wave wait for the next round, which they fill instead.
            let total = round.len() + writes.len() + role_calls.len();
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
        let mut answers = self.send_round(round);
        // Before this round's writes are taken in (see `take_ahead`).
        self.take_ahead(&mut answers, ahead);
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
        // Both taken in before either failure stops the step: a role call that went out
        // beside a failed write is in the audit trail all the same.
        let written = self.out.absorb(writes, write_results);
        let roles = self.out.absorb_roles(role_calls, role_results);
        written?;
        roles?;
        // Users taking an email another one just gave up: one more round each (rare: an
        // address reused within one page), as long as a chain goes (A takes B's old address,
        // B takes C's: each waits for the move before it), within the budget.
        let mut later = later;
        while !later.is_empty() {
            if !self.out.dry_run && !budget::fits(self.platform, 1) {
                later_left_for_next_sync(&self.out.log, &later);
                break;
            }
            let (plans, next) =
                plan::staged(plan::plan_later(&users, &later, &mut self.out.dir, &trust));
            let plans: Vec<Planned> = plans
                .into_iter()
                .filter_map(|p| defer_deactivation(p, sync, &outside))
                .collect();
            let writes = self.out.prepare(plans);
            created.extend(
                writes
                    .iter()
                    .filter(|w| matches!(w.kind, WriteKind::Create | WriteKind::Link))
                    .map(|w| w.entra_id.clone()),
            );
            self.out.write(writes)?;
            // Each round plans fewer: a user waits only for an earlier one of the chain.
            later = plan::fewer_later(later, next);
        }
        for id in created {
            if let Some(c) = self.role_change_or_later(&id)? {
                self.carry.extend(write::role_calls(vec![c]));
            }
        }
        self.members_ready()?;
        if last_slice {
            Ok(PageEnd::Next(page.next))
        } else {
            if done.is_empty() && skip > 0 {
                // An old checkpoint's position, turned into the ids it covered.
                done = page.items.iter().take(skip).filter_map(item_key).collect();
            }
            done.extend(newly);
            // The rest of this page is the next step's (read again in a later call).
            self.prefetched.insert(0, (url.to_string(), page));
            Ok(PageEnd::More(done))
        }
    }

    /// Which of `parsed` (the rest of a page, in order) this step works when the bound
    /// without a plan (`bound`: three requests a user) does not cover them all: users in page
    /// order while their requests, as the page's plan says, fit the waves left. A user's
    /// requests here: its write (a create, a link, an update), its role calls (a created or
    /// linked account's go out in the next round, counted all the same). Kept back: one round
    /// (a second write round, when a user takes an address another gives up), the role calls
    /// carried from the last step and the reads ahead. Never fewer than `bound` users.
    ///
    /// A user who takes an address another user of the page gives up (a rename: the page's
    /// plan writes the move first, then plans the taker again) is taken together with that
    /// other user, wherever it is in the page: cut apart, the taker would find the address
    /// still held, be a conflict, and the run would end elsewhere than with a budget that
    /// fits the whole page.
    ///
    /// Errors: the mapped groups' members could not be read.
    fn slice_by_plan(
        &mut self,
        parsed: &[Option<EntraUser>],
        trust: &Trust,
        bound: usize,
    ) -> Result<Vec<bool>, Failure> {
        // Members still read beside this step are not waited for: a user's role calls are then
        // counted at their most (a new account's one, a linked account's two).
        let share = self.members_share();
        if share == 0 {
            self.load_members()?;
        }
        // The reads ahead a writes round carries at most: a page, two pages' look-ups, an
        // address check of up to 100 addresses.
        const AHEAD_REQUESTS: usize = 1 + 4 + 5;
        let users: Vec<EntraUser> = parsed.iter().flatten().cloned().collect();
        // (`plan_batch` leaves the directory as it found it.)
        let plans = plan::plan_batch(&users, &mut self.out.dir, trust);
        let mut cost: BTreeMap<String, usize> = BTreeMap::new();
        let roles_mapped = !self.config.role_mappings.is_empty();
        for p in &plans {
            let role_calls = match &p.action {
                // A new account's roles: added in the next round (or by the next call), but
                // counted here, so the carry they make fits this call too.
                Action::Create(_) if roles_mapped => self.members.as_ref().map_or(1, |m| {
                    usize::from(!m.desired_roles(&self.known, &p.entra_id).is_empty())
                }),
                // A linked account's roles may need adding and removing.
                Action::Write {
                    kind: WriteKind::Link,
                    ..
                } if roles_mapped => 2,
                _ => 0,
            };
            if matches!(p.action, Action::Create(_) | Action::Write { .. }) {
                *cost.entry(p.entra_id.clone()).or_default() += 1 + role_calls;
            }
        }
        for u in &users {
            if self.members.is_none() {
                if roles_mapped && self.out.dir.by_external_id(&u.id).is_some() {
                    *cost.entry(u.id.clone()).or_default() += 2;
                }
            } else if let Some(c) = self.role_change(&u.id)? {
                *cost.entry(u.id.clone()).or_default() +=
                    usize::from(!c.add.is_empty()) + usize::from(!c.remove.is_empty());
            }
        }
        let waves =
            usize::try_from(self.platform.rounds_left().saturating_sub(1)).unwrap_or(usize::MAX);
        // Members read beside the step take their share of each wave while they last (counted
        // in every wave: how many pages are left is not known).
        let capacity = waves
            .saturating_mul(self.concurrency() - share)
            .saturating_sub(self.carry.len() + AHEAD_REQUESTS);
        // Who gives up the address each taker takes (by position).
        let position: BTreeMap<&str, usize> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.as_ref().map(|u| (u.id.as_str(), i)))
            .collect();
        let mut given_up: BTreeMap<String, usize> = BTreeMap::new();
        for p in &plans {
            if let Action::Write { changes, .. } = &p.action
                && let Some(&i) = position.get(p.entra_id.as_str())
            {
                for c in changes.iter().filter(|c| c.field == "email") {
                    if let Some(before) = c.before.as_str() {
                        given_up.insert(address::fold(before), i);
                    }
                }
            }
        }
        let giver: BTreeMap<usize, usize> = plans
            .iter()
            .filter(|p| p.after_batch)
            .filter_map(|p| {
                let i = *position.get(p.entra_id.as_str())?;
                let a = parsed[i].as_ref()?.match_address()?;
                let g = *given_up.get(a.as_str())?;
                (g != i).then_some((i, g))
            })
            .collect();
        let cost_of = |i: usize| {
            parsed[i]
                .as_ref()
                .map_or(0, |u| cost.get(&u.id).copied().unwrap_or(0))
        };
        let mut chosen = vec![false; parsed.len()];
        let (mut total, mut n) = (0usize, 0usize);
        for i in 0..parsed.len() {
            if chosen[i] {
                continue;
            }
            // The user, the one giving up its address, the one giving up that one's, ...
            let mut bundle = vec![i];
            let mut at = i;
            while let Some(&g) = giver.get(&at) {
                if chosen[g] || bundle.contains(&g) {
                    break;
                }
                bundle.push(g);
                at = g;
            }
            let c: usize = bundle.iter().map(|&b| cost_of(b)).sum();
            // Past the capacity: stop, once the step has its minimum; a bundle (several users)
            // never goes past it, unless nothing else was taken (progress).
            if total + c > capacity && (n >= bound || (bundle.len() > 1 && n > 0)) {
                break;
            }
            total += c;
            for b in bundle {
                chosen[b] = true;
                n += 1;
            }
        }
        Ok(chosen)
    }

    /// The linking rule's facts for one page (at `url`): its member users' UPN suffixes are
    /// learned first (kept in the checkpoint), then Graph's answer on who holds each link
    /// candidate's address: asked ahead in the round before (see [`ahead`]), or now, in a
    /// round that also carries the reads ahead for the pages after it (`next`).
    ///
    /// Errors: Graph could not say who holds an address.
    fn trust(
        &mut self,
        users: &[EntraUser],
        sync: &mut FullSync,
        url: &str,
        next: Option<&str>,
    ) -> Result<Trust, Failure> {
        for domain in users.iter().filter_map(EntraUser::member_domain) {
            address::learn(&mut sync.email_domains, domain);
        }
        let domains = self.domains_for(users, sync);
        let candidates = plan::link_candidates(users, &self.out.dir, &domains);
        // Only the candidates' answers are kept: an address asked ahead that is no longer a
        // candidate (a write since linked its ZenQMS user) says nothing to this plan.
        let mut asked = self.take_holders_ahead(url);
        let mut holders = BTreeMap::new();
        let mut missing = Vec::new();
        for address in candidates {
            match asked.remove(address.as_str()) {
                Some(h) => {
                    holders.insert(address.as_str().to_string(), h);
                }
                None => missing.push(address),
            }
        }
        if missing.is_empty() {
            self.keep_holders(url, &holders);
            let mut trust = Trust { domains, holders };
            trust.add_batch_holders(users);
            return Ok(trust);
        }
        let queries = MailQuery::all(&missing);
        let urls = MailQuery::urls(&queries);
        let mut round = Round::new();
        let mut slots = round.add_all(self.graph.get_requests(&urls)?);
        let mut ahead = self.add_ahead(&mut round, next, sync)?;
        if !self.ahead_fits(&round, 0) {
            round = Round::new();
            slots = round.add_all(self.graph.get_requests(&urls)?);
            ahead = ahead::AheadSlots::default();
        }
        let mut answers = self.send_round(round);
        self.take_ahead(&mut answers, ahead);
        let results = Graph::get_answers(urls.len(), answers.take_all(&slots));
        // A read that failed in this round is asked again with the retries a throttled batch
        // item gets (`Graph::get_all`), and later pages are followed; an error there is the
        // step's.
        holders.extend(self.graph.finish_mail_queries(queries, results, true)?);
        self.keep_holders(url, &holders);
        let mut trust = Trust { domains, holders };
        trust.add_batch_holders(users);
        Ok(trust)
    }

    /// Keeps the address check's answers for the page at `url` for its later slices in this
    /// call: they were asked for the whole rest of the page, and a slice read with the same
    /// page (as old as they are) is planned with them. Asked again, each later slice spent a
    /// round on that alone (83 rounds of the 20,000-user initial sync at 2 s calls).
    fn keep_holders(&mut self, url: &str, holders: &BTreeMap<String, BTreeSet<String>>) {
        if !holders.is_empty() {
            self.holders_ahead.push((url.to_string(), holders.clone()));
        }
    }

    /// The linked, active ZenQMS users after `after` in ZenQMS id order, about `n` of them: the
    /// search pages from `page` on, side by side (and, when resuming, the page before it too:
    /// users unlinked since shift later ones back a page).
    ///
    /// Errors: a search failed.
    fn linked_pages(
        &mut self,
        after: &Option<String>,
        page: u64,
        n: usize,
    ) -> Result<Chunk, Failure> {
        let per = u64::from(api::SEARCH_PAGE_SIZE);
        let page = page.max(1);
        let start = if after.is_some() {
            page.saturating_sub(1).max(1)
        } else {
            page
        };
        // The step reads its `n` users in whole pages, the page read again included (so that
        // a step of two rounds of pages takes two rounds, not a third for one page), and at
        // least one page it has not read.
        let mut pages = (n as u64).div_ceil(per).max(1);
        // While the mapped groups' members are read beside the walk (see `leavers`), each wave
        // of its searches keeps their share of the platform's concurrency.
        let share = self.members_read.as_ref().map_or(0, |l| {
            if l.done() || l.stalled() {
                0
            } else {
                l.requests_per_round()
            }
        }) as u64;
        let c = self.concurrency() as u64;
        if share > 0 && share < c {
            pages = pages.min(pages.div_ceil(c) * (c - share)).max(1);
        }
        let mut end = (start + pages).max(page + 1);
        let mut all = Vec::new();
        let mut first = start;
        if self.linked_total.is_none() {
            // The call's first walk step: it reads one page first, whose total says how many
            // follow; or, with an estimate of their number, that many pages at once (one that
            // falls short costs a round more, as without it).
            let upto = match self.linked_estimate.filter(|e| *e > 0) {
                Some(estimate) => end.min(estimate.div_ceil(per) + 1).max(start + 1),
                None => start + 1,
            };
            all.extend(self.search_linked(start..upto)?);
            first = upto;
        }
        let total = self.linked_total.unwrap_or_default();
        // A total the call learned in an earlier step may be stale: the user pages since may
        // have linked accounts (a first deploy's walk counts 0, then links and must deactivate
        // them). The step's first page is read whatever it says, and its answer sets the total.
        end = end.min(total.div_ceil(per) + 1).max(first).max(start + 1);
        all.extend(self.search_linked(first..end)?);
        let total = self.linked_total.unwrap_or(total);
        api::in_id_order(&mut all);
        let last_id = all.last().map(|z| z.id.clone());
        // (The pages read are whole and in order, so a user's index says its page.)
        let (fresh, order): (Vec<_>, Vec<_>) = all
            .into_iter()
            .enumerate()
            .filter(|(_, z)| after.as_ref().is_none_or(|a| z.id.as_str() > a.as_str()))
            .filter_map(|(i, z)| {
                let e = plan::link_of(&z)?;
                let id = z.id.clone();
                Some(((z, e), (id, start + i as u64 / per)))
            })
            .unzip();
        let noncanonical = fresh
            .iter()
            .filter(|(z, e)| z.external_id.as_deref() != Some(e.as_str()))
            .cloned()
            .collect();
        let linked = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
        let mapped: BTreeSet<String> = self.config.mapped_roles().into_iter().collect();
        let (users, inactive): (Vec<_>, Vec<_>) = fresh.into_iter().partition(|(z, _)| z.is_active);
        let inactive_holders = inactive
            .into_iter()
            .filter(|(z, _)| z.roles.iter().any(|r| mapped.contains(r)))
            .collect();
        Ok(Chunk {
            users,
            linked,
            inactive_holders,
            noncanonical,
            last_id,
            order,
            next_page: end,
            last: end > total.div_ceil(per),
        })
    }

    /// Search pages `pages` of the linked users, side by side (beside the members' read, if
    /// under way); `linked_total` is what their answers say.
    ///
    /// Errors: a search failed.
    fn search_linked(&mut self, pages: std::ops::Range<u64>) -> Result<Vec<ZUser>, Failure> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let mut round = Round::new();
        let zen = &self.out.zen;
        let slots = round.add_all(pages.map(|p| zen.request(&api::search_users(api::linked(), p))));
        let mut answers = self.send_round(round);
        let mut users = Vec::new();
        for answer in answers.take_all(&slots) {
            let read = Zenqms::read_page(answer)?;
            self.linked_total = Some(read.total);
            users.extend(read.data);
        }
        Ok(users)
    }

    /// How many linked users a walk's step takes: two rounds of ZenQMS search pages (100 users
    /// each), whose Graph read (300 users to a `$batch` request: 20 `id in` filters of 15)
    /// goes in one more round, with `per_round` of them able to be followed up (a 404 check, a
    /// write) in each of the rounds left after those.
    fn walk_size(&self, per_round: usize) -> usize {
        let read = 2 * self.concurrency() * api::SEARCH_PAGE_SIZE as usize;
        let rounds =
            usize::try_from(self.platform.rounds_left().saturating_sub(3)).unwrap_or(usize::MAX);
        read.min(rounds.saturating_mul(per_round))
            .max(api::SEARCH_PAGE_SIZE as usize)
    }

    /// Of these Entra ids, those whose object is gone (absent from an `id in` read, and then
    /// answered 404 when read alone: a read that is not a clear 404 never reads as gone) and
    /// those disabled (with their UPN), as `(gone, disabled)`.
    fn gone_or_disabled(
        &self,
        ids: &[String],
    ) -> Result<(BTreeSet<String>, BTreeMap<String, String>), Failure> {
        // Absent from the read: Graph answered 404 to the user read alone (see
        // `Graph::users_by_ids`; a read that is not a clear 404 never reads as gone).
        let found = self.graph.users_by_ids(ids, "checking linked users")?;
        let gone: BTreeSet<String> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
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
    /// deactivation: every linked, active user is checked against Graph by id, read from
    /// ZenQMS a few search pages per step (no set of users met is carried: the checkpoint is
    /// the last ZenQMS id checked and the next page). A leaver's mapped roles are removed at
    /// once (those of known mappings), as for any user no mapped group holds.
    fn leavers(
        &mut self,
        after: Option<String>,
        page: u64,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        // A leaver's mapped roles are removed (below): the members are read beside the walk's
        // searches, so that they are in when a leaver is found (and for the user pages after
        // the walk, in this call), instead of in rounds of their own.
        if !self.config.role_mappings.is_empty()
            && self.members.is_none()
            && self.members_read.is_none()
            && !self.config.scoped()
        {
            self.members_read = Some(Graph::members_listings(&self.config.read_groups()));
        }
        // A user Graph does not return costs a 404 check (20 to a `$batch` request).
        let n = self.walk_size(self.concurrency() * crate::clients::graph::BATCH_MAX);
        let chunk = self.linked_pages(&after, page, n)?;
        if sync.linked_hint == 0 && sync.batches == 0 {
            // Counted before any user page: the base the run's creates and links add to.
            sync.linked_hint = self
                .linked_total
                .map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX));
        }
        let ids: Vec<String> = chunk
            .users
            .iter()
            .chain(&chunk.inactive_holders)
            .map(|(_, e)| e.clone())
            .collect();
        let gone = if ids.is_empty() {
            BTreeSet::new()
        } else {
            self.gone_or_disabled(&ids)?.0
        };
        // A leaver's role removal needs the members read. After a retry wait, a read that no
        // longer fits the call pauses it before anything of this step is written (the next
        // call does the step again), instead of running past the budget.
        let needs_members = !self.config.role_mappings.is_empty()
            && chunk
                .users
                .iter()
                .chain(&chunk.inactive_holders)
                .any(|(z, e)| gone.contains(e) && !z.roles.is_empty());
        if needs_members && self.members.is_none() && !self.members_within_budget()? {
            return Ok(Walk::At { after, page });
        }
        let (chunk, walk) = self.within_rounds(chunk, &gone, &after);
        sync.linked_seen = sync.linked_seen.saturating_add(chunk.linked);
        // Links stored in another form than Graph's (case, spaces: made by hand or another
        // tool) are rewritten to it, so that every look-up by external_id finds them (the
        // full sync's user pages, notifications, group changes).
        let rewrites: Vec<Write> = chunk
            .noncanonical
            .iter()
            .map(|(z, e)| {
                let changes = vec![plan::Change {
                    field: "external_id",
                    before: z.external_id.clone().into(),
                    after: e.clone().into(),
                }];
                Write {
                    call: api::update_user(&z.id, plan::patch_fields(&changes)),
                    entra_id: e.clone(),
                    upn: String::new(),
                    zenqms_id: Some(z.id.clone()),
                    kind: WriteKind::Update,
                    changes,
                }
            })
            .collect();
        if !rewrites.is_empty() {
            self.learn_users(chunk.noncanonical.iter().map(|(z, _)| z.clone()).collect());
            self.out.write(rewrites)?;
        }
        if chunk.users.is_empty() && chunk.inactive_holders.is_empty() {
            return Ok(walk);
        }
        let mut changes = Vec::new();
        let leaving: Vec<ZUser> = chunk
            .users
            .iter()
            .chain(&chunk.inactive_holders)
            .filter(|(_, e)| gone.contains(e))
            .map(|(z, _)| z.clone())
            .collect();
        // The call's directory holds the users it writes (a dry run simulates against it).
        self.learn_users(leaving);
        for (z, entra_id) in chunk.users.iter().filter(|(_, e)| gone.contains(e)) {
            defer(
                sync,
                Deferred {
                    zenqms_id: z.id.clone(),
                    entra_id: entra_id.clone(),
                    upn: String::new(),
                    reason: guard::GONE.into(),
                },
            );
            if !self.config.role_mappings.is_empty() && !z.roles.is_empty() {
                self.load_members()?;
                changes.extend(roles::change_for(
                    z,
                    entra_id,
                    &self.known,
                    &BTreeSet::new(),
                ));
            }
        }
        for (z, entra_id) in chunk
            .inactive_holders
            .iter()
            .filter(|(_, e)| gone.contains(e))
        {
            self.load_members()?;
            changes.extend(roles::change_for(
                z,
                entra_id,
                &self.known,
                &BTreeSet::new(),
            ));
        }
        self.out.apply_roles(changes)?;
        Ok(walk)
    }

    /// The part of a walk step's `chunk` whose writes fit the rounds left, and where the walk
    /// goes on after it: users in ZenQMS id order while their writes (a link rewritten to
    /// Graph's form, a gone user's mapped roles removed: one request each) fit the waves left
    /// but two (the rewrites and the role calls go in rounds of their own); the first user with
    /// a write always (progress). The step's reads are sized for its 404 checks, twenty to a
    /// request: before, 200 gone role holders found by one step at concurrency 1 sent 200
    /// role calls, one round each (a call 19 s past its budget; a budget hunt's find).
    fn within_rounds(
        &self,
        mut chunk: Chunk,
        gone: &BTreeSet<String>,
        after: &Option<String>,
    ) -> (Chunk, Walk) {
        let mut cost: BTreeMap<String, usize> = BTreeMap::new();
        for (z, _) in &chunk.noncanonical {
            *cost.entry(z.id.clone()).or_default() += 1;
        }
        if !self.config.role_mappings.is_empty() {
            for (z, e) in chunk.users.iter().chain(&chunk.inactive_holders) {
                if gone.contains(e) && !z.roles.is_empty() {
                    *cost.entry(z.id.clone()).or_default() += 1;
                }
            }
        }
        let allowed = if self.out.dry_run {
            usize::MAX
        } else {
            usize::try_from(self.platform.rounds_left().saturating_sub(2))
                .unwrap_or(usize::MAX)
                .saturating_mul(self.concurrency())
        };
        let mut total = 0usize;
        let mut cut = None;
        for (i, (id, _)) in chunk.order.iter().enumerate() {
            let c = cost.get(id).copied().unwrap_or(0);
            if total > 0 && total + c > allowed {
                cut = Some(i);
                break;
            }
            total += c;
        }
        let Some(i) = cut else {
            let walk = chunk.walk(after);
            return (chunk, walk);
        };
        // (`total > 0`: a user before the cut was taken.)
        let (last, page) = chunk.order[i - 1].clone();
        let kept = |z: &ZUser| z.id.as_str() <= last.as_str();
        chunk.users.retain(|(z, _)| kept(z));
        chunk.inactive_holders.retain(|(z, _)| kept(z));
        chunk.noncanonical.retain(|(z, _)| kept(z));
        chunk.order.truncate(i);
        chunk.linked = u32::try_from(i).unwrap_or(u32::MAX);
        let walk = Walk::At {
            after: Some(last),
            page,
        };
        (chunk, walk)
    }

    /// The run's limit: `max_deactivations` (or its default over the run's base), less what
    /// the run it follows up made, and, for a run the component started, less what the
    /// rolling 24-hour window counts already (see `FullSync::window`).
    fn run_limit(&self, sync: &FullSync) -> usize {
        self.config
            .deactivation_limit(guard_base(sync))
            .saturating_sub(sync.prior_deactivations as usize)
            .saturating_sub(self.window_counted)
    }

    /// Sends the run's deactivations; a user the notification guard held while the run was
    /// under way (`FullSync::held_meanwhile`, by name) whom this run has deactivated is held no
    /// longer (a red team: the run's end kept them held, and each tick told the admin to
    /// release users already inactive).
    ///
    /// Errors: ZenQMS writes are failing (systemic).
    fn write_deactivations(
        &mut self,
        writes: Vec<Write>,
        sync: &mut FullSync,
    ) -> Result<(), Failure> {
        let sent: Vec<(String, String)> = writes
            .iter()
            .map(|w| (w.zenqms_id.clone().unwrap_or_default(), w.entra_id.clone()))
            .collect();
        let result = self.out.write(writes);
        if !self.out.dry_run
            && let Some(held) = sync.held_meanwhile.as_mut()
        {
            for (zid, eid) in &sent {
                if self.out.failed.contains(zid) {
                    continue;
                }
                if let Some(i) = held.sample.iter().position(|s| s.eq_ignore_ascii_case(eid)) {
                    held.sample.remove(i);
                    held.count = held.count.saturating_sub(1);
                }
            }
            if held.count == 0 {
                sync.held_meanwhile = None;
            }
        }
        result
    }

    /// Checks the run's deferred deactivations against the limit once, then applies them a
    /// chunk per step. Done when none is left (applied, or held back by the guard).
    fn deactivations(
        &mut self,
        after: Option<String>,
        page: u64,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        if !sync.guard_checked {
            sync.guard_checked = true;
            let limit = self.run_limit(sync);
            let count = sync.deferred.len() + sync.deferred_more as usize;
            // Released by an admin: exactly the set held (as many, and the same users).
            let released = sync.released > 0
                && count == sync.released as usize
                && sync.released_digest == Some(sync.deferred_digest);
            if guard::exceeds(count, limit, sync.allow_mass) && !released {
                let ids: Vec<String> = sync.deferred.iter().map(|d| d.entra_id.clone()).collect();
                let what = if sync.released > 0 {
                    let which = if count == sync.released as usize {
                        "the same number, other users"
                    } else {
                        "another number"
                    };
                    format!(
                        "the deactivations found now ({count}) are not the {} users an admin released ({which}): nobody was deactivated; release again with the number now held",
                        sync.released
                    )
                } else if self.window_counted > 0 {
                    format!(
                        "nobody was deactivated (this run stands for notifications, and the 24-hour window counts {} deactivations already: the limit left is {limit})",
                        self.window_counted
                    )
                } else if sync.prior_deactivations > 0 {
                    format!(
                        "nobody was deactivated (the run this one follows deactivated {}: the limit left is {limit})",
                        sync.prior_deactivations
                    )
                } else {
                    "nobody was deactivated".to_string()
                };
                let mut blocked = guard::block(
                    &self.out.log,
                    &what,
                    &self.out.cause,
                    &ids,
                    count,
                    limit,
                    self.platform.now(),
                    self.out.dry_run,
                );
                // The full sync knows the set whole: a release applies to exactly it.
                blocked.digest = Some(sync.deferred_digest);
                sync.blocked = Some(blocked);
                sync.deferred.clear();
                sync.deferred_more = 0;
                return Ok(Walk::Done);
            }
            if count > limit && released {
                self.out.log.warn(
                    "deactivations above the limit applied: an admin released them",
                    &[
                        ("deactivations", &count.to_string()),
                        ("limit", &limit.to_string()),
                        ("released", &sync.released.to_string()),
                    ],
                );
            } else if count > limit {
                self.out.log.warn(
                    "mass deactivation allowed by allow_mass_deactivation=true for this deploy; unset it again",
                    &[("deactivations", &count.to_string()), ("limit", &limit.to_string())],
                );
            }
            sync.approved = u32::try_from(count).unwrap_or(u32::MAX);
            if sync.window {
                self.window_approved += sync.approved as usize;
                self.window_judged_now = true;
            }
        }
        if sync.deferred_more > 0 && self.out.dry_run {
            // The walk that finds the deactivations past the listed ones reads the links in
            // ZenQMS, where a dry run wrote none: those it only pretended to make would be
            // missed. The plan counts them as planned (the listed ones are planned below).
            self.out.counts.deactivated = self
                .out
                .counts
                .deactivated
                .saturating_add(sync.deferred_more);
            self.out.log.info(
                "plan: more deactivations than are listed one by one would be made (a real run finds them again in ZenQMS)",
                &[("deactivations", &sync.deferred_more.to_string())],
            );
            sync.deferred_more = 0;
        }
        if sync.deferred_more > 0 {
            return self.deactivations_again(after, page, sync);
        }
        // The step's own rounds: the ZenQMS search, the Graph re-check (a `$batch` read and
        // the 404 confirmations); then the writes.
        let fit = budget::items_that_fit(
            self.platform,
            4,
            1,
            self.concurrency(),
            self.whole_rounds(DEACTIVATION_CHUNK),
        );
        let n = sync.deferred.len().min(fit);
        // Their ZenQMS users as they are now (one search).
        let ids: Vec<String> = sync.deferred[..n]
            .iter()
            .map(|d| d.entra_id.clone())
            .collect();
        let found = self.out.zen.linked_to(&ids)?;
        self.learn_users(found);
        // And in Entra as they are now: a user enabled again (or back in scope) since it was
        // deferred — a release applied calls later, a step done again after a failure — is
        // left as it is.
        let leaving = self.still_leaving(&ids)?;
        let mut writes = Vec::new();
        for d in &sync.deferred[..n] {
            self.out
                .reasons
                .insert(d.entra_id.clone(), d.reason.clone());
            match self.out.dir.get(&d.zenqms_id) {
                Some(_) if !leaving.contains(&d.entra_id) => self.out.log.info(
                    "deferred deactivation not applied: the user is enabled (and in scope) in Entra again",
                    &[("zenqms_id", &d.zenqms_id), ("entra_id", &d.entra_id)],
                ),
                Some(z) if z.is_active => writes.push(self.deactivation(z, &d.entra_id, &d.upn)),
                Some(_) => {} // deactivated meanwhile
                // A dry run only pretended to link this account (its plan linked and deferred
                // the deactivation): the real run would deactivate it (a bug hunt: the plan
                // said "linked 20, deactivated 0" where the real run deactivated the 20).
                None if self.out.dry_run && leaving.contains(&d.entra_id) => {
                    let pretended = ZUser {
                        id: d.zenqms_id.clone(),
                        email: String::new(),
                        first_name: String::new(),
                        last_name: String::new(),
                        title: String::new(),
                        is_active: true,
                        external_id: Some(d.entra_id.clone()),
                        roles: Vec::new(),
                    };
                    writes.push(self.deactivation(&pretended, &d.entra_id, &d.upn));
                }
                None => self.out.log.warn(
                    "deferred deactivation not applied: the ZenQMS user is no longer linked to it",
                    &[("zenqms_id", &d.zenqms_id), ("entra_id", &d.entra_id)],
                ),
            }
        }
        self.write_deactivations(writes, sync)?;
        sync.deferred.drain(..n);
        Ok(if sync.deferred.is_empty() {
            Walk::Done
        } else {
            Walk::At { after, page }
        })
    }

    /// The end of the second walk's first pass: the set it found passes when it is the set
    /// the guard judged (as many, the same users), or, unreleased, when it is within the
    /// limit; then the writing pass starts from the first linked user. Otherwise nobody is
    /// deactivated and the set is held (by its digest, for a release).
    fn judge_again(&mut self, sync: &mut FullSync) -> Walk {
        let found = sync.again_count as usize;
        let judged = sync.deferred.len() + sync.deferred_more as usize;
        let same = found == judged && sync.again_digest == sync.deferred_digest;
        let limit = self.run_limit(sync);
        let released = sync.released > 0;
        let passes = if released {
            same
        } else {
            same || found <= limit || sync.allow_mass
        };
        if passes {
            // The writing pass makes no more than the set judged here: the guard's first count
            // (`approved`), or this pass's, when it passed the limit on its own — users who
            // started leaving between the two counts are judged, and deactivated, with the
            // others (a red team found them taking the place of users judged first, who were
            // then left active). Users who start leaving after this count are the next run's.
            if !released {
                let before = sync.approved;
                sync.approved = sync.approved.max(sync.again_count);
                if sync.window {
                    self.window_approved += (sync.approved - before) as usize;
                }
            }
            sync.again_checked = true;
            return Walk::At {
                after: None,
                page: 0,
            };
        }
        let what = format!(
            "the users to deactivate changed while the run counted them ({found} now, {judged} judged{}): nobody was deactivated",
            if released {
                ", released by an admin"
            } else {
                ""
            }
        );
        let mut blocked = guard::block(
            &self.out.log,
            &what,
            &self.out.cause,
            &[],
            found,
            limit,
            self.platform.now(),
            self.out.dry_run,
        );
        blocked.digest = Some(sync.again_digest);
        sync.blocked = Some(blocked);
        sync.deferred.clear();
        sync.deferred_more = 0;
        Walk::Done
    }

    /// Of these Entra ids, those leaving now: gone from Entra, disabled, or (with a scope) out
    /// of it.
    ///
    /// Errors: a Graph read failed (nobody is judged leaving on a failed read).
    fn still_leaving(&mut self, ids: &[String]) -> Result<BTreeSet<String>, Failure> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let (gone, disabled) = self.gone_or_disabled(ids)?;
        let mut leaving: BTreeSet<String> = gone;
        leaving.extend(disabled.into_keys());
        if self.config.scoped() {
            self.load_members()?;
            let scope = self.scope.as_ref().expect("loaded with the members");
            leaving.extend(ids.iter().filter(|e| !scope.contains(*e)).cloned());
        }
        Ok(leaving)
    }

    /// More deactivations were planned than the checkpoint names: the linked, active users are
    /// walked again in ZenQMS id order and those whose Entra object is gone or disabled are
    /// deactivated, a step's Graph read at a time. (A user the user pages found disabled but
    /// left unplanned — a conflict on its address — is deactivated here too: disabled is
    /// disabled.)
    fn deactivations_again(
        &mut self,
        after: Option<String>,
        page: u64,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        // The first pass writes nothing: its users' follow-ups are 404 checks of those Graph
        // does not return (20 to a `$batch` request), as in the first walk. The second writes
        // no more than the guard approved and is not written yet: while those writes fit the
        // rounds left, the rest of them takes 404 checks; else the step reads as the first
        // pass does and writes what the rounds left take (`write_leaving` cuts the step after
        // the last user written). Sizing it by the writes instead (a user found may need one)
        // read the linked users a page a step: at 20,000 users and 2 s calls, 14 calls of
        // 17 rounds walked 16,000 users created by the run, none of them leaving.
        if sync.again_checked
            && let Some(found) = self.again_found.as_ref().filter(|f| f.complete)
        {
            let reached = match (&found.start, &after) {
                (None, _) => true,
                (Some(start), Some(a)) => a >= start,
                (Some(_), None) => false,
            };
            if reached {
                return self.deactivations_found(after, page, sync);
            }
        }
        let per_check = self.concurrency() * crate::clients::graph::BATCH_MAX;
        let n = if !sync.again_checked {
            self.walk_size(per_check)
        } else {
            let writes_left = sync.approved.saturating_sub(sync.walked) as usize;
            let write_rounds = writes_left.div_ceil(self.concurrency()) as u64;
            let rounds = self.platform.rounds_left().saturating_sub(3);
            if write_rounds < rounds {
                let spare = usize::try_from(rounds - write_rounds).unwrap_or(usize::MAX);
                (2 * self.concurrency() * api::SEARCH_PAGE_SIZE as usize)
                    .min(spare.saturating_mul(per_check))
                    .max(api::SEARCH_PAGE_SIZE as usize)
            } else {
                self.walk_size(per_check)
            }
        };
        let chunk = self.linked_pages(&after, page, n)?;
        let ids: Vec<String> = chunk.users.iter().map(|(_, e)| e.clone()).collect();
        let (gone, disabled) = if ids.is_empty() {
            Default::default()
        } else {
            self.gone_or_disabled(&ids)?
        };
        // With a scope: present users outside it leave too (the user pages planned them so).
        let mut outside = BTreeSet::new();
        if self.config.scoped() && !ids.is_empty() {
            self.load_members()?;
            let scope = self.scope.as_ref().expect("loaded with the members");
            outside = ids
                .iter()
                .filter(|e| !gone.contains(*e) && !scope.contains(*e))
                .cloned()
                .collect();
        }
        let reason = |e: &String| -> Option<&'static str> {
            if gone.contains(e) {
                Some(guard::GONE)
            } else if outside.contains(e) && disabled.contains_key(e) {
                Some(crate::domain::scope::LEFT_AND_DISABLED)
            } else if outside.contains(e) {
                Some(crate::domain::scope::LEFT)
            } else if disabled.contains_key(e) {
                Some(guard::DISABLED)
            } else {
                None
            }
        };
        let leaving: Vec<(ZUser, String, &'static str, String, u64)> = chunk
            .users
            .iter()
            .filter_map(|(z, e)| {
                let upn = disabled.get(e).cloned().unwrap_or_default();
                reason(e).map(|r| (z.clone(), e.clone(), r, upn, page))
            })
            .collect();
        if !sync.again_checked {
            // First pass: nothing is written; the set found is what the guard judges, so
            // the writing pass deactivates exactly what was judged — not whoever happens to be
            // leaving then, and not a set other than the one an admin released.
            for (_, e, ..) in &leaving {
                sync.again_count = sync.again_count.saturating_add(1);
                sync.again_digest = guard::digest_add(sync.again_digest, e);
            }
            let walk = chunk.walk(&after);
            let found = self.again_found.get_or_insert_with(|| AgainFound {
                start: after.clone(),
                start_page: page,
                complete: false,
                users: Vec::new(),
            });
            found.users.extend(leaving);
            if walk != Walk::Done {
                return Ok(walk);
            }
            found.complete = true;
            return Ok(self.judge_again(sync));
        }
        // The part this call's counting pass found: written from memory when reached.
        let ahead = self.again_found.as_ref().filter(|f| f.complete);
        let (leaving, walk) = match ahead.and_then(|f| f.start.clone()) {
            Some(start) if chunk.last_id.as_ref().is_some_and(|l| *l >= start) => {
                let start_page = ahead.map_or(page, |f| f.start_page);
                let before: Vec<_> = leaving
                    .into_iter()
                    .filter(|(z, ..)| z.id <= start)
                    .collect();
                (
                    before,
                    Walk::At {
                        after: Some(start),
                        page: start_page,
                    },
                )
            }
            _ => {
                let walk = chunk.walk(&after);
                (leaving, walk)
            }
        };
        self.write_leaving(leaving, walk, after, page, sync)
    }

    /// The second walk's writing pass from what this call's counting pass found (see
    /// [`AgainFound`]), from `after` on: no reads.
    fn deactivations_found(
        &mut self,
        after: Option<String>,
        page: u64,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        let found = self.again_found.as_ref().expect("caller checked");
        let leaving: Vec<_> = found
            .users
            .iter()
            .filter(|(z, ..)| after.as_ref().is_none_or(|a| z.id > *a))
            .cloned()
            .collect();
        self.write_leaving(leaving, Walk::Done, after, page, sync)
    }

    /// The writing pass's deactivations of `leaving` (in ZenQMS id order), no more than the
    /// guard approved and the rounds left take; `walk` is where the walk goes on when all of
    /// them are written, else it resumes after the last one written.
    fn write_leaving(
        &mut self,
        leaving: Vec<(ZUser, String, &'static str, String, u64)>,
        walk: Walk,
        after: Option<String>,
        page: u64,
        sync: &mut FullSync,
    ) -> Result<Walk, Failure> {
        let acting: Vec<ZUser> = leaving.iter().map(|(z, ..)| z.clone()).collect();
        self.learn_users(acting);
        // The writes this step may still send: a step reads at least a search page, whose
        // leaving users may be more than the rounds left take; those after the last one
        // written are the next step's (the walk goes on after it).
        let allowed = usize::try_from(self.platform.rounds_left().saturating_sub(1))
            .unwrap_or(usize::MAX)
            .saturating_mul(self.concurrency())
            .max(1);
        let mut writes = Vec::new();
        let mut capped = false;
        let mut last_written: Option<(String, u64)> = None;
        let mut out_of_rounds = false;
        for (z, e, reason, upn, from_page) in &leaving {
            // No more than the guard judged: users disabled since the count wait for the next
            // run (or the delta round), whose guard counts them.
            if sync.walked >= sync.approved {
                capped = true;
                break;
            }
            if writes.len() >= allowed {
                out_of_rounds = true;
                break;
            }
            last_written = Some((z.id.clone(), *from_page));
            sync.walked += 1;
            self.out.reasons.insert(e.clone(), (*reason).to_string());
            writes.push(self.deactivation(z, e, upn));
        }
        self.write_deactivations(writes, sync)?;
        if capped {
            // They are not the delta round's (their change predates its link) and may have
            // taken the place of users judged: another full sync follows and judges them.
            sync.follow_up = true;
            self.out.log.warn(
                "more users to deactivate than the guard counted: another full sync follows and judges the rest",
                &[("deactivated", &sync.walked.to_string())],
            );
        }
        let walk = if capped {
            Walk::Done
        } else if out_of_rounds {
            // From the same search page on (users unlinked since shift later ones back; the
            // users up to `last_written` are skipped by id).
            match last_written {
                Some((id, from_page)) => Walk::At {
                    after: Some(id),
                    page: from_page,
                },
                None => Walk::At { after, page },
            }
        } else {
            walk
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

    /// The run's last step: the role calls still carried (users created by the last user
    /// step) are sent. Every other user's roles were brought in line by its own user step,
    /// and a leaver's by the leaver check.
    /// Only as many as the call's rounds left carry (one wave at least, so that every call
    /// moves on): a members' read that ended in this step may have released more (two steps'
    /// users beside it); the rest are the next step's, or call's.
    fn roles_carried(&mut self) -> Result<bool, Failure> {
        let waves = usize::try_from(self.platform.rounds_left().max(1)).unwrap_or(1);
        let n = waves
            .saturating_mul(self.concurrency())
            .min(self.carry.len());
        let rest = self.carry.split_off(n);
        let calls = std::mem::replace(&mut self.carry, rest);
        self.out.apply_role_calls(calls)?;
        Ok(self.carry.is_empty())
    }
}

/// Says which users taking an address another user gives up were left for the next sync (the
/// call's budget ran out before their round).
pub(crate) fn later_left_for_next_sync(log: &crate::log::Log, later: &BTreeSet<String>) {
    let ids: Vec<&str> = later.iter().map(String::as_str).collect();
    log.warn(
        "users taking an address another user gives up wait for the next sync (the call's budget ran out)",
        &[("entra_ids", &ids.join(","))],
    );
}
