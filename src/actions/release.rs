//! `release-held-deactivations`: the admin approves the deactivations the mass-deactivation
//! guard held back, by naming how many they saw held. Replaces "set
//! allow_mass_deactivation=true, redeploy, remember to unset it".
//!
//! The held users are not kept by name (the state is bounded), only their number and a digest
//! of the set ([`crate::domain::guard::digest_add`]). The release starts a full sync that finds every
//! leaver again (gone, disabled, out of scope) as things are now, and applies them above the
//! limit only if they are exactly the users held (same number, same digest); any other set is
//! held again. A set held without a digest (by notifications, more users than the guard
//! names) is counted by name by that full sync first: the admin then releases what it holds.

use serde_json::{Value, json};

use crate::call::Slot;
use crate::config::Config;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;

/// Releases the held deactivations when `input` is the number held now.
///
/// Errors (fatal, nothing changed): no input or not a number, nothing held, a number other
/// than the one held, a sync already under way, a delete in progress.
pub fn run(
    p: &dyn Platform,
    config: &Config,
    input: Option<&str>,
    slot: &mut Slot,
) -> Result<(String, Value), Failure> {
    let log = Log::new(p);
    // Digits only: "+13", "13.0" or "1_3" are not what an admin saw.
    let digits = input.filter(|i| i.bytes().all(|b| b.is_ascii_digit()));
    let state = slot.get(&log)?;
    crate::handlers::same_tenant(state, config)?;
    let held_now = state.blocked.as_ref().map_or(0, |b| b.count);
    let confirmed: usize = digits.and_then(|i| i.parse().ok()).ok_or_else(|| {
        Failure::fatal(format!(
            "input must be the number of held deactivations you saw, in digits ({held_now} are held now)"
        ))
    })?;
    let Some(blocked) = state.blocked.clone() else {
        return Err(Failure::fatal(
            "no deactivations are held back: nothing to release",
        ));
    };
    if confirmed != blocked.count {
        return Err(Failure::fatal(format!(
            "{confirmed} does not match the {} deactivations held now: nothing was released (check the list again)",
            blocked.count
        )));
    }
    if state.deleting.is_some() {
        return Err(Failure::fatal("the instance is being deleted"));
    }
    if state.full_sync.is_some() {
        return Err(Failure::fatal(
            "a full sync is under way: release the held deactivations when it has finished",
        ));
    }
    if config.dry_run {
        return Ok((
            format!("dry run: would release {confirmed} held deactivations"),
            json!({"released": false, "dry_run": true, "held": confirmed, "limit": blocked.limit}),
        ));
    }
    let graph = super::graph(p, config)?;
    let run_id = crate::handlers::start_release_sync(p, &graph, state, confirmed)?;
    state.blocked = None;
    if blocked.digest.is_none() {
        // Held by notifications or a delta round beyond what the guard names: which users
        // is not known whole, so nothing is released blind. The full sync finds them by name
        // and holds them (or applies them, when within the limit); the admin releases that.
        log.warn(
            "held deactivations to be counted by name: a full sync finds them; release again with the number it holds",
            &[
                ("confirmed", &confirmed.to_string()),
                ("limit", &blocked.limit.to_string()),
                ("held_since", &blocked.since.to_rfc3339()),
                ("run_id", &run_id),
            ],
        );
        return Ok((
            format!(
                "{confirmed} held deactivations are counted by name by full sync {run_id}; release again with the number it holds"
            ),
            json!({
                "released": false,
                "recounting": true,
                "confirmed": confirmed,
                "limit": blocked.limit,
                "run_id": run_id,
                "note": "these were held by notifications or a delta round and are not all known by name: a full sync finds them by name and holds them again (or applies them, if within the limit); release again with the number it then holds",
            }),
        ));
    }
    log.warn(
        "held deactivations released by an admin: a full sync applies exactly the users held",
        &[
            ("approved", &confirmed.to_string()),
            ("limit", &blocked.limit.to_string()),
            ("held_since", &blocked.since.to_rfc3339()),
            ("run_id", &run_id),
        ],
    );
    Ok((
        format!("{confirmed} held deactivations released; full sync {run_id} applies them"),
        json!({
            "released": true,
            "approved": confirmed,
            "limit": blocked.limit,
            "run_id": run_id,
            "note": "a full sync finds the leavers again and deactivates them only if they are exactly the users held; any other set is held again",
        }),
    ))
}
