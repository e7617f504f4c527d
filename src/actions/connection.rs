//! `test-connection`: checks the configuration, both credentials, each Graph permission (by
//! one minimal read each) and every group and role the configuration names. Writes nothing,
//! creates no subscription, changes no state.
//!
//! Result: `{"ok": bool, "checks": [{"check", "ok", "detail", "hint"?}]}`; a failed check's
//! `hint` says what an admin can do about it.

use serde_json::{Value, json};

use crate::clients::graph::{GRAPH_BASE, Graph};
use crate::clients::zenqms::api;
use crate::config::{self, Config};
use crate::failure::Failure;
use crate::handlers::Instance;
use crate::platform::round::Round;
use crate::platform::url::encode;
use crate::platform::{HttpResult, Method, Platform};

/// The checks made so far.
#[derive(Default)]
struct Checks(Vec<Value>);

impl Checks {
    fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.0
            .push(json!({"check": check, "ok": true, "detail": detail.into()}));
    }

    fn failed(&mut self, check: &str, detail: impl Into<String>, hint: impl Into<String>) {
        self.0.push(json!({
            "check": check,
            "ok": false,
            "detail": detail.into(),
            "hint": hint.into(),
        }));
    }

    fn result(self) -> (String, Value) {
        let failed = self.0.iter().filter(|c| c["ok"] == false).count();
        let summary = match failed {
            0 => format!("all {} checks passed", self.0.len()),
            n => format!("{n} of {} checks failed", self.0.len()),
        };
        (summary, json!({"ok": failed == 0, "checks": self.0}))
    }
}

/// One Graph permission, exercised by one minimal read (least-privileged application
/// permissions per the Microsoft Graph API reference of each endpoint).
struct PermissionRead {
    permission: &'static str,
    what: &'static str,
    url: String,
}

/// The reads that exercise User.Read.All, Group.Read.All and GroupMember.Read.All (the FAQ's
/// three): a user, a group, and a group's members (`group`: one the configuration names, or
/// none to list members of the first group found).
fn permission_reads(group: Option<&str>) -> Vec<PermissionRead> {
    let mut reads = vec![
        PermissionRead {
            permission: "User.Read.All",
            what: "read users",
            url: format!("{GRAPH_BASE}/users?$select=id&$top=1"),
        },
        PermissionRead {
            permission: "Group.Read.All",
            // GroupMember.Read.All allows this read too (Graph "List groups"); only creating
            // the groups subscription needs Group.Read.All itself, and no read can tell.
            what: "read groups (GroupMember.Read.All would allow this too: the groups change notifications need Group.Read.All itself, which only a deploy proves)",
            url: format!("{GRAPH_BASE}/groups?$select=id&$top=1"),
        },
    ];
    if let Some(g) = group {
        reads.push(PermissionRead {
            permission: "GroupMember.Read.All",
            // Group.Read.All allows this read too (Graph "List group transitive members").
            what: "read group members (Group.Read.All would allow this too)",
            url: format!(
                "{GRAPH_BASE}/groups/{}/transitiveMembers?$select=id&$top=1",
                encode(g)
            ),
        });
    }
    reads
}

/// What a refused Graph read means for an admin.
fn permission_hint(status: u16, permission: &str) -> String {
    match status {
        403 => format!(
            "admin consent missing for {permission}: in the Entra admin center, App registrations > the app > API permissions, add the Microsoft Graph application permission {permission} and grant admin consent"
        ),
        401 => {
            "Graph refused the token: check that the app registration belongs to entra_tenant_id"
                .into()
        }
        429 | 500..=599 => {
            "Microsoft Graph is busy or unavailable: try again in a few minutes".into()
        }
        _ => "see the detail; the Graph error code names the cause".into(),
    }
}

fn describe_failure(result: &HttpResult) -> (u16, String) {
    match result {
        Ok(r) => (
            r.status,
            format!(
                "Graph answered {}: {}",
                r.status,
                crate::failure::upstream::describe(r)
            ),
        ),
        Err(e) => (0, Failure::http("Microsoft Graph", e).message),
    }
}

/// Runs every check; never fails for a check that failed (that is the result), only when the
/// configuration itself cannot be read.
pub fn run(p: &dyn Platform, inst: &Instance) -> Result<(String, Value), Failure> {
    let mut checks = Checks::default();
    let config = match config::parse(&inst.config) {
        Ok(c) => {
            checks.ok("configuration", "every key is valid");
            c
        }
        Err(e) => {
            checks.failed(
                "configuration",
                e.to_string(),
                "fix the listed keys in the configuration wizard",
            );
            return Ok(checks.result());
        }
    };
    if let Some(warning) = config.base_url_warning() {
        // A warning, not a failure: a test server is a legitimate target.
        checks.ok("zenqms base url", format!("warning: {warning}"));
    }
    // Round 1: the Entra token and the ZenQMS role list (which checks the ZenQMS token).
    let (token, roles) = crate::handlers::check_connections(p, &config);
    zenqms_checks(&mut checks, &config, roles);
    match token {
        Ok(token) => {
            checks.ok("entra token", "the token endpoint issued an app-only token");
            let graph = Graph::new(p, token, Some(&config));
            graph_checks(&mut checks, &config, &graph)?;
        }
        Err(f) => checks.failed(
            "entra token",
            f.message,
            "check entra_tenant_id, entra_client_id and entra_client_secret (the secret's value, not its id; it may have expired)",
        ),
    }
    Ok(checks.result())
}

fn zenqms_checks(checks: &mut Checks, config: &Config, roles: Result<Vec<api::Role>, Failure>) {
    match roles {
        Ok(roles) => {
            checks.ok(
                "zenqms token",
                format!("ZenQMS answered the role list ({} roles)", roles.len()),
            );
            let known = roles.into_iter().map(|r| r.id).collect();
            let unknown = config::unknown_roles(config, &known);
            for m in &config.role_mappings {
                if known.contains(&m.role) {
                    checks.ok("mapped role", format!("role {} exists in ZenQMS", m.role));
                }
            }
            for problem in unknown {
                checks.failed(
                    "mapped role",
                    problem,
                    "pick the role with list-roles and fix role_mappings",
                );
            }
        }
        Err(f) => {
            let hint = if f.message.contains("401") || f.message.contains("403") {
                "ZenQMS refused the token: check zenqms_api_token and that it belongs to zenqms_environment (production or sandbox)"
            } else {
                "ZenQMS did not answer: check zenqms_environment, or try again later"
            };
            checks.failed("zenqms token", f.message, hint);
        }
    }
}

/// Round 2: one read per permission, and every named group (`GET /groups/{id}`).
fn graph_checks(checks: &mut Checks, config: &Config, graph: &Graph<'_>) -> Result<(), Failure> {
    let named = config.read_groups();
    let reads = permission_reads(named.first().map(String::as_str));
    let mut round = Round::new();
    let mut read_slots = Vec::new();
    for r in &reads {
        read_slots.push(round.add(graph.request(Method::Get, &r.url, None)?));
    }
    let group_slots = round.add_all(graph.group_requests(&named)?);
    let mut answers = round.send(|reqs| graph.send_all(reqs));
    let mut first_group = None;
    for (r, slot) in reads.iter().zip(read_slots) {
        let result = answers.take(slot);
        match &result {
            Ok(resp) if resp.is_success() => {
                if r.permission == "Group.Read.All" {
                    first_group = serde_json::from_slice::<Value>(&resp.body)
                        .ok()
                        .and_then(|v| v["value"][0]["id"].as_str().map(str::to_string));
                }
                checks.ok(
                    &format!("permission {}", r.permission),
                    format!("the app can {}", r.what),
                );
            }
            // The members read went to a configured group that does not exist: that is the
            // group check's failure, not a permission's.
            Ok(resp) if resp.status == 404 => checks.ok(
                &format!("permission {}", r.permission),
                "not exercised: the configured group it was tried on does not exist (see the group checks)",
            ),
            _ => {
                let (status, detail) = describe_failure(&result);
                checks.failed(
                    &format!("permission {}", r.permission),
                    detail,
                    permission_hint(status, r.permission),
                );
            }
        }
    }
    let exists = Graph::unpack_all(named.len(), answers.take_all(&group_slots));
    for (g, answer) in named.iter().zip(exists) {
        let key = if config.scope_groups.contains(g) {
            "scope group"
        } else {
            "mapped group"
        };
        match Graph::read_group_exists(answer) {
            Ok(true) => checks.ok(key, format!("group {g} exists")),
            Ok(false) => checks.failed(
                key,
                format!("group {g} does not exist in the Entra tenant (Graph answers 404)"),
                "pick the group with list-groups and fix the configuration",
            ),
            Err(f) => checks.failed(
                key,
                format!("group {g} could not be read: {}", f.message),
                "see the permission checks above",
            ),
        }
    }
    // No group named: GroupMember.Read.All is exercised on the first group Graph listed.
    if named.is_empty() {
        match first_group {
            Some(g) => {
                let url = &permission_reads(Some(&g))[2].url;
                let result = graph.send(graph.request(Method::Get, url, None)?);
                let check = "permission GroupMember.Read.All";
                match &result {
                    Ok(resp) if resp.is_success() => {
                        checks.ok(check, "the app can read group members")
                    }
                    _ => {
                        let (status, detail) = describe_failure(&result);
                        checks.failed(
                            check,
                            detail,
                            permission_hint(status, "GroupMember.Read.All"),
                        );
                    }
                }
            }
            None => checks.ok(
                "permission GroupMember.Read.All",
                "not exercised: the tenant has no group to read members of",
            ),
        }
    }
    Ok(())
}
