//! The simulated outside world of one scenario: Entra (Graph), ZenQMS, the virtual clock, and
//! the platform's HTTP policy (which hosts a component may reach) with request accounting.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sim::clock::VirtualClock;
use crate::sim::fake_graph::FakeGraph;
use crate::sim::fake_zenqms::FakeZenqms;
use crate::sim::faults::{Fault, Faults};
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::seed::{EntraSpec, WorldSeed, ZenqmsSpec};

pub use crate::sim::http_types::Target;

/// Request accounting, as the report shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpStats {
    pub requests: u64,
    /// Sequential round trips: one per `send`, ceil(k / concurrency) per `send-all` of k.
    pub rounds: u64,
    pub by_target: BTreeMap<Target, u64>,
    /// Virtual time the component spent waiting before retries.
    pub waited_ms: u64,
    /// Requests that met an injected fault.
    pub faults: u64,
    /// Handler calls whose virtual time exceeded `budget_ms` plus one round trip (`rtt_ms`).
    pub calls_over_budget: u64,
    /// The largest amount, in ms of virtual time, by which a call exceeded `budget_ms + rtt_ms`
    /// (0 when none did).
    pub worst_overrun_ms: u64,
}

impl HttpStats {
    /// Accounts one handler call that took `elapsed_ms` of virtual time against the budget it
    /// was given: a call may end one round past its budget (the round in flight when the
    /// budget ran out), not more.
    pub fn record_call(&mut self, elapsed_ms: u64, budget_ms: u32, rtt_ms: u64) {
        let allowed = u64::from(budget_ms) + rtt_ms;
        if elapsed_ms > allowed {
            self.calls_over_budget += 1;
            self.worst_overrun_ms = self.worst_overrun_ms.max(elapsed_ms - allowed);
        }
    }
}

/// Delivers a request to the instance's webhook as the platform would: to another worker,
/// i.e. a second instance of the component (used for Graph's validation handshake).
pub type Webhook = Box<dyn FnMut(HttpRequest) -> HttpResponse + Send>;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The platform refused to send it (host not allowed).
    Denied(String),
    /// No response in time (an injected fault).
    Timeout,
}

pub struct World {
    pub graph: FakeGraph,
    pub zenqms: FakeZenqms,
    pub clock: VirtualClock,
    /// Origin plus path prefix of the simulated ZenQMS (the scenario's configured base URL).
    zenqms_base: Option<String>,
    pub rtt_ms: u64,
    pub concurrency: u32,
    pub stats: HttpStats,
    /// Routes Graph's validation requests to the component; `None`: validation fails.
    pub webhook: Option<Webhook>,
    /// Graph's delivery of notifications to the instance's webhook endpoint.
    pub delivery: crate::sim::delivery::Endpoint,
    /// Handshakes performed (count), for tests.
    pub validations: u64,
    /// A ZenQMS write outage: the next writes get its reply.
    pub zenqms_outage: Option<Outage>,
    /// A token endpoint outage: the next token requests get its reply.
    pub token_outage: Option<Outage>,
    /// A Graph outage for some requests (`fail_requests`): which, and their reply.
    pub graph_outage: Option<(crate::sim::seed::FailRequests, Outage)>,
    /// Cost of the calls made in this world so far.
    pub metrics: Metrics,
    /// Injected faults, when the scenario asks for them.
    pub faults: Option<Faults>,
    /// Test hook: rewrite Graph's `@odata.nextLink`s to point at this origin (a hostile or
    /// broken Graph), to show the component will not follow them with its token.
    pub rewrite_next_links: Option<String>,
    /// The scenario's `serve_links` step: links every Graph answer carries instead of its own.
    pub served_links: crate::sim::seed::ServeLinks,
    /// Calls given a seed of the guest's random source so far (see [`World::next_random_seed`]).
    random_seeds: u64,
}

/// A canned failure (`fail_writes`, `fail_token`): the next `left` requests it applies to answer
/// `status` with `body` (the service's usual error JSON when none is given).
#[derive(Debug, Clone)]
pub struct Outage {
    pub status: u16,
    pub left: u32,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Outage {
    /// From a scenario step: a string body is sent as text, anything else as its JSON text.
    pub fn new(spec: &crate::sim::seed::FailWrites, default_body: serde_json::Value) -> Self {
        let (content_type, body) = match &spec.body {
            Some(serde_json::Value::String(text)) => ("text/plain", text.clone().into_bytes()),
            Some(other) => ("application/json", other.to_string().into_bytes()),
            None => ("application/json", default_body.to_string().into_bytes()),
        };
        Outage {
            status: spec.status,
            left: spec.count,
            content_type: spec.content_type.as_deref().unwrap_or(content_type).into(),
            body,
        }
    }

    /// The reply for one more request, while the outage lasts.
    pub fn take(&mut self) -> Option<HttpResponse> {
        self.left = self.left.checked_sub(1)?;
        Some(HttpResponse {
            status: self.status,
            headers: vec![("content-type".into(), self.content_type.clone())],
            body: self.body.clone(),
        })
    }
}

/// Host-side cost of the component's calls.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Metrics {
    pub calls: u64,
    /// Real time inside wasmtime calls.
    #[serde(serialize_with = "as_secs")]
    pub cpu: std::time::Duration,
    /// Of which the host's answers to `send`/`send-all` (the simulated services' code, and the
    /// validation handshake's second instance): the rest is the component's own time.
    #[serde(serialize_with = "as_secs")]
    pub service: std::time::Duration,
    /// Peak guest linear memory over all calls, bytes.
    pub peak_memory: usize,
}

fn as_secs<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// `scheme://host[:port]` and the rest of an absolute URL, lowercasing the authority.
fn split_origin(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    Some((
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        ),
        tail,
    ))
}

/// ZenQMS's documented public API hosts (help center, "ZenQMS API Configuration").
pub const ZENQMS_PRODUCTION_API: &str = "https://public-api.zenqms.com";
pub const ZENQMS_SANDBOX_API: &str = "https://public-api-sandbox.zenqms.com";

/// Where a config sends the ZenQMS API token, so the simulated ZenQMS answers there: the
/// `zenqms_base_url` override when set, else the documented host of `zenqms_environment`
/// (`sandbox`, or production for anything else: the component refuses other values).
pub fn zenqms_api_base(config: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    let text = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match (text("zenqms_base_url"), text("zenqms_environment")) {
        (Some(base), _) => base.to_string(),
        (None, Some(env)) if env.eq_ignore_ascii_case("sandbox") => ZENQMS_SANDBOX_API.into(),
        (None, _) => ZENQMS_PRODUCTION_API.into(),
    }
}

impl World {
    pub fn new(seed: &WorldSeed) -> Self {
        let base = seed
            .zenqms_api
            .as_deref()
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| split_origin(s).is_some());
        let zenqms = FakeZenqms::new(
            seed.zenqms,
            base.as_deref().unwrap_or("https://zenqms.invalid"),
        );
        World {
            graph: FakeGraph::new(seed.entra),
            zenqms,
            clock: VirtualClock::new(seed.now),
            zenqms_base: base,
            rtt_ms: seed.rtt_ms,
            concurrency: seed.concurrency.max(1),
            stats: HttpStats {
                by_target: [Target::Login, Target::Graph, Target::Zenqms, Target::Denied]
                    .into_iter()
                    .map(|t| (t, 0))
                    .collect(),
                ..HttpStats::default()
            },
            webhook: None,
            delivery: Default::default(),
            validations: 0,
            zenqms_outage: None,
            token_outage: None,
            graph_outage: None,
            metrics: Metrics::default(),
            faults: seed.faults.clone().map(Faults::new),
            rewrite_next_links: None,
            served_links: Default::default(),
            random_seeds: 0,
        }
    }

    /// The seed of the guest's `wasi:random` for its next call, in a world with `faults`: the
    /// n-th call gets the same seed in every run (from `faults.seed`), so a replay with injected
    /// faults — whose retries wait a random share of their backoff — repeats exactly. `None`
    /// otherwise: the system's randomness, so that nothing the component draws (a
    /// subscription's clientState) can be known to a scenario before it runs.
    pub fn next_random_seed(&mut self) -> Option<u64> {
        let base = self.faults.as_ref()?.seed();
        self.random_seeds += 1;
        Some(crate::sim::faults::mix(
            base ^ crate::sim::faults::mix(self.random_seeds),
        ))
    }

    /// A world with no services (every request denied), for a second instance that only
    /// answers a handshake.
    pub fn offline(now: chrono::DateTime<chrono::Utc>) -> Self {
        let entra: EntraSpec = serde_json::from_value(
            serde_json::json!({"tenant_id": "", "client_id": "", "client_secret": ""}),
        )
        .expect("constant seed");
        let zenqms: ZenqmsSpec =
            serde_json::from_value(serde_json::json!({"api_token": ""})).expect("constant seed");
        let empty = WorldSeed {
            entra: &entra,
            zenqms: &zenqms,
            zenqms_api: None,
            now,
            rtt_ms: 100,
            concurrency: 8,
            faults: None,
        };
        let mut w = World::new(&empty);
        w.zenqms_base = None;
        w.clock = VirtualClock::new(now);
        w
    }

    /// Which simulated service a URL belongs to; `None` when the platform must refuse it.
    pub fn route(&self, url: &str) -> Option<Target> {
        let (origin, tail) = split_origin(url)?;
        if origin.contains('@') {
            return None;
        }
        match origin.as_str() {
            "https://login.microsoftonline.com" => return Some(Target::Login),
            "https://graph.microsoft.com" => return Some(Target::Graph),
            _ => {}
        }
        let base = self.zenqms_base.as_deref()?;
        let (base_origin, base_path) = split_origin(base)?;
        let under_base = tail == base_path
            || (tail.starts_with(base_path)
                && (base_path.is_empty() || tail[base_path.len()..].starts_with(['/', '?'])));
        (origin == base_origin && under_base).then_some(Target::Zenqms)
    }

    /// Serves one request without touching the clock (the caller accounts for rounds).
    fn serve(&mut self, req: &HttpRequest) -> Result<HttpResponse, Refused> {
        let target = self.route(&req.url);
        *self
            .stats
            .by_target
            .entry(target.unwrap_or(Target::Denied))
            .or_default() += 1;
        self.stats.requests += 1;
        if let Some(fault) = target.and_then(|t| self.faults.as_mut()?.draw(t)) {
            self.stats.faults += 1;
            return match fault {
                Fault::Refuse(response) => Ok(response),
                Fault::Timeout { processed } => {
                    if processed {
                        let _ = self.dispatch(target, req);
                    }
                    Err(Refused::Timeout)
                }
            };
        }
        if target == Some(Target::Graph)
            && let Some((which, outage)) = self.graph_outage.as_mut()
            && which.answer_lost
            && which.matches(&req.method, &req.url)
            && outage.take().is_some()
        {
            // Carried out, the answer lost (`fail_requests` with `answer_lost`).
            let _ = self.dispatch(target, req);
            return Err(Refused::Timeout);
        }
        let answer = self.dispatch(target, req)?;
        let batch = target == Some(Target::Graph)
            && req.method == "POST"
            && req
                .url
                .split('?')
                .next()
                .unwrap_or_default()
                .ends_with("/$batch");
        Ok(if batch && self.faults.is_some() {
            self.fault_batch_items(answer)
        } else {
            answer
        })
    }

    /// Graph evaluates each request of a `$batch` on its own: injected faults hit items (429 with
    /// its Retry-After, 503, or 504 for a timeout) while the batch itself answers 200.
    fn fault_batch_items(&mut self, mut resp: HttpResponse) -> HttpResponse {
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&resp.body) else {
            return resp;
        };
        let Some(items) = body["responses"].as_array_mut() else {
            return resp;
        };
        for item in items {
            let Some(fault) = self.faults.as_mut().and_then(|f| f.draw(Target::Graph)) else {
                continue;
            };
            self.stats.faults += 1;
            let refusal = match fault {
                Fault::Refuse(r) => r,
                Fault::Timeout { .. } => HttpResponse::json(
                    504,
                    &serde_json::json!({"error": {"code": "GatewayTimeout", "message": "The request timed out."}}),
                ),
            };
            let headers: serde_json::Map<String, serde_json::Value> = refusal
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            item["status"] = refusal.status.into();
            item["headers"] = headers.into();
            item["body"] = serde_json::from_slice(&refusal.body).unwrap_or(serde_json::Value::Null);
        }
        resp.body = body.to_string().into_bytes();
        resp
    }

    /// Hands a request to the service it is for.
    fn dispatch(
        &mut self,
        target: Option<Target>,
        req: &HttpRequest,
    ) -> Result<HttpResponse, Refused> {
        let now = self.clock.now();
        if target == Some(Target::Graph)
            && let Some(refusal) = self.validate_subscription(req)
        {
            return Ok(refusal);
        }
        if target == Some(Target::Zenqms)
            && let Some(refusal) = self.outage(req)
        {
            return Ok(refusal);
        }
        if target == Some(Target::Graph)
            && let Some((which, outage)) = self.graph_outage.as_mut()
            && !which.answer_lost
            && which.matches(&req.method, &req.url)
            && let Some(refusal) = outage.take()
        {
            return Ok(refusal);
        }
        if target == Some(Target::Login)
            && let Some(refusal) = self.token_outage.as_mut().and_then(Outage::take)
        {
            return Ok(refusal);
        }
        match target {
            Some(Target::Graph) if self.rewrite_next_links.is_some() => {
                let mut resp = self.graph.handle(req, now);
                let origin = self.rewrite_next_links.clone().unwrap_or_default();
                let text = String::from_utf8_lossy(&resp.body).replace(
                    "\"@odata.nextLink\":\"https://graph.microsoft.com",
                    &format!("\"@odata.nextLink\":\"{origin}"),
                );
                resp.body = text.into_bytes();
                Ok(resp)
            }
            Some(Target::Graph)
                if self.served_links.next_link.is_some()
                    || self.served_links.delta_link.is_some() =>
            {
                let mut resp = self.graph.handle(req, now);
                if let Ok(mut body) = serde_json::from_slice(&resp.body) {
                    serve_links(&mut body, &self.served_links);
                    resp.body = body.to_string().into_bytes();
                }
                Ok(resp)
            }
            Some(Target::Login | Target::Graph) => Ok(self.graph.handle(req, now)),
            Some(Target::Zenqms) => Ok(self.zenqms.handle(req)),
            _ => Err(Refused::Denied(format!(
                "host not allowed: {}",
                split_origin(&req.url).map_or("<unparseable URL>".into(), |(o, _)| o)
            ))),
        }
    }

    /// Graph's validation handshake for a subscription create: POST each notification URL with
    /// a `validationToken`; the subscription is refused (400) unless each answers 200 with the
    /// decoded token as plain text. Returns the refusal, or `None` to let the create proceed.
    fn validate_subscription(&mut self, req: &HttpRequest) -> Option<HttpResponse> {
        let path = req.url.split('?').next().unwrap_or_default();
        if req.method != "POST" || !path.trim_end_matches('/').ends_with("/v1.0/subscriptions") {
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
        for key in ["notificationUrl", "lifecycleNotificationUrl"] {
            let Some(url) = body[key].as_str() else {
                continue;
            };
            self.validations += 1;
            let token = format!(
                "Validation: Testing client application reachability for subscription Request-Id: {:08x}-0000-4000-8000-000000000000",
                self.validations
            );
            let sep = if url.contains('?') { '&' } else { '?' };
            let probe = HttpRequest {
                method: "POST".into(),
                url: format!("{url}{sep}validationToken={}", encode_component(&token)),
                headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                body: Vec::new(),
            };
            let answer = self.webhook.as_mut().map(|deliver| deliver(probe));
            let ok = answer.as_ref().is_some_and(|a| {
                a.status == 200
                    && a.body == token.as_bytes()
                    && a.header("content-type")
                        .is_some_and(|t| t.starts_with("text/plain"))
            });
            if !ok {
                return Some(HttpResponse::json(
                    400,
                    &serde_json::json!({"error": {
                        "code": "InvalidRequest",
                        "message": format!("Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({key})"),
                    }}),
                ));
            }
        }
        None
    }

    /// Answers a ZenQMS write with the outage's reply while an outage lasts.
    fn outage(&mut self, req: &HttpRequest) -> Option<HttpResponse> {
        let is_write = req.method != "GET" && !req.url.contains("/v2/users/search");
        if !is_write {
            return None;
        }
        self.zenqms_outage.as_mut()?.take()
    }

    /// Applies a scenario's change to the Entra tenant, stamped with the current virtual time.
    pub fn apply_entra(&mut self, change: &crate::sim::seed::EntraChange) -> anyhow::Result<()> {
        use crate::sim::seed::EntraChange;
        let now = self.clock.now();
        let g = &mut self.graph;
        g.set_now(now);
        match change {
            EntraChange::UpsertUser(u) => g.upsert_user(u.clone()),
            EntraChange::DeleteUser(id) => g.delete_user(id),
            EntraChange::AddMember(m) => g.add_member(&m.group, &m.member),
            EntraChange::RemoveMember(m) => g.remove_member(&m.group, &m.member),
            EntraChange::PurgeUser(id) => g.purge_user(id),
            EntraChange::DeleteGroup(id) => g.delete_group(id),
            EntraChange::ExpireDelta(_) => {
                g.expire_delta();
                Ok(())
            }
            EntraChange::FailToken(f) => {
                let oauth = serde_json::json!({"error": "temporarily_unavailable",
                    "error_description": "AADSTS50000: simulated outage"});
                self.token_outage = Some(Outage::new(f, oauth));
                Ok(())
            }
            EntraChange::FailRequests(f) => {
                let graph_error = serde_json::json!({"error": {
                    "code": if f.status == 429 { "TooManyRequests" } else { "ServiceUnavailable" },
                    "message": "simulated outage"}});
                self.graph_outage = Some((f.clone(), Outage::new(&f.reply(), graph_error)));
                Ok(())
            }
            EntraChange::ServeLinks(links) => {
                self.served_links = links.clone();
                Ok(())
            }
        }
    }

    /// The component waits (a retry's backoff): virtual time passes, no round trip.
    pub fn wait(&mut self, ms: u32) {
        self.stats.waited_ms += u64::from(ms);
        self.clock.advance_ms(u64::from(ms));
    }

    /// One request: one round trip.
    pub fn send(&mut self, req: &HttpRequest) -> Result<HttpResponse, Refused> {
        let out = self.serve(req);
        self.stats.rounds += 1;
        trace_round(std::slice::from_ref(req), 1);
        self.clock.advance_ms(self.rtt_ms);
        out
    }

    /// Concurrent requests: served in order (their effects are independent by contract),
    /// costing ceil(k / concurrency) rounds.
    pub fn send_all(&mut self, reqs: &[HttpRequest]) -> Vec<Result<HttpResponse, Refused>> {
        let out = reqs.iter().map(|r| self.serve(r)).collect();
        let rounds = (reqs.len() as u64).div_ceil(u64::from(self.concurrency));
        self.stats.rounds += rounds;
        trace_round(reqs, rounds);
        self.clock.advance_ms(rounds * self.rtt_ms);
        out
    }
}

fn trace_round(reqs: &[HttpRequest], rounds: u64) {
    if std::env::var_os("HOST_TEST_TRACE_ROUNDS").is_none() {
        return;
    }
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for r in reqs {
        let path = r.url.split('?').next().unwrap_or("");
        let mut path: Vec<String> = path
            .split('/')
            .skip(3)
            .map(|s| {
                if s.len() > 20 {
                    "ID".to_string()
                } else {
                    s.to_string()
                }
            })
            .collect();
        if r.url.contains("$batch") {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let u = v["requests"][0]["url"].as_str().unwrap_or("").to_string();
            let u = u
                .split('?')
                .next()
                .unwrap_or("")
                .split('/')
                .map(|s| if s.len() > 20 { "ID" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let filt = if v["requests"][0]["url"]
                .as_str()
                .unwrap_or("")
                .contains("filter")
            {
                "F"
            } else {
                ""
            };
            path.push(format!("[{u}{filt}]"));
        }
        *kinds
            .entry(format!("{} {}", r.method, path.join("/")))
            .or_default() += 1;
    }
    eprintln!(
        "ROUND {rounds} {}",
        kinds
            .iter()
            .map(|(k, n)| format!("{k}x{n}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// Replaces every `@odata.nextLink` / `@odata.deltaLink` value in a Graph answer (at any
/// depth: `$batch` items carry their own) with the scenario's.
fn serve_links(body: &mut serde_json::Value, links: &crate::sim::seed::ServeLinks) {
    match body {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let link = match key.as_str() {
                    "@odata.nextLink" => &links.next_link,
                    "@odata.deltaLink" => &links.delta_link,
                    _ => {
                        serve_links(value, links);
                        continue;
                    }
                };
                if let Some(link) = link {
                    *value = serde_json::Value::String(link.clone());
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| serve_links(v, links)),
        _ => {}
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
pub fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_may_end_one_round_past_its_budget_and_no_more() {
        let mut stats = HttpStats::default();
        stats.record_call(0, 20_000, 100);
        stats.record_call(20_100, 20_000, 100);
        assert_eq!((stats.calls_over_budget, stats.worst_overrun_ms), (0, 0));
        stats.record_call(20_101, 20_000, 100);
        stats.record_call(636_000, 20_000, 100);
        stats.record_call(25_000, 20_000, 100);
        assert_eq!(stats.calls_over_budget, 3);
        assert_eq!(stats.worst_overrun_ms, 636_000 - 20_100);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["calls_over_budget"], 3);
        assert_eq!(json["worst_overrun_ms"], 615_900);
    }

    fn world(base: &str) -> World {
        let entra: EntraSpec = serde_json::from_value(
            serde_json::json!({"tenant_id": "t", "client_id": "c", "client_secret": "s"}),
        )
        .unwrap();
        let zenqms: ZenqmsSpec =
            serde_json::from_value(serde_json::json!({"api_token": "z"})).unwrap();
        World::new(&WorldSeed {
            entra: &entra,
            zenqms: &zenqms,
            zenqms_api: Some(base.to_string()),
            now: "2026-11-28T12:00:00Z".parse().unwrap(),
            rtt_ms: 100,
            concurrency: 8,
            faults: None,
        })
    }

    #[test]
    fn routes_by_host_and_base_path() {
        let w = world("https://acme.zenqms.com/api/");
        assert_eq!(
            w.route("https://graph.microsoft.com/v1.0/users"),
            Some(Target::Graph)
        );
        assert_eq!(
            w.route("https://LOGIN.microsoftonline.com/t/oauth2/v2.0/token"),
            Some(Target::Login)
        );
        assert_eq!(
            w.route("https://acme.zenqms.com/api/v2/users"),
            Some(Target::Zenqms)
        );
        assert_eq!(w.route("https://acme.zenqms.com/apix/v2/users"), None);
        assert_eq!(w.route("http://graph.microsoft.com/v1.0/users"), None);
        assert_eq!(w.route("https://graph.microsoft.com@evil.example/"), None);
        assert_eq!(w.route("https://evil.example/"), None);
    }
}
