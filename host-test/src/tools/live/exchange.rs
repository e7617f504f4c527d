//! One request of a live run and what came of it: what the network ([`super::net`]) produces
//! and the recorder ([`super::record`]) writes down.

use chrono::{DateTime, Utc};

use crate::sim::http_types::{HttpRequest, HttpResponse, Target};

/// Why a request got no response (the WIT `http-error`, host side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    Denied(String),
    Timeout,
    Transport(String),
}

/// One request and what came of it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `None`: denied.
    pub target: Option<Target>,
    /// As the component sent it.
    pub request: HttpRequest,
    /// Where it really went, when test-only routing rewrote it.
    pub sent_to: Option<String>,
    pub result: Result<HttpResponse, NetError>,
    pub at: DateTime<Utc>,
    pub elapsed_ms: u64,
}
