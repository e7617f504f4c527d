use chrono::Duration;
use serde_json::{Value, json};

use super::FakeGraph;
use super::test_support::*;

#[test]
fn token_success_is_unique_and_recorded() {
    let mut g = FakeGraph::new(&spec());
    let (status, body) = send(&mut g, &token_form(TENANT, &good_form()), now());
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let second = token(&mut g);
    assert_ne!(body["access_token"].as_str().unwrap(), second);
    assert_eq!(g.issued_tokens().len(), 2);
    assert!(g.issued_tokens().contains(&second));
}

#[test]
fn token_errors_use_the_oauth_shape() {
    let mut g = FakeGraph::new(&spec());
    let form = good_form();
    let cases = [
        (
            token_form("33333333-3333-4333-8333-333333333333", &form),
            400,
            "invalid_request",
            90002,
        ),
        (
            token_form(TENANT, &form.replace(CLIENT, "nobody")),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            token_form(TENANT, &form.replace("s3cret", "wrong")),
            401,
            "invalid_client",
            7000215,
        ),
        (
            token_form(
                TENANT,
                &form.replace("graph.microsoft.com", "foo.microsoft.com"),
            ),
            400,
            "invalid_scope",
            70011,
        ),
        (
            token_form(TENANT, &form.replace("client_credentials", "password")),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            token_form(TENANT, &form.replace("&grant_type=client_credentials", "")),
            400,
            "invalid_request",
            900144,
        ),
    ];
    for (req, status, error, number) in cases {
        let (s, body) = send(&mut g, &req, now());
        assert_eq!(
            (s, body["error"].as_str().unwrap()),
            (status, error),
            "{body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AADSTS{number}: "))
        );
        assert_eq!(body["error_codes"], json!([number]));
        assert_eq!(body["timestamp"], "2026-11-28 12:00:00Z");
        assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
    }
    let json_body = request(
        "POST",
        &token_form(TENANT, "").url,
        &[("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(send(&mut g, &json_body, now()).0, 400);
    assert!(g.issued_tokens().is_empty());
}

#[test]
fn graph_requires_a_valid_unexpired_bearer_token() {
    let (mut g, t) = setup();
    let (status, body) = send(
        &mut g,
        &request("GET", &format!("{U}/users"), &[], ""),
        now(),
    );
    assert_eq!((status, code(&body)), (401, "InvalidAuthenticationToken"));
    assert_eq!(message(&body), "Access token is empty.");
    let inner = &body["error"]["innerError"];
    assert_eq!(inner["date"], "2026-11-28T12:00:00");
    assert!(inner["request-id"].is_string() && inner["client-request-id"].is_string());
    assert_eq!(get(&mut g, "not-a-token", &format!("{U}/users")).0, 401);
    let expired = request(
        "GET",
        &format!("{U}/users"),
        &[("authorization", &format!("bearer {t}"))],
        "",
    );
    assert_eq!(
        send(&mut g, &expired, now() + Duration::seconds(3598)).0,
        200
    );
    let (status, body) = send(&mut g, &expired, now() + Duration::seconds(3599));
    assert_eq!((status, code(&body)), (401, "InvalidAuthenticationToken"));
}

#[test]
fn default_properties_exclude_account_enabled() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/users"));
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users"
    );
    let first = body["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    let expected = [
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ];
    assert_eq!(keys, expected);
    assert_eq!(first["businessPhones"], json!([]));
    assert_eq!(first["jobTitle"], Value::Null);
}

#[test]
fn select_returns_exactly_the_selected_properties() {
    let (mut g, t) = setup();
    let (status, body) = get(
        &mut g,
        &t,
        &format!("{U}/users?$select=MAIL,accountEnabled,jobTitle"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users(mail,accountEnabled,jobTitle)"
    );
    assert_eq!(
        body["value"][0],
        json!({"id": "u1", "mail": "user1@contoso.com", "accountEnabled": false, "jobTitle": null})
    );
    let (status, body) = get(&mut g, &t, &format!("{U}/users?%24select=id,bogus"));
    assert_eq!((status, code(&body)), (400, "Request_BadRequest"));
    assert_eq!(
        message(&body),
        "Could not find a property named 'bogus' on type 'microsoft.graph.user'."
    );
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users?$select=aboutMe")).0,
        501
    );
}

#[test]
fn top_is_limited_to_1_through_999() {
    let (mut g, t) = setup();
    for bad in ["0", "1000", "abc", "-1", ""] {
        let (status, body) = get(&mut g, &t, &format!("{U}/users?$top={bad}"));
        assert_eq!(
            (status, code(&body)),
            (400, "Request_BadRequest"),
            "$top={bad}"
        );
    }
    let (status, body) = get(&mut g, &t, &format!("{U}/users?$top=999"));
    assert_eq!((status, ids(&body).len()), (200, 7));
    assert!(body.get("@odata.nextLink").is_none());
}

#[test]
fn paging_follows_next_links_across_three_pages() {
    let (mut g, t) = setup();
    let (_, first) = get(
        &mut g,
        &t,
        &format!("{U}/users?$select=id,accountEnabled&$top=3"),
    );
    assert_eq!(ids(&first), ["u1", "u2", "u3"]);
    let link = first["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!(
            "{U}/users?$select=id,accountEnabled&$top=3&$skiptoken="
        )),
        "{link}"
    );
    // Changes mid-listing: a user before the cursor is not returned, one after it is.
    g.upsert_user(json!({"id": "u0"}).as_object().unwrap().clone())
        .unwrap();
    g.upsert_user(
        json!({"id": "u8", "accountEnabled": true})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    g.delete_user("u5").unwrap();
    let (_, second) = get(&mut g, &t, &link);
    assert_eq!(ids(&second), ["u4", "u6", "u7"]);
    assert_eq!(
        second["value"][0],
        json!({"id": "u4", "accountEnabled": true})
    );
    let (_, third) = get(&mut g, &t, second["@odata.nextLink"].as_str().unwrap());
    assert_eq!(ids(&third), ["u8"]);
    assert!(third.get("@odata.nextLink").is_none());
}

#[test]
fn invalid_or_foreign_skiptokens_are_rejected() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/users?$skiptoken=garbage"));
    assert_eq!((status, code(&body)), (400, "Request_BadRequest"));
    let (_, page) = get(&mut g, &t, &format!("{U}/users?$top=1"));
    let link = page["@odata.nextLink"].as_str().unwrap();
    let token = link.split("$skiptoken=").nth(1).unwrap();
    let mut tampered = token.to_string();
    tampered.replace_range(16..18, "7a");
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users?$skiptoken={tampered}")).0,
        400
    );
    assert_eq!(
        get(
            &mut g,
            &t,
            &format!("{U}/groups/A/members?$skiptoken={token}")
        )
        .0,
        400
    );
}

#[test]
fn unsupported_query_options_fail_loudly() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/users?$skip=2"));
    assert_eq!(
        (status, message(&body)),
        (400, "'$skip' is not supported by the service.")
    );
    for option in [
        "$filter=accountEnabled eq true",
        "$search=\"a\"",
        "$orderby=id",
        "$count=true",
        "$expand=manager",
    ] {
        let (status, body) = get(&mut g, &t, &format!("{U}/users?{option}"));
        assert_eq!(status, 400, "{option}");
        assert!(message(&body).contains("not implement"), "{body}");
    }
    let (status, body) = get(&mut g, &t, &format!("{U}/users?$bogus=1"));
    assert_eq!(
        (status, message(&body)),
        (400, "The query parameter '$bogus' is not supported.")
    );
    assert_eq!(get(&mut g, &t, &format!("{U}/users?$top=2&$top=3")).0, 400);
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users?api-version=1&foo=bar")).0,
        200
    );
    assert_eq!(get(&mut g, &t, &format!("{U}/users/u1?$top=1")).0, 400);
}

#[test]
fn single_user_by_id_or_upn_and_404_after_soft_delete() {
    let (mut g, t) = setup();
    let (status, body) = get(
        &mut g,
        &t,
        &format!("{U}/users/user2%40CONTOSO.com?$select=accountEnabled"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users(accountEnabled)/$entity"
    );
    assert_eq!(
        (body["id"].as_str(), body["accountEnabled"].as_bool()),
        (Some("u2"), Some(true))
    );
    g.delete_user("u2").unwrap();
    let (status, body) = get(&mut g, &t, &format!("{U}/users/u2"));
    assert_eq!((status, code(&body)), (404, "Request_ResourceNotFound"));
    assert_eq!(
        message(&body),
        "Resource 'u2' does not exist or one of its queried reference-property objects are not present."
    );
    assert!(!ids(&get(&mut g, &t, &format!("{U}/users")).1).contains(&"u2".to_string()));
    assert!(!ids(&get(&mut g, &t, &format!("{U}/groups/B/members")).1).contains(&"u2".to_string()));
    assert!(g.delete_user("u2").is_err());
    g.upsert_user(
        json!({"id": "u2", "displayName": "Back"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    assert_eq!(
        get(&mut g, &t, &format!("{U}/users/u2")).1["displayName"],
        "Back"
    );
}

#[test]
fn members_are_direct_and_transitive_members_are_flattened_once() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/groups/A/members"));
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#directoryObjects"
    );
    assert_eq!(ids(&body), ["B", "u1"]);
    assert_eq!(body["value"][0]["@odata.type"], "#microsoft.graph.group");
    assert_eq!(body["value"][1]["@odata.type"], "#microsoft.graph.user");
    let (_, body) = get(
        &mut g,
        &t,
        &format!("{U}/groups/a/transitiveMembers?$select=id,accountEnabled"),
    );
    assert_eq!(ids(&body), ["B", "C", "u1", "u2", "u3"]);
    assert_eq!(
        body["value"][0],
        json!({"@odata.type": "#microsoft.graph.group", "id": "B"})
    );
    assert_eq!(
        body["value"][2],
        json!({"@odata.type": "#microsoft.graph.user", "id": "u1", "accountEnabled": false})
    );
    let (_, paged) = get(
        &mut g,
        &t,
        &format!("{U}/groups/A/transitiveMembers?$top=2"),
    );
    assert_eq!(ids(&paged), ["B", "C"]);
    let (_, rest) = get(&mut g, &t, paged["@odata.nextLink"].as_str().unwrap());
    assert_eq!(ids(&rest), ["u1", "u2"]);
    let (status, body) = get(&mut g, &t, &format!("{U}/groups/nope/members"));
    assert_eq!((status, code(&body)), (404, "Request_ResourceNotFound"));
    let (status, body) = get(&mut g, &t, &format!("{U}/groups/D"));
    assert_eq!(
        (status, body["displayName"].as_str()),
        (200, Some("Group D"))
    );
}

#[test]
fn odata_cast_requires_advanced_query() {
    let (mut g, t) = setup();
    let cast = format!("{U}/groups/A/transitiveMembers/microsoft.graph.user?$select=id");
    let (status, body) = get(&mut g, &t, &cast);
    assert_eq!((status, code(&body)), (400, "Request_UnsupportedQuery"));
    let eventual = [("ConsistencyLevel", "eventual")];
    assert_eq!(get_with(&mut g, &t, &cast, &eventual).0, 400);
    let (status, body) = get_with(&mut g, &t, &format!("{cast}&$count=true&$top=2"), &eventual);
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users(id)"
    );
    assert_eq!(
        (ids(&body), body["@odata.count"].as_u64()),
        (vec!["u1".into(), "u2".into()], Some(3))
    );
    let (_, next) = get_with(
        &mut g,
        &t,
        body["@odata.nextLink"].as_str().unwrap(),
        &eventual,
    );
    assert_eq!(ids(&next), ["u3"]);
    assert!(next.get("@odata.count").is_none());
    let (status, body) = get(&mut g, &t, &format!("{U}/groups/A/members?$count=true"));
    assert_eq!(
        (status, message(&body)),
        (400, "$count is not currently supported.")
    );
}

#[test]
fn check_member_groups_is_transitive_and_limited() {
    let (mut g, t) = setup();
    let url = format!("{U}/users/u3/checkMemberGroups");
    let (status, body) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &json!({"groupIds": ["A", "D", "C"]}),
        now(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)", "value": ["A", "C"]})
    );
    let unknown_guid = "f448435d-3ca7-4073-8152-a1fd73c0fd09";
    assert_eq!(
        send_json(
            &mut g,
            &t,
            "POST",
            &url,
            &json!({"groupIds": [unknown_guid]}),
            now()
        )
        .1["value"],
        json!([])
    );
    let too_many: Vec<String> = (0..21)
        .map(|i| format!("f448435d-3ca7-4073-8152-a1fd73c0fd{i:02}"))
        .collect();
    for bad in [
        json!({"groupIds": []}),
        json!({"groupIds": too_many}),
        json!({"groupIds": ["not a guid"]}),
        json!({}),
        json!({"groupIds": ["A"], "x": 1}),
    ] {
        assert_eq!(
            send_json(&mut g, &t, "POST", &url, &bad, now()).0,
            400,
            "{bad}"
        );
    }
    let missing = format!("{U}/users/ghost/checkMemberGroups");
    assert_eq!(
        send_json(
            &mut g,
            &t,
            "POST",
            &missing,
            &json!({"groupIds": ["A"]}),
            now()
        )
        .0,
        404
    );
    assert_eq!(get(&mut g, &t, &url).0, 405);
    let groups = format!("{U}/users/User3@contoso.com/getMemberGroups");
    let (status, body) = send_json(
        &mut g,
        &t,
        "POST",
        &groups,
        &json!({"securityEnabledOnly": false}),
        now(),
    );
    assert_eq!(
        (status, body["value"].clone()),
        (200, json!(["A", "B", "C"]))
    );
    assert_eq!(
        send_json(&mut g, &t, "POST", &groups, &json!({}), now()).0,
        400
    );
}

#[test]
fn subscriptions_validate_and_detect_duplicates() {
    let (mut g, t) = setup();
    let url = format!("{U}/subscriptions");
    let (status, sub) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("users", "updated,deleted", 600),
        now(),
    );
    assert_eq!(status, 201, "{sub}");
    assert_eq!(
        sub["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity"
    );
    assert_eq!(
        (sub["applicationId"].as_str(), sub["clientState"].as_str()),
        (Some(CLIENT), Some("secret"))
    );
    assert_eq!(sub["expirationDateTime"], "2026-11-28T22:00:00.0000000Z");
    let id = sub["id"].as_str().unwrap();
    let (status, body) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("/users", "deleted,updated", 60),
        now(),
    );
    assert_eq!(status, 409);
    assert_eq!(
        message(&body),
        format!("Subscription Id {id} already exists for the requested combination")
    );
    let (status, body) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("groups", "created", 60),
        now(),
    );
    assert_eq!(
        (status, code(&body), message(&body)),
        (
            400,
            "InvalidRequest",
            "Invalid 'changeType' attribute: 'created'."
        )
    );
    let mut http = subscription_body("groups", "updated", 60);
    http["notificationUrl"] = json!("http://hooks.example/n");
    assert_eq!(send_json(&mut g, &t, "POST", &url, &http, now()).0, 400);
    assert_eq!(
        send_json(
            &mut g,
            &t,
            "POST",
            &url,
            &subscription_body("groups", "updated", 41_761),
            now()
        )
        .0,
        400
    );
    let mut long_state = subscription_body("groups", "updated", 60);
    long_state["clientState"] = json!("x".repeat(129));
    assert_eq!(
        send_json(&mut g, &t, "POST", &url, &long_state, now()).0,
        400
    );
    assert_eq!(
        send_json(
            &mut g,
            &t,
            "POST",
            &url,
            &subscription_body("me/messages", "updated", 60),
            now()
        )
        .0,
        400
    );
    let (status, short) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("groups", "updated", 5),
        now(),
    );
    assert_eq!(
        (status, short["expirationDateTime"].as_str()),
        (201, Some("2026-11-28T12:45:00.0000000Z"))
    );
    let listed = g.subscriptions(now());
    assert_eq!(listed.len(), 2);
    assert_eq!(g.subscription(id).unwrap()["clientState"], "secret");
}

#[test]
fn subscriptions_renew_delete_and_expire() {
    let (mut g, t) = setup();
    let url = format!("{U}/subscriptions");
    let (_, sub) = send_json(
        &mut g,
        &t,
        "POST",
        &url,
        &subscription_body("users", "updated", 60),
        now(),
    );
    let one = format!("{url}/{}", sub["id"].as_str().unwrap());
    let renew = json!({"expirationDateTime": (now() + Duration::days(2)).to_rfc3339()});
    let (status, body) = send_json(&mut g, &t, "PATCH", &one, &renew, now());
    assert_eq!(
        (status, body["expirationDateTime"].as_str()),
        (200, Some("2026-11-30T12:00:00.0000000Z"))
    );
    let too_far = json!({"expirationDateTime": (now() + Duration::days(30)).to_rfc3339()});
    assert_eq!(send_json(&mut g, &t, "PATCH", &one, &too_far, now()).0, 400);
    assert_eq!(
        send_json(&mut g, &t, "PATCH", &format!("{url}/nope"), &renew, now()).0,
        404
    );
    assert_eq!(get(&mut g, &t, &one).0, 200);
    assert_eq!(ids(&get(&mut g, &t, &url).1).len(), 1);
    // Past its expiry the subscription is gone: 404, not listed, no longer a duplicate.
    let later = now() + Duration::days(3);
    let t2 = token_at(&mut g, later);
    assert_eq!(send_json(&mut g, &t2, "PATCH", &one, &renew, later).0, 404);
    assert!(g.subscriptions(later).is_empty());
    let body = json!({"changeType": "updated", "resource": "users", "notificationUrl": "https://h.example/n",
        "expirationDateTime": (later + Duration::hours(1)).to_rfc3339()});
    let (status, fresh) = send_json(&mut g, &t2, "POST", &url, &body, later);
    assert_eq!(status, 201);
    let fresh_url = format!("{url}/{}", fresh["id"].as_str().unwrap());
    let auth = format!("Bearer {t2}");
    let delete = request("DELETE", &fresh_url, &[("Authorization", &auth)], "");
    assert_eq!(send(&mut g, &delete, later), (204, Value::Null));
    assert_eq!(send(&mut g, &delete, later).0, 404);
}

#[test]
fn unknown_paths_versions_and_writes_are_errors() {
    let (mut g, t) = setup();
    let (status, body) = get(&mut g, &t, &format!("{U}/bogus"));
    assert_eq!(
        (status, message(&body)),
        (400, "Resource not found for the segment 'bogus'.")
    );
    assert_eq!(get(&mut g, &t, &format!("{U}/users/u1/bogus")).0, 400);
    assert_eq!(
        get(&mut g, &t, "https://graph.microsoft.com/beta/users").0,
        400
    );
    assert_eq!(
        get(&mut g, &t, "https://graph.microsoft.com/v2.0/users").1["error"]["message"],
        "Invalid version: v2.0"
    );
    assert_eq!(get(&mut g, &t, &format!("{U}/groups/$count")).0, 400);
    assert_eq!(get(&mut g, &t, &format!("{U}/users/delta/x")).0, 400);
    let (status, body) = send_json(
        &mut g,
        &t,
        "PATCH",
        &format!("{U}/users/u1"),
        &json!({"accountEnabled": true}),
        now(),
    );
    assert_eq!((status, code(&body)), (403, "Authorization_RequestDenied"));
    assert_eq!(
        send_json(
            &mut g,
            &t,
            "PUT",
            &format!("{U}/subscriptions"),
            &json!({}),
            now()
        )
        .0,
        405
    );
}

#[test]
fn responses_are_deterministic() {
    let run = || {
        let (mut g, t) = setup();
        let a = get(&mut g, &t, &format!("{U}/users/ghost"));
        let b = send_json(
            &mut g,
            &t,
            "POST",
            &format!("{U}/subscriptions"),
            &subscription_body("users", "updated", 60),
            now(),
        );
        (t, a, b)
    };
    assert_eq!(run(), run());
}

#[test]
fn membership_mutations_validate_their_targets() {
    let (mut g, t) = setup();
    g.add_member("D", "u5").unwrap();
    g.add_member("D", "A").unwrap();
    assert!(g.add_member("D", "ghost").is_err());
    assert!(g.add_member("ghost", "u1").is_err());
    let (_, body) = get(
        &mut g,
        &t,
        &format!("{U}/groups/D/transitiveMembers?$select=id"),
    );
    assert_eq!(ids(&body), ["A", "B", "C", "u1", "u2", "u3", "u4", "u5"]);
    g.remove_member("D", "A").unwrap();
    assert!(g.remove_member("D", "A").is_err());
    assert_eq!(
        ids(&get(&mut g, &t, &format!("{U}/groups/D/members")).1),
        ["u4", "u5"]
    );
}

/// `entra.page_max`: Graph serves at most that many objects a page whatever `$top` asks, and
/// the nextLink (which keeps the `$top` asked) leads through the rest, each object once.
#[test]
fn page_max_caps_every_listing_page_and_the_next_links_cover_the_rest() {
    let mut spec = spec();
    spec.page_max = Some(2);
    let mut g = FakeGraph::new(&spec);
    let t = token(&mut g);
    for first in [
        format!("{U}/users?$select=id&$top=999"),
        format!("{U}/groups/A/transitiveMembers?$select=id&$top=999"),
        format!("{U}/groups?$select=id&$top=5"),
    ] {
        let mut url = Some(first.clone());
        let mut seen = Vec::new();
        while let Some(u) = url {
            let (status, body) = get(&mut g, &t, &u);
            assert_eq!(status, 200, "{u}");
            let page = ids(&body);
            assert!(page.len() <= 2, "{u}: {page:?}");
            seen.extend(page);
            url = body["@odata.nextLink"].as_str().map(str::to_string);
            if let Some(next) = &url {
                assert!(next.contains("top="), "{next}");
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{first}: {seen:?}");
        assert!(seen.len() > 2, "{first}: {seen:?}");
    }
}
