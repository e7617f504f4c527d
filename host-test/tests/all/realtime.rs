//! Real time through wasmtime: subscriptions, notifications, lifecycle, renewal, delta backstop.

use crate::common::*;
use host_test::report::StepRecord;
use host_test::runner::Runner;
use host_test::scenario::Step;
use serde_json::{Value, json};

/// Users 1-6 (6 is not in the tenant yet), groups: g1 QA (1, g3), g2 Docs (2), g3 Leads (3,
/// nested in g1); r-qa <- g1; r-doc <- g2, g3.
fn world() -> Value {
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
    scenario(users, groups, vec![], mappings)
}

fn with_steps(steps: Value) -> Value {
    let mut s = world();
    let mut all = vec![json!({"deploy": {}})];
    all.extend(steps.as_array().unwrap().iter().cloned());
    s["steps"] = Value::Array(all);
    s
}

fn notify_user(i: u32) -> Value {
    json!({"notify": {"resource": "users", "id": uid(i), "change_type": "updated"}})
}

fn notify_group(i: u32) -> Value {
    json!({"notify": {"resource": "groups", "id": gid(i), "change_type": "updated"}})
}

fn upsert(user: Value) -> Value {
    json!({"entra": {"upsert_user": user}})
}

fn roles(r: &host_test::report::Report, i: u32) -> Vec<String> {
    linked(r, &uid(i))
        .map(|u| u.roles.clone())
        .unwrap_or_default()
}

#[test]
fn deploy_creates_one_subscription_per_resource_and_a_redeploy_duplicates_none() {
    let r = run(with_steps(json!([{"deploy": {}}])));
    assert_ok(&r);
    let subs = &r.entra.subscriptions;
    assert_eq!(subs.len(), 2, "{subs:?}");
    let mut resources: Vec<&str> = subs
        .iter()
        .map(|s| s["resource"].as_str().unwrap())
        .collect();
    resources.sort();
    assert_eq!(resources, ["groups", "users"]);
    for s in subs {
        assert_eq!(s["changeType"], "updated,deleted");
        assert_eq!(
            s["notificationUrl"],
            "https://hooks.platform.example/instances/inst-1"
        );
        assert_eq!(s["clientState"], "[redacted]");
    }
    assert!(
        log_text(&r).contains("Graph subscription renewed"),
        "redeploy renews"
    );
}

#[test]
fn new_hire_profile_edit_disable_delete_and_re_enable() {
    let mut edited = entra_user(1);
    edited["jobTitle"] = json!("QA Lead");
    let mut disabled = entra_user(2);
    disabled["accountEnabled"] = json!(false);
    let mut enabled_again = entra_user(2);
    enabled_again["surname"] = json!("Back");
    let r = run(with_steps(json!([
        upsert(entra_user(6)), notify_user(6),
        upsert(edited), notify_user(1),
        upsert(disabled), notify_user(2),
        {"entra": {"delete_user": uid(4)}}, notify_user(4),
        upsert(enabled_again), notify_user(2),
    ])));
    assert_ok(&r);
    for i in [2, 4, 6, 8, 10] {
        assert_eq!(r.steps[i].response.as_ref().unwrap().status, 202);
    }
    let new = linked(&r, &uid(6)).expect("new hire created");
    assert!(new.is_active);
    assert_eq!(linked(&r, &uid(1)).unwrap().title, "QA Lead");
    let u2 = linked(&r, &uid(2)).unwrap();
    assert!(u2.is_active, "re-enabled");
    assert_eq!(u2.last_name, "Back");
    let u4 = linked(&r, &uid(4)).expect("deleted user keeps the link");
    assert!(!u4.is_active);
    assert_eq!(r.zenqms.users.len(), 6, "never deletes");
}

#[test]
fn losing_a_required_field_skips_while_active_but_still_deactivates_when_disabled() {
    let mut active = entra_user(1);
    active["jobTitle"] = Value::Null;
    let mut leaver = entra_user(2);
    leaver["jobTitle"] = Value::Null;
    leaver["accountEnabled"] = json!(false);
    let r = run(with_steps(json!([
        upsert(active),
        notify_user(1),
        upsert(leaver),
        notify_user(2)
    ])));
    assert_ok(&r);
    let u1 = linked(&r, &uid(1)).unwrap();
    assert!(u1.is_active);
    assert_eq!(u1.title, "QA Specialist", "skipped user is not touched");
    assert!(log_text(&r).contains("missing required fields: jobTitle"));
    assert!(!linked(&r, &uid(2)).unwrap().is_active);
}

#[test]
fn group_membership_drives_roles_including_nesting_and_two_group_roles() {
    let r = run(with_steps(json!([
        // u5 joins QA: r-qa.
        {"entra": {"add_member": {"group": gid(1), "member": uid(5)}}}, notify_group(1),
        // u4 joins the nested leads group: r-qa (through QA) and r-doc.
        {"entra": {"add_member": {"group": gid(3), "member": uid(4)}}}, notify_group(3),
        // u3 is in leads (r-doc); add to Docs too, then remove from Docs: keeps r-doc.
        {"entra": {"add_member": {"group": gid(2), "member": uid(3)}}}, notify_group(2),
        {"entra": {"remove_member": {"group": gid(2), "member": uid(3)}}}, notify_group(2),
    ])));
    assert_ok(&r);
    assert_eq!(roles(&r, 5), ["r-qa"]);
    assert_eq!(roles(&r, 4), ["r-doc", "r-qa"]);
    assert_eq!(
        roles(&r, 3),
        ["r-doc", "r-qa"],
        "still in one group mapped to r-doc"
    );
    // Now out of leads as well: r-doc and (nested) r-qa go.
    let r = run(with_steps(json!([
        {"entra": {"remove_member": {"group": gid(3), "member": uid(3)}}}, notify_group(3),
    ])));
    assert_ok(&r);
    assert!(roles(&r, 3).is_empty(), "{:?}", roles(&r, 3));
}

#[test]
fn a_user_notification_also_brings_that_users_roles_in_line() {
    let r = run(with_steps(json!([
        {"entra": {"add_member": {"group": gid(2), "member": uid(5)}}},
        notify_user(5),
    ])));
    assert_ok(&r);
    assert_eq!(roles(&r, 5), ["r-doc"]);
}

#[test]
fn duplicate_and_reordered_notifications_reach_the_same_end_state() {
    let mut edited = entra_user(1);
    edited["surname"] = json!("Edited");
    let change =
        json!([upsert(edited), {"entra": {"add_member": {"group": gid(2), "member": uid(1)}}}]);
    let once = {
        let mut steps = change.as_array().unwrap().clone();
        steps.extend([notify_user(1), notify_group(2)]);
        run(with_steps(Value::Array(steps)))
    };
    let twice_reordered = {
        let mut steps = change.as_array().unwrap().clone();
        steps.extend([
            notify_group(2),
            notify_user(1),
            notify_user(1),
            notify_group(2),
            notify_user(1),
        ]);
        run(with_steps(Value::Array(steps)))
    };
    assert_ok(&once);
    assert_ok(&twice_reordered);
    assert_eq!(
        serde_json::to_value(&once.zenqms.users).unwrap(),
        serde_json::to_value(&twice_reordered.zenqms.users).unwrap()
    );
    assert_eq!(roles(&once, 1), ["r-doc", "r-qa"]);
}

/// Deploys, then returns the runner and the users subscription as Graph holds it.
fn deployed() -> (Runner, Value) {
    deployed_with(world())
}

fn raw(runner: &mut Runner, body: Value) -> StepRecord {
    let step: Step =
        serde_json::from_value(json!({"webhook": {"method": "POST", "body": body}})).unwrap();
    runner.run_step(99, &step)
}

fn note(sub: &Value, client_state: &str, tenant: &str, user: &str) -> Value {
    json!({
        "subscriptionId": sub["id"], "clientState": client_state, "changeType": "updated",
        "resource": format!("Users/{user}"), "tenantId": tenant,
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": format!("Users/{user}"), "id": user},
    })
}

#[test]
fn forged_notifications_change_nothing_and_are_logged() {
    let (mut runner, sub) = deployed();
    let mut changed = entra_user(1);
    changed["surname"] = json!("Forged-change");
    runner
        .world_mut()
        .graph
        .upsert_user(changed.as_object().unwrap().clone())
        .unwrap();
    let good = sub["clientState"].as_str().unwrap().to_string();
    let cases = [
        note(&sub, "wrong-client-state", TENANT, &uid(1)),
        note(&sub, &good, "00000000-0000-0000-0000-000000000000", &uid(1)),
        {
            let mut n = note(&sub, &good, TENANT, &uid(1));
            n["subscriptionId"] = json!("7f105c7d-2dc5-4530-97cd-4e7ae6534c07");
            n
        },
    ];
    for forged in cases {
        let rec = raw(&mut runner, json!({"value": [forged]}));
        assert!(rec.ok);
        assert_eq!(rec.response.as_ref().unwrap().status, 202);
        let warned = rec
            .logs
            .iter()
            .any(|l| l.level == "warn" && l.message.starts_with("notification rejected"));
        assert!(warned, "{:?}", rec.logs);
        let text = serde_json::to_string(&rec).unwrap();
        assert!(
            !text.contains(&good),
            "the real clientState must not be echoed"
        );
    }
    let mut records = Vec::new();
    records.push(raw(
        &mut runner,
        json!({"value": [note(&sub, &good, TENANT, &uid(1))]}),
    ));
    let report = finish(runner, records);
    assert_eq!(
        linked(&report, &uid(1)).unwrap().last_name,
        "Forged-change",
        "the genuine one is applied"
    );
}

#[test]
fn a_mixed_request_applies_only_its_genuine_items() {
    let (mut runner, sub) = deployed();
    for i in [1, 2] {
        let mut u = entra_user(i);
        u["jobTitle"] = json!("Changed");
        runner
            .world_mut()
            .graph
            .upsert_user(u.as_object().unwrap().clone())
            .unwrap();
    }
    let good = sub["clientState"].as_str().unwrap().to_string();
    let rec = raw(
        &mut runner,
        json!({"value": [note(&sub, &good, TENANT, &uid(1)), note(&sub, "forged", TENANT, &uid(2))]}),
    );
    assert!(rec.ok);
    let report = finish(runner, vec![rec]);
    assert_eq!(linked(&report, &uid(1)).unwrap().title, "Changed");
    assert_eq!(linked(&report, &uid(2)).unwrap().title, "QA Specialist");
}

#[test]
fn malformed_and_oversized_bodies_get_400_and_change_nothing() {
    let r = run(with_steps(json!([
        {"webhook": {"method": "POST", "body_text": "{\"value\": [ oops"}},
        {"webhook": {"method": "POST", "body_text": format!("{{\"value\": [], \"pad\": \"{}\"}}", "x".repeat(1024 * 1024))}},
        {"webhook": {"method": "POST", "body": {"value": "not a list"}}},
    ])));
    assert_ok(&r);
    for i in 1..=3 {
        assert_eq!(
            r.steps[i].response.as_ref().unwrap().status,
            400,
            "step {i}"
        );
        assert_eq!(r.steps[i].calls, 1);
    }
}

#[test]
fn reauthorization_required_renews_the_subscription() {
    let mut s = with_steps(json!([
        {"advance": {"to": "2026-12-10T12:00:00Z"}},
        {"lifecycle": {"resource": "users", "event": "reauthorizationRequired"}},
    ]));
    s["expect"] = json!({"responses": [{"step": 2, "status": 202}]});
    let r = run(s);
    assert_ok(&r);
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    let users_sub = r
        .entra
        .subscriptions
        .iter()
        .find(|s| s["resource"] == "users")
        .unwrap();
    let expiry = users_sub["expirationDateTime"].as_str().unwrap();
    assert!(
        expiry.starts_with("2027-01-0"),
        "renewed from 2026-12-10: {expiry}"
    );
    assert!(log_text(&r).contains("Graph subscription renewed"));
}

#[test]
fn schedule_renews_before_expiry_and_recreates_expired_subscriptions() {
    // 27 days after deploy: within 3 days of expiry, renewed in place (same ids).
    let r = run(with_steps(
        json!([{"advance": {"to": "2026-12-25T12:00:00Z"}}, {"schedule": {}}]),
    ));
    assert_ok(&r);
    assert_eq!(r.entra.subscriptions.len(), 2);
    for s in &r.entra.subscriptions {
        assert!(
            s["expirationDateTime"]
                .as_str()
                .unwrap()
                .starts_with("2027-01-2"),
            "{s}"
        );
    }
    // 40 days: the subscriptions lapsed; new ones are created and the backstop still runs.
    let r = run(with_steps(
        json!([{"advance": {"to": "2027-01-07T12:00:00Z"}}, {"schedule": {}}]),
    ));
    assert_ok(&r);
    assert_eq!(r.entra.subscriptions.len(), 2);
    assert!(log_text(&r).contains("Graph subscription created"));
}

#[test]
fn dropped_notifications_are_recovered_by_the_delta_backstop() {
    let mut edited = entra_user(3);
    edited["jobTitle"] = json!("Recovered");
    let r = run(with_steps(json!([
        upsert(edited),
        upsert(entra_user(6)),
        {"entra": {"delete_user": uid(4)}},
        {"entra": {"add_member": {"group": gid(2), "member": uid(5)}}},
        {"advance": {"to": "2026-11-28T13:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    assert_eq!(linked(&r, &uid(3)).unwrap().title, "Recovered");
    assert!(linked(&r, &uid(6)).is_some());
    assert!(!linked(&r, &uid(4)).unwrap().is_active);
    assert_eq!(roles(&r, 5), ["r-doc"]);
}

#[test]
fn a_manual_zenqms_edit_survives_the_backstop_until_that_user_changes_in_entra() {
    let zen_id = |r: &host_test::report::Report| linked(r, &uid(1)).unwrap().id.clone();
    let first = run(with_steps(json!([])));
    let id = zen_id(&first);
    let mut changed = entra_user(1);
    changed["surname"] = json!("Renamed");
    let r = run(with_steps(json!([
        {"zenqms": {"update_user": {"id": id, "title": "Edited in ZenQMS"}}},
        {"advance": {"to": "2026-11-28T13:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    assert_eq!(
        linked(&r, &uid(1)).unwrap().title,
        "Edited in ZenQMS",
        "kept by the backstop"
    );
    let r = run(with_steps(json!([
        {"zenqms": {"update_user": {"id": id, "title": "Edited in ZenQMS"}}},
        upsert(changed),
        {"advance": {"to": "2026-11-28T13:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    let u = linked(&r, &uid(1)).unwrap();
    assert_eq!(u.last_name, "Renamed");
    assert_eq!(
        u.title, "QA Specialist",
        "overwritten once the user changed in Entra"
    );
}

#[test]
fn an_expired_delta_token_falls_back_to_a_full_sync() {
    let mut edited = entra_user(3);
    edited["jobTitle"] = json!("After the pause");
    let r = run(with_steps(json!([
        upsert(edited),
        {"advance": {"to": "2026-12-06T12:00:00Z"}},
        {"schedule": {}},
    ])));
    assert_ok(&r);
    assert!(
        log_text(&r).contains("delta token expired"),
        "{}",
        log_text(&r)
    );
    assert_eq!(linked(&r, &uid(3)).unwrap().title, "After the pause");
}

#[test]
fn one_user_notification_costs_at_most_four_rounds() {
    let (mut runner, sub) = deployed();
    let good = sub["clientState"].as_str().unwrap().to_string();
    let mut u = entra_user(1);
    u["jobTitle"] = json!("Changed");
    runner
        .world_mut()
        .graph
        .upsert_user(u.as_object().unwrap().clone())
        .unwrap();
    let before = runner.world().stats.rounds;
    let rec = raw(
        &mut runner,
        json!({"value": [note(&sub, &good, TENANT, &uid(1))]}),
    );
    assert!(rec.ok);
    let rounds = runner.world().stats.rounds - before;
    assert!(rounds <= 4, "one user notification took {rounds} rounds");
}

/// A user deleted in Entra is no group's member any more (Graph leaves it out of every
/// listing), so the notification that deactivates its account also removes its mapped roles,
/// as the full sync's leaver check does; a role mapped to a group that is gone stays. A user
/// only disabled is still a member and keeps them. Before, the notification path deactivated
/// the deleted user and left its roles.
#[test]
fn a_deleted_users_notification_removes_its_mapped_roles_with_the_deactivation() {
    let mut disabled = entra_user(2);
    disabled["accountEnabled"] = json!(false);
    let r = run(with_steps(json!([
        {"entra": {"delete_user": uid(1)}}, notify_user(1),
        {"entra": {"delete_user": uid(3)}}, {"entra": {"delete_group": gid(2)}}, notify_user(3),
        upsert(disabled), notify_user(2),
    ])));
    assert_ok(&r);
    let u1 = linked(&r, &uid(1)).unwrap();
    assert!(!u1.is_active);
    assert!(u1.roles.is_empty(), "deleted: {:?}", u1.roles);
    // r-doc's group 2 is gone: its holders keep it; r-qa (group 1, via group 3) is removed.
    let u3 = linked(&r, &uid(3)).unwrap();
    assert!(!u3.is_active);
    assert_eq!(u3.roles, vec!["r-doc".to_string()]);
    let u2 = linked(&r, &uid(2)).unwrap();
    assert!(!u2.is_active);
    assert_eq!(
        u2.roles,
        vec!["r-doc".to_string()],
        "disabled, still a member"
    );
}

/// A nested group inside a mapped group is deleted and Graph notifies that group: its members
/// lose the role of the mapped group that held it. The deleted group can no longer say which
/// groups held it (404), so every mapping is recomputed; before, none was, and they kept it.
/// A role mapped to the deleted group itself is left as it is (its membership is unknown).
#[test]
fn a_deleted_nested_groups_notification_takes_the_role_of_the_group_that_held_it() {
    let r = run(with_steps(json!([
        {"entra": {"delete_group": gid(3)}},
        {"notify": {"resource": "groups", "id": gid(3), "change_type": "deleted"}},
    ])));
    assert_ok(&r);
    assert_eq!(
        roles(&r, 3),
        vec!["r-doc".to_string()],
        "r-qa came through group 3"
    );
    assert_eq!(roles(&r, 1), vec!["r-qa".to_string()]);
}

/// A write names every notification that may have asked for it: work a notification queued
/// whose call failed keeps its cause when a later notification adds work of its own. A bug
/// hunt (fixtures/red-team/cause-of-queued-work.json: user1 disabled and notified at 12:00
/// while ZenQMS writes fail; at 12:30 a notification about user2) saw user1's deactivation
/// audited under user2's notification only.
#[test]
fn queued_work_keeps_its_cause_when_later_notifications_add_theirs() {
    let r = run(fixture("red-team/cause-of-queued-work.json"));
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    let deactivation = r
        .audit
        .iter()
        .find(|a| a.action == "deactivated" && a.entra_id == uid(1))
        .expect("user1 deactivated");
    assert!(
        deactivation.cause.contains("20261128T120000Z"),
        "{deactivation:?}"
    );
    let update = r
        .audit
        .iter()
        .find(|a| a.entra_id == uid(2))
        .expect("user2 updated");
    assert!(update.cause.contains("20261128T123000Z"), "{update:?}");
}
