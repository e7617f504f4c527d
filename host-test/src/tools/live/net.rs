//! Live mode's platform side: the store data whose `http` import does real HTTP (with the
//! simulator's host allowlist), whose `wait` really sleeps and whose `log` prints, and the
//! compiled component linked against it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;

pub use super::exchange::{Exchange, NetError};
use super::record::Recorder;
use crate::host::runtime::{HttpError, LogLine, Network, Runtime};
use crate::scenario::Scenario;
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::world::{Target, World};

/// The platform's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted.
const MAX_RESPONSE: u64 = 64 << 20;

/// The network as live mode lends it: allowlist, test-only rewrites, a blocking client.
pub struct Net {
    /// Only its `route` is used: the simulator's allowlist, from the same code.
    policy: World,
    graph_url: Option<String>,
    login_url: Option<String>,
    agent: ureq::Agent,
    concurrency: usize,
    pub recorder: Option<Recorder>,
}

/// Everything after `scheme://authority`.
fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find(['/', '?']).map_or("", |i| &rest[i..])
}

impl Net {
    /// `allowed_zenqms`: the ZenQMS base URL the platform lets the instance reach.
    pub fn new(
        allowed_zenqms: &str,
        graph_url: Option<String>,
        login_url: Option<String>,
        concurrency: usize,
        recorder: Option<Recorder>,
    ) -> Result<Net> {
        let scenario = Scenario::from_json(
            &serde_json::json!({
                "instance": {"config": {"zenqms_base_url": allowed_zenqms}},
                "entra": {"tenant_id": "", "client_id": "", "client_secret": ""},
                "zenqms": {"api_token": ""},
            })
            .to_string(),
        )?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false) // statuses are the component's business
            .max_redirects(0)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        let trim = |u: Option<String>| u.map(|u| u.trim_end_matches('/').to_string());
        Ok(Net {
            policy: World::new(&scenario.seed()),
            graph_url: trim(graph_url),
            login_url: trim(login_url),
            agent,
            concurrency: concurrency.max(1),
            recorder,
        })
    }

    /// Allowlist, then test-only routing: the URL to really send to.
    fn destination(&self, url: &str) -> (Option<Target>, Result<String, NetError>) {
        let target = self.policy.route(url);
        let rewrite = match target {
            None => {
                let origin = url.split(['?', '#']).next().unwrap_or_default();
                let origin = origin.len() - path_and_query(origin).len();
                let why = format!("host not allowed: {}", &url[..origin]);
                return (None, Err(NetError::Denied(why)));
            }
            Some(Target::Graph) => self.graph_url.as_deref(),
            Some(Target::Login) => self.login_url.as_deref(),
            Some(_) => None,
        };
        let dest = match rewrite {
            Some(base) => format!("{base}{}", path_and_query(url)),
            None => url.to_string(),
        };
        (target, Ok(dest))
    }

    /// Sends requests, at most `concurrency` at a time, recording each exchange.
    pub fn send_all(&mut self, reqs: Vec<HttpRequest>) -> Vec<Result<HttpResponse, NetError>> {
        let mut out = Vec::with_capacity(reqs.len());
        let planned: Vec<_> = reqs
            .into_iter()
            .map(|r| (self.destination(&r.url), r))
            .collect();
        for chunk in planned.chunks(self.concurrency) {
            let agent = &self.agent;
            let exchanges: Vec<Exchange> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|((target, dest), req)| {
                        s.spawn(move || exchange(agent, *target, dest, req))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("request thread"))
                    .collect()
            });
            for ex in exchanges {
                if let Some(rec) = self.recorder.as_mut() {
                    rec.record(&ex);
                }
                out.push(ex.result);
            }
        }
        out
    }

    pub fn send(&mut self, req: HttpRequest) -> Result<HttpResponse, NetError> {
        self.send_all(vec![req]).pop().expect("one result")
    }
}

/// One real round trip (or a refusal).
fn exchange(
    agent: &ureq::Agent,
    target: Option<Target>,
    dest: &Result<String, NetError>,
    req: &HttpRequest,
) -> Exchange {
    let started = Instant::now();
    let at = Utc::now();
    let result = match dest {
        Err(e) => Err(e.clone()),
        Ok(url) => transmit(agent, url, req),
    };
    Exchange {
        target,
        request: req.clone(),
        sent_to: dest.as_ref().ok().filter(|d| **d != req.url).cloned(),
        result,
        at,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

fn transmit(agent: &ureq::Agent, url: &str, req: &HttpRequest) -> Result<HttpResponse, NetError> {
    let bad = |e: ureq::http::Error| NetError::Transport(format!("bad request: {e}"));
    let mut builder = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(url);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    // An empty body is no body: a GET must not carry `Content-Length: 0`.
    let sent = if req.body.is_empty() {
        agent.run(builder.body(()).map_err(bad)?)
    } else {
        agent.run(builder.body(req.body.clone()).map_err(bad)?)
    };
    let fail = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => NetError::Timeout,
        other => NetError::Transport(other.to_string()),
    };
    let resp = sent.map_err(fail)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    let body = resp
        .into_body()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(fail)?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn to_http_error(e: NetError) -> HttpError {
    match e {
        NetError::Denied(why) => HttpError::Denied(why),
        NetError::Timeout => HttpError::Timeout,
        NetError::Transport(why) => HttpError::Transport(why),
    }
}

/// Live calls run on the one runtime with this network: real HTTP, real sleeps, real clocks,
/// and every log line printed as it comes.
impl Network for Net {
    fn send_all(&mut self, reqs: Vec<HttpRequest>) -> Vec<Result<HttpResponse, HttpError>> {
        Net::send_all(self, reqs)
            .into_iter()
            .map(|r| r.map_err(to_http_error))
            .collect()
    }

    fn concurrency(&self) -> u32 {
        u32::try_from(self.concurrency).unwrap_or(u32::MAX)
    }

    fn wait(&mut self, ms: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
    }

    fn logged(&mut self, line: &LogLine, fields: &[(String, String)]) {
        // Printed escaped and capped, whatever the component sent (report::shown), fields in
        // the order the component wrote them.
        use crate::scenario::report::shown;
        use entra_zenqms::log::escape::{FIELD_CAP, KEY_CAP, MESSAGE_CAP};
        let text: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", shown(k, KEY_CAP), shown(v, FIELD_CAP)))
            .collect();
        println!(
            "{:<5} {} {}",
            line.level,
            shown(&line.message, MESSAGE_CAP),
            text.join(" ")
        );
    }
}

/// The one runtime, linked against the real network.
pub type LiveRuntime = Runtime<Net>;

static LIVE: OnceLock<LiveRuntime> = OnceLock::new();

/// The process's live runtime, compiled on first use (it takes seconds).
pub fn live_runtime() -> Result<&'static LiveRuntime> {
    Runtime::shared_in(&LIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_and_test_routing() {
        let net = Net::new(
            "http://127.0.0.1:9/zenqms",
            Some("http://127.0.0.1:9/graph/".into()),
            None,
            4,
            None,
        )
        .unwrap();
        let (t, d) = net.destination("https://graph.microsoft.com/v1.0/users?$top=1");
        assert_eq!(t, Some(Target::Graph));
        assert_eq!(d.unwrap(), "http://127.0.0.1:9/graph/v1.0/users?$top=1");
        let (t, d) = net.destination("https://login.microsoftonline.com/t/oauth2/v2.0/token");
        assert_eq!(t, Some(Target::Login));
        assert_eq!(
            d.unwrap(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        let (t, d) = net.destination("http://127.0.0.1:9/zenqms/v2/roles");
        assert_eq!(
            (t, d.unwrap().as_str()),
            (Some(Target::Zenqms), "http://127.0.0.1:9/zenqms/v2/roles")
        );
        let (t, d) = net.destination("http://127.0.0.1:9/other/v2/roles");
        assert_eq!(t, None);
        assert_eq!(
            d.unwrap_err(),
            NetError::Denied("host not allowed: http://127.0.0.1:9".into())
        );
    }
}
