//! The simulated outside world of one scenario: Entra (Graph), ZenQMS, the virtual clock, and
//! the platform's HTTP policy (which hosts a component may reach) with request accounting.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::VirtualClock;
use crate::fake_graph::FakeGraph;
use crate::fake_zenqms::FakeZenqms;
use crate::http_types::{HttpRequest, HttpResponse};
use crate::scenario::Scenario;

/// Where a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Login,
    Graph,
    Zenqms,
    Denied,
}

/// Request accounting, as the report shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpStats {
    pub requests: u64,
    /// Sequential round trips: one per `send`, ceil(k / concurrency) per `send-all` of k.
    pub rounds: u64,
    pub by_target: BTreeMap<Target, u64>,
}

/// Why the platform refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

pub struct World {
    pub graph: FakeGraph,
    pub zenqms: FakeZenqms,
    pub clock: VirtualClock,
    /// Origin plus path prefix of the simulated ZenQMS (the scenario's configured base URL).
    zenqms_base: Option<String>,
    pub rtt_ms: u64,
    pub concurrency: u32,
    pub stats: HttpStats,
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

impl World {
    pub fn new(scenario: &Scenario) -> Self {
        let base = scenario
            .instance
            .config
            .get("zenqms_base_url")
            .and_then(|v| v.as_str())
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| split_origin(s).is_some());
        let zenqms = FakeZenqms::new(
            &scenario.zenqms,
            base.as_deref().unwrap_or("https://zenqms.invalid"),
        );
        World {
            graph: FakeGraph::new(&scenario.entra),
            zenqms,
            clock: VirtualClock::new(scenario.now),
            zenqms_base: base,
            rtt_ms: scenario.rtt_ms,
            concurrency: scenario.concurrency.max(1),
            stats: HttpStats {
                by_target: [Target::Login, Target::Graph, Target::Zenqms, Target::Denied]
                    .into_iter()
                    .map(|t| (t, 0))
                    .collect(),
                ..HttpStats::default()
            },
        }
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
    fn serve(&mut self, req: &HttpRequest) -> Result<HttpResponse, Denied> {
        let target = self.route(&req.url);
        *self
            .stats
            .by_target
            .entry(target.unwrap_or(Target::Denied))
            .or_default() += 1;
        self.stats.requests += 1;
        let now = self.clock.now();
        match target {
            Some(Target::Login | Target::Graph) => Ok(self.graph.handle(req, now)),
            Some(Target::Zenqms) => Ok(self.zenqms.handle(req)),
            _ => Err(Denied(format!(
                "host not allowed: {}",
                split_origin(&req.url).map_or("<unparseable URL>".into(), |(o, _)| o)
            ))),
        }
    }

    /// One request: one round trip.
    pub fn send(&mut self, req: &HttpRequest) -> Result<HttpResponse, Denied> {
        let out = self.serve(req);
        self.stats.rounds += 1;
        self.clock.advance_ms(self.rtt_ms);
        out
    }

    /// Concurrent requests: served in order (their effects are independent by contract),
    /// costing ceil(k / concurrency) rounds.
    pub fn send_all(&mut self, reqs: &[HttpRequest]) -> Vec<Result<HttpResponse, Denied>> {
        let out = reqs.iter().map(|r| self.serve(r)).collect();
        let rounds = (reqs.len() as u64).div_ceil(u64::from(self.concurrency));
        self.stats.rounds += rounds;
        self.clock.advance_ms(rounds * self.rtt_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(base: &str) -> World {
        let s = Scenario::from_json(&format!(
            r#"{{"instance": {{"config": {{"zenqms_base_url": "{base}"}}}},
                "entra": {{"tenant_id": "t", "client_id": "c", "client_secret": "s"}},
                "zenqms": {{"api_token": "z"}}}}"#
        ))
        .unwrap();
        World::new(&s)
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
