//! Property-based fuzzing (proptest, on stable) of the component's input parsers and planner,
//! run natively against its library: the webhook handler, the config parser, the state parser
//! and the planner. `cargo test` runs each target briefly; `host-test fuzz --runs N` runs them
//! for as long as you like (a million executions each takes minutes in release).
//!
//! Planner invariants checked: it never targets a ZenQMS user that is neither linked to the Entra
//! user nor an unlinked email match; it never creates a user whose email ZenQMS already has;
//! applying a plan and planning again writes nothing; the role plan never touches an unmapped
//! role or an unlinked user. There is no delete action to plan at all.

use std::cell::RefCell;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entra_zenqms::clients::zenqms::api::ZUser;
use entra_zenqms::config::{self, RoleMapping};
use entra_zenqms::domain::entra::{EntraUser, normalize_email};
use entra_zenqms::domain::plan::{self, Action, Directory, link_of};
use entra_zenqms::domain::roles::{self, Memberships};
use entra_zenqms::handlers::{self, Event, Instance};
use entra_zenqms::platform::{HttpError, HttpResult, Level, Method, Platform, Request};
use entra_zenqms::state::{State, Subscription};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A platform with no network: every request is denied. Logs are kept for inspection.
#[derive(Default)]
pub struct Offline {
    pub logs: RefCell<Vec<String>>,
}

impl Platform for Offline {
    fn send(&self, _: Request) -> HttpResult {
        Err(HttpError::Denied("offline".into()))
    }
    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        reqs.into_iter().map(|r| self.send(r)).collect()
    }
    fn log(&self, _: Level, message: &str, _: &[(&str, &str)]) {
        self.logs.borrow_mut().push(message.to_string());
    }
    fn now(&self) -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().expect("constant")
    }
    fn elapsed_ms(&self) -> u64 {
        0
    }
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        vec![42; n]
    }
    fn wait(&self, _: u32) {}
}

const TENANT: &str = "8c3f3c1e-5d7a-4e38-9b76-2f0a4c1d9e11";
const SUB: &str = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07";

fn instance(state: Option<String>) -> Instance {
    let config = [
        ("entra_tenant_id", TENANT),
        ("entra_client_id", TENANT),
        ("entra_client_secret", "s"),
        ("zenqms_base_url", "https://acme.zenqms.com"),
        ("zenqms_api_token", "t"),
    ];
    Instance {
        id: "i".into(),
        webhook_url: "https://hooks.example/i".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state,
        budget_ms: 20_000,
        inbox: Vec::new(),
    }
}

fn deployed_state() -> String {
    let mut s = State::parse(None).expect("fresh");
    s.tenant_id = Some(TENANT.into());
    s.subscriptions.push(Subscription {
        id: SUB.into(),
        resource: "users".into(),
        client_state: "c".repeat(64),
        expires_at: "2026-12-20T00:00:00Z".parse().expect("constant"),
    });
    s.to_json()
}

/// JSON-ish bodies: near-valid notification collections as well as noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let text = "[ -~]{0,40}";
    let item = (
        prop_oneof![Just(SUB.to_string()), text.prop_map(String::from)],
        prop_oneof![Just("c".repeat(64)), text.prop_map(String::from)],
        prop_oneof![Just(TENANT.to_string()), text.prop_map(String::from)],
        prop_oneof![
            Just("Users/x".to_string()),
            Just("Groups/y".to_string()),
            text.prop_map(String::from)
        ],
        proptest::option::of(prop_oneof![Just("reauthorizationRequired".to_string()), text.prop_map(String::from)]),
    )
        .prop_map(|(sub, cs, tenant, resource, life)| {
            let mut v = serde_json::json!({"subscriptionId": sub, "clientState": cs, "tenantId": tenant,
                "changeType": "updated", "resource": resource});
            if let Some(l) = life {
                v["lifecycleEvent"] = serde_json::json!(l);
            }
            v
        });
    prop_oneof![
        proptest::collection::vec(item, 0..4).prop_map(|items| {
            serde_json::json!({ "value": items })
                .to_string()
                .into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..300),
        "[{}\\[\\]\",:a-z0-9 ]{0,200}".prop_map(String::into_bytes),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "validationToken=[ -~]{0,60}".prop_map(String::from),
        "[ -~]{0,80}".prop_map(String::from),
        Just(format!("validationToken={}", "a".repeat(1100))),
    ]
}

/// Webhook requests never panic; each gets a response with a sensible status.
pub fn webhook(runner: &mut TestRunner) -> Result<(), String> {
    let state = deployed_state();
    let methods = prop_oneof![Just(Method::Post), Just(Method::Get), Just(Method::Put)];
    runner
        .run(&(body(), query(), methods), |(body, query, method)| {
            let url = if query.is_empty() {
                "https://hooks.example/i".to_string()
            } else {
                format!("https://hooks.example/i?{query}")
            };
            let req = Request {
                method,
                url,
                headers: vec![],
                body,
            };
            let p = Offline::default();
            match handlers::event(&p, &instance(Some(state.clone())), &Event::Webhook(req)) {
                Ok(o) => {
                    let status = o.response.map_or(0, |r| r.status);
                    prop_assert!(matches!(status, 200 | 202 | 400 | 405), "status {status}");
                }
                // Accepted work needs the network, which this platform denies: that is the only
                // way such a call may fail.
                Err(f) => prop_assert!(f.message.contains("offline"), "{}", f.message),
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
}

fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(TENANT.to_string()),
        Just("https://acme.zenqms.com/".to_string()),
        Just(format!("[{{\"role\":\"r\",\"groups\":[\"{TENANT}\"]}}]")),
        "[ -~]{0,40}".prop_map(String::from),
        "\\[\\{\"role\":\"[a-z]{0,3}\",\"groups\":\\[\"[0-9a-f-]{0,40}\"\\]\\}\\]"
            .prop_map(String::from),
        "(http|https|ftp)://[a-z.@:0-9/?#]{0,30}".prop_map(String::from),
    ]
}

/// The config parser never panics; what it accepts is well-formed.
pub fn config(runner: &mut TestRunner) -> Result<(), String> {
    let key = prop_oneof![
        proptest::sample::select(config::key_names()).prop_map(String::from),
        "[a-z_]{0,12}".prop_map(String::from),
    ];
    runner
        .run(
            &proptest::collection::vec((key, config_value()), 0..9),
            |pairs| {
                if let Ok(c) = config::parse(&pairs) {
                    prop_assert!(config::is_guid(&c.tenant_id) && config::is_guid(&c.client_id));
                    prop_assert!(plain_http_only_to_loopback(&c.zenqms_base_url));
                    prop_assert!(
                        c.role_mappings
                            .iter()
                            .all(|m| m.groups.iter().all(|g| config::is_guid(g)))
                    );
                    prop_assert!(
                        !format!("{c:?}").contains("Secret(\""),
                        "secrets are redacted in Debug"
                    );
                }
                Ok(())
            },
        )
        .map_err(|e| e.to_string())
}

/// The state parser never panics on stored text.
pub fn state(runner: &mut TestRunner) -> Result<(), String> {
    let good = deployed_state();
    let text = prop_oneof![
        "[ -~]{0,200}".prop_map(String::from),
        (0..good.len()).prop_map(move |cut| good[..cut].to_string()),
    ];
    runner
        .run(&text, |t| {
            let _ = State::parse(Some(&t));
            Ok(())
        })
        .map_err(|e| e.to_string())
}

const IDS: [&str; 4] = [
    "aaaaaaaa-0000-0000-0000-000000000001",
    "aaaaaaaa-0000-0000-0000-000000000002",
    "aaaaaaaa-0000-0000-0000-000000000003",
    "aaaaaaaa-0000-0000-0000-000000000004",
];
/// With look-alikes (U+212A KELVIN SIGN, Cyrillic а, a zero-width space) and an address in a
/// domain the tenant has not verified (y.com).
const EMAILS: [&str; 8] = [
    "a@x.com",
    " A@X.com",
    "b@x.com",
    "c@x.com",
    "\u{212A}@x.com",
    "\u{430}@x.com",
    "a\u{200B}@x.com",
    "a@y.com",
];

fn small_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("Ada".to_string()),
        Just("  ".to_string()),
        Just("QA".to_string())
    ])
}

fn entra_user() -> impl Strategy<Value = EntraUser> {
    (
        proptest::sample::select(IDS.to_vec()),
        proptest::option::of(proptest::sample::select(EMAILS.to_vec())),
        small_text(),
        small_text(),
        small_text(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(id, mail, g, s, t, enabled)| EntraUser {
            id: id.to_string(),
            upn: format!("{id}@x"),
            mail: mail.map(str::to_string),
            given_name: g,
            surname: s,
            job_title: t,
            account_enabled: enabled,
            user_type: None,
            in_scope: true,
        })
}

/// The trust Graph would give the batch: x.com verified, each address held by the batch users
/// whose mail it is.
fn batch_trust(users: &[EntraUser]) -> plan::Trust {
    let mut t = plan::Trust::default();
    t.domains.learned.insert("x.com".into());
    for u in users {
        if let Some(a) = u.match_address() {
            t.holders
                .entry(a.as_str().to_string())
                .or_default()
                .insert(u.id.clone());
        }
    }
    t
}

fn zen_user() -> impl Strategy<Value = (String, Option<String>, bool, Vec<String>)> {
    (
        proptest::sample::select(EMAILS.to_vec()).prop_map(str::to_string),
        proptest::option::of(prop_oneof![
            proptest::sample::select(IDS.to_vec()).prop_map(str::to_string),
            Just("legacy-42".to_string())
        ]),
        any::<bool>(),
        proptest::sample::subsequence(
            vec![
                "r-qa".to_string(),
                "r-doc".to_string(),
                "r-admin".to_string(),
            ],
            0..3,
        ),
    )
}

/// ZenQMS as ZenQMS keeps it: unique emails (case-insensitive), unique external ids.
fn directory(raw: Vec<(String, Option<String>, bool, Vec<String>)>) -> Directory {
    let mut emails = BTreeSet::new();
    let mut links = BTreeSet::new();
    let users = raw
        .into_iter()
        .enumerate()
        .filter_map(|(i, (email, ext, active, roles))| {
            if !emails.insert(normalize_email(&email)) {
                return None;
            }
            let ext = ext.filter(|e| links.insert(e.clone()));
            Some(ZUser {
                id: format!("u-{i}"),
                email,
                first_name: "Ada".into(),
                last_name: "QA".into(),
                title: "QA".into(),
                is_active: active,
                external_id: ext,
                roles,
            })
        });
    Directory::new(users.collect::<Vec<_>>())
}

fn check_plan(users: &[EntraUser], dir: &Directory) -> Result<(), TestCaseError> {
    let mut scratch = dir.clone();
    let trust = batch_trust(users);
    let plans = plan::plan_batch(users, &mut scratch, &trust);
    prop_assert_eq!(scratch.len(), dir.len(), "planning restores the directory");
    let mut after = dir.clone();
    // First the batch, then the plans it must be written before (`after_batch`), each checked
    // against the directory as it stands when it is written.
    for stage in [false, true] {
        let base = after.clone();
        for (p, u) in plans
            .iter()
            .zip(users)
            .filter(|(p, _)| p.after_batch == stage)
        {
            match &p.action {
                Action::Write {
                    zenqms_id, changes, ..
                } => {
                    let z = base
                        .get(zenqms_id)
                        .ok_or_else(|| TestCaseError::fail("write to unknown user"))?;
                    let linked_here = link_of(z).as_deref() == Some(u.id.as_str());
                    let address = u.match_address();
                    let email_match = z.external_id.is_none()
                        && address.as_ref().map(|a| a.as_str())
                            == Some(normalize_email(&z.email).as_str());
                    prop_assert!(
                        linked_here || email_match,
                        "touched an unrelated user {z:?} for {u:?}"
                    );
                    if !linked_here {
                        // A link: complete, verified domain, the only holder of the address.
                        let a = address.expect("matched by address");
                        prop_assert!(u.mapped().is_some(), "incomplete user linked: {u:?}");
                        prop_assert_eq!(a.domain(), "x.com");
                        prop_assert_eq!(trust.holders[a.as_str()].len(), 1);
                    }
                    prop_assert!(!changes.iter().any(|c| c.field == "roles"));
                    let current = after.get(zenqms_id).cloned().unwrap_or_else(|| z.clone());
                    after.upsert(plan::apply_changes(&current, changes));
                }
                Action::Create(new) => {
                    prop_assert!(
                        base.by_email(&new.email).is_empty(),
                        "create of an existing email"
                    );
                    prop_assert!(new.email.bytes().all(|b| b.is_ascii_graphic()));
                    prop_assert!(
                        base.by_external_id(&u.id).is_none(),
                        "create of a linked user"
                    );
                    after.upsert(plan::expected_user(&format!("new-{}", p.entra_id), new));
                }
                _ => {}
            }
        }
    }
    // Applying the plan and planning again writes nothing.
    for p in plan::plan_batch(users, &mut after, &trust) {
        prop_assert!(
            !matches!(p.action, Action::Create(_) | Action::Write { .. }),
            "second pass still writes: {:?}",
            p.action
        );
    }
    Ok(())
}

/// Planner invariants over random users and directories with colliding ids and emails.
pub fn planner(runner: &mut TestRunner) -> Result<(), String> {
    let input = (
        proptest::collection::vec(entra_user(), 0..6),
        proptest::collection::vec(zen_user(), 0..6),
        proptest::collection::vec(proptest::sample::subsequence(IDS.to_vec(), 0..4), 2),
    );
    runner
        .run(&input, |(mut users, raw, groups)| {
            // One Graph page never lists the same object twice.
            let mut seen = BTreeSet::new();
            users.retain(|u| seen.insert(u.id.clone()));
            let dir = directory(raw);
            check_plan(&users, &dir)?;
            // Roles: only mapped roles of linked users change.
            let mappings = vec![
                RoleMapping {
                    role: "r-qa".into(),
                    groups: vec!["g1".into()],
                },
                RoleMapping {
                    role: "r-doc".into(),
                    groups: vec!["g1".into(), "g2".into()],
                },
            ];
            let members: Memberships = [("g1", &groups[0]), ("g2", &groups[1])]
                .into_iter()
                .map(|(g, m)| (g.to_string(), m.iter().map(|s| s.to_string()).collect()))
                .collect();
            for c in roles::plan_roles(&mappings, &members, &dir) {
                let z = dir.get(&c.zenqms_id).expect("planned for a known user");
                prop_assert!(link_of(z).is_some(), "role change for an unlinked user");
                for r in c.add.iter().chain(&c.remove) {
                    prop_assert!(r == "r-qa" || r == "r-doc", "unmapped role {r} touched");
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
}

/// Text that stresses a log escaper: any Unicode, and mixes of the characters it must escape
/// with ASCII and with characters it must keep.
fn hostile_text() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        any::<char>(),
        proptest::char::range('\u{0}', '\u{a0}'),
        proptest::sample::select(vec![
            '\u{61c}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{e0041}',
            '\\',
            '…',
            '[',
            '+',
            'é',
            '日',
        ]),
    ];
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(tricky, 0..400).prop_map(|c| c.into_iter().collect()),
        ("[ -~]{0,40}", 0usize..5_000).prop_map(|(s, n)| s.repeat(n.min(200))),
    ]
}

/// The log escaper, alone and as the platform layer applies it after scrubbing: never panics,
/// lets no control, bidi or separator character through, stays within its cap, changes no
/// short printable ASCII, is idempotent, and no registered secret survives it.
pub fn log_escape(runner: &mut TestRunner) -> Result<(), String> {
    use entra_zenqms::clients::retry::Resilient;
    use entra_zenqms::log::Log;
    use entra_zenqms::log::escape::{self, MIN_CAP, must_escape};
    let secret = "[A-Za-z0-9~._-]{16,40}";
    runner
        .run(
            &(hostile_text(), 0usize..3_000, secret, 0usize..100),
            |(text, cap, secret, at)| {
                let out = escape::escape(&text, cap);
                prop_assert!(!out.chars().any(must_escape), "raw character in {out:?}");
                prop_assert!(out.chars().count() <= cap.max(MIN_CAP));
                prop_assert_eq!(escape::escape(&out, cap), out.clone(), "not idempotent");
                let plain = text.chars().all(|c| c == ' ' || c.is_ascii_graphic());
                if plain && text.len() <= cap.max(MIN_CAP) {
                    prop_assert_eq!(&out, &text);
                }
                // Through the call's platform: the secret goes, then the line is escaped.
                let split = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(at)
                    .unwrap_or(text.len());
                let line = format!("{}{secret}{}", &text[..split], &text[split..]);
                let sink = Recorder::default();
                let p = Resilient::new(&sink, 1_000);
                p.add_secret(&secret);
                Log::new(&p).warn(&line, &[("field", &line), (&line, "v")]);
                for logged in sink.0.borrow().iter() {
                    prop_assert!(!logged.contains(&secret), "secret in {logged:?}");
                    prop_assert!(!logged.chars().any(must_escape));
                }
                Ok(())
            },
        )
        .map_err(|e| e.to_string())
}

/// Keeps every message, key and value it is given, one string each.
#[derive(Default)]
struct Recorder(RefCell<Vec<String>>);

impl Platform for Recorder {
    fn send(&self, _: Request) -> HttpResult {
        Err(HttpError::Denied("offline".into()))
    }
    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        reqs.into_iter().map(|r| self.send(r)).collect()
    }
    fn log(&self, _: Level, message: &str, fields: &[(&str, &str)]) {
        let mut all = self.0.borrow_mut();
        all.push(message.to_string());
        for (k, v) in fields {
            all.push(k.to_string());
            all.push(v.to_string());
        }
    }
    fn now(&self) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }
    fn elapsed_ms(&self) -> u64 {
        0
    }
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        vec![0; n]
    }
    fn wait(&self, _: u32) {}
}

/// Configuration errors never show a value: a credential-like value put under any key (or as a
/// key) is absent from the error text.
pub fn config_errors(runner: &mut TestRunner) -> Result<(), String> {
    let key = prop_oneof![
        proptest::sample::select(config::key_names()).prop_map(String::from),
        "[A-Za-z0-9_~.-]{0,40}".prop_map(String::from),
    ];
    let value = "[A-Za-z0-9~._/:?&=+-]{20,60}";
    let wrap = prop_oneof![
        Just("{}".to_string()),
        Just("https://acme.zenqms.com:{}".to_string()),
        Just("{}://acme.zenqms.com".to_string()),
        Just("[{{\"role\": \"r\", \"groups\": [\"{}\"]}}]".to_string()),
        Just("[{{\"role\": 1, \"groups\": \"{}\"}}]".to_string()),
        Just("[{{\"role\": \"{}\" ]".to_string()),
    ];
    runner
        .run(
            &proptest::collection::vec((key, value, wrap), 1..6),
            |entries| {
                let pairs: Vec<(String, String)> = entries
                    .iter()
                    .map(|(k, v, w)| {
                        (
                            k.clone(),
                            w.replace("{}", v).replace("{{", "{").replace("}}", "}"),
                        )
                    })
                    .collect();
                if let Err(e) = config::parse(&pairs) {
                    let text = e.to_string();
                    for (k, v, _) in &entries {
                        prop_assert!(!text.contains(v.as_str()), "{k}: {v} shown in {text}");
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| e.to_string())
}

/// The oracle for plain http, independent of the component's URL code: an `http://` base's
/// host is `localhost`, `[::1]`, or an IPv4 address in 127.0.0.0/8 as std parses it (dotted
/// decimal only), and nothing in the base is outside printable ASCII or carries user info.
fn plain_http_only_to_loopback(base: &str) -> bool {
    let authority = |rest: &str| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let clean = base.bytes().all(|b| b.is_ascii_graphic())
        && !base.contains('\\')
        && !authority(base.split_once("://").map_or("@", |(_, r)| r)).contains('@');
    let Some(rest) = base.strip_prefix("http://") else {
        return clean && base.starts_with("https://");
    };
    let authority = authority(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => authority.split(':').next().unwrap_or_default().to_string(),
    };
    clean
        && (host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.octets()[0] == 127))
}

/// Pieces that hostile URLs are made of: loopback look-alikes, other spellings of an address,
/// user info, separators the URL standard reads in surprising ways, and raw characters.
fn url_text() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(vec![
        "http://",
        "https://",
        "HTTP://",
        "http:",
        "//",
        "/",
        "%a0",
        "%C3%A9",
        "127.",
        "127.0.0.1",
        "0x7f",
        "0177",
        "2130706433",
        ".1",
        "localhost",
        "LOCALHOST",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[0::1]",
        "::1",
        ".",
        "..",
        "%2e",
        "%61",
        "@",
        ":",
        ":8080",
        ":443",
        "/",
        "\\",
        "#",
        "?",
        "&",
        "evil.example",
        "nip.io",
        "graph.microsoft.com",
        "/v1.0/",
        "users",
        "/v1.0/users",
        "$skiptoken=",
        " ",
        "\t",
        "\r\n",
        "\u{0}",
        "\u{85}",
        "\u{202e}",
        "\u{ff0e}",
        "\u{ff4c}",
        "é",
        "xn--",
        "()",
        "delta",
    ]);
    prop_oneof![
        proptest::collection::vec(piece, 0..9).prop_map(|p| p.concat()),
        any::<String>(),
        "(http|https)://[ -~]{0,40}".prop_map(String::from),
    ]
}

/// URLs: arbitrary text never panics the parser, the loopback rule, the config or the Graph
/// link check, and only the allowed forms pass each of them.
pub fn urls(runner: &mut TestRunner) -> Result<(), String> {
    use entra_zenqms::clients::graph::{GRAPH_BASE, check_link};
    use entra_zenqms::platform::url::Url;
    let request = format!("{GRAPH_BASE}/users?$select=id&$top=100");
    runner
        .run(&url_text(), |text| {
            if let Ok(u) = Url::parse(&text) {
                prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
                let http = format!("http://{}", u.host);
                prop_assert_eq!(
                    u.is_loopback(),
                    plain_http_only_to_loopback(&http),
                    "{:?}",
                    text
                );
            }
            let mut pairs = vec![
                ("entra_tenant_id".to_string(), TENANT.to_string()),
                ("entra_client_id".into(), TENANT.into()),
                ("entra_client_secret".into(), "s".into()),
                ("zenqms_api_token".into(), "t".into()),
                ("zenqms_base_url".into(), text.clone()),
            ];
            match config::parse(&pairs) {
                Ok(c) => prop_assert!(plain_http_only_to_loopback(&c.zenqms_base_url), "{text:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("'zenqms_base_url'"), "{msg}");
                    // The value is never echoed (short texts could be a word of the message).
                    prop_assert!(
                        text.trim().len() < 12 || !msg.contains(text.trim()),
                        "{msg}"
                    );
                }
            }
            pairs[4] = ("zenqms_environment".into(), text.clone());
            if config::parse(&pairs).is_ok() {
                let env = text.trim().to_ascii_lowercase();
                prop_assert!(env.is_empty() || env == "production" || env == "sandbox");
            }
            match check_link(&text, &request, "@odata.nextLink", "fuzzing") {
                Ok(link) => {
                    prop_assert!(text.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'));
                    prop_assert!(
                        link.to_ascii_lowercase()
                            .starts_with("https://graph.microsoft.com/v1.0/users"),
                        "{link}"
                    );
                    let rest = &link["https://graph.microsoft.com/v1.0/users".len()..];
                    prop_assert!(
                        rest.is_empty() || rest.starts_with(['?', '/', '(']),
                        "{link}"
                    );
                }
                Err(f) => {
                    prop_assert!(!f.retryable);
                    // As the call layer shows it: scrubbed, then escaped and capped (a link
                    // is never cut before the scrub: a cut could leave part of a secret).
                    use entra_zenqms::log::escape;
                    let shown = escape::escape(&f.message, escape::OUTCOME_CAP);
                    prop_assert!(shown.chars().all(|c| !escape::must_escape(c)), "{shown}");
                    prop_assert!(shown.chars().count() <= escape::OUTCOME_CAP, "{shown}");
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
}

/// A fuzz target: runs its property with the runner's case count.
pub type Target = fn(&mut TestRunner) -> Result<(), String>;

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 7] = [
    ("webhook", webhook),
    ("config", config),
    ("state", state),
    ("planner", planner),
    ("log_escape", log_escape),
    ("config_errors", config_errors),
    ("urls", urls),
];

/// A runner for `cases` executions, without writing failure files into the repo.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}
