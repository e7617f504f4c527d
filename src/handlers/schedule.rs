//! `on-event(schedule)`: renew subscriptions, then continue checkpointed work or run the delta
//! backstop (a full sync when the delta token has expired).

use chrono::TimeDelta;
use serde_json::{Value, json};

use super::{
    CallResult, Instance, continue_work, get_token, keep, nothing, parse_config, run_full_sync,
    start_full_sync,
};
use crate::log::Log;
use crate::platform::Platform;
use crate::state::{Blocked, DeltaLinks, State};
use crate::subscriptions::{self, Subscriptions};
use crate::zenqms::Zenqms;

/// The scheduled tick: renew subscriptions, then continue checkpointed work or run the delta
/// backstop (a full sync when the delta token has expired).
pub(super) fn on_schedule(p: &dyn Platform, inst: &Instance) -> CallResult {
    let log = Log::new(p);
    let mut state = State::parse(inst.state.as_deref())?;
    let config = parse_config(inst)?;
    if state.deleting.is_some() {
        return crate::unlink::run(p, &config, state, inst.budget_ms);
    }
    if state.tenant_id.is_none() {
        return Ok(nothing("schedule: instance not deployed".into()));
    }
    if config.dry_run {
        return Ok(nothing(
            "schedule: dry_run=true, nothing processed (a dry run is a deploy that writes nothing)"
                .into(),
        ));
    }
    if let Some(b) = &state.blocked {
        log.error(
            "deactivations are still held back by the mass-deactivation guard",
            &[
                ("deactivations", &b.count.to_string()),
                ("limit", &b.limit.to_string()),
                ("since", &b.since.to_rfc3339()),
                ("sample_entra_ids", &b.sample.join(",")),
                (
                    "fix",
                    "raise max_deactivations or set allow_mass_deactivation=true and redeploy",
                ),
            ],
        );
    }
    let graph = get_token(p, &config)?;
    let subs = Subscriptions::new(&graph, p, &inst.webhook_url);
    if let Err(f) = subs.ensure(&mut state.subscriptions, subscriptions::RENEW_WITHIN) {
        return Err(keep(&state, f));
    }
    if !state.queue.is_empty() || state.full_sync.is_some() {
        return continue_work(p, &config, &graph, state, inst.budget_ms, "schedule");
    }
    let now = p.now();
    let fresh = state
        .delta
        .as_ref()
        .filter(|d| now - d.issued_at < TimeDelta::days(DELTA_TOKEN_DAYS));
    let rounds = match fresh {
        None => None,
        Some(d) => {
            let users = graph.delta_round(&d.users).map_err(|f| keep(&state, f))?;
            let groups = graph.delta_round(&d.groups).map_err(|f| keep(&state, f))?;
            users.zip(groups)
        }
    };
    let Some(((user_items, users_link), (group_items, groups_link))) = rounds else {
        log.warn(
            "delta token expired or missing: running a full sync instead of the delta backstop",
            &[],
        );
        state.delta = None;
        start_full_sync(p, &graph, &mut state, "delta-expired", false)
            .map_err(|f| keep(&state, f))?;
        return run_full_sync(p, &config, &graph, state, inst.budget_ms, None);
    };
    let mut users: Vec<String> = user_items.iter().filter_map(item_id).collect();
    // The guard also covers the backstop: a round that would deactivate more users than the
    // limit deactivates none of them (their other changes wait for the admin too).
    let leaving: Vec<String> = user_items
        .iter()
        .filter(|u| {
            u.get("@removed").is_some() || u.get("accountEnabled") == Some(&Value::Bool(false))
        })
        .filter_map(item_id)
        .collect();
    if leaving.len() > 10 {
        let zen = Zenqms::new(p, &config);
        let linked = zen
            .count(json!({ "has_external_id": true }))
            .map_err(|f| keep(&state, f))?;
        let limit = config.deactivation_limit(linked as usize);
        if leaving.len() > limit {
            let sample: Vec<String> = leaving.iter().take(10).cloned().collect();
            log.error(
                "mass deactivation blocked: the delta round's leavers were not applied",
                &[
                    ("deactivations", &leaving.len().to_string()),
                    ("limit", &limit.to_string()),
                    ("sample_entra_ids", &sample.join(",")),
                    ("fix", "check the directory; if intended, raise max_deactivations or set allow_mass_deactivation=true and redeploy"),
                ],
            );
            users.retain(|u| !leaving.contains(u));
            state.blocked = Some(Blocked {
                count: leaving.len(),
                limit,
                since: now,
                sample,
            });
        }
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
    state.queue.push(&users, &groups);
    state.queue.cause = format!("delta-{}", now.format("%Y%m%dT%H%M%SZ"));
    continue_work(p, &config, &graph, state, inst.budget_ms, "schedule")
}

/// Delta tokens for directory objects live 7 days.
const DELTA_TOKEN_DAYS: i64 = 7;

fn item_id(v: &Value) -> Option<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}
