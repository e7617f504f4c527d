//! `on-event(schedule)`: renew subscriptions, then continue checkpointed work or run the delta
//! backstop (a full sync when the delta token has expired).

use chrono::TimeDelta;
use serde_json::Value;

use super::{Instance, Reply, continue_work, get_token, parse_config, start_full_sync};
use crate::call::Slot;
use crate::clients::graph::Graph;
use crate::clients::subscriptions::{self, Subscriptions};
use crate::config::Config;
use crate::domain::guard;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;
use crate::state::{DeltaLinks, State};

/// The scheduled tick: renew subscriptions, then continue checkpointed work or run the delta
/// backstop (a full sync when the delta token has expired).
pub(super) fn on_schedule(
    p: &dyn Platform,
    inst: &Instance,
    slot: &mut Slot,
) -> Result<Reply, Failure> {
    let log = Log::new(p);
    let state = slot.get(&log)?;
    let config = parse_config(inst)?;
    if state.deleting.is_some() {
        // A delete that failed part-way (Graph refused removing a subscription, say) is
        // finished here, subscriptions first: never links cleared with subscriptions left.
        return super::continue_delete(p, &config, &inst.webhook_url, state);
    }
    if state.tenant_id.is_none() {
        return Ok(Reply::done("schedule: instance not deployed"));
    }
    super::same_tenant(state, &config)?;
    if config.dry_run {
        // Lifecycle events are the subscriptions' upkeep, not ZenQMS: acted on under dry_run
        // too (a re-creation kept with its resource, a removal), as a resume does.
        if !state.queue.lifecycle.is_empty() {
            let graph = get_token(p, &config)?;
            super::lifecycle::apply(p, &graph, &inst.webhook_url, state)?;
        }
        // Not pending whatever the state holds: its work waits for dry_run=false.
        return Ok(Reply::waiting(
            "schedule: dry_run=true, nothing processed (a dry run is a deploy that writes nothing)",
        ));
    }
    if let Some(b) = &state.blocked {
        guard::log_still_blocked(&log, b);
    }
    let graph = get_token(p, &config)?;
    let subs = Subscriptions::new(&graph, p, &inst.webhook_url);
    // Both, whatever the first does: a removal queued behind a refused creation is still
    // dropped from state and caught up (a red team: a quota 403 kept it queued for hours).
    let ensured = subs.ensure(&mut state.subscriptions, subscriptions::RENEW_WITHIN);
    let applied = super::lifecycle::apply(p, &graph, &inst.webhook_url, state);
    let upkeep = ensured.and(applied);
    // The delta round is the backstop for notifications Graph does not deliver: it runs
    // whatever became of the subscriptions (a 403 over the tenant's subscription quota, a
    // Graph outage on `/subscriptions`), so a leaver is not left active meanwhile.
    // (Lifecycle events still queued after a failed upkeep do not put it off.)
    let q = &state.queue;
    let idle = (q.users.is_empty() && q.groups.is_empty()) || q.scope_blocked;
    if idle && !q.overflow && state.full_sync.is_none() {
        state.queue.delta_round = true;
    }
    super::despite_upkeep(&log, upkeep, || {
        continue_work(p, &config, &graph, state, "schedule")
    })
}

/// How a delta round ended.
pub(super) enum Round {
    /// The changed users and groups are queued (and the delta links advanced).
    Queued,
    /// The delta token had expired: a full sync was started in its place.
    Expired,
}

/// One delta backstop round: asks `/users/delta` and `/groups/delta` what changed since the
/// stored links, queues those users and groups, and stores the new links. Deactivations the
/// round would make are checked against the mass-deactivation guard first. Clears
/// `queue.delta_round`.
pub(super) fn delta_round(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    state: &mut State,
) -> Result<Round, Failure> {
    let log = Log::new(p);
    let now = p.now();
    let fresh = state
        .delta
        .as_ref()
        .filter(|d| now - d.issued_at < TimeDelta::days(DELTA_TOKEN_DAYS));
    // Users first, then groups, each as far as the budget allows; an unfinished round keeps
    // its nextLink as the position and stays due (`queue.delta_round`).
    let rounds = match fresh {
        None => None,
        Some(d) => {
            let (users_link, groups_link) = (d.users.clone(), d.groups.clone());
            match graph.delta_rounds(&users_link, &groups_link)? {
                (None, _) => None,
                (Some(users), None) => Some((users, None)),
                (Some(_), Some(None)) => None,
                (Some(users), Some(Some(groups))) => Some((users, Some(groups))),
            }
        }
    };
    state.queue.delta_round = false;
    let Some((users_round, groups_round)) = rounds else {
        // A round abandoned part-read: its leavers are not applied from the queue (the full
        // sync that takes over finds them, under its own guard), and its counts start over.
        let abandoned = std::mem::take(&mut state.queue.round_leaving);
        state.queue.users.retain(|u| !abandoned.contains(u));
        state.queue.round_pages = 0;
        log.warn(
            "delta token expired or missing: running a full sync instead of the delta backstop",
            &[],
        );
        state.delta = None;
        match &mut state.full_sync {
            // A full sync under way (a `missed` event's round ran between its calls) reads
            // every user: it goes on, and another follows it, as after an overflow (replacing
            // it would drop an admin's deploy or release for a run of the component's own).
            Some(sync) if !sync.dry_run() => sync.again = true,
            _ => start_full_sync(p, graph, state, "delta-expired", false)?,
        }
        return Ok(Round::Expired);
    };
    let complete = users_round.complete && groups_round.as_ref().is_some_and(|g| g.complete);
    // A round read over several calls is bounded like any listing.
    let pages = users_round.pages + groups_round.as_ref().map_or(0, |g| g.pages);
    state.queue.round_pages = state.queue.round_pages.saturating_add(pages);
    if state.queue.round_pages > crate::domain::links::MAX_PAGES {
        state.queue.round_pages = 0;
        return Err(Failure::fatal(format!(
            "reading delta changes: more than {} pages; the delta round is not ending",
            crate::domain::links::MAX_PAGES
        )));
    }
    if complete {
        state.queue.round_pages = 0;
    }
    let user_items = users_round.items;
    let group_items = groups_round
        .as_ref()
        .map(|g| g.items.clone())
        .unwrap_or_default();
    let users_link = users_round.link;
    let groups_link = match groups_round {
        Some(g) => g.link,
        None => state
            .delta
            .as_ref()
            .map(|d| d.groups.clone())
            .unwrap_or_default(),
    };
    let users: Vec<String> = user_items.iter().filter_map(item_id).collect();
    // The one mass-deactivation guard: a round that would deactivate more linked users than
    // the limit deactivates none of them (their other changes wait for the admin too).
    let leaving: Vec<String> = user_items
        .iter()
        .filter(|u| {
            u.get("@removed").is_some() || u.get("accountEnabled") == Some(&Value::Bool(false))
        })
        .filter_map(item_id)
        .collect();
    for id in leaving {
        state.queue.push_leaving(id);
    }
    let groups: Vec<String> = group_items
        .iter()
        .filter(|g| g.get("members@delta").is_some() || g.get("@removed").is_some())
        .filter_map(item_id)
        .collect();
    log.info(
        "delta backstop round",
        &[
            ("users_changed", &users.len().to_string()),
            ("groups_changed", &groups.len().to_string()),
        ],
    );
    state.delta = Some(DeltaLinks {
        users: users_link,
        groups: groups_link,
        issued_at: now,
    });
    if !users.is_empty() || !groups.is_empty() {
        // (A quiet round queues nothing and names nothing: its tick leaves the state as it was.)
        state
            .queue
            .add_cause(format!("delta-{}", now.format("%Y%m%dT%H%M%SZ")));
        state.queue.push(&users, &groups);
    }
    // An unfinished round stays due: the next call reads on from where this one stopped.
    state.queue.delta_round = !complete;
    if complete && !state.queue.overflow {
        // (An overflowed round is not judged: its leaving users were not all kept, and the
        // full sync that takes over judges every deactivation together.)
        // The one mass-deactivation guard, over the whole round however many calls read it:
        // a round that would deactivate more linked users than the limit deactivates none
        // of them (their other changes wait for the admin too).
        let leaving = std::mem::take(&mut state.queue.round_leaving);
        // The leavers' accounts (read by link, in proportion to the round), and the default
        // limit's base: every Entra link, read whole only when no explicit limit is set and
        // the read fits the budget (else the limit's floor, said in a warning). Read whole
        // every time, it took a tick past its budget with a large directory (a bug hunt).
        let (accounts, base, at_least) = if leaving.is_empty() {
            (Vec::new(), 0, 0)
        } else {
            let zen = crate::clients::zenqms::Zenqms::new(p, config);
            let base = if config.max_deactivations.is_some() {
                0
            } else {
                crate::sync::realtime::linked_base_within_budget(p, &zen)?.unwrap_or_else(|| {
                    log.warn(
                        "the default deactivation limit's base (the ZenQMS users linked to Entra) could not be read within this call's budget: the floor applies to this delta round",
                        &[("limit", &config.deactivation_limit(0).to_string())],
                    );
                    0
                })
            };
            // Their accounts, every one of them (a leaver may have two: the round is held
            // whole when they exceed the window), in the 8 forms of a hand-typed link when
            // that fits the call (12 to a search), else in Graph's form (100 to a search: 480
            // leavers' 8-form look-ups took a tick 2.7 s past its budget).
            use crate::clients::zenqms::api;
            let c = p.concurrency().max(1);
            let forms_rounds = leaving.len().div_ceil(api::LINKS_PER_SEARCH).div_ceil(c) as u64;
            let precise = crate::platform::budget::fits(p, forms_rounds + 2);
            let accounts = if precise {
                zen.linked_to(&leaving)?
            } else {
                zen.search_many(
                    leaving
                        .chunks(api::MAX_FILTER_IDS)
                        .map(api::with_external_ids)
                        .collect(),
                )?
            };
            // (Graph's form misses hand-typed links: a round over the limit only through them
            // is then applied in part, the queue's own guard holding the rest. Counting every
            // leaver as an account instead held rounds for disabled users with no account.)
            (accounts, base, 0)
        };
        let window = &state.recent_deactivations;
        if let Some(blocked) = guard::check_round(
            &log, config, base, at_least, &accounts, &leaving, window, now,
        ) {
            state.queue.users.retain(|u| !leaving.contains(u));
            guard::hold(state, blocked);
        }
    }
    Ok(Round::Queued)
}

/// Delta tokens for directory objects live 7 days.
const DELTA_TOKEN_DAYS: i64 = 7;

fn item_id(v: &Value) -> Option<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}
