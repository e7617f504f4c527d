//! Tests for non-user directory objects (`entra.objects`), permanent user deletion
//! (`purge_user`), group deletion (`delete_group`) and the refusal of every delta token issued so
//! far (`expire_delta`). Fixture (see `test_support::spec`): users u1..u7, groups
//! A{u1,B} -> B{u2,C} -> C{u3,A} (a cycle), D{u4}; plus here: a device, a service principal and
//! an org contact in D.

use serde_json::{Value, json};

use super::FakeGraph;
use super::test_support::{U, code, get, get_with, ids, now, spec, token};

const DEVICE: &str = "dddddddd-0000-4000-8000-000000000001";
const APP: &str = "dddddddd-0000-4000-8000-000000000002";
const CONTACT: &str = "dddddddd-0000-4000-8000-000000000003";

fn with_objects() -> (FakeGraph, String) {
    let mut s = spec();
    s.objects = serde_json::from_value(json!([
        {"id": DEVICE, "@odata.type": "#microsoft.graph.device", "displayName": "Lab PC 7"},
        {"id": APP, "@odata.type": "#microsoft.graph.servicePrincipal", "displayName": "Backup app"},
        {"id": CONTACT, "@odata.type": "#microsoft.graph.orgContact", "displayName": "Auditor",
         "mail": "auditor@partner.example"},
    ]))
    .unwrap();
    for g in &mut s.groups {
        if g.id == "D" {
            g.members
                .extend([DEVICE.into(), APP.into(), CONTACT.into()]);
        }
    }
    let mut g = FakeGraph::new(&s);
    let t = token(&mut g);
    (g, t)
}

fn types(body: &Value) -> Vec<(String, String)> {
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["@odata.type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every item of a delta round, following nextLinks; and the deltaLink.
fn round(g: &mut FakeGraph, t: &str, url: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut url = url.to_string();
    loop {
        let (status, body) = get(g, t, &url);
        assert_eq!(status, 200, "{url}: {body}");
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = body["@odata.nextLink"].as_str() {
            url = next.to_string();
        } else {
            return (
                items,
                body["@odata.deltaLink"].as_str().unwrap().to_string(),
            );
        }
    }
}

#[test]
fn members_list_non_user_objects_with_their_type_and_users_never_do() {
    let (mut g, t) = with_objects();
    for relation in ["members", "transitiveMembers"] {
        let (status, body) = get(&mut g, &t, &format!("{U}/groups/D/{relation}"));
        assert_eq!(status, 200, "{body}");
        let mut got = types(&body);
        got.sort();
        assert_eq!(
            got,
            [
                (DEVICE.into(), "#microsoft.graph.device".into()),
                (APP.into(), "#microsoft.graph.servicePrincipal".into()),
                (CONTACT.into(), "#microsoft.graph.orgContact".into()),
                ("u4".into(), "#microsoft.graph.user".into()),
            ]
        );
        let contact = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == CONTACT)
            .unwrap();
        assert_eq!(contact["displayName"], "Auditor");
        // A user property asked for on the directoryObject collection: objects without it
        // leave it out.
        let (_, sel) = get(
            &mut g,
            &t,
            &format!("{U}/groups/D/{relation}?$select=id,mail,accountEnabled"),
        );
        let device = sel["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == DEVICE)
            .unwrap();
        assert_eq!(
            device,
            &json!({"@odata.type": "#microsoft.graph.device", "id": DEVICE})
        );
        // The user cast leaves them out.
        let (status, cast) = get_with(
            &mut g,
            &t,
            &format!("{U}/groups/D/{relation}/microsoft.graph.user?$count=true"),
            &[("ConsistencyLevel", "eventual")],
        );
        assert_eq!(status, 200, "{cast}");
        assert_eq!(ids(&cast), ["u4"]);
    }
    // Nested: A contains B contains C contains A; D is not nested, so add D to C.
    g.add_member("C", "D").unwrap();
    let (_, a) = get(&mut g, &t, &format!("{U}/groups/A/transitiveMembers"));
    assert!(ids(&a).contains(&DEVICE.to_string()), "{a}");
    // Never users.
    let (_, users) = get(&mut g, &t, &format!("{U}/users?$top=999"));
    assert!(!ids(&users).iter().any(|i| i.starts_with("dddddddd")));
    assert_eq!(get(&mut g, &t, &format!("{U}/users/{DEVICE}")).0, 404);
    // The group delta lists them with their type.
    let (items, _) = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    let d = items.iter().find(|v| v["id"] == "D").unwrap();
    assert!(
        d["members@delta"]
            .as_array()
            .unwrap()
            .contains(&json!({"@odata.type": "#microsoft.graph.orgContact", "id": CONTACT})),
        "{d}"
    );
}

#[test]
fn objects_must_have_a_known_type() {
    let bad = serde_json::from_value::<Vec<crate::sim::seed::ObjectSpec>>(json!([
        {"id": "x", "@odata.type": "#microsoft.graph.user"}
    ]));
    assert!(bad.is_err());
}

#[test]
fn purge_user_is_a_permanent_delete_in_reads_memberships_and_deltas() {
    let (mut g, t) = with_objects();
    let (_, users_link) = round(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    let (_, groups_link) = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    g.purge_user("u4").unwrap();
    // A soft-deleted user can be purged too.
    g.delete_user("u2").unwrap();
    g.purge_user("u2").unwrap();
    assert_eq!(get(&mut g, &t, &format!("{U}/users/u4")).0, 404);
    let (_, d) = get(&mut g, &t, &format!("{U}/groups/D/members"));
    assert!(!ids(&d).contains(&"u4".to_string()));
    let (items, _) = round(&mut g, &t, &users_link);
    assert!(items.contains(&json!({"id": "u4", "@removed": {"reason": "deleted"}})));
    assert!(items.contains(&json!({"id": "u2", "@removed": {"reason": "deleted"}})));
    let (items, _) = round(&mut g, &t, &groups_link);
    let d = items.iter().find(|v| v["id"] == "D").unwrap();
    assert_eq!(
        d["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": "u4", "@removed": {"reason": "deleted"}}])
    );
    let b = items.iter().find(|v| v["id"] == "B").unwrap();
    assert_eq!(
        b["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}}])
    );
    // Gone for good: not restorable, not purgeable twice.
    let mut again = serde_json::Map::new();
    again.insert("id".into(), json!("u4"));
    assert!(g.upsert_user(again).is_err());
    assert!(g.purge_user("u4").is_err());
    assert!(g.purge_user("nobody").is_err());
}

#[test]
fn delete_group_answers_404_and_leaves_listings_memberships_and_delta() {
    let (mut g, t) = with_objects();
    let (_, groups_link) = round(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    let (_, plain_link) = round(&mut g, &t, &format!("{U}/groups/delta?$select=displayName"));
    g.delete_group("C").unwrap();
    for path in ["C", "C/members", "C/transitiveMembers", "C/memberOf"] {
        let (status, body) = get(&mut g, &t, &format!("{U}/groups/{path}"));
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(code(&body), "Request_ResourceNotFound");
    }
    let (_, b) = get(&mut g, &t, &format!("{U}/groups/B/members"));
    assert_eq!(ids(&b), ["u2"]);
    let (_, a) = get(&mut g, &t, &format!("{U}/groups/A/transitiveMembers"));
    let mut a = ids(&a);
    a.sort();
    assert_eq!(a, ["B", "u1", "u2"]);
    let (_, of) = get(&mut g, &t, &format!("{U}/users/u3/memberOf"));
    assert!(ids(&of).is_empty());
    let (items, _) = round(&mut g, &t, &groups_link);
    assert!(
        items.contains(&json!({"id": "C", "@removed": {"reason": "deleted"}})),
        "{items:?}"
    );
    let b = items.iter().find(|v| v["id"] == "B").unwrap();
    assert_eq!(
        b["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.group", "id": "C", "@removed": {"reason": "deleted"}}])
    );
    // Without members tracked, the removal still shows.
    let (items, _) = round(&mut g, &t, &plain_link);
    assert_eq!(
        items,
        [json!({"id": "C", "@removed": {"reason": "deleted"}})]
    );
    // A fresh initial round does not list it.
    let (items, _) = round(&mut g, &t, &format!("{U}/groups/delta"));
    assert!(!items.iter().any(|v| v["id"] == "C"));
    assert!(g.delete_group("C").is_err());
    assert!(g.add_member("C", "u1").is_err());
}

#[test]
fn expire_delta_refuses_every_token_issued_so_far_and_only_those() {
    let (mut g, t) = with_objects();
    let (_, users_link) = round(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    let (page, _) = get(&mut g, &t, &format!("{U}/groups/delta?$select=members"));
    assert_eq!(page, 200);
    // A round in progress: its nextLink dies too.
    for i in 100..220 {
        let mut u = serde_json::Map::new();
        u.insert("id".into(), json!(format!("x{i}")));
        g.upsert_user(u).unwrap();
    }
    let (_, first) = get(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    let next = first["@odata.nextLink"].as_str().unwrap().to_string();
    let (_, latest) = get(&mut g, &t, &format!("{U}/users/delta?$deltatoken=latest"));
    let latest = latest["@odata.deltaLink"].as_str().unwrap().to_string();
    g.expire_delta();
    for link in [&users_link, &next, &latest] {
        let (status, body) = get(&mut g, &t, link);
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "syncStateNotFound");
    }
    // A new round works, and its links work, at the very same virtual time.
    let (_, fresh) = round(&mut g, &t, &format!("{U}/users/delta?$select=mail"));
    let (status, _) = get(&mut g, &t, &fresh);
    assert_eq!(status, 200);
    let _ = now();
}
