//! Retries for transient HTTP failures, as a [`Platform`] wrapper so every client gets them.
//!
//! 429 is always retried (the request was refused, not processed). 502/503/504, timeouts and
//! transport errors are retried only for requests that are safe to repeat: a create that timed
//! out may have happened, so it is left to the caller, which re-checks before creating again.
//! Waits honour `Retry-After` (seconds or HTTP date) or use capped exponential backoff with
//! jitter, and count against the call's budget: a wait that would overrun it is not taken, the
//! failure is returned, and [`Resilient::out_of_budget`] tells the handler to checkpoint.

use std::cell::Cell;

use chrono::{DateTime, Utc};

use crate::log::redact::Secrets;
use crate::platform::round;
use crate::platform::url::Url;
use crate::platform::{HttpError, HttpResult, Level, Platform, Request};

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_BASE_MS: u64 = 500;
const BACKOFF_CAP_MS: u64 = 8_000;
/// Longest `Retry-After` honoured in one wait.
const RETRY_AFTER_CAP_MS: u64 = 60_000;

/// A platform whose `send` and `send_all` retry transient failures. It is also the call's
/// last filter for log lines: every line written through it is scrubbed of the call's secrets
/// ([`Platform::add_secret`]) and escaped ([`crate::log::sanitize`]).
pub struct Resilient<'a> {
    inner: &'a dyn Platform,
    budget_ms: u64,
    out_of_budget: Cell<bool>,
    retries: Cell<u32>,
    secrets: Secrets,
    /// The longest round of this call so far (ms): a `send`, or one wave of a `send_all`,
    /// waits before retries excluded. The unit of [`Platform::rounds_left`].
    round_ms: Cell<u64>,
}

/// The most of its budget a call keeps back from retry waits for the rest of its step (a
/// quarter of the budget when that is less).
const WAIT_RESERVE_MS: u64 = 2_000;

/// Whether repeating this request can do harm (double create).
pub fn idempotent(req: &Request) -> bool {
    use crate::platform::Method;
    if req.method != Method::Post {
        return true;
    }
    let path = Url::parse(&req.url).map(|u| u.path).unwrap_or_default();
    [
        "/token",
        "/search",
        "/checkMemberGroups",
        "/getMemberGroups",
        "/roles/add",
        "/reauthorize",
        // Our Graph batches carry only GETs.
        "/$batch",
    ]
    .iter()
    .any(|end| path.ends_with(end))
}

/// Whether a request may change something at the service (a read never does: GETs, and the
/// POSTs that only read: searches, token requests, Graph's `$batch` of GETs, membership checks).
fn writes(req: &Request) -> bool {
    use crate::platform::Method;
    match req.method {
        Method::Get => false,
        Method::Post => {
            let path = Url::parse(&req.url).map(|u| u.path).unwrap_or_default();
            ![
                "/token",
                "/search",
                "/checkMemberGroups",
                "/getMemberGroups",
                "/$batch",
            ]
            .iter()
            .any(|end| path.ends_with(end))
        }
        _ => true,
    }
}

/// Notes the first attempt of a write that the service may have carried out without its answer
/// arriving: a timeout or broken connection, or a 5xx (a gateway answers 502/504 for work the
/// service behind it did).
fn note_unanswered(first: &mut Option<String>, req: &Request, result: &HttpResult) {
    let unanswered = match result {
        Err(e @ (HttpError::Timeout | HttpError::Transport(_))) => Some(e.to_string()),
        Ok(r) if r.status >= 500 => Some(format!("answered {}", r.status)),
        _ => None,
    };
    if first.is_none() && writes(req) {
        *first = unanswered;
    }
}

/// A retried write's result as its caller must read it: when an earlier attempt went
/// unanswered and the last was refused (a 4xx, a 429 the budget did not let us wait out), the
/// write may have been made all the same, by that earlier attempt: the refusal keeps its
/// status (a 422 is still this user's, a 401 still the credentials') and says so in
/// [`crate::platform::Response::unanswered_before`]; a retry the platform denied becomes a transport error
/// (outcome unknown). Before, a timed-out PATCH that ZenQMS had made, retried and answered
/// 429, read as "not made", and the next call found the change made with nothing in the
/// audit trail.
fn settle(result: HttpResult, unanswered: Option<String>) -> HttpResult {
    let Some(first) = unanswered else {
        return result;
    };
    match result {
        // (A 404 stays: what is not there was not changed by the earlier attempt either, and
        // a DELETE's 404 means done.)
        Ok(mut r) if !r.is_success() && r.status < 500 && r.status != 404 => {
            r.unanswered_before = Some(first);
            Ok(r)
        }
        Err(HttpError::Denied(why)) => Err(HttpError::Transport(format!(
            "an attempt went unanswered ({first}), and a retry was denied ({why}): the write may have been made"
        ))),
        result => result,
    }
}

/// What a service said about when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hint {
    /// Nothing: use backoff.
    Backoff,
    /// `Retry-After: <seconds>`, in milliseconds.
    After(u64),
    /// `Retry-After: <HTTP date>`.
    At(DateTime<Utc>),
}

/// Why a result is worth retrying, if it is.
fn transient(result: &HttpResult, safe: bool) -> Option<Hint> {
    match result {
        Ok(r) if r.status == 429 => Some(retry_after(r.header("retry-after"))),
        Ok(r) if matches!(r.status, 502..=504) && safe => {
            Some(retry_after(r.header("retry-after")))
        }
        Err(HttpError::Timeout | HttpError::Transport(_)) if safe => Some(Hint::Backoff),
        _ => None,
    }
}

/// `Retry-After`: delta-seconds or an HTTP date; anything else means backoff.
fn retry_after(value: Option<&str>) -> Hint {
    let Some(v) = value.map(str::trim) else {
        return Hint::Backoff;
    };
    if let Ok(secs) = v.parse::<u64>() {
        return Hint::After(secs.saturating_mul(1000));
    }
    DateTime::parse_from_rfc2822(v).map_or(Hint::Backoff, |t| Hint::At(t.with_timezone(&Utc)))
}

impl<'a> Resilient<'a> {
    pub fn new(inner: &'a dyn Platform, budget_ms: u32) -> Self {
        Resilient {
            inner,
            budget_ms: u64::from(budget_ms),
            out_of_budget: Cell::new(false),
            retries: Cell::new(0),
            secrets: Secrets::default(),
            round_ms: Cell::new(0),
        }
    }

    /// True once a retry was given up because its wait would overrun the budget.
    pub fn out_of_budget(&self) -> bool {
        self.out_of_budget.get()
    }

    /// Retries made so far in this call.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// Runs one request or one `send_all` of `n` requests and keeps the longest round seen.
    fn timed<T>(&self, n: usize, send: impl FnOnce() -> T) -> T {
        let start = self.inner.elapsed_ms();
        let out = send();
        let waves = n.div_ceil(self.inner.concurrency().max(1)).max(1) as u64;
        let round = self.inner.elapsed_ms().saturating_sub(start) / waves;
        self.round_ms.set(self.round_ms.get().max(round));
        out
    }

    /// How long to wait before attempt `attempt` (1-based retry number).
    fn delay_ms(&self, attempt: u32, hint: Hint) -> u64 {
        match hint {
            Hint::At(when) => {
                let ms = (when - self.inner.now()).num_milliseconds().max(0) as u64;
                ms.min(RETRY_AFTER_CAP_MS)
            }
            Hint::After(ms) => ms.min(RETRY_AFTER_CAP_MS),
            Hint::Backoff => {
                let ceiling = (BACKOFF_BASE_MS << (attempt - 1).min(10)).min(BACKOFF_CAP_MS);
                // Jitter: a random point in the upper half, so parallel workers spread out.
                let r = self.inner.random_bytes(2);
                let frac = u64::from(u16::from_le_bytes([r[0], r[1]]));
                ceiling / 2 + (ceiling / 2) * frac / u64::from(u16::MAX)
            }
        }
    }

    /// Whether a wait of `ms` still leaves the call the rest of its step: the retried request
    /// is only part of a step, and a wait that ends right at the budget would make the step's
    /// other requests overrun it.
    fn wait_fits(&self, ms: u64) -> bool {
        self.wait_and_waves_fit(ms, 0)
    }

    /// [`Self::wait_fits`] for a wait of `ms` followed by `waves` rounds (the retried
    /// requests themselves, as long as the longest round so far): both, and the reserve.
    fn wait_and_waves_fit(&self, ms: u64, waves: u64) -> bool {
        let reserve = (self.budget_ms / 4).min(WAIT_RESERVE_MS);
        let resend = waves.saturating_mul(self.round_ms.get());
        self.inner.elapsed_ms() + ms + resend + reserve <= self.budget_ms
    }

    /// Waits before a retry if the budget allows; false when it does not.
    fn pause(&self, attempt: u32, hint: Hint, why: &str, waves: u64) -> bool {
        let delay = self.delay_ms(attempt, hint);
        if !self.wait_and_waves_fit(delay, waves) {
            self.out_of_budget.set(true);
            return false;
        }
        self.log(
            Level::Warn,
            "transient failure: retrying",
            &[
                ("cause", why),
                ("attempt", &(attempt + 1).to_string()),
                ("wait_ms", &delay.to_string()),
            ],
        );
        self.retries.set(self.retries.get() + 1);
        self.inner.wait(delay.min(u64::from(u32::MAX)) as u32);
        true
    }
}

/// A short description of a failure for the log (never the URL's query or a header).
fn describe(req: &Request, result: &HttpResult) -> String {
    let host = Url::parse(&req.url).map(|u| u.host).unwrap_or_default();
    match result {
        Ok(r) => format!("{host} answered {}", r.status),
        Err(e) => format!("{host}: {e}"),
    }
}

impl Platform for Resilient<'_> {
    fn send(&self, req: Request) -> HttpResult {
        let safe = idempotent(&req);
        let mut attempt = 1;
        let mut unanswered = None;
        loop {
            let result = self.timed(1, || self.inner.send(req.clone()));
            note_unanswered(&mut unanswered, &req, &result);
            let Some(hint) = transient(&result, safe) else {
                return settle(result, unanswered);
            };
            if attempt >= MAX_ATTEMPTS || !self.pause(attempt, hint, &describe(&req, &result), 1) {
                return settle(result, unanswered);
            }
            attempt += 1;
        }
    }

    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        self.send_all_before(reqs, 0)
    }

    fn send_all_before(&self, reqs: Vec<Request>, waves_after: u64) -> Vec<HttpResult> {
        // Whatever the platform answers, one result per request (a missing one is a transport
        // error of that request): no caller mispairs or reads past the end.
        let n = reqs.len();
        let mut results = round::fitted(self.timed(n, || self.inner.send_all(reqs.clone())), n);
        let mut unanswered: Vec<Option<String>> = vec![None; n];
        for ((u, req), r) in unanswered.iter_mut().zip(&reqs).zip(&results) {
            note_unanswered(u, req, r);
        }
        for attempt in 1..MAX_ATTEMPTS {
            let again: Vec<(usize, Hint)> = results
                .iter()
                .zip(&reqs)
                .enumerate()
                .filter_map(|(i, (r, req))| transient(r, idempotent(req)).map(|h| (i, h)))
                .collect();
            let Some(&(first, _)) = again.first() else {
                break;
            };
            // One wait for the whole round: the longest the service asked for.
            let hint = again.iter().map(|(_, h)| *h).max().unwrap_or(Hint::Backoff);
            let why = format!(
                "{} requests, e.g. {}",
                again.len(),
                describe(&reqs[first], &results[first])
            );
            // The resent requests' waves, and those of the round still to go after them.
            let waves = again.len().div_ceil(self.inner.concurrency().max(1)) as u64;
            if !self.pause(attempt, hint, &why, waves + waves_after) {
                break;
            }
            let resend: Vec<Request> = again.iter().map(|(i, _)| reqs[*i].clone()).collect();
            let n = resend.len();
            let answers = round::fitted(self.timed(n, || self.inner.send_all(resend)), n);
            for ((i, _), r) in again.iter().zip(answers) {
                note_unanswered(&mut unanswered[*i], &reqs[*i], &r);
                results[*i] = r;
            }
        }
        results
            .into_iter()
            .zip(unanswered)
            .map(|(r, u)| settle(r, u))
            .collect()
    }

    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let (message, fields) = crate::log::sanitize(self, message, fields);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Scrubbed with `self.scrub`, which is the inner platform's when it keeps secrets.
        self.inner.log_sanitized(level, &message, &fields);
    }

    fn add_secret(&self, secret: &str) {
        self.secrets.add(secret);
        self.inner.add_secret(secret);
    }

    fn keeps_secrets(&self) -> bool {
        true
    }

    fn scrub(&self, text: &str) -> String {
        // Every secret registered here was passed on: a platform that keeps them scrubs them
        // all (and any it was given before this wrapper existed), once.
        if self.inner.keeps_secrets() {
            self.inner.scrub(text)
        } else {
            self.inner.scrub(&self.secrets.scrub(text))
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    fn elapsed_ms(&self) -> u64 {
        self.inner.elapsed_ms()
    }

    fn random_bytes(&self, n: usize) -> Vec<u8> {
        self.inner.random_bytes(n)
    }

    fn wait(&self, ms: u32) {
        self.inner.wait(ms);
    }

    fn can_wait(&self, ms: u64) -> bool {
        let fits = self.wait_fits(ms);
        if !fits {
            self.out_of_budget.set(true);
        }
        fits
    }

    fn has_waited(&self) -> bool {
        self.retries.get() > 0
    }

    fn rounds_left(&self) -> u64 {
        let left = self.budget_ms.saturating_sub(self.inner.elapsed_ms());
        left / self.round_ms.get().max(1)
    }

    fn rounds_in_call(&self) -> u64 {
        self.budget_ms / self.round_ms.get().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Method, Response};
    use std::cell::RefCell;

    /// Answers from a script; records waits.
    struct Scripted {
        answers: RefCell<Vec<HttpResult>>,
        sent: Cell<u32>,
        waited: Cell<u64>,
    }

    impl Scripted {
        fn new(mut answers: Vec<HttpResult>) -> Self {
            answers.reverse();
            Scripted {
                answers: RefCell::new(answers),
                sent: Cell::new(0),
                waited: Cell::new(0),
            }
        }
    }

    impl Platform for Scripted {
        fn send(&self, _: Request) -> HttpResult {
            self.sent.set(self.sent.get() + 1);
            self.answers.borrow_mut().pop().expect("scripted answer")
        }
        fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
            reqs.into_iter().map(|r| self.send(r)).collect()
        }
        fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
        fn now(&self) -> DateTime<Utc> {
            "2026-11-28T12:00:00Z".parse().unwrap()
        }
        fn elapsed_ms(&self) -> u64 {
            self.waited.get()
        }
        fn random_bytes(&self, n: usize) -> Vec<u8> {
            vec![0x80; n]
        }
        fn wait(&self, ms: u32) {
            self.waited.set(self.waited.get() + u64::from(ms));
        }
    }

    fn status(s: u16, retry_after: Option<&str>) -> HttpResult {
        let mut r = Response::text(s, "application/json", "{}");
        if let Some(v) = retry_after {
            r.headers.push(("Retry-After".into(), v.into()));
        }
        Ok(r)
    }

    fn req(method: Method, url: &str) -> Request {
        Request {
            method,
            url: url.into(),
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn honours_retry_after_seconds_and_dates() {
        let p = Scripted::new(vec![
            status(429, Some("3")),
            status(429, Some("Sat, 28 Nov 2026 12:00:10 GMT")),
            status(200, None),
        ]);
        let r = Resilient::new(&p, 60_000);
        let out = r.send(req(Method::Get, "https://graph.microsoft.com/v1.0/users"));
        assert_eq!(out.unwrap().status, 200);
        assert_eq!(p.sent.get(), 3);
        // 3 s, then until 12:00:10 as read at 12:00:00 (the scripted clock does not move).
        assert_eq!(p.waited.get(), 3_000 + 10_000);
    }

    #[test]
    fn a_write_refused_after_an_unanswered_attempt_says_it_may_have_been_made() {
        // Timed out (ZenQMS may have made it), then refused: the refusal keeps its status (a
        // 422 is this user's, not the service's) and says an attempt went unanswered.
        let patch = || req(Method::Patch, "https://acme.zenqms.com/v2/users/u1");
        let p = Scripted::new(vec![Err(HttpError::Timeout), status(422, None)]);
        let out = Resilient::new(&p, 60_000).send(patch()).unwrap();
        assert_eq!(out.status, 422);
        assert_eq!(out.unanswered_before.as_deref(), Some("request timed out"));
        let e = crate::clients::zenqms::Zenqms::read_write(Ok(out)).unwrap_err();
        assert!(e.outcome_unknown && !e.is_systemic(), "{e:?}");
        // The same in a send-all, and after a 503.
        let p = Scripted::new(vec![status(503, None), status(409, None)]);
        let out = Resilient::new(&p, 60_000).send_all(vec![patch()]);
        assert_eq!(
            out[0].as_ref().unwrap().unanswered_before.as_deref(),
            Some("answered 503")
        );
        // A refusal with no unanswered attempt before it, a 2xx after one, a 404 and a read
        // are as the service answered.
        let p = Scripted::new(vec![status(422, None)]);
        assert_eq!(
            Resilient::new(&p, 60_000)
                .send(patch())
                .unwrap()
                .unanswered_before,
            None
        );
        for last in [200, 404] {
            let p = Scripted::new(vec![Err(HttpError::Timeout), status(last, None)]);
            let out = Resilient::new(&p, 60_000).send(patch()).unwrap();
            assert_eq!((out.status, out.unanswered_before), (last, None));
        }
        let p = Scripted::new(vec![Err(HttpError::Timeout), status(400, None)]);
        let search = req(Method::Post, "https://acme.zenqms.com/v2/users/search");
        assert_eq!(
            Resilient::new(&p, 60_000)
                .send(search)
                .unwrap()
                .unanswered_before,
            None
        );
    }

    #[test]
    fn a_create_is_not_repeated_after_an_ambiguous_failure() {
        let p = Scripted::new(vec![status(503, None)]);
        let r = Resilient::new(&p, 60_000);
        let out = r.send(req(Method::Post, "https://acme.zenqms.com/v2/users"));
        assert_eq!(out.unwrap().status, 503);
        assert_eq!(p.sent.get(), 1);
        // ...but a 429 (refused, not processed) is.
        let p = Scripted::new(vec![status(429, Some("1")), status(201, None)]);
        let out =
            Resilient::new(&p, 60_000).send(req(Method::Post, "https://acme.zenqms.com/v2/users"));
        assert_eq!(out.unwrap().status, 201);
    }

    #[test]
    fn backoff_is_capped_and_jittered_and_stops_at_the_budget() {
        let p = Scripted::new(vec![Err(HttpError::Timeout); 6]);
        let r = Resilient::new(&p, 2_000);
        let out = r.send(req(Method::Get, "https://graph.microsoft.com/v1.0/users"));
        assert!(out.is_err());
        assert!(r.out_of_budget());
        assert!(p.waited.get() <= 2_000);
        let p = Scripted::new(vec![Err(HttpError::Timeout); 6]);
        let r = Resilient::new(&p, 600_000);
        let _ = r.send(req(Method::Get, "https://graph.microsoft.com/v1.0/users"));
        assert_eq!(p.sent.get(), MAX_ATTEMPTS);
        assert_eq!(r.retries(), MAX_ATTEMPTS - 1);
        assert!(!r.out_of_budget());
    }

    #[test]
    fn send_all_retries_only_the_failed_ones() {
        let p = Scripted::new(vec![
            status(200, None),
            status(429, Some("1")),
            status(404, None),
            status(200, None),
        ]);
        let r = Resilient::new(&p, 60_000);
        let reqs = vec![
            req(Method::Get, "https://graph.microsoft.com/a"),
            req(Method::Get, "https://graph.microsoft.com/b"),
            req(Method::Get, "https://graph.microsoft.com/c"),
        ];
        let out: Vec<u16> = r
            .send_all(reqs)
            .into_iter()
            .map(|x| x.unwrap().status)
            .collect();
        assert_eq!(out, vec![200, 200, 404]);
        assert_eq!(p.sent.get(), 4);
    }

    /// Keeps the lines it is given; with `keeper`, it keeps secrets too (as the WIT glue does)
    /// and scrubs them; counts the lines handed on sanitized.
    #[derive(Default)]
    struct Recorder {
        lines: RefCell<Vec<String>>,
        keeper: Option<crate::log::redact::Secrets>,
        sanitized: Cell<u32>,
    }

    impl Platform for Recorder {
        fn send(&self, _: Request) -> HttpResult {
            Err(HttpError::Denied("offline".into()))
        }
        fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
            reqs.into_iter().map(|r| self.send(r)).collect()
        }
        fn log(&self, _: Level, message: &str, fields: &[(&str, &str)]) {
            let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.lines
                .borrow_mut()
                .push(format!("{message} {}", f.join(" ")));
        }
        fn log_sanitized(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
            self.sanitized.set(self.sanitized.get() + 1);
            self.log(level, message, fields);
        }
        fn add_secret(&self, secret: &str) {
            if let Some(k) = &self.keeper {
                k.add(secret);
            }
        }
        fn keeps_secrets(&self) -> bool {
            self.keeper.is_some()
        }
        fn scrub(&self, text: &str) -> String {
            self.keeper
                .as_ref()
                .map_or_else(|| text.to_string(), |k| k.scrub(text))
        }
        fn now(&self) -> DateTime<Utc> {
            DateTime::UNIX_EPOCH
        }
        fn elapsed_ms(&self) -> u64 {
            0
        }
        fn random_bytes(&self, n: usize) -> Vec<u8> {
            vec![0; n]
        }
        fn wait(&self, _: u32) {}
    }

    #[test]
    fn every_line_is_scrubbed_then_escaped_and_capped() {
        let rec = Recorder::default();
        let r = Resilient::new(&rec, 1_000);
        r.add_secret("zq-api-token-4711");
        r.add_secret("client~secret");
        r.log(
            Level::Error,
            "ZenQMS answered 400: Authorization: Bearer zq-api-token-4711\nerror forged",
            &[
                ("error", "client%7Esecret\u{202e}"),
                ("title", &"t".repeat(5_000)),
            ],
        );
        let lines = rec.lines.borrow();
        let line = &lines[0];
        assert!(line.starts_with(
            "ZenQMS answered 400: Authorization: Bearer [redacted]\\nerror forged error=[redacted]\\u{202e} title=ttt"
        ), "{line}");
        assert!(line.ends_with("…[+3990 chars]"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(r.scrub("a client~secret b"), "a [redacted] b");
    }

    #[test]
    fn a_line_is_scrubbed_once_by_a_platform_that_keeps_the_secrets_and_handed_on_sanitized() {
        let keeper = Recorder {
            keeper: Some(Default::default()),
            ..Recorder::default()
        };
        // A secret the platform was given before the wrapper existed is scrubbed too.
        keeper.add_secret("early-secret");
        let r = Resilient::new(&keeper, 1_000);
        r.add_secret("zq-api-token-4711");
        r.log(
            Level::Info,
            "zq-api-token-4711 and early-secret\nforged",
            &[("k", "v")],
        );
        assert_eq!(
            *keeper.lines.borrow(),
            vec!["[redacted] and [redacted]\\nforged k=v".to_string()]
        );
        assert_eq!(keeper.sanitized.get(), 1, "handed on as sanitized");
    }

    #[test]
    fn idempotency_by_endpoint() {
        assert!(idempotent(&req(
            Method::Patch,
            "https://a.example/v2/users/u-1"
        )));
        assert!(idempotent(&req(
            Method::Post,
            "https://a.example/v2/users/search"
        )));
        assert!(idempotent(&req(
            Method::Post,
            "https://a.example/v2/users/u-1/roles/add"
        )));
        assert!(!idempotent(&req(
            Method::Post,
            "https://a.example/v2/users"
        )));
        assert!(!idempotent(&req(
            Method::Post,
            "https://graph.microsoft.com/v1.0/subscriptions"
        )));
    }
}
