//! Live mode: the real component, the real network. `host-test run --config <file> …` plays
//! the platform for one command (deploy, a webhook event, a schedule tick, delete), resuming
//! while the component reports pending work, with state kept in a file between runs.
//!
//! The platform rules are the simulator's: only the token endpoint, Graph and the ZenQMS base
//! URL the platform allows are reachable (anything else is `denied`). `--graph-url` and
//! `--login-url` re-route the component's Graph and token requests (test-only, e.g. to `serve`);
//! the component still sees and checks the real URLs.

mod exchange;
mod net;
pub mod rebuild;
pub mod record;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::host::driver::{self, CallEnd, Policy};
use crate::host::runtime::{Action, Event, InboxItem, Instance, LogLine, Outcome, WitFailure};
use crate::scenario::report::{ResponseRecord, StepRecord};
use crate::scenario::{InstanceSpec, WebhookSpec};
pub use net::{LiveRuntime, Net, NetError, live_runtime};
use record::{CommandEntry, Recorder};
use store::Store;

/// `host-test run` arguments: options, then the command.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The live configuration file (see README, "Live runs and recordings").
    #[arg(long)]
    pub config: PathBuf,
    /// The state file (default: `<config stem>.state.json` next to the config).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Test only: send Graph requests here instead of https://graph.microsoft.com.
    #[arg(long = "graph-url")]
    pub graph_url: Option<String>,
    /// Test only: send token requests here instead of https://login.microsoftonline.com.
    #[arg(long = "login-url")]
    pub login_url: Option<String>,
    /// Record every exchange (secrets removed) to this directory, with a scenario replaying it.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Requests of one send-all in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,
    #[command(subcommand)]
    pub command: RunCommand,
}

/// Which export `run` calls.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RunCommand {
    /// `on-deploy`, resuming while pending.
    Deploy,
    /// `on-event` with a webhook request read from a JSON file (a scenario's `webhook` step).
    Event {
        /// The request: `{"method", "query", "headers", "body" | "body_text"}`.
        request: PathBuf,
    },
    /// `on-event(schedule)`, the platform's periodic tick (every 5 minutes recommended).
    Schedule,
    /// `on-event(resume)`: continue checkpointed work and take in the inbox.
    Resume,
    /// `on-delete`.
    Delete,
    /// `on-event(action)`: an admin action (README, "Admin actions"); prints its result.
    Action {
        /// test-connection, provision-user, release-held-deactivations, list-groups, list-roles.
        name: String,
        /// The action's input: a user id or UPN (or `{"user": "…", "dry_run": true}`), a
        /// number, search text.
        input: Option<String>,
    },
}

/// The parser `host-test run` uses, for callers holding the arguments as strings.
#[derive(Debug, clap::Parser)]
#[command(name = "host-test run")]
struct RunCli {
    #[command(flatten)]
    args: RunArgs,
}

/// The live configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// `id`, `webhook_url`, `config` (as in a scenario: strings, or JSON passed as its text).
    pub instance: InstanceSpec,
    #[serde(default = "default_budget")]
    pub budget_ms: u32,
    /// The ZenQMS base URL the platform lets the instance reach; default: the configured one
    /// (`zenqms_base_url`, else the documented host of `zenqms_environment`).
    /// (The simulator likewise fixes it when the world is built.)
    #[serde(default)]
    pub allowed_zenqms_base_url: Option<String>,
}

fn default_budget() -> u32 {
    20_000
}

impl LiveConfig {
    pub fn load(path: &Path) -> Result<LiveConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    fn text(&self, key: &str) -> String {
        self.instance
            .config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Command {
    Deploy,
    /// A webhook request (the file's JSON is kept to record it as a scenario step).
    Event(WebhookSpec, Value),
    Schedule,
    Resume,
    Delete,
    /// An admin action: its name and input.
    Action(String, Option<String>),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Deploy => "deploy",
            Command::Event(..) => "event",
            Command::Schedule => "schedule",
            Command::Resume => "resume",
            Command::Delete => "delete",
            Command::Action(..) => "action",
        }
    }

    /// The scenario step that replays it.
    fn step(&self) -> Value {
        match self {
            Command::Deploy => serde_json::json!({"deploy": {}}),
            Command::Event(_, raw) => serde_json::json!({ "webhook": raw }),
            Command::Schedule => serde_json::json!({"schedule": {}}),
            Command::Resume => serde_json::json!({"resume": {}}),
            Command::Delete => serde_json::json!({"delete": {}}),
            Command::Action(name, input) => {
                serde_json::json!({"action": {"name": name, "input": input}})
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// Default: `<config stem>.state.json` next to the config.
    pub state: Option<PathBuf>,
    pub graph_url: Option<String>,
    pub login_url: Option<String>,
    pub record: Option<PathBuf>,
    pub concurrency: usize,
    pub command: Command,
}

impl Options {
    pub fn new(config: &Path, command: Command) -> Options {
        Options {
            config: config.to_path_buf(),
            state: None,
            graph_url: None,
            login_url: None,
            record: None,
            concurrency: 8,
            command,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| {
            let stem = self
                .config
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy();
            self.config.with_file_name(format!("{stem}.state.json"))
        })
    }
}

pub fn parse_args(args: &[String]) -> Result<Options> {
    options(&run_args(args)?)
}

/// `host-test run`'s arguments parsed from strings (without the `run` itself).
pub fn run_args(args: &[String]) -> Result<RunArgs> {
    use clap::Parser;
    let argv = std::iter::once("run".to_string()).chain(args.iter().cloned());
    Ok(RunCli::try_parse_from(argv)?.args)
}

/// The options `execute` takes, from parsed arguments (reads an event's request file).
pub fn options(a: &RunArgs) -> Result<Options> {
    let command = match &a.command {
        RunCommand::Deploy => Command::Deploy,
        RunCommand::Schedule => Command::Schedule,
        RunCommand::Resume => Command::Resume,
        RunCommand::Delete => Command::Delete,
        RunCommand::Action { name, input } => Command::Action(name.clone(), input.clone()),
        RunCommand::Event { request } => {
            let path = request.display();
            let text = std::fs::read_to_string(request)
                .with_context(|| format!("reading webhook request {path}"))?;
            let raw: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing webhook request {path}"))?;
            let spec = serde_json::from_value(raw.clone())
                .with_context(|| format!("webhook request {path}"))?;
            Command::Event(spec, raw)
        }
    };
    Ok(Options {
        config: a.config.clone(),
        state: a.state.clone(),
        graph_url: a.graph_url.clone(),
        login_url: a.login_url.clone(),
        record: a.record.clone(),
        concurrency: usize::try_from(a.concurrency).unwrap_or(usize::MAX),
        command,
    })
}

/// Which export to call.
#[derive(Clone)]
enum Handler {
    Deploy,
    Event(Event),
    Delete,
}

fn platform_log(message: &str) -> LogLine {
    LogLine {
        level: "error".into(),
        message: message.into(),
        fields: BTreeMap::from([("source".to_string(), "platform".to_string())]),
    }
}

/// Runs one command to completion (resuming while pending); the record says how it went.
pub fn execute(o: &Options) -> Result<StepRecord> {
    let cfg = LiveConfig::load(&o.config)?;
    let store = Store::new(o.state_path());
    for (flag, url, real) in [
        ("--graph-url", &o.graph_url, "https://graph.microsoft.com"),
        (
            "--login-url",
            &o.login_url,
            "https://login.microsoftonline.com",
        ),
    ] {
        if let Some(url) = url {
            eprintln!("warning: {flag}: test-only routing, requests to {real} go to {url}");
        }
    }
    let recorder = match &o.record {
        Some(dir) => Some(Recorder::open(
            dir,
            vec![
                cfg.text("entra_client_secret"),
                cfg.text("zenqms_api_token"),
            ],
        )?),
        None => None,
    };
    let allowed = cfg
        .allowed_zenqms_base_url
        .clone()
        .unwrap_or_else(|| crate::sim::world::zenqms_api_base(&cfg.instance.config));
    let mut net = Some(Net::new(
        allowed.trim(),
        o.graph_url.clone(),
        o.login_url.clone(),
        o.concurrency,
        recorder,
    )?);
    let runtime = live_runtime()?;
    let started = chrono::Utc::now();
    let mut rec = StepRecord::new(0, o.command.name());
    let handler = match &o.command {
        Command::Deploy => Handler::Deploy,
        Command::Schedule => Handler::Event(Event::Schedule),
        Command::Resume => Handler::Event(Event::Resume),
        Command::Delete => Handler::Delete,
        Command::Action(name, input) => Handler::Event(Event::Action(Action {
            name: name.clone(),
            input: input.clone(),
        })),
        Command::Event(spec, _) => Handler::Event(Event::Webhook(
            crate::scenario::runner::webhook_request(spec, &cfg.instance.webhook_url)?,
        )),
    };
    let webhook = matches!(handler, Handler::Event(Event::Webhook(_)));
    // One call on the real network; the store keeps what it returned (state, inbox).
    let mut call = |handler: &Handler, rec: &mut StepRecord| -> Result<CallEnd<Outcome>> {
        let is_webhook = matches!(handler, Handler::Event(Event::Webhook(_)));
        let inst = Instance {
            id: cfg.instance.id.clone(),
            webhook_url: cfg.instance.webhook_url.clone(),
            config: cfg.instance.config_pairs(),
            state: store.state()?,
            budget_ms: cfg.budget_ms,
            // A webhook call may run beside the serialized ones: it is not given the inbox.
            inbox: if is_webhook {
                Vec::new()
            } else {
                store
                    .inbox()?
                    .into_iter()
                    .map(|(seq, item)| InboxItem { seq, item })
                    .collect()
            },
        };
        let (back, logs, result) =
            runtime.call(net.take().expect("net is home"), |b, s| match handler {
                Handler::Deploy => b.call_on_deploy(s, &inst),
                Handler::Event(e) => b.call_on_event(s, &inst, e),
                Handler::Delete => b.call_on_delete(s, &inst),
            });
        net = Some(back);
        rec.calls += 1;
        rec.logs.extend(logs);
        Ok(match result {
            Err(trap) => {
                let msg = format!("component trapped: {trap:#}");
                rec.logs.push(platform_log(&msg));
                CallEnd::Failed {
                    message: msg,
                    retryable: false,
                }
            }
            Ok(Err(WitFailure {
                message,
                state,
                retryable,
                taken,
                ..
            })) => {
                store.commit(state.as_deref(), &taken)?;
                let kind = if retryable {
                    "retryable"
                } else {
                    "not retryable"
                };
                CallEnd::Failed {
                    message: format!("{message} ({kind})"),
                    retryable,
                }
            }
            Ok(Ok(mut outcome)) => {
                rec.summary = Some(outcome.summary.clone());
                if is_webhook {
                    // Appended atomically; a webhook never stores state.
                    store.append(std::mem::take(&mut outcome.inbox))?;
                } else {
                    store.commit(outcome.state.as_deref(), &outcome.taken)?;
                }
                CallEnd::Done(outcome)
            }
        })
    };
    let mut first = None;
    let mut io_error: Option<anyhow::Error> = None;
    // A serialized command waits for the call lock; a webhook answers without it, then works
    // off the inbox only if no other call of the instance is running (that one takes it in).
    let mut lock = if webhook {
        let started = std::time::Instant::now();
        match call(&handler, &mut rec)? {
            CallEnd::Done(o) => first = Some(o),
            CallEnd::Failed { message, .. } => rec.error = Some(message),
        }
        rec.reply_ms = Some(started.elapsed().as_millis() as u64);
        // Resumed only when the webhook left work (its outcome pending, or items in the
        // inbox), as a platform does and the replay runner does: a webhook that accepted
        // nothing (a rejected notification, a validation handshake) is one call (a
        // newcomer's find: `run event` resumed after each).
        let left_work = first.as_ref().is_none_or(|o: &Outcome| o.pending)
            || !store.inbox().unwrap_or_default().is_empty();
        if rec.error.is_none() && left_work {
            store.try_serialize()?
        } else {
            None
        }
    } else {
        Some(store.serialize()?)
    };
    let mut start = if webhook {
        Handler::Event(Event::Resume)
    } else {
        handler
    };
    let o_command_is_delete = matches!(o.command, Command::Delete);
    while lock.is_some() {
        let driven = driver::drive(
            start.clone(),
            Handler::Event(Event::Resume),
            Policy::default(),
            |o: &Outcome| {
                // A delete ends when the component says so (the inbox is forgotten with it).
                o.pending || (!o_command_is_delete && !store.inbox().unwrap_or_default().is_empty())
            },
            |h| match call(h, &mut rec) {
                Ok(end) => end,
                Err(e) => {
                    let message = format!("{e:#}");
                    io_error = Some(e);
                    CallEnd::Failed {
                        message,
                        retryable: false,
                    }
                }
            },
            || {},
        );
        if let Some(e) = io_error.take() {
            return Err(e);
        }
        if first.is_none() {
            first = driven.first;
        }
        if rec.error.is_none() {
            rec.error = driven.error;
        }
        // Released, then the inbox looked at again: an item a webhook appended while the
        // lock was held is taken in here (that webhook could not take the lock).
        lock = None;
        let deleted = matches!(o.command, Command::Delete);
        if rec.error.is_none() && !deleted && !store.inbox()?.is_empty() {
            lock = store.try_serialize()?;
        }
        start = Handler::Event(Event::Resume);
    }
    rec.ok = rec.error.is_none();
    if rec.ok && matches!(o.command, Command::Delete) {
        store.forget()?; // the platform forgets a deleted instance
    }
    if let Command::Action(..) = o.command {
        rec.result = first
            .as_ref()
            .and_then(|o| o.result.clone())
            .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
    }
    if let Command::Event(..) = o.command {
        let reply = first
            .and_then(|o| o.response)
            .map(|r| ResponseRecord::new(r.status, r.headers, &r.body));
        rec.response = Some(ResponseRecord::answered(reply, rec.error.is_some()));
    }
    if let Some(mut recorder) = net.and_then(|n| n.recorder) {
        recorder.finish_command(CommandEntry {
            at: started.to_rfc3339(),
            step: o.command.step(),
            ok: rec.ok,
        })?;
        let scenario = rebuild::scenario(&recorder.dir, &cfg, o.concurrency)?;
        let path = recorder.dir.join("scenario.json");
        std::fs::write(&path, recorder.scrub(&scenario)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(rec)
}

/// `host-test run …`: exit status 0 when the command succeeded.
pub fn cli(args: &RunArgs) -> Result<bool> {
    let o = options(args)?;
    let rec = execute(&o)?;
    // What the component returned is printed escaped and capped (report::shown).
    use entra_zenqms::log::escape::OUTCOME_CAP;
    let status = match &rec.error {
        None => "ok".to_string(),
        Some(e) => format!("FAILED: {}", crate::scenario::report::shown(e, OUTCOME_CAP)),
    };
    println!("{} - {} call(s) - {status}", rec.kind, rec.calls);
    if let Some(s) = &rec.summary {
        println!(
            "  summary: {}",
            crate::scenario::report::shown(s, OUTCOME_CAP)
        );
    }
    if let Some(result) = &rec.result {
        println!("  result:");
        for line in crate::scenario::report::result_lines(result) {
            println!("    {line}");
        }
    }
    if let Some(r) = &rec.response {
        println!("  response: {} {:?}", r.status, r.headers);
        println!("  {}", crate::scenario::report::shown(&r.body, OUTCOME_CAP));
    }
    if let Some(dir) = &o.record {
        println!(
            "Recorded to {}; replay offline with: host-test replay {}",
            dir.display(),
            dir.join("scenario.json").display()
        );
    }
    Ok(rec.ok)
}
