//! `on-delete`: clear every external_id link this tenant made, and change nothing else.
//!
//! The links are found by searching ZenQMS (not from our state), so links made by an earlier
//! deployment are cleared too. The clearing writes take the one write path ([`Applier`]):
//! logged with cause and before -> after, simulated in a dry run. Resumable and idempotent: a
//! repeated delete finds nothing left.

use serde_json::{Value, json};

use crate::call::Reply;
use crate::clients::zenqms::Zenqms;
use crate::clients::zenqms::api::{self, ZUser};
use crate::config::Config;
use crate::domain::plan::{self, Change, Directory, WriteKind, link_of};
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;
use crate::platform::budget::{self, Step};
use crate::state::State;
use crate::write::{Applier, Write};

/// Most links cleared in one step (one `send-all`); fewer when fewer rounds are left.
const CHUNK: usize = 100;

/// The write that clears `u`'s link.
fn unlink_write(u: &ZUser) -> Write {
    let ext = u.external_id.clone().unwrap_or_default();
    let changes = vec![Change {
        field: "external_id",
        before: Value::String(ext.clone()),
        after: Value::Null,
    }];
    Write {
        call: api::update_user(&u.id, plan::patch_fields(&changes)),
        entra_id: ext,
        upn: String::new(),
        zenqms_id: Some(u.id.clone()),
        kind: WriteKind::Unlink,
        changes,
    }
}

/// Clears the links, as many as the call's budget takes; `state.deleting.cleared` counts them
/// across calls. A dry run logs each as a plan line and writes nothing.
pub fn run(p: &dyn Platform, config: &Config, state: &mut State) -> Result<Reply, Failure> {
    let zen = Zenqms::new(p, config);
    let users = zen
        .search_all(json!({"has_external_id": true}))
        .map_err(|f| Failure {
            message: format!("delete: {}", f.message),
            retryable: f.retryable,
        })?;
    let linked: Vec<ZUser> = users.into_iter().filter(|u| link_of(u).is_some()).collect();
    let total = linked.len();
    let cause = if config.dry_run {
        "delete (dry run)"
    } else {
        "delete"
    };
    let mut out = Applier::new(zen, Log::new(p), cause, Directory::default());
    out.dry_run = config.dry_run;
    let mut done = 0usize;
    let finished = budget::run_steps(
        || budget::fits(p, 1),
        || {
            if done == total {
                return Ok(Step::Done);
            }
            let n = budget::items_that_fit(p, 0, 1, 1, CHUNK).min(total - done);
            let chunk = &linked[done..done + n];
            let writes = chunk.iter().map(unlink_write).collect();
            // The writer's directory holds only the step's users (what a dry run simulates
            // from), so memory does not grow with the tenant.
            out.dir = Directory::new(chunk.iter().cloned());
            let written = out.write(writes);
            done += n;
            // A user whose write failed is left for the retry; a failing ZenQMS stops here.
            Ok(if written.is_err() {
                Step::Paused
            } else {
                Step::More
            })
        },
    )?;
    if let Some(d) = state.deleting.as_mut() {
        d.cleared += out.counts.unlinked;
    }
    if config.dry_run {
        return Ok(Reply::done(format!(
            "dry run delete (nothing written): would clear {total} external_id links and remove the Graph subscriptions"
        )));
    }
    let cleared = state.deleting.as_ref().map_or(0, |d| d.cleared);
    if !out.failed.is_empty() {
        let sample: Vec<&str> = out.failed.iter().take(20).map(String::as_str).collect();
        return Err(Failure::transient(format!(
            "delete: {} ZenQMS users could not be unlinked ({}); retry the delete to finish",
            out.failed.len(),
            sample.join(", ")
        )));
    }
    if !finished {
        return Ok(Reply::pending(format!(
            "delete pending: {cleared} links cleared so far, {} left",
            total - done
        )));
    }
    // Done: the instance starts over as a fresh one.
    *state = State::fresh();
    Ok(Reply::done(format!(
        "delete complete: {cleared} external_id links cleared, nothing else changed"
    )))
}
