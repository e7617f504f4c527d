//! The component's view of the platform: HTTP, log and clocks behind one small trait, so the
//! domain code runs natively in unit tests and the WIT glue in `wasm.rs` stays thin.

pub mod budget;
pub mod round;
pub mod url;

use chrono::{DateTime, Utc};

/// HTTP method (mirrors the WIT `method` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An HTTP request (outbound, or an inbound webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Set by the retry layer (never by a service): an earlier attempt of this write went
    /// unanswered (what happened to it), so this refusal does not mean the write was not made
    /// ([`crate::clients::retry`]). `None` for every response a service sent as it is.
    pub unanswered_before: Option<String>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            unanswered_before: None,
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a request got no response (mirrors the WIT `http-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Denied(String),
    Timeout,
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(why) => write!(f, "request denied by the platform: {why}"),
            HttpError::Timeout => write!(f, "request timed out"),
            HttpError::Transport(why) => write!(f, "transport error: {why}"),
        }
    }
}

/// Log severity (mirrors the WIT `level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub type HttpResult = Result<Response, HttpError>;

/// What the domain code needs from the platform.
pub trait Platform {
    fn send(&self, req: Request) -> HttpResult;
    /// Independent requests, sent concurrently by the platform; results in request order.
    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult>;
    /// [`Platform::send_all`] for one wave of a round that goes out a wave at a time, with
    /// `waves_after` more waves of that round still to go: a retry's wait must leave room for
    /// them too ([`crate::clients::retry::Resilient`]). Platforms that keep no budget send it
    /// as `send_all`.
    fn send_all_before(&self, reqs: Vec<Request>, _waves_after: u64) -> Vec<HttpResult> {
        self.send_all(reqs)
    }
    /// How many requests of one `send_all` are in flight at once (at least 1): a `send_all` of
    /// k requests costs ceil(k / concurrency) round trips.
    fn concurrency(&self) -> usize {
        8
    }
    /// Writes one log line. Implementations that hand the line on to a person (the WIT glue,
    /// [`crate::clients::retry::Resilient`]) scrub it ([`Platform::scrub`]) and then escape and cap the
    /// message and every field ([`crate::log::escape`]).
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
    /// Writes one log line that was already scrubbed with this platform's
    /// [`Platform::scrub`] and escaped ([`crate::log::sanitize`]): what
    /// [`crate::clients::retry::Resilient`] hands on. A platform that sanitizes in
    /// [`Platform::log`] (the WIT glue) need not do it again: [`crate::log::clean`] already
    /// scrubs again whatever escaping wrote, so a second pass changes nothing but cost the
    /// component about a tenth of its CPU (every write logs a line of several fields). The
    /// default is [`Platform::log`].
    fn log_sanitized(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.log(level, message, fields);
    }
    /// Registers a secret of this call (a configured credential, an access token issued in the
    /// call): from now on [`Platform::scrub`] removes it. Platforms that keep no secrets ignore
    /// it; wrappers pass it on to the platform they wrap.
    fn add_secret(&self, _secret: &str) {}
    /// Whether this platform keeps the secrets [`Platform::add_secret`] registers (its
    /// [`Platform::scrub`] removes them). A wrapper that passes every secret on to such a
    /// platform can leave the scrubbing to it instead of doing it twice.
    fn keeps_secrets(&self) -> bool {
        false
    }
    /// `text` with every registered secret replaced by [`crate::log::redact::REDACTED`]. Every log
    /// line, failure message and summary goes through it before it leaves the component.
    fn scrub(&self, text: &str) -> String {
        text.to_string()
    }
    /// Wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Milliseconds since this call started (monotonic).
    fn elapsed_ms(&self) -> u64;
    /// Cryptographically secure random bytes.
    fn random_bytes(&self, n: usize) -> Vec<u8>;
    /// Waits before a retry; counts against the call's budget.
    fn wait(&self, ms: u32);
    /// Whether a wait of `ms` still fits the call's budget. A caller that gets false gives up
    /// its retry (the call then checkpoints, see `retry::Resilient`).
    fn can_wait(&self, _ms: u64) -> bool {
        true
    }
    /// Whether this call has waited before a retry (its budget is then partly spent on
    /// waiting, which a later call may not need). Platforms that do not retry say false.
    fn has_waited(&self) -> bool {
        false
    }
    /// How many more rounds (a `send`, or one wave of `concurrency` requests of a `send_all`)
    /// fit in the call's budget, judged by the longest round of this call so far. Platforms
    /// that keep no budget say `u64::MAX`; see [`crate::platform::budget`] for how steps use it.
    fn rounds_left(&self) -> u64 {
        u64::MAX
    }
    /// How many rounds the whole call's budget holds, judged as [`Platform::rounds_left`]
    /// judges what is left: what a later call can do at most (for work that must fit one).
    fn rounds_in_call(&self) -> u64 {
        u64::MAX
    }
}
