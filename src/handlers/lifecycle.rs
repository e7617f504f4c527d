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
/// done, so a failure (Graph down) repeats only what did not happen.
///
/// Errors: a renewal or re-creation that failed (the event stays queued).
pub(super) fn apply(
    p: &dyn Platform,
    graph: &Graph<'_>,
    webhook_url: &str,
    state: &mut State,
) -> Result<(), Failure> {
    let log = Log::new(p);
    let subs = Subscriptions::new(graph, p, webhook_url);
    while let Some(item) = state.queue.lifecycle.first().cloned() {
        let (sub_id, event) = (item.subscription_id.as_str(), item.event.as_str());
        if let Some(pos) = state.subscriptions.iter().position(|s| s.id == sub_id) {
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
        }
        // (A subscription replaced since the webhook accepted the event needs nothing.)
        state.queue.lifecycle.remove(0);
    }
    Ok(())
}
