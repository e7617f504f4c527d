//! Live mode against `serve` (in-process, loopback only, bounded), the recording, and the
//! offline replay of the rebuilt scenario.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::common::*;
use host_test::fake_zenqms::ZenqmsUser;
use host_test::live::{self, Command, Options};
use host_test::scenario::Scenario;
use host_test::serve::{Bound, Server};
use serde_json::{Value, json};

/// A small world: a link by email, a create, a skip, a leaver, a nested mapped group.
fn world() -> Value {
    let mut incomplete = entra_user(4);
    incomplete["jobTitle"] = Value::Null;
    let groups = json!([
        {"id": gid(1), "displayName": "QA", "members": [uid(1), uid(2), gid(2)]},
        {"id": gid(2), "displayName": "QA nested", "members": [uid(5)]},
        {"id": gid(3), "displayName": "Unmapped", "members": [uid(3)]},
    ]);
    let zen = vec![
        zen_user("u-000001", "user1@contoso.com", None, &[]),
        zen_user("u-000002", "leaver@contoso.com", Some(&uid(99)), &["r-qa"]),
        zen_user("u-000003", "manual@contoso.com", None, &["r-doc"]),
    ];
    let users = vec![
        entra_user(1),
        entra_user(2),
        entra_user(3),
        incomplete,
        entra_user(5),
    ];
    let mut s = scenario(
        users,
        groups,
        zen,
        // Two mapped groups: the component reads them (and their members) by `$batch`, which
        // the recording's rebuild must take apart.
        json!([
            {"role": "r-qa", "groups": [gid(1)]},
            {"role": "r-doc", "groups": [gid(3)]},
        ]),
    );
    s["steps"] = json!([]);
    s
}

/// A serve instance on an ephemeral port, stopping by itself after two minutes at most.
struct Served {
    base: String,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<ZenqmsUser>>,
}

fn serve(s: &Value) -> Served {
    let scenario = Scenario::from_json(&s.to_string()).expect("valid scenario");
    let server = Server::bind(scenario, 0).expect("binding 127.0.0.1:0");
    let base = server.base_url().to_string();
    assert!(base.starts_with("http://127.0.0.1:"));
    let stop = Arc::new(AtomicBool::new(false));
    let bound = Bound {
        requests: Some(5_000),
        seconds: Some(120),
        stop: Some(stop.clone()),
    };
    let handle = std::thread::spawn(move || {
        let world = server.run(&bound, |_| {}).expect("serving");
        world.zenqms.users()
    });
    Served { base, stop, handle }
}

impl Served {
    fn finish(self) -> Vec<ZenqmsUser> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("serve thread")
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("host-test-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The live config file for the served world; `extra` is merged at the top level.
fn write_config(dir: &Path, served: &Served, extra: Value) -> PathBuf {
    let s = world();
    let mut config = s["instance"]["config"].clone();
    config["zenqms_base_url"] = json!(format!("{}/zenqms", served.base));
    let mut file = json!({
        "instance": {"id": s["instance"]["id"], "webhook_url": s["instance"]["webhook_url"], "config": config},
        "budget_ms": 20000,
    });
    for (k, v) in extra.as_object().unwrap() {
        file[k] = v.clone();
    }
    let path = dir.join("live.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

fn options(config: &Path, served: &Served, record: &Path) -> Options {
    let mut o = Options::new(config, Command::Deploy);
    o.graph_url = Some(format!("{}/graph", served.base));
    o.login_url = Some(format!("{}/login", served.base));
    o.record = Some(record.to_path_buf());
    o.concurrency = 4;
    o
}

/// `host-test run`'s options for the served world, the state kept in `dir`.
fn cli_args(config: &Path, dir: &Path, served: &Served) -> Vec<String> {
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--config".to_string(),
        arg(config),
        "--state".into(),
        arg(&dir.join("state.json")),
        "--graph-url".into(),
        format!("{}/graph", served.base),
        "--login-url".into(),
        format!("{}/login", served.base),
    ]
}

/// The fields both runs must agree on (ids of created users may differ).
fn comparable(users: &[ZenqmsUser]) -> Vec<Value> {
    let mut out: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut roles = u.roles.clone();
            roles.sort();
            json!([
                u.email,
                u.first_name,
                u.last_name,
                u.title,
                u.is_active,
                u.external_id,
                roles
            ])
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

/// No configured secret, issued token or Authorization value in any recorded file.
fn assert_no_secrets(dir: &Path) {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for needle in [SECRET, API_TOKEN, "Bearer ", "bearer ", "eyJ0eXAi"] {
            assert!(
                !text.contains(needle),
                "{} contains {needle:?}",
                path.display()
            );
        }
        files += 1;
    }
    assert!(files > 2, "nothing recorded in {}", dir.display());
}

#[test]
fn live_deploy_against_serve_records_a_scenario_that_replays_the_same() {
    let served = serve(&world());
    let dir = temp_dir("deploy");
    let config = write_config(&dir, &served, json!({}));
    let record = dir.join("rec");
    let mut o = options(&config, &served, &record);
    o.state = Some(dir.join("state.json"));
    let rec = live::execute(&o).expect("live deploy runs");
    assert!(rec.ok, "live deploy failed: {:?}", rec.error);
    assert!(dir.join("state.json").exists(), "state kept in the file");

    // A webhook (Graph's handshake) and a tick, through the CLI's parser, recorded alongside.
    let request = dir.join("handshake.json");
    let handshake = r#"{"method": "POST", "query": "validationToken=hello%20there"}"#;
    std::fs::write(&request, handshake).unwrap();
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    let args = |command: &[String]| -> Vec<String> {
        let mut a = cli_args(&config, &dir, &served);
        a.extend(["--record".to_string(), arg(&record)]);
        a.extend_from_slice(command);
        a
    };
    let event = live::parse_args(&args(&["event".into(), arg(&request)])).unwrap();
    let rec = live::execute(&event).expect("live event runs");
    let response = rec.response.expect("a webhook response");
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "hello there")
    );
    let schedule = live::run_args(&args(&["schedule".into()])).unwrap();
    assert!(live::cli(&schedule).expect("live schedule runs"));
    let live_users = served.finish();

    // The live run did the work: link, create, leaver deactivated, nested group's role.
    let by_email = |e: &str| live_users.iter().find(|u| u.email == e).unwrap();
    assert_eq!(by_email("user1@contoso.com").external_id, Some(uid(1)));
    assert!(!by_email("leaver@contoso.com").is_active);
    assert_eq!(
        by_email("user5@contoso.com").roles,
        vec!["r-qa".to_string()]
    );
    assert!(!live_users.iter().any(|u| u.email == "user4@contoso.com"));
    assert_eq!(
        by_email("manual@contoso.com").roles,
        vec!["r-doc".to_string()]
    );

    assert_no_secrets(&record);
    let scenario = Scenario::load(&record.join("scenario.json")).expect("rebuilt scenario");
    assert_eq!(scenario.entra.users.len(), 5);
    let groups: Vec<(&str, usize)> = scenario
        .entra
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.members.len()))
        .collect();
    assert_eq!(
        groups,
        vec![(gid(1).as_str(), 3), (gid(3).as_str(), 1)],
        "flattened, as Graph showed it (read by `$batch`)"
    );
    let kinds: Vec<&str> = scenario.steps.iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        ["deploy", "advance", "webhook", "advance", "schedule"]
    );
    // The ZenQMS users the run read: user1 (by address) and the leaver (the linked users'
    // walk); manual@ (not in Entra, not linked) was never read and plays no part.
    assert_eq!(scenario.zenqms.users.len(), 2);
    // Every user but the one never read (manual@).
    assert_eq!(
        scenario.expect.zenqms_user_count,
        Some(live_users.len() - 1)
    );
    let report = checked(host_test::runner::run(scenario));
    assert_ok(&report);
    assert!(report.expect.ok, "{:?}", report.expect.failures);
    // The replay ends where the live run did, for every user the run read or wrote.
    let read: Vec<_> = live_users
        .iter()
        .filter(|u| u.email != "manual@contoso.com")
        .cloned()
        .collect();
    assert_eq!(comparable(&report.zenqms.users), comparable(&read));
}

#[test]
fn a_zenqms_url_the_platform_does_not_allow_is_denied() {
    let served = serve(&world());
    let dir = temp_dir("denied");
    let config = write_config(
        &dir,
        &served,
        json!({"allowed_zenqms_base_url": "https://acme.zenqms.com"}),
    );
    let record = dir.join("rec");
    let rec = live::execute(&options(&config, &served, &record)).expect("live deploy runs");
    let users = served.finish();
    assert!(!rec.ok);
    let error = rec.error.unwrap_or_default();
    assert!(error.contains("denied"), "{error}");
    assert!(error.contains("(not retryable)"), "{error}");
    let denied = std::fs::read_dir(&record)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with("-denied.json")
        })
        .count();
    assert!(denied >= 1, "the denied request is recorded");
    assert_no_secrets(&record);
    assert_eq!(users.len(), 3, "ZenQMS untouched");
    assert!(
        users
            .iter()
            .all(|u| u.external_id.is_none() || u.id == "u-000002")
    );
}

#[test]
fn serve_answers_plain_http_clients() {
    let served = serve(&world());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        SECRET.replace('~', "%7E")
    );
    let mut token = agent
        .post(format!("{}/login/{TENANT}/oauth2/v2.0/token", served.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form.as_bytes())
        .unwrap();
    assert_eq!(token.status().as_u16(), 200);
    let token: Value = serde_json::from_slice(&token.body_mut().read_to_vec().unwrap()).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let mut users = agent
        .get(format!("{}/graph/v1.0/users?$select=id,mail", served.base))
        .header("authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(users.status().as_u16(), 200);
    let users: Value = serde_json::from_slice(&users.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(users["value"].as_array().unwrap().len(), 5);
    let roles = agent
        .get(format!("{}/zenqms/v2/roles", served.base))
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(roles.status().as_u16(), 200);
    let nowhere = agent
        .get(format!("{}/elsewhere", served.base))
        .call()
        .unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);
    served.finish();
}

/// The platform side of WIT 0.2.0 over real HTTP: while a serialized call holds the
/// instance (as a long resume does), two webhooks are answered at once and their items wait in
/// the inbox file; the next serialized call takes both in and does their work. Neither is lost
/// nor waits behind the call.
#[test]
fn webhooks_during_a_long_call_are_answered_at_once_and_taken_in_by_the_next() {
    let served = serve(&world());
    let dir = temp_dir("inbox");
    let config = write_config(&dir, &served, json!({}));
    let mut o = options(&config, &served, &dir.join("rec"));
    o.record = None;
    o.state = Some(dir.join("state.json"));
    let rec = live::execute(&o).expect("live deploy runs");
    assert!(rec.ok, "{:?}", rec.error);

    // A manual ZenQMS edit the notifications will undo (Entra is the source of truth).
    let zenqms = format!("{}/zenqms", served.base);
    let agent = ureq::Agent::new_with_defaults();
    let search = json!({"filter": {"external_id": uid(1)}, "page": 1, "per_page": 1});
    let text = agent
        .post(&format!("{zenqms}/v2/users/search"))
        .header("authorization", &format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json")
        .send(search.to_string())
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let found: Value = serde_json::from_str(&text).unwrap();
    let id = found["data"][0]["id"].as_str().unwrap().to_string();
    agent
        .patch(&format!("{zenqms}/v2/users/{id}"))
        .header("authorization", &format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json")
        .send(json!({"title": "Edited by hand"}).to_string())
        .unwrap();

    // The users subscription as the state holds it: the notifications Graph would send.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let sub = state["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["resource"] == "users")
        .unwrap()
        .clone();
    let tenant = world()["entra"]["tenant_id"].clone();
    let notification = |user: String| {
        let body = json!({"value": [{
            "subscriptionId": sub["id"], "clientState": sub["client_state"],
            "changeType": "updated", "resource": format!("Users/{user}"), "tenantId": tenant,
        }]});
        let raw = json!({"method": "POST", "body": body});
        let spec = serde_json::from_value(raw.clone()).unwrap();
        let mut e = o.clone();
        e.command = Command::Event(spec, raw);
        e
    };

    // A long serialized call holds the instance...
    let store = live::store::Store::new(dir.join("state.json"));
    let held = store.serialize().unwrap();
    let started = std::time::Instant::now();
    let webhooks: Vec<_> = [uid(1), uid(2)]
        .into_iter()
        .map(|u| {
            let e = notification(u);
            std::thread::spawn(move || live::execute(&e).expect("webhook runs"))
        })
        .collect();
    let replies: Vec<_> = webhooks.into_iter().map(|h| h.join().unwrap()).collect();
    // ...and both webhooks were answered without waiting for it.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    for r in &replies {
        assert_eq!(r.response.as_ref().map(|r| r.status), Some(202), "{r:?}");
        assert_eq!(r.calls, 1, "the webhook alone: the instance is busy");
    }
    assert_eq!(store.inbox().unwrap().len(), 2, "both wait in the inbox");
    drop(held);

    // The next serialized call takes both in and does their work.
    let mut resume = o.clone();
    resume.command = Command::Resume;
    let rec = live::execute(&resume).expect("resume runs");
    assert!(rec.ok, "{:?}", rec.error);
    assert!(store.inbox().unwrap().is_empty(), "both taken");
    let users = served.finish();
    let user1 = users.iter().find(|u| u.id == id).unwrap();
    assert_ne!(
        user1.title, "Edited by hand",
        "the notification's work was done"
    );
}

#[test]
fn live_admin_actions_through_the_cli_print_their_result() {
    let served = serve(&world());
    let dir = temp_dir("actions");
    let config = write_config(&dir, &served, json!({}));
    let args = |command: &[&str]| -> Vec<String> {
        let mut a = cli_args(&config, &dir, &served);
        a.extend(command.iter().map(|s| s.to_string()));
        a
    };
    let test = live::parse_args(&args(&["action", "test-connection"])).unwrap();
    let rec = live::execute(&test).expect("live action runs");
    assert!(rec.ok, "{:?}", rec.error);
    let result = rec.result.expect("an action result");
    assert_eq!(result["action"], "test-connection");
    assert_eq!(result["ok"], true, "{result:#}");
    let roles = live::parse_args(&args(&["action", "list-roles"])).unwrap();
    let rec = live::execute(&roles).expect("live action runs");
    let ids: Vec<&str> = rec.result.as_ref().unwrap()["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"r-qa"), "{ids:?}");
    // The CLI prints it and exits 0; an unknown action fails it.
    assert!(live::cli(&live::run_args(&args(&["action", "list-groups", "qa"])).unwrap()).unwrap());
    assert!(!live::cli(&live::run_args(&args(&["action", "nope"])).unwrap()).unwrap());
    let users = served.finish();
    let seed = world()["zenqms"]["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), seed.len(), "actions created nobody");
    for z in seed {
        let u = users.iter().find(|u| u.email == z["email"]).unwrap();
        assert_eq!(
            json!(u.external_id),
            z["external_id"],
            "actions linked nobody"
        );
        assert_eq!(
            json!(u.is_active),
            z.get("is_active").cloned().unwrap_or(json!(true))
        );
    }
}
