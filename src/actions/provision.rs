//! `provision-user`: syncs one user now, as Entra's "provision on demand" does, and answers
//! with each step: found in Entra (the fields read), in scope, the ZenQMS match and why, the
//! fields changed (before -> after), the roles added and removed, or why it was skipped or in
//! conflict. The same rules as a change notification apply (the real-time path runs it),
//! under the same guard.
//!
//! Input: an Entra object id or a UPN, or `{"user": "<id or UPN>", "dry_run": true}` to see
//! what would happen without writing (also when the configuration's `dry_run` is set).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::call::Slot;
use crate::clients::graph::{GRAPH_BASE, Graph};
use crate::clients::zenqms::api::ZUser;
use crate::config::{Config, is_guid};
use crate::domain::entra::{EntraUser, USER_SELECT};
use crate::domain::plan::{self, Action, Planned, WriteKind};
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::url::encode;
use crate::platform::{Method, Platform};
use crate::sync::realtime::Trace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    user: String,
    #[serde(default)]
    dry_run: bool,
}

/// The user asked for and whether to write nothing.
///
/// Errors (fatal): no input, JSON input of another shape, a user key that is neither a GUID
/// nor a UPN-like name.
fn parse_input(input: Option<&str>) -> Result<(String, bool), Failure> {
    let text = input.ok_or_else(|| {
        Failure::fatal("provision-user needs an input: an Entra object id or user principal name")
    })?;
    let (user, dry) = if text.starts_with('{') {
        let j: InputJson = serde_json::from_str(text).map_err(|e| {
            Failure::fatal(format!(
                "provision-user input is not {{\"user\": \"<id or UPN>\", \"dry_run\": true|false}}: {}",
                crate::failure::upstream::json_problem(&e)
            ))
        })?;
        (j.user.trim().to_string(), j.dry_run)
    } else {
        (text.to_string(), false)
    };
    let upn_like = user.contains('@')
        && user.len() <= 256
        && user
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '?');
    if !is_guid(&user) && !upn_like {
        return Err(Failure::fatal(
            "provision-user input must be an Entra object id (GUID) or a user principal name (name@domain)",
        ));
    }
    Ok((user, dry))
}

fn user_fields(u: &EntraUser) -> Value {
    json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "mail": u.mail,
        "givenName": u.given_name,
        "surname": u.surname,
        "jobTitle": u.job_title,
        "accountEnabled": u.account_enabled,
        "userType": u.user_type,
    })
}

fn zuser_fields(z: &ZUser) -> Value {
    json!({
        "id": z.id,
        "email": z.email,
        "first_name": z.first_name,
        "last_name": z.last_name,
        "title": z.title,
        "is_active": z.is_active,
        "external_id": z.external_id,
        "roles": z.roles,
    })
}

/// How the user matched a ZenQMS user, and which, before any write.
fn match_step(user: &EntraUser, found: &[ZUser]) -> Value {
    let dir = plan::Directory::new(found.iter().cloned());
    if let Some(z) = dir.by_external_id(&user.id) {
        return json!({"how": "linked", "why": "a ZenQMS user's external_id is this Entra id", "zenqms_user": zuser_fields(z)});
    }
    match user.match_address() {
        None => {
            json!({"how": "none", "why": "no ZenQMS user is linked to this Entra id, and the user has no address that may match"})
        }
        Some(a) => {
            let holders = dir.by_email(a.as_str());
            match holders.as_slice() {
                [] => {
                    json!({"how": "none", "why": format!("no ZenQMS user is linked to this Entra id or has email {a}")})
                }
                [z] => {
                    json!({"how": "email", "why": format!("ZenQMS user {} has email {a}", z.id), "zenqms_user": zuser_fields(z)})
                }
                many => {
                    json!({"how": "ambiguous", "why": format!("{} ZenQMS users have email {a}", many.len())})
                }
            }
        }
    }
}

/// The decision, in the admin's words.
fn decision(p: &Planned, held: bool) -> Value {
    match &p.action {
        Action::Create(new) => json!({
            "outcome": "create",
            "changes": [
                {"field": "email", "before": null, "after": new.email},
                {"field": "first_name", "before": null, "after": new.first_name},
                {"field": "last_name", "before": null, "after": new.last_name},
                {"field": "title", "before": null, "after": new.title},
                {"field": "is_active", "before": null, "after": new.is_active},
                {"field": "external_id", "before": null, "after": new.external_id},
            ],
        }),
        Action::Write {
            zenqms_id,
            kind,
            changes,
        } => {
            let outcome = match kind {
                WriteKind::Link => "link",
                WriteKind::Deactivate => "deactivate",
                _ => "update",
            };
            let changes: Vec<Value> = changes
                .iter()
                .map(|c| json!({"field": c.field, "before": c.before, "after": c.after}))
                .collect();
            let mut v = json!({"outcome": outcome, "zenqms_id": zenqms_id, "changes": changes});
            if held {
                v["held_by_guard"] = json!(
                    "the deactivation was held back by the mass-deactivation guard (see release-held-deactivations)"
                );
            }
            v
        }
        Action::Unchanged { zenqms_id } => {
            json!({"outcome": "unchanged", "zenqms_id": zenqms_id, "changes": []})
        }
        Action::Skip { reason, missing } => {
            json!({"outcome": "skipped", "reason": reason, "missing_fields": missing})
        }
        Action::Conflict { reason } => json!({"outcome": "conflict", "reason": reason}),
        Action::OutOfScope => {
            json!({"outcome": "out_of_scope", "reason": "not a transitive member of any scope group, and not linked: not provisioned"})
        }
    }
}

/// Runs `provision-user`.
///
/// Errors: bad input (fatal); the token or a read failed; ZenQMS failed a write (the result
/// of a partial write is in the log like any sync's).
pub fn run(
    p: &dyn Platform,
    config: &Config,
    input: Option<&str>,
    slot: &mut Slot,
) -> Result<(String, Value), Failure> {
    let (key, dry_input) = parse_input(input)?;
    // The user key as it is sent (a JSON input's string unescaped) is checked for a pasted
    // credential too.
    if p.scrub(&key) != key {
        return Err(Failure::fatal(
            "the user given contains a configured secret: nothing was sent",
        ));
    }
    let dry = dry_input || config.dry_run;
    let log = Log::new(p);
    let state = slot.get(&log)?;
    crate::handlers::same_tenant(state, config)?;
    if state.deleting.is_some() || state.tenant_id.is_none() {
        return Err(Failure::fatal(
            "the instance is not deployed (or is being deleted): deploy it first",
        ));
    }
    let graph = super::graph(p, config)?;
    // Found in Entra: the user as Graph has it (by id or UPN, `GET /users/{id | userPrincipalName}`).
    let url = format!("{GRAPH_BASE}/users/{}?$select={USER_SELECT}", encode(&key));
    let raw = Graph::read_user(graph.send(graph.request(Method::Get, &url, None)?))?;
    let user = raw.as_ref().and_then(EntraUser::from_json);
    let id = match &user {
        Some(u) => u.id.clone(),
        None if is_guid(&key) => key.to_ascii_lowercase(),
        None => {
            let result = json!({
                "user": key,
                "dry_run": dry,
                "steps": [{"step": "entra", "found": false, "detail": "Graph has no user with this user principal name"}],
                "outcome": "not_found",
            });
            return Ok(("user not found in Entra".into(), result));
        }
    };
    // The real-time path syncs it: same reads, same rules, same guard. A dry run works on a
    // copy of the state (the guard's window is not charged for writes not made).
    let mut scratch = state.clone();
    let target = if dry { &mut scratch } else { &mut *state };
    let cause = format!("provision-user by an admin ({id})");
    let (result, rt) = crate::handlers::with_realtime(p, config, &graph, target, &cause, |rt| {
        rt.out.dry_run = dry;
        rt.trace = Some(Trace::default());
        rt.sync_users(std::slice::from_ref(&id))
    });
    // A scope group that is gone fails the step after the user's leaving (gone, disabled) is
    // applied: the result still says what was done, with the failure beside it (a red team:
    // the account was deactivated and the admin's result said only the error).
    let scope_error = match result {
        Ok(()) => None,
        Err(f) if rt.scope_broken => Some(f.message),
        Err(f) => return Err(f),
    };
    let trace = rt.trace.clone().unwrap_or_default();
    let mut steps = Vec::new();
    match &user {
        Some(u) => {
            steps.push(json!({"step": "entra", "found": true, "fields": user_fields(u)}));
            let groups: Vec<&String> = trace
                .member_of
                .get(&u.id)
                .map(|g| g.iter().collect())
                .unwrap_or_default();
            let in_scope = trace.in_scope.get(&u.id).copied().unwrap_or(true);
            steps.push(if config.scoped() {
                json!({"step": "scope", "in_scope": in_scope, "scope_groups_matched": groups.iter().filter(|g| config.scope_groups.contains(g)).collect::<Vec<_>>()})
            } else {
                json!({"step": "scope", "in_scope": true, "detail": "no scope_groups set: every user is in scope"})
            });
            steps.push(json!({"step": "match", "match": match_step(u, &trace.found)}));
        }
        None => {
            steps.push(json!({"step": "entra", "found": false, "detail": "Graph answers 404: the user is deleted or never existed; a linked ZenQMS user is deactivated"}));
        }
    }
    // Held now, or held already (the guard's held set names the user: it waits for a release).
    let held = rt.held.contains(&id) || rt.held_already.contains(&id);
    let plan = trace.plans.iter().rfind(|pl| pl.entra_id == id);
    let outcome = match (plan, &scope_error) {
        (Some(pl), _) => decision(pl, held),
        // Only a linked leaver is worked while the scope cannot be decided.
        (None, Some(_)) => {
            json!({"outcome": "undecided", "reason": "a scope group is gone: only a linked user gone from Entra or disabled is acted on until scope_groups is fixed"})
        }
        (None, None) => {
            json!({"outcome": "nothing to do", "reason": "not in Entra and not linked in ZenQMS"})
        }
    };
    steps.push(json!({"step": "decision", "decision": outcome}));
    let roles: Vec<Value> = trace
        .roles
        .iter()
        .filter(|r| r.entra_id == id)
        .map(|r| json!({"zenqms_id": r.zenqms_id, "added": r.add, "removed": r.remove}))
        .collect();
    steps.push(json!({"step": "roles", "changes": roles}));
    let counts = rt.out.counts;
    let writes = counts.created
        + counts.updated
        + counts.linked
        + counts.deactivated
        + counts.roles_added
        + counts.roles_removed;
    let written = !dry && writes > 0;
    let name = outcome["outcome"].as_str().unwrap_or("unknown").to_string();
    // A deactivation the guard holds is not made: the summary says so, as the decision's
    // `held_by_guard` does (a newcomer read "deactivate" as done).
    let held_now = outcome.get("held_by_guard").is_some();
    let summary = format!(
        "{id}: {name}{}",
        if dry {
            " (dry run: nothing written)"
        } else if held_now {
            " (held by the mass-deactivation guard: not written; see release-held-deactivations)"
        } else {
            ""
        }
    );
    let mut result = json!({
        "user": key,
        "entra_id": id,
        "dry_run": dry,
        "outcome": name,
        "written": written,
        "failed_writes": counts.failed,
        "steps": steps,
    });
    let summary = match scope_error {
        Some(e) => {
            log.error(
                "provision-user: the scope cannot be decided",
                &[("error", e.as_str())],
            );
            result["scope_error"] = json!(e);
            format!("{summary}; {e}")
        }
        None => summary,
    };
    Ok((summary, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_an_id_a_upn_or_the_json_form() {
        let id = "0f0f0f0f-0000-4000-8000-000000000001";
        assert_eq!(parse_input(Some(id)).unwrap(), (id.to_string(), false));
        assert_eq!(
            parse_input(Some("ada@contoso.com")).unwrap(),
            ("ada@contoso.com".to_string(), false)
        );
        assert_eq!(
            parse_input(Some(r#"{"user": "ada@contoso.com", "dry_run": true}"#)).unwrap(),
            ("ada@contoso.com".to_string(), true)
        );
        for bad in [
            None,
            Some("ada"),
            Some("../users"),
            Some("{\"who\": 1}"),
            Some("a@b/c"),
        ] {
            assert!(parse_input(bad).is_err(), "{bad:?}");
        }
    }
}
