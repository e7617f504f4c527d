//! A simulated ZenQMS v2 API, in memory, implementing exactly `docs/zenqms-api.md`.
//!
//! Strict on purpose: bearer token, JSON content type, unknown/mistyped/missing fields (400 naming
//! the field), uniqueness (409), semantic checks (422), unknown users and paths (404), wrong
//! methods (405). Anything the contract does not describe is an error, never a silent 200.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::seed::{RoleSpec, ZenqmsSpec};

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ZenqmsUser {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub is_active: bool,
    pub external_id: Option<String>,
    pub roles: Vec<String>,
}

pub struct FakeZenqms {
    base_url: String,
    api_token: String,
    roles: Vec<RoleSpec>,
    users: BTreeMap<String, ZenqmsUser>,
    /// Normalized email -> ids of the users with it (the uniqueness check runs on every write:
    /// a scan of all users made a sync of N users O(N x M)).
    emails: BTreeMap<String, BTreeSet<String>>,
    /// Last number used for a `u-NNNNNN` id.
    last_seq: u64,
    writes: u64,
    /// Every change an API write made, in order (kept only when asked: see
    /// [`FakeZenqms::keep_journal`]); manual edits (`update_user`) are not API writes.
    journal: Option<Vec<Change>>,
}

/// One change an API write made to a ZenQMS user, as the runner's `audit` invariant checks it
/// against the component's audit lines (fixtures/README.md, "Invariants").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub zenqms_id: String,
    /// The user's `external_id` after the change (an audit line of a create whose answer was
    /// lost names the Entra id only).
    pub external_id: Option<String>,
    /// `Fields` for a create or a PATCH that changed a field, `Roles` for a roles call that
    /// changed the role list. A write that changed nothing is no change.
    pub aspect: Aspect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aspect {
    Fields,
    Roles,
}

/// An API error: status, snake_case code, message.
#[derive(Debug)]
struct ApiError(u16, &'static str, String);

type ApiResult<T> = std::result::Result<T, ApiError>;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(400, "invalid_request", message.into())
}

fn invalid_field(message: impl Into<String>) -> ApiError {
    ApiError(422, "invalid_field", message.into())
}

const USER_FIELDS: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "title",
    "is_active",
    "external_id",
];
const FILTER_KEYS: &[&str] = &[
    "external_id",
    "external_ids",
    "email",
    "is_active",
    "has_external_id",
    "role_id",
    "emails",
];

/// Most values an `external_ids` filter takes (docs/zenqms-api.md).
pub const MAX_FILTER_IDS: usize = 100;

impl FakeZenqms {
    /// `base_url`: e.g. "https://acme.zenqms.com" (no trailing slash); requests carry full URLs.
    pub fn new(spec: &ZenqmsSpec, base_url: &str) -> Self {
        let users: BTreeMap<String, ZenqmsUser> = spec
            .users
            .iter()
            .map(|u| {
                let mut roles: Vec<String> = u.roles.clone();
                roles.sort();
                roles.dedup();
                let user = ZenqmsUser {
                    id: u.id.clone(),
                    email: u.email.clone(),
                    first_name: u.first_name.clone(),
                    last_name: u.last_name.clone(),
                    title: u.title.clone(),
                    is_active: u.is_active,
                    external_id: u.external_id.clone(),
                    roles,
                };
                (u.id.clone(), user)
            })
            .collect();
        // New ids continue after the highest seeded `u-NNNNNN`, so they never collide.
        let last_seq = users
            .keys()
            .filter_map(|id| id.strip_prefix("u-").and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        let mut emails: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for u in users.values() {
            emails
                .entry(normalize_email(&u.email))
                .or_default()
                .insert(u.id.clone());
        }
        FakeZenqms {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_token: spec.api_token.clone(),
            roles: spec.roles.clone(),
            users,
            emails,
            last_seq,
            writes: 0,
            journal: None,
        }
    }

    /// Stores a user (new or changed), keeping the email index in step.
    fn store(&mut self, user: ZenqmsUser) {
        if let Some(old) = self.users.get(&user.id) {
            let key = normalize_email(&old.email);
            if let Some(ids) = self.emails.get_mut(&key) {
                ids.remove(&user.id);
                if ids.is_empty() {
                    self.emails.remove(&key);
                }
            }
        }
        self.emails
            .entry(normalize_email(&user.email))
            .or_default()
            .insert(user.id.clone());
        self.users.insert(user.id.clone(), user);
    }

    pub fn handle(&mut self, req: &HttpRequest) -> HttpResponse {
        match self.route(req) {
            Ok((status, body)) => HttpResponse::json(status, &body),
            Err(ApiError(status, code, message)) => {
                let mut resp = HttpResponse::json(
                    status,
                    &json!({"error": {"code": code, "message": message}}),
                );
                if status == 405 {
                    resp.headers
                        .push(("allow".into(), allowed_method(&req.url).into()));
                }
                resp
            }
        }
    }

    /// A manual edit made in ZenQMS by an admin: `id` plus any user fields, and optionally
    /// `roles` as the full new list. The same rules as the API apply (types, 422, unique email).
    pub fn update_user(&mut self, fields: &Map<String, Value>) -> Result<()> {
        let id = fields
            .get("id")
            .and_then(Value::as_str)
            .context("update_user needs a string \"id\"")?;
        if !self.users.contains_key(id) {
            bail!("update_user: no ZenQMS user {id:?}");
        }
        let mut changes = fields.clone();
        changes.remove("id");
        let roles = changes.remove("roles");
        let api_err = |e: ApiError| anyhow!("update_user {id:?}: {} {}", e.1, e.2);
        let mut user = self.users[id].clone();
        if !changes.is_empty() {
            user = self.patched(id, &changes).map_err(api_err)?;
        }
        if let Some(roles) = roles {
            let ids = self.role_ids_value(&roles, "roles").map_err(api_err)?;
            user.roles = ids
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
        }
        self.store(user);
        Ok(())
    }

    /// Sorted by id, each user's roles sorted.
    pub fn users(&self) -> Vec<ZenqmsUser> {
        self.users.values().cloned().collect()
    }

    pub fn roles(&self) -> Vec<RoleSpec> {
        self.roles.clone()
    }

    /// Starts keeping the journal of changes API writes make (the runner's `audit` invariant).
    pub fn keep_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The changes API writes made since the last take (none when no journal is kept).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn journal(&mut self, zenqms_id: &str, aspect: Aspect) {
        let external_id = self
            .users
            .get(zenqms_id)
            .and_then(|u| u.external_id.clone());
        if let Some(j) = &mut self.journal {
            j.push(Change {
                zenqms_id: zenqms_id.to_string(),
                external_id,
                aspect,
            });
        }
    }

    /// Count of successful write requests (POST users, PATCH, roles add/remove).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn route(&mut self, req: &HttpRequest) -> ApiResult<(u16, Value)> {
        let path = self.path_of(&req.url)?;
        self.authenticate(req)?;
        let segments: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        let (status, body) = match (method, segs.as_slice()) {
            ("GET", ["v2", "roles"]) => (200, json!({"data": self.roles})),
            ("POST", ["v2", "users", "search"]) => (200, self.search(&json_object(req)?)?),
            ("POST", ["v2", "users"]) => (201, self.create(&json_object(req)?)?),
            ("PATCH", ["v2", "users", id]) if *id != "search" => (200, self.patch(id, req)?),
            ("POST", ["v2", "users", id, "roles", "add"]) => {
                (200, self.change_roles(id, req, true)?)
            }
            ("DELETE", ["v2", "users", id, "roles", "remove"]) => {
                (200, self.change_roles(id, req, false)?)
            }
            (
                _,
                ["v2", "roles" | "users"]
                | ["v2", "users", _]
                | ["v2", "users", _, "roles", "add" | "remove"],
            ) => {
                return Err(ApiError(
                    405,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}"),
                ));
            }
            _ => return Err(ApiError(404, "not_found", format!("no such path: {path}"))),
        };
        Ok((status, body))
    }

    /// The path below the base URL; query strings are not part of the contract.
    fn path_of(&self, url: &str) -> ApiResult<String> {
        let not_found = || ApiError(404, "not_found", format!("no such path: {url}"));
        // Hosts are case-insensitive; the rest of the URL is compared as given.
        let base_len = self.base_url.len();
        let rest = match url.get(..base_len) {
            Some(prefix) if prefix.eq_ignore_ascii_case(&self.base_url) => &url[base_len..],
            _ => return Err(not_found()),
        };
        if !rest.starts_with('/') {
            return Err(not_found());
        }
        match rest.split_once('?') {
            Some((_, query)) if !query.is_empty() => {
                let name = query.split(['=', '&']).next().unwrap_or(query);
                Err(bad_request(format!(
                    "unexpected query parameter `{}`",
                    percent_decode(name)
                )))
            }
            Some((path, _)) => Ok(path.to_string()),
            None => Ok(rest.to_string()),
        }
    }

    fn authenticate(&self, req: &HttpRequest) -> ApiResult<()> {
        let header = req.header("authorization").unwrap_or_default();
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        match token {
            Some(t) if t == self.api_token => Ok(()),
            Some(_) => Err(ApiError(401, "unauthorized", "invalid API token".into())),
            None => Err(ApiError(401, "unauthorized", "missing bearer token".into())),
        }
    }

    fn search(&self, body: &Map<String, Value>) -> ApiResult<Value> {
        reject_unknown(body, &["filter", "page", "per_page"], "")?;
        let page = optional_int(body, "page")?.unwrap_or(1);
        if page < 1 {
            return Err(bad_request("field `page` must be at least 1"));
        }
        let per_page = optional_int(body, "per_page")?.unwrap_or(100);
        if !(1..=100).contains(&per_page) {
            return Err(bad_request("field `per_page` must be between 1 and 100"));
        }
        let filter = match body.get("filter") {
            None => Filter::default(),
            Some(Value::Object(f)) => Filter::parse(f)?,
            Some(_) => return Err(bad_request("field `filter` must be an object")),
        };
        // One pass, keeping only the page: a paged read of the whole directory is then
        // O(M) per page without an M-element allocation each time.
        let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
        let mut data: Vec<&ZenqmsUser> = Vec::new();
        let mut total = 0usize;
        for u in self.users.values().filter(|u| filter.matches(u)) {
            if total >= skip && data.len() < per_page as usize {
                data.push(u);
            }
            total += 1;
        }
        Ok(json!({"data": data, "page": page, "per_page": per_page, "total": total}))
    }

    fn create(&mut self, body: &Map<String, Value>) -> ApiResult<Value> {
        reject_unknown(body, USER_FIELDS, "")?;
        let email = required(body, "email", as_string)?;
        let first_name = required(body, "first_name", as_string)?;
        let last_name = required(body, "last_name", as_string)?;
        let title = required(body, "title", as_string)?;
        let is_active = required(body, "is_active", as_bool)?;
        let external_id = required(body, "external_id", as_nullable_string)?;
        let mut user = ZenqmsUser {
            id: String::new(),
            email,
            first_name,
            last_name,
            title,
            is_active,
            external_id,
            roles: Vec::new(),
        };
        validate_user(&user)?;
        self.ensure_email_free(&user.email, None)?;
        user.id = self.next_id();
        self.store(user.clone());
        self.writes += 1;
        self.journal(&user.id, Aspect::Fields);
        Ok(json!(user))
    }

    fn patch(&mut self, id: &str, req: &HttpRequest) -> ApiResult<Value> {
        self.user(id)?;
        let body = json_object(req)?;
        let user = self.patched(id, &body)?;
        let changed = self.users.get(id) != Some(&user);
        self.store(user.clone());
        self.writes += 1;
        if changed {
            self.journal(id, Aspect::Fields);
        }
        Ok(json!(user))
    }

    /// The user `id` with `changes` applied and validated (not yet stored).
    fn patched(&self, id: &str, changes: &Map<String, Value>) -> ApiResult<ZenqmsUser> {
        reject_unknown(changes, USER_FIELDS, "")?;
        if changes.is_empty() {
            return Err(bad_request("body must set at least one field"));
        }
        let mut user = self.user(id)?.clone();
        for (key, value) in changes {
            match key.as_str() {
                "email" => user.email = as_string(value, key)?,
                "first_name" => user.first_name = as_string(value, key)?,
                "last_name" => user.last_name = as_string(value, key)?,
                "title" => user.title = as_string(value, key)?,
                "is_active" => user.is_active = as_bool(value, key)?,
                _ => user.external_id = as_nullable_string(value, key)?,
            }
        }
        validate_user(&user)?;
        if changes.contains_key("email") {
            self.ensure_email_free(&user.email, Some(id))?;
        }
        Ok(user)
    }

    fn change_roles(&mut self, id: &str, req: &HttpRequest, add: bool) -> ApiResult<Value> {
        self.user(id)?;
        let body = json_object(req)?;
        reject_unknown(&body, &["role_ids"], "")?;
        let value = body
            .get("role_ids")
            .ok_or_else(|| bad_request("missing required field `role_ids`"))?;
        let role_ids = self.role_ids_value(value, "role_ids")?;
        if role_ids.is_empty() {
            return Err(bad_request("field `role_ids` must not be empty"));
        }
        let user = self.users.get_mut(id).ok_or_else(|| not_found_user(id))?;
        let mut roles: BTreeSet<String> = user.roles.iter().cloned().collect();
        for role in role_ids {
            // Idempotent: adding a held role or removing an absent one changes nothing.
            if add {
                roles.insert(role);
            } else {
                roles.remove(&role);
            }
        }
        // Compared as sets: a seeded role list may be in any order.
        let changed = user.roles.iter().cloned().collect::<BTreeSet<_>>() != roles;
        let roles: Vec<String> = roles.into_iter().collect();
        user.roles = roles;
        let body = json!(user);
        self.writes += 1;
        if changed {
            self.journal(id, Aspect::Roles);
        }
        Ok(body)
    }

    /// A list of known role ids (400 on a wrong shape, 422 `unknown_role` on an unknown id).
    fn role_ids_value(&self, value: &Value, field: &str) -> ApiResult<Vec<String>> {
        let items = value
            .as_array()
            .ok_or_else(|| bad_request(format!("field `{field}` must be an array of strings")))?;
        let mut ids = Vec::new();
        for item in items {
            let id = item.as_str().ok_or_else(|| {
                bad_request(format!("field `{field}` must be an array of strings"))
            })?;
            if !self.roles.iter().any(|r| r.id == id) {
                return Err(ApiError(
                    422,
                    "unknown_role",
                    format!("unknown role id `{id}` in `{field}`"),
                ));
            }
            ids.push(id.to_string());
        }
        Ok(ids)
    }

    fn user(&self, id: &str) -> ApiResult<&ZenqmsUser> {
        self.users.get(id).ok_or_else(|| not_found_user(id))
    }

    /// Emails are unique case-insensitively (trimmed) across all users, active or not.
    fn ensure_email_free(&self, email: &str, except: Option<&str>) -> ApiResult<()> {
        let other = self
            .emails
            .get(&normalize_email(email))
            .and_then(|ids| ids.iter().find(|i| Some(i.as_str()) != except));
        match other {
            Some(other) => Err(ApiError(
                409,
                "email_taken",
                format!("email `{email}` is already used by user {other}"),
            )),
            None => Ok(()),
        }
    }

    fn next_id(&mut self) -> String {
        loop {
            self.last_seq += 1;
            let id = format!("u-{:06}", self.last_seq);
            if !self.users.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Search filter: every given key must match (AND).
#[derive(Default)]
struct Filter {
    /// `Some(None)`: "has no external_id".
    external_id: Option<Option<String>>,
    email: Option<String>,
    is_active: Option<bool>,
    has_external_id: Option<bool>,
    /// Any of these external_ids.
    external_ids: Option<std::collections::HashSet<String>>,
    /// Holds this role.
    role_id: Option<String>,
    /// Any of these emails (normalised as `email` is).
    emails: Option<std::collections::HashSet<String>>,
}

impl Filter {
    fn parse(f: &Map<String, Value>) -> ApiResult<Self> {
        reject_unknown(f, FILTER_KEYS, "filter.")?;
        let field = |k: &str| format!("filter.{k}");
        Ok(Filter {
            external_id: f
                .get("external_id")
                .map(|v| as_nullable_string(v, &field("external_id")))
                .transpose()?,
            email: f
                .get("email")
                .map(|v| as_string(v, &field("email")))
                .transpose()?,
            is_active: f
                .get("is_active")
                .map(|v| as_bool(v, &field("is_active")))
                .transpose()?,
            has_external_id: f
                .get("has_external_id")
                .map(|v| as_bool(v, &field("has_external_id")))
                .transpose()?,
            external_ids: f
                .get("external_ids")
                .map(|v| string_list(v, &field("external_ids")))
                .transpose()?,
            role_id: f
                .get("role_id")
                .map(|v| as_string(v, &field("role_id")))
                .transpose()?,
            emails: f
                .get("emails")
                .map(|v| {
                    let list = string_list(v, &field("emails"))?;
                    Ok(list.iter().map(|e| normalize_email(e)).collect())
                })
                .transpose()?,
        })
    }

    fn matches(&self, u: &ZenqmsUser) -> bool {
        self.external_id
            .as_ref()
            .is_none_or(|e| &u.external_id == e)
            && self
                .email
                .as_ref()
                .is_none_or(|e| normalize_email(e) == normalize_email(&u.email))
            && self.is_active.is_none_or(|a| u.is_active == a)
            && self
                .has_external_id
                .is_none_or(|h| u.external_id.is_some() == h)
            && self
                .external_ids
                .as_ref()
                .is_none_or(|ids| u.external_id.as_ref().is_some_and(|e| ids.contains(e)))
            && self
                .role_id
                .as_ref()
                .is_none_or(|r| u.roles.iter().any(|x| x == r))
            && self
                .emails
                .as_ref()
                .is_none_or(|e| e.contains(&normalize_email(&u.email)))
    }
}

/// A filter's list of 1 to [`MAX_FILTER_IDS`] strings.
fn string_list(v: &Value, name: &str) -> ApiResult<std::collections::HashSet<String>> {
    let list = v
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= MAX_FILTER_IDS)
        .ok_or_else(|| {
            bad_request(format!(
                "field `{name}` must be an array of 1 to {MAX_FILTER_IDS} strings"
            ))
        })?;
    list.iter().map(|v| as_string(v, name)).collect()
}

fn not_found_user(id: &str) -> ApiError {
    ApiError(404, "not_found", format!("user `{id}` not found"))
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// 422 rules: non-empty names and title; an email with exactly one '@' and a dot in the domain.
fn validate_user(u: &ZenqmsUser) -> ApiResult<()> {
    for (field, value) in [
        ("first_name", &u.first_name),
        ("last_name", &u.last_name),
        ("title", &u.title),
    ] {
        if value.trim().is_empty() {
            return Err(invalid_field(format!("field `{field}` must not be empty")));
        }
    }
    let email = u.email.trim();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(invalid_field(format!(
            "field `email` is not a valid email address: `{}`",
            u.email
        )));
    }
    Ok(())
}

/// The request body as a JSON object (requires `Content-Type: application/json`).
fn json_object(req: &HttpRequest) -> ApiResult<Map<String, Value>> {
    let content_type = req
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/json") {
        return Err(bad_request("Content-Type must be application/json"));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("body must be a JSON object")),
        Err(e) => Err(bad_request(format!("invalid JSON body: {e}"))),
    }
}

fn reject_unknown(body: &Map<String, Value>, known: &[&str], prefix: &str) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad_request(format!("unknown field `{prefix}{k}`"))),
        None => Ok(()),
    }
}

fn required<T>(
    body: &Map<String, Value>,
    key: &str,
    read: fn(&Value, &str) -> ApiResult<T>,
) -> ApiResult<T> {
    let value = body
        .get(key)
        .ok_or_else(|| bad_request(format!("missing required field `{key}`")))?;
    read(value, key)
}

fn as_string(value: &Value, field: &str) -> ApiResult<String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad_request(format!("field `{field}` must be a string")))
}

fn as_bool(value: &Value, field: &str) -> ApiResult<bool> {
    value
        .as_bool()
        .ok_or_else(|| bad_request(format!("field `{field}` must be a boolean")))
}

fn as_nullable_string(value: &Value, field: &str) -> ApiResult<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad_request(format!(
            "field `{field}` must be a string or null"
        ))),
    }
}

fn optional_int(body: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    body.get(key)
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| bad_request(format!("field `{key}` must be an integer")))
        })
        .transpose()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For the `Allow` header of a 405.
fn allowed_method(url: &str) -> &'static str {
    let path = url.split('?').next().unwrap_or(url);
    if path.ends_with("/v2/roles") {
        "GET"
    } else if path.ends_with("/roles/add")
        || path.ends_with("/v2/users")
        || path.ends_with("/v2/users/search")
    {
        "POST"
    } else if path.ends_with("/roles/remove") {
        "DELETE"
    } else {
        "PATCH"
    }
}

#[cfg(test)]
mod tests;
