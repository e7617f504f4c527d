//! What the component keeps between calls (the WIT `state` string). Never holds a secret or an
//! access token: the platform stores it as plain data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;

pub const VERSION: u32 = 1;

/// The whole persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u32,
    /// One higher in every state a call returns than in the state it was given (the call
    /// layer sets it): a platform storing state with compare-and-swap on it notices a lost
    /// update (WIT `state-revision`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub revision: u64,
    /// The tenant this instance's links belong to.
    pub tenant_id: Option<String>,
    /// A full sync in progress (checkpoint), if any.
    pub full_sync: Option<FullSync>,
    /// The last full sync that finished.
    pub last_full_sync: Option<Finished>,
    /// Our Graph change-notification subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// An `on-delete` in progress (links still being cleared).
    pub deleting: Option<Deleting>,
    /// Delta links for the backstop: where the next `/users/delta` and `/groups/delta` rounds start.
    pub delta: Option<DeltaLinks>,
    /// Users and groups whose notifications were accepted but not yet processed.
    pub queue: Queue,
    /// Deactivations the mass-deactivation guard is holding back, until an admin acts.
    pub blocked: Option<Blocked>,
    /// Deactivations made by notifications and delta rounds in the guard's rolling window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_deactivations: Option<DeactivationWindow>,
    /// The tenant's verified domains, learned from member users' UPN suffixes (lowercase; at
    /// most `address::MAX_LEARNED_DOMAINS`): replaced by each finished full sync's complete
    /// listing, added to by every user a notification or delta round reads. Linking by email
    /// needs the address's domain here (or in `email_match_domains`).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub email_domains: BTreeSet<String>,
}

/// The notification path's deactivations in the guard's rolling window (see
/// `guard::window_left`): `hourly[i]` in the hour from `since` + i hours, at most 25 counts;
/// `count` their sum. A window stored before the hourly counts is one hour from `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeactivationWindow {
    pub since: DateTime<Utc>,
    pub count: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hourly: Vec<usize>,
}

/// Stored delta links (opaque Graph URLs) and when they were issued (tokens live 7 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaLinks {
    pub users: String,
    pub groups: String,
    pub issued_at: DateTime<Utc>,
}

/// Longest audit cause the queue keeps, in bytes (`Queue::cause`): the notification ids of
/// one cause that would pass it are counted ("+N more") instead of named, and so are the
/// causes joined past it (`Queue::cause_more`), so the state stays within its bound.
pub const CAUSE_MAX: usize = 420;

/// Checkpointed real-time work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Queue {
    /// Entra user ids to re-read and sync.
    pub users: Vec<String>,
    /// Entra group ids whose membership changed.
    pub groups: Vec<String>,
    /// What put them there (notification ids or a delta round), for the audit log: the
    /// causes joined by `; ` while earlier work waits (see [`Queue::add_cause`]).
    pub cause: String,
    /// Causes that added work past [`CAUSE_MAX`]: counted, not named.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub cause_more: u32,
    /// A delta round is due now, before the next schedule (Graph's lifecycle `missed`: it
    /// dropped notifications).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub delta_round: bool,
    /// The linked users a delta round still being read (over several calls) would deactivate
    /// so far: the guard judges the whole round once it is complete, and no queued work runs
    /// before that, so splitting a round over calls never lets a mass deactivation through.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub round_leaving: Vec<String>,
    /// Pages of the delta round being read so far, over its calls: a round that passes
    /// `links::MAX_PAGES` is not ending and fails (listings are bounded).
    #[serde(skip_serializing_if = "is_no_page")]
    pub round_pages: u32,
    /// Lifecycle notifications to act on, in arrival order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<LifecycleItem>,
    /// After a lifecycle event Graph refused to act on (a renewal, a re-creation), no call
    /// tries the events again before this time ([`LIFECYCLE_RETRY_MINUTES`]): the calls that
    /// continue other work meanwhile spend their budget on it, not on retry waits against a
    /// failing Graph (a red team: 1.5 s calls made no progress through a 503 outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_retry_at: Option<DateTime<Utc>>,
    /// More ids arrived than the queue holds ([`QUEUE_MAX`]): the ones beyond were not kept,
    /// and a full sync (which reads every user) takes the queue's place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
    /// The members of the groups whose change is being applied, read (see [`MembersCarry`]):
    /// dropped when another group change arrives.
    #[serde(skip_serializing_if = "MembersCarry::is_empty")]
    pub members: MembersCarry,
    /// The front group chunk's role changes are done below this ZenQMS id (made, or a grant
    /// the scope refused): a later call's recompute of the same change goes on from it
    /// (`Realtime::sync_groups`). Dropped when another group change arrives and when the chunk
    /// is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_from: Option<String>,
    /// How many groups at the front of `groups` a recompute of every mapping (made for a
    /// group found gone) already covered: each was queued before that recompute read the
    /// mapped groups, so a group of them found gone needs no recompute of its own (a red team:
    /// 40 deleted groups, a chunk a call, each chunk recomputed every mapping with 1,000
    /// holders, six calls past their budget). A group queued again within them resets it.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub gone_recomputed: u32,
    /// The last call's queued work failed on a scope group that is gone: it waits for
    /// `scope_groups` to be fixed, and meanwhile does not put off the hourly delta round (a
    /// red team: a deleted scope group's queued change kept every later leaver unread).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scope_blocked: bool,
    /// The scope change of the queued groups was judged (its users queued): later calls that
    /// work those users do not read the scope again, until another group change arrives.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub scope_judged: bool,
}

/// The most ids the queue keeps — users, groups and a delta round's leaving users together —
/// so the state stays within the platform's 64 KiB whatever a burst or a delta round brings
/// (about 40 bytes each); more turn into a full sync ([`Queue::overflow`]).
pub const QUEUE_MAX: usize = 1_000;

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A lifecycle notification accepted by a webhook, acted on by the next serialized call:
/// `reauthorizationRequired` renews, `subscriptionRemoved` re-creates, `missed` runs a delta
/// round (Graph's lifecycle events, shared/reference/graph/02-lifecycle.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleItem {
    pub subscription_id: String,
    pub event: String,
    /// For a `subscriptionRemoved` whose re-creation failed: the resource to create a
    /// subscription on again (the removed one has left state). Kept until a later call
    /// makes it (or finds one there), so that a failed re-creation is not left to the next
    /// tick's upkeep alone (which `dry_run` skips: a red team's untracked subscription
    /// outlived a week of dry-run ticks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

fn is_no_page(n: &u32) -> bool {
    *n == 0
}

/// How long a lifecycle event Graph refused waits before a call tries it again (a tick is
/// further apart than this, so the next tick always does).
pub const LIFECYCLE_RETRY_MINUTES: i64 = 5;

impl Queue {
    /// A fresh queue for a full sync that takes this one's place: the run covers the users and
    /// groups queued, not the lifecycle events (a renewal Graph refused, a re-creation kept
    /// with its resource: subscription upkeep) nor their wait after a refusal (a red team: an
    /// overflow's full sync dropped them, and a refused renewal was never made).
    pub fn replaced_by_full_sync(&mut self) {
        let lifecycle = std::mem::take(&mut self.lifecycle);
        let retry_at = self.lifecycle_retry_at;
        *self = Queue {
            lifecycle,
            lifecycle_retry_at: retry_at,
            ..Queue::default()
        };
    }

    /// Work that continues over calls: users, groups, a delta round, an overflow. Lifecycle
    /// events are not: the call that takes them in acts on them first, and one Graph refused
    /// waits for a later call ([`Queue::lifecycle_retry_at`]); they never keep a call pending,
    /// which against a Graph that keeps refusing would resume without end (a red team).
    pub fn work_left(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty() || self.delta_round || self.overflow
    }

    /// No work: no user, no group, no lifecycle event, no delta round waiting.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && !self.delta_round
            && self.lifecycle.is_empty()
            && !self.overflow
    }

    /// Adds ids not already queued, keeping arrival order (a user notified many times in a
    /// burst is queued, and read, once).
    ///
    /// Past [`QUEUE_MAX`] ids, the rest are not kept and `overflow` is set.
    pub fn push(&mut self, users: &[String], groups: &[String]) {
        fn add(queued: &mut Vec<String>, new: &[String], room: &mut usize) -> bool {
            let mut seen: std::collections::HashSet<String> = queued.iter().cloned().collect();
            for id in new {
                if seen.contains(id) {
                    continue;
                }
                if *room == 0 {
                    return false;
                }
                *room -= 1;
                seen.insert(id.clone());
                queued.push(id.clone());
            }
            true
        }
        let covered = (self.gone_recomputed as usize).min(self.groups.len());
        if groups.iter().any(|g| self.groups[..covered].contains(g)) {
            // A change after the recompute that covered it: it is judged again.
            self.gone_recomputed = 0;
        }
        let mut room = QUEUE_MAX.saturating_sub(self.held());
        let kept =
            add(&mut self.users, users, &mut room) & add(&mut self.groups, groups, &mut room);
        self.overflow |= !kept;
        if !groups.is_empty() {
            // The members read for the groups before are older than this change, and the
            // scope is to be judged again.
            self.members.drop_read();
            self.roles_from = None;
            self.scope_judged = false;
        }
    }

    /// Adds a delta round's leaving user (kept whole for the guard); past [`QUEUE_MAX`] the
    /// queue overflows instead, and the round is not judged or applied: the full sync that
    /// takes over judges every deactivation together.
    pub fn push_leaving(&mut self, id: String) {
        if self.round_leaving.contains(&id) {
            return;
        }
        if self.held() >= QUEUE_MAX {
            self.overflow = true;
        } else {
            self.round_leaving.push(id);
        }
    }

    /// Ids held: users, groups and a delta round's leaving users.
    fn held(&self) -> usize {
        self.users.len() + self.groups.len() + self.round_leaving.len()
    }

    /// Names what is about to add work to the queue (call it before adding the work). The
    /// queue keeps one cause for all its ids, so while earlier work still waits (a call that
    /// failed, a budget that ran out) the causes are joined: a write names every notification
    /// or delta round that may have asked for it, never only a later, unrelated one (a bug
    /// hunt: a leaver's deactivation, queued by a notification whose call failed, was audited
    /// under the next user's notification). Past [`CAUSE_MAX`] bytes
    /// the later causes are counted (`cause_more`) instead of named; the count is kept apart
    /// from the text, which a notification id could imitate.
    pub fn add_cause(&mut self, cause: String) {
        if (self.users.is_empty() && self.groups.is_empty()) || self.cause.is_empty() {
            self.cause = cause;
            self.cause_more = 0;
            return;
        }
        if self.cause.split("; ").any(|c| c == cause) {
            return;
        }
        // Named while it fits; once one is counted, so are the rest.
        if self.cause_more == 0 && self.cause.len() + 2 + cause.len() <= CAUSE_MAX {
            self.cause = format!("{}; {cause}", self.cause);
        } else {
            self.cause_more = self.cause_more.saturating_add(1);
        }
    }

    /// The cause the queue's writes are audited with: its causes, and how many more there were.
    pub fn audit_cause(&self) -> String {
        match self.cause_more {
            0 => self.cause.clone(),
            n => format!("{}; +{n} more causes", self.cause),
        }
    }
}

/// A Graph subscription this instance created. Its clientState authenticates notifications;
/// it is a per-subscription random value, not a configured secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub client_state: String,
    pub expires_at: DateTime<Utc>,
}

/// A checkpointed delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleting {
    pub started_at: String,
    /// Links cleared so far.
    pub cleared: u32,
    /// Every subscription of this instance is gone from Graph (those in state and strays on
    /// its webhook URL). Until then each call of the delete, a resume too, removes them first:
    /// a delete whose first call paused on a throttled subscription removal must not finish
    /// with a subscription still live. Absent in a checkpoint from before it: false.
    #[serde(default)]
    pub subscriptions_removed: bool,
    /// The walk over the accounts with an external_id (`has_external_id`, in ZenQMS id order;
    /// see `handlers::unlink`): the last account it passed, whose links are cleared up to and
    /// including it. `None`: none yet (the walk starts at the first account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The search page (1-based) where the account after `after` is expected, as the last call
    /// counted positions; 0 (absent): page 1.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub page: u64,
    /// The walk's second pass: every account read again from the start, clearing links made
    /// behind the first pass's cursor while it went (by hand, or by a write whose answer was
    /// lost). The delete is complete when it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checking: bool,
}

/// The suffix of a dry run's `run_id` (`sync-<time>-dryrun`): a run's mode is fixed when it
/// starts and read from its id, never from the configuration of a later call.
pub const DRY_RUN_SUFFIX: &str = "-dryrun";

/// A checkpointed full sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullSync {
    /// Names the run in logs (the cause of every write it makes).
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub phase: Phase,
    /// User pages (batches) completed so far.
    pub batches: u32,
    /// Handler calls this run has taken so far.
    pub calls: u32,
    pub totals: Counts,
    /// Deactivations planned so far, held back until the whole run's count is known and
    /// checked against the mass-deactivation limit: at most [`DEFERRED_MAX`] of them, the
    /// rest only counted in `deferred_more` (the state stays small whatever the tenant).
    #[serde(default)]
    pub deferred: Vec<Deferred>,
    /// Deactivations planned beyond the first [`DEFERRED_MAX`]: counted for the guard, then
    /// found again by a second pass over the linked users (see `Phase::Deactivations`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub deferred_more: u32,
    /// Deactivations the guard let through (named and counted): a second walk deactivates no
    /// more than these.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub approved: u32,
    /// Deactivations the second walk made so far.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub walked: u32,
    /// The second walk's first pass (which writes nothing) is done: the set it found was
    /// judged by the guard again, and the writing pass may run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again_checked: bool,
    /// The first pass's findings so far: how many are leaving, and their set's digest.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub again_count: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub again_digest: u64,
    /// The leaver check's walk is done (it comes first: see `Phase::Leavers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leavers_done: bool,
    /// Linked ZenQMS users (an Entra id for external_id, active or not) the leaver check's walk
    /// has read: the base of the mass-deactivation limit (0: not walked yet).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub linked_seen: u32,
    /// Entra ids of users whose role calls the last call could not send (those created by its
    /// last user step, or worked beside a members' read it did not finish): recomputed and
    /// sent by the next call. At most a step's users, or [`ROLES_DUE_BESIDE_MAX`] when the
    /// call let further steps go beside the members' read (only in a state small enough for
    /// them: [`BESIDE_MORE_STATE_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_due: Vec<String>,
    /// The notification queue overflowed while this run was under way: another full sync
    /// follows it (changes to users it had already read would be missed otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
    /// The second walk found more users leaving than its guard judged: another full sync
    /// follows (`follow-up`), whose guard counts this run's deactivations with its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow_up: bool,
    /// Deactivations the run this one follows up made (see `follow_up`): counted against this
    /// run's limit, so that the two together stay within it unless an admin allows more.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub prior_deactivations: u32,
    /// Whether this run may exceed the limit (`allow_mass_deactivation` on the deploy).
    #[serde(default)]
    pub allow_mass: bool,
    /// The component started this run on its own (an overflowed queue, a delta link Graph
    /// refused, or a follow-up of such a run), not an admin: like the queued notifications
    /// it stands for, it is judged against what the rolling 24-hour window
    /// (`State::recent_deactivations`) leaves of the limit, and the deactivations its guard
    /// lets through count into that window from then on (`Engine::window_approved`). (A red team: these runs neither consulted nor fed the window, so a
    /// burst that overflowed the queue, or a delta link Graph refused, deactivated a second
    /// `max_deactivations` within the hour.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub window: bool,
    /// Deactivations an admin released (`release-held-deactivations`): the run may make
    /// exactly these above the limit — as many as `released`, and the same users
    /// (`released_digest`); any other set is held again.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub released: u32,
    /// The digest ([`Blocked::digest`]) of the held set the admin released; none when the
    /// held set was not known by name (held by notifications): the run then counts afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_digest: Option<u64>,
    /// Order-independent digest of the Entra ids deferred so far (the sum of their
    /// fingerprints): names the whole deferred set without keeping it.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub deferred_digest: u64,
    /// The deferred deactivations passed the check (or were blocked: see `blocked`).
    #[serde(default)]
    pub guard_checked: bool,
    #[serde(default)]
    pub blocked: Option<Blocked>,
    /// Deactivations held by notifications, delta rounds or an admin's `provision-user`
    /// while this run was under way. The run may have met those users before their change
    /// (a user read enabled, then disabled or deleted), so its own leaver check does not
    /// cover them: they stay held past its end, with what the run holds itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_meanwhile: Option<Blocked>,
    /// Fingerprints of the last user-page links followed (see `links`): a listing that loops
    /// back to one of them is an error instead of a sync that never ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_links: Vec<u64>,
    /// Verified domains this run's user pages proved so far (member UPN suffixes, bounded);
    /// the state's `email_domains` when the run finishes.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub email_domains: BTreeSet<String>,
    /// The ZenQMS look-up keys of the next user pages (`Phase::Users::next` and the page
    /// after it), as the last call read them ahead: the next call reads both pages and sends
    /// their look-ups in its first round, instead of in rounds after each read. Only an
    /// optimisation: the pages are read again, a page's look-ups are trusted only when its
    /// users' keys are among these, and the second page only when the first still links to
    /// it (else each step reads and looks up as without them). Left out when the state would
    /// grow past [`KEYS_DROPPED_ABOVE`] bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_keys: Vec<PageKeys>,
    /// Linked ZenQMS users when the run began, as counted by the deploy's first round or by
    /// the run's first walk step (0: not counted). With the users the run created and linked
    /// since, it estimates how many search pages a walk has, so that a call's first walk step
    /// reads its pages at once instead of one page first to learn their number. Only an
    /// estimate: each answer's total is what the walk goes by.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub linked_hint: u32,
    /// The mapped and scope groups' transitive members as the run read them (see
    /// [`MembersCarry`]): a read done is done once per run. Dropped when a group change is
    /// applied during the run (the queue's groups), so no call works with members older than
    /// a change it knows of.
    #[serde(default, skip_serializing_if = "MembersCarry::is_empty")]
    pub members: MembersCarry,
}

/// Group members read in one call and kept for the next (the full sync's, and those of the
/// queue's group changes): whole, or in part when the read outlasts a call's budget (the
/// next call goes on from there). Kept while they fit [`MEMBERS_CARRIED_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersCarry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<CarriedMembers>,
    /// The members are read whole in each call (as without `read`): set when a read in part
    /// had to be dropped more than [`MEMBERS_RESTARTS`] times (a change queued, the state's
    /// size) or turned out larger than the checkpoint holds, so that a read that outlasts a
    /// call cannot start over in every call without an end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
    /// Reads in part dropped so far (see `whole`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub restarts: u32,
}

/// Reads in part a carry may drop and start again (a change queued during a long read) before
/// the work reads the members whole in each call: a few changes cost a few restarts, not the
/// rest of the run at one step a call.
pub const MEMBERS_RESTARTS: u32 = 3;

impl MembersCarry {
    pub fn is_empty(&self) -> bool {
        self.read.is_none() && !self.whole && self.restarts == 0
    }

    /// Leaves out the members read; past [`MEMBERS_RESTARTS`] reads in part dropped, the rest
    /// of the work reads them whole in each call (`whole`).
    pub fn drop_read(&mut self) {
        if let Some(m) = self.read.take()
            && !m.complete()
        {
            self.restarts += 1;
            self.whole |= self.restarts > MEMBERS_RESTARTS;
        }
    }
}

/// The members a run read (see `FullSync::members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedMembers {
    /// The groups read (the configuration's mapped and scope groups when the read began): a
    /// configuration that names others reads afresh.
    pub groups: Vec<String>,
    /// The read: the ids by group (a group that answered 404 has none), and the next URL of
    /// each listing not yet at its end (none: the read is complete).
    pub read: CarriedRead,
}

impl CarriedMembers {
    pub fn complete(&self) -> bool {
        self.read.cursors.is_empty()
    }
}

/// A read of id listings checkpointed between calls (`clients::graph::Listings::carried`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedRead {
    /// The ids read so far, by key (a key whose object answered 404 is absent).
    pub read: BTreeMap<String, BTreeSet<String>>,
    /// Unfinished listings: key, next page's URL (a link Graph gave).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursors: Vec<(String, String)>,
    /// Fingerprints of the last links followed (`domain::links::RECENT` at most).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<u64>,
    /// Pages asked for so far.
    #[serde(default)]
    pub pages: u32,
}

/// About how many bytes `m` takes as JSON: each id with its quotes and comma, each key with its
/// quotes, colon and brackets.
pub fn memberships_bytes(m: &BTreeMap<String, BTreeSet<String>>) -> usize {
    m.iter()
        .map(|(k, ids)| k.len() + 6 + ids.iter().map(|i| i.len() + 3).sum::<usize>())
        .sum()
}

/// The most bytes (about, as JSON) of members a run keeps between calls (`FullSync::members`):
/// about 600 GUIDs. Above it, each call reads them again (the state stays within the
/// platform's 64 KiB whatever else it holds: see `State::to_json`).
pub const MEMBERS_CARRIED_MAX: usize = 24 * 1024;

/// Above this many bytes of state (after `next_keys` is dropped), `FullSync::members` is left
/// out of it too.
pub const MEMBERS_DROPPED_ABOVE: usize = 56 * 1024;

/// The most users a call's checkpoint names in `FullSync::roles_due` once it let a user step
/// other than its first go beside the members' read: the users owed before that step (one
/// step's at most: it goes only then), the step's own (at most a page), and the role calls
/// of the last step's new accounts; each a page of up to 120 (Graph may serve a few more
/// than asked).
pub const ROLES_DUE_BESIDE_MAX: usize = 3 * 120;

/// The largest state (bytes of JSON, `next_keys` and the carried members left out, as
/// [`State::to_json`] leaves them out first) in which a call lets a user step other than its
/// first go beside the members' read: what the rest of the call may add (its deferred
/// deactivations, a page's done ids, the run's learned domains, [`ROLES_DUE_BESIDE_MAX`]
/// users in `roles_due`) then still fits the platform's 64 KiB
/// (`tests::a_state_that_lets_a_further_step_beside_the_read_fits_64_kib_at_the_call_end`).
pub const BESIDE_MORE_STATE_MAX: usize = 36 * 1024;

/// The keys a user page's ZenQMS look-ups are made of (see `FullSync::next_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKeys {
    /// The page's Graph URL (a link Graph gave: checked as Graph's again before it is read).
    pub url: String,
    /// Its users' Entra ids, lowercase.
    pub ids: Vec<String>,
    /// The addresses its users may be matched or written with (normalised, distinct).
    pub addresses: Vec<String>,
}

/// Above this many bytes of state, `FullSync::next_keys` is left out of it (two pages' ids
/// and addresses: about 15 KB), so that the state stays within the platform's 64 KiB
/// whatever else it holds.
pub const KEYS_DROPPED_ABOVE: usize = 40 * 1024;

impl FullSync {
    /// Whether this run is a dry run (it writes nothing), as it was started: the admin may
    /// change `dry_run` while it is checkpointed, and a dry run must never go on writing, nor
    /// a real run end writing nothing.
    pub fn dry_run(&self) -> bool {
        self.run_id.ends_with(DRY_RUN_SUFFIX)
    }

    /// A run starting at `started_at`: its first phase is the leaver walk (`Phase::Leavers`),
    /// then the user pages; `allow_mass` lets it past the mass-deactivation limit once.
    pub fn start(run_id: String, started_at: DateTime<Utc>, allow_mass: bool) -> Self {
        FullSync {
            run_id,
            started_at,
            phase: Phase::Leavers {
                after: None,
                page: 0,
            },
            batches: 0,
            calls: 0,
            totals: Counts::default(),
            deferred: Vec::new(),
            deferred_more: 0,
            approved: 0,
            walked: 0,
            roles_due: Vec::new(),
            linked_seen: 0,
            leavers_done: false,
            again: false,
            follow_up: false,
            prior_deactivations: 0,
            allow_mass,
            window: false,
            released: 0,
            released_digest: None,
            deferred_digest: 0,
            again_checked: false,
            again_count: 0,
            again_digest: 0,
            guard_checked: false,
            blocked: None,
            held_meanwhile: None,
            recent_links: Vec::new(),
            email_domains: BTreeSet::new(),
            next_keys: Vec::new(),
            linked_hint: 0,
            members: MembersCarry::default(),
        }
    }
}

/// Deactivations a full sync keeps by name in its checkpoint (about 130–250 bytes each, the
/// UPN's length decides); more are only counted.
pub const DEFERRED_MAX: usize = 16;

/// A deactivation the full sync plans, applied after the mass-deactivation check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    pub zenqms_id: String,
    pub entra_id: String,
    pub upn: String,
    pub reason: String,
}

/// Deactivations held back by the mass-deactivation guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub count: usize,
    pub limit: usize,
    pub since: DateTime<Utc>,
    /// Entra ids of a few of them, for the admin.
    pub sample: Vec<String>,
    /// The held set's digest (the sum of the Entra ids' fingerprints), when a full sync held
    /// it and so knows it whole: a release applies to exactly this set. None when held by
    /// notifications or a delta round (then a release's full sync counts afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<u64>,
}

/// Where a full sync stands. Each phase is safe to repeat from its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Planning users page by page; `next` is the Graph URL of the next page to process and
    /// `done` which of its users are (a page longer than asked for, or a budget nearly spent,
    /// takes several steps).
    Users {
        next: String,
        /// Users of the page done, by position: kept only to read checkpoints written before
        /// `done` (a position shifts when a user of the page is deleted meanwhile).
        #[serde(default, skip_serializing_if = "is_zero")]
        skip: usize,
        /// The ids (lowercase) of the page's users done so far: the page is read again by the
        /// next step, and whatever Graph's page then holds, exactly the users not in here are
        /// worked (at most a page's worth of ids).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        done: Vec<String>,
    },
    /// Finding linked ZenQMS users whose Entra object is gone: every linked, active user is
    /// checked against Graph by id, in ZenQMS id order; `after` is the last ZenQMS id checked.
    /// A run's first phase (then `Users`); links stored in another form than Graph's are
    /// rewritten on the way.
    Leavers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// The next page of the linked users' search to read (0: the first).
        #[serde(default)]
        page: u64,
    },
    /// Applying the deferred deactivations, if the guard allows. When more were planned than
    /// the state keeps (`deferred_more`), the linked, active users are walked again in ZenQMS
    /// id order (`after`: the last one checked) and those whose Entra object is gone or
    /// disabled are deactivated.
    Deactivations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// As in `Leavers`.
        #[serde(default)]
        page: u64,
    },
    /// Bringing mapped roles in line with group membership.
    Roles,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a run (or one call of it) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub created: u32,
    pub updated: u32,
    pub linked: u32,
    pub deactivated: u32,
    pub unchanged: u32,
    pub skipped: u32,
    pub conflicts: u32,
    pub failed: u32,
    pub roles_added: u32,
    pub roles_removed: u32,
    /// Links cleared (`on-delete` only; absent from stored state when zero).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub unlinked: u32,
    /// Entra users outside `scope_groups` that no ZenQMS user is linked to: not provisioned
    /// (absent from stored state when zero).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub out_of_scope: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.created += other.created;
        self.updated += other.updated;
        self.linked += other.linked;
        self.deactivated += other.deactivated;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.conflicts += other.conflicts;
        self.failed += other.failed;
        self.roles_added += other.roles_added;
        self.roles_removed += other.roles_removed;
        self.unlinked += other.unlinked;
        self.out_of_scope += other.out_of_scope;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "created {}, updated {}, linked {}, deactivated {}, unchanged {}, skipped {}, conflicts {}, failed {}, roles added {}, roles removed {}",
            self.created,
            self.updated,
            self.linked,
            self.deactivated,
            self.unchanged,
            self.skipped,
            self.conflicts,
            self.failed,
            self.roles_added,
            self.roles_removed
        )?;
        if self.out_of_scope > 0 {
            write!(f, ", out of scope {}", self.out_of_scope)?;
        }
        Ok(())
    }
}

/// A finished full sync, kept for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub batches: u32,
    pub totals: Counts,
}

impl State {
    /// Parses stored state; none means a fresh instance.
    pub fn parse(text: Option<&str>) -> Result<State, Failure> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(State::fresh());
        };
        let state: State = serde_json::from_str(text).map_err(|e| {
            Failure::fatal(format!(
                "stored state is unreadable ({e}); redeploy the instance to start over"
            ))
        })?;
        if state.version > VERSION {
            return Err(Failure::fatal(format!(
                "stored state has version {} but this component understands up to {VERSION}",
                state.version
            )));
        }
        Ok(state)
    }

    /// A fresh instance's state.
    pub fn fresh() -> State {
        State {
            version: VERSION,
            ..State::default()
        }
    }

    /// Whether checkpointed work waits for `resume`: a delete, queued changes or a full sync.
    pub fn has_work(&self) -> bool {
        self.deleting.is_some() || self.queue.work_left() || self.full_sync.is_some()
    }

    pub fn subscription_ids(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(|s| s.id.as_str())
    }

    /// Bytes of `to_json` when the full sync is `sync` (its `next_keys` and carried members
    /// left out: they are only savings), given `rest`: the bytes of this state without its
    /// full sync ([`State::bytes_without_full_sync`]).
    pub fn bytes_with(rest: usize, sync: &FullSync) -> usize {
        let mut trimmed = sync.clone();
        trimmed.next_keys.clear();
        trimmed.members.read = None;
        // In place of the `null` the rest was measured with.
        let sync = serde_json::to_string(&trimmed).map_or(usize::MAX, |j| j.len());
        rest.saturating_sub(4).saturating_add(sync)
    }

    /// Bytes of this state as JSON without its full sync (see [`State::bytes_with`]).
    pub fn bytes_without_full_sync(&self) -> usize {
        let mut s = self.clone();
        s.full_sync = None;
        serde_json::to_string(&s).map_or(usize::MAX, |j| j.len())
    }

    /// The state as JSON, within the platform's 64 KiB: above [`KEYS_DROPPED_ABOVE`] bytes the
    /// full sync's `next_keys` are left out, and above [`MEMBERS_DROPPED_ABOVE`] its members
    /// too, the full sync's and the queue's (a read in part then marks them `whole`). Both are
    /// only savings.
    pub fn to_json(&self) -> String {
        let json = serde_json::to_string(self).expect("state serialises");
        if json.len() <= KEYS_DROPPED_ABOVE {
            return json;
        }
        let keys = self
            .full_sync
            .as_ref()
            .is_some_and(|f| !f.next_keys.is_empty());
        let members = self
            .full_sync
            .as_ref()
            .is_some_and(|f| f.members.read.is_some())
            || self.queue.members.read.is_some();
        if !keys && !members {
            return json;
        }
        let mut smaller = self.clone();
        if let Some(f) = smaller.full_sync.as_mut() {
            f.next_keys.clear();
        }
        let json = serde_json::to_string(&smaller).expect("state serialises");
        if json.len() <= MEMBERS_DROPPED_ABOVE || !members {
            return json;
        }
        if let Some(f) = smaller.full_sync.as_mut() {
            f.members.drop_read();
        }
        smaller.queue.members.drop_read();
        serde_json::to_string(&smaller).expect("state serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Learned domains as many and as long as `address::learn` keeps.
    fn full_domains() -> BTreeSet<String> {
        let mut domains = BTreeSet::new();
        for i in 0.. {
            if !crate::domain::address::learn(
                &mut domains,
                format!("{i:04}{}.example", "d".repeat(40)),
            ) {
                break;
            }
        }
        domains
    }

    /// The most deferred deactivations a run keeps, with long ids and UPNs and the longest
    /// reason there is.
    fn longest_deferred() -> Vec<Deferred> {
        let guid = |i: usize| format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}");
        (0..DEFERRED_MAX)
            .map(|i| Deferred {
                zenqms_id: format!("z-{}", "9".repeat(60)),
                entra_id: guid(i),
                upn: format!("{}@{}.example", "u".repeat(64), "d".repeat(40)),
                reason: crate::domain::scope::LEFT_AND_DISABLED.into(),
            })
            .collect()
    }

    /// A members' read in part (see `FullSync::members`) as large as a run carries it: GUIDs
    /// up to [`MEMBERS_CARRIED_MAX`], two listings still to read.
    fn members_at_bound() -> CarriedMembers {
        let guid = |i: usize| format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}");
        let mut read = CarriedRead::default();
        let groups: Vec<String> = (0..2).map(|i| guid(900_000 + i)).collect();
        let mut ids = BTreeSet::new();
        let mut i = 0;
        while memberships_bytes(&read.read) < MEMBERS_CARRIED_MAX - 100 {
            ids.insert(guid(i));
            i += 1;
            read.read.insert(groups[0].clone(), ids.clone());
        }
        read.read.insert(groups[1].clone(), BTreeSet::new());
        read.cursors = groups
            .iter()
            .map(|g| {
                (
                    g.clone(),
                    format!("https://graph.microsoft.com/v1.0/groups/{g}/transitiveMembers?$skiptoken={}", "s".repeat(400)),
                )
            })
            .collect();
        read.recent = vec![u64::MAX; crate::domain::links::RECENT];
        read.pages = u32::MAX;
        CarriedMembers { groups, read }
    }

    /// The members a run carries stay in a state of ordinary size, and a read in part that
    /// must be left out (a state already large) makes the run read them whole in each call,
    /// never start the read over in every call.
    #[test]
    fn carried_members_stay_in_an_ordinary_state_and_a_read_in_part_dropped_again_and_again_is_read_whole()
     {
        let mut s = State::parse(None).unwrap();
        let mut f = FullSync::start("r".into(), "2026-11-28T12:00:00Z".parse().unwrap(), false);
        f.members.read = Some(members_at_bound());
        s.full_sync = Some(f);
        s.queue.members.read = Some(members_at_bound());
        let back = State::parse(Some(&s.to_json())).unwrap();
        let f = back.full_sync.as_ref().unwrap();
        assert_eq!(f.members.read, Some(members_at_bound()));
        assert!(!f.members.whole);
        assert_eq!(back.queue.members.read, Some(members_at_bound()));

        s.queue.cause = "c".repeat(40 * 1024);
        let back = State::parse(Some(&s.to_json())).unwrap();
        let f = back.full_sync.unwrap();
        assert!(f.members.read.is_none() && f.members.restarts == 1 && !f.members.whole);
        assert!(back.queue.members.read.is_none() && back.queue.members.restarts == 1);
        // Dropped again and again, a read in part gives way to reading whole.
        let mut carry = MembersCarry::default();
        for _ in 0..=MEMBERS_RESTARTS {
            assert!(!carry.whole);
            carry.read = Some(members_at_bound());
            carry.drop_read();
        }
        assert!(carry.whole);
        // A complete read left out is simply read again.
        let mut whole = members_at_bound();
        whole.read.cursors.clear();
        s.full_sync.as_mut().unwrap().members = MembersCarry {
            read: Some(whole),
            ..MembersCarry::default()
        };
        s.queue.members = MembersCarry::default();
        let back = State::parse(Some(&s.to_json())).unwrap();
        let f = back.full_sync.unwrap();
        assert!(f.members.read.is_none() && !f.members.whole);
    }

    #[test]
    fn a_cause_joins_the_causes_of_work_still_queued_within_its_bound() {
        let mut q = Queue::default();
        q.add_cause("notification n-1".into());
        q.push(&["u1".into()], &[]);
        q.add_cause("notification n-2".into());
        assert_eq!(q.cause, "notification n-1; notification n-2");
        q.add_cause("notification n-2".into());
        assert_eq!(q.cause, "notification n-1; notification n-2");
        for i in 3..200 {
            q.add_cause(format!("notification {}", "x".repeat(i % 40 + 30)));
            assert!(q.cause.len() <= CAUSE_MAX, "{}", q.cause);
            assert!(q.cause.starts_with("notification n-1; notification n-2"));
        }
        assert!(
            q.audit_cause().ends_with(" more causes"),
            "{}",
            q.audit_cause()
        );
        let named = q.cause.matches("notification").count();
        let counted = q.cause_more as usize;
        // Every cause is named or counted: of the 197 x-runs (lengths 30-69, i % 40 + 30), the
        // named ones recur every 40, named already; the others are counted.
        let named_runs = named - 2;
        assert_eq!(counted, 197 - 5 * named_runs, "{}", q.audit_cause());
        // A cause that imitates the count changes nothing but its own text.
        let more = q.cause_more;
        q.add_cause("notification evil; +99 more causes".into());
        assert_eq!(q.cause_more, more + 1);
        // Once the queue is empty, the next work has its own cause.
        q.users.clear();
        q.add_cause("delta-20261128T120000Z".into());
        assert_eq!(q.cause, "delta-20261128T120000Z");
        assert_eq!(q.audit_cause(), "delta-20261128T120000Z");
    }

    /// Every part of the state that can grow at its bound at once — a full queue, a full
    /// sync naming its most deferred deactivations with the longest UPNs, both learned domain
    /// sets full, a long page's done ids, long delta links — still fits the platform's 64 KiB.
    #[test]
    fn the_state_at_every_bound_at_once_fits_64_kib() {
        let guid = |i: usize| format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}");
        let domains = full_domains();
        let mut s = State::parse(None).unwrap();
        s.tenant_id = Some(guid(0));
        s.email_domains = domains.clone();
        s.queue
            .push(&(0..900).map(guid).collect::<Vec<_>>(), &[guid(9)]);
        for i in 0..QUEUE_MAX {
            s.queue.push_leaving(guid(10_000 + i));
        }
        s.queue.cause = "n".repeat(CAUSE_MAX);
        s.queue.cause_more = u32::MAX;
        s.queue.members.read = Some(members_at_bound());
        // Graph's tokens are opaque: the longest in its docs has 209 characters; five times.
        let link = |what: &str| {
            format!(
                "https://graph.microsoft.com/v1.0/{what}/delta?$deltatoken={}",
                "t".repeat(1000)
            )
        };
        s.delta = Some(DeltaLinks {
            users: link("users"),
            groups: link("groups"),
            issued_at: "2026-11-28T12:00:00Z".parse().unwrap(),
        });
        let deferred = longest_deferred();
        s.full_sync = Some(FullSync {
            run_id: "sync-20261128T120000Z-queue-overflow".into(),
            started_at: "2026-11-28T12:00:00Z".parse().unwrap(),
            phase: Phase::Users {
                next: link("users"),
                skip: 0,
                done: (0..100).map(guid).collect(),
            },
            batches: 1_000,
            calls: 100,
            totals: Counts::default(),
            deferred,
            deferred_more: 100_000,
            approved: 0,
            walked: 0,
            roles_due: (0..100).map(guid).collect(),
            linked_seen: u32::MAX,
            leavers_done: true,
            again: true,
            follow_up: true,
            prior_deactivations: u32::MAX,
            allow_mass: false,
            window: true,
            released: u32::MAX,
            released_digest: Some(u64::MAX),
            deferred_digest: u64::MAX,
            again_checked: true,
            again_count: u32::MAX,
            again_digest: u64::MAX,
            guard_checked: false,
            blocked: None,
            // Held by notifications during the run, with the guard's full sample.
            held_meanwhile: Some(Blocked {
                count: usize::MAX,
                limit: usize::MAX,
                since: "2026-11-28T12:00:00Z".parse().unwrap(),
                sample: (0..10).map(guid).collect(),
                digest: None,
            }),
            recent_links: vec![u64::MAX; crate::domain::links::RECENT],
            email_domains: domains,
            // A long page's keys: dropped from a state this large.
            next_keys: vec![
                PageKeys {
                    url: link("users"),
                    ids: (0..999).map(guid).collect(),
                    addresses: (0..999)
                        .map(|i| format!("{}{i}@{}.example", "a".repeat(60), "d".repeat(180)))
                        .collect(),
                };
                2
            ],
            linked_hint: u32::MAX,
            // A members' read in part at its bound: dropped from a state this large too.
            members: MembersCarry {
                read: Some(members_at_bound()),
                ..MembersCarry::default()
            },
        });
        // The guard's window at its 25 hourly counts.
        s.recent_deactivations = Some(DeactivationWindow {
            since: "2026-11-28T12:00:00Z".parse().unwrap(),
            count: usize::MAX,
            hourly: vec![u32::MAX as usize; 25],
        });
        // Deactivations held back, with the guard's full sample and a digest.
        s.blocked = Some(Blocked {
            count: usize::MAX,
            limit: usize::MAX,
            since: "2026-11-28T12:00:00Z".parse().unwrap(),
            sample: (0..10).map(guid).collect(),
            digest: Some(u64::MAX),
        });
        let json = s.to_json();
        let bytes = json.len();
        assert!(bytes <= 64 * 1024, "{bytes} bytes");
        eprintln!("worst-case state: {bytes} bytes");
        // The members' read in part was left out: the run reads them whole from then on.
        let back = State::parse(Some(&json)).unwrap();
        let f = back.full_sync.unwrap();
        assert!(f.members.read.is_none() && f.members.restarts == 1);
        assert!(back.queue.members.read.is_none() && back.queue.members.restarts == 1);
    }

    /// A call lets a user step other than its first go beside the members' read only in a
    /// state within [`BESIDE_MORE_STATE_MAX`] (as [`State::bytes_with`] measures it). From
    /// there, all the call can add — its deferred deactivations at their bound with the
    /// longest UPNs, a long page's done ids, the run's learned domains, the largest counts and
    /// recent links, [`ROLES_DUE_BESIDE_MAX`] users in `roles_due`, the next pages' keys and
    /// the members at their bound — still fits the platform's 64 KiB.
    #[test]
    fn a_state_that_lets_a_further_step_beside_the_read_fits_64_kib_at_the_call_end() {
        let guid = |i: usize| format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}");
        let link = |what: &str| {
            format!(
                "https://graph.microsoft.com/v1.0/{what}?$skiptoken={}",
                "t".repeat(1000)
            )
        };
        let mut s = State::parse(None).unwrap();
        s.tenant_id = Some(guid(0));
        let mut f = FullSync::start(
            "sync-20261128T120000Z-queue-overflow".into(),
            "2026-11-28T12:00:00Z".parse().unwrap(),
            false,
        );
        f.phase = Phase::Users {
            next: link("users"),
            skip: 0,
            done: Vec::new(),
        };
        // The call measures the state as it begins: its size reaches the bound exactly.
        let at = State::bytes_with(s.bytes_without_full_sync(), &f);
        assert!(at < BESIDE_MORE_STATE_MAX);
        s.queue.cause = "n".repeat(BESIDE_MORE_STATE_MAX - at);
        let rest = s.bytes_without_full_sync();
        assert_eq!(State::bytes_with(rest, &f), BESIDE_MORE_STATE_MAX);
        s.full_sync = Some(f.clone());
        assert_eq!(
            s.to_json().len(),
            BESIDE_MORE_STATE_MAX,
            "the measure is exact"
        );
        // All the call may add.
        let domains = full_domains();
        f.email_domains = domains;
        f.deferred = longest_deferred();
        f.deferred_more = u32::MAX;
        f.deferred_digest = u64::MAX;
        f.batches = u32::MAX;
        f.linked_hint = u32::MAX;
        f.phase = Phase::Users {
            next: link("users"),
            skip: 0,
            done: (0..120).map(guid).collect(),
        };
        f.recent_links = vec![u64::MAX; crate::domain::links::RECENT];
        f.roles_due = (0..ROLES_DUE_BESIDE_MAX).map(guid).collect();
        f.next_keys = vec![
            PageKeys {
                url: link("users"),
                ids: (0..120).map(guid).collect(),
                addresses: (0..120)
                    .map(|i| format!("{}{i}@{}.example", "a".repeat(60), "d".repeat(180)))
                    .collect(),
            };
            2
        ];
        f.members = MembersCarry {
            read: Some(members_at_bound()),
            ..MembersCarry::default()
        };
        s.full_sync = Some(f);
        let bytes = s.to_json().len();
        assert!(bytes <= 64 * 1024, "{bytes} bytes");
        eprintln!("a further step beside the read, at its bound: {bytes} bytes at the call end");
    }

    #[test]
    fn round_trip_and_fresh() {
        let fresh = State::parse(None).unwrap();
        assert_eq!(fresh.version, VERSION);
        let mut s = fresh.clone();
        s.full_sync = Some(FullSync {
            phase: Phase::Users {
                next: "https://graph.microsoft.com/v1.0/users".into(),
                skip: 0,
                done: Vec::new(),
            },
            batches: 2,
            calls: 1,
            email_domains: BTreeSet::from(["contoso.com".to_string()]),
            next_keys: vec![PageKeys {
                url: "https://graph.microsoft.com/v1.0/users?$skiptoken=x".into(),
                ids: vec!["00000001-1d2c-4b5a-9e8f-000000000001".into()],
                addresses: vec!["ann@contoso.com".into()],
            }],
            ..FullSync::start("r".into(), "2026-11-28T12:00:00Z".parse().unwrap(), false)
        });
        s.email_domains = BTreeSet::from(["contoso.com".to_string()]);
        assert_eq!(State::parse(Some(&s.to_json())).unwrap(), s);
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert!(State::parse(Some("{nope")).is_err());
        assert!(State::parse(Some(r#"{"version": 99}"#)).is_err());
        assert!(State::parse(Some("  ")).is_ok());
    }
}
