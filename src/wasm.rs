//! The WIT glue, and only that: converts the platform's values to the component's own types,
//! calls the handlers and the actions, and converts back. Everything else runs natively too,
//! so it is unit-tested with a plain `cargo test`.

use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};

use crate::log::redact::Secrets;
use crate::platform::{self, HttpResult, Level, Platform};
use crate::{actions, config, handlers, log::escape};

// `wasi:random/random` is generated here too (its one function), so the component needs
// no second bindings crate for it.
wit_bindgen::generate!({
    world: "integration",
    path: "wit",
    with: { "wasi:random/random@0.2.12": generate },
});

use zenqms::entra_sync::http as wit_http;
use zenqms::entra_sync::log as wit_log;
use zenqms::entra_sync::types as wit;

/// The platform as the component sees it inside one call. Every log line, failure message
/// and summary leaves through it: scrubbed of the call's secrets, then escaped and capped.
struct Host {
    started: Instant,
    secrets: Secrets,
}

fn to_wit_request(r: platform::Request) -> wit::Request {
    wit::Request {
        method: match r.method {
            platform::Method::Get => wit::Method::Get,
            platform::Method::Post => wit::Method::Post,
            platform::Method::Put => wit::Method::Put,
            platform::Method::Patch => wit::Method::Patch,
            platform::Method::Delete => wit::Method::Delete,
        },
        url: r.url,
        headers: r.headers,
        body: r.body,
    }
}

fn from_wit_request(r: wit::Request) -> platform::Request {
    platform::Request {
        method: match r.method {
            wit::Method::Get => platform::Method::Get,
            wit::Method::Post => platform::Method::Post,
            wit::Method::Put => platform::Method::Put,
            wit::Method::Patch => platform::Method::Patch,
            wit::Method::Delete => platform::Method::Delete,
        },
        url: r.url,
        headers: r.headers,
        body: r.body,
    }
}

fn from_wit_result(r: Result<wit::Response, wit_http::HttpError>) -> HttpResult {
    match r {
        Ok(resp) => Ok(platform::Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
            unanswered_before: None,
        }),
        Err(wit_http::HttpError::Denied(why)) => Err(platform::HttpError::Denied(why)),
        Err(wit_http::HttpError::Timeout) => Err(platform::HttpError::Timeout),
        Err(wit_http::HttpError::Transport(why)) => Err(platform::HttpError::Transport(why)),
    }
}

impl Platform for Host {
    fn send(&self, req: platform::Request) -> HttpResult {
        from_wit_result(wit_http::send(&to_wit_request(req)))
    }

    fn send_all(&self, reqs: Vec<platform::Request>) -> Vec<HttpResult> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let reqs: Vec<wit::Request> = reqs.into_iter().map(to_wit_request).collect();
        wit_http::send_all(&reqs)
            .into_iter()
            .map(from_wit_result)
            .collect()
    }

    fn concurrency(&self) -> usize {
        usize::try_from(wit_http::concurrency()).map_or(1, |c| c.max(1))
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let (message, fields) = crate::log::sanitize(self, message, fields);
        write_log(level, &message, &fields);
    }

    fn log_sanitized(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        // Scrubbed with this platform's secrets and escaped already (`Resilient::log`).
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        write_log(level, message, &fields);
    }

    fn keeps_secrets(&self) -> bool {
        true
    }

    fn add_secret(&self, secret: &str) {
        self.secrets.add(secret);
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(SystemTime::now())
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn random_bytes(&self, n: usize) -> Vec<u8> {
        wasi::random::random::get_random_bytes(n as u64)
    }

    fn wait(&self, ms: u32) {
        wit_http::wait(ms);
    }
}

/// Hands a sanitized line to the platform's log.
fn write_log(level: Level, message: &str, fields: &[(String, String)]) {
    let level = match level {
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    wit_log::write(level, message, fields);
}

fn instance(i: Instance) -> handlers::Instance {
    handlers::Instance {
        id: i.id,
        webhook_url: i.webhook_url,
        config: i.config,
        state: i.state,
        budget_ms: i.budget_ms,
        inbox: i.inbox.into_iter().map(|x| (x.seq, x.item)).collect(),
    }
}

/// A summary or failure message as it leaves the component.
fn safe(host: &Host, text: &str) -> String {
    crate::log::clean(host, text, &|t| escape::escape(t, escape::OUTCOME_CAP))
}

fn convert(
    host: &Host,
    r: Result<handlers::Outcome, handlers::CallFailure>,
) -> Result<Outcome, Failure> {
    match r {
        Ok(o) => Ok(Outcome {
            response: o.response.map(|r| wit::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            state: o.state,
            pending: o.pending,
            summary: safe(host, &o.summary),
            inbox: o.inbox,
            taken: o.taken,
            state_revision: o.state_revision,
            result: o.result,
        }),
        Err(f) => Err(Failure {
            message: safe(host, &f.message),
            state: f.state,
            retryable: f.retryable,
            taken: f.taken,
            state_revision: f.state_revision,
        }),
    }
}

/// The platform for one call, knowing the instance's configured secrets from the start.
fn host(i: &Instance) -> Host {
    let host = Host {
        started: Instant::now(),
        secrets: Secrets::default(),
    };
    config::register_secrets(&i.config, &host);
    host
}

struct Component;

impl Guest for Component {
    fn on_deploy(i: Instance) -> Result<Outcome, Failure> {
        let host = host(&i);
        convert(&host, handlers::deploy(&host, &instance(i)))
    }

    fn on_event(i: Instance, event: Event) -> Result<Outcome, Failure> {
        let host = host(&i);
        let event = match event {
            Event::Webhook(req) => handlers::Event::Webhook(from_wit_request(req)),
            Event::Schedule => handlers::Event::Schedule,
            Event::Resume => handlers::Event::Resume,
            Event::Action(a) => {
                let result = actions::event(&host, &instance(i), &a.name, a.input.as_deref());
                return convert(&host, result);
            }
        };
        convert(&host, handlers::event(&host, &instance(i), &event))
    }

    fn describe() -> String {
        crate::config::describe::describe()
    }

    fn on_delete(i: Instance) -> Result<Outcome, Failure> {
        let host = host(&i);
        convert(&host, handlers::delete(&host, &instance(i)))
    }
}

export!(Component);
