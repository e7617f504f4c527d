//! Rebuilds an offline scenario from a recording: the world as the services showed it, the
//! commands as steps, and the final ZenQMS state (initial users plus every successful write's
//! answer) as the expectation. See "Live runs and recordings" in the README for the limits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::LiveConfig;
use super::record::{Recorded, object, read_commands, read_exchanges};
use crate::scenario::Scenario;

/// Stand-ins for the credentials: the replay's fakes accept them, and they are no secret.
pub const CLIENT_SECRET_PLACEHOLDER: &str = "recorded-placeholder-client-secret";
pub const API_TOKEN_PLACEHOLDER: &str = "recorded-placeholder-api-token";

const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "first_name",
    "last_name",
    "title",
    "is_active",
    "external_id",
    "roles",
];

/// The world the recording saw.
#[derive(Default)]
struct Seen {
    /// Entra users in first-seen order (the richest answer kept per id).
    users: Vec<Map<String, Value>>,
    /// Group id -> (displayName, user ids).
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
    roles: Vec<Value>,
    /// ZenQMS users as a search first showed them before any write to them, by id: the
    /// directory the run started from, as far as the component read it (it looks up the users
    /// it needs; users it never read play no part in the replay either).
    initial: BTreeMap<String, Map<String, Value>>,
    /// Ids of ZenQMS users written so far.
    written: BTreeSet<String>,
    /// Successful writes' answers, in order.
    writes: Vec<Map<String, Value>>,
}

impl Seen {
    fn user(&mut self, mut u: Map<String, Value>) {
        u.remove("@odata.context");
        let Some(id) = u.get("id").and_then(Value::as_str).map(str::to_string) else {
            return;
        };
        match self.users.iter_mut().find(|x| x["id"] == id.as_str()) {
            Some(old) if old.len() < u.len() => *old = u,
            Some(_) => {}
            None => self.users.push(u),
        }
    }

    fn graph(&mut self, ex: &Recorded, body: &Value) {
        self.graph_answer(&ex.method, &ex.url, body, &ex.request.body);
    }

    /// One Graph answer: `url` as sent (absolute), `body` the answer's JSON, `sent` the
    /// request's JSON body. A `$batch` is taken apart: each of its items whose answer is 2xx
    /// counts as that GET answered on its own (the component reads groups, their members and
    /// users by `$batch` when it asks for more than one).
    fn graph_answer(&mut self, method: &str, url: &str, body: &Value, sent: &Option<Value>) {
        let path = url.split('?').next().unwrap_or_default();
        let path = path.split_once("://").map_or(path, |(_, r)| r);
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let page = || body["value"].as_array().cloned().unwrap_or_default();
        if let ("POST", ["v1.0", "$batch"]) = (method, segs.as_slice()) {
            let requests = sent
                .as_ref()
                .and_then(|b| b["requests"].as_array())
                .cloned()
                .unwrap_or_default();
            let answers = body["responses"].as_array().cloned().unwrap_or_default();
            for item in &requests {
                let answer = answers.iter().find(|a| a["id"] == item["id"]);
                let ok = answer
                    .and_then(|a| a["status"].as_u64())
                    .is_some_and(|s| (200..300).contains(&s));
                if let (true, Some(a), Some(m), Some(u)) =
                    (ok, answer, item["method"].as_str(), item["url"].as_str())
                {
                    let url = format!("https://graph.microsoft.com/v1.0{u}");
                    self.graph_answer(m, &url, &a["body"], &None);
                }
            }
            return;
        }
        match (method, segs.as_slice()) {
            ("GET", ["v1.0", "users"]) => page().iter().for_each(|u| self.user(object(u))),
            ("GET", ["v1.0", "users", id]) if *id != "delta" => self.user(object(body)),
            ("GET", ["v1.0", "groups", gid, "transitiveMembers", ..]) => {
                let entry = self.groups.entry(gid.to_string()).or_default();
                for m in page() {
                    let is_user = m["@odata.type"]
                        .as_str()
                        .is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"));
                    if let (true, Some(id)) = (is_user, m["id"].as_str()) {
                        entry.1.insert(id.to_string());
                    }
                }
            }
            ("GET", ["v1.0", "groups", gid]) if *gid != "delta" => {
                let entry = self.groups.entry(gid.to_string()).or_default();
                entry.0 = body["displayName"].as_str().unwrap_or_default().into();
            }
            _ => {}
        }
    }

    fn zenqms(&mut self, ex: &Recorded, base: &str, body: &Value) {
        let url = ex.url.split('?').next().unwrap_or_default();
        let Some(path) = url
            .get(..base.len())
            .filter(|p| p.eq_ignore_ascii_case(base))
            .map(|_| &url[base.len()..])
        else {
            return;
        };
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let wrote = matches!(
            (ex.method.as_str(), segs.as_slice()),
            ("POST", ["v2", "users"])
                | ("PATCH", ["v2", "users", _])
                | ("POST", ["v2", "users", _, "roles", "add"])
                | ("DELETE", ["v2", "users", _, "roles", "remove"])
        );
        match (ex.method.as_str(), segs.as_slice()) {
            _ if wrote => {
                if let Some(id) = body["id"].as_str() {
                    self.written.insert(id.into());
                }
                if let [_, _, id, ..] = segs.as_slice() {
                    self.written.insert((*id).into());
                }
                self.writes.push(object(body));
            }
            ("GET", ["v2", "roles"]) => {
                let roles = body["data"].as_array().into_iter().flatten();
                self.roles = roles
                    .map(|r| json!({"id": r["id"], "name": r["name"]}))
                    .collect();
            }
            ("POST", ["v2", "users", "search"]) => {
                for u in body["data"].as_array().into_iter().flatten() {
                    if let Some(id) = u["id"].as_str().filter(|id| !self.written.contains(*id)) {
                        self.initial.entry(id.into()).or_insert_with(|| object(u));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The fields a scenario's ZenQMS user takes, strings never null.
fn zenqms_user(u: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for k in USER_FIELDS {
        let v = u.get(*k).cloned().unwrap_or(Value::Null);
        let v = match (*k, v) {
            ("external_id", v) => v,
            ("is_active", Value::Bool(b)) => Value::Bool(b),
            ("is_active", _) => Value::Bool(true),
            ("roles", Value::Array(r)) => Value::Array(r),
            ("roles", _) => json!([]),
            (_, Value::String(s)) => Value::String(s),
            (_, _) => Value::String(String::new()),
        };
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

/// Builds `scenario.json`'s content from the recording in `dir`; it parses as a [`Scenario`].
pub fn scenario(dir: &Path, cfg: &LiveConfig, concurrency: usize) -> Result<Value> {
    let exchanges = read_exchanges(dir)?;
    let commands = read_commands(dir)?;
    let config = &cfg.instance.config;
    let text = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
    let base = text("zenqms_base_url")
        .trim()
        .trim_end_matches('/')
        .to_string();

    let mut seen = Seen::default();
    for ex in &exchanges {
        let Some(resp) = &ex.response else { continue };
        if !(200..300).contains(&resp.status.unwrap_or(0)) {
            continue;
        }
        let body = resp.body.clone().unwrap_or(Value::Null);
        match ex.target.as_str() {
            "graph" => seen.graph(ex, &body),
            "zenqms" => seen.zenqms(ex, &base, &body),
            _ => {}
        }
    }

    let mut finals = seen.initial.clone();
    for w in &seen.writes {
        if let Some(id) = w.get("id").and_then(Value::as_str) {
            finals.insert(id.to_string(), w.clone());
        }
    }
    // Ids ZenQMS gives created users depend on arrival order: expect them by email instead.
    let expected: Vec<Value> = finals
        .iter()
        .map(|(id, u)| {
            let u = zenqms_user(u);
            let mut e = Map::new();
            let keys = ["id", "email", "external_id", "is_active", "roles"];
            for k in keys
                .iter()
                .filter(|k| **k != "id" || seen.initial.contains_key(id))
            {
                e.insert(k.to_string(), u[*k].clone());
            }
            Value::Object(e)
        })
        .collect();

    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        if i > 0 {
            steps.push(json!({"advance": {"to": c.at}}));
        }
        if !c.ok {
            errors.push(json!({"step": steps.len(), "contains": ""}));
        }
        steps.push(c.step.clone());
    }

    let mut instance_config = config.clone();
    instance_config.insert(
        "entra_client_secret".into(),
        CLIENT_SECRET_PLACEHOLDER.into(),
    );
    instance_config.insert("zenqms_api_token".into(), API_TOKEN_PLACEHOLDER.into());
    let groups: Vec<Value> = seen
        .groups
        .iter()
        .map(|(id, (name, members))| json!({"id": id, "displayName": name, "members": members}))
        .collect();
    let names: Vec<String> = commands
        .iter()
        .map(|c| {
            c.step
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default()
        })
        .collect();
    let now = commands.first().map(|c| c.at.clone());
    let out = json!({
        "description": format!("Recorded live run ({}), rebuilt from {} exchanges; replays offline.",
            names.join(", "), exchanges.len()),
        "now": now.unwrap_or_else(|| chrono::Utc::now().to_rfc3339()),
        "rtt_ms": 0,
        "concurrency": concurrency,
        "budget_ms": cfg.budget_ms,
        "instance": {
            "id": cfg.instance.id,
            "webhook_url": cfg.instance.webhook_url,
            "config": instance_config,
        },
        "entra": {
            "tenant_id": text("entra_tenant_id"),
            "client_id": text("entra_client_id"),
            "client_secret": CLIENT_SECRET_PLACEHOLDER,
            "users": seen.users,
            "groups": groups,
        },
        "zenqms": {
            "api_token": API_TOKEN_PLACEHOLDER,
            "roles": seen.roles,
            "users": seen.initial.values().map(zenqms_user).collect::<Vec<_>>(),
        },
        "steps": steps,
        "expect": {
            "zenqms_users": expected,
            "zenqms_user_count": finals.len(),
            "errors": errors,
        },
    });
    Scenario::from_json(&out.to_string()).context("the rebuilt scenario does not parse")?;
    Ok(out)
}
