//! Real time as Graph delivers it (WIT 0.2.0): every webhook is answered at once, with no
//! request and no state change; the accepted notifications wait in the instance's inbox and
//! the next serialized call takes them in. The runner holds every scenario to that (invariant
//! `webhook-reply`) and plays Graph's delivery rules (`sim::delivery`).

use host_test::runner::Runner;
use host_test::runtime::{InboxItem, Runtime};
use host_test::scenario::Scenario;
use serde_json::{Value, json};

use crate::common::*;

fn titled(i: u32, title: &str) -> Value {
    let mut u = entra_user(i);
    u["jobTitle"] = json!(title);
    json!({"entra": {"upsert_user": u}})
}

/// A tenant of 60 users, a mapped group, and real-time changes of every kind.
fn realtime_scenario() -> Value {
    let users: Vec<Value> = (1..=60).map(entra_user).collect();
    let groups = json!([{"id": gid(1), "displayName": "QA", "members": (1..=10).map(uid).collect::<Vec<_>>()}]);
    let mappings = json!([{"role": "r-qa", "groups": [gid(1)]}]);
    let mut s = scenario(users, groups, vec![], mappings);
    s["steps"] = json!([
        {"deploy": {}},
        titled(5, "Edited"),
        {"notify": {"resource": "users", "id": uid(5)}},
        {"entra": {"add_member": {"group": gid(1), "member": uid(20)}}},
        {"notify": {"resource": "groups", "id": gid(1)}},
        {"lifecycle": {"resource": "users", "event": "reauthorizationRequired"}},
        {"lifecycle": {"resource": "groups", "event": "missed"}},
        {"entra": {"upsert_user": entra_user(61)}},
        {"notify": {"resource": "users", "id": uid(61)}},
    ]);
    s
}

fn assert_replies_at_once(r: &host_test::report::Report) {
    for step in r.steps.iter().filter(|s| s.response.is_some()) {
        assert_eq!(
            step.reply_ms,
            Some(0),
            "step {} ({})",
            step.index,
            step.kind
        );
        assert_eq!(step.requests_before_reply, Some(0), "step {}", step.index);
    }
}

#[test]
fn every_webhook_is_answered_at_once_and_its_work_done_after_the_reply() {
    let r = run(realtime_scenario());
    assert_ok(&r);
    assert_replies_at_once(&r);
    for i in [2, 4, 8] {
        let step = &r.steps[i];
        assert_eq!(step.response.as_ref().unwrap().status, 202);
        assert!(
            step.calls >= 2,
            "step {i}: the reply, then the work: {}",
            step.calls
        );
        assert_eq!(step.delivery.as_deref(), Some("delivered"));
    }
    assert_eq!(linked(&r, &uid(5)).unwrap().title, "Edited");
    assert!(
        linked(&r, &uid(20))
            .unwrap()
            .roles
            .contains(&"r-qa".to_string())
    );
    assert!(linked(&r, &uid(61)).is_some(), "the new hire was created");
    assert_eq!(r.entra.notifications.delivered, 5);
    let text = log_text(&r);
    assert!(text.contains("lifecycle notification"), "{text}");
    assert!(text.contains("a delta round runs now"), "{text}");
}

#[test]
fn under_injected_faults_replies_stay_immediate_and_the_end_state_is_the_same() {
    let baseline = run(realtime_scenario());
    for seed in 0..10 {
        let mut s = realtime_scenario();
        s["faults"] = json!({"rate": 0.2, "seed": seed});
        let r = run(s);
        assert_ok(&r);
        assert_replies_at_once(&r);
        for u in &baseline.zenqms.users {
            let got = r.zenqms.users.iter().find(|x| x.email == u.email);
            let got = got.unwrap_or_else(|| panic!("seed {seed}: {} missing", u.email));
            assert_eq!(
                (&got.title, &got.roles),
                (&u.title, &u.roles),
                "seed {seed}"
            );
        }
    }
}

/// The model bites: a handler that works for 11 s before it answers gets its notifications
/// retried, then the endpoint marked drop, and the changes whose notifications were dropped
/// never arrive (until the backstop). The real handler loses none.
#[test]
fn a_slow_handler_loses_notifications_and_the_real_one_does_not() {
    let users: Vec<Value> = (1..=30).map(entra_user).collect();
    let mut s = scenario(users, json!([]), vec![], json!([]));
    let mut steps = vec![json!({"deploy": {}})];
    for i in 1..=20 {
        steps.push(titled(i, "Changed"));
        steps.push(json!({"notify": {"resource": "users", "id": uid(i)}}));
    }
    s["steps"] = Value::Array(steps);
    let changed = |r: &host_test::report::Report| {
        r.zenqms
            .users
            .iter()
            .filter(|u| u.title == "Changed")
            .count()
    };
    let real = run(s.clone());
    assert_eq!(changed(&real), 20);
    assert_eq!(real.entra.notifications.dropped, 0);

    let scenario = Scenario::from_json(&s.to_string()).unwrap();
    let mut runner = Runner::new(Runtime::shared(), scenario);
    runner.reply_delay_ms = 11_000;
    let records = runner.run_steps(|_| {});
    let slow = runner.report(records);
    assert!(
        slow.entra.notifications.dropped > 0,
        "{:?}",
        slow.entra.notifications
    );
    assert!(changed(&slow) < 20, "{} changes arrived", changed(&slow));
    assert!(
        slow.invariants.iter().any(|v| v.name == "webhook-reply"),
        "the runner flags a late reply"
    );
    let delivery: Vec<_> = slow
        .steps
        .iter()
        .filter_map(|s| s.delivery.clone())
        .collect();
    assert!(delivery.iter().any(|d| d == "retrying"), "{delivery:?}");
    assert!(delivery.iter().any(|d| d == "dropped"), "{delivery:?}");
}

/// The platform's side of the inbox: items not taken stay; an item the component cannot read
/// is dropped with a warning (and reported taken, so it is not offered again); every state
/// returned is one revision higher.
#[test]
fn the_inbox_is_taken_exactly_and_an_unreadable_item_is_dropped_with_a_warning() {
    let mut s = realtime_scenario();
    s["steps"] = json!([{"deploy": {}}, titled(3, "Later")]);
    let (mut runner, sub) = deployed_with(s);
    // An item as a webhook returns it, and one no webhook could have returned.
    let item =
        json!({"users": [uid(3)], "notifications": ["n-1"], "received_at": "20261128T120000Z"});
    runner.inbox.push(InboxItem {
        seq: 900,
        item: item.to_string(),
    });
    runner.inbox.push(InboxItem {
        seq: 901,
        item: "{\"users\": [\"x\"], \"evil\": 1}".into(),
    });
    let _ = sub;
    let rec = runner.run_step(2, &serde_json::from_value(json!({"resume": {}})).unwrap());
    assert!(rec.ok, "{:?}", rec.error);
    assert!(runner.inbox.is_empty(), "both taken: {:?}", runner.inbox);
    let text: String = rec
        .logs
        .iter()
        .map(|l| format!("{} {:?}\n", l.message, l.fields))
        .collect();
    assert!(text.contains("inbox item unreadable, dropped"), "{text}");
    assert!(
        text.contains("notification n-1"),
        "the cause names the notification: {text}"
    );
    let report = finish(runner, vec![rec]);
    assert_eq!(linked(&report, &uid(3)).unwrap().title, "Later");
}

/// A burst (every user edited, a group changed, all notified at once) ends in the state a full
/// sync gives: the re-sync after it writes nothing.
#[test]
fn a_burst_ends_where_a_full_sync_would() {
    let n = 120;
    let users: Vec<Value> = (1..=n).map(entra_user).collect();
    let groups = json!([{"id": gid(1), "displayName": "QA", "members": (1..=30).map(uid).collect::<Vec<_>>()}]);
    let mappings = json!([{"role": "r-qa", "groups": [gid(1)]}]);
    let mut s = scenario(users, groups, vec![], mappings);
    let mut steps = vec![json!({"deploy": {}})];
    for i in 1..=n {
        steps.push(titled(i, "Burst"));
    }
    for i in 31..=40 {
        steps.push(json!({"entra": {"add_member": {"group": gid(1), "member": uid(i)}}}));
    }
    let ids: Vec<String> = (1..=n).map(uid).collect();
    steps.push(json!({"notify": {"resource": "users", "ids": ids}}));
    steps.push(json!({"notify": {"resource": "groups", "id": gid(1)}}));
    steps.push(json!({"deploy": {}}));
    s["steps"] = Value::Array(steps);
    let r = run(s);
    assert_ok(&r);
    assert_replies_at_once(&r);
    let last = r.steps.last().unwrap();
    let writes: Vec<&str> = last
        .logs
        .iter()
        .filter(|l| l.message.starts_with("ZenQMS user") || l.message.starts_with("ZenQMS roles"))
        .map(|l| l.message.as_str())
        .collect();
    assert!(writes.is_empty(), "the re-sync found work left: {writes:?}");
    let qa = r
        .zenqms
        .users
        .iter()
        .filter(|u| u.roles.contains(&"r-qa".to_string()))
        .count();
    assert_eq!(qa, 40);
    assert!(
        r.zenqms
            .users
            .iter()
            .filter(|u| u.external_id.is_some())
            .all(|u| u.title == "Burst")
    );
}

/// A lifecycle event Graph does not define, in the same POST as a user change, must not cost
/// the user change (the item it came in used to be unreadable and dropped whole).
#[test]
fn an_odd_lifecycle_event_does_not_drop_the_changes_beside_it() {
    for event in ["", "é".repeat(100).as_str(), "somethingNew"] {
        let users: Vec<Value> = (1..=5).map(entra_user).collect();
        let mut s = scenario(users, json!([]), vec![], json!([]));
        s["steps"] = json!([
            {"deploy": {}},
            titled(1, "Edited"),
            {"webhook": {"method": "POST", "body": {"value": [
                {"subscriptionId": "{{users.subscriptionId}}", "clientState": "{{users.clientState}}",
                 "changeType": "updated", "resource": format!("Users/{}", uid(1)), "tenantId": "{{tenantId}}"},
                {"subscriptionId": "{{users.subscriptionId}}", "clientState": "{{users.clientState}}",
                 "lifecycleEvent": event, "tenantId": "{{tenantId}}"},
            ]}}},
        ]);
        let r = run(s);
        assert_ok(&r);
        assert_eq!(
            linked(&r, &uid(1)).unwrap().title,
            "Edited",
            "event {event:?}"
        );
        assert!(
            !log_text(&r).contains("inbox item unreadable"),
            "event {event:?}"
        );
    }
}

/// A link stored in another form (upper case, padding) by hand or another tool is rewritten
/// by the full sync to the Entra id as Graph gives it, so notifications find the account.
#[test]
fn a_link_in_another_form_is_normalised_and_notifications_find_it() {
    let users: Vec<Value> = (1..=3).map(entra_user).collect();
    let upper = uid(1).to_ascii_uppercase();
    let padded = format!(" {} ", uid(2));
    let zen = vec![
        zen_user("z1", "user1@contoso.com", Some(&upper), &[]),
        zen_user("z2", "user2@contoso.com", Some(&padded), &[]),
    ];
    let mut s = scenario(users, json!([]), zen, json!([]));
    let mut renamed = entra_user(1);
    renamed["mail"] = json!("renamed1@contoso.com");
    s["steps"] = json!([
        {"deploy": {}},
        {"entra": {"upsert_user": renamed}},
        {"notify": {"resource": "users", "id": uid(1)}},
        {"entra": {"delete_user": uid(2)}},
        {"notify": {"resource": "users", "id": uid(2), "change_type": "deleted"}},
    ]);
    let r = run(s);
    assert_ok(&r);
    assert_eq!(
        r.zenqms.users.len(),
        3,
        "no duplicate: {:?}",
        r.zenqms.users
    );
    let z1 = by_id(&r, "z1");
    assert_eq!(
        (z1.external_id.as_deref(), z1.email.as_str()),
        (Some(uid(1).as_str()), "renamed1@contoso.com")
    );
    assert!(
        !by_id(&r, "z2").is_active,
        "the deleted user's account is deactivated"
    );
}
