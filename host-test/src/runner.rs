//! Runs a scenario against the real component: plays the platform (deploy, webhooks, ticks,
//! resumes, delete), applies the world's changes between calls, and records every step.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

use serde_json::{Value, json};

use crate::http_types::{HttpRequest, HttpResponse};
use crate::report::{self, Report, ResponseRecord, StepRecord};
use crate::runtime::{Event, Instance, LogLine, Method, Outcome, Request, Runtime, WitFailure};
use crate::scenario::{Scenario, Step, WebhookSpec, ZenqmsChange};
use crate::world::World;

/// Bound on resume calls after one step, so a component that never finishes fails the step.
pub const MAX_CALLS_PER_STEP: u32 = 10_000;

/// Which export to call.
enum Handler {
    Deploy,
    Event(Event),
    Delete,
}

/// The platform playing one scenario.
pub struct Runner {
    runtime: &'static Runtime,
    scenario: Scenario,
    world: Option<World>,
    /// The instance state as the platform stores it.
    pub state: Option<String>,
    /// Every state the component returned, in order (for the secrets test).
    pub state_history: Vec<String>,
}

/// What one call returned, seen from the platform.
struct CallResult {
    outcome: Option<Outcome>,
    error: Option<String>,
    /// The component said a retry may succeed.
    retryable: bool,
}

/// With injected faults, the platform retries a call that failed retryably (as a real platform
/// would, and as Graph redelivers a notification answered with 5xx), this many times.
pub const PLATFORM_RETRIES: u32 = 20;
/// ...waiting this long (virtual time) before each retry.
pub const PLATFORM_RETRY_DELAY_MS: u64 = 30_000;

impl Runner {
    pub fn new(runtime: &'static Runtime, scenario: Scenario) -> Self {
        let mut world = World::new(&scenario);
        world.webhook = Some(validation_route(runtime, &scenario));
        Runner {
            runtime,
            scenario,
            world: Some(world),
            state: None,
            state_history: Vec::new(),
        }
    }

    pub fn world(&self) -> &World {
        self.world.as_ref().expect("world is home between calls")
    }

    pub fn world_mut(&mut self) -> &mut World {
        self.world.as_mut().expect("world is home between calls")
    }

    fn instance(&self) -> Instance {
        Instance {
            id: self.scenario.instance.id.clone(),
            webhook_url: self.scenario.instance.webhook_url.clone(),
            config: self.scenario.instance.config_pairs(),
            state: self.state.clone(),
            budget_ms: self.scenario.budget_ms,
        }
    }

    fn call_once(&mut self, handler: &Handler, rec: &mut StepRecord) -> CallResult {
        let inst = self.instance();
        let world = self.world.take().expect("world is home");
        let (world, logs, result) = self.runtime.call(world, |b, store| match handler {
            Handler::Deploy => b.call_on_deploy(store, &inst),
            Handler::Event(e) => b.call_on_event(store, &inst, e),
            Handler::Delete => b.call_on_delete(store, &inst),
        });
        self.world = Some(world);
        rec.calls += 1;
        rec.logs.extend(logs);
        match result {
            Err(trap) => {
                let msg = format!("component trapped: {trap:#}");
                rec.logs.push(platform_log(&msg));
                CallResult {
                    outcome: None,
                    error: Some(msg),
                    retryable: false,
                }
            }
            Ok(Ok(outcome)) => {
                if let Some(s) = &outcome.state {
                    self.state = Some(s.clone());
                    self.state_history.push(s.clone());
                }
                CallResult {
                    outcome: Some(outcome),
                    error: None,
                    retryable: false,
                }
            }
            Ok(Err(WitFailure {
                message,
                state,
                retryable,
            })) => {
                if let Some(s) = state {
                    self.state_history.push(s.clone());
                    self.state = Some(s);
                }
                let kind = if retryable {
                    "retryable"
                } else {
                    "not retryable"
                };
                CallResult {
                    outcome: None,
                    error: Some(format!("{message} ({kind})")),
                    retryable,
                }
            }
        }
    }

    /// Calls `on-deploy` once, without resuming (to test what happens to a pending sync).
    pub fn deploy_once(&mut self) -> StepRecord {
        let mut rec = StepRecord::new(0, "deploy");
        let result = self.call_once(&Handler::Deploy, &mut rec);
        rec.error = result.error;
        rec.summary = result.outcome.map(|o| o.summary);
        rec.ok = rec.error.is_none();
        rec
    }

    /// Calls a handler, then `resume` while the component reports pending work.
    fn invoke(&mut self, handler: Handler, rec: &mut StepRecord) -> Option<Outcome> {
        let mut first = None;
        let mut current = handler;
        let mut result = self.call_once(&current, rec);
        let mut retries = 0;
        loop {
            if let Some(e) = result.error {
                if result.retryable && self.scenario.faults.is_some() && retries < PLATFORM_RETRIES
                {
                    retries += 1;
                    self.world().clock.advance_ms(PLATFORM_RETRY_DELAY_MS);
                    result = self.call_once(&current, rec);
                    continue;
                }
                rec.error = Some(e);
                return first;
            }
            let outcome = result.outcome.expect("no error means an outcome");
            rec.summary = Some(outcome.summary.clone());
            let pending = outcome.pending;
            if first.is_none() {
                first = Some(outcome);
            }
            if !pending {
                return first;
            }
            if rec.calls >= MAX_CALLS_PER_STEP {
                rec.error = Some(format!("still pending after {MAX_CALLS_PER_STEP} calls"));
                return first;
            }
            current = Handler::Event(Event::Resume);
            result = self.call_once(&current, rec);
        }
    }

    /// A notification exactly as Graph would build it from the component's subscription.
    fn notification(&self, resource: &str, build: impl Fn(&Value) -> Value) -> Result<Request> {
        let now = self.world().clock.now();
        let subs = self.world().graph.subscriptions(now);
        let sub = subs
            .iter()
            .find(|s| s["resource"].as_str().map(|r| r.trim_start_matches('/')) == Some(resource))
            .ok_or_else(|| anyhow!("the component has no active subscription on '{resource}'"))?;
        let body = json!({ "value": [build(sub)] });
        Ok(Request {
            method: Method::Post,
            url: self.scenario.instance.webhook_url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }

    /// Runs one step (also usable for steps built by a test from what it observed).
    pub fn run_step(&mut self, index: usize, step: &Step) -> StepRecord {
        let mut rec = StepRecord::new(index, step.kind());
        if let Err(e) = self.step_inner(step, &mut rec) {
            rec.error = Some(format!("{e:#}"));
        }
        rec.ok = rec.error.is_none();
        rec
    }

    fn step_inner(&mut self, step: &Step, rec: &mut StepRecord) -> Result<()> {
        let tenant = self.scenario.entra.tenant_id.clone();
        match step {
            Step::Deploy(_) => {
                self.invoke(Handler::Deploy, rec);
            }
            Step::Resume(_) => {
                self.invoke(Handler::Event(Event::Resume), rec);
            }
            Step::Schedule(_) => {
                self.invoke(Handler::Event(Event::Schedule), rec);
            }
            Step::Delete(_) => {
                self.invoke(Handler::Delete, rec);
                if rec.error.is_none() {
                    self.state = None; // the platform forgets a deleted instance
                }
            }
            Step::Advance(a) => self.world().clock.set(a.to)?,
            Step::Entra(change) => self.world_mut().apply_entra(change)?,
            Step::Zenqms(ZenqmsChange::UpdateUser(fields)) => {
                self.world_mut().zenqms.update_user(fields)?
            }
            Step::Zenqms(ZenqmsChange::FailWrites(f)) => {
                let usual = serde_json::json!({"error": {"code": "unavailable", "message": "simulated outage"}});
                self.world_mut().zenqms_outage = Some(crate::world::Outage::new(f, usual));
            }
            Step::Configure(changes) => {
                for (key, value) in changes {
                    if value.is_null() {
                        self.scenario.instance.config.remove(key);
                    } else {
                        self.scenario
                            .instance
                            .config
                            .insert(key.clone(), value.clone());
                    }
                }
            }
            Step::Webhook(spec) => {
                let req = webhook_request(spec, &self.scenario.instance.webhook_url)?;
                self.deliver(req, rec);
            }
            Step::Notify(n) => {
                let resource = n.resource.trim_start_matches('/').to_ascii_lowercase();
                let kind = notified_kind(&resource)?;
                let req = self.notification(&resource, |sub| {
                    change_item(sub, kind, &n.id, &n.change_type, &tenant)
                })?;
                self.deliver(req, rec);
            }
            Step::Lifecycle(l) => {
                let resource = l.resource.trim_start_matches('/').to_ascii_lowercase();
                let event = l.event.clone();
                let req = self.notification(&resource, |sub| {
                    json!({
                        "subscriptionId": sub["id"],
                        "subscriptionExpirationDateTime": sub["expirationDateTime"],
                        "clientState": sub["clientState"],
                        "lifecycleEvent": event,
                        "resource": resource,
                        "tenantId": tenant,
                        "organizationId": tenant,
                    })
                })?;
                self.deliver(req, rec);
            }
        }
        Ok(())
    }

    /// Delivers an inbound request to the webhook handler and records the reply.
    fn deliver(&mut self, req: Request, rec: &mut StepRecord) {
        let outcome = self.invoke(Handler::Event(Event::Webhook(req)), rec);
        let reply = outcome
            .and_then(|o| o.response)
            .map(|r| ResponseRecord::new(r.status, r.headers, &r.body));
        rec.response = Some(ResponseRecord::answered(reply, rec.error.is_some()));
    }

    /// Runs every step in order, reporting each as it ends.
    pub fn run_steps(&mut self, mut on_step: impl FnMut(&StepRecord)) -> Vec<StepRecord> {
        let steps = self.scenario.steps.clone();
        steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let rec = self.run_step(i, step);
                on_step(&rec);
                rec
            })
            .collect()
    }

    /// The report of the steps run (with the expectation check).
    pub fn report(mut self, records: Vec<StepRecord>) -> Report {
        let world = self.world.take().expect("world is home");
        report::build(&self.scenario, records, &world)
    }

    /// Runs every step, then builds the report.
    pub fn run(mut self, on_step: impl FnMut(&StepRecord)) -> Report {
        let records = self.run_steps(on_step);
        self.report(records)
    }
}

/// The inbound request a webhook spec describes, to the instance's webhook URL.
pub fn webhook_request(spec: &WebhookSpec, webhook_url: &str) -> Result<Request> {
    let method = match spec.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => bail!("unsupported webhook method {other}"),
    };
    let mut url = webhook_url.to_string();
    if !spec.query.is_empty() {
        url = format!("{url}?{}", spec.query.trim_start_matches('?'));
    }
    let body = match (&spec.body, &spec.body_text) {
        (Some(_), Some(_)) => bail!("a webhook request has either body or body_text"),
        (Some(v), None) => v.to_string().into_bytes(),
        (None, Some(t)) => t.clone().into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut headers: Vec<(String, String)> = spec.headers.clone().into_iter().collect();
    if spec.body.is_some()
        && !spec
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Ok(Request {
        method,
        url,
        headers,
        body,
    })
}

/// The platform's route for requests Graph sends to the webhook while the component is busy in
/// another call: a fresh instance (another worker) with the stored config, on the same clock,
/// with no network and a clock of its own (a handshake needs neither).
fn validation_route(runtime: &'static Runtime, scenario: &Scenario) -> crate::world::Webhook {
    let webhook_url = scenario.instance.webhook_url.clone();
    let instance = Instance {
        id: scenario.instance.id.clone(),
        webhook_url: webhook_url.clone(),
        config: scenario.instance.config_pairs(),
        state: None,
        budget_ms: scenario.budget_ms,
    };
    let clock_start = scenario.now;
    Box::new(move |req: HttpRequest| {
        if !req.url.starts_with(&webhook_url) {
            return HttpResponse::empty(404); // not a URL the platform serves
        }
        answer_handshake(runtime, &instance, req, World::offline(clock_start))
    })
}

/// Delivers a request Graph sent to the webhook to a fresh component instance (another worker)
/// and returns its answer as the platform would relay it.
pub fn answer_handshake(
    runtime: &Runtime,
    instance: &Instance,
    req: HttpRequest,
    world: World,
) -> HttpResponse {
    let wit_req = Request {
        method: Method::Post,
        url: req.url,
        headers: req.headers,
        body: req.body,
    };
    let (_, _, result) = runtime.call(world, |b, store| {
        b.call_on_event(store, instance, &Event::Webhook(wit_req))
    });
    match result {
        Ok(Ok(Outcome {
            response: Some(r), ..
        })) => HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        },
        Ok(Ok(_)) => HttpResponse::empty(202),
        _ => HttpResponse::empty(500),
    }
}

fn platform_log(message: &str) -> LogLine {
    LogLine {
        level: "error".into(),
        message: message.into(),
        fields: BTreeMap::from([("source".to_string(), "platform".to_string())]),
    }
}

/// Convenience: run a scenario with the shared runtime.
pub fn run(scenario: Scenario) -> Report {
    Runner::new(Runtime::shared(), scenario).run(|_| {})
}

/// The Graph path and `@odata.type` of a notified resource (`users` or `groups`).
pub fn notified_kind(resource: &str) -> Result<(&'static str, &'static str)> {
    Ok(match resource {
        "users" => ("Users", "#Microsoft.Graph.User"),
        "groups" => ("Groups", "#Microsoft.Graph.Group"),
        other => bail!("notify: unknown resource '{other}'"),
    })
}

/// One change notification exactly as Graph posts it, from our subscription `sub`.
pub fn change_item(
    sub: &Value,
    (path, odata_type): (&str, &str),
    id: &str,
    change: &str,
    tenant: &str,
) -> Value {
    json!({
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "clientState": sub["clientState"],
        "changeType": change,
        "resource": format!("{path}/{id}"),
        "tenantId": tenant,
        "resourceData": {
            "@odata.type": odata_type,
            "@odata.id": format!("{path}/{id}"),
            "id": id,
            "organizationId": tenant,
        }
    })
}
