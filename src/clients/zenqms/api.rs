//! Every assumption about ZenQMS's request and response bodies lives here (see
//! `docs/zenqms-api.md`): ZenQMS publishes the endpoints' paths but not their bodies, so when the
//! official spec arrives this file and that page change together.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::failure::upstream;
use crate::platform::{Method, Response};

/// Largest page `POST /v2/users/search` serves.
pub const SEARCH_PAGE_SIZE: u32 = 100;

/// A ZenQMS user as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ZUser {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub title: String,
    pub is_active: bool,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Sorts `users` in ZenQMS id order (the order a search serves) and keeps one of each id:
/// pages read side by side overlap when ZenQMS changed between them.
pub fn in_id_order(users: &mut Vec<ZUser>) {
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users.dedup_by(|a, b| a.id == b.id);
}

/// The body of `POST /v2/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub is_active: bool,
    pub external_id: Option<String>,
}

/// A role as `GET /v2/roles` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
struct Roles {
    data: Vec<Role>,
}

/// One page of `POST /v2/users/search`.
#[derive(Debug, Deserialize)]
pub struct SearchPage {
    pub data: Vec<ZUser>,
    pub total: u64,
}

/// A request before the client adds the base URL and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

pub fn list_roles() -> Call {
    Call {
        method: Method::Get,
        path: "/v2/roles".into(),
        body: None,
    }
}

/// Most ids one `external_ids` filter takes (docs/zenqms-api.md).
pub const MAX_FILTER_IDS: usize = 100;

/// The filter for users linked to any of `ids` (at most [`MAX_FILTER_IDS`]).
pub fn with_external_ids(ids: &[String]) -> Value {
    json!({ "external_ids": ids })
}

/// How many forms of one Entra id [`with_links`] asks for: see [`link_forms`].
pub const LINK_FORMS: usize = 8;

/// Most Entra ids one [`with_links`] filter takes: each is asked in [`LINK_FORMS`] forms.
pub const LINKS_PER_SEARCH: usize = MAX_FILTER_IDS / LINK_FORMS;

/// The forms in which an account may hold a link to `entra_id` that an `external_ids` search
/// (exact, docs/zenqms-api.md) must be asked for besides Graph's own (lowercase): an admin
/// who sets a link by hand in ZenQMS (as a conflict's log line tells them to) may paste it in
/// capitals or with a space before or after it. The component reads every such form as a link
/// (`plan::link_of`: trimmed, ASCII case folded); a look-up that missed them left a deleted
/// user's account active (three bug hunts). Lower and upper case, each bare, with a space
/// before, after, or both. Other forms (mixed case, tabs, several spaces) are found, and
/// rewritten to Graph's form, by the next full sync's leaver walk.
pub fn link_forms(entra_id: &str) -> [String; LINK_FORMS] {
    let lower = entra_id.trim().to_ascii_lowercase();
    let upper = lower.to_ascii_uppercase();
    [
        format!(" {lower} "),
        format!(" {lower}"),
        format!(" {upper} "),
        format!(" {upper}"),
        format!("{lower} "),
        format!("{upper} "),
        upper,
        lower,
    ]
}

/// The filter for users linked to any of `ids` (at most [`LINKS_PER_SEARCH`]), in every form
/// of [`link_forms`].
pub fn with_links(ids: &[String]) -> Value {
    let forms: Vec<String> = ids.iter().flat_map(|id| link_forms(id)).collect();
    json!({ "external_ids": forms })
}

/// The filter for users holding any of `emails` (at most [`MAX_FILTER_IDS`]; compared as the
/// `email` filter compares: case-insensitively, surrounding spaces ignored).
pub fn with_emails(emails: &[String]) -> Value {
    json!({ "emails": emails })
}

/// The filter for every linked user (any external_id), the leaver check's walk.
pub fn linked() -> Value {
    json!({ "has_external_id": true })
}

/// The filter for the holders of a role.
pub fn holding_role(role_id: &str) -> Value {
    json!({ "role_id": role_id })
}

/// One page of users matching `filter` (a JSON object of the documented filter keys).
pub fn search_users(filter: Value, page: u64) -> Call {
    Call {
        method: Method::Post,
        path: "/v2/users/search".into(),
        body: Some(json!({"filter": filter, "page": page, "per_page": SEARCH_PAGE_SIZE})),
    }
}

pub fn create_user(user: &NewUser) -> Call {
    Call {
        method: Method::Post,
        path: "/v2/users".into(),
        body: Some(serde_json::to_value(user).expect("plain struct serialises")),
    }
}

/// `fields` holds only the ZenQMS field names to change and their new values.
pub fn update_user(id: &str, fields: Map<String, Value>) -> Call {
    Call {
        method: Method::Patch,
        path: format!("/v2/users/{}", crate::platform::url::encode(id)),
        body: Some(Value::Object(fields)),
    }
}

pub fn add_roles(id: &str, roles: &[String]) -> Call {
    Call {
        method: Method::Post,
        path: format!("/v2/users/{}/roles/add", crate::platform::url::encode(id)),
        body: Some(json!({ "role_ids": roles })),
    }
}

pub fn remove_roles(id: &str, roles: &[String]) -> Call {
    Call {
        method: Method::Delete,
        path: format!(
            "/v2/users/{}/roles/remove",
            crate::platform::url::encode(id)
        ),
        body: Some(json!({ "role_ids": roles })),
    }
}

pub fn parse_roles(body: &[u8]) -> Result<Vec<Role>, String> {
    serde_json::from_slice::<Roles>(body)
        .map(|r| r.data)
        .map_err(|e| {
            format!(
                "unexpected ZenQMS roles response: {}",
                upstream::json_problem(&e)
            )
        })
}

pub fn parse_search(body: &[u8]) -> Result<SearchPage, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "unexpected ZenQMS search response: {}",
            upstream::json_problem(&e)
        )
    })
}

pub fn parse_user(body: &[u8]) -> Result<ZUser, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "unexpected ZenQMS user response: {}",
            upstream::json_problem(&e)
        )
    })
}

/// `code: message` from a ZenQMS error body (docs/zenqms-api.md, "Errors"), bounded; any other
/// body is described by its content type and size only (it may echo the request's
/// `Authorization` header). See [`upstream::describe`].
pub fn error_text(resp: &Response) -> String {
    upstream::describe(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_ids() {
        assert_eq!(update_user("a/b", Map::new()).path, "/v2/users/a%2Fb");
        assert_eq!(
            add_roles("u-1", &["r".into()]).path,
            "/v2/users/u-1/roles/add"
        );
    }

    #[test]
    fn error_text_keeps_the_documented_shape_only() {
        let json = |b: &str| Response::text(409, "application/json", b.as_bytes().to_vec());
        let body = r#"{"error":{"code":"email_taken","message":"in use"}}"#;
        assert_eq!(error_text(&json(body)), "email_taken: in use");
        let echo = "<html>Authorization: Bearer zq-api-token</html>";
        let html = Response::text(400, "text/html", echo.as_bytes().to_vec());
        assert_eq!(
            error_text(&html),
            format!("no error details (text/html, {} bytes)", echo.len())
        );
    }

    #[test]
    fn unexpected_answers_are_described_without_quoting_them() {
        let e = parse_user(br#"{"id": 5, "email": "Bearer zq-api-token"}"#).unwrap_err();
        assert!(!e.contains("zq-api-token"), "{e}");
        assert!(
            e.starts_with("unexpected ZenQMS user response: unexpected JSON shape"),
            "{e}"
        );
    }

    #[test]
    fn search_body_shape() {
        let c = search_users(json!({"has_external_id": true}), 2);
        assert_eq!(
            c.body.unwrap(),
            json!({"filter": {"has_external_id": true}, "page": 2, "per_page": 100})
        );
    }
}
