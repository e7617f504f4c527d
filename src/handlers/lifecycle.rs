//! Lifecycle notifications, acted on by the serialized call after the webhook that accepted
//! them (shared/reference/graph/02-lifecycle.md): `reauthorizationRequired` renews (which
//! reauthorizes), `subscriptionRemoved` creates the subscription anew, `missed` (Graph dropped
//! notifications) queues a delta round now instead of at the next tick.

use crate::clients::graph::Graph;
use crate::clients::subscriptions::Subscriptions;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;
use crate::state::State;

/// Acts on every queued lifecycle event, in arrival order. An event stays queued until it is
/// done, so a failure (Graph down) repeats only what did not happen; the events after a failed
/// one are still acted on (a `missed` batched behind a `subscriptionRemoved` whose re-creation
/// failed still queues its delta round).
///
/// A `subscriptionRemoved` queues a delta round once the subscription is created anew: Graph
/// delivers nothing between the removal and the re-creation, so the app must resync ("create a
/// new subscription, then resync (delta query)": shared/reference/graph/02-lifecycle.md). A
/// `missed` queues one whatever became of its subscription since (replaced by a re-creation
/// in the same batch, say): the notifications were missed all the same.
///
/// Errors: the first renewal or re-creation that failed (its event stays queued).
pub(super) fn apply(
    p: &dyn Platform,
    graph: &Graph<'_>,
    webhook_url: &str,
    state: &mut State,
) -> Result<(), Failure> {
    let log = Log::new(p);
    let subs = Subscriptions::new(graph, p, webhook_url);
    let mut first_failure = None;
    let mut kept = Vec::new();
    for item in std::mem::take(&mut state.queue.lifecycle) {
        let (sub_id, event) = (item.subscription_id.as_str(), item.event.as_str());
        let pos = state.subscriptions.iter().position(|s| s.id == sub_id);
        if pos.is_some() || event == "missed" {
            log.info(
                "lifecycle notification",
                &[("event", event), ("subscription_id", sub_id)],
            );
        }
        let done = match (event, pos) {
            ("reauthorizationRequired", Some(pos)) => subs
                .renew(&state.subscriptions[pos])
                .map(|renewed| state.subscriptions[pos] = renewed),
            ("subscriptionRemoved", Some(pos)) => {
                // Gone from Graph: gone from state too, whatever the re-creation does (a
                // failed one leaves the resource without a subscription, which the next
                // tick's upkeep creates), and a delta round catches up meanwhile.
                let resource = state.subscriptions.remove(pos).resource;
                state.queue.delta_round = true;
                log.warn(
                    "Graph removed a subscription: creating it anew; a delta round runs now to catch up",
                    &[("resource", &resource)],
                );
                match subs.create(&resource) {
                    Ok(fresh) => {
                        state.subscriptions.insert(pos, fresh);
                        Ok(())
                    }
                    Err(f) => {
                        first_failure.get_or_insert(f);
                        Ok(()) // not kept: the next tick creates what is missing
                    }
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
            // A subscription replaced since the webhook accepted the event needs nothing.
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
    first_failure.map_or(Ok(()), Err)
}
