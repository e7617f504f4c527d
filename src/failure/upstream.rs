//! What the component keeps of an upstream error answer (Graph, the token endpoint, ZenQMS):
//! a parsed error code and a bounded message, never the raw body. A proxy's HTML page or a
//! debugging echo can carry the request's `Authorization` header; only documented JSON error
//! shapes are read, and anything else is described by its status, content type and size.
//!
//! Shapes read:
//! - Graph and ZenQMS: `{"error": {"code": "…", "message": "…"}}` (Graph: shared/reference/graph;
//!   ZenQMS: docs/zenqms-api.md, "Errors").
//! - The identity platform (OAuth 2.0, RFC 6749 section 5.2): `{"error": "…",
//!   "error_description": "…"}`.
//!
//! Messages are cut at a word boundary ([`bounded`]) so that a secret (which has no spaces) is
//! never cut in two: the later scrubbing ([`crate::log::redact`]) then still finds it whole.

use serde::Deserialize;

use crate::platform::Response;

/// Longest upstream message kept, in characters.
pub const MESSAGE_MAX: usize = 300;
/// Longest error code kept.
const CODE_MAX: usize = 64;

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct OAuthBody {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// A code as a service names its errors (`email_taken`, `Request_ResourceNotFound`,
/// `invalid_client`): letters, digits, `_`, `-`, `.`, at most 64. Anything else is not a code.
pub fn code(text: &str) -> Option<&str> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.len() <= CODE_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then_some(text)
}

/// `text` cut to at most `max` characters at a whitespace boundary, with `…` when cut. A first
/// word longer than `max` is left out entirely (it may be a secret or a token).
pub fn bounded(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    // The character after the cut decides whether the last word is whole.
    let next = text.chars().nth(max).unwrap_or(' ');
    let whole = if next.is_whitespace() {
        head.as_str()
    } else {
        head.rfind(char::is_whitespace).map_or("", |i| &head[..i])
    };
    format!("{}…", whole.trim_end())
}

/// The media type of a response (`text/html`), if it reads as one; parameters dropped.
pub fn content_type(resp: &Response) -> String {
    let raw = resp.header("content-type").unwrap_or_default();
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match essence.split_once('/') {
        Some((a, b)) if token(a) && token(b) && essence.len() <= 100 => {
            essence.to_ascii_lowercase()
        }
        _ if essence.is_empty() => "no content type".into(),
        _ => "an unreadable content type".into(),
    }
}

/// How a body that is not the expected error shape is described: content type and size only.
pub fn opaque(resp: &Response) -> String {
    format!(
        "no error details ({}, {} bytes)",
        content_type(resp),
        resp.body.len()
    )
}

/// `code` and `message` of a `{"error": {"code", "message"}}` body, if it is one.
pub fn json_error(body: &[u8]) -> Option<(String, String)> {
    let e = serde_json::from_slice::<ErrorBody>(body).ok()?.error;
    let code = code(&e.code)?.to_string();
    Some((code, bounded(&e.message, MESSAGE_MAX)))
}

/// The error of a Graph or ZenQMS answer, for a failure or a log line: `code: message`, or
/// [`opaque`] when the body is not the documented error shape.
pub fn describe(resp: &Response) -> String {
    match json_error(&resp.body) {
        Some((code, message)) if message.is_empty() => code,
        Some((code, message)) => format!("{code}: {message}"),
        None => opaque(resp),
    }
}

/// The OAuth `error` and the first line of `error_description` (bounded), if the body is an
/// OAuth error.
pub fn oauth_error(body: &[u8]) -> Option<(String, String)> {
    let e = serde_json::from_slice::<OAuthBody>(body).ok()?;
    let error = code(&e.error)?.to_string();
    let first = e.error_description.lines().next().unwrap_or_default();
    Some((error, bounded(first, MESSAGE_MAX)))
}

/// Where a JSON document failed to parse, without quoting it (serde's messages quote the
/// offending string, which may be anything the service sent).
pub fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "not valid JSON",
        Category::Data => "unexpected JSON shape",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, content_type: &str, body: &str) -> Response {
        Response::text(status, content_type, body.as_bytes().to_vec())
    }

    #[test]
    fn documented_error_shapes_are_read() {
        let r = resp(
            409,
            "application/json",
            r#"{"error":{"code":"email_taken","message":"in use"}}"#,
        );
        assert_eq!(describe(&r), "email_taken: in use");
        let r = resp(404, "application/json", r#"{"error":{"code":"not_found"}}"#);
        assert_eq!(describe(&r), "not_found");
    }

    #[test]
    fn anything_else_is_only_status_content_type_and_size() {
        let html = "<html><pre>Authorization: Bearer zq-secret-4711</pre></html>";
        let fake_code = r#"{"error":{"code":"Bearer zq-secret-4711","message":"x"}}"#;
        for (ct, body, want) in [
            ("text/html; charset=utf-8", html, "text/html"),
            ("application/json", "[1,2]", "application/json"),
            ("application/json", fake_code, "application/json"),
            ("text/html\r\nX-Evil: 1", "", "an unreadable content type"),
            ("", "x", "no content type"),
        ] {
            let out = describe(&resp(400, ct, body));
            let n = body.len();
            assert_eq!(out, format!("no error details ({want}, {n} bytes)"));
        }
    }

    #[test]
    fn messages_are_cut_between_words_only() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("one two three", 8), "one two…");
        assert_eq!(bounded("one two three", 7), "one two…");
        // A word cut by the bound is dropped whole.
        assert_eq!(bounded("token abcdefghijkl rest", 12), "token…");
        assert_eq!(bounded(&"x".repeat(500), 300), "…");
        let long = format!(
            "{{\"error\":{{\"code\":\"c\",\"message\":\"{}\"}}}}",
            "word ".repeat(200)
        );
        let (_, m) = json_error(long.as_bytes()).unwrap();
        assert!(m.chars().count() <= MESSAGE_MAX + 1);
    }

    #[test]
    fn oauth_errors_keep_the_first_line_and_a_code() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#;
        assert_eq!(
            oauth_error(body),
            Some((
                "invalid_client".into(),
                "AADSTS7000215: Invalid client secret provided.".into()
            ))
        );
        assert_eq!(oauth_error(b"<html>"), None);
        assert_eq!(oauth_error(br#"{"error":"two words"}"#), None);
    }

    #[test]
    fn json_problems_do_not_quote_the_input() {
        let e = serde_json::from_str::<u32>("\"secret-value\"").unwrap_err();
        let text = json_problem(&e);
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.starts_with("unexpected JSON shape at line 1"),
            "{text}"
        );
    }
}
