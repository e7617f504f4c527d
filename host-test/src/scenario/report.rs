//! The replay report (a public contract: see `fixtures/README.md`), the expectation check, and
//! the readable account printed by `replay` and `demo`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::host::runtime::LogLine;
use crate::scenario::{RoleSpec, Scenario};
use crate::sim::fake_zenqms::ZenqmsUser;
use crate::sim::world::{HttpStats, World};

#[derive(Debug, Clone, Serialize)]
pub struct ResponseRecord {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl ResponseRecord {
    /// A handler's response as recorded (header names lowercased, body as text).
    pub fn new(status: u16, headers: Vec<(String, String)>, body: &[u8]) -> Self {
        ResponseRecord {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// What the platform answers an inbound request with: the handler's response, else 202,
    /// or 500 when the handler failed.
    pub fn answered(reply: Option<ResponseRecord>, failed: bool) -> Self {
        match reply {
            Some(r) => r,
            None if failed => ResponseRecord::plain(500, ""),
            None => ResponseRecord::plain(202, ""),
        }
    }

    pub fn plain(status: u16, body: &str) -> Self {
        ResponseRecord {
            status,
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub index: usize,
    pub kind: String,
    /// Handler calls made for this step, resumes included.
    pub calls: u32,
    pub ok: bool,
    pub error: Option<String>,
    pub summary: Option<String>,
    /// The step's last call returned `pending` and the step stopped there (`"calls": k`).
    pub pending: bool,
    pub response: Option<ResponseRecord>,
    pub logs: Vec<LogLine>,
    /// Virtual time the step took, ms: its calls' round trips and waits (an `advance`: the
    /// jump, with any notification deliveries due in it).
    pub elapsed_ms: u64,
    /// Steps that deliver a webhook: virtual time from the request to the reply, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_ms: Option<u64>,
    /// Steps that deliver a webhook: requests the component sent before it replied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_before_reply: Option<u64>,
    /// `notify` and `lifecycle` steps: what Graph's delivery did with the notification
    /// (`delivered`, `retrying`, `delayed`, `dropped`; see fixtures/README.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Steps whose calls returned state: the largest state returned, bytes (the platform
    /// stores at most 64 KiB; more is a `state-size` violation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_state_bytes: Option<u64>,
    /// `action` steps: the action's result (`outcome.result`, a JSON object; its text as a
    /// string when it is not JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl StepRecord {
    pub fn new(index: usize, kind: &str) -> Self {
        StepRecord {
            index,
            kind: kind.into(),
            calls: 0,
            ok: true,
            error: None,
            summary: None,
            pending: false,
            response: None,
            logs: Vec::new(),
            elapsed_ms: 0,
            reply_ms: None,
            requests_before_reply: None,
            delivery: None,
            max_state_bytes: None,
            result: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ZenqmsReport {
    pub users: Vec<ZenqmsUser>,
    pub roles: Vec<RoleSpec>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntraReport {
    pub subscriptions: Vec<Value>,
    /// What Graph's delivery did with the notifications it sent (`notify` and `lifecycle`
    /// steps, and their retries): see `sim::delivery`.
    pub notifications: crate::sim::delivery::DeliveryStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockReport {
    pub start: String,
    pub end: String,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpectReport {
    pub ok: bool,
    pub failures: Vec<String>,
}

/// One ZenQMS write (or, in a dry run, one planned write) and why it happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    pub step: usize,
    /// created, updated, linked, deactivated, unlinked, roles added, roles removed.
    pub action: String,
    /// The sync run, notification or delta round (or "delete") that caused it.
    pub cause: String,
    pub zenqms_id: String,
    pub entra_id: String,
    /// Field-level `field: before -> after; ...`.
    pub changes: String,
    /// True for a dry run's planned write (nothing was written).
    pub planned: bool,
    /// Why a user was deactivated, when the component says (left the scope, gone from Entra,
    /// disabled in Entra), or reactivated (enabled and in scope in Entra); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The action of a failed write or role call that ZenQMS may have made (its line has an
/// `outcome` field: a timeout, a 5xx), as `"<action> (outcome unknown)"`: it belongs in the
/// audit trail, since the change may be in ZenQMS.
fn unanswered(l: &LogLine) -> Option<String> {
    l.fields.get("outcome")?;
    let action = match l.message.as_str() {
        "ZenQMS write failed" => l.fields.get("action")?.clone(),
        "ZenQMS role change failed" if l.fields.contains_key("roles_added") => "roles added".into(),
        "ZenQMS role change failed" => "roles removed".into(),
        _ => return None,
    };
    Some(format!("{action} (outcome unknown)"))
}

/// The audit trail of a run, from the component's write log lines.
pub fn audit(steps: &[StepRecord]) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    for step in steps {
        for l in &step.logs {
            let (action, planned) = if let Some(a) = l.message.strip_prefix("ZenQMS user ") {
                (a.to_string(), false)
            } else if let Some(a) = l.message.strip_prefix("ZenQMS roles ") {
                (format!("roles {a}"), false)
            } else if let Some(a) = l.message.strip_prefix("plan: would be ") {
                (a.to_string(), true)
            } else if let Some(a) = l.message.strip_prefix("plan: roles would be ") {
                (format!("roles {a}"), true)
            } else if let Some(a) = unanswered(l) {
                (a, false)
            } else {
                continue;
            };
            let field = |k: &str| l.fields.get(k).cloned().unwrap_or_default();
            out.push(AuditRecord {
                step: step.index,
                action,
                cause: field("cause"),
                zenqms_id: field("zenqms_id"),
                entra_id: field("entra_id"),
                changes: field("changes"),
                planned,
                reason: l.fields.get("reason").cloned(),
            });
        }
    }
    out
}

/// A harness invariant that did not hold (see `fixtures/README.md`, "Invariants").
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// The index of the step during (or after) which it was found.
    pub step: usize,
    /// Which invariant: `subscriptions`, `webhook-reply`, `revision`, `state-size` or `audit`.
    pub name: String,
    /// What differs (naming subscription ids, never a clientState).
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub description: String,
    pub steps: Vec<StepRecord>,
    /// Harness invariants that did not hold; any fails the replay.
    pub invariants: Vec<Violation>,
    /// Every ZenQMS write with its cause and field-level change (the GxP audit trail).
    pub audit: Vec<AuditRecord>,
    pub zenqms: ZenqmsReport,
    pub entra: EntraReport,
    pub http: HttpStats,
    pub clock: ClockReport,
    pub expect: ExpectReport,
}

/// Subscriptions as Graph represents them, clientState redacted.
fn subscriptions(world: &World) -> Vec<Value> {
    let keep = [
        "id",
        "resource",
        "changeType",
        "notificationUrl",
        "expirationDateTime",
    ];
    world
        .graph
        .subscriptions(world.clock.now())
        .into_iter()
        .map(|s| {
            let mut out = Map::new();
            for k in keep {
                out.insert(k.into(), s.get(k).cloned().unwrap_or(Value::Null));
            }
            out.insert("clientState".into(), Value::String("[redacted]".into()));
            Value::Object(out)
        })
        .collect()
}

/// The report of a run: `invariants` are the violations the runner found (each also fails the
/// expectation check).
pub fn build(
    scenario: &Scenario,
    steps: Vec<StepRecord>,
    world: &World,
    invariants: Vec<Violation>,
) -> Report {
    let users = world.zenqms.users();
    let mut failures = check(scenario, &steps, &users);
    let subscriptions = subscriptions(world);
    let ours = subscriptions
        .iter()
        .filter(|s| s["notificationUrl"] == scenario.instance.webhook_url.as_str())
        .count();
    if let Some(n) = scenario.expect.subscriptions
        && n != ours
    {
        failures.push(format!(
            "expected {n} active Graph subscriptions on the webhook URL, found {ours}"
        ));
    }
    for v in &invariants {
        failures.push(format!(
            "invariant '{}' violated at step {}: {}",
            v.name, v.step, v.detail
        ));
    }
    Report {
        description: scenario.description.clone(),
        audit: audit(&steps),
        invariants,
        steps,
        zenqms: ZenqmsReport {
            users,
            roles: world.zenqms.roles(),
        },
        entra: EntraReport {
            subscriptions,
            notifications: world.delivery.report(),
        },
        http: world.stats.clone(),
        clock: ClockReport {
            start: world.clock.start().to_rfc3339(),
            end: world.clock.now().to_rfc3339(),
            elapsed_ms: world.clock.elapsed_ms(),
        },
        expect: ExpectReport {
            ok: failures.is_empty(),
            failures,
        },
    }
}

fn sorted_roles(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut items = items.clone();
            items.sort_by_key(|a| a.to_string());
            Value::Array(items)
        }
        other => other.clone(),
    }
}

fn matches(user: &Value, wanted: &Map<String, Value>) -> bool {
    wanted.iter().all(|(k, v)| match k.as_str() {
        "roles" => sorted_roles(&user[k]) == sorted_roles(v),
        _ => user.get(k).unwrap_or(&Value::Null) == v,
    })
}

/// Every way the run differs from the scenario's `expect`, plus unexpected step failures.
pub fn check(scenario: &Scenario, steps: &[StepRecord], users: &[ZenqmsUser]) -> Vec<String> {
    let expect = &scenario.expect;
    let mut failures = Vec::new();
    let as_json: Vec<Value> = users
        .iter()
        .map(|u| serde_json::to_value(u).expect("user serialises"))
        .collect();
    for wanted in &expect.zenqms_users {
        let n = as_json.iter().filter(|u| matches(u, wanted)).count();
        if n != 1 {
            failures.push(format!(
                "expected exactly one ZenQMS user matching {}, found {n}",
                Value::Object(wanted.clone())
            ));
        }
    }
    if let Some(count) = expect.zenqms_user_count
        && count != users.len()
    {
        failures.push(format!(
            "expected {count} ZenQMS users, found {}",
            users.len()
        ));
    }
    for needle in &expect.log_contains {
        let found = steps.iter().flat_map(|s| &s.logs).any(|l| {
            l.message.contains(needle.as_str())
                || l.fields.values().any(|v| v.contains(needle.as_str()))
        });
        if !found {
            failures.push(format!("no log line contains {needle:?}"));
        }
    }
    for r in &expect.responses {
        let got = steps.get(r.step).and_then(|s| s.response.as_ref());
        match got {
            None => failures.push(format!("step {} has no webhook response", r.step)),
            Some(resp) => {
                if r.status.is_some_and(|s| s != resp.status) {
                    failures.push(format!(
                        "step {}: expected status {}, got {}",
                        r.step,
                        r.status.unwrap_or_default(),
                        resp.status
                    ));
                }
                if r.body.as_ref().is_some_and(|b| *b != resp.body) {
                    failures.push(format!(
                        "step {}: expected body {:?}, got {:?}",
                        r.step,
                        r.body.as_deref().unwrap_or_default(),
                        resp.body
                    ));
                }
            }
        }
    }
    for step in steps {
        let expected = expect.errors.iter().find(|e| e.step == step.index);
        match (&step.error, expected) {
            (Some(err), None) => failures.push(format!(
                "step {} ({}) failed unexpectedly: {err}",
                step.index, step.kind
            )),
            (Some(err), Some(e)) if !err.contains(&e.contains) => failures.push(format!(
                "step {} ({}) failed with {err:?}, expected an error containing {:?}",
                step.index, step.kind, e.contains
            )),
            (None, Some(_)) => failures.push(format!(
                "step {} ({}) was expected to fail but succeeded",
                step.index, step.kind
            )),
            _ => {}
        }
    }
    failures
}

/// Text from the component (or a scenario) as the CLI prints it: control, bidi and separator
/// characters escaped and at most `cap` characters (the component's own escaper, applied again:
/// the host does not trust what it is given). Never panics.
pub fn shown(text: &str, cap: usize) -> String {
    entra_zenqms::log::escape::escape(text, cap)
}

/// Widest table cell, in characters.
const CELL_MAX: usize = 60;

/// A readable account of one step: status, summary, and the lines worth a human's attention
/// (warnings, errors and per-call summaries; every line with `verbose`).
pub fn describe_step(step: &StepRecord, verbose: bool) -> String {
    use entra_zenqms::log::escape::{FIELD_CAP, KEY_CAP, MESSAGE_CAP, OUTCOME_CAP};
    let mut out = String::new();
    let status = match &step.error {
        None => "ok".to_string(),
        Some(e) => format!("FAILED: {}", shown(e, OUTCOME_CAP)),
    };
    let _ = writeln!(
        out,
        "[{}] {} - {} call{} - {status}",
        step.index,
        step.kind,
        step.calls,
        if step.calls == 1 { "" } else { "s" }
    );
    if let Some(r) = &step.response {
        let _ = writeln!(out, "    response: {} {}", r.status, shown(&r.body, 120));
    }
    if let Some(result) = &step.result {
        let _ = writeln!(out, "    result:");
        for line in result_lines(result) {
            let _ = writeln!(out, "      {line}");
        }
    }
    let mut quiet = 0;
    for l in &step.logs {
        let is_summary = l.fields.contains_key("call");
        if verbose || l.level == "warn" || l.level == "error" || is_summary {
            let fields: Vec<String> = l
                .fields
                .iter()
                .map(|(k, v)| format!("{}={}", shown(k, KEY_CAP), shown(v, FIELD_CAP)))
                .collect();
            let _ = writeln!(
                out,
                "    {:<5} {} {}",
                shown(&l.level, KEY_CAP),
                shown(&l.message, MESSAGE_CAP),
                fields.join(" ")
            );
        } else {
            quiet += 1;
        }
    }
    if quiet > 0 {
        let _ = writeln!(out, "    ({quiet} more info lines: use --verbose)");
    }
    out
}

/// An action's result as a readable list, one line per item, every value escaped: a check
/// list (`checks`) as `[ok] check: detail` / `[FAILED] check: detail (hint: ...)`; anything
/// else as `key: value` lines, nested values indented.
pub fn result_lines(result: &Value) -> Vec<String> {
    use entra_zenqms::log::escape::FIELD_CAP;
    let mut lines = Vec::new();
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => shown(s, FIELD_CAP),
            other => shown(&other.to_string(), FIELD_CAP),
        }
    }
    fn walk(v: &Value, indent: usize, lines: &mut Vec<String>) {
        let pad = "  ".repeat(indent);
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(check)), Some(Value::Bool(ok))) =
                    (m.get("check"), m.get("ok"))
                {
                    let detail = m.get("detail").map(scalar).unwrap_or_default();
                    let mut line = format!(
                        "{pad}[{}] {}: {detail}",
                        if *ok { "ok" } else { "FAILED" },
                        shown(check, FIELD_CAP)
                    );
                    if let Some(h) = m.get("hint") {
                        line.push_str(&format!(" (hint: {})", scalar(h)));
                    }
                    lines.push(line);
                    return;
                }
                if let (Some(f), Some(before), Some(after), 3) =
                    (m.get("field"), m.get("before"), m.get("after"), m.len())
                {
                    lines.push(format!(
                        "{pad}{}: {} -> {}",
                        scalar(f),
                        scalar(before),
                        scalar(after)
                    ));
                    return;
                }
                for (k, val) in m {
                    match val {
                        Value::Object(_) | Value::Array(_) if !is_empty(val) => {
                            lines.push(format!("{pad}{}:", shown(k, FIELD_CAP)));
                            walk(val, indent + 1, lines);
                        }
                        _ => lines.push(format!("{pad}{}: {}", shown(k, FIELD_CAP), scalar(val))),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(_) | Value::Array(_) => {
                            let before = lines.len();
                            walk(item, indent + 1, lines);
                            if let Some(first) = lines.get_mut(before) {
                                // A list item's first line carries the bullet.
                                let trimmed = first.trim_start().to_string();
                                *first = format!("{pad}- {trimmed}");
                            }
                        }
                        _ => lines.push(format!("{pad}- {}", scalar(item))),
                    }
                }
            }
            other => lines.push(format!("{pad}{}", scalar(other))),
        }
    }
    fn is_empty(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
    walk(result, 0, &mut lines);
    lines
}

/// The final ZenQMS users as a table.
pub fn users_table(users: &[ZenqmsUser]) -> String {
    let header = [
        "id",
        "email",
        "first_name",
        "last_name",
        "title",
        "active",
        "external_id",
        "roles",
    ];
    let rows: Vec<[String; 8]> = users
        .iter()
        .map(|u| {
            [
                u.id.clone(),
                u.email.clone(),
                u.first_name.clone(),
                u.last_name.clone(),
                u.title.clone(),
                if u.is_active { "yes" } else { "no" }.into(),
                u.external_id.clone().unwrap_or_else(|| "-".into()),
                u.roles.join(","),
            ]
            .map(|c| shown(&c, CELL_MAX))
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The planned writes of the run's dry runs as a table (one row per planned write, with the
/// step that planned it), with totals.
pub fn plan_table(audit: &[AuditRecord]) -> String {
    let rows: Vec<[String; 5]> = audit
        .iter()
        .filter(|a| a.planned)
        .map(|a| {
            [
                a.step.to_string(),
                a.action.clone(),
                a.entra_id.clone(),
                a.zenqms_id.clone(),
                a.changes.clone(),
            ]
            .map(|c| shown(&c, CELL_MAX))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let header = ["step", "action", "entra_id", "zenqms_id", "changes"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!(
        "\nDry-run plan ({} planned writes, none of them written):\n",
        rows.len()
    );
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    out.push_str(&line(header));
    out.push('\n');
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        out.push('\n');
    }
    let mut totals: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &rows {
        *totals.entry(r[1].as_str()).or_default() += 1;
    }
    let t: Vec<String> = totals.iter().map(|(k, v)| format!("{k} {v}")).collect();
    // Rows, not roles: a "roles added" row is one user's roles (the call's summary counts
    // roles, so the two differ when a user gains several).
    out.push_str(&format!(
        "Totals: {} (rows; a roles row is one user's roles)\n",
        t.join(", ")
    ));
    out
}

/// The closing lines: users, HTTP accounting, clock, verdict.
pub fn describe_end(report: &Report) -> String {
    let mut out = plan_table(&report.audit);
    let _ = writeln!(out, "\nFinal ZenQMS users ({}):", report.zenqms.users.len());
    out.push_str(&users_table(&report.zenqms.users));
    let by: Vec<String> = report
        .http
        .by_target
        .iter()
        .map(|(k, v)| {
            format!(
                "{} {v}",
                serde_json::to_value(k).unwrap().as_str().unwrap_or("?")
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nHTTP: {} requests in {} rounds ({}); virtual time {:.1} s",
        report.http.requests,
        report.http.rounds,
        by.join(", "),
        report.clock.elapsed_ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "Active Graph subscriptions: {}",
        report.entra.subscriptions.len()
    );
    let _ = writeln!(
        out,
        "Calls over budget: {} (worst overrun {} ms)",
        report.http.calls_over_budget, report.http.worst_overrun_ms
    );
    if report.invariants.is_empty() {
        let _ = writeln!(out, "Invariants: ok");
    } else {
        let _ = writeln!(out, "Invariants: {} VIOLATED", report.invariants.len());
        for v in &report.invariants {
            let _ = writeln!(out, "  - step {} {}: {}", v.step, v.name, v.detail);
        }
    }
    if report.expect.ok {
        let _ = writeln!(out, "Expectations: ok");
    } else {
        let _ = writeln!(out, "Expectations: {} FAILED", report.expect.failures.len());
        for f in &report.expect.failures {
            let _ = writeln!(out, "  - {f}");
        }
    }
    out
}
