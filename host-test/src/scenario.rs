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
    pub faults: Option<crate::faults::FaultSpec>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSpec {
    /// What the token endpoint accepts.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// User objects exactly as Graph returns them (any properties; `id` required).
    #[serde(default)]
    pub users: Vec<Map<String, Value>>,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// Directory objects that are neither users nor groups (devices, service principals,
    /// organizational contacts): groups may list them as members; `/users` never shows them.
    #[serde(default)]
    pub objects: Vec<ObjectSpec>,
}

/// A non-user, non-group directory object (`entra.objects`): `id`, `@odata.type`, and any other
/// properties Graph returns for it (`displayName`, `mail`, ...).
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectSpec {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: ObjectType,
    /// Every other property, returned as given.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// The directory object types `entra.objects` may hold, spelled as Graph's `@odata.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ObjectType {
    #[serde(rename = "#microsoft.graph.device")]
    Device,
    #[serde(rename = "#microsoft.graph.servicePrincipal")]
    ServicePrincipal,
    #[serde(rename = "#microsoft.graph.orgContact")]
    OrgContact,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub id: String,
    #[serde(default, rename = "displayName")]
    pub display_name: String,
    /// Direct members: user or group ids.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenqmsSpec {
    pub api_token: String,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    #[serde(default)]
    pub users: Vec<ZenqmsUserSpec>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenqmsUserSpec {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One step: an object with exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Deploy(Calls),
    Resume(Calls),
    Delete(Empty),
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

/// `{}`: steps that take no argument.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EntraChange {
    /// Insert or replace a user object (matched by `id`).
    UpsertUser(Map<String, Value>),
    /// Soft delete: the user answers 404 from then on and is hidden from group listings (Entra
    /// keeps the memberships, which come back if the user is restored by `upsert_user`).
    DeleteUser(String),
    AddMember(Membership),
    RemoveMember(Membership),
    /// Permanent delete (or purge of a soft-deleted user): 404 from then on, gone from every
    /// group, the users delta reports `@removed: {"reason": "deleted"}`; the id is never reused.
    PurgeUser(String),
    /// The group is deleted (security groups are deleted permanently): 404 from then on, gone
    /// from every listing and membership, the groups delta reports it `@removed` (`deleted`).
    DeleteGroup(String),
    /// Graph refuses every delta token (deltaLink and nextLink) issued so far.
    ExpireDelta(Empty),
    /// Extension: the next `count` token requests answer `status` (and `body`, if given).
    FailToken(FailWrites),
    /// Extension, a hostile or broken Graph: from now on every Graph answer that carries an
    /// `@odata.nextLink` / `@odata.deltaLink` (at any depth, `$batch` items included) carries
    /// the given text instead (`null` or absent: Graph's own link again).
    ServeLinks(ServeLinks),
}

/// The links a [`EntraChange::ServeLinks`] step makes Graph hand out, verbatim.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLinks {
    #[serde(default)]
    pub next_link: Option<String>,
    #[serde(default)]
    pub delta_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub group: String,
    pub member: String,
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
pub struct FailWrites {
    #[serde(default = "unavailable")]
    pub status: u16,
    pub count: u32,
    /// The reply's body: a string is sent as that text, anything else as its JSON text. None:
    /// the service's usual error JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// The reply's content type; by default `text/plain` for a string body, else
    /// `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
}

fn unavailable() -> u16 {
    503
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
    pub id: String,
    #[serde(default = "updated")]
    pub change_type: String,
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
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("parsing scenario {}", path.display()))
    }
}
