//! JSON batching, `POST /v1.0/$batch`: up to 20 requests in one, each answered on its own.
//!
//! As documented (shared/reference/graph/06-throttling-and-batching.md, section 4): every item
//! needs an `id` (unique, case-insensitively), a `method` and a *relative* `url`; an item with a
//! `body` needs `headers` with a `Content-Type`; the outer answer is 200 whenever the batch
//! parses, and each item carries its own `status`, `headers` and `body`. Answers come back in
//! an order that differs from the request's (reversed here), so a client must correlate by id.
//! Items run with the batch's `Authorization`. `dependsOn` is not simulated (a 400 says so), and
//! a subscription created inside a batch skips the validation handshake (the harness runs it for
//! top-level creates only; the component batches nothing but GETs).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::FakeGraph;
use super::odata::{self, Ctx, GRAPH_ROOT, GraphError, GraphResult};
use crate::sim::http_types::{HttpRequest, HttpResponse};

/// Graph's limit on requests per batch.
pub const MAX_BATCH: usize = 20;

/// One item of a batch, checked.
struct Item {
    id: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn invalid(message: &str) -> GraphError {
    GraphError::bad_request("BadRequest", message)
}

fn parse_items(body: &Map<String, Value>) -> GraphResult<Vec<Item>> {
    let Some(Value::Array(raw)) = body.get("requests") else {
        return Err(invalid("Invalid batch payload format."));
    };
    if raw.is_empty() {
        return Err(invalid("Invalid batch payload format."));
    }
    if raw.len() > MAX_BATCH {
        return Err(invalid(
            "The number of requests in a batch exceeds the maximum of 20.",
        ));
    }
    let mut ids = BTreeSet::new();
    raw.iter()
        .map(|v| {
            let Value::Object(item) = v else {
                return Err(invalid("Invalid batch payload format."));
            };
            let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
            let (Some(id), Some(method), Some(url)) = (text("id"), text("method"), text("url"))
            else {
                return Err(invalid(
                    "Each batch request needs an id, a method and a url.",
                ));
            };
            if id.is_empty() || !ids.insert(id.to_ascii_lowercase()) {
                return Err(invalid("Batch request ids must be unique and non-empty."));
            }
            if item.contains_key("dependsOn") {
                return Err(GraphError::not_implemented("dependsOn in $batch"));
            }
            let headers: Vec<(String, String)> = match item.get("headers") {
                None => Vec::new(),
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                Some(_) => return Err(invalid("Invalid batch payload format.")),
            };
            let body = match item.get("body") {
                None | Some(Value::Null) => Vec::new(),
                Some(b) => {
                    if !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    {
                        return Err(invalid(
                            "Content-Type header is required when a batch request has a body.",
                        ));
                    }
                    b.to_string().into_bytes()
                }
            };
            Ok(Item {
                id,
                method: method.to_ascii_uppercase(),
                url,
                headers,
                body,
            })
        })
        .collect()
}

impl FakeGraph {
    /// `POST /v1.0/$batch` (the batch itself is already authenticated).
    pub(super) fn batch(&mut self, req: &HttpRequest, ctx: &Ctx) -> GraphResult<HttpResponse> {
        if req.method != "POST" {
            return Err(GraphError::method_not_allowed());
        }
        let items = parse_items(&odata::json_body(req)?)?;
        let auth = req.header("authorization").unwrap_or_default().to_string();
        let mut responses: Vec<Value> = items
            .into_iter()
            .map(|item| {
                let answer = self.batch_item(&item, &auth, ctx);
                let headers: Map<String, Value> = answer
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let body = serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
                json!({"id": item.id, "status": answer.status, "headers": headers, "body": body})
            })
            .collect();
        responses.reverse();
        Ok(ctx.json(200, &json!({ "responses": responses })))
    }

    fn batch_item(&mut self, item: &Item, auth: &str, ctx: &Ctx) -> HttpResponse {
        let relative = !item.url.contains("://");
        let nested = item
            .url
            .trim_start_matches('/')
            .to_ascii_lowercase()
            .starts_with("$batch");
        if !relative || nested {
            return ctx.error(&invalid("Invalid request URL in batch request."));
        }
        let sep = if item.url.starts_with('/') { "" } else { "/" };
        let mut headers = vec![("authorization".to_string(), auth.to_string())];
        headers.extend(item.headers.iter().cloned());
        let inner = HttpRequest {
            method: item.method.clone(),
            url: format!("{GRAPH_ROOT}{sep}{}", item.url),
            headers,
            body: item.body.clone(),
        };
        self.seq += 1;
        let ictx = Ctx::new(ctx.now, self.seq, &inner);
        match odata::parse_url(&inner.url) {
            Some(url) => self
                .graph(&inner, &url, &ictx)
                .unwrap_or_else(|e| ictx.error(&e)),
            None => ictx.error(&invalid("Invalid request URL in batch request.")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::test_support::*;

    fn batch(g: &mut super::FakeGraph, t: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {t}");
        let req = request(
            "POST",
            &format!("{U}/$batch"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        );
        send(g, &req, now())
    }

    fn by_id<'v>(answer: &'v Value, id: &str) -> &'v Value {
        answer["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no answer {id} in {answer}"))
    }

    #[test]
    fn items_are_answered_one_by_one_with_their_own_status() {
        let (mut g, t) = setup();
        let (status, answer) = batch(
            &mut g,
            &t,
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": "/groups/A/transitiveMembers?$select=id"},
                {"id": "2", "method": "GET", "url": "users/nobody?$select=id"},
                {"id": "3", "method": "GET", "url": "/users/u2?$select=id,accountEnabled"},
            ]}),
        );
        assert_eq!(status, 200, "{answer}");
        // Not in request order: a client must correlate by id.
        let order: Vec<&str> = answer["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_ne!(order, ["1", "2", "3"]);
        let direct = get(
            &mut g,
            &t,
            &format!("{U}/groups/A/transitiveMembers?$select=id"),
        )
        .1;
        let one = by_id(&answer, "1");
        assert_eq!(one["status"], 200);
        assert_eq!(one["body"]["value"], direct["value"]);
        assert!(one["headers"].is_object());
        let two = by_id(&answer, "2");
        assert_eq!(two["status"], 404);
        assert_eq!(two["body"]["error"]["code"], "Request_ResourceNotFound");
        assert_eq!(by_id(&answer, "3")["body"]["accountEnabled"], true);
    }

    #[test]
    fn malformed_batches_are_refused_whole() {
        let (mut g, t) = setup();
        let get = |id: &str| json!({"id": id, "method": "GET", "url": "/users/u1"});
        let too_many: Vec<Value> = (0..21).map(|i| get(&i.to_string())).collect();
        for body in [
            json!({"requests": too_many}),
            json!({"requests": [get("a"), get("A")]}),
            json!({"requests": []}),
            json!({"nope": []}),
            json!({"requests": [{"id": "1", "url": "/users"}]}),
            json!({"requests": [{"id": "1", "method": "POST", "url": "/users", "body": {}}]}),
            json!({"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["2"]}]}),
        ] {
            let (status, answer) = batch(&mut g, &t, &body);
            assert_eq!(status, 400, "{body} -> {answer}");
            assert_eq!(answer["error"]["code"], "BadRequest");
        }
        // Unauthenticated: the batch itself is refused.
        let req = request(
            "POST",
            &format!("{U}/$batch"),
            &[("Content-Type", "application/json")],
            &json!({"requests": [get("1")]}).to_string(),
        );
        assert_eq!(send(&mut g, &req, now()).0, 401);
        assert_eq!(get_with(&mut g, &t, &format!("{U}/$batch"), &[]).0, 405);
    }

    #[test]
    fn absolute_or_nested_item_urls_fail_that_item_only() {
        let (mut g, t) = setup();
        let (status, answer) = batch(
            &mut g,
            &t,
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": format!("{U}/users/u1")},
                {"id": "2", "method": "GET", "url": "/$batch"},
                {"id": "3", "method": "GET", "url": "/users/u1?$select=id"},
            ]}),
        );
        assert_eq!(status, 200);
        assert_eq!(by_id(&answer, "1")["status"], 400);
        assert_eq!(by_id(&answer, "2")["status"], 400);
        assert_eq!(by_id(&answer, "3")["status"], 200);
    }
}
