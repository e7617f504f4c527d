//! `on-event(webhook)`: Graph's validation handshake, change notifications and lifecycle
//! notifications. An item counts only if its subscription is ours, its clientState matches
//! (constant time) and its tenant is the configured one.

use serde_json::{Value, json};

use super::{Instance, Reply, continue_work, get_token, parse_config};
use crate::call::Slot;
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

/// Rejected items named one by one in the log; the rest are counted in one line.
const REJECTED_SAMPLES: usize = 3;
/// Accepted notification ids named in the audit cause of the writes they lead to.
const CAUSE_IDS: usize = 10;

pub(super) fn on_webhook(
    p: &dyn Platform,
    inst: &Instance,
    req: &Request,
    slot: &mut Slot,
) -> Result<Reply, Failure> {
    let log = Log::new(p);
    let accepted =
        |status: u16, body: Value| Response::text(status, "application/json", body.to_string());
    let notifications = match webhook::read(req, &log) {
        Inbound::Reply(r) => {
            let summary = format!("webhook answered {}", r.status);
            return Ok(Reply::done(summary).answering(r));
        }
        Inbound::Notifications(n) => n,
    };
    let config = parse_config(inst)?;
    let state = slot.get(&log)?;
    let (mut users, mut groups, mut lifecycle) = (Vec::new(), Vec::new(), Vec::new());
    let mut accepted_ids = Vec::new();
    // Rejections: counted by reason, a few samples logged, however many items the body held.
    let mut rejected: Vec<(&'static str, &Notification)> = Vec::new();
    for n in &notifications {
        let reason = rejection(n, state, &config.tenant_id).or(
            match (&n.lifecycle_event, resource_target(n)) {
                (Some(_), _) | (None, Some(_)) => None,
                (None, None) => Some("unsupported resource"),
            },
        );
        if let Some(reason) = reason {
            rejected.push((reason, n));
            continue;
        }
        if let Some(id) = &n.id {
            accepted_ids.push(id.clone());
        }
        match (&n.lifecycle_event, resource_target(n)) {
            (Some(ev), _) => lifecycle.push((n.subscription_id.clone(), ev.clone())),
            (None, Some((true, id))) => users.push(id),
            (None, Some((false, id))) => groups.push(id),
            (None, None) => {}
        }
    }
    log_rejections(&log, &rejected, notifications.len());
    let total = notifications.len();
    let rejected = rejected.len();
    let body = json!({"accepted": total - rejected, "rejected": rejected});
    if total == rejected {
        return Ok(
            Reply::done(format!("webhook: {total} notifications, all rejected"))
                .answering(accepted(202, body)),
        );
    }
    if config.dry_run {
        return Ok(
            Reply::done("webhook: dry_run=true, notifications not processed")
                .answering(accepted(202, body)),
        );
    }
    let graph = get_token(p, &config)?;
    for (sub_id, event) in &lifecycle {
        lifecycle_event(p, &graph, inst, state, sub_id, event)?;
    }
    state.queue.push(&users, &groups);
    if !users.is_empty() || !groups.is_empty() {
        state.queue.cause = notification_cause(&accepted_ids, p);
    }
    let reply = continue_work(p, &config, &graph, state, "webhook")?;
    Ok(Reply {
        response: Some(accepted(202, body)),
        pending: reply.pending,
        summary: format!(
            "webhook: {total} notifications ({} users, {} groups, {} lifecycle, {rejected} rejected); {}",
            users.len(),
            groups.len(),
            lifecycle.len(),
            reply.summary.trim_start_matches("webhook: ")
        ),
    })
}

/// The audit cause of the writes accepted notifications lead to: their ids (a bounded few,
/// then how many more), or the time when they carry none.
fn notification_cause(ids: &[String], p: &dyn Platform) -> String {
    if ids.is_empty() {
        return format!("notification {}", p.now().format("%Y%m%dT%H%M%SZ"));
    }
    let shown: Vec<&str> = ids.iter().take(CAUSE_IDS).map(String::as_str).collect();
    let more = ids.len().saturating_sub(CAUSE_IDS);
    if more == 0 {
        format!("notification {}", shown.join(","))
    } else {
        format!("notification {} (+{more} more)", shown.join(","))
    }
}

/// One warning for all the rejected items of a request: counts per reason and a few samples.
fn log_rejections(log: &Log, rejected: &[(&'static str, &Notification)], total: usize) {
    if rejected.is_empty() {
        return;
    }
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for (reason, _) in rejected {
        match reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason, 1)),
        }
    }
    let by_reason: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    let samples: Vec<String> = rejected
        .iter()
        .take(REJECTED_SAMPLES)
        .map(|(reason, n)| {
            format!(
                "{{reason: {reason}, subscription_id: {:?}, resource: {:?}, tenant_id: {:?}}}",
                n.subscription_id,
                n.resource.as_deref().unwrap_or_default(),
                n.tenant_id.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let message = if rejected.len() == 1 {
        format!("notification rejected: {}", rejected[0].0)
    } else {
        format!("notifications rejected: {} of {total}", rejected.len())
    };
    log.warn(
        &message,
        &[
            ("rejected", &rejected.len().to_string()),
            ("of", &total.to_string()),
            ("reasons", &by_reason.join("; ")),
            ("samples", &samples.join(" ")),
        ],
    );
}

/// `reauthorizationRequired`: renew (which reauthorizes); `subscriptionRemoved`: create anew;
/// `missed` (Graph dropped notifications): a delta round is queued now, not at the next tick.
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
        "missed" => {
            log.warn(
                "Graph reports missed notifications: a delta round runs now to catch up",
                &[("subscription_id", sub_id)],
            );
            state.queue.delta_round = true;
        }
        _ => log.warn(
            "unknown lifecycle event noted; the next delta round catches up",
            &[("event", event)],
        ),
    }
    Ok(())
}
