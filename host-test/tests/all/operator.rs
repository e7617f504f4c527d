//! Operator tooling: dry run and the audit trail.

use std::collections::BTreeMap;

use crate::common::*;
use host_test::runner::Runner;
use host_test::runtime::Runtime;
use host_test::scenario::Scenario;
use serde_json::{Value, json};

fn demo_deploy_only() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/demo.json"
    ))
    .unwrap();
    let mut s: Value = serde_json::from_str(&text).unwrap();
    s["steps"] = json!([{"deploy": {}}]);
    s["expect"] = json!({});
    s
}

fn actions(r: &host_test::report::Report, planned: bool) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for a in r.audit.iter().filter(|a| a.planned == planned) {
        *m.entry((a.action.clone(), a.entra_id.clone())).or_default() += 1;
    }
    m
}

#[test]
fn a_dry_run_plans_exactly_what_a_real_run_does_and_writes_nothing() {
    let real = run(demo_deploy_only());
    let mut s = demo_deploy_only();
    s["instance"]["config"]["dry_run"] = json!("true");
    let dry = run(s.clone());
    assert_ok(&real);
    assert_ok(&dry);
    // Same plan, user by user and action by action.
    assert!(!actions(&real, false).is_empty());
    assert_eq!(actions(&real, false), actions(&dry, true));
    assert!(actions(&dry, false).is_empty(), "a dry run writes nothing");
    // ZenQMS is exactly as seeded; no subscription exists.
    let seeded: Vec<String> = s["zenqms"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        dry.zenqms
            .users
            .iter()
            .map(|u| u.id.clone())
            .collect::<Vec<_>>(),
        seeded
    );
    assert!(
        dry.zenqms
            .users
            .iter()
            .all(|u| u.external_id.as_deref() != Some(uid(1).as_str()))
    );
    assert!(dry.entra.subscriptions.is_empty());
    let summary = dry.steps[0].summary.clone().unwrap();
    assert!(
        summary.contains("dry run") && summary.contains("nothing written"),
        "{summary}"
    );
    let table = host_test::report::plan_table(&dry.audit);
    assert!(
        table.contains("created") && table.contains("Totals:"),
        "{table}"
    );
    // A real deploy afterwards starts from a clean slate.
    let mut after = s.clone();
    after["steps"] = json!([{"deploy": {}}, {"configure": {"dry_run": "false"}}, {"deploy": {}}]);
    let r = run(after);
    assert_ok(&r);
    assert_eq!(r.zenqms.users.len(), real.zenqms.users.len());
}

#[test]
fn every_write_has_an_audit_record_with_its_cause_and_changes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
    let mut scenarios: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    let mut lifecycle = demo_deploy_only();
    lifecycle["steps"] = json!([{"deploy": {}}, {"delete": {}}, {"deploy": {}}]);
    scenarios.push(lifecycle);
    for s in scenarios {
        let mut runner = Runner::new(
            Runtime::shared(),
            Scenario::from_json(&s.to_string()).unwrap(),
        );
        let records = runner.run_steps(|_| {});
        let writes = runner.world().zenqms.writes();
        let report = finish(runner, records);
        let audit: Vec<_> = report.audit.iter().filter(|a| !a.planned).collect();
        assert_eq!(
            audit.len() as u64,
            writes,
            "every ZenQMS write has exactly one audit record"
        );
        for a in audit {
            assert!(!a.cause.is_empty(), "{a:?}");
            assert!(!a.changes.is_empty(), "{a:?}");
            assert!(!a.zenqms_id.is_empty(), "{a:?}");
        }
        let text = serde_json::to_string(&report.audit).unwrap();
        assert!(!text.contains(s["zenqms"]["api_token"].as_str().unwrap()));
        assert!(!text.contains(s["entra"]["client_secret"].as_str().unwrap()));
    }
}
