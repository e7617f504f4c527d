//! JSON batching: many Graph GETs in one HTTP request (`POST /v1.0/$batch`, at most 20 each).
//!
//! Fewer requests and round trips for the reads that fan out (group memberships, leaver
//! checks), at the same Graph cost: throttling and resource units count each request inside a
//! batch (shared/reference/graph/06-throttling-and-batching.md, section 4).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{GRAPH_BASE, Graph, check_graph_url};
use crate::failure::Failure;
use crate::platform::{HttpError, HttpResult, Method, Request, Response};

/// Graph's limit on requests per batch.
pub const BATCH_MAX: usize = 20;
/// Rounds of sending throttled items again before their 429 is the answer.
const ATTEMPTS: u32 = 5;
/// The longest wait between those rounds.
const MAX_WAIT_MS: u64 = 30_000;

#[derive(Deserialize)]
struct Answers {
    responses: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    /// Kept as text: it is parsed once, by whoever reads the item (a page of up to 999
    /// members would otherwise be built as a JSON tree only to be written out again).
    #[serde(default)]
    body: Option<Box<RawValue>>,
}

impl Answer {
    fn into_response(self) -> Response {
        let headers = self
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        let body = match self.body {
            Some(raw) if raw.get() != "null" => raw.get().as_bytes().to_vec(),
            _ => Vec::new(),
        };
        Response {
            status: self.status,
            headers,
            body,
        }
    }
}

/// Throttled or failing for now inside a batch: worth sending again.
fn transient(r: &Response) -> bool {
    matches!(r.status, 429 | 503 | 504)
}

/// How long to wait before sending `r` again: its Retry-After (seconds), else backoff.
fn wait_ms(r: &Response, attempt: u32) -> u64 {
    let backoff = 1_000u64 << attempt.min(4);
    r.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(backoff, |s| s.saturating_mul(1_000))
        .min(MAX_WAIT_MS)
}

impl Graph<'_> {
    /// GETs Graph URLs side by side, 20 to a `$batch`, and returns each answer in order, as if
    /// each had been sent alone. A single URL goes out as itself. Items throttled or failing
    /// for now inside a batch (429, 503, 504: the batch itself answers 200, so the platform's
    /// retries never see them) go out again in a later batch after the longest Retry-After
    /// among them, as Graph advises; after [`ATTEMPTS`] rounds their own answer is returned.
    pub fn get_all(&self, urls: &[String]) -> Result<Vec<HttpResult>, Failure> {
        for url in urls {
            check_graph_url(url)?;
        }
        if urls.len() <= 1 {
            let reqs = urls
                .iter()
                .map(|u| self.request(Method::Get, u, None))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(self.send_all(reqs));
        }
        let mut results: Vec<Option<HttpResult>> = vec![None; urls.len()];
        let mut todo: Vec<usize> = (0..urls.len()).collect();
        for attempt in 0..ATTEMPTS {
            let chunks: Vec<&[usize]> = todo.chunks(BATCH_MAX).collect();
            let reqs = chunks
                .iter()
                .map(|chunk| self.batch_request(chunk, urls))
                .collect::<Result<Vec<_>, _>>()?;
            let mut again = Vec::new();
            let mut pause = 0;
            for (chunk, answer) in chunks.iter().zip(self.send_all(reqs)) {
                for (i, result) in unpack(chunk, answer) {
                    match result {
                        Ok(r) if transient(&r) && attempt + 1 < ATTEMPTS => {
                            pause = pause.max(wait_ms(&r, attempt));
                            again.push(i);
                        }
                        other => results[i] = Some(other),
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            self.platform.wait(u32::try_from(pause).unwrap_or(u32::MAX));
            todo = again;
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(HttpError::Transport("no answer in the batch".into())))
            })
            .collect())
    }

    /// The `$batch` request for `chunk` (indexes into `urls`, used as the item ids).
    fn batch_request(&self, chunk: &[usize], urls: &[String]) -> Result<Request, Failure> {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let relative = urls[*i].strip_prefix(GRAPH_BASE).unwrap_or(&urls[*i]);
                json!({"id": i.to_string(), "method": "GET", "url": relative})
            })
            .collect();
        self.request(
            Method::Post,
            &format!("{GRAPH_BASE}/$batch"),
            Some(json!({ "requests": items })),
        )
    }
}

/// Each item's answer, by its index in the caller's list. A batch that failed as a whole gives
/// every item its answer; an item missing from a 200 gets a transport error.
fn unpack(chunk: &[usize], answer: HttpResult) -> Vec<(usize, HttpResult)> {
    let parsed = match &answer {
        Ok(r) if r.status == 200 => serde_json::from_slice::<Answers>(&r.body).ok(),
        _ => None,
    };
    let Some(parsed) = parsed else {
        let answer = match answer {
            Ok(r) if r.status == 200 => Err(HttpError::Transport(
                "unreadable $batch answer from Microsoft Graph".into(),
            )),
            other => other,
        };
        return chunk.iter().map(|i| (*i, answer.clone())).collect();
    };
    let mut by_id: std::collections::HashMap<String, Response> = parsed
        .responses
        .into_iter()
        .map(|a| (a.id.clone(), a.into_response()))
        .collect();
    chunk
        .iter()
        .map(|i| {
            let r = by_id.remove(&i.to_string()).ok_or_else(|| {
                HttpError::Transport("an item is missing from the $batch answer".into())
            });
            (*i, r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: Value) -> HttpResult {
        Ok(Response {
            status: 200,
            headers: vec![],
            body: body.to_string().into_bytes(),
        })
    }

    #[test]
    fn answers_are_matched_by_id_not_order() {
        let answer = ok(json!({"responses": [
            {"id": "7", "status": 404, "body": {"error": {"code": "x"}}},
            {"id": "3", "status": 200, "headers": {"Retry-After": "2"}, "body": {"value": []}},
        ]}));
        let got = unpack(&[3, 7], answer);
        assert_eq!(got[0].0, 3);
        let r3 = got[0].1.clone().unwrap();
        assert_eq!((r3.status, r3.header("retry-after")), (200, Some("2")));
        assert_eq!(r3.body, br#"{"value":[]}"#);
        assert_eq!(got[1].1.as_ref().unwrap().status, 404);
    }

    #[test]
    fn a_failed_or_garbled_batch_fails_every_item() {
        let got = unpack(&[0, 1], Err(HttpError::Timeout));
        assert!(got.iter().all(|(_, r)| r == &Err(HttpError::Timeout)));
        let got = unpack(&[0, 1], ok(json!({"nope": 1})));
        assert!(
            got.iter()
                .all(|(_, r)| matches!(r, Err(HttpError::Transport(_))))
        );
        let missing = unpack(
            &[0, 1],
            ok(json!({"responses": [{"id": "0", "status": 200}]})),
        );
        assert!(missing[0].1.is_ok());
        assert!(missing[1].1.is_err());
    }

    #[test]
    fn waits_follow_retry_after_with_a_cap() {
        let r = |h: &str| Response {
            status: 429,
            headers: vec![("Retry-After".into(), h.into())],
            body: vec![],
        };
        assert_eq!(wait_ms(&r("3"), 0), 3_000);
        assert_eq!(wait_ms(&r("9999"), 0), MAX_WAIT_MS);
        assert_eq!(wait_ms(&r("soon"), 2), 4_000);
    }
}
