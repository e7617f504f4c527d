//! What the component logs and returns is safe to show (issue 11, sections 2, 3 and 5), through
//! wasmtime: hostile Entra fields, webhook fields and upstream error bodies cannot forge a log
//! line, flood it or carry a secret out; the validation handshake answers POST only.

use crate::common::*;
use entra_zenqms::log::escape::{FIELD_CAP, MESSAGE_CAP, must_escape};
use host_test::report::{self, Report};
use host_test::runner::Runner;
use host_test::runtime::Runtime;
use host_test::scenario::Scenario;
use serde_json::{Value, json};

fn runner(s: &Value) -> Runner {
    Runner::new(
        Runtime::shared(),
        Scenario::from_json(&s.to_string()).unwrap(),
    )
}

/// Every log line, summary and error of the run is escaped and within the caps.
fn assert_displayable(r: &Report) {
    let raw = |t: &str| t.chars().find(|c| must_escape(*c));
    for s in &r.steps {
        for l in &s.logs {
            assert_eq!(raw(&l.message), None, "raw character in {:?}", l.message);
            assert!(l.message.chars().count() <= MESSAGE_CAP);
            for (k, v) in &l.fields {
                assert_eq!(raw(k), None, "raw character in key {k:?}");
                assert_eq!(raw(v), None, "raw character in {k}={v:?}");
                assert!(v.chars().count() <= FIELD_CAP, "{k} is {} long", v.len());
            }
        }
        for text in s.summary.iter().chain(&s.error) {
            assert_eq!(raw(text), None, "raw character in {text:?}");
        }
        // An admin action's result: every string in it.
        let mut todo: Vec<&Value> = s.result.iter().collect();
        while let Some(v) = todo.pop() {
            match v {
                Value::String(t) => assert_eq!(raw(t), None, "raw character in result {t:?}"),
                Value::Array(items) => todo.extend(items),
                Value::Object(m) => todo.extend(m.values()),
                _ => {}
            }
        }
    }
}

/// Each value in `secrets` is absent from every log line, summary, error and state of the run.
fn assert_no_secret(states: &[String], report: &Report, secrets: &[&str]) {
    let text = serde_json::to_string(report).unwrap();
    for s in secrets {
        assert!(!text.contains(s), "{s} leaked into the report");
        for state in states {
            assert!(!state.contains(s), "{s} leaked into the state");
        }
    }
    assert!(!text.contains("Bearer "), "an Authorization value leaked");
}

/// Entra fields with line breaks, ANSI escapes, bidi overrides, separators and C1 controls.
fn hostile_users() -> Vec<Value> {
    let mut users: Vec<Value> = (1..=6).map(entra_user).collect();
    users[0]["jobTitle"] =
        json!("QA\ninfo  ZenQMS user deactivated zenqms_id=u-ceo cause=notification");
    users[1]["givenName"] = json!("\u{1b}[2J\u{1b}[HEve");
    users[2]["surname"] = json!("Smith\u{202e}nimda");
    users[3]["jobTitle"] = json!("Lead\u{2028}error deploy failed\u{2029}\r\n");
    users[4]["givenName"] = json!("C1\u{85}\u{9b}31m\u{7f}");
    users[5]["jobTitle"] = json!("T".repeat(100_000));
    // Incomplete: skipped, and the skip line names its UPN.
    let mut skipped = entra_user(7);
    skipped["givenName"] = json!(null);
    skipped["userPrincipalName"] =
        json!("x@contoso.com\nwarn  ZenQMS user deactivated zenqms_id=u-ceo\u{1b}[2J");
    users.push(skipped);
    users
}

#[test]
fn hostile_entra_fields_are_escaped_and_capped_in_every_log_line() {
    let s = scenario(hostile_users(), json!([]), vec![], json!([]));
    let report = runner(&s).run(|_| {});
    assert_ok(&report);
    assert_displayable(&report);
    // The forged text is there, visibly escaped, inside the real line's field.
    let text = log_text(&report);
    assert!(
        text.contains("QA\\ninfo  ZenQMS user deactivated"),
        "{text}"
    );
    assert!(text.contains("Lead\\u{2028}error deploy failed"), "{text}");
    assert!(
        text.contains(
            "upn=x@contoso.com\\nwarn  ZenQMS user deactivated zenqms_id=u-ceo\\u{1b}[2J"
        ),
        "{text}"
    );
    assert!(text.contains("Smith\\u{202e}nimda"));
    assert!(text.contains("…[+"), "the 100,000-character title is cut");
    // No line claims a deactivation that did not happen.
    assert!(
        report
            .steps
            .iter()
            .flat_map(|s| &s.logs)
            .all(|l| l.message != "ZenQMS user deactivated")
    );
}

#[test]
fn replay_prints_a_100000_character_title_without_panicking() {
    let s = scenario(hostile_users(), json!([]), vec![], json!([]));
    let report = runner(&s).run(|_| {});
    let mut printed = String::new();
    for step in &report.steps {
        printed.push_str(&report::describe_step(step, true));
    }
    printed.push_str(&report::describe_end(&report));
    // The ZenQMS user really has the long title: the table had to cope with it.
    assert!(report.zenqms.users.iter().any(|u| u.title.len() == 100_000));
    for line in printed.lines() {
        assert!(line.chars().count() < 4_000, "a line of {}", line.len());
        assert!(!line.chars().any(must_escape), "raw character in {line:?}");
    }
    // One line per row: the title's newline did not split a row.
    assert!(!printed.contains("\ninfo  ZenQMS user deactivated"));
}

#[test]
fn hostile_webhook_fields_are_escaped_in_the_rejection_lines() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["steps"] = json!([
        {"deploy": {}},
        {"webhook": {"body": {"value": [
            {"subscriptionId": "x\nerror ZenQMS user deactivated", "clientState": "c",
             "tenantId": "t\u{2029}", "resource": "Users/\u{1b}]0;owned\u{7}", "changeType": "updated"},
            {"subscriptionId": "\u{202e}evil", "tenantId": "\u{2066}", "resource": "Groups/\u{85}"},
        ]}}},
    ]);
    let report = runner(&s).run(|_| {});
    assert_ok(&report);
    assert_displayable(&report);
}

#[test]
fn a_zenqms_html_error_echoing_the_authorization_header_leaks_nothing() {
    let mut s = scenario(
        vec![entra_user(1), entra_user(2)],
        json!([]),
        vec![],
        json!([]),
    );
    let html = format!(
        "<html><body><h1>400 Bad Request</h1><pre>POST /v2/users HTTP/1.1\r\nAuthorization: Bearer {API_TOKEN}\r\n</pre></body></html>"
    );
    s["steps"] = json!([
        {"zenqms": {"fail_writes": {"status": 400, "count": 2, "content_type": "text/html", "body": html}}},
        {"deploy": {}},
    ]);
    let mut r = runner(&s);
    let records = r.run_steps(|_| {});
    let states = r.state_history.clone();
    let report = finish(r, records);
    assert_no_secret(&states, &report, &[API_TOKEN, SECRET]);
    assert_displayable(&report);
    // What is left: the status and the content type.
    let text = log_text(&report);
    assert!(text.contains("400"), "{text}");
    assert!(text.contains("text/html"), "{text}");
}

#[test]
fn a_zenqms_json_error_message_carrying_the_token_is_scrubbed() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    let body = json!({"error": {"code": "invalid_request",
        "message": format!("token {API_TOKEN} is not allowed\nerror deploy failed")}});
    s["steps"] = json!([
        {"zenqms": {"fail_writes": {"status": 400, "count": 1, "body": body}}},
        {"deploy": {}},
    ]);
    let mut r = runner(&s);
    let records = r.run_steps(|_| {});
    let report = finish(r, records);
    let text = log_text(&report);
    assert!(!text.contains(API_TOKEN), "{text}");
    assert!(text.contains("invalid_request"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert_displayable(&report);
}

#[test]
fn a_token_error_description_carrying_the_secret_leaks_nothing() {
    for body in [
        json!({"error": "invalid_client",
            "error_description": format!("AADSTS7000215: Invalid client secret provided: '{SECRET}'.\r\nTrace ID: 1")}),
        json!(format!("<html>client_secret={SECRET}</html>")),
    ] {
        let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
        s["steps"] = json!([
            {"entra": {"fail_token": {"status": 401, "count": 1, "body": body}}},
            {"deploy": {}},
        ]);
        s["expect"] = json!({"errors": [{"step": 1, "contains": "401"}]});
        let mut r = runner(&s);
        let records = r.run_steps(|_| {});
        let states = r.state_history.clone();
        let err = records[1].error.clone().expect("the deploy fails");
        let report = finish(r, records);
        assert!(!err.contains(SECRET), "{err}");
        assert_no_secret(&states, &report, &[SECRET, API_TOKEN]);
        assert_displayable(&report);
        if body.is_object() {
            assert!(err.contains("AADSTS7000215"), "{err}");
            assert!(err.contains("invalid_client"), "{err}");
        }
    }
}

#[test]
fn the_validation_handshake_answers_post_only_with_nosniff() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    let token = "<script>alert(1)</script>";
    let q = format!("validationToken={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    s["steps"] = json!([
        {"webhook": {"method": "GET", "query": q}},
        {"webhook": {"method": "DELETE", "query": q}},
        {"webhook": {"method": "POST", "query": q}},
    ]);
    let report = runner(&s).run(|_| {});
    for i in 0..2 {
        let r = report.steps[i].response.as_ref().unwrap();
        assert_eq!(r.status, 405, "step {i}");
        assert!(!r.body.contains(token), "step {i} echoed the token");
    }
    let r = report.steps[2].response.as_ref().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, token));
    assert_eq!(
        r.headers.get("x-content-type-options").map(String::as_str),
        Some("nosniff")
    );
}

#[test]
fn a_secret_pasted_into_another_key_is_not_echoed() {
    let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    s["instance"]["config"]["entra_client_id"] = json!(SECRET);
    s["instance"]["config"]["max_deactivations"] = json!(API_TOKEN);
    s["expect"] = json!({"errors": [{"step": 0, "contains": "entra_client_id"}]});
    let mut r = runner(&s);
    let records = r.run_steps(|_| {});
    let err = records[0].error.clone().expect("the deploy fails");
    assert!(err.contains("max_deactivations"), "{err}");
    let report = finish(r, records);
    assert!(report.expect.ok, "{:?}", report.expect.failures);
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains(SECRET) && !text.contains(API_TOKEN), "{err}");
}

/// A secret can hold a backslash sequence (`\t`, `\n`, `\u{1b}`, in any case); a service that
/// echoed it into JSON unescaped sends a real TAB or line feed there, which the escaper shows
/// as the secret's own characters. Such text is scrubbed again after escaping, in log lines and
/// in failure messages. And a secret completed by the redaction marker's own characters (an
/// old Azure secret beginning `d]`, echoed right after the API token) is scrubbed too.
#[test]
fn a_secret_that_escaping_or_the_marker_completes_leaks_nothing() {
    let cases: [(&str, &str, &str); 4] = [
        // (client secret, API token, what ZenQMS and the token endpoint echo)
        ("client\\tsecret~Zx9\\rtest", "zq-api\\ttoken\\n4711", "raw"),
        ("Cs\\u{1b}Zx9-old~secret", "zq-API\\Ttoken-4711", "raw"),
        ("d]Kx9-old-style-secret", "zq-tok-4711", "cascade"),
        ("abc\\nsecret~Zx9-q", "zq-tok\\t\\t4711", "raw"),
    ];
    for (secret, token, how) in cases {
        // A backslash sequence as a service that did not escape it sends it: the character.
        let raw = |s: &str| {
            s.replace("\\t", "\t")
                .replace("\\T", "\t")
                .replace("\\n", "\n")
                .replace("\\r", "\r")
                .replace("\\u{1b}", "\u{1b}")
        };
        let echoed = if how == "cascade" {
            format!("{token}{}", &secret[2..])
        } else {
            raw(token)
        };
        let mut s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
        s["instance"]["config"]["entra_client_secret"] = json!(secret);
        s["entra"]["client_secret"] = json!(secret);
        s["instance"]["config"]["zenqms_api_token"] = json!(token);
        s["zenqms"]["api_token"] = json!(token);
        let zen_body = json!({"error": {"code": "invalid_request",
            "message": format!("token {echoed} is not allowed")}});
        let token_body = json!({"error": "invalid_client",
            "error_description": format!("AADSTS7000215: Invalid client secret provided: {}. Trace ID: 1", raw(secret))});
        s["steps"] = json!([
            {"zenqms": {"fail_writes": {"status": 400, "count": 2, "body": zen_body}}},
            {"deploy": {}},
            {"entra": {"fail_token": {"status": 401, "count": 1, "body": token_body}}},
            {"deploy": {}},
        ]);
        let mut r = runner(&s);
        let records = r.run_steps(|_| {});
        let states = r.state_history.clone();
        let report = finish(r, records);
        assert_no_secret(&states, &report, &[secret, token]);
        // Nor in any ASCII case.
        let text = serde_json::to_string(&report).unwrap().to_ascii_lowercase();
        for x in [secret, token] {
            // As the report's JSON writes it (a backslash doubled).
            let json_form = serde_json::to_string(&x.to_ascii_lowercase()).unwrap();
            assert!(
                !text.contains(json_form.trim_matches('"')),
                "{x} leaked: {text}"
            );
        }
        assert!(
            text.contains("[redacted]"),
            "{how}: nothing was scrubbed: {text}"
        );
        assert_displayable(&report);
    }
}

/// The second red team's worlds (fixtures/red-team/secret-*.json): a client secret or API
/// token echoed by the token endpoint or ZenQMS so that the marker, an escape or the cap
/// marker would complete it, in log lines, failure messages and an admin action's result. No
/// form of either secret is left anywhere in the report or the state, in any case.
#[test]
fn the_red_teams_secret_echoes_leave_no_form_of_any_secret() {
    let dir = format!("{}/../fixtures/red-team", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("secret-") && n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for name in files {
        let s = fixture(&format!("red-team/{name}"));
        let config = &s["instance"]["config"];
        let secrets = [
            config["entra_client_secret"].as_str().unwrap().to_string(),
            config["zenqms_api_token"].as_str().unwrap().to_string(),
        ];
        let mut r = runner(&s);
        let records = r.run_steps(|_| {});
        let states = r.state_history.join("\n").to_ascii_lowercase();
        let report = finish(r, records);
        // Every string the steps carry (log lines and fields, summaries, errors, results),
        // as text, not as the report's JSON (whose own punctuation a secret may look like).
        let mut strings: Vec<String> = Vec::new();
        let steps = serde_json::to_value(&report.steps).unwrap();
        let mut todo = vec![&steps];
        while let Some(v) = todo.pop() {
            match v {
                Value::String(t) => strings.push(t.to_ascii_lowercase()),
                Value::Array(items) => todo.extend(items),
                Value::Object(m) => {
                    strings.extend(m.keys().map(|k| k.to_ascii_lowercase()));
                    todo.extend(m.values());
                }
                _ => {}
            }
        }
        // However an echo spelled it: each string decoded (percent-encoding, `+`, JSON
        // escapes) holds no secret either (a red team's echoes by other encoders).
        // (And HTML character references, twice over; and no prefix of half a secret and 12
        // characters: an echo an upstream cut short.)
        for t in &strings {
            for secret in &secrets {
                let secret = secret.trim().to_ascii_lowercase();
                let n = secret.chars().count();
                let prefix: String = secret.chars().take(n.div_ceil(2).max(12).min(n)).collect();
                let once = [decoded(t, false), decoded(t, true), html_decoded(t)];
                let twice: Vec<String> = once
                    .iter()
                    .flat_map(|v| [decoded(v, false), decoded(v, true), html_decoded(v)])
                    .collect();
                for view in once.iter().chain(&twice) {
                    assert!(
                        !view.contains(&prefix),
                        "{name}: a spelling of a secret left in {t:?}"
                    );
                }
            }
        }
        assert!(report.expect.ok, "{name}: {:?}", report.expect.failures);
        for secret in &secrets {
            for form in secret_forms(secret) {
                let form = form.to_ascii_lowercase();
                for t in &strings {
                    assert!(!t.contains(&form), "{name}: {form:?} left in {t:?}");
                }
                let json = serde_json::to_string(&form).unwrap();
                assert!(
                    !states.contains(json.trim_matches('"')),
                    "{name}: {form:?} left in the state"
                );
            }
        }
        assert_displayable(&report);
        for step in report.steps.iter().filter(|s| s.kind == "action") {
            assert!(
                step.result.as_ref().is_none_or(Value::is_object),
                "{name}: the result is not a JSON object: {:?}",
                step.result
            );
        }
    }
}

/// `t` with its HTML character references (`&#xHH;`, `&#DD;`, a few named) decoded, naively.
fn html_decoded(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&e| e <= 12);
        let c = end.and_then(|e| {
            let body = &rest[1..e];
            let code = if let Some(h) = body.strip_prefix("#x").or(body.strip_prefix("#X")) {
                u32::from_str_radix(h, 16).ok()
            } else if let Some(d) = body.strip_prefix('#') {
                d.parse().ok()
            } else {
                [
                    ("plus", '+'),
                    ("sol", '/'),
                    ("equals", '='),
                    ("amp", '&'),
                    ("quot", '"'),
                ]
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(body))
                .map(|(_, c)| u32::from(*c))
            };
            code.and_then(char::from_u32)
        });
        match (c, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.to_ascii_lowercase()
}

/// `t` with percent-escapes (and `+`, when `plus`) and JSON escapes (`\\uXXXX`, surrogate
/// pairs, the short ones) decoded, naively; undecodable sequences are kept as they are.
fn decoded(t: &str, plus: bool) -> String {
    let b = t.as_bytes();
    let mut bytes = Vec::new();
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, bytes: &mut Vec<u8>| {
        bytes.extend(String::from_utf16_lossy(units).into_bytes());
        units.clear();
    };
    let hex = |s: &[u8]| {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'u')
            && i + 6 <= b.len()
            && let Some(u) = hex(&b[i + 2..i + 6])
        {
            units.push(u as u16);
            i += 6;
            continue;
        }
        flush(&mut units, &mut bytes);
        let short = match b.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'n') => Some(b'\n'),
            Some(b't') => Some(b'\t'),
            Some(b'r') => Some(b'\r'),
            _ => None,
        };
        if b[i] == b'\\'
            && let Some(c) = short
        {
            bytes.push(c);
            i += 2;
        } else if b[i] == b'%'
            && i + 3 <= b.len()
            && let Some(v) = hex(&b[i + 1..i + 3])
        {
            bytes.push(v as u8);
            i += 3;
        } else if plus && b[i] == b'+' {
            bytes.push(b' ');
            i += 1;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    flush(&mut units, &mut bytes);
    String::from_utf8_lossy(&bytes).to_ascii_lowercase()
}

/// One-letter secrets and a 100,000-letter title made of them
/// (fixtures/red-team/marker-growth.json): every letter is a secret, and scrubbing a text
/// twice must not grow it (each pass once turned every letter of the markers the last one
/// wrote into markers again, until the component ran out of memory).
#[test]
fn one_letter_secrets_do_not_grow_a_line_without_bound() {
    let s = fixture("red-team/marker-growth.json");
    let mut r = runner(&s);
    let records = r.run_steps(|_| {});
    let report = finish(r, records);
    for step in &report.steps {
        assert!(step.ok, "step {} failed: {:?}", step.index, step.error);
    }
    assert_displayable(&report);
}

/// Every format character and filler in a value reaches the log and the audit trail as a
/// visible escape: a red team's title `QA` + U+1D173 U+1BCA0 U+13430 U+3164 U+034F + `Lead`
/// (fixtures/red-team/log-format-characters.json) showed as "QALead" when the escaper's list
/// was narrower than the address rule's.
#[test]
fn format_characters_and_fillers_reach_the_log_escaped() {
    let r = run(fixture("red-team/log-format-characters.json"));
    assert!(r.expect.ok, "{:?}", r.expect.failures);
    for line in log_text(&r).lines() {
        assert!(!line.chars().any(must_escape), "raw character in {line:?}");
    }
}
