//! Shared helpers for the fake Graph's unit tests (`tests.rs`, `delta_tests.rs`). Fixture:
//! users u1..u7 (u1 disabled), groups A{u1,B} -> B{u2,C} -> C{u3,A} (a cycle), D{u4}.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::FakeGraph;
use crate::sim::http_types::HttpRequest;
use crate::sim::seed::EntraSpec;

pub(super) const TENANT: &str = "11111111-1111-4111-8111-111111111111";
pub(super) const CLIENT: &str = "22222222-2222-4222-8222-222222222222";
pub(super) const SECRET: &str = "s3cret~value";
pub(super) const U: &str = "https://graph.microsoft.com/v1.0";

pub(super) fn now() -> DateTime<Utc> {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

/// Users u1..u7 (u1 disabled), groups: A{u1,B} -> B{u2,C} -> C{u3,A} (a cycle), D{u4}.
pub(super) fn spec() -> EntraSpec {
    let users: Vec<Value> = (1..=7)
        .map(|i| {
            json!({
                "id": format!("u{i}"), "userPrincipalName": format!("User{i}@contoso.com"),
                "mail": format!("user{i}@contoso.com"), "givenName": format!("G{i}"), "surname": "S",
                "displayName": format!("User {i}"), "accountEnabled": i != 1,
            })
        })
        .collect();
    serde_json::from_value(json!({
        "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET, "users": users,
        "groups": [
            {"id": "A", "displayName": "Group A", "members": ["u1", "B"]},
            {"id": "B", "displayName": "Group B", "members": ["u2", "C"]},
            {"id": "C", "displayName": "Group C", "members": ["u3", "A"]},
            {"id": "D", "displayName": "Group D", "members": ["u4"]},
        ]
    }))
    .unwrap()
}

pub(super) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

pub(super) fn send(g: &mut FakeGraph, req: &HttpRequest, at: DateTime<Utc>) -> (u16, Value) {
    let resp = g.handle(req, at);
    let body = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap()
    };
    (resp.status, body)
}

pub(super) fn token_form(tenant: &str, form: &str) -> HttpRequest {
    let url = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token");
    request(
        "POST",
        &url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
}

pub(super) fn good_form() -> String {
    format!(
        "client_id={CLIENT}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&client_secret={}&grant_type=client_credentials",
        SECRET.replace('~', "%7E")
    )
}

pub(super) fn token(g: &mut FakeGraph) -> String {
    token_at(g, now())
}

pub(super) fn token_at(g: &mut FakeGraph, at: DateTime<Utc>) -> String {
    let (status, body) = send(g, &token_form(TENANT, &good_form()), at);
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// A fake with one valid token.
pub(super) fn setup() -> (FakeGraph, String) {
    let mut g = FakeGraph::new(&spec());
    let t = token(&mut g);
    (g, t)
}

pub(super) fn get(g: &mut FakeGraph, t: &str, url: &str) -> (u16, Value) {
    get_with(g, t, url, &[])
}

pub(super) fn get_with(
    g: &mut FakeGraph,
    t: &str,
    url: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let auth = format!("Bearer {t}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    send(g, &request("GET", url, &headers, ""), now())
}

pub(super) fn send_json(
    g: &mut FakeGraph,
    t: &str,
    method: &str,
    url: &str,
    body: &Value,
    at: DateTime<Utc>,
) -> (u16, Value) {
    let auth = format!("Bearer {t}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    send(g, &request(method, url, &headers, &body.to_string()), at)
}

pub(super) fn ids(body: &Value) -> Vec<String> {
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

pub(super) fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

pub(super) fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

pub(super) fn subscription_body(resource: &str, change_type: &str, minutes: i64) -> Value {
    json!({
        "changeType": change_type, "resource": resource,
        "notificationUrl": "https://hooks.example/n", "lifecycleNotificationUrl": "https://hooks.example/l",
        "expirationDateTime": (now() + Duration::minutes(minutes)).to_rfc3339(), "clientState": "secret",
    })
}

/// The answer of the `$batch` item `id` in a `$batch` response body.
pub(super) fn batch_item(answer: &Value, id: &str) -> Value {
    answer["responses"]
        .as_array()
        .expect("a $batch answer has responses")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no $batch item {id}"))
        .clone()
}
