//! `on-event(webhook)`: Graph's validation handshake, change notifications and lifecycle
//! notifications. An item counts only if its subscription is ours, its clientState matches
//! (constant time) and its tenant is the configured one. Accepted items go to the instance's
//! inbox (WIT 0.2.0); the reply goes back at once (Graph allows 3 s, and marks an endpoint slow
//! or drops its notifications when replies are late: graph/01-subscriptions-and-notifications.md
//! section 7).

use serde_json::{Value, json};

use super::{Instance, Reply, parse_config};
use crate::call::Slot;
use crate::clients::subscriptions;
use crate::domain::inbox::{CAUSE_IDS, InboxItem, MAX_ID};
use crate::failure::Failure;
use crate::handlers::webhook::{self, Inbound, Notification};
use crate::log::Log;
use crate::platform::{Platform, Request, Response};
use crate::state::{LifecycleItem, State};

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
    // Graph names users and groups by object id, a GUID (graph/01-subscriptions-and-
    // notifications.md: `Users/{id}`); anything else is not a notification we act on (a UPN
    // would read one way alone and another in a burst's `id in` batch).
    if !crate::config::is_guid(&id) {
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

/// Answers the webhook at once: the handshake, or the notifications authenticated against
/// the state given (read only) and returned as one inbox item. No outbound request, no state
/// change: the work happens in the next serialized call, after Graph has its reply.
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
    let state: &State = slot.get(&log)?;
    if state.deleting.is_some() {
        // Nothing may be re-linked while links are cleared: Graph may stop sending.
        log.warn("notifications rejected: the instance is being deleted", &[]);
        let body = json!({"accepted": 0, "rejected": notifications.len()});
        return Ok(
            Reply::done("webhook: instance being deleted, notifications rejected")
                .answering(accepted(202, body)),
        );
    }
    let mut item = InboxItem {
        received_at: p.now().format("%Y%m%dT%H%M%SZ").to_string(),
        ..InboxItem::default()
    };
    // Rejections: counted by reason, a few samples logged, however many items the body held.
    let mut rejected: Vec<(&'static str, &Notification)> = Vec::new();
    let mut lifecycle = 0usize;
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
        if let Some(id) =
            n.id.as_ref()
                .filter(|id| !id.is_empty() && id.len() <= MAX_ID)
        {
            if item.notifications.len() < CAUSE_IDS {
                item.notifications.push(id.clone());
            } else {
                item.more_notifications += 1;
            }
        }
        match (&n.lifecycle_event, resource_target(n)) {
            (Some(ev), _) => {
                lifecycle += 1;
                // Only Graph's three events are carried as themselves; anything else is kept
                // as "unknown" (named here, in the log), so an item always reads back.
                let event = match ev.as_str() {
                    "reauthorizationRequired" | "subscriptionRemoved" | "missed" => ev.clone(),
                    _ => {
                        log.warn(
                            "unknown lifecycle event; the next delta round catches up",
                            &[("event", ev)],
                        );
                        "unknown".to_string()
                    }
                };
                let l = LifecycleItem {
                    subscription_id: n.subscription_id.clone(),
                    event,
                    resource: None,
                };
                if !item.lifecycle.contains(&l) {
                    item.lifecycle.push(l);
                }
            }
            (None, Some((true, id))) => item.users.push(id),
            (None, Some((false, id))) => item.groups.push(id),
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
        // Change notifications are not processed in a dry run (the delta round catches up
        // once dry_run is false). Lifecycle notifications are about the subscriptions, not
        // ZenQMS: they are kept, so a subscription Graph removed is created again then (a
        // red team: it stayed in state as live, and changes came only by the delta round).
        item.users.clear();
        item.groups.clear();
        let mut reply = Reply::done(format!(
            "webhook: dry_run=true, change notifications not processed; {} lifecycle notifications kept for when dry_run is false",
            item.lifecycle.len()
        ))
        .answering(accepted(202, body));
        if !item.lifecycle.is_empty() {
            reply.pending = true;
            reply.inbox.push(item.encode());
        }
        return Ok(reply);
    }
    // Each id once (a burst names a user many times); order kept. All of them: the queue's
    // cap applies when the item is taken in (past it, a full sync takes over).
    let (users, groups) = (unique(&item.users), unique(&item.groups));
    let summary = format!(
        "webhook: {total} notifications accepted for the inbox ({} users, {} groups, {lifecycle} lifecycle, {rejected} rejected)",
        users.len(),
        groups.len(),
    );
    item.users = users;
    item.groups = groups;
    let mut reply = Reply::done(summary).answering(accepted(202, body));
    reply.pending = !item.is_empty();
    if !item.is_empty() {
        reply.inbox.push(item.encode());
    }
    Ok(reply)
}

/// `ids` without repeats, in first-seen order.
fn unique(ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().filter(|id| seen.insert(*id)).cloned().collect()
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
