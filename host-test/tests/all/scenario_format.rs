//! The scenario format's additions (issue 12 §6) and the harness contract every scenario is
//! held to: the subscription invariant and the call budget (see `fixtures/README.md`).

use crate::common::*;
use host_test::runner::Runner;
use host_test::runtime::Runtime;
use host_test::scenario::{Scenario, Step};
use serde_json::{Value, json};

/// Users 1-5, groups: g1 QA (1, g3), g2 Docs (2), g3 Leads (3, nested in g1); r-qa <- g1;
/// r-doc <- g2, g3.
fn world(steps: Value) -> Value {
    let users: Vec<Value> = (1..=5).map(entra_user).collect();
    let groups = json!([
        {"id": gid(1), "displayName": "QA", "members": [uid(1), gid(3)]},
        {"id": gid(2), "displayName": "Docs", "members": [uid(2)]},
        {"id": gid(3), "displayName": "QA leads", "members": [uid(3)]},
    ]);
    let mappings = json!([
        {"role": "r-qa", "groups": [gid(1)]},
        {"role": "r-doc", "groups": [gid(2), gid(3)]},
    ]);
    let mut s = scenario(users, groups, vec![], mappings);
    s["steps"] = steps;
    s
}

fn step(v: Value) -> Step {
    serde_json::from_value(v).unwrap()
}

fn runner(s: &Value) -> Runner {
    Runner::new(
        Runtime::shared(),
        Scenario::from_json(&s.to_string()).unwrap(),
    )
}

/// A change notification item for a user, with placeholders for what the component created.
fn user_item(resource_path: &str, id: &str, odata_type: &str) -> Value {
    json!({
        "subscriptionId": "{{users.subscriptionId}}", "clientState": "{{users.clientState}}",
        "changeType": "updated", "resource": format!("{resource_path}/{id}"),
        "tenantId": "{{tenantId}}",
        "resourceData": {"@odata.type": odata_type, "@odata.id": format!("{resource_path}/{id}"),
                         "id": id, "organizationId": "{{tenantId}}"},
    })
}

// ---- the subscription invariant -------------------------------------------------------------

#[test]
fn a_subscription_the_state_lost_is_an_invariant_violation_that_fails_the_run() {
    let s = world(json!([{"deploy": {}}]));
    let mut r = runner(&s);
    let deploy = r.run_step(0, &step(json!({"deploy": {}})));
    assert!(deploy.ok, "{:?}", deploy.error);
    assert!(r.invariants().is_empty(), "{:?}", r.invariants());
    // The platform's stored state loses the subscriptions (as a call that returned no state
    // would): Graph still has them.
    let mut state: Value = serde_json::from_str(r.state.as_deref().unwrap()).unwrap();
    let lost: Vec<String> = state["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lost.len(), 2);
    state["subscriptions"] = json!([]);
    r.state = Some(state.to_string());
    let advance = r.run_step(1, &step(json!({"advance": {"to": "2026-11-28T13:00:00Z"}})));
    assert!(advance.ok);
    let report = r.report(vec![deploy, advance]);
    assert_eq!(report.invariants.len(), 1, "{:?}", report.invariants);
    let v = &report.invariants[0];
    assert_eq!((v.step, v.name.as_str()), (1, "subscriptions"));
    for id in &lost {
        assert!(v.detail.contains(id.as_str()), "{}", v.detail);
    }
    assert!(!report.expect.ok, "a violation fails the replay");
    assert!(
        report
            .expect
            .failures
            .iter()
            .any(|f| f.contains("invariant 'subscriptions'")),
        "{:?}",
        report.expect.failures
    );
    assert!(!contract_failures(&report).is_empty());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["invariants"][0]["step"], 1);
    assert_eq!(json["invariants"][0]["name"], "subscriptions");
    assert!(
        host_test::report::describe_end(&report).contains("Invariants: 1 VIOLATED"),
        "replay prints it"
    );
}

#[test]
fn a_subscription_graph_dropped_behind_the_state_is_a_violation_too() {
    let s = world(json!([{"deploy": {}}]));
    let mut r = runner(&s);
    let deploy = r.run_step(0, &step(json!({"deploy": {}})));
    assert!(deploy.ok, "{:?}", deploy.error);
    let now = r.world().clock.now();
    let id = r.world().graph.subscriptions(now)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(r.world_mut().graph.remove_subscription(&id));
    let rec = r.run_step(1, &step(json!({"advance": {"to": "2026-11-28T12:30:00Z"}})));
    let report = r.report(vec![deploy, rec]);
    assert_eq!(report.invariants.len(), 1);
    assert!(
        report.invariants[0].detail.contains("state holds")
            && report.invariants[0].detail.contains(&id),
        "{}",
        report.invariants[0].detail
    );
}

#[test]
fn before_a_deploy_and_after_a_delete_there_is_no_subscription_on_either_side() {
    let mut s = world(json!([
        {"advance": {"to": "2026-11-28T12:10:00Z"}},
        {"deploy": {}},
        {"delete": {}},
        {"advance": {"to": "2026-11-28T12:20:00Z"}},
    ]));
    s["expect"] = json!({"subscriptions": 0});
    let r = run(s);
    assert_ok(&r);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
}

// ---- budget accounting ------------------------------------------------------------------------

#[test]
fn the_report_accounts_calls_against_the_budget() {
    let r = run(world(json!([{"deploy": {}}])));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["http"]["calls_over_budget"], 0);
    assert_eq!(json["http"]["worst_overrun_ms"], 0);
}

// ---- expect.subscriptions ---------------------------------------------------------------------

#[test]
fn expect_subscriptions_counts_the_active_ones_on_the_webhook_url() {
    let mut s = world(json!([{"deploy": {}}]));
    s["expect"] = json!({"subscriptions": 2});
    assert!(run(s.clone()).expect.ok);
    s["expect"] = json!({"subscriptions": 3});
    let r = run(s);
    assert_eq!(
        r.expect.failures,
        ["expected 3 active Graph subscriptions on the webhook URL, found 2"]
    );
}

// ---- webhook placeholders ---------------------------------------------------------------------

#[test]
fn webhook_placeholders_replay_a_raw_multi_item_notification() {
    let mut changed = entra_user(1);
    changed["jobTitle"] = json!("Changed");
    let mut other = entra_user(2);
    other["jobTitle"] = json!("Also changed");
    let body = json!({"value": [
        user_item("Users", &uid(1), "#Microsoft.Graph.User"),
        user_item("Users", &uid(1), "#Microsoft.Graph.User"),
        user_item("users", &uid(2), "#microsoft.graph.user"),
    ]});
    let mut s = world(json!([
        {"deploy": {}},
        {"entra": {"upsert_user": changed}},
        {"entra": {"upsert_user": other}},
        {"webhook": {"method": "POST", "body": body}},
    ]));
    s["expect"] = json!({"responses": [{"step": 3, "status": 202}]});
    let r = run(s);
    assert_ok(&r);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    let reply: Value = serde_json::from_str(&r.steps[3].response.as_ref().unwrap().body).unwrap();
    assert_eq!(reply["rejected"], 0, "{reply}");
    assert_eq!(linked(&r, &uid(1)).unwrap().title, "Changed");
    assert_eq!(linked(&r, &uid(2)).unwrap().title, "Also changed");
}

#[test]
fn webhook_placeholders_fill_groups_body_text_and_query() {
    let group_note = json!({"value": [{
        "subscriptionId": "{{groups.subscriptionId}}", "clientState": "{{groups.clientState}}",
        "changeType": "updated", "resource": format!("Groups/{}", gid(2)), "tenantId": "{{tenantId}}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": format!("Groups/{}", gid(2)),
                         "id": gid(2), "organizationId": "{{tenantId}}",
                         "members@delta": [{"id": uid(4)}]},
    }]});
    let r = run(world(json!([
        {"deploy": {}},
        {"entra": {"add_member": {"group": gid(2), "member": uid(4)}}},
        {"webhook": {"method": "POST", "body_text": group_note.to_string()}},
        {"webhook": {"method": "POST", "query": "validationToken={{tenantId}}"}},
    ])));
    assert_ok(&r);
    assert_eq!(linked(&r, &uid(4)).unwrap().roles, ["r-doc"]);
    assert_eq!(r.steps[3].response.as_ref().unwrap().body, TENANT);
}

#[test]
fn a_placeholder_without_a_subscription_or_unknown_fails_the_step() {
    let mut s = world(json!([
        {"webhook": {"method": "POST", "body": {"value": [user_item("Users", &uid(1), "#Microsoft.Graph.User")]}}},
        {"deploy": {}},
        {"webhook": {"method": "POST", "body": {"value": [{"subscriptionId": "{{user.subscriptionId}}"}]}}},
    ]));
    s["expect"] = json!({"errors": [
        {"step": 0, "contains": "no active subscription on 'users'"},
        {"step": 2, "contains": "unknown webhook placeholder {{user.subscriptionId}}"},
    ]});
    let r = run(s);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    assert_eq!(r.steps[0].calls, 0, "nothing was delivered");
    assert_eq!(r.steps[2].calls, 0, "nothing was delivered");
}

// ---- entra.objects ----------------------------------------------------------------------------

#[test]
fn groups_may_list_devices_service_principals_and_contacts_which_are_never_users() {
    let mut s = world(json!([{"deploy": {}}]));
    s["entra"]["objects"] = json!([
        {"id": "dddddddd-0000-4000-8000-000000000001", "@odata.type": "#microsoft.graph.device",
         "displayName": "Lab PC"},
        {"id": "dddddddd-0000-4000-8000-000000000002", "@odata.type": "#microsoft.graph.servicePrincipal",
         "displayName": "Backup app", "appId": "0b5d9f2a-6c1e-4f7b-a3d2-000000000000"},
        {"id": "dddddddd-0000-4000-8000-000000000003", "@odata.type": "#microsoft.graph.orgContact",
         "displayName": "Auditor", "mail": "auditor@partner.example"},
    ]);
    for i in 1..=3 {
        let members = s["entra"]["groups"][0]["members"].as_array_mut().unwrap();
        members.push(json!(format!("dddddddd-0000-4000-8000-00000000000{i}")));
    }
    s["expect"] = json!({"zenqms_user_count": 5});
    let r = run(s);
    assert_ok(&r);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    assert_eq!(linked(&r, &uid(1)).unwrap().roles, ["r-qa"]);
    assert!(
        !r.zenqms
            .users
            .iter()
            .any(|u| u.email.contains("partner.example")),
        "a contact is not a user"
    );
}

#[test]
fn an_object_of_another_type_is_refused_by_the_format() {
    let mut s = world(json!([]));
    s["entra"]["objects"] = json!([{"id": "x", "@odata.type": "#microsoft.graph.user"}]);
    assert!(Scenario::from_json(&s.to_string()).is_err());
}

// ---- purge_user, delete_group, expire_delta ----------------------------------------------------

#[test]
fn a_purged_user_is_deactivated_by_the_next_delta_round() {
    let r = run(world(json!([
        {"deploy": {}},
        {"entra": {"purge_user": uid(2)}},
        {"advance": {"to": "2026-11-28T13:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    assert!(!linked(&r, &uid(2)).unwrap().is_active);
    assert!(linked(&r, &uid(1)).unwrap().is_active);
}

#[test]
fn a_purged_user_notified_as_deleted_is_deactivated() {
    let r = run(world(json!([
        {"deploy": {}},
        {"entra": {"purge_user": uid(2)}},
        {"notify": {"resource": "users", "id": uid(2), "change_type": "deleted"}},
    ])));
    assert_ok(&r);
    assert!(!linked(&r, &uid(2)).unwrap().is_active);
}

#[test]
fn a_deleted_group_is_gone_from_entra() {
    let mut s = world(json!([
        {"deploy": {}},
        {"entra": {"delete_group": gid(3)}},
        {"entra": {"add_member": {"group": gid(3), "member": uid(4)}}},
        {"entra": {"delete_group": gid(3)}},
        {"entra": {"purge_user": uid(9)}},
    ]));
    s["expect"] = json!({"errors": [
        {"step": 2, "contains": "no such group"},
        {"step": 3, "contains": "no such group"},
        {"step": 4, "contains": "no such live or soft-deleted user"},
    ]});
    let r = run(s);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
}

#[test]
fn expired_delta_tokens_make_the_next_round_start_over() {
    let mut changed = entra_user(4);
    changed["jobTitle"] = json!("Changed after the expiry");
    let r = run(world(json!([
        {"deploy": {}},
        {"entra": {"expire_delta": {}}},
        {"entra": {"upsert_user": changed}},
        {"advance": {"to": "2026-11-28T13:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    assert!(
        log_text(&r).contains("delta token expired"),
        "{}",
        log_text(&r)
    );
    assert_eq!(
        linked(&r, &uid(4)).unwrap().title,
        "Changed after the expiry"
    );
}

// ---- deploy / resume with "calls" ------------------------------------------------------------

/// 300 users to create with a 2 s budget: several calls at 100 ms a round.
fn big(steps: Value) -> Value {
    let users: Vec<Value> = (1..=300).map(entra_user).collect();
    let mut s = scenario(users, json!([]), vec![], json!([]));
    s["budget_ms"] = json!(2000);
    s["steps"] = steps;
    s
}

#[test]
fn a_deploy_limited_to_one_call_leaves_the_sync_pending_for_a_notification() {
    let mut changed = entra_user(7);
    changed["jobTitle"] = json!("Changed mid-sync");
    let r = run(big(json!([
        {"deploy": {"calls": 1}},
        {"entra": {"upsert_user": changed}},
        {"notify": {"resource": "users", "id": uid(7)}},
        {"resume": {"calls": 1}},
        {"resume": {}},
    ])));
    assert_ok(&r);
    assert_eq!(r.steps[0].calls, 1);
    assert!(r.steps[0].pending, "the deploy is left pending");
    assert_eq!(r.steps[3].calls, 1);
    assert!(!r.steps[4].pending);
    assert_eq!(r.zenqms.users.len(), 300);
    assert_eq!(linked(&r, &uid(7)).unwrap().title, "Changed mid-sync");
    let json = serde_json::to_value(&r.steps[0]).unwrap();
    assert_eq!(json["pending"], true);
}

#[test]
fn calls_must_be_at_least_one() {
    let s = big(json!([{"deploy": {"calls": 0}}]));
    assert!(Scenario::from_json(&s.to_string()).is_err());
    let s = big(json!([{"resume": {"calls": 2, "other": 1}}]));
    assert!(Scenario::from_json(&s.to_string()).is_err());
}

#[test]
fn subscription_removed_means_graph_removed_it_and_the_component_replaces_it() {
    let s = world(json!([{"deploy": {}}]));
    let mut r = runner(&s);
    let deploy = r.run_step(0, &step(json!({"deploy": {}})));
    assert!(deploy.ok, "{:?}", deploy.error);
    let now = r.world().clock.now();
    let old: Vec<String> = r
        .world()
        .graph
        .subscriptions(now)
        .iter()
        .filter(|s| s["resource"] == "users")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let removed = r.run_step(
        1,
        &step(json!({"lifecycle": {"resource": "users", "event": "subscriptionRemoved"}})),
    );
    assert!(removed.ok, "{:?}", removed.error);
    let now = r.world().clock.now();
    let users: Vec<String> = r
        .world()
        .graph
        .subscriptions(now)
        .iter()
        .filter(|s| s["resource"] == "users")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), 1, "replaced");
    assert_ne!(users, old);
    let report = finish(r, vec![deploy, removed]);
    assert_eq!(report.entra.subscriptions.len(), 2);
}
