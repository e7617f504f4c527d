//! Hostile webhook volume through wasmtime: a request's rejected items cost one log line, and
//! the audit cause of a genuine write is built from accepted items only, bounded.

use crate::common::*;
use host_test::report::StepRecord;
use host_test::runner::Runner;
use host_test::scenario::Step;
use serde_json::{Value, json};

fn deployed() -> (Runner, Value) {
    let users: Vec<Value> = (1..=3).map(entra_user).collect();
    deployed_with(scenario(users, json!([]), vec![], json!([])))
}

fn post(runner: &mut Runner, body_text: String) -> StepRecord {
    let step: Step =
        serde_json::from_value(json!({"webhook": {"method": "POST", "body_text": body_text}}))
            .unwrap();
    runner.run_step(99, &step)
}

#[test]
fn a_megabyte_of_empty_items_writes_one_warning() {
    let (mut runner, _) = deployed();
    let items = vec!["{}"; 349_000].join(",");
    let rec = post(&mut runner, format!("{{\"value\":[{items}]}}"));
    assert!(rec.ok, "{:?}", rec.error);
    assert_eq!(rec.response.as_ref().unwrap().status, 202);
    let warnings = rec.logs.iter().filter(|l| l.level == "warn").count();
    assert!(warnings <= 1, "{warnings} warning lines");
    let size = serde_json::to_string(&rec.logs).unwrap().len();
    assert!(size < 8_192, "the step's log is {size} bytes");
    let line = rec.logs.iter().find(|l| l.level == "warn").unwrap();
    assert!(
        line.fields
            .iter()
            .any(|(k, v)| k == "rejected" && v == "349000"),
        "{line:?}"
    );
}

#[test]
fn a_genuine_notification_among_forged_ones_gets_a_bounded_cause() {
    let (mut runner, sub) = deployed();
    let mut changed = entra_user(1);
    changed["jobTitle"] = json!("Changed");
    runner
        .world_mut()
        .graph
        .upsert_user(changed.as_object().unwrap().clone())
        .unwrap();
    let genuine = json!({
        "id": "genuine-notification-1",
        "subscriptionId": sub["id"], "clientState": sub["clientState"], "changeType": "updated",
        "resource": format!("Users/{}", uid(1)), "tenantId": TENANT,
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": uid(1)},
    });
    let mut items = vec![genuine];
    for i in 0..20_000 {
        items.push(json!({"id": format!("forged-{i:05}"), "subscriptionId": "x"}));
    }
    let rec = post(&mut runner, json!({ "value": items }).to_string());
    assert!(rec.ok, "{:?}", rec.error);
    let report = finish(runner, vec![rec]);
    assert_eq!(linked(&report, &uid(1)).unwrap().title, "Changed");
    let audit = report
        .audit
        .iter()
        .find(|a| a.entra_id == uid(1))
        .expect("the genuine write is audited");
    assert!(
        audit.cause.contains("genuine-notification-1"),
        "{}",
        audit.cause
    );
    assert!(!audit.cause.contains("forged"), "{}", audit.cause);
    assert!(
        audit.cause.len() < 1_024,
        "cause of {} bytes",
        audit.cause.len()
    );
}
