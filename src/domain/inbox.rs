//! The instance's inbox: what a webhook call accepted, kept by the platform until a later call
//! takes it in (WIT 0.2.0, `outcome.inbox` and `instance.inbox`).
//!
//! A webhook call authenticates a notification collection and returns one [`InboxItem`] for
//! it, as compact JSON; the platform appends it atomically and answers Graph at once. The next
//! serialized call merges every item into its queue ([`InboxItem::merge_into`]), where a user
//! or group queued twice is read once. The text is opaque to the platform but not trusted by
//! the component: an item that does not parse, or is larger than any webhook could have
//! produced, is dropped with a warning (and still reported taken, so it is not offered again).

use serde::{Deserialize, Serialize};

use crate::state::{CAUSE_MAX, LifecycleItem, Queue};

/// Largest item read: an item holds less than the webhook body it came from, and bodies are
/// capped at 1 MiB (`webhook::MAX_BODY`).
pub const MAX_ITEM: usize = 1024 * 1024;

/// Notification ids kept per item for the audit cause of the writes they lead to.
pub const CAUSE_IDS: usize = 10;

/// Longest id (user, group, subscription, notification) an item may carry: Graph's ids are
/// GUIDs (36 characters); the margin is for other id shapes, not for arbitrary text.
pub const MAX_ID: usize = 128;

/// The accepted content of one webhook request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxItem {
    /// Entra user ids changed (lower case, as given in `Users/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Entra group ids whose membership changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Lifecycle notifications: which subscription, which event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<LifecycleItem>,
    /// The first few accepted notification ids (the audit cause), and how many more there were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_notifications: usize,
    /// When the webhook accepted it (UTC, `YYYYMMDDTHHMMSSZ`), for the cause when no
    /// notification id came.
    pub received_at: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl InboxItem {
    /// Whether there is anything to act on.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.lifecycle.is_empty()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an item a webhook call returned.
    ///
    /// Errors: not JSON of this shape, larger than a webhook body, or an id longer than
    /// [`MAX_ID`] — the text says which.
    pub fn decode(text: &str) -> Result<InboxItem, String> {
        // An item is smaller than the body it came from (ids only, no JSON around them).
        if text.len() > MAX_ITEM {
            return Err(format!("{} bytes, more than any webhook body", text.len()));
        }
        let item: InboxItem =
            serde_json::from_str(text).map_err(|e| format!("not an inbox item: {e}"))?;
        let ids = item
            .users
            .iter()
            .chain(&item.groups)
            .chain(&item.notifications)
            .chain(item.lifecycle.iter().map(|l| &l.subscription_id))
            .chain(item.lifecycle.iter().map(|l| &l.event));
        for id in ids {
            if id.is_empty() || id.len() > MAX_ID {
                return Err(format!("an id of {} characters", id.len()));
            }
        }
        Ok(item)
    }

    /// Queues the item's work: users and groups by id (once each), lifecycle events in order.
    /// (The audit cause of several items is built by [`cause_of`].)
    pub fn merge_into(self, queue: &mut Queue) {
        queue.push(&self.users, &self.groups);
        for l in self.lifecycle {
            if !queue.lifecycle.contains(&l) {
                queue.lifecycle.push(l);
            }
        }
    }
}

/// The audit cause of the writes that items with work lead to: every notification id they
/// carry (the first [`CAUSE_IDS`], then how many more), or the times received when Graph sent
/// no ids. None when no item has work.
pub fn cause_of(items: &[&InboxItem]) -> Option<String> {
    let working: Vec<&&InboxItem> = items
        .iter()
        .filter(|i| !i.users.is_empty() || !i.groups.is_empty())
        .collect();
    let first = working.first()?;
    let ids: Vec<&str> = working
        .iter()
        .flat_map(|i| i.notifications.iter().map(String::as_str))
        .collect();
    let more: usize = working.iter().map(|i| i.more_notifications).sum::<usize>()
        + ids.len().saturating_sub(CAUSE_IDS);
    if ids.is_empty() {
        return Some(match working.len() {
            1 => format!("notification {}", first.received_at),
            n => format!(
                "notification {} (+{} more requests)",
                first.received_at,
                n - 1
            ),
        });
    }
    // As many ids as fit in CAUSE_MAX with room for the count of the rest.
    let mut shown = ids.len().min(CAUSE_IDS);
    while shown > 1 && ids[..shown].iter().map(|i| i.len() + 1).sum::<usize>() > CAUSE_MAX - 31 {
        shown -= 1;
    }
    let more = more + ids.len().min(CAUSE_IDS) - shown;
    let names = ids[..shown].join(",");
    Some(match more {
        0 => format!("notification {names}"),
        more => format!("notification {names} (+{more} more)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> InboxItem {
        InboxItem {
            users: vec!["u1".into(), "u2".into()],
            groups: vec!["g1".into()],
            lifecycle: vec![LifecycleItem {
                subscription_id: "s1".into(),
                event: "missed".into(),
                resource: None,
            }],
            notifications: vec!["n1".into()],
            more_notifications: 2,
            received_at: "20261128T120000Z".into(),
        }
    }

    #[test]
    fn an_item_round_trips_and_merges_once_per_id() {
        let text = item().encode();
        assert_eq!(InboxItem::decode(&text).unwrap(), item());
        let mut q = Queue::default();
        item().merge_into(&mut q);
        item().merge_into(&mut q);
        assert_eq!(q.users, vec!["u1", "u2"]);
        assert_eq!(q.groups, vec!["g1"]);
        assert_eq!(q.lifecycle.len(), 1);
        let (a, b) = (
            item(),
            InboxItem {
                notifications: vec!["n9".into()],
                more_notifications: 0,
                ..item()
            },
        );
        assert_eq!(cause_of(&[&a]).unwrap(), "notification n1 (+2 more)");
        assert_eq!(cause_of(&[&a, &b]).unwrap(), "notification n1,n9 (+2 more)");
        let quiet = InboxItem {
            users: Vec::new(),
            groups: Vec::new(),
            ..item()
        };
        assert_eq!(cause_of(&[&quiet]), None);
    }

    #[test]
    fn items_that_no_webhook_could_have_returned_are_refused() {
        for bad in [
            "",
            "[]",
            "{\"users\": [1], \"received_at\": \"x\"}",
            "{\"extra\": 1, \"received_at\": \"x\"}",
        ] {
            assert!(InboxItem::decode(bad).is_err(), "{bad}");
        }
        let long = InboxItem {
            users: vec!["x".repeat(MAX_ID + 1)],
            ..item()
        };
        assert!(InboxItem::decode(&long.encode()).is_err());
        let huge = "x".repeat(MAX_ITEM + 1);
        assert!(InboxItem::decode(&huge).is_err());
    }
}
