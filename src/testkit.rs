//! Test equipment for the component's unit tests: a platform that keeps its log lines and
//! secrets, on a fixed clock, with no network unless a test scripts one ([`Offline::answering`]).

use std::cell::{Cell, RefCell};

use chrono::{DateTime, Utc};

use crate::platform::{HttpResult, Level, Platform, Request};

/// Answers a request (a test's script of the services).
pub type Responder = Box<dyn Fn(&Request) -> HttpResult>;

/// A platform with no network (a request is a test failure unless a responder is set), a
/// fixed clock and a log.
#[derive(Default)]
pub struct Offline {
    /// Answers requests when set; every request sent is kept in `sent`.
    pub responder: Option<Responder>,
    /// Requests sent, in order.
    pub sent: RefCell<Vec<Request>>,
    /// Every line logged, as `LEVEL message k=v ...`.
    pub lines: RefCell<Vec<String>>,
    /// Every secret registered.
    pub secrets: RefCell<Vec<String>>,
    /// Milliseconds since the call started (tests move it).
    pub elapsed: Cell<u64>,
    /// What `rounds_left` answers (`None`: no budget kept, `u64::MAX`).
    pub rounds: Cell<Option<u64>>,
}

impl Offline {
    /// A platform whose budget has `rounds` rounds left.
    pub fn with_rounds(rounds: u64) -> Self {
        let p = Offline::default();
        p.rounds.set(Some(rounds));
        p
    }
}

impl Offline {
    /// A platform whose requests `answer` answers.
    pub fn answering(answer: impl Fn(&Request) -> HttpResult + 'static) -> Self {
        Offline {
            responder: Some(Box::new(answer)),
            ..Offline::default()
        }
    }

    /// The log, one line per entry.
    pub fn log_text(&self) -> String {
        self.lines.borrow().join("\n")
    }
}

impl Platform for Offline {
    fn send(&self, req: Request) -> HttpResult {
        let Some(answer) = &self.responder else {
            panic!(
                "no network in this test: {} {}",
                req.method.as_str(),
                req.url
            )
        };
        let result = answer(&req);
        self.sent.borrow_mut().push(req);
        result
    }
    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        reqs.into_iter().map(|r| self.send(r)).collect()
    }
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.lines
            .borrow_mut()
            .push(format!("{level:?} {message} {}", fields.join(" ")));
    }
    fn add_secret(&self, secret: &str) {
        self.secrets.borrow_mut().push(secret.to_string());
    }
    fn now(&self) -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().expect("constant date")
    }
    fn elapsed_ms(&self) -> u64 {
        self.elapsed.get()
    }
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        vec![0x5a; n]
    }
    fn wait(&self, ms: u32) {
        self.elapsed.set(self.elapsed.get() + u64::from(ms));
    }
    fn rounds_left(&self) -> u64 {
        self.rounds.get().unwrap_or(u64::MAX)
    }
}
