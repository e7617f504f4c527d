//! The scenario file format (a public contract: see `fixtures/README.md`).
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo in a scenario fails loudly instead of
//! silently testing less than its author meant.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The world's seed types (what the simulated services start from and the changes steps
/// make to them) belong to the simulator; the format embeds them under these names.
pub use crate::sim::seed::{
    Empty, EntraChange, EntraSpec, FailWrites, GroupSpec, Membership, ObjectSpec, ObjectType,
    RoleSpec, ServeLinks, WorldSeed, ZenqmsSpec, ZenqmsUserSpec,
};

/// One scenario: the world, the steps to run in it, and what must hold at the end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub description: String,
    /// Virtual clock start.
    #[serde(default = "default_now")]
    pub now: DateTime<Utc>,
    /// Simulated round-trip time of one request (and of one `send-all` round).
    #[serde(default = "default_rtt")]
    pub rtt_ms: u64,
    /// How many requests of one `send-all` the platform runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Budget passed to every call.
    #[serde(default = "default_budget")]
    pub budget_ms: u32,
    pub instance: InstanceSpec,
    pub entra: EntraSpec,
    pub zenqms: ZenqmsSpec,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub expect: Expect,
    /// Injected failures (429, 503, timeouts) on Graph and/or ZenQMS.
    #[serde(default)]
    pub faults: Option<crate::sim::faults::FaultSpec>,
}

fn default_now() -> DateTime<Utc> {
    "2026-11-28T12:00:00Z".parse().expect("constant date")
}
fn default_rtt() -> u64 {
    100
}
fn default_concurrency() -> u32 {
    8
}
fn default_budget() -> u32 {
    20_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    #[serde(default = "default_instance_id")]
    pub id: String,
    #[serde(default = "default_webhook")]
    pub webhook_url: String,
    /// Values are strings, or any JSON value passed to the component as its JSON text.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

fn default_instance_id() -> String {
    "instance-1".into()
}
fn default_webhook() -> String {
    "https://hooks.platform.example/instances/instance-1".into()
}

impl InstanceSpec {
    /// The config as the platform passes it: every value a string.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// One step: an object with exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Deploy(Calls),
    Resume(Calls),
    Delete(Calls),
    Schedule(Empty),
    Advance(Advance),
    Entra(EntraChange),
    Zenqms(ZenqmsChange),
    Webhook(WebhookSpec),
    Notify(NotifySpec),
    Lifecycle(LifecycleSpec),
    /// Extension: the admin edits the instance's configuration (takes effect on the next call;
    /// a `null` value removes the key).
    Configure(BTreeMap<String, Value>),
    /// An admin action (`on-event(action)`, WIT 0.3.0); the step record gets its `result`.
    Action(ActionSpec),
}

/// `{"action": {"name": "…", "input": "…"}}`: `input` is optional; a JSON value other than a
/// string is passed as its JSON text (e.g. `provision-user`'s `{"user": …, "dry_run": true}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub name: String,
    #[serde(default)]
    pub input: Option<Value>,
}

impl ActionSpec {
    /// The input as the platform passes it: a string, or the JSON text of any other value.
    pub fn input_text(&self) -> Option<String> {
        self.input.as_ref().map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl Step {
    /// The step's key, as the report names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Deploy(_) => "deploy",
            Step::Resume(_) => "resume",
            Step::Delete(_) => "delete",
            Step::Schedule(_) => "schedule",
            Step::Advance(_) => "advance",
            Step::Entra(_) => "entra",
            Step::Zenqms(_) => "zenqms",
            Step::Webhook(_) => "webhook",
            Step::Notify(_) => "notify",
            Step::Lifecycle(_) => "lifecycle",
            Step::Configure(_) => "configure",
            Step::Action(_) => "action",
        }
    }
}

/// `{}` or `{"calls": k}`: a deploy or resume that makes at most `k` handler calls (the first
/// one included) and leaves the rest pending; without `calls`, it resumes until done.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calls {
    #[serde(default)]
    pub calls: Option<std::num::NonZeroU32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ZenqmsChange {
    /// A manual edit in ZenQMS: `id` plus the fields to set.
    UpdateUser(Map<String, Value>),
    /// Extension: the next `count` ZenQMS write requests fail with `status` (an outage).
    FailWrites(FailWrites),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    #[serde(default = "post")]
    pub method: String,
    /// Raw query string, without the leading `?`.
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent as its JSON text)...
    #[serde(default)]
    pub body: Option<Value>,
    /// ...or a raw text body.
    #[serde(default)]
    pub body_text: Option<String>,
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub resource: String,
    /// The object changed (one notification)…
    #[serde(default)]
    pub id: Option<String>,
    /// …or several, sent together in one POST (Graph batches notifications in `value`): a
    /// burst arriving at once.
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default = "updated")]
    pub change_type: String,
}

impl NotifySpec {
    /// The ids notified, in order.
    ///
    /// Errors: neither `id` nor `ids`, or both.
    pub fn objects(&self) -> anyhow::Result<Vec<String>> {
        match (&self.id, self.ids.is_empty()) {
            (Some(id), true) => Ok(vec![id.clone()]),
            (None, false) => Ok(self.ids.clone()),
            _ => anyhow::bail!("a notify step names `id` or `ids` (one of them)"),
        }
    }
}

fn updated() -> String {
    "updated".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSpec {
    pub resource: String,
    pub event: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Each must match exactly one final user (only the fields given).
    #[serde(default)]
    pub zenqms_users: Vec<Map<String, Value>>,
    #[serde(default)]
    pub zenqms_user_count: Option<usize>,
    #[serde(default)]
    pub log_contains: Vec<String>,
    #[serde(default)]
    pub responses: Vec<ExpectResponse>,
    /// Steps expected to fail (an extension: any other failing step fails the scenario).
    #[serde(default)]
    pub errors: Vec<ExpectError>,
    /// The number of active Graph subscriptions on the instance's webhook URL at the end.
    #[serde(default)]
    pub subscriptions: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectError {
    pub step: usize,
    /// Text the step's error must contain.
    #[serde(default)]
    pub contains: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectResponse {
    pub step: usize,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: Option<String>,
}

impl Scenario {
    /// What the simulated world starts from.
    pub fn seed(&self) -> WorldSeed<'_> {
        WorldSeed {
            entra: &self.entra,
            zenqms: &self.zenqms,
            zenqms_api: Some(crate::sim::world::zenqms_api_base(&self.instance.config)),
            now: self.now,
            rtt_ms: self.rtt_ms,
            concurrency: self.concurrency,
            faults: self.faults.clone(),
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("parsing scenario {}", path.display()))
    }
}
