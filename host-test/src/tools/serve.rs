//! `serve`: a scenario's simulated token endpoint, Graph and ZenQMS over real HTTP on
//! 127.0.0.1, so anyone (curl, live mode) can develop against the simulator.
//!
//! One port, routed by path prefix: `/login/…` is `https://login.microsoftonline.com/…`,
//! `/graph/…` is `https://graph.microsoft.com/…`, `/zenqms/…` is ZenQMS (its base URL becomes
//! `http://127.0.0.1:P/zenqms`). Requests go through [`World::send`], so routing, accounting,
//! faults and Graph's subscription validation handshake behave exactly as in a replay.
//!
//! Clock: the world's virtual clock starts at the real current time (not the scenario's `now`)
//! and follows real time, with no simulated round-trip time. A live-mode component reads the
//! real wall clock, and Graph checks subscription expirations against its own clock, so both
//! must agree.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::host::runtime::{Instance, Runtime};
use crate::scenario::Scenario;
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::world::{Refused, Webhook, World};

/// Largest request body `serve` reads.
const MAX_BODY: u64 = 16 << 20;
/// How often the loop looks at its bounds while idle.
const POLL: Duration = Duration::from_millis(50);

/// `host-test serve` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The scenario whose world is served.
    pub scenario: std::path::PathBuf,
    /// Port on 127.0.0.1 (0: any free port, printed at start).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop after this many seconds of real time.
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// When `run` stops by itself (all `None`: only Ctrl-C stops it).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Stop after this much real time.
    pub seconds: Option<u64>,
    /// Stop when set (tests).
    pub stop: Option<Arc<AtomicBool>>,
}

/// A bound listener and the world it serves.
pub struct Server {
    http: tiny_http::Server,
    world: World,
    base_url: String,
    started: Instant,
    start_time: DateTime<Utc>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port) and builds the scenario's world, its ZenQMS at
    /// `<base>/zenqms`. The scenario's steps and expectations are ignored.
    pub fn bind(mut scenario: Scenario, port: u16) -> Result<Server> {
        let http = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| anyhow!("binding 127.0.0.1:{port}: {e}"))?;
        let addr = http
            .server_addr()
            .to_ip()
            .context("the server has no IP address")?;
        let base_url = format!("http://127.0.0.1:{}", addr.port());
        scenario.instance.config.insert(
            "zenqms_base_url".into(),
            Value::String(format!("{base_url}/zenqms")),
        );
        let start_time = Utc::now();
        scenario.now = start_time;
        scenario.rtt_ms = 0; // round trips are real now
        let mut world = World::new(&scenario.seed());
        world.webhook = Some(handshake_route(Runtime::shared(), &scenario));
        Ok(Server {
            http,
            world,
            base_url,
            started: Instant::now(),
            start_time,
        })
    }

    /// `http://127.0.0.1:P`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves requests one at a time until a bound is reached; returns the world as it ends.
    pub fn run(mut self, bound: &Bound, mut on_request: impl FnMut(&str)) -> Result<World> {
        let deadline = bound
            .seconds
            .map(|s| Instant::now() + Duration::from_secs(s));
        let mut served = 0u64;
        loop {
            let stopped = bound
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst));
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if stopped || expired || bound.requests.is_some_and(|n| served >= n) {
                return Ok(self.world);
            }
            let Some(mut rq) = self.http.recv_timeout(POLL)? else {
                continue;
            };
            served += 1;
            let (line, resp) = self.answer(&mut rq);
            on_request(&line);
            let mut out = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
            for (k, v) in &resp.headers {
                // tiny_http writes the framing headers itself.
                if k.eq_ignore_ascii_case("content-length")
                    || k.eq_ignore_ascii_case("transfer-encoding")
                {
                    continue;
                }
                if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                    out.add_header(h);
                }
            }
            // A client that hung up is its own problem; the server goes on.
            let _ = rq.respond(out);
        }
    }

    /// One request: the access-log line and the answer.
    fn answer(&mut self, rq: &mut tiny_http::Request) -> (String, HttpResponse) {
        let method = rq.method().as_str().to_ascii_uppercase();
        let path = rq.url().to_string();
        let resp = match self.to_request(rq, &method, &path) {
            Ok(req) => {
                self.follow_real_time();
                match self.world.send(&req) {
                    Ok(resp) => resp,
                    Err(Refused::Timeout) => error(504, "simulated timeout (an injected fault)"),
                    Err(Refused::Denied(why)) => error(404, &why),
                }
            }
            Err(e) => error(404, &format!("{e:#}")),
        };
        (format!("{method} {path} -> {}", resp.status), resp)
    }

    /// The request as the component would have sent it: the original service URL.
    fn to_request(
        &self,
        rq: &mut tiny_http::Request,
        method: &str,
        path: &str,
    ) -> Result<HttpRequest> {
        let url = service_url(&self.base_url, path).with_context(|| {
            format!("no service at {path}: use /login/…, /graph/… or /zenqms/…")
        })?;
        let mut body = Vec::new();
        rq.as_reader()
            .take(MAX_BODY)
            .read_to_end(&mut body)
            .context("reading the request body")?;
        let headers = rq
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
            .collect();
        Ok(HttpRequest {
            method: method.into(),
            url,
            headers,
            body,
        })
    }

    /// Moves the virtual clock to the real time elapsed since `bind` (never backwards).
    fn follow_real_time(&self) {
        let elapsed = TimeDelta::from_std(self.started.elapsed()).unwrap_or(TimeDelta::zero());
        let target = self.start_time + elapsed;
        if target > self.world.clock.now() {
            let _ = self.world.clock.set(target);
        }
    }
}

/// Maps a path on this server to the service URL it stands for.
fn service_url(base: &str, path: &str) -> Option<String> {
    let under = |prefix: &str| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with(['/', '?'])).then_some(rest)
    };
    if let Some(rest) = under("/login") {
        Some(format!("https://login.microsoftonline.com{rest}"))
    } else if let Some(rest) = under("/graph") {
        Some(format!("https://graph.microsoft.com{rest}"))
    } else {
        under("/zenqms").map(|rest| format!("{base}/zenqms{rest}"))
    }
}

fn error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"error": {"code": "serve", "message": message}}),
    )
}

/// Graph's validation handshake goes to a second component instance (another worker, as on
/// the platform), with no network. Unlike a replay, the subscriber may be any client, so every
/// notification URL is answered, as the instance whose webhook URL it is.
fn handshake_route(runtime: &'static Runtime, scenario: &Scenario) -> Webhook {
    let config = scenario.instance.config_pairs();
    let id = scenario.instance.id.clone();
    let budget_ms = scenario.budget_ms;
    Box::new(move |req: HttpRequest| {
        let instance = Instance {
            id: id.clone(),
            webhook_url: req.url.split('?').next().unwrap_or_default().to_string(),
            config: config.clone(),
            state: None,
            budget_ms,
            inbox: Vec::new(),
        };
        crate::scenario::runner::answer_handshake(
            runtime,
            &instance,
            req,
            World::offline(Utc::now()),
        )
    })
}

/// `host-test serve <scenario.json> [--port P] [--requests N] [--seconds S]`.
pub fn cli(args: &ServeArgs) -> Result<bool> {
    let bound = Bound {
        requests: args.requests,
        seconds: args.seconds,
        ..Bound::default()
    };
    let port = args.port;
    let path = args.scenario.display().to_string();
    let scenario = Scenario::load(&args.scenario)?;
    let tenant = scenario.entra.tenant_id.clone();
    let server = Server::bind(scenario, port)?;
    let base = server.base_url().to_string();
    println!("Serving {path} at {base} (Ctrl-C to stop)");
    println!("  token endpoint  {base}/login/{tenant}/oauth2/v2.0/token");
    println!("  Graph           {base}/graph/v1.0/…");
    println!("  ZenQMS          {base}/zenqms  (use it as zenqms_base_url)");
    println!("  clock: real time (the scenario's `now` is not used)");
    // The request lines come from whoever calls the server: printed escaped and capped.
    let world = server.run(&bound, |line| {
        println!(
            "{}",
            crate::scenario::report::shown(line, entra_zenqms::log::escape::MESSAGE_CAP)
        )
    })?;
    println!(
        "Stopped after {} requests; {} ZenQMS users",
        world.stats.requests,
        world.zenqms.users().len()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::service_url;

    #[test]
    fn maps_prefixes_to_service_urls() {
        let b = "http://127.0.0.1:8080";
        assert_eq!(
            service_url(b, "/graph/v1.0/users?$top=1").as_deref(),
            Some("https://graph.microsoft.com/v1.0/users?$top=1")
        );
        assert_eq!(
            service_url(b, "/login/t/oauth2/v2.0/token").as_deref(),
            Some("https://login.microsoftonline.com/t/oauth2/v2.0/token")
        );
        assert_eq!(
            service_url(b, "/zenqms/v2/roles").as_deref(),
            Some("http://127.0.0.1:8080/zenqms/v2/roles")
        );
        assert_eq!(service_url(b, "/graphx/v1.0/users"), None);
        assert_eq!(service_url(b, "/"), None);
    }
}
