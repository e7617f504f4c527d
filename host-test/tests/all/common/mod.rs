//! Scenario building blocks shared by the scenario tests.
#![allow(dead_code)]

use host_test::fake_zenqms::ZenqmsUser;
use host_test::report::{Report, StepRecord};
use host_test::runner::{self, Runner};
use host_test::scenario::Scenario;
use serde_json::{Value, json};

pub const TENANT: &str = "8c3f3c1e-5d7a-4e38-9b76-2f0a4c1d9e11";
pub const CLIENT: &str = "0b5d9f2a-6c1e-4f7b-a3d2-91e8c7b6a5f4";
pub const SECRET: &str = "client-secret~Zx9-test";
pub const API_TOKEN: &str = "zq-api-token-test-4711";
pub const BASE: &str = "https://acme.zenqms.com";

pub fn uid(i: u32) -> String {
    format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}")
}

pub fn gid(i: u32) -> String {
    format!("{i:08x}-6a6a-4c4c-8d8d-000000000000")
}

/// A complete, enabled Entra user as Graph returns it.
pub fn entra_user(i: u32) -> Value {
    json!({
        "id": uid(i),
        "mail": format!("user{i}@contoso.com"),
        "givenName": format!("Given{i}"),
        "surname": format!("Sur{i}"),
        "jobTitle": "QA Specialist",
        "accountEnabled": true,
        "userPrincipalName": format!("user{i}@contoso.com"),
    })
}

/// The ZenQMS users at the end, without ZenQMS's own ids (which follow creation order), by
/// email: what two runs that should converge are compared on.
pub fn users_without_ids(r: &Report) -> Vec<Value> {
    let mut users: Vec<Value> = r
        .zenqms
        .users
        .iter()
        .map(|u| {
            let mut v = serde_json::to_value(u).unwrap();
            v.as_object_mut().unwrap().remove("id");
            v
        })
        .collect();
    users.sort_by_key(|v| v["email"].to_string());
    users
}

/// A ZenQMS user.
pub fn zen_user(id: &str, email: &str, external_id: Option<&str>, roles: &[&str]) -> Value {
    json!({
        "id": id, "email": email, "first_name": "First", "last_name": "Last", "title": "Title",
        "is_active": true, "external_id": external_id, "roles": roles,
    })
}

/// ZenQMS users `z<i>` (`user<i>@contoso.com`, no roles) linked to Entra users `i`.
pub fn linked_zen_users(ids: impl IntoIterator<Item = u32>) -> Vec<Value> {
    ids.into_iter()
        .map(|i| {
            zen_user(
                &format!("z{i}"),
                &format!("user{i}@contoso.com"),
                Some(&uid(i)),
                &[],
            )
        })
        .collect()
}

/// The resources (`users`, `groups`) of the active Graph subscriptions at the end.
pub fn subscribed_resources(r: &Report) -> Vec<&str> {
    r.entra
        .subscriptions
        .iter()
        .filter_map(|s| s["resource"].as_str())
        .collect()
}

/// Panics with the last step's error unless it succeeded.
pub fn assert_last_step_ok(r: &Report) {
    let last = r.steps.last().expect("a step");
    assert!(
        last.ok,
        "step {} ({}): {:?}",
        last.index, last.kind, last.error
    );
}

/// A scenario with the given world and steps (deploy by default).
pub fn scenario(users: Vec<Value>, groups: Value, zen_users: Vec<Value>, mappings: Value) -> Value {
    json!({
        "description": "test",
        "now": "2026-11-28T12:00:00Z",
        "rtt_ms": 100,
        "concurrency": 8,
        "budget_ms": 20000,
        "instance": {
            "id": "inst-1",
            "webhook_url": "https://hooks.platform.example/instances/inst-1",
            "config": {
                "entra_tenant_id": TENANT,
                "entra_client_id": CLIENT,
                "entra_client_secret": SECRET,
                "zenqms_base_url": BASE,
                "zenqms_api_token": API_TOKEN,
                "role_mappings": mappings,
            }
        },
        "entra": {
            "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
            "users": users, "groups": groups,
        },
        "zenqms": {
            "api_token": API_TOKEN,
            "roles": [
                {"id": "r-qa", "name": "Quality Approver"},
                {"id": "r-doc", "name": "Document Author"},
                {"id": "r-admin", "name": "Administrator"},
            ],
            "users": zen_users,
        },
        "steps": [{"deploy": {}}],
    })
}

/// Runs a scenario and checks the harness contract (`assert_contract`).
pub fn run(s: Value) -> Report {
    let scenario = Scenario::from_json(&s.to_string()).expect("valid scenario");
    checked(runner::run(scenario))
}

/// Runs a scenario without the contract check: only for tests of the check itself.
pub fn run_unchecked(s: Value) -> Report {
    let scenario = Scenario::from_json(&s.to_string()).expect("valid scenario");
    runner::run(scenario)
}

/// The report of a runner driven step by step, with the contract check (`assert_contract`):
/// every scenario test that builds its own `Runner` ends with this, not `runner.report`.
pub fn finish(runner: Runner, records: Vec<StepRecord>) -> Report {
    checked(runner.report(records))
}

/// `assert_contract`, passing the report through.
pub fn checked(r: Report) -> Report {
    assert_contract(&r);
    r
}

/// What every scenario must satisfy whatever it tests: the subscription invariant held after
/// every call and step, and no call ran more than one round past its budget.
pub fn contract_failures(r: &Report) -> Vec<String> {
    let mut out: Vec<String> = r
        .invariants
        .iter()
        .map(|v| format!("step {} invariant '{}': {}", v.step, v.name, v.detail))
        .collect();
    if r.http.calls_over_budget != 0 || r.http.worst_overrun_ms != 0 {
        out.push(format!(
            "{} calls over budget (budget_ms + rtt_ms), worst overrun {} ms",
            r.http.calls_over_budget, r.http.worst_overrun_ms
        ));
    }
    out
}

/// Panics with every contract failure (see `contract_failures`).
pub fn assert_contract(r: &Report) {
    let failures = contract_failures(r);
    assert!(
        failures.is_empty(),
        "harness contract violated:\n{}",
        failures.join("\n")
    );
}

/// The final ZenQMS user linked to an Entra id.
pub fn linked<'a>(r: &'a Report, entra_id: &str) -> Option<&'a ZenqmsUser> {
    r.zenqms
        .users
        .iter()
        .find(|u| u.external_id.as_deref() == Some(entra_id))
}

pub fn by_id<'a>(r: &'a Report, id: &str) -> &'a ZenqmsUser {
    r.zenqms
        .users
        .iter()
        .find(|u| u.id == id)
        .expect("user exists")
}

/// Every log line of the run, as `message field=value ...` text.
pub fn log_text(r: &Report) -> String {
    r.steps
        .iter()
        .flat_map(|s| &s.logs)
        .map(|l| {
            let f: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {} {}\n", l.level, l.message, f.join(" "))
        })
        .collect()
}

pub fn assert_ok(r: &Report) {
    for s in &r.steps {
        assert!(s.ok, "step {} ({}) failed: {:?}", s.index, s.kind, s.error);
    }
}

/// Deploys scenario `s` and returns the runner and the users subscription as Graph holds it
/// (for raw webhook requests built by a test).
pub fn deployed_with(s: Value) -> (host_test::runner::Runner, Value) {
    let s = Scenario::from_json(&s.to_string()).unwrap();
    let mut runner = host_test::runner::Runner::new(host_test::runtime::Runtime::shared(), s);
    let steps = runner.run_steps(|_| {});
    assert!(steps.iter().all(|s| s.ok), "{steps:?}");
    let now = runner.world().clock.now();
    let sub = runner
        .world()
        .graph
        .subscriptions(now)
        .into_iter()
        .find(|s| s["resource"] == "users")
        .unwrap();
    (runner, sub)
}

/// A scenario file under `fixtures/` (path relative to it), as JSON.
pub fn fixture(path: &str) -> Value {
    let full = format!("{}/../fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
}

/// The forms `Secrets::add` registers for `secret` (as it is, percent-encoded four ways,
/// JSON-escaped), trimmed, without repeats.
pub fn secret_forms(secret: &str) -> Vec<String> {
    let s = secret.trim();
    if s.is_empty() {
        return Vec::new();
    }
    let json = serde_json::to_string(s).unwrap();
    let encoded = entra_zenqms::platform::url::encode(s);
    let mut out: Vec<String> = Vec::new();
    for f in [
        s.to_string(),
        encoded.replace('~', "%7E").replace("%20", "+"),
        encoded.replace('~', "%7E"),
        encoded.replace("%20", "+"),
        encoded.clone(),
        json.trim_matches('"').to_string(),
    ] {
        if !f.is_empty() && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// `n` users; QA (all of them) maps to r-qa, Docs (every third) to r-doc; every
/// `linked_every`-th user is already linked in ZenQMS and holds r-doc.
pub fn two_role_world(n: u32, linked_every: usize) -> serde_json::Value {
    let users: Vec<_> = (1..=n).map(entra_user).collect();
    let groups = json!([
        {"id": gid(1), "displayName": "QA", "members": (1..=n).map(uid).collect::<Vec<_>>()},
        {"id": gid(2), "displayName": "Docs", "members": (1..=n).step_by(3).map(uid).collect::<Vec<_>>()},
    ]);
    let zen: Vec<_> = (1..=n)
        .skip(linked_every - 1)
        .step_by(linked_every)
        .map(|i| {
            zen_user(
                &format!("u-{i}"),
                &format!("user{i}@contoso.com"),
                Some(&uid(i)),
                &["r-doc"],
            )
        })
        .collect();
    let mappings =
        json!([{"role": "r-qa", "groups": [gid(1)]}, {"role": "r-doc", "groups": [gid(2)]}]);
    scenario(users, groups, zen, mappings)
}
