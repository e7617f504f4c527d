//! Runs a scenario against the real component: plays the platform (deploy, webhooks, ticks,
//! resumes, delete), applies the world's changes between calls, and records every step.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};

use serde_json::{Value, json};

use crate::host::driver::{self, CallEnd, Policy};
use crate::host::runtime::{
    Action, Event, InboxItem, Instance, LogLine, Method, Outcome, Request, Runtime, WitFailure,
};
use crate::scenario::report::{self, Report, ResponseRecord, StepRecord, Violation};
use crate::scenario::{Scenario, Step, WebhookSpec, ZenqmsChange};
use crate::sim::delivery::{Admission, Later};
use crate::sim::fake_zenqms::{Aspect, Change};
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::world::World;

/// Bound on resume calls after one step, so a component that never finishes fails the step.
pub use crate::host::driver::MAX_CALLS_PER_STEP;

/// The shortest configured secret with which the `audit` invariant is checked (see
/// `Runner::audit_lines_readable`).
const AUDIT_SECRET_MIN: usize = 4;

/// Which export to call.
#[derive(Clone)]
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
    /// Invariant violations found so far (at most one per step and invariant).
    invariants: Vec<Violation>,
    /// The index of the step being run (for violations).
    step_index: usize,
    /// The state last read for the invariant, and the subscriptions it holds.
    held: Option<(Option<String>, HeldOrError)>,
    /// The instance's inbox, as the platform keeps it (WIT 0.2.0): what webhook calls
    /// accepted, until a serialized call reports it taken.
    pub inbox: Vec<InboxItem>,
    /// The `seq` the next inbox item gets.
    next_seq: u64,
    /// The last state revision stored: every state returned must be one higher (a lost
    /// update otherwise).
    revision: u64,
    /// Test-only: virtual time added before every webhook reply, to play a handler that works
    /// before it answers (it shows what Graph's delivery rules do to such an endpoint).
    pub reply_delay_ms: u64,
    /// Real time spent in webhook calls (the reply path), for the benchmark.
    pub webhook_cpu: std::time::Duration,
    /// Changes the component's ZenQMS writes made in the step being run, for the `audit`
    /// invariant (checked at the step's end).
    changes: Vec<Change>,
}

/// What one call returned, seen from the platform.
struct CallResult {
    outcome: Option<Outcome>,
    error: Option<String>,
    /// The component said a retry may succeed.
    retryable: bool,
}

/// The most state bytes a platform stores for an instance (64 KiB).
pub const STATE_MAX_BYTES: u64 = 64 * 1024;

/// With injected faults, the platform retries a call that failed retryably (as a real platform
/// would, and as Graph redelivers a notification answered with 5xx), this many times.
pub const PLATFORM_RETRIES: u32 = 20;
/// ...waiting this long (virtual time) before each retry.
pub const PLATFORM_RETRY_DELAY_MS: u64 = 30_000;

impl Runner {
    pub fn new(runtime: &'static Runtime, scenario: Scenario) -> Self {
        let mut world = World::new(&scenario.seed());
        world.webhook = Some(validation_route(runtime, &scenario));
        world.zenqms.keep_journal();
        Runner {
            runtime,
            scenario,
            world: Some(world),
            state: None,
            state_history: Vec::new(),
            invariants: Vec::new(),
            step_index: 0,
            held: None,
            inbox: Vec::new(),
            next_seq: 1,
            revision: 0,
            reply_delay_ms: 0,
            webhook_cpu: std::time::Duration::ZERO,
            changes: Vec::new(),
        }
    }

    /// The invariant violations found so far.
    pub fn invariants(&self) -> &[Violation] {
        &self.invariants
    }

    /// Checks the subscription invariant now (see `subscription_mismatch`) and records a
    /// violation, once per step.
    fn check_invariants(&mut self) {
        // The state is parsed again only when it changed (a long sync makes many calls).
        let cached = self
            .held
            .as_ref()
            .is_some_and(|(text, _)| *text == self.state);
        if !cached {
            let parsed = state_subscriptions(self.state.as_deref());
            self.held = Some((self.state.clone(), parsed));
        }
        let Some((_, held)) = &self.held else {
            return;
        };
        let world = self.world();
        let now = world.clock.now();
        let graph = world.graph.subscriptions(now);
        let mismatch = match held {
            Ok(held) => {
                compare_subscriptions(held, &graph, &self.scenario.instance.webhook_url, now)
            }
            Err(e) => Some(e.clone()),
        };
        let Some(detail) = mismatch else {
            return;
        };
        let step = self.step_index;
        if !self
            .invariants
            .iter()
            .any(|v| v.step == step && v.name == "subscriptions")
        {
            self.invariants.push(Violation {
                step,
                name: "subscriptions".into(),
                detail,
            });
        }
    }

    pub fn world(&self) -> &World {
        self.world.as_ref().expect("world is home between calls")
    }

    pub fn world_mut(&mut self) -> &mut World {
        self.world.as_mut().expect("world is home between calls")
    }

    fn instance(&self, webhook: bool) -> Instance {
        Instance {
            id: self.scenario.instance.id.clone(),
            webhook_url: self.scenario.instance.webhook_url.clone(),
            config: self.scenario.instance.config_pairs(),
            state: self.state.clone(),
            budget_ms: self.scenario.budget_ms,
            // A webhook call may run beside the serialized ones: it is not given the inbox.
            inbox: if webhook {
                Vec::new()
            } else {
                self.inbox.clone()
            },
        }
    }

    /// What the platform does with a call's inbox fields: drops exactly the items taken,
    /// appends a webhook's accepted items, and checks the state revision.
    fn keep_inbox(
        &mut self,
        taken: &[u64],
        accepted: Vec<String>,
        has_state: bool,
        revision: Option<u64>,
    ) {
        if has_state != revision.is_some() {
            self.platform_violation(
                "revision",
                format!("state returned: {has_state}, state-revision: {revision:?}"),
            );
        }
        self.inbox.retain(|i| !taken.contains(&i.seq));
        for item in accepted {
            self.inbox.push(InboxItem {
                seq: self.next_seq,
                item,
            });
            self.next_seq += 1;
        }
        if let Some(r) = revision {
            if r != self.revision + 1 && self.revision != 0 {
                self.platform_violation(
                    "revision",
                    format!("state revision {r} returned over stored {}", self.revision),
                );
            }
            self.revision = r;
        }
    }

    /// Stores a state the component returned, as the platform does, and checks its size: a
    /// platform keeps at most [`STATE_MAX_BYTES`] per instance (see `wit/world.wit`), so a
    /// bigger one is a `state-size` violation whatever the tenant's size.
    fn store_state(&mut self, s: String, rec: &mut StepRecord) {
        let bytes = s.len() as u64;
        rec.max_state_bytes = Some(rec.max_state_bytes.unwrap_or(0).max(bytes));
        if bytes > STATE_MAX_BYTES {
            self.platform_violation(
                "state-size",
                format!("a call returned {bytes} bytes of state (at most {STATE_MAX_BYTES})"),
            );
        }
        self.state_history.push(s.clone());
        self.state = Some(s);
    }

    fn platform_violation(&mut self, name: &str, detail: String) {
        let step = self.step_index;
        if !self
            .invariants
            .iter()
            .any(|v| v.step == step && v.name == name)
        {
            self.invariants.push(Violation {
                step,
                name: name.into(),
                detail,
            });
        }
    }

    fn call_once(&mut self, handler: &Handler, rec: &mut StepRecord) -> CallResult {
        let result = self.call_unchecked(handler, rec);
        // With injected faults a timed-out request can hide from the component what Graph did
        // (a subscription created, its response lost) until its next call repairs it: the
        // invariant is then checked at the end of each step only.
        // Between a webhook and the call that takes in its inbox item, state may lag what
        // Graph did (a `subscriptionRemoved` acted on by that next call): checked once the
        // inbox is empty, and at the end of the step.
        if self.scenario.faults.is_none() && self.inbox.is_empty() {
            self.check_invariants();
        }
        result
    }

    fn call_unchecked(&mut self, handler: &Handler, rec: &mut StepRecord) -> CallResult {
        let webhook = matches!(handler, Handler::Event(Event::Webhook(_)));
        let inst = self.instance(webhook);
        let world = self.world.take().expect("world is home");
        let started_ms = world.clock.elapsed_ms();
        let requests_before = world.stats.requests;
        let cpu_before = world.metrics.cpu;
        if webhook {
            // A handler that works before it answers (test-only): the reply is that late.
            world.clock.advance_ms(self.reply_delay_ms);
        }
        let (world, logs, result) = self.runtime.call(world, |b, store| match handler {
            Handler::Deploy => b.call_on_deploy(store, &inst),
            Handler::Event(e) => b.call_on_event(store, &inst, e),
            Handler::Delete => b.call_on_delete(store, &inst),
        });
        let mut world = world;
        self.changes.extend(world.zenqms.take_changes());
        let elapsed = world.clock.elapsed_ms().saturating_sub(started_ms);
        if std::env::var_os("HOST_TEST_TRACE_ROUNDS").is_some() {
            eprintln!(
                "CALL END {elapsed} ms (budget {} ms)",
                self.scenario.budget_ms
            );
        }
        world
            .stats
            .record_call(elapsed, self.scenario.budget_ms, self.scenario.rtt_ms);
        if webhook {
            self.webhook_cpu += world.metrics.cpu.saturating_sub(cpu_before);
        }
        if webhook && rec.reply_ms.is_none() {
            rec.reply_ms = Some(elapsed);
            rec.requests_before_reply = Some(world.stats.requests - requests_before);
            if elapsed > 0 || world.stats.requests > requests_before {
                let detail = format!(
                    "a webhook reply took {elapsed} ms and {} requests",
                    world.stats.requests - requests_before
                );
                self.world = Some(world);
                self.platform_violation("webhook-reply", detail);
                world = self.world.take().expect("world is home");
            }
        }
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
            Ok(Ok(mut outcome)) => {
                if webhook && outcome.state.is_some() {
                    self.platform_violation(
                        "webhook-reply",
                        "a webhook call returned state".into(),
                    );
                }
                if let Some(s) = &outcome.state {
                    self.store_state(s.clone(), rec);
                }
                let accepted = std::mem::take(&mut outcome.inbox);
                let has_state = outcome.state.is_some();
                self.keep_inbox(&outcome.taken, accepted, has_state, outcome.state_revision);
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
                taken,
                state_revision,
            })) => {
                let has_state = state.is_some();
                if let Some(s) = state {
                    self.store_state(s, rec);
                }
                self.keep_inbox(&taken, Vec::new(), has_state, state_revision);
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
        self.step_index = 0;
        let result = self.call_once(&Handler::Deploy, &mut rec);
        self.check_invariants();
        rec.error = result.error;
        rec.pending = result.outcome.as_ref().is_some_and(|o| o.pending);
        rec.summary = result.outcome.map(|o| o.summary);
        rec.ok = rec.error.is_none();
        rec
    }

    /// Calls a handler, then `resume` while the component reports pending work, making at most
    /// `max_calls` calls (platform retries included) when given.
    fn invoke(
        &mut self,
        handler: Handler,
        rec: &mut StepRecord,
        max_calls: Option<u32>,
    ) -> Option<Outcome> {
        let policy = Policy {
            retries: if self.scenario.faults.is_some() {
                PLATFORM_RETRIES
            } else {
                0
            },
            max_calls,
        };
        let world = std::cell::RefCell::new(self);
        // The platform resumes while work is pending or the inbox holds items.
        let inbox_left = std::cell::Cell::new(false);
        let driven = driver::drive(
            handler,
            Handler::Event(Event::Resume),
            policy,
            |o: &Outcome| o.pending || inbox_left.get(),
            |h| {
                let result = world.borrow_mut().call_once(h, rec);
                inbox_left.set(!world.borrow().inbox.is_empty());
                match (result.outcome, result.error) {
                    (Some(o), _) => {
                        rec.summary = Some(o.summary.clone());
                        CallEnd::Done(o)
                    }
                    (None, e) => CallEnd::Failed {
                        message: e.unwrap_or_default(),
                        retryable: result.retryable,
                    },
                }
            },
            || {
                world
                    .borrow_mut()
                    .world()
                    .clock
                    .advance_ms(PLATFORM_RETRY_DELAY_MS)
            },
        );
        if driven.error.is_some() {
            rec.error = driven.error;
        }
        rec.pending |= driven.pending;
        driven.first
    }

    /// The component's active subscription on `resource` (`users` or `groups`) as Graph holds
    /// it: on the instance's webhook URL, the one the state names if there are several.
    fn active_subscription(&self, resource: &str) -> Result<Value> {
        let now = self.world().clock.now();
        let webhook = self.scenario.instance.webhook_url.as_str();
        let mut subs: Vec<Value> = self
            .world()
            .graph
            .subscriptions(now)
            .into_iter()
            .filter(|s| {
                s["resource"]
                    .as_str()
                    .is_some_and(|r| r.trim_start_matches('/').eq_ignore_ascii_case(resource))
                    && s["notificationUrl"] == webhook
            })
            .collect();
        let known = state_subscription_ids(self.state.as_deref());
        subs.sort_by_key(|s| !known.iter().any(|k| s["id"] == k.as_str()));
        subs.into_iter()
            .next()
            .ok_or_else(|| anyhow!("the component has no active subscription on '{resource}'"))
    }

    /// A notification exactly as Graph would build it from the component's subscription.
    fn notification(&self, resource: &str, build: impl Fn(&Value) -> Value) -> Result<Request> {
        self.notifications(resource, |sub| vec![build(sub)])
    }

    /// Notifications sent together in one POST, as Graph builds them.
    fn notifications(
        &self,
        resource: &str,
        build: impl Fn(&Value) -> Vec<Value>,
    ) -> Result<Request> {
        let sub = self.active_subscription(resource)?;
        let body = json!({ "value": build(&sub) });
        Ok(Request {
            method: Method::Post,
            url: self.scenario.instance.webhook_url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }

    /// A notification body of user changes as Graph would send it, of at most `max_bytes`
    /// (none before the component has a users subscription).
    pub fn burst_body(&self, max_bytes: usize) -> Option<Vec<u8>> {
        let tenant = self.scenario.entra.tenant_id.clone();
        let sub = self.active_subscription("users").ok()?;
        let kind = notified_kind("users").ok()?;
        let mut items = Vec::new();
        let mut size = 16;
        for i in 0u32.. {
            let id = format!("{i:08x}-0000-4000-8000-{i:012x}");
            let item = change_item(&sub, kind, &id, "updated", &tenant);
            size += item.to_string().len() + 1;
            if size > max_bytes {
                break;
            }
            items.push(item);
        }
        Some(json!({ "value": items }).to_string().into_bytes())
    }

    /// One webhook call with `body`, as the platform runs it beside the serialized calls: the
    /// stored state, no inbox, no network. Nothing it returns is kept (for the benchmark).
    pub fn webhook_alone(&self, runtime: &Runtime, body: Vec<u8>) {
        let instance = self.instance(true);
        let req = Request {
            method: Method::Post,
            url: self.scenario.instance.webhook_url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        };
        let world = World::offline(self.world().clock.now());
        let _ = runtime.call(world, |b, store| {
            b.call_on_event(store, &instance, &Event::Webhook(req))
        });
    }

    /// Runs one step (also usable for steps built by a test from what it observed).
    pub fn run_step(&mut self, index: usize, step: &Step) -> StepRecord {
        let mut rec = StepRecord::new(index, step.kind());
        self.step_index = index;
        let started_ms = self.world().clock.elapsed_ms();
        if let Err(e) = self.step_inner(step, &mut rec) {
            rec.error = Some(format!("{e:#}"));
        }
        rec.elapsed_ms = self.world().clock.elapsed_ms().saturating_sub(started_ms);
        self.check_invariants();
        self.check_audit(&rec);
        rec.ok = rec.error.is_none();
        rec
    }

    /// Whether the audit lines can be read at all: a configured secret shorter than
    /// [`AUDIT_SECRET_MIN`] characters (a red team's one-letter secrets) occurs inside ordinary
    /// words, and the scrubber, as it must, redacts it out of every line, messages included.
    fn audit_lines_readable(&self) -> bool {
        self.configured_secrets()
            .iter()
            .all(|v| v.chars().count() >= AUDIT_SECRET_MIN)
    }

    /// The configured secrets (`entra_client_secret`, `zenqms_api_token`), trimmed, as the
    /// instance is configured now.
    fn configured_secrets(&self) -> Vec<String> {
        self.scenario
            .instance
            .config_pairs()
            .into_iter()
            .filter(|(k, _)| k == "entra_client_secret" || k == "zenqms_api_token")
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The `audit` invariant: every change the component's writes made to a ZenQMS user in
    /// this step has an audit line of the step naming that account (a write of fields for a
    /// create or PATCH that changed a field, a role line for a roles call that changed the
    /// roles), one line for each change. A change ZenQMS made but whose answer was lost
    /// counts too: under GxP an untraceable change is an incident.
    fn check_audit(&mut self, rec: &StepRecord) {
        let changes = std::mem::take(&mut self.changes);
        if changes.is_empty() || !self.audit_lines_readable() {
            return;
        }
        let mut lines: BTreeMap<(String, Aspect), usize> = BTreeMap::new();
        for a in report::audit(std::slice::from_ref(rec)) {
            if a.planned {
                continue;
            }
            let aspect = if a.action.starts_with("roles ") {
                Aspect::Roles
            } else {
                Aspect::Fields
            };
            // A create whose answer was lost has no ZenQMS id yet: its line names the Entra id.
            let account = if a.zenqms_id.is_empty() {
                format!("entra:{}", a.entra_id.to_ascii_lowercase())
            } else {
                a.zenqms_id
            };
            *lines.entry((account, aspect)).or_default() += 1;
        }
        let mut take = |account: String, aspect: Aspect| match lines
            .get_mut(&(account, aspect))
            .filter(|n| **n > 0)
        {
            Some(n) => {
                *n -= 1;
                true
            }
            None => false,
        };
        // Ids as an audit line holds them: escaped and capped as every log field is.
        let logged = |id: &str| entra_zenqms::log::escape::field(id);
        // The component's own scrubber, with the configured secrets: an id it would redact
        // (a secret inside it, in any case or encoding the scrubber knows) is redacted out of
        // every line, and such a change cannot be matched.
        let scrubber = entra_zenqms::log::redact::Secrets::default();
        for secret in self.configured_secrets() {
            scrubber.add(&secret);
        }
        let missing: Vec<String> = changes
            .into_iter()
            .filter(|c| {
                let ids = std::iter::once(&c.zenqms_id).chain(c.external_id.as_ref());
                if ids.into_iter().any(|id| scrubber.scrub(id) != *id) {
                    return false;
                }
                // By the ZenQMS id first; only then by the Entra id (a create whose answer
                // was lost), so one change never takes two lines.
                let traced = take(logged(&c.zenqms_id), c.aspect)
                    || c.external_id.as_ref().is_some_and(|e| {
                        take(
                            format!("entra:{}", logged(e).to_ascii_lowercase()),
                            c.aspect,
                        )
                    });
                !traced
            })
            .map(|c| {
                let what = match c.aspect {
                    Aspect::Fields => "fields",
                    Aspect::Roles => "roles",
                };
                format!("{} ({what})", c.zenqms_id)
            })
            .collect();
        if let Some(first) = missing.first() {
            let more = match missing.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            self.platform_violation(
                "audit",
                format!("ZenQMS user {first}{more} changed by the component with no audit line"),
            );
        }
    }

    /// A `webhook` step's spec with its `{{...}}` placeholders filled in (see
    /// `fixtures/README.md`): values in `body` and `body_text` as they are, in `query`
    /// percent-encoded.
    fn fill_placeholders(&self, spec: &WebhookSpec) -> Result<WebhookSpec> {
        let lookup = |name: &str| -> Result<Option<String>> {
            let (resource, field) = match name {
                "tenantId" => return Ok(Some(self.scenario.entra.tenant_id.clone())),
                "users.subscriptionId" => ("users", "id"),
                "users.clientState" => ("users", "clientState"),
                "groups.subscriptionId" => ("groups", "id"),
                "groups.clientState" => ("groups", "clientState"),
                _ => return Ok(None),
            };
            let sub = self
                .active_subscription(resource)
                .with_context(|| format!("webhook placeholder {{{{{name}}}}} cannot be filled"))?;
            Ok(Some(sub[field].as_str().unwrap_or_default().to_string()))
        };
        let mut out = spec.clone();
        out.query = fill(&spec.query, &|n| {
            Ok(lookup(n)?.map(|v| crate::sim::world::encode_component(&v)))
        })?;
        out.body_text = spec
            .body_text
            .as_deref()
            .map(|t| fill(t, &lookup))
            .transpose()?;
        out.body = spec
            .body
            .as_ref()
            .map(|b| fill_json(b, &lookup))
            .transpose()?;
        Ok(out)
    }

    fn step_inner(&mut self, step: &Step, rec: &mut StepRecord) -> Result<()> {
        let tenant = self.scenario.entra.tenant_id.clone();
        match step {
            Step::Deploy(c) => {
                self.invoke(Handler::Deploy, rec, c.calls.map(|k| k.get()));
            }
            Step::Resume(c) => {
                self.invoke(Handler::Event(Event::Resume), rec, c.calls.map(|k| k.get()));
            }
            Step::Schedule(_) => {
                self.invoke(Handler::Event(Event::Schedule), rec, None);
            }
            Step::Action(a) => {
                let action = Action {
                    name: a.name.clone(),
                    input: a.input_text(),
                };
                // The platform resumes what an action started (a released full sync).
                let first = self.invoke(Handler::Event(Event::Action(action)), rec, None);
                rec.result = first
                    .and_then(|o| o.result)
                    .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
            }
            Step::Delete(c) => {
                self.invoke(Handler::Delete, rec, c.calls.map(|k| k.get()));
                if rec.error.is_none() && !rec.pending {
                    // The platform forgets a deleted instance: its state and its inbox.
                    self.state = None;
                    self.revision = 0;
                    self.inbox.clear();
                }
            }
            Step::Advance(a) => self.advance_to(a.to, rec)?,
            Step::Entra(change) => self.world_mut().apply_entra(change)?,
            Step::Zenqms(ZenqmsChange::UpdateUser(fields)) => {
                self.world_mut().zenqms.update_user(fields)?
            }
            Step::Zenqms(ZenqmsChange::FailWrites(f)) => {
                let usual = serde_json::json!({"error": {"code": "unavailable", "message": "simulated outage"}});
                self.world_mut().zenqms_outage = Some(crate::sim::world::Outage::new(f, usual));
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
                let spec = self.fill_placeholders(spec)?;
                let req = webhook_request(&spec, &self.scenario.instance.webhook_url)?;
                self.deliver(req, rec);
            }
            Step::Notify(n) => {
                let resource = n.resource.trim_start_matches('/').to_ascii_lowercase();
                let kind = notified_kind(&resource)?;
                let ids = n.objects()?;
                let req = self.notifications(&resource, |sub| {
                    ids.iter()
                        .map(|id| change_item(sub, kind, id, &n.change_type, &tenant))
                        .collect()
                })?;
                self.graph_sends(req, rec);
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
                if l.event == "subscriptionRemoved" {
                    // Graph sends it once it has removed the subscription.
                    let sub = self.active_subscription(&resource)?;
                    let id = sub["id"].as_str().unwrap_or_default();
                    self.world_mut().graph.remove_subscription(id);
                }
                self.graph_sends(req, rec);
            }
        }
        Ok(())
    }

    /// Graph sends a notification it just built: at once, later (the endpoint is marked slow)
    /// or never (marked drop); a late or failed reply is retried (see `sim::delivery`).
    fn graph_sends(&mut self, req: Request, rec: &mut StepRecord) {
        let now = self.world().clock.elapsed_ms();
        let what = match self.world_mut().delivery.admit(now) {
            Admission::Drop => "dropped",
            Admission::Delay(due_ms) => {
                self.world_mut().delivery.later.push(Later {
                    due_ms,
                    first_ms: now,
                    attempts: 0,
                    body: req.body,
                });
                "delayed"
            }
            Admission::Send => {
                if self.graph_send_once(req.body, now, 0, rec) {
                    "delivered"
                } else {
                    "retrying"
                }
            }
        };
        rec.delivery = Some(what.into());
    }

    /// One send of a notification body by Graph: delivered (true), or scheduled again.
    fn graph_send_once(
        &mut self,
        body: Vec<u8>,
        first_ms: u64,
        attempts: u32,
        rec: &mut StepRecord,
    ) -> bool {
        let req = Request {
            method: Method::Post,
            url: self.scenario.instance.webhook_url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.clone(),
        };
        let sent_at = self.world().clock.elapsed_ms();
        let (reply_ms, status) = self.deliver(req, rec);
        let attempts = attempts + 1;
        let delivery = &mut self.world_mut().delivery;
        let delivered = delivery.judge(sent_at, attempts, status, reply_ms);
        if !delivered {
            delivery.retry(sent_at + reply_ms, first_ms, attempts, body);
        }
        delivered
    }

    /// Moves the clock to `to`, sending every notification Graph has due on the way, each at
    /// its time.
    fn advance_to(&mut self, to: DateTime<Utc>, rec: &mut StepRecord) -> Result<()> {
        let start = self.world().clock.start();
        let until = u64::try_from((to - start).num_milliseconds()).unwrap_or(0);
        while let Some(later) = self.world_mut().delivery.next_due(until) {
            let due = start + chrono::TimeDelta::milliseconds(later.due_ms as i64);
            if due > self.world().clock.now() {
                self.world().clock.set(due)?;
            }
            self.graph_send_once(later.body, later.first_ms, later.attempts, rec);
        }
        self.world().clock.set(to)
    }

    /// Delivers an inbound request to the webhook handler and records the reply; returns the
    /// reply's time (virtual ms) and status (none when the call failed without one).
    fn deliver(&mut self, req: Request, rec: &mut StepRecord) -> (u64, Option<u16>) {
        // A step may deliver several times (Graph's retries during an `advance`): the reply
        // figures are the worst of them.
        let (reply_ms, requests) = (rec.reply_ms.take(), rec.requests_before_reply.take());
        let outcome = self.invoke(Handler::Event(Event::Webhook(req)), rec, None);
        let reply = outcome
            .and_then(|o| o.response)
            .map(|r| ResponseRecord::new(r.status, r.headers, &r.body));
        let answered = ResponseRecord::answered(reply, rec.error.is_some());
        let this_ms = rec.reply_ms.unwrap_or(0);
        rec.reply_ms = Some(reply_ms.unwrap_or(0).max(this_ms));
        rec.requests_before_reply = Some(
            requests
                .unwrap_or(0)
                .max(rec.requests_before_reply.unwrap_or(0)),
        );
        let status = (rec.error.is_none() || answered.status != 500).then_some(answered.status);
        rec.response = Some(answered);
        (this_ms, status)
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
        let invariants = std::mem::take(&mut self.invariants);
        report::build(&self.scenario, records, &world, invariants)
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
fn validation_route(runtime: &'static Runtime, scenario: &Scenario) -> crate::sim::world::Webhook {
    let webhook_url = scenario.instance.webhook_url.clone();
    let instance = Instance {
        id: scenario.instance.id.clone(),
        webhook_url: webhook_url.clone(),
        config: scenario.instance.config_pairs(),
        state: None,
        budget_ms: scenario.budget_ms,
        inbox: Vec::new(),
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

/// The placeholder names a `webhook` step may use.
pub const PLACEHOLDERS: &[&str] = &[
    "users.subscriptionId",
    "users.clientState",
    "groups.subscriptionId",
    "groups.clientState",
    "tenantId",
];

/// Replaces each `{{name}}` in `text` with `lookup(name)`. A name `lookup` does not know fails,
/// so a typo cannot send the literal text; `{{` not followed by a name and `}}` is left as it is.
pub fn fill(text: &str, lookup: &dyn Fn(&str) -> Result<Option<String>>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name = after.find("}}").map(|end| &after[..end]).filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        });
        match name {
            Some(name) => {
                let value = lookup(name)?.ok_or_else(|| {
                    anyhow!(
                        "unknown webhook placeholder {{{{{name}}}}} (known: {})",
                        PLACEHOLDERS.join(", ")
                    )
                })?;
                out.push_str(&value);
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `fill` applied to every string (not key) of a JSON value.
pub fn fill_json(value: &Value, lookup: &dyn Fn(&str) -> Result<Option<String>>) -> Result<Value> {
    Ok(match value {
        Value::String(s) => Value::String(fill(s, lookup)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill_json(v, lookup))
                .collect::<Result<_>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill_json(v, lookup)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// The subscription ids the stored state names (any expiry), for choosing among several.
fn state_subscription_ids(state: Option<&str>) -> Vec<String> {
    state
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["subscriptions"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// The subscription invariant: the subscriptions the stored state holds (`state.subscriptions`,
/// see the component's `src/state.rs`; those whose `expires_at` has passed are left out, as
/// Graph has removed them) are exactly the active subscriptions Graph has whose
/// `notificationUrl` is the instance's webhook URL: the same ids, each with the same expiry
/// (within a second). No state (never deployed, or deleted) means none. `graph` is
/// `FakeGraph::subscriptions(now)`. Returns what differs, or `None` when it holds.
pub fn subscription_mismatch(
    state: Option<&str>,
    graph: &[Value],
    webhook_url: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    match state_subscriptions(state) {
        Ok(held) => compare_subscriptions(&held, graph, webhook_url, now),
        Err(e) => Some(e),
    }
}

/// A subscription the state holds: id and expiry (`None` if unreadable).
pub type HeldSubscription = (String, Option<DateTime<Utc>>);

/// What `state_subscriptions` reads from a state.
pub type HeldOrError = Result<Vec<HeldSubscription>, String>;

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The subscriptions a stored state holds (none without state); an error text when the state
/// is not JSON or names a subscription without an id.
pub fn state_subscriptions(state: Option<&str>) -> HeldOrError {
    /// Only the field the invariant reads (the rest is skipped, not built).
    #[derive(serde::Deserialize)]
    struct Held {
        #[serde(default)]
        subscriptions: Option<Vec<Value>>,
    }
    let Some(text) = state else {
        return Ok(Vec::new());
    };
    let held: Held =
        serde_json::from_str(text).map_err(|_| "the stored state is not JSON".to_string())?;
    held.subscriptions
        .unwrap_or_default()
        .iter()
        .map(|s| match s["id"].as_str() {
            Some(id) => Ok((id.to_string(), parse_time(&s["expires_at"]))),
            None => Err(format!("a subscription in state has no id: {s}")),
        })
        .collect()
}

/// `subscription_mismatch` for subscriptions already read from the state.
pub fn compare_subscriptions(
    state: &[HeldSubscription],
    graph: &[Value],
    webhook_url: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let held: BTreeMap<String, Option<DateTime<Utc>>> = state
        .iter()
        .filter(|(_, expires)| expires.is_none_or(|e| e > now))
        .cloned()
        .collect();
    let on_graph: BTreeMap<String, Option<DateTime<Utc>>> = graph
        .iter()
        .filter(|s| s["notificationUrl"] == webhook_url)
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                parse_time(&s["expirationDateTime"]),
            ))
        })
        .collect();
    let mut problems = Vec::new();
    let only_state: Vec<&str> = held
        .keys()
        .filter(|id| !on_graph.contains_key(*id))
        .map(String::as_str)
        .collect();
    if !only_state.is_empty() {
        problems.push(format!(
            "state holds {} that Graph does not have",
            only_state.join(", ")
        ));
    }
    let only_graph: Vec<&str> = on_graph
        .keys()
        .filter(|id| !held.contains_key(*id))
        .map(String::as_str)
        .collect();
    if !only_graph.is_empty() {
        problems.push(format!(
            "Graph has {} on the webhook URL that state does not hold",
            only_graph.join(", ")
        ));
    }
    for (id, state_expiry) in &held {
        if let Some(graph_expiry) = on_graph.get(id)
            && let (Some(a), Some(b)) = (state_expiry, graph_expiry)
            && (*a - *b).num_milliseconds().abs() > 1000
        {
            problems.push(format!(
                "{id} expires at {} in state but at {} on Graph",
                a.to_rfc3339(),
                b.to_rfc3339()
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    const HOOK: &str = "https://hooks.example/i1";

    fn graph_sub(id: &str, url: &str, expires: &str) -> Value {
        json!({"id": id, "resource": "users", "notificationUrl": url, "expirationDateTime": expires})
    }

    fn state(subs: Value) -> String {
        json!({"version": 1, "subscriptions": subs}).to_string()
    }

    #[test]
    fn no_state_and_no_subscription_holds_and_either_alone_does_not() {
        assert_eq!(subscription_mismatch(None, &[], HOOK, now()), None);
        let g = [graph_sub("a", HOOK, "2026-12-20T12:00:00.0000000Z")];
        let d = subscription_mismatch(None, &g, HOOK, now()).unwrap();
        assert!(
            d.contains("Graph has a") && d.contains("state does not hold"),
            "{d}"
        );
        let s = state(json!([{"id": "a", "expires_at": "2026-12-20T12:00:00Z"}]));
        let d = subscription_mismatch(Some(&s), &[], HOOK, now()).unwrap();
        assert!(d.contains("state holds a"), "{d}");
        assert_eq!(subscription_mismatch(Some(&s), &g, HOOK, now()), None);
    }

    #[test]
    fn other_webhooks_and_expired_state_entries_do_not_count() {
        let g = [
            graph_sub("a", HOOK, "2026-12-20T12:00:00.0000000Z"),
            graph_sub(
                "z",
                "https://hooks.example/other",
                "2026-12-20T12:00:00.0000000Z",
            ),
        ];
        let s = state(json!([
            {"id": "a", "expires_at": "2026-12-20T12:00:00.0004Z"},
            {"id": "old", "expires_at": "2026-11-28T12:00:00Z"},
        ]));
        assert_eq!(subscription_mismatch(Some(&s), &g, HOOK, now()), None);
        let empty = json!({"version": 1}).to_string();
        assert_eq!(subscription_mismatch(Some(&empty), &[], HOOK, now()), None);
    }

    #[test]
    fn a_renewal_not_stored_is_a_violation() {
        let g = [graph_sub("a", HOOK, "2026-12-25T12:00:00.0000000Z")];
        let s = state(json!([{"id": "a", "expires_at": "2026-12-20T12:00:00Z"}]));
        let d = subscription_mismatch(Some(&s), &g, HOOK, now()).unwrap();
        assert!(d.contains("expires at"), "{d}");
        assert_eq!(
            subscription_mismatch(Some("not json"), &[], HOOK, now()).as_deref(),
            Some("the stored state is not JSON")
        );
    }

    #[test]
    fn placeholders_are_filled_and_unknown_names_refused() {
        let lookup = |n: &str| -> Result<Option<String>> {
            Ok(match n {
                "tenantId" => Some("T".into()),
                "users.subscriptionId" => Some("S".into()),
                _ => None,
            })
        };
        assert_eq!(
            fill("{{tenantId}}/{{users.subscriptionId}}{{tenantId}}", &lookup).unwrap(),
            "T/ST"
        );
        assert_eq!(
            fill("{{ not a name }} {{", &lookup).unwrap(),
            "{{ not a name }} {{"
        );
        let err = fill("x {{user.subscriptionId}}", &lookup).unwrap_err();
        assert!(
            err.to_string().contains("unknown webhook placeholder"),
            "{err}"
        );
        let v = fill_json(&json!({"{{tenantId}}": ["{{tenantId}}", 1]}), &lookup).unwrap();
        assert_eq!(v, json!({"{{tenantId}}": ["T", 1]}));
    }
}
