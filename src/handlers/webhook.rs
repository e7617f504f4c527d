//! Inbound webhook requests: Graph's validation handshake and notification collections.
//!
//! Nothing here trusts the request: sizes are capped, JSON is parsed into a fixed shape, and a
//! notification counts only if its subscription id is one of ours.

use serde::Deserialize;

use crate::log::Log;
use crate::platform::url::Url;
use crate::platform::{Method, Request, Response};

/// Largest notification body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest validation token echoed.
pub const MAX_TOKEN: usize = 1024;

/// One change or lifecycle notification, as far as we read it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(default)]
    pub subscription_id: String,
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub change_type: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub lifecycle_event: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Deserialize)]
struct Collection {
    value: Vec<Notification>,
}

/// What the webhook request is.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// Answer right away (handshake or a rejected request).
    Reply(Response),
    /// A well-formed notification collection to check and act on.
    Notifications(Vec<Notification>),
}

/// A plain-text reply. Every reply carries `X-Content-Type-Options: nosniff`: the handshake
/// echoes text chosen by whoever calls the URL, and no browser may read it as anything but text.
fn plain(status: u16, body: &str) -> Response {
    let mut r = Response::text(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    );
    r.headers
        .push(("x-content-type-options".into(), "nosniff".into()));
    r
}

/// 405 for anything but POST, with the `Allow` header RFC 9110 asks for.
fn post_only() -> Response {
    let mut r = plain(405, "only POST is accepted");
    r.headers.push(("allow".into(), "POST".into()));
    r
}

/// Classifies an inbound request; malformed ones get their 4xx here.
pub fn read(req: &Request, log: &Log) -> Inbound {
    let Ok(url) = Url::parse(&req.url) else {
        return Inbound::Reply(plain(400, "bad request URL"));
    };
    if let Some(token) = url.query_param("validationToken") {
        // Graph sends the handshake as POST (shared/reference/graph, change notifications):
        // any other method is not Graph, and its token is not echoed.
        if req.method != Method::Post {
            log.warn(
                "webhook validation refused: the handshake is answered for POST only",
                &[("method", req.method.as_str())],
            );
            return Inbound::Reply(post_only());
        }
        if token.len() > MAX_TOKEN || token.chars().any(char::is_control) || token.is_empty() {
            log.warn(
                "webhook validation refused: token empty, over 1 KiB or with control characters",
                &[],
            );
            return Inbound::Reply(plain(400, "invalid validationToken"));
        }
        log.info("webhook validation handshake answered", &[]);
        return Inbound::Reply(plain(200, &token));
    }
    if req.method != Method::Post {
        return Inbound::Reply(post_only());
    }
    if req.body.len() > MAX_BODY {
        log.warn(
            "webhook refused: body over 1 MiB",
            &[("bytes", &req.body.len().to_string())],
        );
        return Inbound::Reply(plain(400, "body too large"));
    }
    match serde_json::from_slice::<Collection>(&req.body) {
        Ok(c) => Inbound::Notifications(c.value),
        Err(e) => {
            log.warn(
                "webhook refused: not a notification collection",
                &[("error", &crate::failure::upstream::json_problem(&e))],
            );
            Inbound::Reply(plain(400, "malformed notification body"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Offline;

    fn req(query: &str, body: &[u8]) -> Request {
        Request {
            method: Method::Post,
            url: format!("https://hooks.example/i/1{query}"),
            headers: vec![],
            body: body.to_vec(),
        }
    }

    #[test]
    fn handshake_echoes_decoded_token() {
        let p = Offline::default();
        let log = Log::new(&p);
        let Inbound::Reply(r) = read(&req("?validationToken=a%2Bb+c%3D", b""), &log) else {
            panic!()
        };
        assert_eq!((r.status, r.body.as_slice()), (200, b"a+b c=".as_slice()));
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }

    #[test]
    fn the_handshake_is_answered_for_post_only() {
        let p = Offline::default();
        let log = Log::new(&p);
        for method in [Method::Get, Method::Delete, Method::Put, Method::Patch] {
            let mut r = req("?validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E", b"");
            r.method = method;
            let Inbound::Reply(reply) = read(&r, &log) else {
                panic!("{method:?}")
            };
            assert_eq!(reply.status, 405, "{method:?}");
            assert_eq!(reply.header("allow"), Some("POST"));
            assert!(!String::from_utf8_lossy(&reply.body).contains("script"));
        }
    }

    #[test]
    fn bad_tokens_and_bodies_get_400() {
        let p = Offline::default();
        let log = Log::new(&p);
        let long = format!("?validationToken={}", "a".repeat(1025));
        for (q, body) in [
            (long.as_str(), &b""[..]),
            ("?validationToken=a%0Ab", b""),
            ("", b"{not json"),
            ("", b"{\"value\": 5}"),
        ] {
            let Inbound::Reply(r) = read(&req(q, body), &log) else {
                panic!("{q}")
            };
            assert_eq!(r.status, 400, "{q}");
        }
        let big = vec![b' '; MAX_BODY + 1];
        assert!(matches!(read(&req("", &big), &log), Inbound::Reply(r) if r.status == 400));
    }

    #[test]
    fn parses_collections() {
        let p = Offline::default();
        let log = Log::new(&p);
        let body = br#"{"value":[{"subscriptionId":"s","clientState":"c","changeType":"updated","resource":"Users/x","tenantId":"t"}]}"#;
        let Inbound::Notifications(n) = read(&req("", body), &log) else {
            panic!()
        };
        assert_eq!(n[0].subscription_id, "s");
    }
}
