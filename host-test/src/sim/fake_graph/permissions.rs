//! Application permissions: which Microsoft Graph permission each request needs, and the 403
//! Graph answers when the app registration lacks it (`entra.permissions` in the scenario).
//!
//! The check runs after authentication and before routing, as in Graph, where the token's
//! roles are checked before the resource is looked at: without `User.Read.All` even an unknown
//! user answers 403, not 404. Each `$batch` item goes through it on its own (the batch itself
//! needs no permission), so one item can be denied while the others succeed.

use serde_json::Value;

use super::FakeGraph;
use super::odata::{GraphError, GraphResult};
use crate::sim::http_types::HttpRequest;
use crate::sim::seed::{GROUP_MEMBER_READ_ALL, GROUP_READ_ALL, USER_READ_ALL};

/// What a request needs: for every clause, at least one of its permissions.
pub(super) type Needs = &'static [&'static [&'static str]];

const NOTHING: Needs = &[];
const USERS: Needs = &[&[USER_READ_ALL]];
/// GroupMember.Read.All "allows the app to list groups, read basic properties": either reads
/// groups.
const GROUPS: Needs = &[&[GROUP_READ_ALL, GROUP_MEMBER_READ_ALL]];
/// Group.Read.All is the higher-privileged alternative the membership pages list.
const MEMBERSHIP: Needs = &[&[GROUP_MEMBER_READ_ALL, GROUP_READ_ALL]];
/// A user's group memberships need both the user and the memberships.
const USER_MEMBERSHIP: Needs = &[&[USER_READ_ALL], &[GROUP_MEMBER_READ_ALL, GROUP_READ_ALL]];
/// The subscription page lists Group.Read.All alone for the `groups` resource.
const GROUP_NOTIFICATIONS: Needs = &[&[GROUP_READ_ALL]];

/// The least-privileged application permission Microsoft Graph v1.0 documents for each
/// endpoint the fake serves, from the "Permissions" table of each API page
/// (https://learn.microsoft.com/en-us/graph/api/ `user-list`, `user-get`, `user-delta`,
/// `user-checkmembergroups`, `user-getmembergroups`, `group-list`, `group-get`, `group-delta`,
/// `group-list-members`, `group-list-transitivemembers`, `group-list-transitivememberof`,
/// `subscription-post-subscriptions`; higher-privileged ones are folded in by
/// `EntraSpec::read_permissions`):
///
/// | request | needs |
/// |---|---|
/// | `/users`, `/users/{id}`, `/users/delta`, `/users/{id}/[transitive]memberOf` | User.Read.All |
/// | `/users/{id}/checkMemberGroups`, `/getMemberGroups` | User.Read.All and (GroupMember.Read.All or Group.Read.All) |
/// | `/groups`, `/groups/{id}`, `/groups/delta` | Group.Read.All or GroupMember.Read.All |
/// | `/groups/{id}/members`, `/transitiveMembers`, `/[transitive]memberOf` (and below, e.g. `/members/delta`) | GroupMember.Read.All or Group.Read.All |
/// | `POST /subscriptions` on `users` | User.Read.All |
/// | `POST /subscriptions` on `groups` | Group.Read.All |
/// | anything else (`$batch`, reading/renewing/deleting a subscription, unknown paths) | nothing |
///
/// `path` is the request's path after `/v1.0`; `subscription_resource` the `resource` of a
/// subscription-creation body, if there is one.
pub(super) fn required_permissions(
    method: &str,
    path: &[&str],
    subscription_resource: Option<&str>,
) -> Needs {
    let lower: Vec<String> = path.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match lower.as_slice() {
        ["users", _, op, ..]
            if matches!(
                op.trim_start_matches("microsoft.graph."),
                "checkmembergroups" | "getmembergroups"
            ) =>
        {
            USER_MEMBERSHIP
        }
        ["users", ..] => USERS,
        [
            "groups",
            _,
            "members" | "transitivemembers" | "memberof" | "transitivememberof",
            ..,
        ] => MEMBERSHIP,
        ["groups", ..] => GROUPS,
        ["subscriptions"] if method == "POST" => {
            let resource = subscription_resource.unwrap_or_default();
            let collection = resource.trim_start_matches('/').split('/').next();
            match collection.map(str::to_ascii_lowercase).as_deref() {
                Some("users") => USERS,
                Some("groups") => GROUP_NOTIFICATIONS,
                // Validation answers 400 for any other resource.
                _ => NOTHING,
            }
        }
        _ => NOTHING,
    }
}

impl FakeGraph {
    /// Graph's 403 (`Authorization_RequestDenied`) unless the app holds what
    /// `required_permissions` says the request needs. `path` is the path after `/v1.0`.
    pub(super) fn authorize(&self, req: &HttpRequest, path: &[&str]) -> GraphResult<()> {
        // Only a subscription creation depends on its body: parse no other (a `$batch` body
        // can be large).
        let resource = path
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions"))
            .then(|| subscription_resource(req))
            .flatten();
        let needs = required_permissions(&req.method, path, resource.as_deref());
        let held = |any_of: &&[&str]| any_of.iter().any(|p| self.reads.contains(p));
        if needs.iter().all(held) {
            Ok(())
        } else {
            Err(GraphError::access_denied())
        }
    }
}

/// The `resource` of a JSON body; `None` when there is none (creation then answers its 400).
fn subscription_resource(req: &HttpRequest) -> Option<String> {
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    body.get("resource")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::FakeGraph;
    use super::super::test_support::*;
    use super::*;

    /// The standard fixture, for an app consented to exactly `permissions`.
    fn setup_with(permissions: &[&str]) -> (FakeGraph, String) {
        let mut spec = spec();
        spec.permissions = permissions.iter().map(|p| p.to_string()).collect();
        let mut g = FakeGraph::new(&spec);
        let t = token(&mut g);
        (g, t)
    }

    fn denied(status: u16, body: &Value) -> bool {
        status == 403
            && code(body) == "Authorization_RequestDenied"
            && message(body) == "Insufficient privileges to complete the operation."
            && body["error"]["innerError"]["request-id"].is_string()
            && body["error"]["innerError"]["date"].is_string()
    }

    #[test]
    fn the_table_follows_the_graph_docs() {
        let needs = |method, path: &str, resource| {
            let path: Vec<&str> = path.split('/').collect();
            required_permissions(method, &path, resource)
        };
        assert_eq!(needs("GET", "users", None), USERS);
        assert_eq!(needs("GET", "users/u1", None), USERS);
        assert_eq!(needs("GET", "Users/delta", None), USERS);
        assert_eq!(needs("GET", "users/u1/transitiveMemberOf", None), USERS);
        assert_eq!(
            needs("POST", "users/u1/microsoft.graph.checkMemberGroups", None),
            USER_MEMBERSHIP
        );
        assert_eq!(
            needs("POST", "users/u1/getMemberGroups", None),
            USER_MEMBERSHIP
        );
        assert_eq!(needs("GET", "groups", None), GROUPS);
        assert_eq!(needs("GET", "groups/A", None), GROUPS);
        assert_eq!(needs("GET", "groups/delta", None), GROUPS);
        for rel in [
            "members",
            "transitiveMembers",
            "transitiveMemberOf",
            "members/delta",
        ] {
            assert_eq!(needs("GET", &format!("groups/A/{rel}"), None), MEMBERSHIP);
        }
        assert_eq!(needs("POST", "subscriptions", Some("/users")), USERS);
        assert_eq!(
            needs("POST", "subscriptions", Some("groups")),
            GROUP_NOTIFICATIONS
        );
        assert_eq!(needs("GET", "subscriptions", None), NOTHING);
        assert_eq!(needs("POST", "$batch", None), NOTHING);
    }

    #[test]
    fn a_missing_permission_denies_only_the_endpoints_that_need_it() {
        // No User.Read.All: users are out of reach, groups and memberships are not.
        let (mut g, t) = setup_with(&[GROUP_MEMBER_READ_ALL]);
        for path in ["users", "users/u2", "users/nobody", "users/delta"] {
            let (status, body) = get(&mut g, &t, &format!("{U}/{path}"));
            assert!(denied(status, &body), "{path}: {status} {body}");
        }
        let check = json!({"groupIds": ["A"]});
        let url = format!("{U}/users/u1/checkMemberGroups");
        let (status, body) = send_json(&mut g, &t, "POST", &url, &check, now());
        assert!(denied(status, &body), "{body}");
        for path in [
            "groups",
            "groups/A",
            "groups/A/members",
            "groups/A/transitiveMembers",
        ] {
            assert_eq!(get(&mut g, &t, &format!("{U}/{path}")).0, 200, "{path}");
        }
        // The token endpoint never checks permissions.
        token(&mut g);
    }

    #[test]
    fn membership_needs_group_member_or_group_read() {
        let (mut g, t) = setup_with(&[USER_READ_ALL]);
        for path in [
            "groups/A/members",
            "groups/A/transitiveMemberOf",
            "groups/A",
            "groups/delta",
        ] {
            let (status, body) = get(&mut g, &t, &format!("{U}/{path}"));
            assert!(denied(status, &body), "{path}: {status} {body}");
        }
        let url = format!("{U}/users/u1/checkMemberGroups");
        let (status, body) =
            send_json(&mut g, &t, "POST", &url, &json!({"groupIds": ["A"]}), now());
        assert!(denied(status, &body), "{body}");
        assert_eq!(get(&mut g, &t, &format!("{U}/users/u2")).0, 200);

        // Group.Read.All alone reads memberships too.
        let (mut g, t) = setup_with(&[GROUP_READ_ALL]);
        assert_eq!(
            get(&mut g, &t, &format!("{U}/groups/A/transitiveMembers")).0,
            200
        );
        assert_eq!(get(&mut g, &t, &format!("{U}/groups/delta")).0, 200);
    }

    #[test]
    fn subscriptions_need_the_permission_of_their_resource() {
        let (mut g, t) = setup_with(&[USER_READ_ALL, GROUP_MEMBER_READ_ALL]);
        let url = format!("{U}/subscriptions");
        let groups = subscription_body("groups", "updated", 60);
        let (status, body) = send_json(&mut g, &t, "POST", &url, &groups, now());
        assert!(denied(status, &body), "{body}");
        let users = subscription_body("/users", "updated,deleted", 60);
        let (status, body) = send_json(&mut g, &t, "POST", &url, &users, now());
        assert_eq!(status, 201, "{body}");
    }

    #[test]
    fn a_denied_batch_item_fails_alone() {
        let (mut g, t) = setup_with(&[GROUP_MEMBER_READ_ALL]);
        let body = json!({"requests": [
            {"id": "1", "method": "GET", "url": "/users/u1?$select=id"},
            {"id": "2", "method": "GET", "url": "/groups/A/members?$select=id"},
        ]});
        let (status, answer) = send_json(&mut g, &t, "POST", &format!("{U}/$batch"), &body, now());
        assert_eq!(status, 200, "{answer}");
        let item = |id: &str| batch_item(&answer, id);
        let one = item("1");
        assert!(
            denied(one["status"].as_u64().unwrap() as u16, &one["body"]),
            "{one}"
        );
        assert_eq!(item("2")["status"], 200);
    }

    #[test]
    fn super_permissions_imply_the_reads() {
        for (granted, users, groups, members) in [
            (vec!["Directory.Read.All"], 200, 200, 200),
            (vec!["directory.read.all"], 200, 200, 200),
            (vec!["User.ReadWrite.All"], 200, 403, 403),
            (vec!["Group.ReadWrite.All"], 403, 200, 200),
            (vec!["GroupMember.ReadWrite.All"], 403, 200, 200),
            (vec!["Mail.Read"], 403, 403, 403),
            (vec![], 403, 403, 403),
        ] {
            let (mut g, t) = setup_with(&granted);
            let status = |g: &mut FakeGraph, path: &str| get(g, &t, &format!("{U}/{path}")).0;
            assert_eq!(
                (
                    status(&mut g, "users/u2"),
                    status(&mut g, "groups/A"),
                    status(&mut g, "groups/A/members")
                ),
                (users, groups, members),
                "{granted:?}"
            );
        }
    }

    #[test]
    fn the_default_is_the_three_reads_of_the_faq() {
        let spec: crate::sim::seed::EntraSpec = serde_json::from_value(json!({
            "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
        }))
        .unwrap();
        assert_eq!(
            spec.read_permissions().into_iter().collect::<Vec<_>>(),
            [GROUP_READ_ALL, GROUP_MEMBER_READ_ALL, USER_READ_ALL]
        );
    }
}
