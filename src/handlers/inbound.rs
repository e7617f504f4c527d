//! `on-event(webhook)`: Graph's validation handshake, change notifications and lifecycle
//! notifications. An item counts only if its subscription is ours, its clientState matches
//! (constant time) and its tenant is the configured one.

use serde_json::{Value, json};

use super::{CallResult, Instance, Outcome, continue_work, get_token, keep, nothing, parse_config};
use crate::failure::Failure;
use crate::graph::Graph;
use crate::log::Log;
use crate::platform::{Platform, Request, Response};
use crate::state::State;
use crate::subscriptions::{self, Subscriptions};
use crate::webhook::{self, Inbound, Notification};

/// Why a notification item was not accepted.
fn rejection(n: &Notification, state: &State, tenant: &str) -> Option<&'static str> {
    let Some(sub) = state
        .subscriptions
        .iter()
        .find(|s| s.id == n.subscription_id)
    else {
        return Some("unknown subscription");
    };
    if !subscriptions::same_secret(
        n.client_state.as_deref().unwrap_or_default(),
        &sub.client_state,
    ) {
        return Some("clientState does not match");
    }
    if !n
        .tenant_id
        .as_deref()
        .unwrap_or_default()
        .eq_ignore_ascii_case(tenant)
    {
        return Some("wrong tenant");
    }
    None
}

/// `Users/{id}` or `Groups/{id}` (any case, optional leading slash) -> (is_user, id).
fn resource_target(n: &Notification) -> Option<(bool, String)> {
    let resource = n.resource.as_deref()?.trim_start_matches('/');
    let (kind, id) = resource.split_once('/')?;
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.contains('/') {
        return None;
    }
    match kind.to_ascii_lowercase().as_str() {
        "users" => Some((true, id)),
        "groups" => Some((false, id)),
        _ => None,
    }
}

pub(super) fn on_webhook(p: &dyn Platform, inst: &Instance, req: &Request) -> CallResult {
    let log = Log::new(p);
    let accepted =
        |status: u16, body: Value| Response::text(status, "application/json", body.to_string());
    let notifications = match webhook::read(req, &log) {
        Inbound::Reply(r) => {
            let summary = format!("webhook answered {}", r.status);
            return Ok(Outcome {
                response: Some(r),
                ..nothing(summary)
            });
        }
        Inbound::Notifications(n) => n,
    };
    let config = parse_config(inst)?;
    let mut state = State::parse(inst.state.as_deref())?;
    let (mut users, mut groups, mut lifecycle) = (Vec::new(), Vec::new(), Vec::new());
    let mut rejected = 0;
    for n in &notifications {
        let reason = rejection(n, &state, &config.tenant_id).or(
            match (&n.lifecycle_event, resource_target(n)) {
                (Some(_), _) | (None, Some(_)) => None,
                (None, None) => Some("unsupported resource"),
            },
        );
        if let Some(reason) = reason {
            rejected += 1;
            log.warn(
                &format!("notification rejected: {reason}"),
                &[
                    ("subscription_id", &n.subscription_id),
                    ("resource", n.resource.as_deref().unwrap_or_default()),
                    ("tenant_id", n.tenant_id.as_deref().unwrap_or_default()),
                ],
            );
            continue;
        }
        match (&n.lifecycle_event, resource_target(n)) {
            (Some(ev), _) => lifecycle.push((n.subscription_id.clone(), ev.clone())),
            (None, Some((true, id))) => users.push(id),
            (None, Some((false, id))) => groups.push(id),
            (None, None) => {}
        }
    }
    let total = notifications.len();
    let body = json!({"accepted": total - rejected, "rejected": rejected});
    if total == rejected {
        return Ok(Outcome {
            response: Some(accepted(202, body)),
            ..nothing(format!("webhook: {total} notifications, all rejected"))
        });
    }
    if config.dry_run {
        return Ok(Outcome {
            response: Some(accepted(202, body)),
            ..nothing("webhook: dry_run=true, notifications not processed".into())
        });
    }
    let graph = get_token(p, &config)?;
    for (sub_id, event) in &lifecycle {
        lifecycle_event(p, &graph, inst, &mut state, sub_id, event).map_err(|f| keep(&state, f))?;
    }
    let ids: Vec<String> = notifications.iter().filter_map(|n| n.id.clone()).collect();
    state.queue.push(&users, &groups);
    state.queue.cause = if ids.is_empty() {
        format!("notification {}", p.now().format("%Y%m%dT%H%M%SZ"))
    } else {
        format!("notification {}", ids.join(","))
    };
    let mut outcome = continue_work(p, &config, &graph, state, inst.budget_ms, "webhook")?;
    outcome.response = Some(accepted(202, body));
    outcome.summary = format!(
        "webhook: {total} notifications ({} users, {} groups, {} lifecycle, {rejected} rejected); {}",
        users.len(),
        groups.len(),
        lifecycle.len(),
        outcome.summary.trim_start_matches("webhook: ")
    );
    Ok(outcome)
}

/// `reauthorizationRequired`: renew (which reauthorizes); `subscriptionRemoved`: create anew;
/// `missed`: the next schedule's delta backstop catches up.
fn lifecycle_event(
    p: &dyn Platform,
    graph: &Graph<'_>,
    inst: &Instance,
    state: &mut State,
    sub_id: &str,
    event: &str,
) -> Result<(), Failure> {
    let log = Log::new(p);
    let subs = Subscriptions::new(graph, p, &inst.webhook_url);
    let Some(pos) = state.subscriptions.iter().position(|s| s.id == sub_id) else {
        return Ok(());
    };
    log.info(
        "lifecycle notification",
        &[("event", event), ("subscription_id", sub_id)],
    );
    match event {
        "reauthorizationRequired" => {
            let renewed = subs.renew(&state.subscriptions[pos])?;
            state.subscriptions[pos] = renewed;
        }
        "subscriptionRemoved" => {
            let resource = state.subscriptions[pos].resource.clone();
            state.subscriptions[pos] = subs.create(&resource)?;
        }
        _ => log.warn(
            "lifecycle event noted; the delta backstop will catch up",
            &[("event", event)],
        ),
    }
    Ok(())
}
