use serde_json::{Value, json};

use super::FakeZenqms;
use crate::sim::http_types::HttpRequest;
use crate::sim::seed::ZenqmsSpec;

const BASE: &str = "https://acme.zenqms.com";
const TOKEN: &str = "zen-token";

fn fake() -> FakeZenqms {
    let spec: ZenqmsSpec = serde_json::from_value(json!({
        "api_token": TOKEN,
        "roles": [{"id": "r-qa", "name": "QA"}, {"id": "r-viewer", "name": "Viewer"}],
        "users": [
            {"id": "u-000007", "email": "Ada@Example.com", "first_name": "Ada", "last_name": "Lovelace",
             "title": "QA Lead", "external_id": "e-ada", "roles": ["r-qa"]},
            {"id": "u-000002", "email": "bob@example.com", "first_name": "Bob", "last_name": "B",
             "title": "Eng", "is_active": false},
            {"id": "legacy-1", "email": "carol@example.com", "first_name": "Carol", "last_name": "C", "title": "Ops"},
        ]
    }))
    .unwrap();
    FakeZenqms::new(&spec, BASE)
}

fn call(z: &mut FakeZenqms, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    call_raw(
        z,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.map(|b| b.to_string()),
    )
}

fn call_raw(
    z: &mut FakeZenqms,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, Value) {
    let req = HttpRequest {
        method: method.into(),
        url: format!("{BASE}{path}"),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.unwrap_or_default().into_bytes(),
    };
    let resp = z.handle(&req);
    (resp.status, serde_json::from_slice(&resp.body).unwrap())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn new_user(email: &str) -> Value {
    json!({"email": email, "first_name": "New", "last_name": "User", "title": "Tech", "is_active": true, "external_id": null})
}

#[test]
fn requires_the_bearer_token() {
    let mut z = fake();
    let (status, body) = call_raw(&mut z, "GET", "/v2/roles", &[], None);
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, _) = call_raw(
        &mut z,
        "GET",
        "/v2/roles",
        &[("Authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(status, 401);
    let (status, body) = call(&mut z, "GET", "/v2/roles", None);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": [{"id": "r-qa", "name": "QA"}, {"id": "r-viewer", "name": "Viewer"}]})
    );
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let mut z = fake();
    assert_eq!(call(&mut z, "GET", "/v2/nothing", None).0, 404);
    assert_eq!(call(&mut z, "GET", "/v1/roles", None).0, 404);
    assert_eq!(
        call(&mut z, "POST", "/v2/users/u-000002/roles", Some(json!({}))).0,
        404
    );
    let (status, body) = call(&mut z, "GET", "/v2/users", None);
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
    assert_eq!(call(&mut z, "POST", "/v2/roles", None).0, 405);
    assert_eq!(call(&mut z, "GET", "/v2/users/u-000002", None).0, 405);
    assert_eq!(
        call(
            &mut z,
            "POST",
            "/v2/users/u-000002/roles/remove",
            Some(json!({"role_ids": ["r-qa"]}))
        )
        .0,
        405
    );
    assert_eq!(call(&mut z, "GET", "/v2/roles?page=2", None).0, 400);
    let (status, body) = call(
        &mut z,
        "PATCH",
        "/v2/users/u-999999",
        Some(json!({"title": "X"})),
    );
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[test]
fn search_pages_by_id_with_total() {
    let mut z = fake();
    let (status, body) = call(
        &mut z,
        "POST",
        "/v2/users/search",
        Some(json!({"filter": {}, "page": 1, "per_page": 2})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["page"].as_i64(),
            body["per_page"].as_i64(),
            body["total"].as_u64()
        ),
        (Some(1), Some(2), Some(3))
    );
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["legacy-1", "u-000002"]);
    let (_, page2) = call(
        &mut z,
        "POST",
        "/v2/users/search",
        Some(json!({"page": 2, "per_page": 2})),
    );
    assert_eq!(page2["data"][0]["id"], "u-000007");
    assert_eq!(page2["data"][0]["roles"], json!(["r-qa"]));
    let (_, past) = call(
        &mut z,
        "POST",
        "/v2/users/search",
        Some(json!({"page": 9, "per_page": 2})),
    );
    assert_eq!(
        (past["data"].clone(), past["total"].as_u64()),
        (json!([]), Some(3))
    );
    for bad in [
        json!({"per_page": 0}),
        json!({"per_page": 101}),
        json!({"page": 0}),
        json!({"page": "1"}),
        json!({"filter": {"name": "x"}}),
        json!({"sort": "id"}),
    ] {
        let (status, body) = call(&mut z, "POST", "/v2/users/search", Some(bad.clone()));
        assert_eq!((status, code(&body)), (400, "invalid_request"), "{bad}");
    }
}

#[test]
fn search_filters_combine_with_and() {
    let mut z = fake();
    let mut search = |filter: Value| -> Vec<String> {
        let (status, body) = call(
            &mut z,
            "POST",
            "/v2/users/search",
            Some(json!({"filter": filter})),
        );
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(search(json!({"external_id": "e-ada"})), ["u-000007"]);
    assert_eq!(
        search(json!({"external_id": null})),
        ["legacy-1", "u-000002"]
    );
    assert_eq!(search(json!({"email": "ada@EXAMPLE.com"})), ["u-000007"]);
    assert_eq!(search(json!({"is_active": false})), ["u-000002"]);
    assert_eq!(search(json!({"has_external_id": true})), ["u-000007"]);
    assert_eq!(
        search(json!({"is_active": true, "has_external_id": false})),
        ["legacy-1"]
    );
    let (status, body) = call(
        &mut z,
        "POST",
        "/v2/users/search",
        Some(json!({"filter": {"is_active": "yes"}})),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("filter.is_active")
    );
}

#[test]
fn create_validates_and_assigns_fresh_ids() {
    let mut z = fake();
    let (status, body) = call(
        &mut z,
        "POST",
        "/v2/users",
        Some(new_user("new@example.com")),
    );
    assert_eq!(status, 201);
    assert_eq!(body["id"], "u-000008");
    assert_eq!(
        (body["roles"].clone(), body["external_id"].clone()),
        (json!([]), Value::Null)
    );
    let (status, body) = call(
        &mut z,
        "POST",
        "/v2/users",
        Some(new_user("  ADA@example.com ")),
    );
    assert_eq!((status, code(&body)), (409, "email_taken"));
    for (field, value) in [
        ("first_name", json!(" ")),
        ("title", json!("")),
        ("email", json!("a@b@c.com")),
        ("email", json!("a@example")),
    ] {
        let mut user = new_user("other@example.com");
        user[field] = value;
        let (status, body) = call(&mut z, "POST", "/v2/users", Some(user));
        assert_eq!((status, code(&body)), (422, "invalid_field"), "{field}");
    }
    let mut missing = new_user("x@example.com");
    missing.as_object_mut().unwrap().remove("external_id");
    let (status, body) = call(&mut z, "POST", "/v2/users", Some(missing));
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("external_id")
    );
    let mut extra = new_user("x@example.com");
    extra["department"] = json!("QA");
    assert_eq!(call(&mut z, "POST", "/v2/users", Some(extra)).0, 400);
    let mut wrong = new_user("x@example.com");
    wrong["is_active"] = json!("true");
    assert_eq!(call(&mut z, "POST", "/v2/users", Some(wrong)).0, 400);
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        call_raw(
            &mut z,
            "POST",
            "/v2/users",
            &headers,
            Some("{not json".into())
        )
        .0,
        400
    );
    let no_type = [("Authorization", auth.as_str())];
    assert_eq!(
        call_raw(
            &mut z,
            "POST",
            "/v2/users",
            &no_type,
            Some(new_user("y@example.com").to_string())
        )
        .0,
        400
    );
    assert_eq!(z.writes(), 1);
    assert_eq!(z.users().len(), 4);
}

#[test]
fn patch_updates_a_subset_and_clears_external_id() {
    let mut z = fake();
    let (status, body) = call(
        &mut z,
        "PATCH",
        "/v2/users/u-000007",
        Some(json!({"external_id": null, "is_active": false})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["external_id"].clone(),
            body["is_active"].clone(),
            body["title"].clone()
        ),
        (Value::Null, json!(false), json!("QA Lead"))
    );
    assert_eq!(
        call(&mut z, "PATCH", "/v2/users/u-000007", Some(json!({}))).0,
        400
    );
    assert_eq!(
        call(
            &mut z,
            "PATCH",
            "/v2/users/u-000007",
            Some(json!({"title": null}))
        )
        .0,
        400
    );
    assert_eq!(
        call(
            &mut z,
            "PATCH",
            "/v2/users/u-000007",
            Some(json!({"roles": []}))
        )
        .0,
        400
    );
    assert_eq!(
        call(
            &mut z,
            "PATCH",
            "/v2/users/u-000007",
            Some(json!({"last_name": ""}))
        )
        .0,
        422
    );
    assert_eq!(
        call(
            &mut z,
            "PATCH",
            "/v2/users/u-000007",
            Some(json!({"email": "BOB@example.com"}))
        )
        .0,
        409
    );
    // Changing only the case of one's own email is not a conflict.
    assert_eq!(
        call(
            &mut z,
            "PATCH",
            "/v2/users/u-000007",
            Some(json!({"email": "ada@example.com"}))
        )
        .0,
        200
    );
    assert_eq!(z.writes(), 2);
}

#[test]
fn roles_add_and_remove_are_idempotent() {
    let mut z = fake();
    let add = "/v2/users/u-000002/roles/add";
    let (status, body) = call(
        &mut z,
        "POST",
        add,
        Some(json!({"role_ids": ["r-viewer", "r-qa"]})),
    );
    assert_eq!(
        (status, body["roles"].clone()),
        (200, json!(["r-qa", "r-viewer"]))
    );
    assert_eq!(
        call(&mut z, "POST", add, Some(json!({"role_ids": ["r-qa"]}))).1["roles"],
        json!(["r-qa", "r-viewer"])
    );
    let remove = "/v2/users/u-000002/roles/remove";
    assert_eq!(
        call(
            &mut z,
            "DELETE",
            remove,
            Some(json!({"role_ids": ["r-qa"]}))
        )
        .1["roles"],
        json!(["r-viewer"])
    );
    assert_eq!(
        call(
            &mut z,
            "DELETE",
            remove,
            Some(json!({"role_ids": ["r-qa"]}))
        )
        .1["roles"],
        json!(["r-viewer"])
    );
    let (status, body) = call(&mut z, "POST", add, Some(json!({"role_ids": ["r-admin"]})));
    assert_eq!((status, code(&body)), (422, "unknown_role"));
    assert_eq!(
        call(&mut z, "POST", add, Some(json!({"role_ids": []}))).0,
        400
    );
    assert_eq!(
        call(&mut z, "POST", add, Some(json!({"role_ids": "r-qa"}))).0,
        400
    );
    assert_eq!(
        call(
            &mut z,
            "POST",
            "/v2/users/nobody/roles/add",
            Some(json!({"role_ids": ["r-qa"]}))
        )
        .0,
        404
    );
    assert_eq!(z.writes(), 4);
}

#[test]
fn admin_edits_apply_the_same_rules() {
    let mut z = fake();
    let edit = |v: Value| v.as_object().unwrap().clone();
    z.update_user(&edit(
        json!({"id": "legacy-1", "title": "Boss", "roles": ["r-viewer", "r-qa"]}),
    ))
    .unwrap();
    let carol = z.users().into_iter().find(|u| u.id == "legacy-1").unwrap();
    assert_eq!(
        (carol.title.as_str(), carol.roles),
        ("Boss", vec!["r-qa".to_string(), "r-viewer".to_string()])
    );
    assert!(
        z.update_user(&edit(json!({"id": "legacy-1", "email": "ada@example.com"})))
            .is_err()
    );
    assert!(
        z.update_user(&edit(json!({"id": "legacy-1", "roles": ["r-x"]})))
            .is_err()
    );
    assert!(
        z.update_user(&edit(json!({"id": "ghost", "title": "X"})))
            .is_err()
    );
    assert!(
        z.update_user(&edit(json!({"id": "legacy-1", "nickname": "C"})))
            .is_err()
    );
    assert_eq!(z.writes(), 0);
    let ids: Vec<String> = z.users().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, ["legacy-1", "u-000002", "u-000007"]);
}

#[test]
fn base_url_may_carry_a_path_and_hosts_compare_case_insensitively() {
    let spec: ZenqmsSpec = serde_json::from_value(json!({"api_token": TOKEN})).unwrap();
    let mut z = FakeZenqms::new(&spec, "https://acme.zenqms.com/api");
    let auth = format!("Bearer {TOKEN}");
    let mut get = |url: &str| {
        let req = HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("authorization".into(), auth.clone())],
            body: Vec::new(),
        };
        z.handle(&req).status
    };
    assert_eq!(get("https://ACME.zenqms.com/api/v2/roles"), 200);
    assert_eq!(get("https://acme.zenqms.com/v2/roles"), 404);
    assert_eq!(get("https://acme.zenqms.com/apiv2/roles"), 404);
}

#[test]
fn an_email_given_up_is_free_again() {
    let mut z = fake();
    let moved = json!({"email": "ada.l@example.com"});
    assert_eq!(
        call(&mut z, "PATCH", "/v2/users/u-000007", Some(moved)).0,
        200
    );
    // The old address is free for someone else; the new one is taken.
    let (status, _) = call(
        &mut z,
        "PATCH",
        "/v2/users/u-000002",
        Some(json!({"email": " ADA@example.com"})),
    );
    assert_eq!(status, 200);
    let (status, body) = call(
        &mut z,
        "PATCH",
        "/v2/users/legacy-1",
        Some(json!({"email": "Ada.L@example.com"})),
    );
    assert_eq!((status, code(&body)), (409, "email_taken"));
}
