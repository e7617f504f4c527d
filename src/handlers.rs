//! The three exported handlers in domain terms: `lib.rs` converts WIT values to these and back.

use chrono::{SecondsFormat, TimeDelta};

use crate::config::{self, Config};
use crate::failure::Failure;
use crate::graph::{self, Graph};
use crate::log::Log;
use crate::platform::{HttpResult, Platform, Request, Response};
use crate::realtime::Realtime;
use crate::retry::Resilient;
use crate::state::{Counts, DeltaLinks, Finished, FullSync, Phase, Queue, State};
use crate::subscriptions::Subscriptions;
use crate::sync::Engine;
use crate::zenqms::{Zenqms, api};

mod inbound;
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
}

/// Why `on-event` was called.
#[derive(Debug, Clone)]
pub enum Event {
    Webhook(Request),
    Schedule,
    Resume,
}

/// A successful call's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub response: Option<Response>,
    pub state: Option<String>,
    pub pending: bool,
    pub summary: String,
}

/// A failed call's result: the failure and the progress to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFailure {
    pub message: String,
    pub state: Option<String>,
    pub retryable: bool,
}

impl From<Failure> for CallFailure {
    fn from(f: Failure) -> Self {
        CallFailure {
            message: f.message,
            state: None,
            retryable: f.retryable,
        }
    }
}

type CallResult = Result<Outcome, CallFailure>;

/// Runs a handler over a retrying platform, turns a transient failure that ran out of budget
/// into a checkpoint (`pending`), and logs the call's one summary line (or its failure).
fn call(
    p: &dyn Platform,
    budget_ms: u32,
    what: &str,
    handler: impl FnOnce(&dyn Platform) -> CallResult,
) -> CallResult {
    let resilient = Resilient::new(p, budget_ms);
    let mut result = handler(&resilient);
    if let Err(f) = &result
        && f.retryable
        && resilient.out_of_budget()
        && let Some(state) = &f.state
    {
        result = Ok(Outcome {
            // A webhook's work is queued in state: Graph need not redeliver it.
            response: (what == "webhook")
                .then(|| Response::text(202, "application/json", "{\"queued\": true}")),
            state: Some(state.clone()),
            pending: true,
            summary: format!(
                "{what}: paused, budget spent waiting on a transient failure ({}); continues on resume",
                f.message
            ),
        });
    }
    let log = Log::new(p);
    if result.is_ok() && resilient.retries() > 0 {
        log.info(
            "transient failures retried",
            &[
                ("call", what),
                ("retries", &resilient.retries().to_string()),
            ],
        );
    }
    match &result {
        Ok(o) => log.info(&o.summary, &[("call", what), ("status", "ok")]),
        Err(f) => log.error(
            &format!("{what} failed: {}", f.message),
            &[
                ("call", what),
                ("status", "failed"),
                ("retryable", if f.retryable { "true" } else { "false" }),
            ],
        ),
    }
    result
}

fn parse_config(inst: &Instance) -> Result<Config, Failure> {
    config::parse(&inst.config).map_err(|e| Failure::fatal(e.to_string()))
}

fn get_token<'a>(p: &'a dyn Platform, config: &Config) -> Result<Graph<'a>, Failure> {
    let token = graph::parse_token(p.send(graph::token_request(config)))?;
    Ok(Graph::new(p, token, Some(config)))
}

/// `on-deploy`: validate, check both connections, (re)start the initial sync.
pub fn deploy(p: &dyn Platform, inst: &Instance) -> CallResult {
    call(p, inst.budget_ms, "deploy", |p| deploy_inner(p, inst))
}

fn deploy_inner(p: &dyn Platform, inst: &Instance) -> CallResult {
    let log = Log::new(p);
    let config = parse_config(inst)?;
    let mut state = State::parse(inst.state.as_deref()).unwrap_or_else(|f| {
        log.warn(
            "stored state ignored on redeploy",
            &[("reason", &f.message)],
        );
        State::parse(None).expect("fresh state")
    });
    if let Some(old) = state
        .tenant_id
        .as_deref()
        .filter(|t| *t != config.tenant_id)
    {
        return Err(Failure::fatal(format!(
            "entra_tenant_id changed from {old} to {}: delete the instance first (mixing two tenants' links would corrupt ZenQMS)",
            config.tenant_id
        ))
        .into());
    }
    // Both connections are checked in one round: the token request and the ZenQMS role list.
    let zen = Zenqms::new(p, &config);
    let mut answers = p
        .send_all(vec![
            graph::token_request(&config),
            zen.request(&api::list_roles()),
        ])
        .into_iter();
    let token = graph::parse_token(answers.next().expect("two answers"));
    let roles = Zenqms::parse_roles(answers.next().expect("two answers"));
    let (token, roles) = match (token, roles) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(a), Err(b)) => {
            return Err(Failure {
                message: format!("connection checks failed: {a}; {b}"),
                retryable: a.retryable && b.retryable,
            }
            .into());
        }
        (Err(f), _) | (_, Err(f)) => return Err(f.into()),
    };
    let known = roles.into_iter().map(|r| r.id).collect();
    let unknown = config::unknown_roles(&config, &known);
    if !unknown.is_empty() {
        return Err(Failure::fatal(config::ConfigErrors(unknown).to_string()).into());
    }
    let graph = Graph::new(p, token, Some(&config));
    if config.dry_run {
        if state.full_sync.is_some() {
            return Err(Failure::fatal(
                "a sync is in progress: run the dry run when it has finished",
            )
            .into());
        }
        // Reads everything, writes nothing: no subscriptions, no delta links, no tenant claim.
        state.full_sync = Some(new_full_sync(p, "dryrun", false));
        let run = &state.full_sync.as_ref().expect("just set").run_id;
        log.info(
            "dry run started: nothing will be written",
            &[("run_id", run)],
        );
        return run_full_sync(p, &config, &graph, state, inst.budget_ms, None);
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
    state.tenant_id = Some(config.tenant_id.clone());
    let subs = Subscriptions::new(&graph, p, &inst.webhook_url);
    if let Err(f) = subs.ensure(&mut state.subscriptions, TimeDelta::MAX) {
        return Err(keep(&state, f));
    }
    start_full_sync(
        p,
        &graph,
        &mut state,
        "deploy",
        config.allow_mass_deactivation,
    )
    .map_err(|f| keep(&state, f))?;
    let run = &state.full_sync.as_ref().expect("just started").run_id;
    log.info(
        "initial sync started",
        &[("run_id", run), ("instance", &inst.id)],
    );
    // Checkpoint now, so the subscription ids are stored before the first notification arrives.
    Ok(Outcome {
        response: None,
        state: Some(state.to_json()),
        pending: true,
        summary: format!(
            "deploy: configuration and both connections ok; {} Graph subscriptions ready; initial sync {run} started",
            state.subscriptions.len()
        ),
    })
}

/// A failure that keeps the progress in `state` (e.g. subscriptions already created).
fn keep(state: &State, f: Failure) -> CallFailure {
    CallFailure {
        message: f.message,
        state: Some(state.to_json()),
        retryable: f.retryable,
    }
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
    // A full sync covers whatever notifications had queued.
    state.queue = Queue::default();
    state.full_sync = Some(new_full_sync(p, why, allow_mass));
    Ok(())
}

/// How old a redeploy may find its delta links and keep them (they live 7 days; the hourly
/// schedule renews them).
const DELTA_REUSE_HOURS: i64 = 24;

fn new_full_sync(p: &dyn Platform, why: &str, allow_mass: bool) -> FullSync {
    let now = p.now();
    FullSync {
        run_id: format!("sync-{}-{why}", now.format("%Y%m%dT%H%M%SZ")),
        started_at: now,
        phase: Phase::Users {
            next: Graph::users_url(),
        },
        batches: 0,
        calls: 0,
        totals: Counts::default(),
        deferred: Vec::new(),
        allow_mass,
        guard_checked: false,
        blocked: None,
        unseen: None,
    }
}

/// Continues the checkpointed full sync in `state`.
fn run_full_sync(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    mut state: State,
    budget_ms: u32,
    directory_page_1: Option<HttpResult>,
) -> CallResult {
    let mut sync = state.full_sync.take().expect("caller checked");
    sync.calls += 1;
    let next_page = match &sync.phase {
        Phase::Users { next } => Some(next.clone()),
        _ => None,
    };
    let progress = Engine::new(
        p,
        config,
        graph,
        u64::from(budget_ms),
        &sync.run_id,
        directory_page_1,
        next_page.as_deref(),
    )
    .and_then(|mut engine| engine.run(&mut sync));
    let progress = match progress {
        Ok(progress) => progress,
        Err(f) => {
            let message = format!(
                "initial sync {} stopped after {} batches: {}",
                sync.run_id, sync.batches, f.message
            );
            state.full_sync = Some(sync);
            return Err(CallFailure {
                message,
                state: Some(state.to_json()),
                retryable: f.retryable,
            });
        }
    };
    if progress.finished {
        let held = sync.blocked.as_ref().map_or(String::new(), |b| {
            format!(
                "; {} DEACTIVATIONS HELD BACK (limit {}): see the error above",
                b.count, b.limit
            )
        });
        if config.dry_run {
            let summary = format!(
                "dry run {} complete (nothing written): would have {}{held}",
                sync.run_id, sync.totals
            );
            return Ok(Outcome {
                response: None,
                state: Some(state.to_json()),
                pending: false,
                summary,
            });
        }
        let summary = format!(
            "initial sync {} complete: {} batches in {} calls; {}{held}",
            sync.run_id, sync.batches, sync.calls, sync.totals
        );
        state.blocked = sync.blocked.clone();
        state.last_full_sync = Some(Finished {
            run_id: sync.run_id,
            started_at: sync.started_at,
            finished_at: p.now(),
            batches: sync.batches,
            totals: sync.totals,
        });
        Ok(Outcome {
            response: None,
            state: Some(state.to_json()),
            pending: false,
            summary,
        })
    } else {
        let summary = format!(
            "initial sync {} pending after {} batches (call {}): this call {}",
            sync.run_id, sync.batches, sync.calls, progress.counts
        );
        state.full_sync = Some(sync);
        Ok(Outcome {
            response: None,
            state: Some(state.to_json()),
            pending: true,
            summary,
        })
    }
}

/// `on-event`.
pub fn event(p: &dyn Platform, inst: &Instance, event: &Event) -> CallResult {
    match event {
        Event::Webhook(req) => call(p, inst.budget_ms, "webhook", |p| on_webhook(p, inst, req)),
        Event::Resume => call(p, inst.budget_ms, "resume", |p| on_resume(p, inst)),
        Event::Schedule => call(p, inst.budget_ms, "schedule", |p| on_schedule(p, inst)),
    }
}

fn nothing(summary: String) -> Outcome {
    Outcome {
        response: None,
        state: None,
        pending: false,
        summary,
    }
}

/// Continues checkpointed work: a delete, then queued notifications, then a full sync.
fn on_resume(p: &dyn Platform, inst: &Instance) -> CallResult {
    let state = State::parse(inst.state.as_deref())?;
    if state.deleting.is_none() && state.queue.is_empty() && state.full_sync.is_none() {
        return Ok(nothing("resume: no checkpointed work".into()));
    }
    let config = parse_config(inst)?;
    if state.deleting.is_some() {
        return crate::unlink::run(p, &config, state, inst.budget_ms);
    }
    if state.queue.is_empty() {
        // A full sync's call: the token and ZenQMS's first directory page in one round.
        let zen = Zenqms::new(p, &config);
        let mut answers = p
            .send_all(vec![
                graph::token_request(&config),
                zen.request(&api::search_users(serde_json::json!({}), 1)),
            ])
            .into_iter();
        let token = graph::parse_token(answers.next().expect("two answers"))?;
        let graph = Graph::new(p, token, Some(&config));
        return run_full_sync(p, &config, &graph, state, inst.budget_ms, answers.next());
    }
    let graph = get_token(p, &config)?;
    continue_work(p, &config, &graph, state, inst.budget_ms, "resume")
}

fn continue_work(
    p: &dyn Platform,
    config: &Config,
    graph: &Graph<'_>,
    mut state: State,
    budget_ms: u32,
    what: &str,
) -> CallResult {
    if !state.queue.is_empty() {
        let mut queue = std::mem::take(&mut state.queue);
        let mut rt = Realtime::new(p, config, graph, &queue.cause);
        let done = rt.run_queue(&mut queue, u64::from(budget_ms));
        let counts = rt.out.counts;
        state.queue = queue;
        let done = done.map_err(|f| keep(&state, f))?;
        let left = state.queue.users.len() + state.queue.groups.len();
        return Ok(Outcome {
            response: None,
            state: Some(state.to_json()),
            pending: !done || state.full_sync.is_some(),
            summary: format!(
                "{what}: queued changes {}; {counts}",
                if done {
                    "done".to_string()
                } else {
                    format!("pending ({left} left)")
                }
            ),
        });
    }
    if state.full_sync.is_some() {
        return run_full_sync(p, config, graph, state, budget_ms, None);
    }
    Ok(nothing(format!("{what}: no checkpointed work")))
}

/// `on-delete`: delete our subscriptions and clear every external_id link, changing nothing else.
pub fn delete(p: &dyn Platform, inst: &Instance) -> CallResult {
    call(p, inst.budget_ms, "delete", |p| delete_inner(p, inst))
}

fn delete_inner(p: &dyn Platform, inst: &Instance) -> CallResult {
    let config = parse_config(inst)?;
    let mut state = State::parse(inst.state.as_deref()).unwrap_or_default();
    state.full_sync = None;
    state.queue = Queue::default();
    if state.deleting.is_none() {
        state.deleting = Some(crate::state::Deleting {
            started_at: p.now().to_rfc3339_opts(SecondsFormat::Secs, true),
            cleared: 0,
        });
    }
    if config.dry_run {
        return crate::unlink::run(p, &config, state, inst.budget_ms);
    }
    // Subscriptions first: no notification should re-link anyone while links are cleared.
    let removed = get_token(p, &config).and_then(|graph| {
        Subscriptions::new(&graph, p, &inst.webhook_url).delete_all(&state.subscriptions)
    });
    match removed {
        Ok(_) => state.subscriptions.clear(),
        Err(f) => {
            return Err(CallFailure {
                message: format!(
                    "delete: could not remove the Graph subscriptions: {}",
                    f.message
                ),
                state: Some(state.to_json()),
                retryable: f.retryable,
            });
        }
    }
    crate::unlink::run(p, &config, state, inst.budget_ms)
}
