//! The three exported handlers in domain terms: `lib.rs` converts WIT values to these and back.

use chrono::SecondsFormat;
use serde_json::json;

use crate::config::{self, Config};
use crate::failure::Failure;
use crate::graph::{self, Graph};
use crate::log::Log;
use crate::platform::{Platform, Request, Response};
use crate::state::{Counts, Finished, FullSync, Phase, State};
use crate::sync::Engine;
use crate::webhook::{self, Inbound};
use crate::zenqms::{Zenqms, api};

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

/// Logs the call's one summary line (or its failure) and passes the result on.
fn finish(p: &dyn Platform, what: &str, result: CallResult) -> CallResult {
    let log = Log::new(p);
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
    Ok(Graph::new(p, token))
}

/// `on-deploy`: validate, check both connections, (re)start the initial sync.
pub fn deploy(p: &dyn Platform, inst: &Instance) -> CallResult {
    finish(p, "deploy", deploy_inner(p, inst))
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
    if let Some(old) = &state.full_sync {
        log.warn(
            "an unfinished initial sync is abandoned; the redeploy starts over",
            &[
                ("run_id", &old.run_id),
                ("batches_done", &old.batches.to_string()),
            ],
        );
    }
    let now = p.now();
    state.tenant_id = Some(config.tenant_id.clone());
    state.full_sync = Some(FullSync {
        run_id: format!("sync-{}", now.format("%Y%m%dT%H%M%SZ")),
        started_at: now,
        phase: Phase::Users {
            next: Graph::users_url(),
        },
        batches: 0,
        calls: 0,
        totals: Counts::default(),
    });
    log.info(
        "initial sync started",
        &[
            ("run_id", &state.full_sync.as_ref().expect("set").run_id),
            ("instance", &inst.id),
        ],
    );
    run_full_sync(p, &config, Graph::new(p, token), state, inst.budget_ms)
}

/// Continues the checkpointed full sync in `state`.
fn run_full_sync(
    p: &dyn Platform,
    config: &Config,
    graph: Graph<'_>,
    mut state: State,
    budget_ms: u32,
) -> CallResult {
    let mut sync = state.full_sync.take().expect("caller checked");
    sync.calls += 1;
    let progress = Engine::new(p, config, graph, u64::from(budget_ms), &sync.run_id)
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
        let summary = format!(
            "initial sync {} complete: {} batches in {} calls; {}",
            sync.run_id, sync.batches, sync.calls, sync.totals
        );
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
        Event::Webhook(req) => finish(p, "webhook", on_webhook(p, inst, req)),
        Event::Resume => finish(p, "resume", continue_work(p, inst, "resume")),
        Event::Schedule => finish(p, "schedule", continue_work(p, inst, "schedule")),
    }
}

/// Resume (or a schedule tick while work is checkpointed): continue the full sync or delete.
fn continue_work(p: &dyn Platform, inst: &Instance, what: &str) -> CallResult {
    let state = State::parse(inst.state.as_deref())?;
    if state.full_sync.is_none() && state.deleting.is_none() {
        return Ok(Outcome {
            response: None,
            state: None,
            pending: false,
            summary: format!("{what}: no checkpointed work"),
        });
    }
    let config = parse_config(inst)?;
    if state.deleting.is_some() {
        return crate::unlink::run(p, &config, state, inst.budget_ms);
    }
    let graph = get_token(p, &config).map_err(|f| CallFailure {
        state: None,
        ..f.into()
    })?;
    run_full_sync(p, &config, graph, state, inst.budget_ms)
}

fn on_webhook(p: &dyn Platform, inst: &Instance, req: &Request) -> CallResult {
    let log = Log::new(p);
    let reply = |response: Response, summary: String| Outcome {
        response: Some(response),
        state: None,
        pending: false,
        summary,
    };
    let notifications = match webhook::read(req, &log) {
        Inbound::Reply(r) => {
            let summary = format!("webhook answered {}", r.status);
            return Ok(reply(r, summary));
        }
        Inbound::Notifications(n) => n,
    };
    let state = State::parse(inst.state.as_deref())?;
    let mut rejected = 0;
    for n in &notifications {
        // No subscription is ours yet, so nothing can match: every item is treated as forged.
        let ours = state.subscription_ids().any(|id| id == n.subscription_id);
        if !ours {
            rejected += 1;
            log.warn(
                "notification rejected: unknown subscription",
                &[
                    ("subscription_id", &n.subscription_id),
                    ("resource", n.resource.as_deref().unwrap_or_default()),
                ],
            );
        }
    }
    let body = json!({"accepted": notifications.len() - rejected, "rejected": rejected});
    Ok(reply(
        Response::text(202, "application/json", body.to_string()),
        format!(
            "webhook: {} notifications, {rejected} rejected",
            notifications.len()
        ),
    ))
}

/// `on-delete`: clear every external_id link, change nothing else.
pub fn delete(p: &dyn Platform, inst: &Instance) -> CallResult {
    finish(p, "delete", delete_inner(p, inst))
}

fn delete_inner(p: &dyn Platform, inst: &Instance) -> CallResult {
    let config = parse_config(inst)?;
    let mut state = State::parse(inst.state.as_deref()).unwrap_or_default();
    state.full_sync = None;
    if state.deleting.is_none() {
        state.deleting = Some(crate::state::Deleting {
            started_at: p.now().to_rfc3339_opts(SecondsFormat::Secs, true),
            cleared: 0,
        });
    }
    crate::unlink::run(p, &config, state, inst.budget_ms)
}
