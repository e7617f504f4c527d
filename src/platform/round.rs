//! One round of requests sent side by side, with its answers taken by slot, not by position.
//!
//! A `send-all` answers in request order, so code that builds a round of several kinds of
//! request (a user, its ZenQMS account, its groups) used to read the answers back by counting
//! — one miscount, or a platform answering fewer results than it was sent, and an answer is
//! read as another's or the call panics. Here each request gets a [`Slot`] when it is added,
//! and its answer is taken by that slot; an answer the platform did not give reads as a
//! transport error of that request alone.

use crate::platform::{HttpError, HttpResult, Request};

/// Where one request's answer will be, in the [`Round`] that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// Requests to send together, in the order added.
#[derive(Debug, Default)]
pub struct Round {
    requests: Vec<Request>,
}

/// The answers of a sent round.
#[derive(Debug)]
pub struct Answers {
    results: Vec<Option<HttpResult>>,
}

/// What an answer the platform did not give reads as.
pub const NO_ANSWER: &str = "the platform returned no answer for this request";

impl Round {
    pub fn new() -> Self {
        Round::default()
    }

    /// Adds a request; its answer will be taken with the slot returned.
    pub fn add(&mut self, req: Request) -> Slot {
        self.requests.push(req);
        Slot(self.requests.len() - 1)
    }

    /// Adds several requests; their slots in the same order.
    pub fn add_all(&mut self, reqs: impl IntoIterator<Item = Request>) -> Vec<Slot> {
        reqs.into_iter().map(|r| self.add(r)).collect()
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Sends the round with `send_all` (a platform's, or a client's that adds its own
    /// handling, such as Graph's token refresh) and keeps the answers by slot.
    pub fn send(self, send_all: impl FnOnce(Vec<Request>) -> Vec<HttpResult>) -> Answers {
        let n = self.requests.len();
        let results = if n == 0 {
            Vec::new()
        } else {
            send_all(self.requests)
        };
        Answers::new(results, n)
    }
}

impl Answers {
    /// `results` of a round of `n` requests, fitted to `n`: a missing answer is a transport
    /// error, an extra one is dropped.
    pub fn new(results: Vec<HttpResult>, n: usize) -> Self {
        let mut results: Vec<Option<HttpResult>> = results.into_iter().map(Some).collect();
        results.resize_with(n, || None);
        Answers { results }
    }

    /// The answer in `slot` (each slot once: a second take reads as no answer).
    pub fn take(&mut self, slot: Slot) -> HttpResult {
        self.results
            .get_mut(slot.0)
            .and_then(Option::take)
            .unwrap_or_else(|| Err(HttpError::Transport(NO_ANSWER.into())))
    }

    /// The answers in `slots`, in their order.
    pub fn take_all(&mut self, slots: &[Slot]) -> Vec<HttpResult> {
        slots.iter().map(|s| self.take(*s)).collect()
    }
}

/// A `send-all`'s results fitted to the `n` requests sent (see [`Answers::new`]): what every
/// caller of the platform's `send-all` gets, so no caller reads past the end or mispairs.
pub fn fitted(results: Vec<HttpResult>, n: usize) -> Vec<HttpResult> {
    let mut a = Answers::new(results, n);
    (0..n).map(|i| a.take(Slot(i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Method, Response};

    fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn ok(status: u16) -> HttpResult {
        Ok(Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            unanswered_before: None,
        })
    }

    #[test]
    fn answers_are_taken_by_slot_and_missing_ones_are_errors() {
        let mut round = Round::new();
        let a = round.add(get("https://a"));
        let bc = round.add_all([get("https://b"), get("https://c")]);
        // The platform answers only two of three.
        let mut answers = round.send(|reqs| {
            assert_eq!(reqs.len(), 3);
            vec![ok(200), ok(201)]
        });
        assert_eq!(answers.take(bc[0]).unwrap().status, 201);
        assert_eq!(answers.take(a).unwrap().status, 200);
        let missing = answers.take(bc[1]).unwrap_err();
        assert_eq!(missing, HttpError::Transport(NO_ANSWER.into()));
        // Taken twice: no answer.
        assert!(answers.take(a).is_err());
    }

    #[test]
    fn an_empty_round_sends_nothing_and_extra_answers_are_dropped() {
        let answers = Round::new().send(|_| panic!("nothing to send"));
        assert!(answers.results.is_empty());
        assert_eq!(fitted(vec![ok(200), ok(200), ok(200)], 2).len(), 2);
        assert_eq!(fitted(Vec::new(), 2).len(), 2);
    }
}
