//! Lifecycle notifications, acted on by the serialized call after the webhook that accepted
//! them (shared/reference/graph/02-lifecycle.md): `reauthorizationRequired` renews (which
//! reauthorizes), `subscriptionRemoved` creates the subscription anew, `missed` (Graph dropped
//! notifications) queues a delta round now instead of at the next tick.

use crate::clients::graph::Graph;
use crate::clients::subscriptions::Subscriptions;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::{Platform, budget};
use crate::state::{LifecycleItem, State};

/// Acts on every queued lifecycle event, in arrival order. An event stays queued until it is
/// done, so a failure (Graph down) repeats only what did not happen; the events after a failed
/// one are still acted on (a `missed` batched behind a `subscriptionRemoved` whose re-creation
/// failed still queues its delta round).
///
/// A `subscriptionRemoved` drops the subscription from state and queues a delta round, then
/// creates it anew: Graph delivers nothing between the removal and the re-creation, so the app
/// must resync ("create a new subscription, then resync (delta query)": shared/reference/graph/
/// 02-lifecycle.md); a failed re-creation stays queued with its resource, and a later call
/// (after the wait below), or the tick's upkeep, makes it. A `missed` queues
/// one whatever became of its subscription since (replaced by a re-creation in the same batch,
/// say): the notifications were missed all the same.
///
/// After a refusal, the events that need a request wait [`crate::state::LIFECYCLE_RETRY_MINUTES`]
/// (`Queue::lifecycle_retry_at`).
///
/// Errors: the first renewal or re-creation that failed (a renewal's event stays queued).
pub(super) fn apply(
    p: &dyn Platform,
    graph: &Graph<'_>,
    webhook_url: &str,
    state: &mut State,
) -> Result<(), Failure> {
    let log = Log::new(p);
    let now = p.now();
    // Graph refused an event a few minutes ago: the call it refused said so, and a later one
    // tries again; meanwhile renewals wait, and a removal is acted on without its re-creation.
    let backing_off = state.queue.lifecycle_retry_at.is_some_and(|at| now < at);
    if !backing_off {
        state.queue.lifecycle_retry_at = None;
    }
    let subs = Subscriptions::new(graph, p, webhook_url);
    let mut first_failure = None;
    let mut kept = Vec::new();
    for item in std::mem::take(&mut state.queue.lifecycle) {
        let (sub_id, event) = (item.subscription_id.as_str(), item.event.as_str());
        // (Only a renewal waits here: a removal is dropped from state and caught up at once,
        // its re-creation kept for a later call; a `missed` needs no request.)
        if backing_off && event == "reauthorizationRequired" {
            kept.push(item);
            continue;
        }
        let pos = state.subscriptions.iter().position(|s| s.id == sub_id);
        if pos.is_some() || event == "missed" {
            log.info(
                "lifecycle notification",
                &[("event", event), ("subscription_id", sub_id)],
            );
        }
        let done = match (event, pos) {
            ("reauthorizationRequired", Some(pos)) => {
                subs.renew(&state.subscriptions[pos]).map(|renewed| {
                    // A renewal answered 404 creates the subscription anew: Graph had removed
                    // it, and delivered nothing since, so a delta round catches up.
                    if renewed.id != state.subscriptions[pos].id {
                        state.queue.delta_round = true;
                    }
                    state.subscriptions[pos] = renewed;
                })
            }
            ("subscriptionRemoved", Some(pos)) => {
                // Gone from Graph: gone from state too, whatever the re-creation does (a
                // failed one leaves the resource without a subscription, which the next
                // tick's upkeep creates), and a delta round catches up meanwhile.
                let resource = state.subscriptions.remove(pos).resource;
                state.queue.delta_round = true;
                log.warn(
                    if backing_off {
                        "Graph removed a subscription: the next tick creates it anew; a delta round runs now to catch up"
                    } else {
                        "Graph removed a subscription: creating it anew; a delta round runs now to catch up"
                    },
                    &[("resource", &resource)],
                );
                // While Graph refused a request a few minutes ago, or when the call has no
                // rounds left for it, a later call creates it.
                let created = if backing_off || !budget::fits(p, 2) {
                    Ok(None)
                } else {
                    subs.create(&resource).map(Some)
                };
                match created {
                    Ok(Some(fresh)) => {
                        state.subscriptions.insert(pos, fresh);
                        Ok(())
                    }
                    // Kept with its resource: a later call creates it (see below).
                    other => {
                        if let Err(f) = other {
                            first_failure.get_or_insert(f);
                        }
                        kept.push(LifecycleItem {
                            resource: Some(resource),
                            ..item.clone()
                        });
                        Ok(())
                    }
                }
            }
            // A removal whose re-creation failed (or waited): made now, unless a subscription
            // on the resource is there already (the tick's upkeep made it).
            ("subscriptionRemoved", None) if item.resource.is_some() => {
                let resource = item.resource.clone().unwrap_or_default();
                if state.subscriptions.iter().any(|s| s.resource == resource) {
                    Ok(())
                } else if backing_off || !budget::fits(p, 2) {
                    kept.push(item.clone());
                    Ok(())
                } else {
                    subs.create(&resource)
                        .map(|fresh| state.subscriptions.push(fresh))
                }
            }
            ("missed", _) => {
                log.warn(
                    "Graph reports missed notifications: a delta round runs now to catch up",
                    &[("subscription_id", sub_id)],
                );
                state.queue.delta_round = true;
                Ok(())
            }
            (_, Some(_)) => {
                log.warn(
                    "unknown lifecycle event noted; the next delta round catches up",
                    &[("event", event)],
                );
                Ok(())
            }
            // A removal of a subscription replaced since (a renewal found it gone and created
            // it anew): whatever Graph did not deliver meanwhile is caught up all the same (a
            // red team: the delta round was lost).
            ("subscriptionRemoved", None) => {
                state.queue.delta_round = true;
                Ok(())
            }
            // Any other event about a subscription replaced since needs nothing.
            (_, None) => Ok(()),
        };
        if let Err(f) = done {
            kept.push(item);
            first_failure.get_or_insert(f);
        }
    }
    // Events queued while this ran (none: a call is serialized) would follow the kept ones.
    kept.append(&mut state.queue.lifecycle);
    state.queue.lifecycle = kept;
    if first_failure.is_some() && !backing_off {
        state.queue.lifecycle_retry_at =
            Some(now + chrono::TimeDelta::minutes(crate::state::LIFECYCLE_RETRY_MINUTES));
    }
    first_failure.map_or(Ok(()), Err)
}
