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

/// A dry run over many short calls plans every write and role call a real run makes, for
/// users it pretends to create and to link by email as much as for those already linked.
/// Two red teams found role changes missing from the preview (6 of 525 role additions at 3 s
/// calls; 12 of 700, then 108 of 700 with the members read before each step): the users of a
/// call's last step, or of a step beside the members' read, waited for their roles into the
/// next call, which looked for accounts the dry run had only pretended to create or link, and
/// found none. (The red team's 700-user world at 2 s calls reads more members than a call
/// carries, where real runs overrun their budget too: the README's known limit.) Now a dry
/// run plans a call's carried role calls before the call ends (it sends nothing, so they
/// cost no round) and works no step beside the members' read.
#[test]
fn a_dry_run_over_many_calls_plans_every_role_call_a_real_run_makes() {
    // (users, concurrency, call budget in ms, Graph's page size)
    for (n, concurrency, budget_ms, page_max) in [
        (420, 32, 3_000, 8),
        (450, 32, 2_000, 40),
        (200, 1, 2_000, 10),
    ] {
        let mut s = two_role_world(n, 4);
        // Every fifth user not linked yet has an account by email (a third of them holding
        // r-doc): the run links them.
        for i in (1..=n).filter(|i| i % 5 == 0 && i % 4 != 0) {
            let roles: &[&str] = if i % 3 == 0 { &["r-doc"] } else { &[] };
            s["zenqms"]["users"].as_array_mut().unwrap().push(zen_user(
                &format!("e-{i}"),
                &format!("user{i}@contoso.com"),
                None,
                roles,
            ));
        }
        s["concurrency"] = json!(concurrency);
        s["budget_ms"] = json!(budget_ms);
        s["entra"]["page_max"] = json!(page_max);
        let real = run(s.clone());
        assert_ok(&real);
        assert!(
            real.steps[0].calls > 2,
            "{n}: one call, the case is not met"
        );
        let made = actions(&real, false);
        assert!(made.keys().any(|(a, _)| a == "linked"), "{n}: no link made");
        s["instance"]["config"]["dry_run"] = json!("true");
        let dry = run(s);
        assert_ok(&dry);
        assert!(
            dry.steps[0].calls > 2,
            "{n}: one dry call, the case is not met"
        );
        let planned = actions(&dry, true);
        let differ: Vec<_> = made
            .keys()
            .chain(planned.keys())
            .filter(|k| made.get(*k) != planned.get(*k))
            .collect();
        assert!(
            differ.is_empty(),
            "{n} users: {} actions made and planned differ, e.g. {:?}",
            differ.len(),
            &differ[..differ.len().min(5)]
        );
        assert!(actions(&dry, false).is_empty(), "a dry run writes nothing");
    }
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

/// A dry run holds nothing, so it does not log the guard's error an admin must act on ("mass
/// deactivation blocked … run the action release-held-deactivations"): it warns that a real
/// run would block them, and its summary says how many would be held (a bug hunt: the dry run
/// logged the same ERROR line as a real hold).
#[test]
fn a_dry_runs_guard_warns_instead_of_logging_a_hold() {
    let users: Vec<Value> = (1..=4)
        .map(|i| {
            let mut u = entra_user(i);
            u["accountEnabled"] = json!(i > 3);
            u
        })
        .collect();
    let mut s = scenario(users, json!([]), linked_zen_users(1..=4), json!([]));
    s["instance"]["config"]["max_deactivations"] = json!("1");
    s["steps"] = json!([{"deploy": {}}]);
    let real = run(s.clone());
    assert!(log_text(&real).contains("mass deactivation blocked"));
    s["instance"]["config"]["dry_run"] = json!("true");
    let dry = run(s);
    let text = log_text(&dry);
    assert!(!text.contains("mass deactivation blocked"), "{text}");
    let warning = dry.steps[0]
        .logs
        .iter()
        .find(|l| {
            l.message
                .starts_with("dry run: a real run would block this mass deactivation")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(warning.level, "warn");
    assert!(
        text.contains("3 DEACTIVATIONS WOULD BE HELD BACK"),
        "{text}"
    );
}
