//! Listings against a scripted Graph: loops and cut-short answers are errors, never endless
//! calls and never "no members".

use std::cell::Cell;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::platform::{Level, Response};

/// Answers every GET with `answer(url)`; `$batch` items the same way. Counts requests and
/// advances a clock of 100 ms per round.
struct Scripted {
    answer: fn(&str) -> (u16, Value),
    requests: Cell<u32>,
    clock: Cell<u64>,
}

impl Scripted {
    fn new(answer: fn(&str) -> (u16, Value)) -> Self {
        Scripted {
            answer,
            requests: Cell::new(0),
            clock: Cell::new(0),
        }
    }

    fn reply(&self, req: &Request) -> HttpResult {
        self.requests.set(self.requests.get() + 1);
        if req.url.ends_with("/$batch") {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let responses: Vec<Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    let url = format!("{GRAPH_BASE}{}", item["url"].as_str().unwrap());
                    let (status, body) = (self.answer)(&url);
                    json!({"id": item["id"], "status": status, "body": body})
                })
                .collect();
            return Ok(Response::text(
                200,
                "application/json",
                json!({ "responses": responses }).to_string(),
            ));
        }
        let (status, body) = (self.answer)(&req.url);
        Ok(Response::text(status, "application/json", body.to_string()))
    }
}

impl Platform for Scripted {
    /// A 1 s budget at the scripted 100 ms rounds.
    fn rounds_left(&self) -> u64 {
        1_000u64.saturating_sub(self.clock.get()) / 100
    }
    fn send(&self, req: Request) -> HttpResult {
        self.clock.set(self.clock.get() + 100);
        self.reply(&req)
    }
    fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        self.clock.set(self.clock.get() + 100);
        reqs.iter().map(|r| self.reply(r)).collect()
    }
    fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
    fn now(&self) -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }
    fn elapsed_ms(&self) -> u64 {
        self.clock.get()
    }
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        vec![7; n]
    }
    fn wait(&self, ms: u32) {
        self.clock.set(self.clock.get() + u64::from(ms));
    }
}

fn graph(p: &Scripted) -> Graph<'_> {
    Graph::new(p, Secret::new("t"), None)
}

#[test]
fn a_members_page_linking_to_itself_is_an_error_not_an_endless_call() {
    let p = Scripted::new(|url| {
        (
            200,
            json!({"value": [{"id": "u1", "@odata.type": "#microsoft.graph.user"}],
                     "@odata.nextLink": url}),
        )
    });
    let e = graph(&p).transitive_members(&["g1".into()]).unwrap_err();
    assert!(!e.retryable && e.message.contains("repeats"), "{e}");
    assert!(p.requests.get() <= 2, "{} requests", p.requests.get());
}

#[test]
fn a_two_page_members_loop_is_caught_too() {
    let p = Scripted::new(|url| {
        let other = if url.ends_with("&b") {
            url.trim_end_matches("&b").to_string()
        } else {
            format!("{url}&b")
        };
        (200, json!({"value": [], "@odata.nextLink": other}))
    });
    let e = graph(&p).transitive_members(&["g1".into()]).unwrap_err();
    assert!(e.message.contains("repeats"), "{e}");
}

#[test]
fn a_delta_page_linking_to_itself_is_an_error() {
    let p = Scripted::new(|url| (200, json!({"value": [], "@odata.nextLink": url})));
    let link = format!("{GRAPH_BASE}/users/delta?$deltatoken=abc");
    let e = graph(&p).delta_round(&link).unwrap_err();
    assert!(!e.retryable && e.message.contains("repeats"), "{e}");
}

#[test]
fn a_long_delta_round_stops_at_the_budget_and_hands_back_its_position() {
    let p = Scripted::new(|url| {
        let n: u32 = url.rsplit('=').next().unwrap().parse().unwrap_or(0);
        let next = format!("{GRAPH_BASE}/users/delta?$skiptoken={}", n + 1);
        (
            200,
            json!({"value": [{"id": format!("u{n}")}], "@odata.nextLink": next}),
        )
    });
    let link = format!("{GRAPH_BASE}/users/delta?$skiptoken=0");
    let round = graph(&p).delta_round(&link).unwrap().unwrap();
    assert!(!round.complete);
    // Pages while one and a step's reserve (5 rounds) fit in the 10 rounds of the budget.
    assert!(p.elapsed_ms() <= 1_100, "{} ms", p.elapsed_ms());
    assert_eq!(round.items.len(), 5);
    assert_eq!(round.pages, 5);
    assert!(round.link.ends_with("skiptoken=5"), "{}", round.link);
}

#[test]
fn a_deleted_group_is_absent_from_memberships_not_empty() {
    let p = Scripted::new(|url| {
        if url.contains("/groups/gone/") {
            (404, json!({"error": {"code": "Request_ResourceNotFound"}}))
        } else {
            (200, json!({"value": []}))
        }
    });
    let m = graph(&p)
        .transitive_members(&["here".into(), "gone".into()])
        .unwrap();
    assert!(m.contains_key("here"));
    assert!(!m.contains_key("gone"));
}

#[test]
fn a_page_without_value_is_an_error_not_an_empty_page() {
    let p = Scripted::new(|_| (200, json!({"@odata.context": "cut short"})));
    assert!(graph(&p).transitive_members(&["g".into()]).is_err());
    let p = Scripted::new(|_| (200, json!({"unexpected": true})));
    let e = Graph::read_member_groups(p.send(Request {
        method: Method::Post,
        url: format!("{GRAPH_BASE}/users/u/checkMemberGroups"),
        headers: vec![],
        body: vec![],
    }));
    assert!(e.is_err());
}

/// A read begun in rounds without retries (beside a sync step): a page that failed keeps its
/// listing where it was and stalls the read; finishing it asks that page again (with
/// retries) and the ids come out the same as a read in rounds of its own.
#[test]
fn a_read_begun_beside_that_stalls_is_finished_with_the_same_ids() {
    let answer = |url: &str| {
        let mut parts = url.split("&page=");
        let base = parts.next().unwrap();
        let page: u32 = parts.next().map_or(0, |p| p.parse().unwrap());
        let next = (page < 2).then(|| format!("{base}&page={}", page + 1));
        (
            200,
            json!({"value": [{"id": format!("U{page}"), "@odata.type": "#microsoft.graph.user"}],
                   "@odata.nextLink": next}),
        )
    };
    let p = Scripted::new(answer);
    let groups = ["g1".to_string(), "g2".to_string()];
    let whole = graph(&p).transitive_members(&groups).unwrap();
    assert_eq!(whole["g1"].len(), 3, "{whole:?}");

    let g = graph(&p);
    let mut read = Graph::members_listings(&groups);
    // Round 1 answered; round 2 throttled for g2 (a 429 inside the batch).
    let urls = read.urls().unwrap();
    let results = g.get_all(&urls).unwrap();
    read.take(results, false).unwrap();
    assert!(!read.done() && !read.stalled());
    let urls = read.urls().unwrap();
    let mut results = g.get_all(&urls).unwrap();
    results[1] = Ok(Response::text(429, "application/json", "{}".to_string()));
    read.take(results, false).unwrap();
    assert!(read.stalled() && !read.done());
    assert_eq!(g.finish_listings(read).unwrap(), whole);
}
