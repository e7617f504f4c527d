//! Tests for the change log, `/users/delta`, `/groups/delta`, `memberOf`/`transitiveMemberOf`
//! and subscription reauthorization. Fixture (see `tests::spec`): users u1..u7, groups
//! A{u1,B} -> B{u2,C} -> C{u3,A} (a cycle), D{u4}.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::FakeGraph;
use super::test_support::{
    U, code, get, get_with, ids, message, now, request, send, send_json, setup, subscription_body,
    token_at,
};

fn obj(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn user(i: usize) -> Map<String, Value> {
    obj(json!({
        "id": format!("u{i}"), "displayName": format!("User {i}"), "mail": format!("user{i}@contoso.com"),
        "accountEnabled": true,
    }))
}

fn get_at(g: &mut FakeGraph, t: &str, url: &str, at: DateTime<Utc>) -> (u16, Value) {
    let auth = format!("Bearer {t}");
    send(g, &request("GET", url, &[("Authorization", &auth)], ""), at)
}

/// Follows nextLinks to the end of a round: every item, and the deltaLink.
fn round(g: &mut FakeGraph, t: &str, url: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut url = url.to_string();
    loop {
        let (status, body) = get(g, t, &url);
        assert_eq!(status, 200, "{url}: {body}");
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        match (body.get("@odata.nextLink"), body.get("@odata.deltaLink")) {
            (Some(next), None) => url = next.as_str().unwrap().to_string(),
            (None, Some(delta)) => return (items, delta.as_str().unwrap().to_string()),
            _ => panic!("a page needs exactly one of nextLink and deltaLink: {body}"),
        }
    }
}

fn item_ids(items: &[Value]) -> Vec<&str> {
    items.iter().map(|v| v["id"].as_str().unwrap()).collect()
}

#[test]
fn users_delta_initial_round_pages_and_ends_with_a_delta_link() {
    let (mut g, t) = setup();
    for i in 100..250 {
        g.upsert_user(user(i)).unwrap();
    }
    let first = format!("{U}/users/delta?$select=displayName,accountEnabled");
    let (status, page) = get(&mut g, &t, &first);
    assert_eq!(status, 200);
    assert_eq!(
        page["@odata.context"],
        format!("{U}/$metadata#users(displayName,accountEnabled)")
    );
    assert_eq!(page["value"].as_array().unwrap().len(), 100);
    assert!(page.get("@odata.deltaLink").is_none());
    assert_eq!(
        page["value"][0],
        json!({"id": "u1", "displayName": "User 1", "accountEnabled": false})
    );
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{U}/users/delta?$skiptoken=")),
        "{next}"
    );
    // The selection travels in the token: adding $select to a nextLink is refused.
    assert_eq!(get(&mut g, &t, &format!("{next}&$select=mail")).0, 400);
    let (_, last) = get(&mut g, &t, next);
    assert_eq!(last["@odata.context"], format!("{U}/$metadata#users"));
    assert_eq!(last["value"].as_array().unwrap().len(), 57);
    assert!(last.get("@odata.nextLink").is_none());
    let delta = last["@odata.deltaLink"].as_str().unwrap();
    assert!(
        delta.starts_with(&format!("{U}/users/delta?$deltatoken=")),
        "{delta}"
    );
    let (items, delta) = round(&mut g, &t, &first);
    let mut seen = item_ids(&items);
    seen.dedup();
    assert_eq!(seen.len(), 157);
    // Nothing changed since: an empty round with a fresh deltaLink.
    let (status, body) = get(&mut g, &t, &delta);
    assert_eq!((status, body["value"].clone()), (200, json!([])));
    assert!(body["@odata.deltaLink"].is_string());
    // Soft-deleted users are not part of an initial round.
    g.delete_user("u2").unwrap();
    let (items, _) = round(&mut g, &t, &format!("{U}/users/delta?$select=id"));
    assert!(!item_ids(&items).contains(&"u2") && items.len() == 156);
    assert_eq!(items[0], json!({"id": "u1"}));
}

#[test]
fn users_delta_rejects_what_graph_or_the_fake_does_not_support() {
    let (mut g, t) = setup();
    for option in ["$top=5", "$orderby=id", "$expand=manager"] {
        let (status, body) = get(&mut g, &t, &format!("{U}/users/delta?{option}"));
        assert_eq!(
            (status, code(&body)),
            (400, "Request_UnsupportedQuery"),
            "{option}"
        );
    }
    let (status, body) = get(&mut g, &t, &format!("{U}/users/delta?$filter=id eq 'u1'"));
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("not implemented by the fake Graph"),
        "{body}"
    );
    let (status, body) = get(&mut g, &t, &format!("{U}/users/delta?$select=manager"));
    assert!(
        status == 400 && message(&body).contains("fake Graph"),
        "{body}"
    );
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users/delta?$select=bogus")).0,
        400
    );
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users/delta?$select=aboutMe")).0,
        501
    );
    let unauthenticated = request("GET", &format!("{U}/users/delta"), &[], "");
    assert_eq!(send(&mut g, &unauthenticated, now()).0, 401);
    let (status, body) = send_json(
        &mut g,
        &t,
        "POST",
        &format!("{U}/users/delta"),
        &json!({}),
        now(),
    );
    assert_eq!((status, code(&body)), (403, "Authorization_RequestDenied"));
    // Default properties without $select (no accountEnabled), `delta()` spelling accepted.
    let (status, body) = get(&mut g, &t, &format!("{U}/users/delta()"));
    assert_eq!(status, 200);
    assert!(body["value"][0].get("accountEnabled").is_none());
    assert_eq!(body["value"][0]["userPrincipalName"], "User1@contoso.com");
}

#[test]
fn latest_returns_only_a_delta_link_from_now() {
    let (mut g, t) = setup();
    g.upsert_user(user(8)).unwrap();
    let (status, body) = get(
        &mut g,
        &t,
        &format!("{U}/users/delta?$deltatoken=latest&$select=mail"),
    );
    assert_eq!(status, 200);
    assert_eq!(body["value"], json!([]));
    assert!(body.get("@odata.nextLink").is_none());
    let delta = body["@odata.deltaLink"].as_str().unwrap().to_string();
    let mut u2 = g.find_user("u2").unwrap().1.clone();
    u2.insert("mail".into(), json!("new2@contoso.com"));
    g.upsert_user(u2).unwrap();
    let (items, _) = round(&mut g, &t, &delta);
    assert_eq!(items, [json!({"id": "u2", "mail": "new2@contoso.com"})]);
    // Re-using a link with $select is refused: the selection is in the token.
    assert_eq!(get(&mut g, &t, &format!("{delta}&$select=mail")).0, 400);
}

#[test]
fn incremental_users_report_updates_creates_soft_deletes_and_restores() {
    let (mut g, t) = setup();
    let (_, delta) = round(
        &mut g,
        &t,
        &format!("{U}/users/delta?$select=mail,accountEnabled"),
    );
    let mut u1 = g.find_user("u1").unwrap().1.clone();
    u1.insert("accountEnabled".into(), json!(true));
    g.upsert_user(u1.clone()).unwrap();
    g.upsert_user(u1).unwrap(); // identical: no change
    let mut u2 = g.find_user("u2").unwrap().1.clone();
    u2.insert("givenName".into(), json!("Renamed")); // not tracked by this $select
    g.upsert_user(u2).unwrap();
    g.upsert_user(user(9)).unwrap();
    g.delete_user("u3").unwrap();
    g.delete_user("u4").unwrap();
    let mut u4 = user(4);
    u4.insert("mail".into(), json!("back4@contoso.com"));
    g.upsert_user(u4).unwrap(); // restored: shown as a plain (created) user
    let mut u5 = g.find_user("u5").unwrap().1.clone();
    u5.insert("mail".into(), json!("a@contoso.com"));
    g.upsert_user(u5.clone()).unwrap();
    u5.insert("mail".into(), json!("b@contoso.com"));
    g.upsert_user(u5).unwrap();
    g.upsert_user(user(10)).unwrap();
    g.delete_user("u10").unwrap();
    let (items, next_delta) = round(&mut g, &t, &delta);
    assert_eq!(
        items,
        [
            json!({"id": "u1", "mail": "user1@contoso.com", "accountEnabled": true}),
            json!({"id": "u10", "@removed": {"reason": "changed"}}),
            json!({"id": "u3", "@removed": {"reason": "changed"}}),
            json!({"id": "u4", "mail": "back4@contoso.com", "accountEnabled": true}),
            json!({"id": "u5", "mail": "b@contoso.com", "accountEnabled": true}),
            json!({"id": "u9", "mail": "user9@contoso.com", "accountEnabled": true}),
        ]
    );
    // The old link still answers (same changes, replayed); the new one has nothing new.
    assert_eq!(round(&mut g, &t, &delta).0.len(), 6);
    assert_eq!(round(&mut g, &t, &next_delta).0, Vec::<Value>::new());
    // Without $select the default properties are tracked: givenName surfaces the user.
    let (_, default_delta) = round(&mut g, &t, &format!("{U}/users/delta"));
    let mut u6 = g.find_user("u6").unwrap().1.clone();
    u6.insert("givenName".into(), json!("Six"));
    g.upsert_user(u6).unwrap();
    let (items, _) = round(&mut g, &t, &default_delta);
    assert_eq!(item_ids(&items), ["u6"]);
    assert_eq!(items[0]["givenName"], "Six");
    assert_eq!(items[0]["displayName"], "User 6");
}

#[test]
fn a_changed_user_is_paged_once_per_round() {
    let (mut g, t) = setup();
    let (_, delta) = round(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    for i in 100..230 {
        g.upsert_user(user(i)).unwrap();
        let mut again = user(i);
        again.insert("mail".into(), json!(format!("second{i}@contoso.com")));
        g.upsert_user(again).unwrap();
    }
    let (status, page) = get(&mut g, &t, &delta);
    assert_eq!(status, 200);
    assert_eq!(page["@odata.context"], format!("{U}/$metadata#users"));
    assert!(page["@odata.nextLink"].is_string() && page.get("@odata.deltaLink").is_none());
    let (items, _) = round(&mut g, &t, &delta);
    assert_eq!(items.len(), 130);
    assert_eq!(items[0]["mail"], "second100@contoso.com");
}

#[test]
fn groups_delta_initial_round_lists_current_direct_members() {
    let (mut g, t) = setup();
    g.remove_member("D", "u4").unwrap();
    g.delete_user("u2").unwrap();
    let (status, body) = get(
        &mut g,
        &t,
        &format!("{U}/groups/delta?$select=displayName,members"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        format!("{U}/$metadata#groups(displayName)")
    );
    let user = "#microsoft.graph.user";
    let group = "#microsoft.graph.group";
    assert_eq!(
        body["value"],
        json!([
            {"id": "A", "displayName": "Group A", "members@delta": [
                {"@odata.type": group, "id": "B"}, {"@odata.type": user, "id": "u1"}]},
            {"id": "B", "displayName": "Group B", "members@delta": [{"@odata.type": group, "id": "C"}]},
            {"id": "C", "displayName": "Group C", "members@delta": [
                {"@odata.type": group, "id": "A"}, {"@odata.type": user, "id": "u3"}]},
            {"id": "D", "displayName": "Group D"},
        ])
    );
    assert!(body["@odata.deltaLink"].is_string());
    let (_, body) = get(&mut g, &t, &format!("{U}/groups/delta?$select=displayName"));
    assert_eq!(
        body["value"][0],
        json!({"id": "A", "displayName": "Group A"})
    );
    let (_, body) = get(&mut g, &t, &format!("{U}/groups/delta"));
    assert_eq!(body["@odata.context"], format!("{U}/$metadata#groups"));
    assert_eq!(body["value"][0]["securityEnabled"], true);
    assert_eq!(
        body["value"][0]["members@delta"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        get(&mut g, &t, &format!("{U}/groups/delta?$select=bogus")).0,
        400
    );
    assert_eq!(get(&mut g, &t, &format!("{U}/groups/delta?$top=1")).0, 400);
}

#[test]
fn groups_delta_reports_net_membership_changes() {
    let (mut g, t) = setup();
    let (_, delta) = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    g.add_member("D", "u5").unwrap();
    g.remove_member("A", "u1").unwrap();
    g.add_member("D", "u6").unwrap();
    g.remove_member("D", "u6").unwrap(); // net zero
    g.remove_member("B", "u2").unwrap();
    g.add_member("B", "u2").unwrap(); // net zero: B is left out
    g.delete_user("u3").unwrap(); // soft delete: no membership change for C
    g.add_member("D", "u7").unwrap();
    g.delete_user("u7").unwrap(); // held back until a restore
    let (items, delta2) = round(&mut g, &t, &delta);
    assert_eq!(
        items,
        [
            json!({"id": "A", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": {"reason": "deleted"}}]}),
            json!({"id": "D", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u5"}]}),
        ]
    );
    // Soft-deleted users stay members (hidden): no removal, and it cannot be removed.
    assert!(g.remove_member("C", "u3").is_err());
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/groups/C/members")).1),
        ["A"]
    );
    g.upsert_user(user(3)).unwrap();
    g.upsert_user(user(7)).unwrap();
    let (items, delta3) = round(&mut g, &t, &delta2);
    assert_eq!(
        items,
        [
            json!({"id": "C", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u3"}]}),
            json!({"id": "D", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u7"}]}),
        ]
    );
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/groups/C/members")).1),
        ["A", "u3"]
    );
    assert!(round(&mut g, &t, &delta3).0.is_empty());
    // Nested groups are members too; unselected members are not tracked.
    let (_, names_only) = round(&mut g, &t, &format!("{U}/groups/delta?$select=displayName"));
    g.add_member("D", "A").unwrap();
    let (items, _) = round(&mut g, &t, &delta3);
    assert_eq!(
        items,
        [
            json!({"id": "D", "members@delta": [{"@odata.type": "#microsoft.graph.group", "id": "A"}]})
        ]
    );
    assert!(round(&mut g, &t, &names_only).0.is_empty());
}

#[test]
fn a_large_group_is_split_across_repeated_objects() {
    let (mut g, t) = setup();
    for i in 100..250 {
        g.upsert_user(user(i)).unwrap();
        g.add_member("D", &format!("u{i}")).unwrap();
    }
    let (items, _) = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    let d: Vec<&Value> = items.iter().filter(|v| v["id"] == "D").collect();
    assert_eq!(d.len(), 2);
    let sizes: Vec<usize> = d
        .iter()
        .map(|v| v["members@delta"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 51]);
}

#[test]
fn delta_tokens_expire_after_seven_days() {
    let (mut g, t) = setup();
    let (_, delta) = round(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    let six = now() + Duration::days(6);
    let t6 = token_at(&mut g, six);
    let (status, body) = get_at(&mut g, &t6, &delta, six);
    assert_eq!(status, 200, "{body}");
    let renewed = body["@odata.deltaLink"].as_str().unwrap().to_string();
    let eight = now() + Duration::days(8);
    let t8 = token_at(&mut g, eight);
    let (status, body) = get_at(&mut g, &t8, &delta, eight);
    assert_eq!((status, code(&body)), (400, "syncStateNotFound"));
    assert_eq!(
        message(&body),
        "The sync state is not found or has expired. Please restart the sync."
    );
    assert_eq!(get_at(&mut g, &t8, &renewed, eight).0, 200);
    let seven = now() + Duration::days(7);
    let t7 = token_at(&mut g, seven);
    assert_eq!(get_at(&mut g, &t7, &delta, seven).0, 400);
    // Malformed, tampered or foreign tokens are 400 too.
    let token = delta.split("$deltatoken=").nth(1).unwrap();
    let mut tampered = token.to_string();
    tampered.replace_range(10..12, "7a");
    for bad in [
        format!("{U}/users/delta?$deltatoken=garbage"),
        format!("{U}/users/delta?$deltatoken={tampered}"),
        format!("{U}/groups/delta?$deltatoken={token}"),
        format!("{U}/users/delta?$skiptoken={token}"),
        format!("{U}/users/delta?$deltatoken={token}&$skiptoken={token}"),
    ] {
        let (status, body) = get(&mut g, &t, &bad);
        assert_eq!((status, code(&body)), (400, "Request_BadRequest"), "{bad}");
    }
}

#[test]
fn member_of_is_direct_and_transitive_member_of_is_cycle_safe() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/users/u3/transitiveMemberOf"));
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        format!("{U}/$metadata#directoryObjects")
    );
    assert_eq!(ids(&body), ["A", "B", "C"]);
    assert_eq!(body["value"][0]["@odata.type"], "#microsoft.graph.group");
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/users/User3@contoso.com/memberOf")).1),
        ["C"]
    );
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/groups/A/transitiveMemberOf")).1),
        ["B", "C"]
    );
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/groups/a/memberOf")).1),
        ["C"]
    );
    assert!(ids(&get(&mut g, &t, &format!("{U}/groups/D/transitiveMemberOf")).1).is_empty());
    let (_, body) = get(
        &mut g,
        &t,
        &format!("{U}/users/u1/transitiveMemberOf?$select=displayName&$top=2"),
    );
    assert_eq!(
        body["value"][0],
        json!({"@odata.type": "#microsoft.graph.group", "id": "A", "displayName": "Group A"})
    );
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{U}/users/u1/transitiveMemberOf?")),
        "{next}"
    );
    assert_eq!(ids(&get(&mut g, &t, next).1), ["C"]);
    let cast = format!("{U}/users/u3/transitiveMemberOf/microsoft.graph.group?$count=true");
    assert_eq!(get(&mut g, &t, &cast).0, 400);
    let (status, body) = get_with(&mut g, &t, &cast, &[("ConsistencyLevel", "eventual")]);
    assert_eq!((status, body["@odata.count"].as_u64()), (200, Some(3)));
    for missing in ["users/ghost/memberOf", "groups/ghost/transitiveMemberOf"] {
        let (status, body) = get(&mut g, &t, &format!("{U}/{missing}"));
        assert_eq!((status, code(&body)), (404, "Request_ResourceNotFound"));
    }
    g.delete_user("u3").unwrap();
    assert_eq!(get(&mut g, &t, &format!("{U}/users/u3/memberOf")).0, 404);
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users/u1/memberOf/x/y")).0,
        400
    );
}

#[test]
fn reauthorize_answers_204_or_404() {
    let (mut g, t) = setup();
    let url = format!("{U}/subscriptions");
    let (_, sub) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("users", "updated,deleted", 60),
        now(),
    );
    let id = sub["id"].as_str().unwrap().to_string();
    let reauth = format!("{url}/{id}/reauthorize");
    let auth = format!("Bearer {t}");
    let post = request("POST", &reauth, &[("Authorization", &auth)], "");
    let resp = g.handle(&post, now());
    assert_eq!((resp.status, resp.body.is_empty()), (204, true));
    assert_eq!(
        g.subscription(&id).unwrap()["expirationDateTime"],
        sub["expirationDateTime"]
    );
    assert_eq!(get(&mut g, &t, &reauth).0, 405);
    let (status, _) = send_json(&mut g, &t, "POST", &reauth, &json!({"x": 1}), now());
    assert_eq!(status, 400);
    let missing = request(
        "POST",
        &format!("{url}/nope/reauthorize"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(send(&mut g, &missing, now()).0, 404);
    let later = now() + Duration::hours(2);
    let t2 = token_at(&mut g, later);
    let auth2 = format!("Bearer {t2}");
    let expired = request("POST", &reauth, &[("Authorization", &auth2)], "");
    let (status, body) = send(&mut g, &expired, later);
    assert_eq!((status, code(&body)), (404, "ResourceNotFound"));
    assert_eq!(
        send(&mut g, &request("POST", &reauth, &[], ""), now()).0,
        401
    );
}

#[test]
fn change_log_records_sequence_and_virtual_time() {
    let (mut g, _) = setup(); // the token request set the clock to now()
    g.upsert_user(user(8)).unwrap();
    let later = now() + Duration::minutes(5);
    g.set_now(later);
    g.add_member("D", "u8").unwrap();
    g.delete_user("u8").unwrap();
    assert!(g.add_member("D", "u8").is_err());
    g.upsert_user(user(8)).unwrap();
    let log = g.change_log();
    let kinds: Vec<&str> = log.iter().map(|c| c["change"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "userCreated",
            "memberAdded",
            "userDeleted",
            "userCreated",
            "memberAdded"
        ]
    );
    let seqs: Vec<u64> = log.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(log[0]["at"], "2026-11-28T12:00:00Z");
    assert_eq!(log[1]["at"], "2026-11-28T12:05:00Z");
    let mut u8 = user(8);
    u8.insert("jobTitle".into(), json!("Chief"));
    g.upsert_user(u8).unwrap();
    assert_eq!(
        g.change_log()[5],
        json!({"seq": 6, "at": "2026-11-28T12:05:00Z", "change": "userUpdated", "id": "u8",
            "properties": ["jobTitle"]})
    );
}

#[test]
fn delta_responses_are_deterministic() {
    let run = || {
        let (mut g, t) = setup();
        g.add_member("D", "u5").unwrap();
        let a = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
        let b = round(&mut g, &t, &format!("{U}/users/delta?$deltatoken=latest"));
        (a, b)
    };
    assert_eq!(run(), run());
}
