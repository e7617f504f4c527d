//! The exported handlers in domain terms (`on-deploy`, `on-event`, `on-delete`; `describe` is
//! `config::describe`): `wasm.rs` converts WIT values to these and back. Each runs in the call
//! layer (`call.rs`). Here too: starting, continuing and releasing full syncs, and running the
//! queued notification work (`continue_work`). Submodules: `inbound` (webhooks answered at
//! once), `lifecycle` (Graph's lifecycle notifications), `schedule` (the periodic tick and the
//! delta round), `unlink` (the delete's link clearing), `webhook` (parsing a notification body).

pub mod unlink;
pub mod webhook;

use chrono::{SecondsFormat, TimeDelta};

use crate::clients::graph::{self, Graph};
use crate::clients::subscriptions::Subscriptions;
use crate::clients::zenqms::{Zenqms, api};
use crate::config::{self, Config};
use crate::domain::guard;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::round::Round;
use crate::platform::{Platform, Request};
use crate::state::{DeltaLinks, Finished, FullSync, Queue, State};
use crate::sync::Engine;
use crate::sync::realtime::Realtime;

mod inbound;
mod lifecycle;
mod schedule;

use inbound::on_webhook;
use schedule::on_schedule;

/// One deployed instance, as the platform passes it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub webhook_url: String,
    pub config: Vec<(String, String)>,
    pub state: Option<String>,
    pub budget_ms: u32,
    /// The instance's inbox (`seq`, item) as the call starts; empty for webhook calls.
    pub inbox: Vec<(u64, String)>,
}

/// Why `on-event` was called.
#[derive(Debug, Clone)]
pub enum Event {
    Webhook(Request),
    Schedule,
    Resume,
}

pub use crate::call::{CallFailure, CallResult, Outcome, Reply};
use crate::call::{Slot, Unreadable};

fn parse_config(inst: &Instance) -> Result<Config, Failure> {
    config::parse(&inst.config).map_err(|e| Failure::fatal(e.to_string()))
}

fn get_token<'a>(p: &'a dyn Platform, config: &Config) -> Result<Graph<'a>, Failure> {
    let token = graph::parse_token(p.send(graph::token_request(config)))?;
    Ok(Graph::new(p, token, Some(config)))
}

/// `on-deploy`: validate, check both connections, (re)start the initial sync.
pub fn deploy(p: &dyn Platform, inst: &Instance) -> CallResult {
    crate::call::run(
        p,
        &inst.config,
        inst.state.as_deref(),
        &inst.inbox,
        Unreadable::StartOver,
        inst.budget_ms,
        "deploy",
        |p, slot| deploy_inner(p, inst, slot),
    )
}

fn deploy_inner(p: &dyn Platform, inst: &Instance, slot: &mut Slot) -> Result<Reply, Failure> {
    let log = Log::new(p);
    let config = parse_config(inst)?;
    if let Some(warning) = config.base_url_warning() {
        log.warn(&warning, &[]);
    }
    let state = slot.get(&log)?;
    same_tenant(state, &config)?;
    let (token, roles, linked) = check_connections_counting(p, &config, !config.dry_run);
    let (token, roles) = match (token, roles) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(a), Err(b)) => {
            return Err(Failure {
                message: format!("connection checks failed: {a}; {b}"),
                retryable: a.retryable && b.retryable,
            });
        }
        (Err(f), _) | (_, Err(f)) => return Err(f),
    };
    let known = roles.into_iter().map(|r| r.id).collect();
    let mut problems = config::unknown_roles(&config, &known);
    let graph = Graph::new(p, token, Some(&config));
    // A mapped group that does not exist is a configuration error, listed with the others:
    // reading it as "no members" would strip its role from every holder.
    // So is a scope group: reading it as "no members" would deactivate everyone it held.
    problems.extend(
        graph
            .missing_groups(&config.read_groups())?
            .into_iter()
            .map(|g| {
                let key = if config.scope_groups.contains(&g) {
                    "scope_groups"
                } else {
                    "role_mappings"
                };
                format!("{key}: group {g} does not exist in the Entra tenant (Graph answers 404)")
            }),
    );
    if !problems.is_empty() {
        return Err(Failure::fatal(config::ConfigErrors(problems).to_string()));
    }
    if config.dry_run {
        if state.full_sync.is_some() {
            return Err(Failure::fatal(
                "a sync is in progress: run the dry run when it has finished",
            ));
        }
        if state.deleting.is_some() {
            return Err(Failure::fatal(
                "a delete is in progress: deploy (not in a dry run) to cancel it, or delete again to finish it",
            ));
        }
        // Reads everything, writes nothing: no subscriptions, no delta links, no tenant claim.
        state.full_sync = Some(new_full_sync(
            p,
            crate::state::DRY_RUN_SUFFIX.trim_start_matches('-'),
            false,
        ));
        let run = &state.full_sync.as_ref().expect("just set").run_id;
        log.info(
            "dry run started: nothing will be written",
            &[("run_id", run)],
        );
        return run_full_sync(p, &config, &graph, state);
    }
    if let Some(old) = &state.full_sync {
        log.warn(
            "an unfinished initial sync is abandoned; the redeploy starts over",
            &[
                ("run_id", &old.run_id),
                ("batches_done", &old.batches.to_string()),
            ],
        );
    }
    if let Some(d) = state.deleting.as_mut() {
        // Should this deploy fail part-way, the delete goes on and removes whatever
        // subscription the deploy created (none may be left behind by a delete).
        d.subscriptions_removed = false;
    }
    state.tenant_id = Some(config.tenant_id.clone());
    let subs = Subscriptions::new(&graph, p, &inst.webhook_url);
    subs.ensure(&mut state.subscriptions, TimeDelta::MAX)?;
    start_full_sync(p, &graph, state, "deploy", config.allow_mass_deactivation)?;
    if let Some(d) = state.deleting.take() {
        // The admin's latest word wins: a deploy that succeeds while a delete is unfinished
        // (it failed part-way) cancels it. Left in state, the next call would finish the
        // delete after this deploy: its links cleared and its new subscriptions orphaned on
        // Graph (a red team); a deploy that fails leaves the delete to go on.
        log.warn(
            "a delete in progress is cancelled by this deploy: this sync makes the links it cleared again where the linking rule allows",
            &[
                ("delete_started_at", &d.started_at),
                ("links_cleared", &d.cleared.to_string()),
            ],
        );
    }
    if let (Some(sync), Some(n)) = (state.full_sync.as_mut(), linked) {
        sync.linked_hint = u32::try_from(n).unwrap_or(u32::MAX);
    }
    let run = &state.full_sync.as_ref().expect("just started").run_id;
    log.info(
        "initial sync started",
        &[("run_id", run), ("instance", &inst.id)],
    );
    // Checkpoint now, so the subscription ids are stored before the first notification arrives.
    Ok(Reply::pending(format!(
        "deploy: configuration and both connections ok; {} Graph subscriptions ready; initial sync {run} started",
        state.subscriptions.len()
    )))
}

/// Refuses a call whose configuration names another Entra tenant than the one this instance
/// was deployed for: its links, subscriptions and delta links are that tenant's, and acting on
/// them with another tenant's reads would take every linked user for a leaver (and send the
/// client secret to the other tenant). Checked by every call that reads Entra for the
/// instance (deploy, tick, resume, provision-user, release, and a delete before it removes
/// the subscriptions, which are that tenant's).
///
/// Errors: fatal, naming both tenant ids.
pub(crate) fn same_tenant(state: &State, config: &Config) -> Result<(), Failure> {
    match state.tenant_id.as_deref() {
        Some(old) if old != config.tenant_id => Err(Failure::fatal(format!(
            "entra_tenant_id changed from {old} to {new}: this instance belongs to {old} (mixing two tenants' links would corrupt ZenQMS); set entra_tenant_id (and its credentials) back to {old} and delete the instance, then deploy with {new}",
            new = config.tenant_id
        ))),
        _ => Ok(()),
    }
}

/// Both connections checked in one round: the Entra token request and the ZenQMS role list
/// (which proves the ZenQMS token). Each answer as read, for the caller to judge.
pub(crate) fn check_connections(
    p: &dyn Platform,
    config: &Config,
) -> (
    Result<crate::config::Secret, Failure>,
    Result<Vec<api::Role>, Failure>,
) {
    let (token, roles, _) = check_connections_counting(p, config, false);
    (token, roles)
}

/// What [`check_connections_counting`] found: the token, the role list, the linked users.
type Checked = (
    Result<crate::config::Secret, Failure>,
    Result<Vec<api::Role>, Failure>,
    Option<u64>,
);

/// [`check_connections`], and with `count_linked` the number of linked ZenQMS users (the
/// first page of the linked users' search: its total) in the same round, for the full sync's
/// walk (`FullSync::linked_hint`); `None` when not asked or the search failed.
fn check_connections_counting(p: &dyn Platform, config: &Config, count_linked: bool) -> Checked {
    let zen = Zenqms::new(p, config);
    let mut round = Round::new();
    let token_slot = round.add(graph::token_request(config));
    let roles_slot = round.add(zen.request(&api::list_roles()));
    let count_slot =
        count_linked.then(|| round.add(zen.request(&api::search_users(api::linked(), 1))));
    let mut answers = round.send(|reqs| p.send_all(reqs));
    let count = count_slot
        .and_then(|slot| Zenqms::read_page(answers.take(slot)).ok())
        .map(|page| page.total);
    (
        graph::parse_token(answers.take(token_slot)),
        Zenqms::parse_roles(answers.take(roles_slot)),
        count,
    )
}

/// Starts a full sync: first delta links "from now", so that nothing changed while the sync
/// reads users is missed by the backstop afterwards. Links in state younger than
/// [`DELTA_REUSE_HOURS`] are kept (a redeploy): an older position in the change stream only
/// replays more changes (each re-checked against ZenQMS), never fewer, and saves two reads.
/// Links Graph refused must be dropped from state before.
fn start_full_sync(
    p: &dyn Platform,
    graph: &Graph<'_>,
    state: &mut State,
    why: &str,
    allow_mass: bool,
) -> Result<(), Failure> {
    let now = p.now();
    let reusable = state
        .delta
        .as_ref()
        .is_some_and(|d| now - d.issued_at < TimeDelta::hours(DELTA_REUSE_HOURS));
    if !reusable {
        let (users, groups) = graph.delta_latest()?;
        state.delta = Some(DeltaLinks {
            users,
            groups,
            issued_at: now,
        });
    }
    // A full sync covers whatever notifications had queued (not its lifecycle events).
    state.queue.replaced_by_full_sync();
    let mut sync = new_full_sync(p, why, allow_mass);
    // The runs that stand for notifications (see `FullSync::window`); a follow-up inherits
    // its run's.
    sync.window = matches!(why, "queue-overflow" | "delta-expired");
    state.full_sync = Some(sync);
    Ok(())
}

/// More changes arrived than the queue holds (an HR import notified at once, a mass change
/// read by a delta round): a full sync, which reads every user with its bounded checkpoint,
/// takes the queue's place. Its delta links are taken "from now", so the next delta round
/// does not report the same changes again. A full sync already under way is not restarted
/// (a stream of changes would keep it from ever finishing): it runs on, and another one
/// follows it.
fn overflow(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    state: &mut State,
) -> Result<Reply, Failure> {
    Log::new(p).warn(
        "more changes than the notification queue holds: running a full sync instead",
        &[("queue_max", &crate::state::QUEUE_MAX.to_string())],
    );
    match &mut state.full_sync {
        Some(sync) if !sync.dry_run() => {
            sync.again = true;
            state.queue.replaced_by_full_sync();
        }
        _ => {
            // A dry run under way cannot stand for the full sync the queue is owed (a red
            // team: abandoned later, it took the overflow's sync with it): replaced by a real
            // one. (Overflow happens only to real work: a dry_run configuration processes no
            // notifications.)
            if let Some(dry) = state.full_sync.take() {
                Log::new(p).warn(
                    "dry run abandoned: the notification queue overflowed and a real full sync takes its place",
                    &[("run_id", &dry.run_id)],
                );
            }
            start_overflow_sync(p, graph, state)?;
        }
    }
    run_full_sync(p, config, graph, state)
}

/// The full sync that takes an overflowed queue's place, with delta links "from now" (older
/// ones would report the same changes again).
fn start_overflow_sync(
    p: &dyn Platform,
    graph: &Graph<'_>,
    state: &mut State,
) -> Result<(), Failure> {
    state.delta = None;
    start_full_sync(p, graph, state, "queue-overflow", false)
}

/// The full sync an admin's release of held deactivations starts
/// ([`crate::actions`]): it may deactivate up to `approved` even above the limit. Returns its
/// run id.
///
/// Errors: Graph refused the delta links.
pub fn start_release_sync(
    p: &dyn Platform,
    graph: &Graph<'_>,
    state: &mut State,
    approved: usize,
) -> Result<String, Failure> {
    let digest = state.blocked.as_ref().and_then(|b| b.digest);
    start_full_sync(p, graph, state, "release", false)?;
    let sync = state.full_sync.as_mut().expect("just started");
    // A held set not known by name is not released: the run counts it by name (and holds
    // it, over the limit, for a release that can name it).
    if digest.is_some() {
        sync.released = u32::try_from(approved).unwrap_or(u32::MAX);
        sync.released_digest = digest;
    }
    Ok(sync.run_id.clone())
}

/// How old a redeploy may find its delta links and keep them (they live 7 days; the hourly
/// schedule renews them).
const DELTA_REUSE_HOURS: i64 = 24;

fn new_full_sync(p: &dyn Platform, why: &str, allow_mass: bool) -> FullSync {
    let now = p.now();
    FullSync::start(
        format!("sync-{}-{why}", now.format("%Y%m%dT%H%M%SZ")),
        now,
        allow_mass,
    )
}

/// Continues the checkpointed full sync in `state`.
fn run_full_sync(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    state: &mut State,
) -> Result<Reply, Failure> {
    // What the rest of the state takes, for the checkpoint's bound (see
    // `Engine::state_rest_bytes`): the full sync is the only part of it this call changes.
    let rest_bytes = state.bytes_without_full_sync();
    let sync = state.full_sync.as_mut().expect("caller checked");
    // A run keeps the mode it was started in (`FullSync::dry_run`): the admin may change
    // `dry_run` between its calls (the platform resumes it at once, so an edit lands there).
    match (sync.dry_run(), config.dry_run) {
        (true, false) => {
            // Going on would write what was planned as a dry run; finishing it writing
            // nothing would be a dry run nobody asks for now.
            let (run, again) = (sync.run_id.clone(), sync.again);
            state.full_sync = None;
            Log::new(p).warn(
                "dry run abandoned: dry_run is now false; nothing was written (deploy to run the sync for real)",
                &[("run_id", &run)],
            );
            if again {
                // A queue that overflowed meanwhile is owed a real full sync (its changes
                // are past the delta links).
                start_overflow_sync(p, graph, state)?;
                return Ok(Reply::pending(format!(
                    "dry run {run} abandoned (nothing written): dry_run is now false; a full sync follows (the notification queue overflowed)"
                )));
            }
            return Ok(Reply::done(format!(
                "dry run {run} abandoned (nothing written): dry_run is now false; deploy to apply the configuration"
            )));
        }
        (false, true) => {
            // A real run is never finished as a dry run (its leavers would stay active): it
            // waits, checkpointed, and goes on once `dry_run` is false again, reading the
            // members it carries again (the wait may be long).
            sync.members.drop_read();
            let run = sync.run_id.clone();
            let batches = sync.batches;
            Log::new(p).warn(
                "initial sync waits: dry_run=true, and a run started for real never writes as a dry run; it goes on when dry_run is false",
                &[("run_id", &run), ("batches_done", &batches.to_string())],
            );
            return Ok(Reply::waiting(format!(
                "initial sync {run} waits after {batches} batches: dry_run=true (nothing written); it goes on at the first call after dry_run is set to false"
            )));
        }
        _ => {}
    }
    sync.calls += 1;
    let mut engine = Engine::new(p, config, graph, &sync.run_id);
    engine.learned_domains = state.email_domains.clone();
    engine.state_rest_bytes = rest_bytes;
    if sync.window {
        engine.window_counted = guard::counted(&state.recent_deactivations, p.now());
    }
    let result = engine.run(sync);
    if sync.window && !sync.dry_run() {
        // The deactivations its guard approved count from the approval on (those the run
        // then finds enabled again stay counted: the safe side), and again when a later call
        // sends them, whether or not the call ended in a failure, in the hour the call ends
        // (see `Engine::window_count`).
        guard::record(
            &mut state.recent_deactivations,
            engine.window_count(),
            p.now(),
        );
    }
    let progress = result.map_err(|f| Failure {
        message: format!(
            "initial sync {} stopped after {} batches: {}",
            sync.run_id, sync.batches, f.message
        ),
        retryable: f.retryable,
    })?;
    if !progress.finished {
        if config.dry_run {
            return Ok(Reply::pending(format!(
                "dry run {} pending after {} batches (call {}, nothing written): this call would have {}",
                sync.run_id, sync.batches, sync.calls, progress.counts
            )));
        }
        return Ok(Reply::pending(format!(
            "initial sync {} pending after {} batches (call {}): this call {}",
            sync.run_id, sync.batches, sync.calls, progress.counts
        )));
    }
    let mut sync = state.full_sync.take().expect("checked above");
    // The run listed every user: its member domains are the tenant's verified ones now.
    state.email_domains = std::mem::take(&mut sync.email_domains);
    let blocked = guard::held_after_full_sync(sync.blocked.clone(), sync.held_meanwhile.take());
    let held = guard::held_summary(blocked.as_ref());
    if config.dry_run {
        // Nothing is held by a dry run: what the guard would hold is said as a plan.
        let held = blocked.as_ref().map_or(String::new(), |b| {
            format!(
                "; {} DEACTIVATIONS WOULD BE HELD BACK (limit {}): a real run would deactivate none of them",
                b.count, b.limit
            )
        });
        return Ok(Reply::done(format!(
            "dry run {} complete (nothing written): would have {}{held}",
            sync.run_id, sync.totals
        )));
    }
    let summary = format!(
        "initial sync {} complete: {} batches in {} calls; {}{held}",
        sync.run_id, sync.batches, sync.calls, sync.totals
    );
    state.blocked = blocked;
    state.last_full_sync = Some(Finished {
        run_id: sync.run_id,
        started_at: sync.started_at,
        finished_at: p.now(),
        batches: sync.batches,
        totals: sync.totals,
    });
    if sync.again {
        // The queue overflowed during the run (or Graph refused the delta links): changes to
        // users it had read are covered by another run, which the next call (resume) carries
        // on.
        start_overflow_sync(p, graph, state)?;
        return Ok(Reply::pending(format!(
            "{summary}; another full sync follows (the notification queue overflowed, or Graph refused the delta links, during this one)"
        )));
    }
    if sync.follow_up {
        // Users started leaving after the guard counted: another run judges them, its guard
        // counting this run's deactivations with its own.
        start_full_sync(p, graph, state, "follow-up", false)?;
        if let Some(next) = state.full_sync.as_mut() {
            next.window = sync.window;
            // A run of the window's counted its deactivations into it already.
            next.prior_deactivations = if sync.window {
                0
            } else {
                sync.totals.deactivated
            };
        }
        return Ok(Reply::pending(format!(
            "{summary}; another full sync follows (users started leaving after its guard counted them: the next run judges them, counting this run's deactivations)"
        )));
    }
    Ok(Reply::done(summary))
}

/// `on-event`.
pub fn event(p: &dyn Platform, inst: &Instance, event: &Event) -> CallResult {
    let (what, unreadable) = match event {
        Event::Webhook(_) => ("webhook", Unreadable::Refuse),
        Event::Resume => ("resume", Unreadable::Refuse),
        Event::Schedule => ("schedule", Unreadable::Refuse),
    };
    crate::call::run(
        p,
        &inst.config,
        inst.state.as_deref(),
        &inst.inbox,
        unreadable,
        inst.budget_ms,
        what,
        |p, slot| match event {
            Event::Webhook(req) => on_webhook(p, inst, req, slot),
            Event::Resume => on_resume(p, inst, slot),
            Event::Schedule => on_schedule(p, inst, slot),
        },
    )
}

/// Continues checkpointed work: a delete, then queued notifications, then a full sync.
fn on_resume(p: &dyn Platform, inst: &Instance, slot: &mut Slot) -> Result<Reply, Failure> {
    let state = slot.get(&Log::new(p))?;
    if !state.has_work() && state.queue.lifecycle.is_empty() {
        return Ok(Reply::done("resume: no checkpointed work"));
    }
    let config = parse_config(inst)?;
    if state.deleting.is_some() {
        return continue_delete(p, &config, &inst.webhook_url, state);
    }
    same_tenant(state, &config)?;
    if config.dry_run {
        // Lifecycle events are the subscriptions' upkeep, not ZenQMS: acted on in a dry run
        // too, so a subscription Graph removed leaves the state now (a red team: it stayed
        // there as live for weeks), whether or not a dry run is under way.
        let graph = get_token(p, &config)?;
        let upkeep = if state.queue.lifecycle.is_empty() {
            Ok(())
        } else {
            lifecycle::apply(p, &graph, &inst.webhook_url, state)
        };
        if state.full_sync.as_ref().is_some_and(|f| f.dry_run()) {
            // A dry run goes on whatever the upkeep, as real work does (a red team: a refused
            // re-creation failed every resume of an admin's preview before its step).
            return despite_upkeep(&Log::new(p), upkeep, || {
                run_full_sync(p, &config, &graph, state)
            });
        }
        upkeep?;
        // Queued changes and a real run are real work: while `dry_run` is true nothing is
        // processed (as a webhook or a tick does then), and none of it is dropped.
        if let Some(f) = state.full_sync.as_mut() {
            // What the run carries was read before the wait, which may be long: read again.
            f.members.drop_read();
        }
        return Ok(Reply::waiting(
            "resume: dry_run=true: the checkpointed work waits (nothing processed, nothing written); it goes on at the first call after dry_run is set to false",
        ));
    }
    if state.queue.is_empty() {
        let graph = get_token(p, &config)?;
        return run_full_sync(p, &config, &graph, state);
    }
    let graph = get_token(p, &config)?;
    let upkeep = lifecycle::apply(p, &graph, &inst.webhook_url, state);
    despite_upkeep(&Log::new(p), upkeep, || {
        continue_work(p, &config, &graph, state, "resume")
    })
}

/// Runs `work` whatever the subscriptions' upkeep (renewals, re-creations, lifecycle events)
/// did: queued changes and the delta backstop never wait for Graph to take a subscription
/// request. When the upkeep failed, it is logged as an error; a call whose work is done then
/// fails with the upkeep's failure (so the platform shows it, and retries it if retryable),
/// naming what the work did; a call whose work continues stays pending (the platform resumes
/// it) and says the upkeep failed in its summary. The upkeep is tried again by the next call
/// that does it (the next tick; the next call after a lifecycle event).
pub(super) fn despite_upkeep(
    log: &Log,
    upkeep: Result<(), Failure>,
    work: impl FnOnce() -> Result<Reply, Failure>,
) -> Result<Reply, Failure> {
    let Err(failed) = upkeep else {
        return work();
    };
    log.error(
        "Graph subscription upkeep failed: queued changes and the delta round run anyway",
        &[("error", &failed.message)],
    );
    match work() {
        Ok(mut reply) if reply.pending => {
            reply.summary = format!(
                "{} (Graph subscription upkeep failed: {})",
                reply.summary, failed.message
            );
            Ok(reply)
        }
        Ok(reply) => Err(Failure {
            message: format!("{}; meanwhile {}", failed.message, reply.summary),
            retryable: failed.retryable,
        }),
        Err(f) => Err(Failure {
            message: format!("{}; and {}", failed.message, f.message),
            retryable: failed.retryable || f.retryable,
        }),
    }
}

/// Runs checkpointed work in order: a due delta round, queued users and groups, a full sync.
fn continue_work(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    state: &mut State,
    what: &str,
) -> Result<Reply, Failure> {
    if state.queue.overflow {
        return overflow(p, config, graph, state);
    }
    let mut round_ran = false;
    let held_before = state.blocked.clone();
    if state.queue.delta_round {
        round_ran = true;
        match schedule::delta_round(p, config, graph, state)? {
            schedule::Round::Queued => {}
            schedule::Round::Expired => {
                return run_full_sync(p, config, graph, state);
            }
        }
        if state.queue.overflow {
            // The round brought more than the queue holds: none of it is applied (its
            // leaving users were not all counted); the full sync judges everything together.
            return overflow(p, config, graph, state);
        }
        // The round made progress; what it queued waits for the next call if no step fits,
        // and for the rest of the round if it is not complete (the guard judges it whole).
        if state.queue.delta_round
            || !crate::platform::budget::fits(p, crate::platform::budget::MIN_STEP_ROUNDS)
        {
            let read = if state.queue.delta_round {
                "read in part"
            } else {
                "done"
            };
            return Ok(Reply::pending(format!(
                "{what}: delta round {read}; queued changes continue on resume"
            )));
        }
    }
    // (Lifecycle events left queued after a refusal are not this work: see `work_left`.)
    if state.queue.work_left() {
        if let Some(f) = state.full_sync.as_mut() {
            // Changes applied between a run's calls (a group's holders recomputed, a user's
            // roles from its groups read now): the members the run carries may predate them,
            // and its later calls would undo what the queue does, so they are read again.
            f.members.drop_read();
        }
        let mut queue = std::mem::take(&mut state.queue);
        let cause = queue.audit_cause();
        let (done, rt) = with_realtime(p, config, graph, state, &cause, |rt| {
            rt.run_queue(&mut queue)
        });
        let counts = rt.out.counts;
        state.queue = queue;
        state.queue.scope_blocked = rt.scope_broken;
        let done = done?;
        let left = state.queue.users.len() + state.queue.groups.len();
        // What this call's delta round or notifications held back, when they did.
        let held = if state.blocked == held_before {
            String::new()
        } else {
            guard::held_summary(state.blocked.as_ref())
        };
        let summary = format!(
            "{what}: queued changes {}; {counts}{held}",
            if done {
                "done".to_string()
            } else {
                format!("pending ({left} left)")
            }
        );
        return Ok(Reply {
            response: None,
            // A checkpointed full sync makes the call pending too (the call layer derives it).
            pending: !done,
            summary,
            inbox: Vec::new(),
            result: None,
            waits: false,
        });
    }
    if state.full_sync.is_some() {
        return run_full_sync(p, config, graph, state);
    }
    if round_ran {
        // A delta round that queued nothing to apply: what it held back (if anything) is
        // said here too, not only in the error line.
        let held = guard::held_summary(state.blocked.as_ref());
        return Ok(Reply::done(format!(
            "{what}: delta round done, nothing to apply{held}"
        )));
    }
    Ok(Reply::done(format!("{what}: no checkpointed work")))
}

/// Runs real-time work (queued notifications, or an admin's `provision-user`) under the one
/// mass-deactivation guard's rolling window (see `guard`): the window and the learned domains
/// come from `state`, and go back to it with any deactivations the guard held. Returns the
/// work's result and the [`Realtime`] it ran in (its counts and trace).
pub(crate) fn with_realtime<'a, T>(
    p: &'a dyn Platform,
    config: &'a Config,
    graph: &'a Graph<'a>,
    state: &mut State,
    cause: &str,
    work: impl FnOnce(&mut Realtime<'a>) -> Result<T, Failure>,
) -> (Result<T, Failure>, Realtime<'a>) {
    let mut rt = Realtime::new(p, config, graph, cause);
    rt.window = state.recent_deactivations.clone();
    rt.learned_domains = state.email_domains.clone();
    rt.held_already = state
        .blocked
        .iter()
        .flat_map(|b| b.sample.iter().cloned())
        .collect();
    rt.held_unnamed = state
        .blocked
        .as_ref()
        .map_or(0, |b| b.count.saturating_sub(b.sample.len()));
    let result = work(&mut rt);
    state.email_domains = std::mem::take(&mut rt.learned_domains);
    // An admin's dry run (`provision-user` with dry_run) holds and deactivates nobody: what
    // the guard would do is in its result, not in the log or the window.
    if rt.out.dry_run {
        return (result, rt);
    }
    // Every deactivation let through and sent counts, whatever its answer (see
    // `Realtime::deactivated`).
    // Counted in the hour the call ends, not the one it began in: its deactivations were
    // sent between, and each must count for 24 hours from when it was sent (a red team: a
    // call begun at 12:59:59 sent them at 13:00:21, counted under 12:00, which stopped
    // counting at 13:00 the next day).
    // A deactivation ZenQMS refused (429, 4xx) was not made: not counted (a red team: a
    // throttled ZenQMS at 3 s calls made one leaver's send count five times).
    let now = p.now();
    let made = rt.deactivated.saturating_sub(rt.out.deactivations_refused);
    guard::record(&mut state.recent_deactivations, made, now);
    if let (true, Some((limit, _))) = (rt.tripped, rt.guard) {
        guard::trip(&mut state.recent_deactivations, limit, now);
    }
    if let (false, Some((limit, _))) = (rt.held.is_empty(), rt.guard) {
        let mut held = rt.held.clone();
        held.sort();
        held.dedup();
        let blocked = guard::block(
            &rt.out.log,
            &format!(
                "more than {limit} deactivations by notifications or delta rounds within {} hours; these were not applied",
                guard::WINDOW_HOURS
            ),
            &rt.out.cause,
            &held,
            held.len(),
            limit,
            now,
            rt.out.dry_run,
        );
        guard::hold(state, blocked);
    }
    (result, rt)
}

/// `on-delete`: delete our subscriptions and clear every external_id link, changing nothing else.
pub fn delete(p: &dyn Platform, inst: &Instance) -> CallResult {
    crate::call::run(
        p,
        &inst.config,
        inst.state.as_deref(),
        &inst.inbox,
        Unreadable::Ignore,
        inst.budget_ms,
        "delete",
        |p, slot| delete_inner(p, inst, slot),
    )
}

fn delete_inner(p: &dyn Platform, inst: &Instance, slot: &mut Slot) -> Result<Reply, Failure> {
    let config = parse_config(inst)?;
    let state = slot.get(&Log::new(p))?;
    if state.deleting.is_none() {
        // Refused before the delete changes anything (a red team: the refused delete had
        // already set itself going, and the next tick finished it once the tenant was set
        // back, though nobody asked to delete again).
        same_tenant(state, &config)?;
    }
    if let (None, Some(b)) = (&state.deleting, &state.blocked) {
        // The delete changes nothing but links, so what the guard holds is never applied:
        // said once, loudly, with the users it names (their links are about to be cleared,
        // and no later run could find them again).
        guard::log_held(
            &Log::new(p),
            "deleting the instance with deactivations held back: they are never applied and those ZenQMS accounts stay active",
            b,
            "deactivate these accounts in ZenQMS by hand if their owners have left; or release the held deactivations before deleting",
        );
    }
    if config.dry_run {
        // Logs the plan and writes nothing. It answers with a failure on purpose: a delete
        // that succeeds makes the platform forget the instance, which would orphan its live
        // subscriptions and links. The state stays as it was.
        let mut scratch = state.clone();
        scratch.full_sync = None;
        scratch.queue = Queue::default();
        let plan = crate::handlers::unlink::run(p, &config, &mut scratch)?;
        return Err(Failure::fatal(format!(
            "{}; the instance is kept: set dry_run=false and delete again to delete it",
            plan.summary
        )));
    }
    if state.deleting.is_none() && state.queue.work_left() {
        // Changes Entra notified and not applied yet (a ZenQMS outage, say) are dropped with
        // the instance: said loudly, with the users they name, as held deactivations are
        // (once their links are cleared no later run could find those accounts).
        let q = &state.queue;
        let users: Vec<String> = q.users.iter().take(20).cloned().collect();
        Log::new(p).error(
            "deleting the instance with notified changes not applied yet: they are never applied (a leaver among them stays active in ZenQMS)",
            &[
                ("users", &users.join(",")),
                ("users_total", &q.users.len().to_string()),
                ("groups_total", &q.groups.len().to_string()),
                ("delta_round_due", &q.delta_round.to_string()),
                ("cause", &q.cause),
                (
                    "next_step",
                    "check these users' ZenQMS accounts by hand (deactivate those whose owners have left); or let the instance finish its queued work before deleting",
                ),
            ],
        );
    }
    state.full_sync = None;
    state.queue = Queue::default();
    if state.deleting.is_none() {
        state.deleting = Some(crate::state::Deleting {
            started_at: p.now().to_rfc3339_opts(SecondsFormat::Secs, true),
            ..Default::default()
        });
    }
    continue_delete(p, &config, &inst.webhook_url, state)
}

/// The rest of a delete begun, in whichever call gets there (the delete, a resume, a tick):
/// its subscriptions removed first ([`remove_subscriptions`]), then the links cleared.
pub(super) fn continue_delete(
    p: &dyn Platform,
    config: &Config,
    webhook_url: &str,
    state: &mut State,
) -> Result<Reply, Failure> {
    if config.dry_run {
        // A delete begun for real is not carried on, nor previewed, by a call under dry_run
        // (a red team: a dry-run resume moved the real delete's cursor past links it never
        // cleared); it waits, not pending, until dry_run is false again.
        return Ok(Reply::waiting(
            "delete pending: waits while dry_run is true (set dry_run=false to let it finish)",
        ));
    }
    remove_subscriptions(p, config, webhook_url, state)?;
    crate::handlers::unlink::run(p, config, state)
}

/// A delete's first part, in whichever call of it gets there (the delete or a resume): every
/// subscription of this instance removed from Graph (see [`crate::state::Deleting`]), before
/// any link is cleared, so that no notification re-links anyone meanwhile. Nothing to do once
/// done.
///
/// Errors: the token, the listing or a removal failed (retryable when Graph throttled or was
/// down: the next call of the delete tries again).
fn remove_subscriptions(
    p: &dyn Platform,
    config: &Config,
    webhook_url: &str,
    state: &mut State,
) -> Result<(), Failure> {
    if state
        .deleting
        .as_ref()
        .is_none_or(|d| d.subscriptions_removed)
    {
        return Ok(());
    }
    // The subscriptions are the deployed tenant's: removed with another tenant's token, Graph
    // would answer 404 for each (read as gone) and leave them live for weeks (a red team).
    same_tenant(state, config)?;
    let graph = get_token(p, config)?;
    Subscriptions::new(&graph, p, webhook_url)
        .delete_all(&mut state.subscriptions)
        .map_err(|f| Failure {
            message: format!(
                "delete: could not remove the Graph subscriptions: {}",
                f.message
            ),
            retryable: f.retryable,
        })?;
    if let Some(d) = state.deleting.as_mut() {
        d.subscriptions_removed = true;
    }
    Ok(())
}
