//! The full sync's lifecycle, run natively (the component's code as a plain crate against the
//! simulated services, no wasmtime): every call's state is read back and the run's phases are
//! checked in the order they must come — start, the leaver walk, user pages, deactivations, roles,
//! finish — with a checkpoint at every call and no step repeated after a failure.

use entra_zenqms::state::{Phase, State};
use host_test::native::NativeRunner;
use host_test::scenario::Scenario;
use host_test::world::Outage;
use serde_json::{Value, json};

use crate::common::*;

/// Where a state's full sync is, in the order of the run: phase (finished: 5), user pages
/// done, users of the current page done.
fn phase_rank(state: &State) -> (u8, u32, usize) {
    let Some(f) = &state.full_sync else {
        return (5, 0, 0);
    };
    match &f.phase {
        Phase::Leavers { .. } => (0, f.batches, 0),
        Phase::Users { done, .. } => (1, f.batches, done.len()),
        Phase::Deactivations { .. } => (3, f.batches, 0),
        Phase::Roles => (4, f.batches, 0),
    }
}

fn native(s: Value) -> NativeRunner {
    let scenario = Scenario::from_json(&s.to_string()).unwrap();
    let mut runner = NativeRunner::new(scenario.clone());
    for step in &scenario.steps {
        runner.run_step(step).unwrap();
    }
    runner
}

fn tenant(n: u32) -> Value {
    let users: Vec<Value> = (1..=n).map(entra_user).collect();
    let groups = json!([{"id": gid(1), "displayName": "QA", "members": (1..=n/2).map(uid).collect::<Vec<_>>()}]);
    let mappings = json!([{"role": "r-qa", "groups": [gid(1)]}]);
    // Two linked ZenQMS users whose Entra objects are gone: the leavers.
    let zen = vec![
        zen_user(
            "z-gone-1",
            "gone1@contoso.com",
            Some("00000000-0000-4000-8000-00000000ff01"),
            &[],
        ),
        zen_user(
            "z-gone-2",
            "gone2@contoso.com",
            Some("00000000-0000-4000-8000-00000000ff02"),
            &[],
        ),
    ];
    scenario(users, groups, zen, mappings)
}

#[test]
fn a_full_sync_over_many_calls_checkpoints_every_call_and_moves_through_its_phases_in_order() {
    let mut s = tenant(250);
    s["steps"] = json!([{"deploy": {}}]);
    s["budget_ms"] = json!(1500);
    let runner = native(s);
    let trace = &runner.trace;
    assert!(
        trace.len() > 4,
        "the sync spread over calls: {}",
        trace.len()
    );
    let mut last = (0u8, 0u32, 0usize);
    let mut run_id = None;
    for (i, (state, pending)) in trace.iter().enumerate() {
        let text = state
            .as_ref()
            .unwrap_or_else(|| panic!("call {i} returned no state"));
        let state = State::parse(Some(text)).unwrap();
        let rank = phase_rank(&state);
        assert!(
            rank >= last,
            "call {i}: phase went back from {last:?} to {rank:?}"
        );
        last = rank;
        // One run from start to finish: its id does not change.
        if let Some(f) = &state.full_sync {
            assert_eq!(run_id.get_or_insert(f.run_id.clone()), &f.run_id);
        }
        let finished = state.full_sync.is_none();
        assert_eq!(
            *pending, !finished,
            "call {i}: pending while, and only while, unfinished"
        );
    }
    let end = State::parse(trace.last().unwrap().0.as_deref()).unwrap();
    let done = end.last_full_sync.expect("the run is recorded");
    assert_eq!(Some(&done.run_id), run_id.as_ref());
    assert_eq!(done.totals.created, 250);
    assert_eq!(done.totals.deactivated, 2, "the leavers");
    assert_eq!(done.totals.roles_added, 125);
}

#[test]
fn a_sync_stopped_by_a_failing_service_resumes_where_it_stopped_and_writes_nothing_twice() {
    let mut s = tenant(250);
    s["budget_ms"] = json!(1500);
    s["steps"] = json!([{"deploy": {}}]);
    let scenario = Scenario::from_json(&s.to_string()).unwrap();
    let mut runner = NativeRunner::new(scenario.clone());
    // ZenQMS answers its writes with 503 (the `fail_writes` step) until it recovers.
    let outage = serde_json::from_value(json!({"status": 503, "count": 100_000})).unwrap();
    runner.world_mut().zenqms_outage = Some(Outage::new(&outage, json!({})));
    let failed = runner.run_step(&scenario.steps[0]);
    assert!(failed.is_err(), "the outage ends the deploy's calls");
    let stopped = State::parse(runner.state.as_deref()).unwrap();
    assert!(stopped.full_sync.is_some(), "the run is kept for a resume");
    // ZenQMS recovers; the platform retries with resume until done.
    runner.world_mut().zenqms_outage = None;
    let resume: host_test::scenario::Step = serde_json::from_value(json!({"resume": {}})).unwrap();
    runner.run_step(&resume).unwrap();
    let end = State::parse(runner.state.as_deref()).unwrap();
    assert!(end.full_sync.is_none());
    let creates = runner
        .logs
        .iter()
        .filter(|l| l.message == "ZenQMS user created")
        .count();
    assert_eq!(creates, 250, "each user created once");
    assert_eq!(runner.world().zenqms.users().len(), 252);
}

/// A user deleted from a page the sync is part-way through (checkpointed) shifts the page: the
/// position is kept by id, so nobody after it is skipped.
#[test]
fn a_user_deleted_mid_page_does_not_make_the_sync_skip_another() {
    let mut s = tenant(300);
    s["budget_ms"] = json!(1500);
    s["steps"] = json!([
        {"deploy": {"calls": 2}},
        {"entra": {"delete_user": uid(5)}},
        {"resume": {}},
    ]);
    let r = run(s);
    assert_ok(&r);
    for i in (1..=300).filter(|i| *i != 5) {
        assert!(
            linked(&r, &uid(i)).is_some(),
            "user {i} was never provisioned"
        );
    }
}
