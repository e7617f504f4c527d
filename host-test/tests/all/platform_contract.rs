//! The platform contract: sandbox imports, configuration errors, connection checks, webhooks,
//! secrets, and the replay CLI and report.

use crate::common::*;
use host_test::runtime::Runtime;
use serde_json::{Value, json};

#[test]
fn component_imports_only_http_log_and_std_wasi() {
    let imports = Runtime::shared().imports();
    let allowed = [
        "zenqms:entra-sync/types@0.3.0",
        "zenqms:entra-sync/http@0.3.0",
        "zenqms:entra-sync/log@0.3.0",
    ];
    let allowed_wasi = [
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-",
    ];
    for name in &imports {
        let ok =
            allowed.contains(&name.as_str()) || allowed_wasi.iter().any(|p| name.starts_with(p));
        assert!(ok, "unexpected import {name} (all: {imports:?})");
    }
    for forbidden in ["wasi:filesystem", "wasi:sockets", "wasi:http"] {
        assert!(
            !imports.iter().any(|n| n.starts_with(forbidden)),
            "{forbidden} imported"
        );
    }
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("zenqms:entra-sync/http"))
    );
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("zenqms:entra-sync/log"))
    );
}

fn zenqms_requests(r: &host_test::report::Report) -> u64 {
    r.http
        .by_target
        .iter()
        .filter(|(k, _)| format!("{k:?}") == "Zenqms")
        .map(|(_, v)| *v)
        .sum()
}

fn deploy_error(r: &host_test::report::Report) -> String {
    r.steps[0].error.clone().expect("deploy should fail")
}

#[test]
fn invalid_configuration_lists_every_problem_and_sends_nothing() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    let config = s["instance"]["config"].as_object_mut().unwrap();
    config.remove("entra_client_secret");
    config.insert("entra_tenant_id".into(), json!("contoso.onmicrosoft.com"));
    config.insert("zenqms_base_url".into(), json!("ftp://acme"));
    config.insert(
        "role_mappings".into(),
        json!("[{\"role\": \"r-qa\", \"groups\": [\"sales\"]}]"),
    );
    let r = run(s);
    let err = deploy_error(&r);
    for needle in [
        "missing key 'entra_client_secret'",
        "'entra_tenant_id' must be a GUID",
        "'zenqms_base_url' is not a valid URL",
        "'role_mappings'[0].groups[0] is not a GUID",
        "4 problems",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    assert_eq!(r.http.requests, 0, "nothing sent with an invalid config");
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!("{not json"));
    s["instance"]["config"]["zenqms_api_token"] = json!("");
    let err = deploy_error(&run(s));
    assert!(
        err.contains("'role_mappings' is not valid JSON")
            && err.contains("missing key 'zenqms_api_token'"),
        "{err}"
    );
}

#[test]
fn a_role_unknown_to_zenqms_fails_the_deploy_and_writes_nothing() {
    let mappings =
        json!([{"role": "r-nope", "groups": [gid(1)]}, {"role": "r-qa", "groups": [gid(1)]}]);
    let r = run(scenario(vec![entra_user(1)], json!([]), vec![], mappings));
    let err = deploy_error(&r);
    assert!(
        err.contains("'role_mappings'[0] names a role id that ZenQMS does not have"),
        "{err}"
    );
    assert!(r.zenqms.users.is_empty());
    // Reads only, in the deploy's first round: the role list, and the count of linked users
    // a valid deploy gives its full sync's walk (`linked_hint`).
    assert_eq!(
        zenqms_requests(&r),
        2,
        "only the role list and the count were read"
    );
    assert!(r.audit.is_empty());
}

#[test]
fn a_wrong_client_secret_names_the_aadsts_code_and_writes_nothing() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["entra_client_secret"] = json!("wrong-secret-value");
    let r = run(s);
    let err = deploy_error(&r);
    assert!(
        err.contains("AADSTS7000215") && err.contains("entra_client_secret"),
        "{err}"
    );
    assert!(err.contains("not retryable"));
    assert!(!err.contains("wrong-secret-value"));
    assert!(r.zenqms.users.is_empty());
}

#[test]
fn a_wrong_zenqms_token_is_reported_and_nothing_is_written() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["zenqms_api_token"] = json!("stale-token");
    let r = run(s);
    let err = deploy_error(&r);
    assert!(
        err.contains("401") && err.contains("zenqms_api_token"),
        "{err}"
    );
    assert!(r.zenqms.users.is_empty());
}

#[test]
fn webhook_validation_handshake_and_bad_requests() {
    let mut s = scenario(vec![], json!([]), vec![], json!([]));
    s["steps"] = json!([
        {"webhook": {"method": "POST", "query": "validationToken=Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request-Id%3A%2025f2c4b8", "headers": {"content-type": "text/plain; charset=utf-8"}}},
        {"webhook": {"method": "POST", "query": format!("validationToken={}", "x".repeat(1025))}},
        {"webhook": {"method": "POST", "body_text": "{not json"}},
        {"webhook": {"method": "POST", "body": {"value": [{"subscriptionId": "forged", "clientState": "guess", "changeType": "updated", "resource": "Users/x", "tenantId": TENANT}]}}},
    ]);
    let r = run(s);
    assert_ok(&r);
    let resp = |i: usize| r.steps[i].response.clone().unwrap();
    assert_eq!(resp(0).status, 200);
    assert_eq!(
        resp(0).body,
        "Validation: Testing client application reachability for subscription Request-Id: 25f2c4b8"
    );
    assert!(resp(0).headers["content-type"].starts_with("text/plain"));
    assert_eq!(resp(1).status, 400);
    assert_eq!(resp(2).status, 400);
    assert_eq!(resp(3).status, 202);
    assert!(log_text(&r).contains("notification rejected: unknown subscription"));
    assert_eq!(
        r.http.requests, 0,
        "webhooks that change nothing send nothing"
    );
}

/// Every secret of a scenario and every token Graph issued.
fn assert_no_secrets(report_json: &str, extra: &[&str]) {
    for secret in [SECRET, API_TOKEN].iter().chain(extra) {
        assert!(
            !report_json.contains(secret),
            "secret {secret:?} leaked into the report"
        );
    }
    assert!(
        !report_json.contains("Bearer "),
        "an Authorization value leaked"
    );
}

#[test]
fn no_secret_or_issued_token_appears_in_logs_errors_state_or_report() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/demo.json"
    ))
    .unwrap();
    let demo: Value = serde_json::from_str(&text).unwrap();
    let parsed = host_test::scenario::Scenario::from_json(&text).unwrap();
    let mut runner = host_test::runner::Runner::new(Runtime::shared(), parsed);
    let records = runner.run_steps(|_| {});
    let tokens = runner.world().graph.issued_tokens();
    assert!(!tokens.is_empty());
    let state = runner.state.clone().expect("state stored");
    let report = serde_json::to_string(&finish(runner, records)).unwrap();
    let mut secrets: Vec<&str> = vec![
        demo["entra"]["client_secret"].as_str().unwrap(),
        demo["zenqms"]["api_token"].as_str().unwrap(),
    ];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secrets(&report, &secrets);
    assert_no_secrets(&state, &secrets);
    // Failure paths too: a wrong secret must not be echoed.
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["entra_client_secret"] = json!("leaky-wrong-secret");
    let text = serde_json::to_string(&run(s)).unwrap();
    assert_no_secrets(&text, &["leaky-wrong-secret"]);
}

#[test]
fn demo_replays_through_the_cli_and_writes_the_report() {
    let dir = std::env::temp_dir().join(format!("host-test-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("r.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_host-test"))
        .args([
            "replay",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/demo.json"),
            "--report",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for key in ["steps", "zenqms", "entra", "http", "clock", "expect"] {
        assert!(report.get(key).is_some(), "report lacks {key}");
    }
    let step = &report["steps"][0];
    for key in [
        "index", "kind", "calls", "ok", "error", "summary", "response", "logs",
    ] {
        assert!(step.get(key).is_some(), "step lacks {key}");
    }
    assert_eq!(report["expect"]["ok"], json!(true));
    for key in ["login", "graph", "zenqms", "denied"] {
        assert!(
            report["http"]["by_target"].get(key).is_some(),
            "by_target lacks {key}"
        );
    }
    let users = report["zenqms"]["users"].as_array().unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "users sorted by id");
    // A failing expectation makes the CLI exit non-zero.
    let mut broken: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/demo.json"
        ))
        .unwrap(),
    )
    .unwrap();
    broken["expect"]["zenqms_user_count"] = json!(1);
    let path = dir.join("broken.json");
    std::fs::write(&path, broken.to_string()).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_host-test"))
        .arg("replay")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}
