//! Live mode's platform side: the store data whose `http` import does real HTTP (with the
//! simulator's host allowlist), whose `wait` really sleeps and whose `log` prints, and the
//! compiled component linked against it.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use chrono::Utc;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use super::exchange::{Exchange, NetError};
use super::record::Recorder;
use crate::host::runtime::zenqms::entra_sync::{http, log, types};
use crate::host::runtime::{
    COMPONENT_WASM, HttpError, Integration, IntegrationPre, Level, LogLine, Request, Response,
    to_http,
};
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

/// Per-call store data of a live call.
pub struct LiveState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub net: Net,
    pub logs: Vec<LogLine>,
}

impl WasiView for LiveState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn to_wit(r: Result<HttpResponse, NetError>) -> Result<Response, HttpError> {
    match r {
        Ok(resp) => Ok(Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        }),
        Err(NetError::Denied(why)) => Err(HttpError::Denied(why)),
        Err(NetError::Timeout) => Err(HttpError::Timeout),
        Err(NetError::Transport(why)) => Err(HttpError::Transport(why)),
    }
}

impl types::Host for LiveState {}

impl http::Host for LiveState {
    fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        to_wit(self.net.send(to_http(req)))
    }

    fn send_all(&mut self, reqs: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let reqs = reqs.into_iter().map(to_http).collect();
        self.net.send_all(reqs).into_iter().map(to_wit).collect()
    }

    fn concurrency(&mut self) -> u32 {
        u32::try_from(self.net.concurrency).unwrap_or(u32::MAX)
    }

    fn wait(&mut self, ms: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
    }
}

impl log::Host for LiveState {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        // Printed escaped and capped, whatever the component sent (report::shown), fields in
        // the order the component wrote them.
        use crate::scenario::report::shown;
        use entra_zenqms::escape::{FIELD_CAP, KEY_CAP, MESSAGE_CAP};
        let text: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", shown(k, KEY_CAP), shown(v, FIELD_CAP)))
            .collect();
        let line = LogLine::new(level, message, fields);
        println!(
            "{:<5} {} {}",
            line.level,
            shown(&line.message, MESSAGE_CAP),
            text.join(" ")
        );
        self.logs.push(line);
    }
}

/// The component linked against [`LiveState`].
pub struct LiveRuntime {
    engine: Engine,
    pre: IntegrationPre<LiveState>,
}

static LIVE: OnceLock<LiveRuntime> = OnceLock::new();

impl LiveRuntime {
    /// Compiled once per process (it takes seconds).
    pub fn shared() -> Result<&'static LiveRuntime> {
        // One compile even when several threads (tests) ask at once.
        static COMPILING: Mutex<()> = Mutex::new(());
        let _guard = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = LIVE.get() {
            return Ok(r);
        }
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let component = Component::from_file(&engine, COMPONENT_WASM)
            .map_err(|e| anyhow!("loading component {COMPONENT_WASM}: {e:?}"))?;
        let mut linker = Linker::<LiveState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // The platform's own interfaces; `wasi:random/random` came with WASI above.
        crate::host::runtime::zenqms::entra_sync::http::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )?;
        crate::host::runtime::zenqms::entra_sync::log::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )?;
        let pre = IntegrationPre::new(linker.instantiate_pre(&component)?)?;
        Ok(LIVE.get_or_init(|| LiveRuntime { engine, pre }))
    }

    /// One handler call on a fresh instance with the real clocks and no WASI network; the
    /// network comes back with the call's log lines, whatever the outcome.
    pub fn call<R>(
        &self,
        net: Net,
        f: impl FnOnce(&Integration, &mut Store<LiveState>) -> wasmtime::Result<R>,
    ) -> (Net, Vec<LogLine>, Result<R>) {
        let mut builder = WasiCtx::builder();
        builder
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        let state = LiveState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            net,
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|bindings| f(&bindings, &mut store));
        let data = store.into_data();
        (data.net, data.logs, result.map_err(|e| anyhow!("{e:?}")))
    }
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
