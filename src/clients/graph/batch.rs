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
use crate::platform::round;
use crate::platform::url::encode;
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
            unanswered_before: None,
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
    /// retries never see them) go out again after the longest Retry-After among them, as Graph
    /// advises (a lone one as itself); after [`ATTEMPTS`] rounds their own answer is returned.
    pub fn get_all(&self, urls: &[String]) -> Result<Vec<HttpResult>, Failure> {
        for url in urls {
            check_graph_url(url)?;
        }
        let send = |reqs: Vec<Request>| {
            let n = reqs.len();
            round::fitted(self.send_all(reqs), n)
        };
        if urls.len() <= 1 {
            let reqs = urls
                .iter()
                .map(|u| self.request(Method::Get, u, None))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(send(reqs));
        }
        let mut results: Vec<Option<HttpResult>> = vec![None; urls.len()];
        let mut todo: Vec<usize> = (0..urls.len()).collect();
        for attempt in 0..ATTEMPTS {
            if let [i] = todo[..] {
                // One left: alone, where the platform's own retries apply to it.
                let req = self.request(Method::Get, &urls[i], None)?;
                results[i] = send(vec![req]).pop();
                break;
            }
            let chunks: Vec<&[usize]> = todo.chunks(BATCH_MAX).collect();
            let reqs = chunks
                .iter()
                .map(|chunk| self.batch_request(chunk, urls))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pending = Vec::new();
            let mut pause = 0;
            let mut unauthorized = Vec::new();
            let answers = send(reqs);
            for (chunk, answer) in chunks.iter().zip(answers) {
                for (i, result) in unpack(chunk, answer) {
                    match result {
                        Ok(r) if transient(&r) && attempt + 1 < ATTEMPTS => {
                            pause = pause.max(wait_ms(&r, attempt));
                            pending.push((i, Ok(r)));
                        }
                        // The token expired while the batch ran (Graph answers each item 401
                        // inside a 200 batch): refreshed below, those items sent again.
                        Ok(r) if r.status == 401 && attempt + 1 < ATTEMPTS => {
                            unauthorized.push((i, Ok(r)));
                        }
                        other => results[i] = Some(other),
                    }
                }
            }
            if !unauthorized.is_empty() {
                if self.refresh_token() {
                    pending.extend(unauthorized);
                } else {
                    for (i, r) in unauthorized {
                        results[i] = Some(r);
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            if !self.platform.can_wait(pause) {
                // Out of budget: their throttled answers stand; the call checkpoints.
                for (i, r) in pending {
                    results[i] = Some(r);
                }
                break;
            }
            self.platform.wait(u32::try_from(pause).unwrap_or(u32::MAX));
            todo = pending.into_iter().map(|(i, _)| i).collect();
        }
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(HttpError::Transport("no answer in the batch".into())))
            })
            .collect();
        Ok(results)
    }

    /// `$batch` requests (20 URLs each) to go out in a caller's round; their answers, given
    /// back in order to [`Graph::unpack_all`], are each URL's answer. Unlike
    /// [`Graph::get_all`], items Graph throttled are not sent again: their 429 stands.
    pub fn batch_requests(&self, urls: &[String]) -> Result<Vec<Request>, Failure> {
        for url in urls {
            check_graph_url(url)?;
        }
        let all: Vec<usize> = (0..urls.len()).collect();
        all.chunks(BATCH_MAX)
            .map(|chunk| self.batch_request(chunk, urls))
            .collect()
    }

    /// The requests that GET `urls` in a caller's round, as [`Graph::get_all`] sends them the
    /// first time: one URL as itself, more in `$batch`es of 20. Their answers, given back in
    /// order to [`Graph::get_answers`], are each URL's answer (a throttled item's 429 stands).
    pub fn get_requests(&self, urls: &[String]) -> Result<Vec<Request>, Failure> {
        match urls {
            [url] => {
                check_graph_url(url)?;
                Ok(vec![self.request(Method::Get, url, None)?])
            }
            _ => self.batch_requests(urls),
        }
    }

    /// Each of `n` URLs' answer from the answers to [`Graph::get_requests`].
    pub fn get_answers(n: usize, answers: Vec<HttpResult>) -> Vec<HttpResult> {
        if n == 1 {
            return round::fitted(answers, 1);
        }
        Self::unpack_all(n, answers)
    }

    /// Each of `n` URLs' answer from the answers to [`Graph::batch_requests`].
    pub fn unpack_all(n: usize, answers: Vec<HttpResult>) -> Vec<HttpResult> {
        let all: Vec<usize> = (0..n).collect();
        let mut out: Vec<Option<HttpResult>> = vec![None; n];
        for (chunk, answer) in all.chunks(BATCH_MAX).zip(answers) {
            for (i, r) in unpack(chunk, answer) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(HttpError::Transport("no answer in the batch".into())))
            })
            .collect()
    }

    /// `$batch` requests asking Graph, for each of `users`, which of `groups` it is a
    /// transitive member of (`POST /users/{id}/checkMemberGroups`, 20 group ids an item, Graph's
    /// limit: shared/reference/graph/05-membership.md, section 3), 20 items to a batch, to go
    /// out in a caller's round. Given back to [`Graph::unpack_all`] with
    /// `users.len() * groups.len().div_ceil(20)` items, the answers come user by user, each
    /// user's chunks in order (read each with [`Graph::read_member_groups`]).
    pub fn member_check_requests(
        &self,
        users: &[String],
        groups: &[String],
    ) -> Result<Vec<Request>, Failure> {
        // Written as JSON text and read back (the requests' values are strings that serde_json
        // writes escaped): `json!` trees of this shape cost the component 9 KB of code.
        let chunks: Vec<String> = groups
            .chunks(20)
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect();
        let mut items: Vec<String> = Vec::new();
        for user in users {
            let url = Value::String(format!("/users/{}/checkMemberGroups", encode(user)));
            for ids in &chunks {
                items.push(format!(
                    r#"{{"id":"{}","method":"POST","url":{url},"headers":{{"Content-Type":"application/json"}},"body":{{"groupIds":{ids}}}}}"#,
                    items.len()
                ));
            }
        }
        items
            .chunks(BATCH_MAX)
            .map(|chunk| {
                let text = format!(r#"{{"requests":[{}]}}"#, chunk.join(","));
                let body: Value = serde_json::from_str(&text)
                    .map_err(|e| Failure::fatal(format!("building a $batch: {e}")))?;
                self.request(Method::Post, &format!("{GRAPH_BASE}/$batch"), Some(body))
            })
            .collect()
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
            unanswered_before: None,
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

    /// Answers from a script, in order; records what was sent and how long it waited.
    #[derive(Default)]
    struct Scripted {
        answers: std::cell::RefCell<Vec<HttpResult>>,
        sent: std::cell::RefCell<Vec<Request>>,
        waited: std::cell::Cell<u32>,
        /// The call's budget is spent: no wait fits.
        spent: bool,
    }

    impl crate::platform::Platform for Scripted {
        fn send(&self, req: Request) -> HttpResult {
            self.sent.borrow_mut().push(req);
            self.answers.borrow_mut().remove(0)
        }
        fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
            reqs.into_iter().map(|r| self.send(r)).collect()
        }
        fn log(&self, _: crate::platform::Level, _: &str, _: &[(&str, &str)]) {}
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::UNIX_EPOCH
        }
        fn elapsed_ms(&self) -> u64 {
            0
        }
        fn random_bytes(&self, n: usize) -> Vec<u8> {
            vec![0; n]
        }
        fn wait(&self, ms: u32) {
            self.waited.set(self.waited.get() + ms);
        }
        fn can_wait(&self, _: u64) -> bool {
            !self.spent
        }
    }

    fn three_groups() -> Vec<String> {
        ["g0", "g1", "g2"]
            .iter()
            .map(|g| format!("{GRAPH_BASE}/groups/{g}/transitiveMembers?$select=id"))
            .collect()
    }

    #[test]
    fn out_of_budget_the_throttled_answer_stands() {
        let p = Scripted {
            answers: std::cell::RefCell::new(vec![ok(json!({"responses": [
                {"id": "0", "status": 200, "body": {"value": []}},
                {"id": "1", "status": 429, "headers": {"Retry-After": "30"}, "body": {"error": {}}},
                {"id": "2", "status": 200, "body": {"value": []}},
            ]}))]),
            spent: true,
            ..Scripted::default()
        };
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let got = graph.get_all(&three_groups()).unwrap();
        assert_eq!(p.sent.borrow().len(), 1, "nothing sent again");
        assert_eq!(p.waited.get(), 0);
        assert_eq!(got[1].as_ref().unwrap().status, 429);
    }

    #[test]
    fn throttled_items_are_sent_again_after_their_retry_after() {
        let p = Scripted {
            answers: std::cell::RefCell::new(vec![
                ok(json!({"responses": [
                    {"id": "1", "status": 429, "headers": {"Retry-After": "3"}, "body": {"error": {}}},
                    {"id": "0", "status": 200, "body": {"value": [{"id": "a"}]}},
                    {"id": "2", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound"}}},
                ]})),
                // The retry is a single request: it goes out as itself, not as a batch.
                ok(json!({"value": [{"id": "b"}]})),
            ]),
            ..Scripted::default()
        };
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let urls = three_groups();
        let got = graph.get_all(&urls).unwrap();
        let sent = p.sent.borrow();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].url.ends_with("/$batch"));
        let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!(
            body["requests"][1],
            json!({"id": "1", "method": "GET", "url": "/groups/g1/transitiveMembers?$select=id"})
        );
        assert_eq!(sent[1].url, urls[1]);
        assert_eq!(p.waited.get(), 3_000);
        let status = |i: usize| got[i].as_ref().map(|r| r.status).unwrap();
        assert_eq!((status(0), status(1), status(2)), (200, 200, 404));
        assert_eq!(got[1].as_ref().unwrap().body, br#"{"value":[{"id":"b"}]}"#);
    }

    /// `checkMemberGroups` in `$batch`: an item per user and 20 groups (Graph's limit), 20
    /// items a batch, ids numbered on across batches so that `unpack_all` gives each item's
    /// answer back in order; a user id is a path segment, percent-encoded.
    #[test]
    fn member_checks_go_20_groups_an_item_and_20_items_a_batch() {
        let p = Scripted::default();
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let users: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
        let mut users = users;
        users[10] = "a/b?c".into();
        let groups: Vec<String> = (0..45).map(|i| format!("g{i}")).collect();
        let reqs = graph.member_check_requests(&users, &groups).unwrap();
        assert_eq!(reqs.len(), 2, "33 items: a batch of 20 and one of 13");
        let body = |i: usize| -> Value { serde_json::from_slice(&reqs[i].body).unwrap() };
        let (first, second) = (body(0), body(1));
        assert_eq!(first["requests"].as_array().unwrap().len(), 20);
        assert_eq!(second["requests"].as_array().unwrap().len(), 13);
        assert_eq!(
            first["requests"][1],
            json!({"id": "1", "method": "POST", "url": "/users/u0/checkMemberGroups",
                   "headers": {"Content-Type": "application/json"},
                   "body": {"groupIds": groups[20..40]}})
        );
        assert_eq!(
            first["requests"][2]["body"]["groupIds"],
            json!(groups[40..])
        );
        assert_eq!(second["requests"][0]["id"], "20");
        let last = &second["requests"][12];
        assert_eq!(last["id"], "32");
        assert_eq!(last["url"], "/users/a%2Fb%3Fc/checkMemberGroups");
        assert!(reqs.iter().all(|r| r.url.ends_with("/$batch")));
        // The answers, by id, come back in the items' order.
        let answer = |ids: std::ops::Range<usize>| {
            let items: Vec<Value> = ids
                .rev()
                .map(|i| json!({"id": i.to_string(), "status": 200, "body": {"value": [format!("g{i}")]}}))
                .collect();
            ok(json!({ "responses": items }))
        };
        let got = Graph::unpack_all(33, vec![answer(0..20), answer(20..33)]);
        for (i, r) in got.into_iter().enumerate() {
            let groups = Graph::read_member_groups(r).unwrap().unwrap();
            assert_eq!(groups, [format!("g{i}")].into_iter().collect());
        }
        assert!(
            graph
                .member_check_requests(&[], &groups)
                .unwrap()
                .is_empty()
        );
    }

    fn scripted(answers: Vec<HttpResult>) -> Scripted {
        Scripted {
            answers: std::cell::RefCell::new(answers),
            ..Scripted::default()
        }
    }

    /// Links a hostile or broken Graph might hand out for `/v1.0/users`, with what the
    /// failure must name. Each is refused when it arrives: not followed, not retryable.
    const HOSTILE: &[(&str, &str)] = &[
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=a\r\nHost: evil.example",
            "U+000D",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=a\nb",
            "U+000A",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=a b",
            "U+0020",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=a\tb",
            "U+0009",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{0}",
            "U+0000",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{7f}",
            "U+007F",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{85}",
            "U+0085",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{e9}",
            "U+00E9",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{202e}x",
            "U+202E",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{2028}x",
            "U+2028",
        ),
        (
            "https://graph.microsoft.com/v1.0/users?$skiptoken=\u{200b}x",
            "U+200B",
        ),
        (
            "https://graph.microsoft.com/v1.0/users\\..\\..\\me",
            "backslash",
        ),
        (
            "https://evil.example/v1.0/users?$skiptoken=x",
            "https://evil.example",
        ),
        (
            "http://graph.microsoft.com/v1.0/users?$skiptoken=x",
            "http://graph.microsoft.com",
        ),
        (
            "https://graph.microsoft.com.evil.example/v1.0/users",
            "https://graph.microsoft.com.evil.example",
        ),
        (
            "https://graph.microsoft.com@evil.example/v1.0/users",
            "user info",
        ),
        (
            "https://evil.example@graph.microsoft.com/v1.0/users",
            "user info",
        ),
        (
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://graph.microsoft.com:8443",
        ),
        ("https://graph%2emicrosoft.com/v1.0/users", "host"),
        ("https://\u{ff47}raph.microsoft.com/v1.0/users", "U+FF47"),
        (
            "https://graph.microsoft.com/beta/users?$skiptoken=x",
            "/v1.0/",
        ),
        (
            "https://graph.microsoft.com/v1.0/groups?$skiptoken=x",
            "/v1.0/users",
        ),
        (
            "https://graph.microsoft.com/v1.0/users/../groups?$skiptoken=x",
            "/v1.0/users",
        ),
        (
            "https://graph.microsoft.com/v1.0/users/x?$skiptoken=x",
            "/v1.0/users",
        ),
        ("https://graph.microsoft.com/v1.0/users#x", "fragment"),
        ("/v1.0/users?$skiptoken=x", "absolute"),
        ("graph.microsoft.com/v1.0/users", "absolute"),
        ("", "absolute"),
        ("javascript:alert(1)", "absolute"),
    ];

    fn users_page(next: &str) -> HttpResult {
        ok(json!({"value": [{"id": "a"}], "@odata.nextLink": next}))
    }

    fn assert_refused(f: &Failure, link: &str, key: &str, named: &str) {
        assert!(!f.retryable, "{link:?}: {}", f.message);
        assert!(f.message.contains(key), "{link:?}: {}", f.message);
        assert!(
            f.message.contains(named),
            "{link:?}: {named} not in {}",
            f.message
        );
        // As the call layer shows it: scrubbed, then escaped and capped (`log::clean`); the
        // link is never cut before that (a cut before the scrub could leave part of a secret).
        let shown = crate::log::escape::escape(&f.message, crate::log::escape::OUTCOME_CAP);
        assert!(
            shown
                .chars()
                .all(|c| c == ' ' || c.is_ascii_graphic() || !c.is_ascii()),
            "{link:?}: raw characters in {shown:?}"
        );
        assert!(
            shown.chars().all(|c| !crate::log::escape::must_escape(c)),
            "{link:?}: {shown:?}"
        );
    }

    #[test]
    fn a_hostile_next_link_fails_the_page_when_it_arrives() {
        let first = format!("{GRAPH_BASE}/users?$select=id&$top=100");
        for (link, named) in HOSTILE {
            let p = scripted(vec![users_page(link)]);
            let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
            let Err(f) = graph.page(&first, "listing users") else {
                panic!("{link:?} accepted");
            };
            assert_refused(&f, link, "@odata.nextLink", named);
            assert_eq!(p.sent.borrow().len(), 1, "{link:?} was followed");
            // The same answer read by a caller that sent the request itself.
            let Err(f) = Graph::read_page(users_page(link), &first, "listing users") else {
                panic!("{link:?} accepted by read_page");
            };
            assert_refused(&f, link, "@odata.nextLink", named);
        }
        let long = format!(
            "https://evil.example/v1.0/users?$skiptoken={}",
            "\r".repeat(50_000)
        );
        let p = scripted(vec![users_page(&long)]);
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let f = graph.page(&first, "listing users").err().unwrap();
        assert_refused(&f, "long", "@odata.nextLink", "https://evil.example");
        // Shown whole here; the call layer caps it after its scrub, saying how much it cut.
        let shown = crate::log::escape::escape(&f.message, crate::log::escape::OUTCOME_CAP);
        assert!(
            shown.chars().count() <= crate::log::escape::OUTCOME_CAP && shown.ends_with(" chars]"),
            "{}",
            &shown[shown.len() - 40..]
        );
    }

    #[test]
    fn graphs_own_links_pass_and_are_kept() {
        let first = format!("{GRAPH_BASE}/users?$select=id&$top=100");
        for link in [
            "https://graph.microsoft.com/v1.0/users?$select=id&$top=100&$skiptoken=RFNwdAIAAQAAAD8",
            "https://graph.microsoft.com/v1.0/Users?$skiptoken=a-b_c~d%2Fe%3D",
            "https://GRAPH.microsoft.com:443/v1.0/users?$skiptoken=x",
        ] {
            let p = scripted(vec![users_page(link)]);
            let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
            let page = graph.page(&first, "listing users").unwrap();
            let next = page.next.unwrap();
            assert!(
                next.starts_with("https://graph.microsoft.com/v1.0/"),
                "{next}"
            );
        }
    }

    #[test]
    fn hostile_delta_links_are_refused_and_never_returned() {
        let link = format!("{GRAPH_BASE}/users/delta?$deltatoken=abc");
        for (bad, named) in HOSTILE.iter().take(12) {
            let bad = bad.replace("/users", "/users/delta");
            // In the middle of a round (nextLink) and at its end (deltaLink).
            for key in ["@odata.nextLink", "@odata.deltaLink"] {
                let p = scripted(vec![ok(json!({"value": [], key: bad}))]);
                let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
                let f = graph.delta_round(&link).expect_err("refused");
                assert_refused(&f, &bad, key, named);
                assert_eq!(p.sent.borrow().len(), 1);
            }
            // Starting delta tracking (the links deploy stores).
            let good =
                ok(json!({"@odata.deltaLink": format!("{GRAPH_BASE}/groups/delta?$deltatoken=z")}));
            let p = scripted(vec![
                ok(json!({"value": [], "@odata.deltaLink": bad})),
                good,
            ]);
            let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
            let f = graph.delta_latest().expect_err("refused");
            assert_refused(&f, &bad, "@odata.deltaLink", named);
        }
        // The users round's link may not continue another resource.
        let p = scripted(vec![ok(json!({"value": [],
            "@odata.deltaLink": format!("{GRAPH_BASE}/groups/delta?$deltatoken=z")}))]);
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let f = graph.delta_round(&link).expect_err("refused");
        assert_refused(&f, "groups", "@odata.deltaLink", "/v1.0/users/delta");
    }

    #[test]
    fn a_hostile_next_link_inside_a_batch_fails_the_listing() {
        let p = scripted(vec![ok(json!({"responses": [
            {"id": "0", "status": 200, "body": {"value": []}},
            {"id": "1", "status": 200, "body": {"value": [],
                "@odata.nextLink": "https://graph.microsoft.com/v1.0/groups/g1/transitiveMembers?$skiptoken=a\r\nb"}},
            {"id": "2", "status": 200, "body": {"value": [],
                "@odata.nextLink": "https://graph.microsoft.com/v1.0/groups/g1/transitiveMembers?$skiptoken=b"}},
        ]}))]);
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let groups = vec!["g0".to_string(), "g1".into(), "g2".into()];
        let f = graph.transitive_members(&groups).expect_err("refused");
        assert_refused(&f, "batch", "@odata.nextLink", "U+000D");
        assert_eq!(p.sent.borrow().len(), 1, "nothing followed");
        // g2's link continues g1's listing: refused too.
        let p = scripted(vec![ok(json!({"responses": [
            {"id": "0", "status": 200, "body": {"value": []}},
            {"id": "1", "status": 200, "body": {"value": []}},
            {"id": "2", "status": 200, "body": {"value": [],
                "@odata.nextLink": "https://graph.microsoft.com/v1.0/groups/g1/transitiveMembers?$skiptoken=b"}},
        ]}))]);
        let graph = Graph::new(&p, crate::config::Secret::new("t"), None);
        let f = graph.transitive_members(&groups).expect_err("refused");
        assert_refused(
            &f,
            "batch",
            "@odata.nextLink",
            "/v1.0/groups/g2/transitiveMembers",
        );
    }

    #[test]
    fn waits_follow_retry_after_with_a_cap() {
        let r = |h: &str| Response {
            status: 429,
            headers: vec![("Retry-After".into(), h.into())],
            body: vec![],
            unanswered_before: None,
        };
        assert_eq!(wait_ms(&r("3"), 0), 3_000);
        assert_eq!(wait_ms(&r("9999"), 0), MAX_WAIT_MS);
        assert_eq!(wait_ms(&r("soon"), 2), 4_000);
    }
}
