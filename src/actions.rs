//! Admin actions (`on-event(action)`, WIT 0.3.0): requests an admin makes from the platform's
//! UI, each answered with a JSON object (`outcome.result`) the platform shows.
//!
//! - `test-connection`: every credential and permission checked by a minimal read ([`connection`]).
//! - `provision-user`: one user synced now, step by step ([`provision`]).
//! - `release-held-deactivations`: the guard's held deactivations released ([`release`]).
//! - `list-groups`, `list-roles`: ids and names for the wizard's pickers ([`pickers`]).
//!
//! An action takes nothing from the inbox and never pauses: it answers or fails. Its result
//! leaves through the same scrubbing as every summary (no secret can be in it).

use serde_json::{Value, json};

use crate::call::{CallResult, Reply, Slot, Unreadable};
use crate::clients::graph::{self, Graph};
use crate::config::{self, Config};
use crate::failure::Failure;
use crate::handlers::Instance;
use crate::platform::Platform;

mod connection;
mod pickers;
mod provision;
mod release;

/// The actions' names, as the platform sends them.
pub const NAMES: &[&str] = &[
    "test-connection",
    "provision-user",
    "release-held-deactivations",
    "list-groups",
    "list-roles",
];

/// Longest action input accepted (a UPN is at most 113 characters; a search a few words).
const MAX_INPUT: usize = 1_024;

/// `on-event(action)`: runs the action in a call of its own (state in and out, budget, secrets
/// registered), taking nothing from the inbox.
pub fn event(p: &dyn Platform, inst: &Instance, name: &str, input: Option<&str>) -> CallResult {
    crate::call::run(
        p,
        &inst.config,
        inst.state.as_deref(),
        &inst.inbox,
        Unreadable::Refuse,
        inst.budget_ms,
        "action",
        |p, slot| run(p, inst, name, input, slot),
    )
}

/// Runs the action `name` with `input`; its result travels in the reply.
///
/// Errors: an unknown action or bad input (fatal: nothing was done); the action's own
/// failures (a configuration error, a service that did not answer).
fn run(
    p: &dyn Platform,
    inst: &Instance,
    name: &str,
    input: Option<&str>,
    slot: &mut Slot,
) -> Result<Reply, Failure> {
    let input = input.map(str::trim).filter(|i| !i.is_empty());
    if input.is_some_and(|i| i.len() > MAX_INPUT) {
        return Err(Failure::fatal(format!(
            "action input too long: at most {MAX_INPUT} bytes"
        )));
    }
    // A credential pasted into the wrong field must not travel on to Graph or ZenQMS.
    if input.is_some_and(|i| p.scrub(i) != i) {
        return Err(Failure::fatal(
            "the action input contains a configured secret: nothing was sent",
        ));
    }
    // Actions that take no input refuse one (a picker's search typed into the wrong action).
    if input.is_some() && matches!(name, "test-connection" | "list-roles") {
        return Err(Failure::fatal(format!("{name} takes no input")));
    }
    let (summary, result) = match name {
        "test-connection" => connection::run(p, inst)?,
        "list-roles" => pickers::roles(p, &parse_config(inst)?)?,
        "list-groups" => pickers::groups(p, &parse_config(inst)?, input)?,
        "provision-user" => provision::run(p, &parse_config(inst)?, input, slot)?,
        "release-held-deactivations" => release::run(p, &parse_config(inst)?, input, slot)?,
        _ => {
            // The name as given: the call layer scrubs the message, then escapes and caps it
            // (a cut here, before the scrub, left a part of a secret given as the name).
            return Err(Failure::fatal(format!(
                "unknown action '{name}' (known: {})",
                NAMES.join(", ")
            )));
        }
    };
    let mut result = result;
    if let Value::Object(m) = &mut result {
        m.insert("action".into(), json!(name));
    }
    // Its strings are scrubbed and escaped as the call ends (`log::clean_strings`).
    let mut reply = Reply::done(format!("action {name}: {summary}"));
    reply.result = Some(result.to_string());
    // Work an action started (a released full sync) continues on resume.
    reply.pending = slot.has_work();
    Ok(reply)
}

fn parse_config(inst: &Instance) -> Result<Config, Failure> {
    config::parse(&inst.config).map_err(|e| Failure::fatal(e.to_string()))
}

/// A Graph client with a fresh token.
fn graph<'a>(p: &'a dyn Platform, config: &Config) -> Result<Graph<'a>, Failure> {
    let token = graph::parse_token(p.send(graph::token_request(config)))?;
    Ok(Graph::new(p, token, Some(config)))
}
