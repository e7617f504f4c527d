//! The component's code run natively (the `entra_zenqms` crate as a plain dependency) against a
//! simulated [`World`], exactly as wasmtime runs it: same HTTP routing and accounting, same
//! virtual clock, same platform loop (resume while pending). The benchmark compares the two to
//! show what WebAssembly costs.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};
use entra_zenqms::handlers::{self, CallFailure, Event, Instance, Outcome};
use entra_zenqms::platform::{self, HttpError, HttpResult, Level, Method, Platform};
use serde_json::json;

use crate::host::driver::{self, CallEnd, Policy};
use crate::host::runtime::LogLine;
use crate::scenario::runner;
use crate::scenario::{Scenario, Step};
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::world::{Refused, Target, Webhook, World};

/// One request the component sent, as the benchmark classifies it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Virtual time when it was sent, ms since the world's start.
    pub at_ms: u64,
    pub method: &'static str,
    pub url: String,
    pub target: Option<Target>,
    /// A request inside a Graph `$batch` (recorded after the batch itself, which is the HTTP
    /// request): not a request of its own, but Graph charges it.
    pub in_batch: bool,
}

/// The platform for one native call: the world, the call's log, and the time spent serving
/// requests (the simulated services' host code, not the component's).
pub struct NativePlatform {
    world: RefCell<World>,
    started_ms: u64,
    logs: RefCell<Vec<LogLine>>,
    seed: Cell<u64>,
    service: Cell<Duration>,
    sent: RefCell<Vec<Sent>>,
}

/// What a native call leaves behind.
pub struct CallParts {
    pub world: World,
    pub logs: Vec<LogLine>,
    pub service: Duration,
    pub sent: Vec<Sent>,
}

fn method_from(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        _ => Method::Post,
    }
}

fn to_http(req: platform::Request) -> HttpRequest {
    HttpRequest {
        method: req.method.as_str().into(),
        url: req.url,
        headers: req.headers,
        body: req.body,
    }
}

fn from_http(r: Result<HttpResponse, Refused>) -> HttpResult {
    r.map(|resp| platform::Response {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
        unanswered_before: None,
    })
    .map_err(|e| match e {
        Refused::Denied(why) => HttpError::Denied(why),
        Refused::Timeout => HttpError::Timeout,
    })
}

impl NativePlatform {
    pub fn new(world: World) -> Self {
        let started_ms = world.clock.elapsed_ms();
        NativePlatform {
            world: RefCell::new(world),
            started_ms,
            logs: RefCell::new(Vec::new()),
            seed: Cell::new(started_ms ^ 0x5eed),
            service: Cell::new(Duration::ZERO),
            sent: RefCell::new(Vec::new()),
        }
    }

    pub fn finish(self) -> CallParts {
        CallParts {
            world: self.world.into_inner(),
            logs: self.logs.into_inner(),
            service: self.service.get(),
            sent: self.sent.into_inner(),
        }
    }

    fn record(&self, world: &World, reqs: &[HttpRequest]) {
        let at_ms = world.clock.elapsed_ms();
        let mut sent = self.sent.borrow_mut();
        for r in reqs {
            let target = world.route(&r.url);
            sent.push(Sent {
                at_ms,
                method: method_from(&r.method).as_str(),
                url: r.url.clone(),
                target,
                in_batch: false,
            });
            if target == Some(Target::Graph)
                && r.url
                    .split('?')
                    .next()
                    .is_some_and(|p| p.ends_with("/$batch"))
            {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let root = r.url.split("/$batch").next().unwrap_or_default();
                for item in body["requests"].as_array().into_iter().flatten() {
                    let url = item["url"].as_str().unwrap_or_default();
                    let sep = if url.starts_with('/') { "" } else { "/" };
                    sent.push(Sent {
                        at_ms,
                        method: method_from(item["method"].as_str().unwrap_or_default()).as_str(),
                        url: format!("{root}{sep}{url}"),
                        target,
                        in_batch: true,
                    });
                }
            }
        }
    }

    /// Runs `f` on the world, counting its time as the services', not the component's.
    fn serve<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let started = Instant::now();
        let out = f(&mut self.world.borrow_mut());
        self.service.set(self.service.get() + started.elapsed());
        out
    }
}

impl Platform for NativePlatform {
    fn send(&self, req: platform::Request) -> HttpResult {
        let req = to_http(req);
        self.serve(|w| {
            self.record(w, std::slice::from_ref(&req));
            from_http(w.send(&req))
        })
    }

    fn send_all(&self, reqs: Vec<platform::Request>) -> Vec<HttpResult> {
        if reqs.is_empty() {
            return Vec::new(); // as the WIT glue: an empty send-all never reaches the host
        }
        let reqs: Vec<HttpRequest> = reqs.into_iter().map(to_http).collect();
        self.serve(|w| {
            self.record(w, &reqs);
            w.send_all(&reqs).into_iter().map(from_http).collect()
        })
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.borrow_mut().push(LogLine {
            level: level.into(),
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    fn now(&self) -> DateTime<Utc> {
        self.world.borrow().clock.now()
    }

    fn elapsed_ms(&self) -> u64 {
        self.world.borrow().clock.elapsed_ms() - self.started_ms
    }

    /// Deterministic (splitmix64): the benchmark needs repeatable runs, not secrecy.
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            let mut z = self.seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.seed.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn concurrency(&self) -> usize {
        self.world.borrow().concurrency as usize
    }

    fn wait(&self, ms: u32) {
        self.world.borrow_mut().wait(ms);
    }
}

/// Cost of the native calls so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeMetrics {
    pub calls: u64,
    /// Real time inside the handlers, services included.
    pub cpu: Duration,
    /// Of which the simulated services' host code.
    pub service: Duration,
}

#[derive(Clone)]
enum Handler {
    Deploy,
    Event(Event),
    Delete,
}

/// The platform loop of [`crate::scenario::runner::Runner`], with native handlers. Supports the steps a
/// benchmark needs: deploy, resume, schedule, delete, advance, entra changes and notify.
pub struct NativeRunner {
    scenario: Scenario,
    world: Option<World>,
    pub state: Option<String>,
    pub metrics: NativeMetrics,
    /// Every request sent since the last [`NativeRunner::take_sent`].
    sent: Vec<Sent>,
    pub logs: Vec<LogLine>,
    /// Every call's end, in order: the state it returned (none: kept the stored one) and
    /// whether it was pending (a failure: false).
    pub trace: Vec<(Option<String>, bool)>,
    /// The instance's inbox (`seq`, item), kept as the platform keeps it (WIT 0.2.0).
    pub inbox: Vec<(u64, String)>,
    next_seq: u64,
}

impl NativeRunner {
    pub fn new(scenario: Scenario) -> Self {
        let mut world = World::new(&scenario.seed());
        world.webhook = Some(validation_route(&scenario));
        NativeRunner {
            scenario,
            world: Some(world),
            state: None,
            metrics: NativeMetrics::default(),
            sent: Vec::new(),
            logs: Vec::new(),
            trace: Vec::new(),
            inbox: Vec::new(),
            next_seq: 1,
        }
    }

    pub fn world(&self) -> &World {
        self.world.as_ref().expect("world is home between calls")
    }

    pub fn world_mut(&mut self) -> &mut World {
        self.world.as_mut().expect("world is home between calls")
    }

    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    fn instance(&self, webhook: bool) -> Instance {
        let mut inst = instance(&self.scenario, self.state.clone());
        if !webhook {
            inst.inbox = self.inbox.clone();
        }
        inst
    }

    fn call_once(&mut self, handler: &Handler) -> Result<Outcome, CallFailure> {
        let inst = self.instance(matches!(handler, Handler::Event(Event::Webhook(_))));
        let p = NativePlatform::new(self.world.take().expect("world is home"));
        let started = Instant::now();
        let result = match handler {
            Handler::Deploy => handlers::deploy(&p, &inst),
            Handler::Event(e) => handlers::event(&p, &inst, e),
            Handler::Delete => handlers::delete(&p, &inst),
        };
        let cpu = started.elapsed();
        let parts = p.finish();
        self.world = Some(parts.world);
        self.metrics.calls += 1;
        self.metrics.cpu += cpu;
        self.metrics.service += parts.service;
        self.sent.extend(parts.sent);
        self.logs.extend(parts.logs);
        let (kept, pending) = match &result {
            Ok(o) => (o.state.clone(), o.pending),
            Err(f) => (f.state.clone(), false),
        };
        // The platform's inbox: drop what was taken, append what a webhook accepted.
        let (taken, accepted) = match &result {
            Ok(o) => (o.taken.clone(), o.inbox.clone()),
            Err(f) => (f.taken.clone(), Vec::new()),
        };
        self.inbox.retain(|(seq, _)| !taken.contains(seq));
        for item in accepted {
            self.inbox.push((self.next_seq, item));
            self.next_seq += 1;
        }
        self.trace.push((kept.clone(), pending));
        if kept.is_some() {
            self.state = kept;
        }
        result
    }

    /// Calls a handler, then `resume` while pending; the first outcome (for its response).
    fn invoke(&mut self, handler: Handler) -> Result<Outcome> {
        let driven = driver::drive(
            handler,
            Handler::Event(Event::Resume),
            Policy::default(),
            |o: &Outcome| o.pending,
            |h| match self.call_once(h) {
                Ok(o) => CallEnd::Done(o),
                Err(f) => CallEnd::Failed {
                    message: format!("{} (retryable: {})", f.message, f.retryable),
                    retryable: f.retryable,
                },
            },
            || {},
        );
        match (driven.error, driven.first) {
            (Some(e), _) => bail!("{e}"),
            (None, Some(first)) => Ok(first),
            (None, None) => bail!("no outcome"),
        }
    }

    /// Runs one step; a failing call is an error.
    pub fn run_step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Deploy(_) => {
                self.invoke(Handler::Deploy)?;
            }
            Step::Resume(_) => {
                self.invoke(Handler::Event(Event::Resume))?;
            }
            Step::Schedule(_) => {
                self.invoke(Handler::Event(Event::Schedule))?;
            }
            Step::Delete(_) => {
                self.invoke(Handler::Delete)?;
                self.state = None;
            }
            Step::Advance(a) => self.world().clock.set(a.to)?,
            Step::Entra(change) => self.world_mut().apply_entra(change)?,
            Step::Notify(n) => {
                let req = self.notification(&n.resource, &n.objects()?, &n.change_type)?;
                let outcome = self.invoke(Handler::Event(Event::Webhook(req)))?;
                if let Some(r) = outcome.response.filter(|r| !r.is_success()) {
                    bail!("webhook answered {}", r.status);
                }
            }
            other => bail!("step '{}' is not supported natively", other.kind()),
        }
        Ok(())
    }

    /// A change notification exactly as the runner builds it from our subscription.
    fn notification(
        &self,
        resource: &str,
        ids: &[String],
        change: &str,
    ) -> Result<platform::Request> {
        let resource = resource.trim_start_matches('/').to_ascii_lowercase();
        let kind = runner::notified_kind(&resource)?;
        let subs = self.world().graph.subscriptions(self.world().clock.now());
        let sub = subs
            .iter()
            .find(|s| s["resource"].as_str().map(|r| r.trim_start_matches('/')) == Some(&resource))
            .ok_or_else(|| anyhow!("the component has no active subscription on '{resource}'"))?;
        let tenant = &self.scenario.entra.tenant_id;
        let items: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| runner::change_item(sub, kind, id, change, tenant))
            .collect();
        Ok(platform::Request {
            method: Method::Post,
            url: self.scenario.instance.webhook_url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "value": items }).to_string().into_bytes(),
        })
    }
}

fn instance(scenario: &Scenario, state: Option<String>) -> Instance {
    Instance {
        id: scenario.instance.id.clone(),
        webhook_url: scenario.instance.webhook_url.clone(),
        config: scenario.instance.config_pairs(),
        state,
        budget_ms: scenario.budget_ms,
        inbox: Vec::new(),
    }
}

/// Graph's validation handshake, answered natively by a fresh "worker" with no network, as the
/// runner's route answers it with a second wasm instance.
fn validation_route(scenario: &Scenario) -> Webhook {
    let inst = instance(scenario, None);
    let start = scenario.now;
    Box::new(move |req: HttpRequest| {
        if !req.url.starts_with(&inst.webhook_url) {
            return HttpResponse::empty(404);
        }
        let p = NativePlatform::new(World::offline(start));
        let event = Event::Webhook(platform::Request {
            method: method_from(&req.method),
            url: req.url,
            headers: req.headers,
            body: req.body,
        });
        match handlers::event(&p, &inst, &event) {
            Ok(Outcome {
                response: Some(r), ..
            }) => HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            },
            Ok(_) => HttpResponse::empty(202),
            Err(_) => HttpResponse::empty(500),
        }
    })
}

/// Requests by target, as [`crate::sim::world::HttpStats::by_target`] counts them.
pub fn by_target(sent: &[Sent]) -> BTreeMap<Target, u64> {
    let mut out: BTreeMap<Target, u64> = BTreeMap::new();
    for s in sent.iter().filter(|s| !s.in_batch) {
        *out.entry(s.target.unwrap_or(Target::Denied)).or_default() += 1;
    }
    out
}
