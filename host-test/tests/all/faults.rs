//! Fault injection: the main scenarios under many seeds at a 20% fault rate (429, 503, timeouts
//! on Graph and ZenQMS) converge to the fault-free end state. `FAULT_SEEDS` sets the number of
//! seeds (default 100).

use std::collections::BTreeMap;

use crate::common::*;
use host_test::report::Report;
use serde_json::{Value, json};

/// Initial sync over 2 pages with roles, real-time changes, the backstop, delete and redeploy.
fn main_scenario() -> Value {
    let users: Vec<Value> = (1..=150).map(entra_user).collect();
    let groups = json!([
        {"id": gid(1), "displayName": "QA", "members": (1..=40).map(uid).chain([gid(3)]).collect::<Vec<_>>()},
        {"id": gid(2), "displayName": "Docs", "members": (30..=70).map(uid).collect::<Vec<_>>()},
        {"id": gid(3), "displayName": "Leads", "members": [uid(100), uid(101)]},
    ]);
    let zen = vec![
        zen_user("u-a", "user7@contoso.com", None, &["r-admin"]),
        zen_user("u-b", "user8@contoso.com", Some(&uid(8)), &["r-doc"]),
        zen_user("u-x", "outsider@contoso.com", None, &["r-qa"]),
        zen_user("u-gone", "gone@contoso.com", Some(&uid(999)), &[]),
    ];
    let mappings = json!([{"role": "r-qa", "groups": [gid(1)]}, {"role": "r-doc", "groups": [gid(2), gid(3)]}]);
    let mut s = scenario(users, groups, zen, mappings);
    let mut edited = entra_user(5);
    edited["jobTitle"] = json!("Edited");
    let mut disabled = entra_user(6);
    disabled["accountEnabled"] = json!(false);
    let mut dropped = entra_user(9);
    dropped["surname"] = json!("Dropped-notification");
    s["steps"] = json!([
        {"deploy": {}},
        {"entra": {"upsert_user": edited}},
        {"notify": {"resource": "users", "id": uid(5)}},
        {"entra": {"upsert_user": disabled}},
        {"notify": {"resource": "users", "id": uid(6)}},
        {"entra": {"upsert_user": entra_user(151)}},
        {"notify": {"resource": "users", "id": uid(151)}},
        {"entra": {"add_member": {"group": gid(2), "member": uid(120)}}},
        {"notify": {"resource": "groups", "id": gid(2)}},
        {"entra": {"upsert_user": dropped}},
        {"advance": {"to": "2026-11-28T14:00:00Z"}},
        {"schedule": {}},
        {"delete": {}},
        {"deploy": {}},
    ]);
    s
}

/// The end state without ZenQMS's internal ids (creation order may differ under faults).
fn end_state(r: &Report) -> BTreeMap<String, Value> {
    r.zenqms
        .users
        .iter()
        .map(|u| {
            let mut v = serde_json::to_value(u).unwrap();
            v.as_object_mut().unwrap().remove("id");
            (u.email.clone(), v)
        })
        .collect()
}

#[test]
fn the_main_scenario_converges_under_faults_for_every_seed() {
    let baseline = run(main_scenario());
    assert_ok(&baseline);
    let expected = end_state(&baseline);
    let seeds: u64 = std::env::var("FAULT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut injected = 0;
    let mut retries = 0;
    for seed in 0..seeds {
        let mut s = main_scenario();
        s["faults"] = json!({"rate": 0.2, "seed": seed, "kinds": ["429", "503", "timeout"], "targets": ["graph", "zenqms"]});
        let r = run_unchecked(s);
        let broken = contract_failures(&r);
        assert!(broken.is_empty(), "seed {seed}: {broken:?}");
        for step in &r.steps {
            assert!(
                step.ok,
                "seed {seed}: step {} ({}) failed: {:?}",
                step.index, step.kind, step.error
            );
        }
        assert_eq!(
            r.zenqms.users.len(),
            baseline.zenqms.users.len(),
            "seed {seed}: duplicate or lost user"
        );
        let got = end_state(&r);
        for (email, want) in &expected {
            assert_eq!(got.get(email), Some(want), "seed {seed}: {email} differs");
        }
        assert_eq!(r.entra.subscriptions.len(), 2, "seed {seed}: subscriptions");
        assert!(r.http.faults > 0, "seed {seed}: no fault injected");
        injected += r.http.faults;
        retries += r
            .steps
            .iter()
            .flat_map(|s| &s.logs)
            .filter(|l| l.message == "transient failure: retrying")
            .count();
    }
    eprintln!(
        "{seeds} seeds converged; {injected} faults injected, {retries} component retry waits"
    );
}

/// A replay with injected faults repeats exactly: the same report, step by step, every time
/// (the faults are seeded, and so is the component's random source in the simulator, from
/// which its retries draw their jitter: `World::next_random_seed`). Before, two replays of the
/// same scenario waited different times between retries, so their calls, clocks and even
/// results could differ, and a failure a seed found could not be replayed.
#[test]
fn a_replay_with_faults_repeats_exactly() {
    let mut s = main_scenario();
    // Backoff (with jitter) is what 503s and timeouts without `Retry-After` wait.
    s["faults"] = json!({"rate": 0.2, "seed": 11, "kinds": ["503", "timeout"]});
    let first = run(s.clone());
    let second = run(s);
    assert!(first.http.faults > 0, "the scenario injects faults");
    assert!(
        first.http.waited_ms > 0,
        "the component waited before retries"
    );
    let a = serde_json::to_string(&first).unwrap();
    let b = serde_json::to_string(&second).unwrap();
    if a != b {
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        panic!(
            "the two replays differ at byte {at}: …{}… against …{}…",
            &a[at.saturating_sub(200)..(at + 200).min(a.len())],
            &b[at.saturating_sub(200)..(at + 200).min(b.len())]
        );
    }
}
