//! URLs through wasmtime (issue 11, sections 4 and 6): plain http only to loopback, every link
//! Graph hands out checked when it arrives, the ZenQMS token only to ZenQMS's documented hosts
//! unless an override says otherwise (and then with a warning).

use crate::common::*;
use host_test::runner::Runner;
use host_test::runtime::Runtime;
use host_test::scenario::{Scenario, Step};
use serde_json::{Value, json};

fn runner(s: &Value) -> Runner {
    Runner::new(
        Runtime::shared(),
        Scenario::from_json(&s.to_string()).unwrap(),
    )
}

fn step(v: Value) -> Step {
    serde_json::from_value(v).unwrap()
}

/// `zenqms_base_url` values that must never receive the API token over plain http: public
/// names that merely start or end like loopback, user info, other spellings of an address.
const NOT_LOOPBACK: &[&str] = &[
    // shared/cases/loopback-bypass.json
    "http://127.attacker.example",
    "http://127.0.0.1.nip.io",
    "http://localhost.evil.example",
    "http://localhost@evil.example",
    "http://127.0.0.1@evil.example",
    "http://localhost:8080@evil.example",
    "http://evil.example@localhost",
    "http://0x7f.1",
    "http://127.1",
    "http://2130706433",
    "http://0177.0.0.1",
    "http://loc%61lhost",
    "http://127.0.0.1%2eevil.example",
    "http://localhost.",
    "http://[::ffff:127.0.0.1]",
    "http://127.0.0.1\\@evil.example",
    "http:localhost",
    "http://127.0.0.1 .evil.example",
];

/// The shared `loopback-bypass` case, and the rest of its kind: refused before anything is
/// sent, the error naming the key and never echoing the value.
#[test]
fn plain_http_to_anything_but_loopback_is_refused_before_anything_is_sent() {
    for bad in NOT_LOOPBACK {
        let mut s = scenario(
            (0..30).map(entra_user).collect(),
            json!([]),
            vec![],
            json!([]),
        );
        s["instance"]["config"]["zenqms_base_url"] = json!(bad);
        let r = run(s);
        let err = r.steps[0].error.clone().unwrap_or_default();
        assert!(err.contains("'zenqms_base_url'"), "{bad}: {err}");
        assert!(
            !err.contains("evil") && !err.contains("attacker") && !err.contains(bad),
            "{bad}: the error echoes the value: {err}"
        );
        assert_eq!(r.http.requests, 0, "{bad}: nothing may be sent");
        assert!(r.zenqms.users.is_empty());
    }
}

#[test]
fn loopback_test_servers_still_work_over_http() {
    // The simulator's ZenQMS answers at whatever base the scenario configures.
    for base in [
        "http://127.0.0.1:8088",
        "http://localhost:9000/api",
        "http://[::1]:8080",
    ] {
        let mut s = scenario(
            (0..3).map(entra_user).collect(),
            json!([]),
            vec![],
            json!([]),
        );
        s["instance"]["config"]["zenqms_base_url"] = json!(base);
        let r = run(s);
        assert_ok(&r);
        assert_eq!(r.zenqms.users.len(), 3, "{base}");
    }
}

/// Links a hostile or broken Graph might hand out, with what the error must name.
const HOSTILE_LINKS: &[(&str, &str)] = &[
    (
        "https://graph.microsoft.com/v1.0/users?$skiptoken=x\r\nHost: evil.example",
        "U+000D",
    ),
    (
        "https://graph.microsoft.com/v1.0/users?$skiptoken=x y",
        "U+0020",
    ),
    (
        "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{202e}x",
        "U+202E",
    ),
    (
        "https://evil.example/v1.0/users?$skiptoken=x",
        "https://evil.example",
    ),
    (
        "http://graph.microsoft.com/v1.0/users?$skiptoken=x",
        "http://graph.microsoft.com",
    ),
    (
        "https://graph.microsoft.com@evil.example/v1.0/users",
        "user info",
    ),
    (
        "https://graph.microsoft.com/beta/users?$skiptoken=x",
        "/v1.0/",
    ),
    (
        "https://graph.microsoft.com/v1.0/groups?$skiptoken=x",
        "/v1.0/users",
    ),
];

/// A hostile `@odata.nextLink` on the user listing fails the deploy at once, clearly and not
/// retryably, before anything is sent to it (it used to be followed, fail in the HTTP client
/// and be retried as transient for ever).
#[test]
fn a_hostile_next_link_fails_the_read_not_retryable() {
    for (link, named) in HOSTILE_LINKS {
        let s = scenario(
            (1..=150).map(entra_user).collect(),
            json!([]),
            vec![],
            json!([]),
        );
        let mut r = runner(&s);
        let rec = r.run_step(
            0,
            &step(json!({"entra": {"serve_links": {"next_link": link}}})),
        );
        assert!(rec.ok);
        let rec = r.run_step(1, &step(json!({"deploy": {}})));
        let err = rec.error.clone().unwrap_or_default();
        assert!(err.contains("@odata.nextLink"), "{link:?}: {err}");
        assert!(err.contains(named), "{link:?}: {named} not in {err}");
        assert!(err.contains("not retryable"), "{link:?}: {err}");
        assert!(
            !err.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{link:?}: raw characters in {err:?}"
        );
        // The call that reads the page fails (a deploy checkpoints once before the pages).
        assert!(rec.calls <= 2, "{link:?}: {} calls", rec.calls);
        let report = finish(r, vec![rec]);
        assert_eq!(report.http.by_target[&host_test::world::Target::Denied], 0);
        // The first page may be written (it was fine); nothing after the refused link is.
        assert!(report.zenqms.users.len() <= 100, "{link:?}");
    }
}

/// A hostile `@odata.deltaLink` is refused when Graph hands it out at deploy (delta tracking
/// starts there) and is never stored.
#[test]
fn a_hostile_delta_link_at_deploy_is_refused_and_never_stored() {
    for (link, named) in [
        (
            "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x\nX: y",
            "U+000A",
        ),
        (
            "https://graph.microsoft.com.evil.example/v1.0/users/delta?$deltatoken=x",
            "https://graph.microsoft.com.evil.example",
        ),
        (
            "https://graph.microsoft.com/v1.0/me/delta?$deltatoken=x",
            "/v1.0/users/delta",
        ),
    ] {
        let s = scenario(
            (1..=5).map(entra_user).collect(),
            json!([]),
            vec![],
            json!([]),
        );
        let mut r = runner(&s);
        r.run_step(
            0,
            &step(json!({"entra": {"serve_links": {"delta_link": link}}})),
        );
        let rec = r.run_step(1, &step(json!({"deploy": {}})));
        let err = rec.error.clone().unwrap_or_default();
        assert!(err.contains("@odata.deltaLink"), "{link:?}: {err}");
        assert!(err.contains(named), "{link:?}: {named} not in {err}");
        assert!(err.contains("not retryable"), "{link:?}: {err}");
        for state in &r.state_history {
            assert!(
                !state.contains("evil") && !state.contains("deltatoken=x"),
                "{link:?} stored: {state}"
            );
        }
    }
}

/// The same in the hourly delta round: the round fails clearly and the stored links stay the
/// good ones from before.
#[test]
fn a_hostile_delta_link_in_the_delta_round_is_refused_and_the_old_link_kept() {
    let s = scenario(
        (1..=5).map(entra_user).collect(),
        json!([]),
        vec![],
        json!([]),
    );
    let mut r = runner(&s);
    assert!(r.run_step(0, &step(json!({"deploy": {}}))).ok);
    let before = r.state.clone().unwrap();
    let link = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=\u{0}evil";
    r.run_step(
        1,
        &step(json!({"entra": {"serve_links": {"delta_link": link}}})),
    );
    r.run_step(2, &step(json!({"advance": {"to": "2026-11-28T13:00:00Z"}})));
    let rec = r.run_step(3, &step(json!({"schedule": {}})));
    let err = rec.error.clone().unwrap_or_default();
    assert!(
        err.contains("@odata.deltaLink") && err.contains("U+0000"),
        "{err}"
    );
    assert!(err.contains("not retryable"), "{err}");
    let after = r.state.clone().unwrap();
    assert!(!after.contains("evil"), "{after}");
    let delta = |s: &str| serde_json::from_str::<Value>(s).unwrap()["delta"].clone();
    assert_eq!(delta(&after), delta(&before));
}

/// Without an override the token goes to the environment's documented host (the simulator's
/// ZenQMS answers there); `sandbox` picks the sandbox.
#[test]
fn zenqms_environment_picks_the_documented_host() {
    for (env, host) in [
        (None, "https://public-api.zenqms.com"),
        (Some("production"), "https://public-api.zenqms.com"),
        (Some("sandbox"), "https://public-api-sandbox.zenqms.com"),
    ] {
        let mut s = scenario(
            (0..3).map(entra_user).collect(),
            json!([]),
            vec![],
            json!([]),
        );
        let config = s["instance"]["config"].as_object_mut().unwrap();
        config.remove("zenqms_base_url");
        if let Some(env) = env {
            config.insert("zenqms_environment".into(), json!(env));
        }
        let r = run(s);
        assert_ok(&r);
        assert_eq!(r.zenqms.users.len(), 3, "{env:?} -> {host}");
        assert!(
            !log_text(&r).contains("undocumented"),
            "{env:?}: {}",
            log_text(&r)
        );
    }
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["zenqms_environment"] = json!("staging");
    let r = run(s);
    let err = r.steps[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("'zenqms_environment'")
            && err.contains("production")
            && err.contains("sandbox")
            && !err.contains("staging"),
        "{err}"
    );
    assert_eq!(r.http.requests, 0);
}

/// An override to a host that is neither documented nor loopback works (test servers) but the
/// deploy says where the token goes.
#[test]
fn an_undocumented_override_is_logged_with_its_host() {
    let s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    let r = run(s);
    assert_ok(&r);
    let log = log_text(&r);
    assert!(
        log.lines()
            .any(|l| l.starts_with("warn") && l.contains("acme.zenqms.com")),
        "{log}"
    );
    // A documented host on another port is another origin, and the warning names the port
    // the token goes to (a red team: it named the host alone, "public-api.zenqms.com, an
    // undocumented host").
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["zenqms_base_url"] = json!("https://public-api.zenqms.com:8443");
    let r = run_unchecked(s);
    let log = log_text(&r);
    assert!(
        log.lines().any(|l| l.starts_with("warn")
            && l.contains("zenqms_base_url")
            && l.contains("https://public-api.zenqms.com:8443")),
        "{log}"
    );
    for quiet in [
        "https://public-api-sandbox.zenqms.com/",
        "http://127.0.0.1:8088",
    ] {
        let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
        s["instance"]["config"]["zenqms_base_url"] = json!(quiet);
        let r = run(s);
        assert_ok(&r);
        assert!(
            !log_text(&r).contains("zenqms_base_url"),
            "{quiet}: {}",
            log_text(&r)
        );
    }
}
