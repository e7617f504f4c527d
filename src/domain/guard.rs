//! The one mass-deactivation guard. Every path that deactivates ZenQMS users asks it first:
//! the full sync (all of a run's deactivations, counted before any is applied), a delta round
//! (all of the round's leavers, before any is queued), and queued notifications (a rolling
//! 24-hour count of the deactivations they made: a burst of "disabled" notifications — a whole
//! department switched off by mistake — is held back like a mass change found by a sync).
//!
//! The limit is `max_deactivations`, or 10 % of the linked ZenQMS users, at least 10
//! ([`Config::deactivation_limit`]). Over the limit, nobody on that path is deactivated, an
//! error names the count, the limit and a sample of Entra ids, and [`Blocked`] is kept in state
//! so every schedule repeats the error until an admin acts.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clients::zenqms::api::ZUser;
use crate::config::Config;
use crate::domain::plan::{Action, Change, Planned, WriteKind};
use crate::log::Log;
use crate::state::{Blocked, DeactivationWindow, State};

/// Why a user is deactivated, as the audit trail says it (one wording per cause, on every
/// path): its Entra object is gone, it is disabled, it left the scope
/// ([`crate::domain::scope::LEFT`]).
pub const GONE: &str = "gone from Entra (Graph answers 404)";
pub const DISABLED: &str = "disabled in Entra";

/// Entra ids named in the error and kept in [`Blocked::sample`].
const SAMPLE: usize = 10;

/// How long the notification path's deactivations are counted together.
pub const WINDOW_HOURS: i64 = 24;

/// The guard's verdict on `count` deactivations against `limit`.
pub fn exceeds(count: usize, limit: usize, allow_mass: bool) -> bool {
    count > limit && !allow_mass
}

/// Logs the guard's error (in a dry run, a warning that a real run would hold them) and returns
/// what to keep in state.
#[expect(
    clippy::too_many_arguments,
    reason = "the hold's facts as each of its four callers has them; a struct would only rename them"
)]
pub fn block(
    log: &Log,
    what: &str,
    cause: &str,
    entra_ids: &[String],
    count: usize,
    limit: usize,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Blocked {
    let sample: Vec<String> = entra_ids.iter().take(SAMPLE).cloned().collect();
    let fields = [
        ("cause", cause),
        ("deactivations", &count.to_string()),
        ("limit", &limit.to_string()),
        ("sample_entra_ids", &sample.join(",")),
    ];
    if dry_run {
        // Nothing is held by a dry run (its summary says what a real run would hold): a
        // warning that says so, not the error an admin must act on.
        log.warn(
            &format!("dry run: a real run would block this mass deactivation: {what}"),
            &fields,
        );
    } else {
        let mut fields = fields.to_vec();
        fields.push((
            "fix",
            "check the directory; if intended, run the action release-held-deactivations with the number held, or raise max_deactivations and redeploy (a full sync judges them again under the new limit)",
        ));
        log.error(&format!("mass deactivation blocked: {what}"), &fields);
    }
    // Every held user named (a few): the set is known whole, and a release applies to it.
    let digest = (sample.len() == count).then(|| set_digest(&sample));
    Blocked {
        count,
        limit,
        since: now,
        sample,
        digest,
    }
}

/// The digest of a whole set of Entra ids (see [`digest_add`]).
pub fn set_digest(entra_ids: &[String]) -> u64 {
    entra_ids.iter().fold(0, |d, id| digest_add(d, id))
}

/// The digest of a set of Entra ids: the sum of their fingerprints (lowercase), so it can be
/// built one id at a time in any order and names the whole set without keeping it.
pub fn digest_add(digest: u64, entra_id: &str) -> u64 {
    digest.wrapping_add(crate::domain::links::fingerprint(
        &entra_id.to_ascii_lowercase(),
    ))
}

/// Held again while `prev` is held. When both sets are named whole (each count no more than
/// its sample), the union is exact: its size, and its digest when both had one (the sample
/// then keeps [`SAMPLE`] of its names). Otherwise the users not named may be the same or not:
/// the count is the most it can be (both counts, less the users both name), never fewer than
/// are held, and the set is not known whole (`digest` none), so a release counts afresh with a
/// full sync. (Taking the larger count instead showed an admin 10 held where 14 were.)
pub fn merge(prev: Option<&Blocked>, mut new: Blocked) -> Blocked {
    let Some(p) = prev else {
        return new;
    };
    let mut union = p.sample.clone();
    let mut both_name = 0;
    for id in &new.sample {
        if union.contains(id) {
            both_name += 1;
        } else {
            union.push(id.clone());
        }
    }
    new.limit = p.limit.max(new.limit);
    new.since = p.since.min(new.since);
    let named_whole = p.count <= p.sample.len() && new.count <= new.sample.len();
    if named_whole {
        new.count = union.len();
        new.digest = (p.digest.is_some() && new.digest.is_some()).then(|| set_digest(&union));
    } else {
        new.count = (p.count + new.count).saturating_sub(both_name);
        new.digest = None;
    }
    union.truncate(SAMPLE);
    new.sample = union;
    new
}

/// Keeps deactivations a notification, a delta round or an admin's `provision-user` held back,
/// with those held already ([`merge`]: a later hold never hides an earlier one). While a full
/// sync is under way they are also kept apart for it (`FullSync::held_meanwhile`): its end
/// replaces what was held before it began with what it holds itself, but it may have met these
/// users before their change, so they stay held past it.
pub fn hold(state: &mut State, blocked: Blocked) {
    if let Some(sync) = state.full_sync.as_mut() {
        sync.held_meanwhile = Some(merge(sync.held_meanwhile.as_ref(), blocked.clone()));
    }
    state.blocked = Some(merge(state.blocked.as_ref(), blocked));
}

/// What is held when a full sync ends: what it holds itself (it judged every user as it found
/// them, so it replaces what was held before it began), and what was held while it ran —
/// unless the run holds those users itself (all of them named): then its own set, known whole,
/// is what an admin releases.
pub fn held_after_full_sync(run: Option<Blocked>, meanwhile: Option<Blocked>) -> Option<Blocked> {
    match (meanwhile, run) {
        (Some(m), Some(r)) => {
            let named_whole = m.count <= m.sample.len();
            if named_whole && m.sample.iter().all(|id| r.sample.contains(id)) {
                Some(r)
            } else {
                Some(merge(Some(&m), r))
            }
        }
        (m, r) => r.or(m),
    }
}

/// What a call's summary line says of what is held (empty when nothing is): the total held
/// now — which may be made of several holds, each with its own error line — and that it is
/// the number `release-held-deactivations` takes.
pub fn held_summary(b: Option<&Blocked>) -> String {
    b.map_or(String::new(), |b| {
        format!(
            "; {} DEACTIVATIONS HELD BACK in all (limit {}): release-held-deactivations takes this number",
            b.count, b.limit
        )
    })
}

/// The error each schedule repeats while deactivations are held back.
pub fn log_still_blocked(log: &Log, b: &Blocked) {
    log_held(
        log,
        "deactivations are still held back by the mass-deactivation guard",
        b,
        "if intended, run the action release-held-deactivations with the number held, or raise max_deactivations and redeploy (a full sync judges them again under the new limit)",
    );
}

/// An error line about what `b` holds: how many, the limit, since when, a sample of the Entra
/// ids, and what the admin can do (`fix`).
pub fn log_held(log: &Log, message: &str, b: &Blocked, fix: &str) {
    log.error(
        message,
        &[
            ("deactivations", &b.count.to_string()),
            ("limit", &b.limit.to_string()),
            ("since", &b.since.to_rfc3339()),
            ("sample_entra_ids", &b.sample.join(",")),
            ("fix", fix),
        ],
    );
}

/// A delta round's check: `leaving` are the Entra ids the round reports disabled or removed,
/// `base` the default limit's base (ZenQMS users linked to Entra ids; unused with an explicit
/// `max_deactivations`), `at_least` a floor for the count of accounts (when they were read in
/// Graph's form only, which misses hand-typed links: one a leaver), `linked` the ZenQMS users
/// linked to the leavers as read now (at least: others are ignored), `window` the notification
/// path's rolling
/// window. Counts those that would really be deactivated (linked and active) and returns the
/// [`Blocked`] record when they exceed what the window still allows under the limit (then none
/// of them may be applied). Pure: the caller reads ZenQMS (and a failed read is never "nobody
/// linked": absence of evidence is not permission).
#[expect(clippy::too_many_arguments)]
pub fn check_round(
    log: &Log,
    config: &Config,
    base: usize,
    at_least: usize,
    linked: &[ZUser],
    leaving: &[String],
    window: &Option<DeactivationWindow>,
    now: DateTime<Utc>,
) -> Option<Blocked> {
    if leaving.is_empty() {
        return None;
    }
    let limit = config.deactivation_limit(base);
    // The round's deactivations are applied by the queue, inside the rolling window: a round
    // the window cannot take whole is held whole (never applied in part).
    let left = window_left(window, limit, now);
    let leaving_set: BTreeSet<&str> = leaving.iter().map(String::as_str).collect();
    let affected: Vec<String> = linked
        .iter()
        .filter(|z| z.is_active)
        .filter_map(|z| {
            let ext = z.external_id.as_deref()?.trim().to_ascii_lowercase();
            leaving_set.contains(ext.as_str()).then_some(ext)
        })
        .collect();
    if !exceeds(affected.len().max(at_least), left, false) {
        return None;
    }
    // Counted by leaver (accounts not all read): the leavers are what is held.
    let held = if at_least > affected.len() {
        leaving.to_vec()
    } else {
        affected
    };
    Some(block(
        log,
        "the delta round's leavers were not applied",
        &format!("delta-{}", now.format("%Y%m%dT%H%M%SZ")),
        &held,
        held.len(),
        limit,
        now,
        config.dry_run,
    ))
}

/// How many of `linked` (ZenQMS users with an `external_id`) are linked to an Entra id: the
/// base of the default limit on every path, as the full sync's walk counts it. Another
/// system's `external_id` (an HR number, say) is not a link and does not raise the limit.
pub fn entra_links(linked: &[ZUser]) -> usize {
    linked
        .iter()
        .filter(|z| crate::domain::plan::link_of(z).is_some())
        .count()
}

/// Whether a planned action sets a user inactive.
pub fn deactivates(action: &Action) -> bool {
    matches!(action, Action::Write { changes, .. } if changes.iter().any(is_deactivation))
}

/// The action without its deactivation (`None` when nothing else is left to write).
pub fn without_deactivation(action: Action) -> Option<Action> {
    match action {
        Action::Write {
            zenqms_id,
            mut kind,
            mut changes,
        } => {
            changes.retain(|c| !is_deactivation(c));
            if changes.is_empty() {
                return None;
            }
            if kind == WriteKind::Deactivate {
                kind = WriteKind::Update;
            }
            Some(Action::Write {
                zenqms_id,
                kind,
                changes,
            })
        }
        other => Some(other),
    }
}

/// Plans with a link that also deactivates split in two, as a full sync writes them: the
/// link (and its other changes) in `plans`, then the deactivation on its own in the second
/// list, to be written after them. One write of both would be audited and counted as a link
/// only: its deactivation would have no `deactivated` record and no reason (a red team: 3
/// users linked and set inactive by notifications, summary "deactivated 0").
pub fn split_link_deactivations(plans: Vec<Planned>) -> (Vec<Planned>, Vec<Planned>) {
    let mut then = Vec::new();
    let plans = plans
        .into_iter()
        .map(|p| match &p.action {
            Action::Write {
                zenqms_id,
                kind: WriteKind::Link,
                changes,
            } if changes.iter().any(is_deactivation) => {
                let deactivation: Vec<Change> = changes
                    .iter()
                    .filter(|c| is_deactivation(c))
                    .cloned()
                    .collect();
                then.push(Planned {
                    action: Action::Write {
                        zenqms_id: zenqms_id.clone(),
                        kind: WriteKind::Deactivate,
                        changes: deactivation,
                    },
                    ..p.clone()
                });
                let action = without_deactivation(p.action.clone())
                    .expect("a link keeps its external_id change");
                Planned { action, ..p }
            }
            _ => p,
        })
        .collect();
    (plans, then)
}

fn is_deactivation(c: &Change) -> bool {
    c.field == "is_active" && c.after == serde_json::Value::Bool(false)
}

/// How many more deactivations the notification path may make now, given its rolling window.
pub fn window_left(window: &Option<DeactivationWindow>, limit: usize, now: DateTime<Utc>) -> usize {
    limit.saturating_sub(counted(window, now))
}

/// The deactivations the rolling window counts at `now`.
pub fn counted(window: &Option<DeactivationWindow>, now: DateTime<Utc>) -> usize {
    in_window(&mut window.clone(), now)
}

/// Fills the rolling window up to `limit`: a change held whole trips the guard, and no
/// deactivation by notifications follows it until the window has passed.
pub fn trip(window: &mut Option<DeactivationWindow>, limit: usize, now: DateTime<Utc>) {
    let left = window_left(window, limit, now);
    record(window, left, now);
}

/// Counts `n` deactivations made by the notification path (or a run the component started:
/// `FullSync::window`) into its rolling window.
pub fn record(window: &mut Option<DeactivationWindow>, n: usize, now: DateTime<Utc>) {
    if n == 0 {
        return;
    }
    if in_window(window, now) == 0 {
        *window = None;
    }
    let w = window.get_or_insert_with(|| DeactivationWindow {
        since: hour_of(now),
        count: 0,
        hourly: Vec::new(),
    });
    if w.hourly.is_empty() {
        w.hourly.push(w.count);
    }
    let hour = usize::try_from((now - w.since).num_hours()).unwrap_or(0);
    if w.hourly.len() <= hour {
        w.hourly.resize(hour + 1, 0);
    }
    w.hourly[hour] += n;
    w.count = w.hourly.iter().sum();
}

/// The deactivations the window still counts at `now`, after dropping its hours that no
/// longer count. The window keeps a count per hour (from `since`, an hour's start): an hour's
/// deactivations count until 24 hours after that hour's end, so every deactivation counts
/// for at least 24 hours and any 24 hours hold at most the limit (a fixed window from its
/// first deactivation let 2 × limit − 1 through across its end: a red team). At most 25
/// counts are kept. A window stored before the hourly counts (`since` and `count`: made at
/// any time in the 24 hours from `since`) counts them as made as late as they may have been.
fn in_window(window: &mut Option<DeactivationWindow>, now: DateTime<Utc>) -> usize {
    let Some(w) = window.as_mut() else {
        return 0;
    };
    if w.hourly.is_empty() {
        let latest = now.min(w.since + TimeDelta::hours(WINDOW_HOURS));
        w.since = hour_of(latest.max(w.since));
        w.hourly.push(w.count);
    }
    let counts_until = |hour: usize| {
        w.since + TimeDelta::hours(i64::try_from(hour).unwrap_or(i64::MAX / 2) + 1 + WINDOW_HOURS)
    };
    let expired = (0..w.hourly.len())
        .take_while(|&h| counts_until(h) <= now)
        .count();
    if expired == w.hourly.len() {
        *window = None;
        return 0;
    }
    w.hourly.drain(..expired);
    w.since += TimeDelta::hours(i64::try_from(expired).unwrap_or(0));
    w.count = w.hourly.iter().sum();
    w.count
}

/// The start of the hour `t` falls in.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3_600), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_exclusive_and_allow_mass_lifts_it() {
        assert!(!exceeds(3, 3, false));
        assert!(exceeds(4, 3, false));
        assert!(!exceeds(4, 3, true));
    }

    #[test]
    fn the_window_counts_for_24_hours() {
        let t0: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        let mut w = None;
        assert_eq!(window_left(&w, 3, t0), 3);
        record(&mut w, 2, t0);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(1)), 1);
        record(&mut w, 1, t0 + TimeDelta::hours(2));
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(3)), 0);
        // The two of 12:00 count until 13:00 the next day; the one of 14:00 until 15:00.
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(24)), 0);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(25)), 2);
        record(&mut w, 1, t0 + TimeDelta::hours(25));
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(26)), 1);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(27)), 2);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(50)), 3);
    }

    /// Whatever the times, no 24 hours hold more deactivations than the limit (a red team:
    /// a fixed window from its first deactivation let 1 through at T0, 2 at T0 + 23 h 55 and
    /// 3 more at T0 + 24 h 05, with a limit of 3). Notifications every 5 minutes over four
    /// days, each asking 0-3 deactivations (a fixed pseudo-random sequence).
    #[test]
    fn no_24_hours_hold_more_than_the_limit() {
        let t0: DateTime<Utc> = "2026-11-28T11:37:00Z".parse().unwrap();
        for (limit, seed) in [(3usize, 7u64), (10, 11), (1, 3)] {
            let mut w = None;
            let mut made: Vec<DateTime<Utc>> = Vec::new();
            let mut x = seed;
            for step in 0..(4 * 24 * 12) {
                let now = t0 + TimeDelta::minutes(5 * step);
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let asked = usize::try_from((x >> 33) % 4).unwrap();
                let n = asked.min(window_left(&w, limit, now));
                record(&mut w, n, now);
                made.extend(std::iter::repeat_n(now, n));
                assert!(w.as_ref().is_none_or(|w| w.hourly.len() <= 25));
            }
            assert!(made.len() > 3 * limit, "the sequence reaches the limit");
            for &start in &made {
                let within = made
                    .iter()
                    .filter(|&&t| t >= start && t < start + TimeDelta::hours(WINDOW_HOURS))
                    .count();
                assert!(
                    within <= limit,
                    "{within} within 24 h of {start} (limit {limit})"
                );
            }
        }
    }

    #[test]
    fn a_link_that_deactivates_splits_into_the_link_then_the_deactivation() {
        let change = |field, before: serde_json::Value, after: serde_json::Value| Change {
            field,
            before,
            after,
        };
        let planned = |kind, changes| Planned {
            entra_id: "e1".into(),
            upn: "u@contoso.com".into(),
            action: Action::Write {
                zenqms_id: "z1".into(),
                kind,
                changes,
            },
            after_batch: false,
        };
        let off = change("is_active", true.into(), false.into());
        let link = planned(
            WriteKind::Link,
            vec![
                change("external_id", serde_json::Value::Null, "e1".into()),
                off.clone(),
            ],
        );
        let leaver = planned(WriteKind::Deactivate, vec![off.clone()]);
        let (now, then) = split_link_deactivations(vec![link, leaver.clone()]);
        assert_eq!(now.len(), 2);
        assert!(matches!(&now[0].action,
            Action::Write { kind: WriteKind::Link, changes, .. }
                if changes.len() == 1 && changes[0].field == "external_id"));
        assert_eq!(
            now[1].action, leaver.action,
            "a leaver's own write stays as it is"
        );
        assert_eq!(then.len(), 1);
        assert_eq!(
            then[0].action,
            Action::Write {
                zenqms_id: "z1".into(),
                kind: WriteKind::Deactivate,
                changes: vec![off],
            }
        );
        assert_eq!(then[0].entra_id, "e1");
    }

    /// A window stored before the hourly counts (`since`, `count`) still counts, as if its
    /// deactivations were made as late as its 24 hours allowed (a red team: counted from
    /// `since`, two made at 12:05 the next day would drop out at 13:00, an hour later).
    #[test]
    fn a_window_stored_before_the_hourly_counts_still_counts() {
        let t0: DateTime<Utc> = "2026-11-28T12:10:00Z".parse().unwrap();
        let w: Option<DeactivationWindow> =
            serde_json::from_str(r#"{"since": "2026-11-28T12:10:00Z", "count": 2}"#).unwrap();
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(1)), 1);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(24)), 1);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(25)), 1);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(48)), 1);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(49)), 3);
        // Recorded into: the old count keeps its place.
        let mut w = w;
        record(&mut w, 1, t0 + TimeDelta::hours(30));
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(48)), 0);
        assert_eq!(window_left(&w, 3, t0 + TimeDelta::hours(49)), 2);
    }

    fn held(ids: &[&str], count: usize, digest: Option<u64>) -> Blocked {
        Blocked {
            count,
            limit: 2,
            since: "2026-11-28T12:00:00Z".parse().unwrap(),
            sample: ids.iter().map(|s| s.to_string()).collect(),
            digest,
        }
    }

    #[test]
    fn what_was_held_while_a_full_sync_ran_outlasts_its_end() {
        let meanwhile = held(&["a", "b"], 2, None);
        // The run held nothing itself: the notifications' hold stays.
        let after = held_after_full_sync(None, Some(meanwhile.clone())).unwrap();
        assert_eq!((after.count, after.sample.len()), (2, 2));
        // The run held others: both are held, the set no longer known whole.
        let after =
            held_after_full_sync(Some(held(&["c"], 1, Some(7))), Some(meanwhile.clone())).unwrap();
        assert_eq!((after.count, after.digest), (3, None));
        // The run holds the same users itself, named: its own set, releasable at once.
        let run = held(&["a", "b", "c"], 3, Some(9));
        assert_eq!(
            held_after_full_sync(Some(run.clone()), Some(meanwhile)),
            Some(run)
        );
        // More held meanwhile than were named: never taken as covered; at most 5 + 2 less
        // the one both name.
        let partly_named = held(&["a"], 5, None);
        let after =
            held_after_full_sync(Some(held(&["a", "c"], 2, Some(9))), Some(partly_named)).unwrap();
        assert_eq!((after.count, after.digest), (6, None));
        // Nothing held meanwhile: the run's judgement replaces what was held before it.
        assert_eq!(held_after_full_sync(None, None), None);
    }

    #[test]
    fn holds_merged_never_show_fewer_than_are_held() {
        let ids = |r: std::ops::Range<u32>| -> Vec<String> { r.map(|i| format!("u{i}")).collect() };
        let named = |r: std::ops::Range<u32>| {
            let s = ids(r);
            Blocked {
                count: s.len(),
                digest: Some(set_digest(&s)),
                sample: s,
                ..held(&[], 0, None)
            }
        };
        // Two bursts held 6 and 8 different users: 14, known whole (a red team saw 10).
        let m = merge(Some(&named(0..6)), named(6..14));
        assert_eq!((m.count, m.digest), (14, Some(set_digest(&ids(0..14)))));
        assert_eq!(m.sample.len(), SAMPLE);
        // The same users held twice: counted once.
        let m = merge(Some(&named(0..6)), named(3..9));
        assert_eq!((m.count, m.digest), (9, Some(set_digest(&ids(0..9)))));
        // A set of 12 named by 10 of them, and 2 others: at most 14, not known whole.
        let run = Blocked {
            count: 12,
            ..named(0..10)
        };
        let m = merge(Some(&run), named(20..22));
        assert_eq!((m.count, m.digest), (14, None));
        // ... and 2 of those it names: 12.
        let m = merge(Some(&run), named(0..2));
        assert_eq!((m.count, m.digest), (12, None));
    }

    #[test]
    fn a_hold_during_a_full_sync_is_kept_for_its_end_and_never_hides_an_earlier_one() {
        let mut state = State::fresh();
        hold(&mut state, held(&["a"], 1, None));
        state.full_sync = Some(crate::state::FullSync::start(
            "run".into(),
            "2026-11-28T12:00:00Z".parse().unwrap(),
            false,
        ));
        hold(&mut state, held(&["b"], 1, None));
        let all = state.blocked.as_ref().unwrap();
        assert_eq!(all.count, 2);
        let meanwhile = state
            .full_sync
            .as_ref()
            .unwrap()
            .held_meanwhile
            .as_ref()
            .unwrap();
        assert_eq!(meanwhile.sample, vec!["b".to_string()]);
    }
}
