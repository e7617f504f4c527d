//! Graph change-notification subscriptions on `users` and `groups`: create, renew, replace,
//! delete. Never a duplicate (Graph answers 409) and never an orphan: a subscription of ours that
//! state lost track of is found by listing and replaced.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::clients::graph::{GRAPH_BASE, Graph, error_text};
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::budget;
use crate::platform::url::encode;
use crate::platform::{HttpResult, Method, Platform, Request};
use crate::state::Subscription;

/// The resources we subscribe to.
pub const RESOURCES: [&str; 2] = ["users", "groups"];
pub const CHANGE_TYPE: &str = "updated,deleted";
/// Graph's ceiling for users/groups is 41,760 minutes; stay an hour under it.
const LIFETIME_MINUTES: i64 = 41_760 - 60;
/// Renew when a subscription expires within this.
pub const RENEW_WITHIN: TimeDelta = TimeDelta::days(3);

/// A fresh clientState: 64 hex characters from the platform's secure random source.
pub fn new_client_state(p: &dyn Platform) -> String {
    p.random_bytes(32)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time string comparison (the time taken does not reveal how much matched; a
/// length difference answers at once, and a clientState's length is no secret: 64).
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + TimeDelta::minutes(LIFETIME_MINUTES)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Most creates sent for one subscription: the first and those that mend it ([`Subscriptions::mend`]).
const CREATE_TRIES: u32 = 3;

/// Whether an answer with this status may stand for work Graph did (a 5xx but 503, which is
/// Graph refusing for now: "Service Unavailable", shared/reference/graph/08-errors.md).
fn answer_lost(status: u16) -> bool {
    status >= 500 && status != 503
}

/// Rounds a call must have left to mend a create: a listing, a deletion and a create, and
/// three for what follows (the other resource's create, the smallest step of the call's own
/// work: a tick's delta round, say).
const MEND_ROUNDS: u64 = 6;

/// A create Graph did not answer with a subscription, in a way the caller can mend.
enum NotMade {
    /// 409: Graph has one of ours on the resource already.
    Conflict,
    /// No answer, or a 5xx other than 503: Graph may have made it.
    Lost(Failure),
}

pub struct Subscriptions<'a> {
    graph: &'a Graph<'a>,
    platform: &'a dyn Platform,
    webhook_url: &'a str,
}

impl<'a> Subscriptions<'a> {
    pub fn new(graph: &'a Graph<'a>, platform: &'a dyn Platform, webhook_url: &'a str) -> Self {
        Subscriptions {
            graph,
            platform,
            webhook_url,
        }
    }

    fn log(&self) -> Log<'a> {
        Log::new(self.platform)
    }

    /// Creates a subscription. On 409 replaces the existing one we lost track of; when the
    /// answer was lost (no answer, or a 5xx other than 503: Graph may have made it), deletes
    /// any subscription of ours on `resource` that Graph made meanwhile and creates it once
    /// more, so that no orphan outlives the call (a red team: a re-creation after
    /// `subscriptionRemoved` that timed out left one, whose notifications were rejected
    /// until the next tick).
    ///
    /// Errors: Graph refused, or [`CREATE_TRIES`] tries (or the budget) ran out first (an
    /// orphan may then remain: the next create meets it as a 409 and replaces it).
    pub fn create(&self, resource: &str) -> Result<Subscription, Failure> {
        let first = self.try_create(resource)?;
        self.mend(resource, first)
    }

    /// Mends a create that did not simply make the subscription: deletes ours on `resource`
    /// that Graph holds (the one it made without answering, or the conflict) and creates it
    /// again, up to [`CREATE_TRIES`] creates in all while the budget has [`MEND_ROUNDS`] for a
    /// try. A listing that fails counts as a try.
    fn mend(
        &self,
        resource: &str,
        mut made: Result<Subscription, NotMade>,
    ) -> Result<Subscription, Failure> {
        let mut tries = 1;
        loop {
            let not_made = match made {
                Ok(sub) => return Ok(sub),
                Err(not_made) => not_made,
            };
            if tries >= CREATE_TRIES || !budget::fits(self.platform, MEND_ROUNDS) {
                return Err(match not_made {
                    NotMade::Conflict => {
                        Failure::status("Microsoft Graph", 409, "subscription still conflicts")
                    }
                    NotMade::Lost(f) => f,
                });
            }
            if let NotMade::Lost(f) = &not_made {
                self.log().warn(
                    "creating a Graph subscription got no answer: any Graph made is replaced",
                    &[("resource", resource), ("error", &f.message)],
                );
            }
            tries += 1;
            made = match self.delete_stray(resource) {
                Ok(()) => self.try_create(resource)?,
                Err(f) => Err(NotMade::Lost(f)),
            };
        }
    }

    /// `Ok(Err(_))` for a create the caller may mend: a conflict (409), or an answer lost.
    fn try_create(&self, resource: &str) -> Result<Result<Subscription, NotMade>, Failure> {
        let (req, client_state, expires) = self.create_request(resource)?;
        let resp = self.graph.send(req);
        self.created(resource, resp, client_state, expires)
    }

    /// Creates subscriptions on `resources` side by side (one round; Graph validates each
    /// notification URL on its own), each one as [`Subscriptions::create`] would: a 409 is
    /// handled for that resource alone. Every subscription made is in the answer, in order,
    /// with the first failure, if any (so that none made is lost from state).
    fn create_all(&self, resources: &[&str]) -> (Vec<Subscription>, Option<Failure>) {
        let mut made = Vec::new();
        let mut reqs = Vec::new();
        let mut sent = Vec::new();
        for resource in resources {
            match self.create_request(resource) {
                Ok((req, state, expires)) => {
                    reqs.push(req);
                    sent.push((*resource, state, expires));
                }
                Err(f) => return (made, Some(f)),
            }
        }
        let mut failure = None;
        for ((resource, state, expires), resp) in sent.into_iter().zip(self.graph.send_all(reqs)) {
            let sub = match self.created(resource, resp, state, expires) {
                Ok(Ok(sub)) => Ok(sub),
                // A conflict, or an answer lost: mended as one create is.
                Ok(Err(not_made)) => self.mend(resource, Err(not_made)),
                Err(f) => Err(f),
            };
            match sub {
                Ok(sub) => made.push(sub),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        (made, failure)
    }

    /// The request creating a subscription on `resource`, with its new clientState and the
    /// expiry it asks for.
    fn create_request(&self, resource: &str) -> Result<(Request, String, DateTime<Utc>), Failure> {
        let now = self.platform.now();
        let client_state = new_client_state(self.platform);
        let expires = expiry(now);
        let body = json!({
            "changeType": CHANGE_TYPE,
            "notificationUrl": self.webhook_url,
            "lifecycleNotificationUrl": self.webhook_url,
            "resource": resource,
            "expirationDateTime": iso(expires),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        });
        let req = self.graph.request(
            Method::Post,
            &format!("{GRAPH_BASE}/subscriptions"),
            Some(body),
        )?;
        Ok((req, client_state, expires))
    }

    /// Reads the answer to a [`Subscriptions::create_request`]: `Ok(Err(_))` for a
    /// subscription Graph already has on `resource` (409), or for an answer lost (none, or a
    /// 5xx other than 503), which the caller mends.
    fn created(
        &self,
        resource: &str,
        result: HttpResult,
        client_state: String,
        expires: DateTime<Utc>,
    ) -> Result<Result<Subscription, NotMade>, Failure> {
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => return Ok(Err(NotMade::Lost(Failure::http("Microsoft Graph", &e)))),
        };
        if resp.status == 409 {
            return Ok(Err(NotMade::Conflict));
        }
        if !resp.is_success() {
            let mut f = Failure::status("Microsoft Graph", resp.status, &error_text(&resp.body));
            f.message = format!("creating the '{resource}' subscription: {}", f.message);
            if resp.status == 400 {
                f.message
                    .push_str(" (Graph validates the webhook URL: is the instance reachable?)");
            }
            if answer_lost(resp.status) {
                return Ok(Err(NotMade::Lost(f)));
            }
            return Err(f);
        }
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let id = v["id"].as_str().unwrap_or_default().to_string();
        if id.is_empty() {
            // Made, but not one this instance can renew or remove: mended as a lost answer.
            return Ok(Err(NotMade::Lost(Failure::transient(
                "Graph created a subscription without an id",
            ))));
        }
        let expires_at = answered_expiry(&resp.body).unwrap_or(expires);
        self.log().info(
            "Graph subscription created",
            &[
                ("resource", resource),
                ("subscription_id", &id),
                ("expires", &iso(expires_at)),
            ],
        );
        Ok(Ok(Subscription {
            id,
            resource: resource.to_string(),
            client_state,
            expires_at,
        }))
    }

    /// Deletes our subscriptions on `resource` that state does not know (same notification URL).
    fn delete_stray(&self, resource: &str) -> Result<(), Failure> {
        let page = self.graph.page(
            &format!("{GRAPH_BASE}/subscriptions"),
            "listing subscriptions",
        )?;
        for s in page.items {
            let same_resource = s["resource"]
                .as_str()
                .is_some_and(|r| r.trim_start_matches('/').eq_ignore_ascii_case(resource));
            let ours = s["notificationUrl"].as_str() == Some(self.webhook_url);
            if let (true, true, Some(id)) = (same_resource, ours, s["id"].as_str()) {
                self.log().warn(
                    "replacing a Graph subscription this instance had lost track of",
                    &[("resource", resource), ("subscription_id", id)],
                );
                self.delete(id)?;
            }
        }
        Ok(())
    }

    /// Renews (and so reauthorizes) a subscription; a 404 means it is gone: create a new one.
    pub fn renew(&self, sub: &Subscription) -> Result<Subscription, Failure> {
        let expires = expiry(self.platform.now());
        let url = format!("{GRAPH_BASE}/subscriptions/{}", encode(&sub.id));
        let req = self.graph.request(
            Method::Patch,
            &url,
            Some(json!({ "expirationDateTime": iso(expires) })),
        )?;
        let resp = match self.graph.send(req) {
            Ok(resp) if !answer_lost(resp.status) => resp,
            // Graph may have renewed it without answering: what it keeps is read back, so the
            // stored expiry is Graph's (a red team: the earlier one stayed in state).
            lost => return self.read_back(sub, lost),
        };
        if resp.status == 404 {
            return self.renew_gone(sub);
        }
        if !resp.is_success() {
            let mut f = Failure::status("Microsoft Graph", resp.status, &error_text(&resp.body));
            f.message = format!(
                "renewing the '{}' subscription: {}",
                sub.resource, f.message
            );
            return Err(f);
        }
        // The expiry Graph answers is the one it keeps: a renewal "returns 200 OK +
        // subscription" (shared/reference/graph/01-subscriptions-and-notifications.md, section 10), and the
        // stored expiry decides when to renew next; what was asked only when it has none.
        let expires_at = answered_expiry(&resp.body).unwrap_or(expires);
        self.log().info(
            "Graph subscription renewed",
            &[
                ("resource", &sub.resource),
                ("subscription_id", &sub.id),
                ("expires", &iso(expires_at)),
            ],
        );
        Ok(Subscription {
            expires_at,
            ..sub.clone()
        })
    }

    /// A subscription Graph no longer has (404 to its renewal): created anew.
    fn renew_gone(&self, sub: &Subscription) -> Result<Subscription, Failure> {
        self.log().warn(
            "Graph subscription is gone; creating a new one",
            &[("resource", &sub.resource), ("subscription_id", &sub.id)],
        );
        self.create(&sub.resource)
    }

    /// After a renewal whose answer was lost (`lost`: no answer, or a 5xx other than 503): the
    /// subscription as Graph keeps it (`GET /subscriptions/{id}`), renewed or not; gone (404):
    /// created anew.
    ///
    /// Errors: the read failed too (the renewal's own failure is returned).
    fn read_back(&self, sub: &Subscription, lost: HttpResult) -> Result<Subscription, Failure> {
        let failure = match &lost {
            Ok(resp) => Failure::status("Microsoft Graph", resp.status, &error_text(&resp.body)),
            Err(e) => Failure::http("Microsoft Graph", e),
        };
        let url = format!("{GRAPH_BASE}/subscriptions/{}", encode(&sub.id));
        let Ok(resp) = self
            .graph
            .send(self.graph.request(Method::Get, &url, None)?)
        else {
            return Err(failure);
        };
        if resp.status == 404 {
            return self.renew_gone(sub);
        }
        match answered_expiry(&resp.body) {
            Some(expires_at) if resp.is_success() => Ok(Subscription {
                expires_at,
                ..sub.clone()
            }),
            _ => Err(failure),
        }
    }

    /// Deletes a subscription; 404 counts as done.
    pub fn delete(&self, id: &str) -> Result<(), Failure> {
        let url = format!("{GRAPH_BASE}/subscriptions/{}", encode(id));
        let req = self.graph.request(Method::Delete, &url, None)?;
        let resp = self
            .graph
            .send(req)
            .map_err(|e| Failure::http("Microsoft Graph", &e))?;
        if resp.is_success() || resp.status == 404 {
            self.log()
                .info("Graph subscription deleted", &[("subscription_id", id)]);
            Ok(())
        } else {
            Err(Failure::status(
                "Microsoft Graph",
                resp.status,
                &error_text(&resp.body),
            ))
        }
    }

    /// Makes sure there is exactly one live subscription per resource: creates missing or
    /// expired ones and renews those expiring within `renew_within` (a redeploy passes
    /// `TimeDelta::MAX` to renew every one). Updates `subs` in place, so what was done before a
    /// failure is kept (no orphan).
    pub fn ensure(
        &self,
        subs: &mut Vec<Subscription>,
        renew_within: TimeDelta,
    ) -> Result<(), Failure> {
        let now = self.platform.now();
        subs.retain(|s| RESOURCES.contains(&s.resource.as_str()));
        // Those missing (a deploy): created side by side.
        let missing: Vec<&str> = RESOURCES
            .into_iter()
            .filter(|r| !subs.iter().any(|s| s.resource == *r))
            .collect();
        let mut fresh_ones = Vec::new();
        if missing.len() > 1 {
            let (made, failure) = self.create_all(&missing);
            fresh_ones = made.iter().map(|s| s.resource.clone()).collect();
            subs.extend(made);
            if let Some(f) = failure {
                return Err(f);
            }
        }
        // Each resource on its own: a failure on the first does not leave the second undone
        // (a red team: a lost create on `users` returned before `groups` was tried).
        let mut failure = None;
        for resource in RESOURCES {
            if fresh_ones.iter().any(|r| r == resource) {
                continue;
            }
            let pos = subs.iter().position(|s| s.resource == resource);
            let fresh = match pos.map(|i| &subs[i]) {
                // Missing, or expired (Graph has removed it: a PATCH would 404).
                None => self.create(resource),
                Some(s) if s.expires_at <= now => self.create(resource),
                Some(s) if s.expires_at - now <= renew_within => self.renew(s),
                Some(_) => continue,
            };
            match (fresh, pos) {
                (Ok(fresh), Some(i)) => subs[i] = fresh,
                (Ok(fresh), None) => subs.push(fresh),
                (Err(f), _) => {
                    failure.get_or_insert(f);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Deletes every subscription of this instance: those in state and any other on Graph that
    /// notifies our webhook URL (left by an earlier deployment). Each one deleted leaves
    /// `known` at once, so after a failure part-way the state lists exactly the ones left.
    pub fn delete_all(&self, known: &mut Vec<Subscription>) -> Result<usize, Failure> {
        let page = self.graph.page(
            &format!("{GRAPH_BASE}/subscriptions"),
            "listing subscriptions",
        )?;
        let mut strays: Vec<String> = Vec::new();
        for s in &page.items {
            if s["notificationUrl"].as_str() == Some(self.webhook_url)
                && let Some(id) = s["id"].as_str()
                && !known.iter().any(|k| k.id == id)
            {
                strays.push(id.to_string());
            }
        }
        let mut deleted = 0;
        while let Some(s) = known.first() {
            self.delete(&s.id.clone())?;
            known.remove(0);
            deleted += 1;
        }
        for id in &strays {
            self.delete(id)?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The `expirationDateTime` of a subscription Graph answered (create or renew), if readable.
fn answered_expiry(body: &[u8]) -> Option<DateTime<Utc>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let t = DateTime::parse_from_rfc3339(v.get("expirationDateTime")?.as_str()?).ok()?;
    Some(t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
        assert!(same_secret("", ""));
    }

    #[test]
    fn expiry_is_under_the_ceiling() {
        let now: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        let e = expiry(now);
        assert!(e - now < TimeDelta::minutes(41_760));
        assert!(e - now > TimeDelta::days(28));
    }
}
