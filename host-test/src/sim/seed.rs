//! What a simulated world starts from and the changes a step makes to it: the seed types the
//! fakes take. The scenario format (`crate::scenario`) embeds them; the simulator never reads
//! a scenario file's own types.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::sim::faults::FaultSpec;

/// Everything a [`crate::sim::world::World`] is built from.
#[derive(Debug, Clone)]
pub struct WorldSeed<'a> {
    pub entra: &'a EntraSpec,
    pub zenqms: &'a ZenqmsSpec,
    /// The ZenQMS API base URL the instance is configured with (where the fake ZenQMS
    /// answers); `None` when it has none that parses (every ZenQMS request is then denied).
    pub zenqms_api: Option<String>,
    /// Virtual clock start.
    pub now: DateTime<Utc>,
    /// Simulated round-trip time of one request, and of one round of a `send-all`.
    pub rtt_ms: u64,
    /// Requests of one `send-all` in flight at once.
    pub concurrency: u32,
    pub faults: Option<FaultSpec>,
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
    /// The Microsoft Graph application permissions (app roles) the app registration is
    /// admin-consented to, by name, e.g. `"User.Read.All"`. Default: the three the product
    /// README asks for ([`USER_READ_ALL`], [`GROUP_READ_ALL`], [`GROUP_MEMBER_READ_ALL`]), so a
    /// scenario only names them to test a tenant that lacks one. Names match case-insensitively;
    /// names the fake Graph does not check (`Mail.Read`, ...) are accepted and change nothing.
    /// See [`EntraSpec::read_permissions`] for the super-permissions that imply these three.
    #[serde(default = "default_permissions")]
    pub permissions: Vec<String>,
    /// The most objects Graph puts on one page of a user, group or membership listing,
    /// whatever `$top` asks: Graph may serve fewer than asked and a client must follow
    /// `@odata.nextLink` until there is none (learn.microsoft.com/graph/paging). Default:
    /// as many as `$top` asks (100 without it).
    #[serde(default)]
    pub page_max: Option<usize>,
}

pub const USER_READ_ALL: &str = "User.Read.All";
pub const GROUP_READ_ALL: &str = "Group.Read.All";
pub const GROUP_MEMBER_READ_ALL: &str = "GroupMember.Read.All";

fn default_permissions() -> Vec<String> {
    [USER_READ_ALL, GROUP_READ_ALL, GROUP_MEMBER_READ_ALL]
        .map(String::from)
        .to_vec()
}

/// For each permission name, the reads among the three the fake Graph checks that it grants.
/// Graph lets a higher-privileged permission stand in for a lower one (the permissions
/// reference: `Directory.Read.All` reads users and groups, a `ReadWrite` permission includes
/// its `Read`); only these well-known supersets are modelled.
const GRANTS: &[(&str, &[&str])] = &[
    (USER_READ_ALL, &[USER_READ_ALL]),
    (GROUP_READ_ALL, &[GROUP_READ_ALL]),
    (GROUP_MEMBER_READ_ALL, &[GROUP_MEMBER_READ_ALL]),
    ("User.ReadWrite.All", &[USER_READ_ALL]),
    (
        "Group.ReadWrite.All",
        &[GROUP_READ_ALL, GROUP_MEMBER_READ_ALL],
    ),
    ("GroupMember.ReadWrite.All", &[GROUP_MEMBER_READ_ALL]),
    (
        "Directory.Read.All",
        &[USER_READ_ALL, GROUP_READ_ALL, GROUP_MEMBER_READ_ALL],
    ),
    (
        "Directory.ReadWrite.All",
        &[USER_READ_ALL, GROUP_READ_ALL, GROUP_MEMBER_READ_ALL],
    ),
];

impl EntraSpec {
    /// Which of `User.Read.All`, `Group.Read.All` and `GroupMember.Read.All` the app holds,
    /// given directly or implied by a permission that includes it (see `GRANTS`).
    pub fn read_permissions(&self) -> BTreeSet<&'static str> {
        self.permissions
            .iter()
            .flat_map(|held| {
                GRANTS
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case(held))
                    .flat_map(|(_, reads)| reads.iter().copied())
            })
            .collect()
    }
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
    /// What Graph returns as `displayName` (and what `$search` matches); absent: the id.
    #[serde(default, rename = "displayName")]
    pub display_name: Option<String>,
    /// Direct members: user or group ids.
    #[serde(default)]
    pub members: Vec<String>,
}

impl GroupSpec {
    /// The group's display name, or its id when the scenario gives none (a group always has
    /// a display name in Entra ID, and an empty one could never be found by `$search`).
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }
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

/// `{}`: steps that take no argument.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

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
    /// Extension: the next `count` Graph requests matching `method` and `path` (each optional)
    /// answer `status` (and `body`, if given) — e.g. a throttled subscription removal.
    FailRequests(FailRequests),
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

/// A [`EntraChange::FailRequests`] step: which Graph requests fail, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequests {
    #[serde(default = "unavailable")]
    pub status: u16,
    pub count: u32,
    /// Only requests with this method (any case); absent: every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose URL path starts with this (e.g. `/v1.0/subscriptions`); absent:
    /// every path. Requests inside a `$batch` are the batch's, not matched on their own.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Graph carries the request out and its answer is lost: the component sees a timeout
    /// (`status`, `body` and `content_type` unused). Real Graph can do this to any request:
    /// a subscription created whose answer never arrives.
    #[serde(default)]
    pub answer_lost: bool,
}

impl FailRequests {
    /// The reply part, as the other failure steps take it.
    pub fn reply(&self) -> FailWrites {
        FailWrites {
            status: self.status,
            count: self.count,
            body: self.body.clone(),
            content_type: self.content_type.clone(),
        }
    }

    /// Whether a request (method, URL) is one this step fails.
    pub fn matches(&self, method: &str, url: &str) -> bool {
        let path = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

fn unavailable() -> u16 {
    503
}
