//! How Graph delivers change and lifecycle notifications to a webhook endpoint, so the
//! simulator is as unforgiving as Graph (shared/reference/graph/01-subscriptions-and-notifications.md,
//! section 7):
//!
//! - a 2xx within 3 s of the request is delivered; anything else is retried with exponential
//!   backoff for up to 4 hours, each retry with a 10 s deadline, then dropped;
//! - an endpoint where more than 10 % of the replies of the last 10 minutes took over 3 s is
//!   *slow*: new notifications are delayed 10 minutes; more than 15 % over 10 s makes it *drop*:
//!   new notifications are dropped for 10 minutes, unrecoverably.
//!
//! Graph does not publish the backoff's steps nor the smallest sample it judges an endpoint on
//! (an older text said 100 notifications). Ours: retries after 1, 2, 4, … minutes (doubling, at
//! most an hour apart), and an endpoint is judged once its window holds 10 replies.

use std::collections::VecDeque;

use serde::Serialize;

/// A first delivery's deadline, ms of virtual time from request to reply.
pub const FIRST_DEADLINE_MS: u64 = 3_000;
/// A retried delivery's deadline.
pub const RETRY_DEADLINE_MS: u64 = 10_000;
/// How long Graph keeps retrying a notification.
pub const RETRY_FOR_MS: u64 = 4 * 60 * 60 * 1000;
/// The window the endpoint is judged over, and how long a slow or drop mark lasts.
pub const WINDOW_MS: u64 = 10 * 60 * 1000;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 60 * 1000;
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;
/// Replies the window must hold before the endpoint is judged (our choice; see above).
pub const MIN_SAMPLE: usize = 10;

/// What Graph does with a new notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it now.
    Send,
    /// The endpoint is slow: send it at this time (ms of virtual time).
    Delay(u64),
    /// The endpoint is marked drop: the notification is gone.
    Drop,
}

/// A notification Graph will (re)send later.
#[derive(Debug, Clone)]
pub struct Later {
    /// When to send it, ms of virtual time.
    pub due_ms: u64,
    /// When Graph first tried (or meant) to send it: retries end 4 hours after.
    pub first_ms: u64,
    /// Sends so far (0: a delayed first send).
    pub attempts: u32,
    /// The POST body.
    pub body: Vec<u8>,
}

/// Counts for the report (`graph_delivery`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStats {
    /// Notifications Graph got a timely 2xx for.
    pub delivered: u64,
    /// Sends that were late or failed (each is retried, or dropped after 4 hours).
    pub failed_sends: u64,
    /// Notifications delayed 10 minutes because the endpoint was marked slow.
    pub delayed: u64,
    /// Notifications lost: sent to an endpoint marked drop, or still failing after 4 hours.
    pub dropped: u64,
    /// Waiting to be (re)sent when the scenario ended.
    pub waiting: u64,
}

/// One webhook endpoint as Graph sees it.
#[derive(Debug, Default)]
pub struct Endpoint {
    /// Replies in the window: (when, reply time in ms, or none for a failed send).
    replies: VecDeque<(u64, Option<u64>)>,
    slow_until: u64,
    drop_until: u64,
    /// Notifications to send later, in no order.
    pub later: Vec<Later>,
    pub stats: DeliveryStats,
}

impl Endpoint {
    /// What happens to a new notification at `now`.
    pub fn admit(&mut self, now: u64) -> Admission {
        if now < self.drop_until {
            self.stats.dropped += 1;
            Admission::Drop
        } else if now < self.slow_until {
            self.stats.delayed += 1;
            Admission::Delay(self.slow_until.max(now + WINDOW_MS))
        } else {
            Admission::Send
        }
    }

    /// Records a send made at `now` that got `status` after `reply_ms` (none: no reply), and
    /// judges the endpoint. True when delivered; otherwise the caller schedules a retry with
    /// [`Endpoint::retry`].
    pub fn judge(&mut self, now: u64, attempts: u32, status: Option<u16>, reply_ms: u64) -> bool {
        let deadline = if attempts <= 1 {
            FIRST_DEADLINE_MS
        } else {
            RETRY_DEADLINE_MS
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s)) && reply_ms <= deadline;
        self.replies.push_back((now, status.map(|_| reply_ms)));
        while self
            .replies
            .front()
            .is_some_and(|(at, _)| *at + WINDOW_MS < now)
        {
            self.replies.pop_front();
        }
        let n = self.replies.len();
        if n >= MIN_SAMPLE {
            let over = |limit: u64| {
                self.replies
                    .iter()
                    .filter(|(_, r)| r.is_none_or(|ms| ms > limit))
                    .count()
            };
            // More than 15 % over 10 s, or more than 10 % over 3 s.
            if over(RETRY_DEADLINE_MS) * 100 > n * 15 {
                self.drop_until = now + WINDOW_MS;
            } else if over(FIRST_DEADLINE_MS) * 100 > n * 10 {
                self.slow_until = now + WINDOW_MS;
            }
        }
        if delivered {
            self.stats.delivered += 1;
        } else {
            self.stats.failed_sends += 1;
        }
        delivered
    }

    /// Schedules the next send of a notification that failed at `now`, or drops it when its
    /// 4 hours are over.
    pub fn retry(&mut self, now: u64, first_ms: u64, attempts: u32, body: Vec<u8>) {
        let shift = attempts.saturating_sub(1).min(16);
        let backoff = (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS);
        let due_ms = now + backoff;
        if due_ms > first_ms + RETRY_FOR_MS {
            self.stats.dropped += 1;
            return;
        }
        self.later.push(Later {
            due_ms,
            first_ms,
            attempts,
            body,
        });
    }

    /// The next notification due at or before `until`, taken out of the waiting list.
    pub fn next_due(&mut self, until: u64) -> Option<Later> {
        let (i, _) = self
            .later
            .iter()
            .enumerate()
            .filter(|(_, l)| l.due_ms <= until)
            .min_by_key(|(_, l)| l.due_ms)?;
        Some(self.later.remove(i))
    }

    /// The counts, with what still waits.
    pub fn report(&self) -> DeliveryStats {
        DeliveryStats {
            waiting: self.later.len() as u64,
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timely_replies_keep_an_endpoint_healthy() {
        let mut e = Endpoint::default();
        for i in 0..50 {
            assert_eq!(e.admit(i * 1000), Admission::Send);
            assert!(e.judge(i * 1000, 1, Some(202), 0));
        }
        assert_eq!(e.stats.delivered, 50);
    }

    #[test]
    fn late_replies_are_retried_then_the_endpoint_drops_new_notifications() {
        let mut e = Endpoint::default();
        for i in 0..MIN_SAMPLE as u64 {
            assert_eq!(e.admit(i), Admission::Send);
            assert!(!e.judge(i, 1, Some(202), 11_000), "late is not delivered");
            e.retry(i, i, 1, Vec::new());
        }
        assert_eq!(e.later.len(), MIN_SAMPLE);
        assert_eq!(e.admit(20), Admission::Drop);
        assert_eq!(e.stats.dropped, 1);
        // Ten minutes later it is judged afresh.
        assert_eq!(e.admit(20 + WINDOW_MS), Admission::Send);
    }

    #[test]
    fn replies_over_three_seconds_make_it_slow_and_retries_end_after_four_hours() {
        let mut e = Endpoint::default();
        for i in 0..MIN_SAMPLE as u64 {
            e.judge(i, 1, Some(202), 4_000);
        }
        assert!(matches!(e.admit(100), Admission::Delay(d) if d >= 100 + WINDOW_MS - 100));
        let mut e = Endpoint::default();
        let mut attempts = 1;
        let mut now = 0;
        loop {
            e.retry(now, 0, attempts, Vec::new());
            let Some(l) = e.next_due(u64::MAX) else { break };
            now = l.due_ms;
            attempts += 1;
        }
        assert!(now <= RETRY_FOR_MS);
        assert_eq!(e.stats.dropped, 1);
        assert!(attempts > 4, "{attempts} sends");
    }
}
