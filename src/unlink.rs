//! `on-delete`: clear every external_id link this tenant made, and change nothing else.
//!
//! The links are found by searching ZenQMS (not from our state), so links made by an earlier
//! deployment are cleared too. Resumable and idempotent: a repeated delete finds nothing left.

use serde_json::{Map, Value, json};

use crate::call::Reply;
use crate::config::Config;
use crate::failure::Failure;
use crate::log::Log;
use crate::plan::link_of;
use crate::platform::Platform;
use crate::state::State;
use crate::zenqms::Zenqms;
use crate::zenqms::api::{self, Call};

/// Links cleared per `send-all`, so the budget is checked between chunks.
const CHUNK: usize = 100;

pub fn run(
    p: &dyn Platform,
    config: &Config,
    state: &mut State,
    budget_ms: u32,
) -> Result<Reply, Failure> {
    let log = Log::new(p);
    let zen = Zenqms::new(p, config);
    let users = zen
        .search_all(json!({"has_external_id": true}))
        .map_err(|f| Failure {
            message: format!("delete: {}", f.message),
            retryable: f.retryable,
        })?;
    let linked: Vec<_> = users.iter().filter(|u| link_of(u).is_some()).collect();
    if config.dry_run {
        for u in &linked {
            let ext = u.external_id.clone().unwrap_or_default();
            log.info(
                "plan: would be unlinked",
                &[
                    ("cause", "delete (dry run)"),
                    ("zenqms_id", &u.id),
                    ("entra_id", &ext),
                    ("changes", &format!("external_id: \"{ext}\" -> null")),
                ],
            );
        }
        return Ok(Reply::done(format!(
            "dry run delete (nothing written): would clear {} external_id links and remove the Graph subscriptions",
            linked.len()
        )));
    }
    let mut failed = Vec::new();
    let mut done = 0usize;
    let mut longest = 0u64;
    for chunk in linked.chunks(CHUNK) {
        let start = p.elapsed_ms();
        if done > 0 && start + longest > u64::from(budget_ms) {
            break;
        }
        let calls: Vec<Call> = chunk
            .iter()
            .map(|u| {
                let mut clear = Map::new();
                clear.insert("external_id".into(), Value::Null);
                api::update_user(&u.id, clear)
            })
            .collect();
        for (u, result) in chunk.iter().zip(zen.write_all(&calls)) {
            let ext = u.external_id.clone().unwrap_or_default();
            match result {
                Ok(_) => {
                    if let Some(d) = state.deleting.as_mut() {
                        d.cleared += 1;
                    }
                    log.info(
                        "ZenQMS user unlinked",
                        &[
                            ("cause", "delete"),
                            ("zenqms_id", &u.id),
                            ("entra_id", &ext),
                            ("changes", &format!("external_id: \"{ext}\" -> null")),
                        ],
                    );
                }
                Err(e) => {
                    failed.push(u.id.clone());
                    log.error(
                        "could not unlink ZenQMS user",
                        &[
                            ("cause", "delete"),
                            ("zenqms_id", &u.id),
                            ("error", &e.to_string()),
                        ],
                    );
                }
            }
        }
        done += chunk.len();
        longest = longest.max(p.elapsed_ms() - start);
    }
    let cleared = state.deleting.as_ref().map_or(0, |d| d.cleared);
    if !failed.is_empty() {
        let sample: Vec<&str> = failed.iter().take(20).map(String::as_str).collect();
        return Err(Failure::transient(format!(
            "delete: {} ZenQMS users could not be unlinked ({}); retry the delete to finish",
            failed.len(),
            sample.join(", ")
        )));
    }
    if done < linked.len() {
        return Ok(Reply::pending(format!(
            "delete pending: {cleared} links cleared so far, {} left",
            linked.len() - done
        )));
    }
    // Done: the instance starts over as a fresh one.
    *state = State::fresh();
    Ok(Reply::done(format!(
        "delete complete: {cleared} external_id links cleared, nothing else changed"
    )))
}
