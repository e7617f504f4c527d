//! OData plumbing shared by the fake Graph endpoints: URLs, query options, errors, `$select`,
//! paging tokens. Everything is deterministic (counters and the virtual clock), never random.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::sim::http_types::{HttpRequest, HttpResponse};

pub const GRAPH_ROOT: &str = "https://graph.microsoft.com/v1.0";
const GRAPH_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A Graph error as `{"error": {"code", "message", "innerError"}}` plus its status.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub type GraphResult<T> = Result<T, GraphError>;

impl GraphError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// The directory's 404 for an absent (or soft-deleted) object, as observed from real Graph.
    pub fn not_found(key: &str) -> Self {
        Self::new(
            404,
            "Request_ResourceNotFound",
            format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// What Graph answers for a path segment it does not know.
    pub fn segment(segment: &str) -> Self {
        Self::bad_request(
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// A real Graph feature this fake does not simulate: loud, never a silent 200, and a 400 so a
    /// client does not mistake it for a transient (retryable) failure.
    pub fn not_implemented(what: &str) -> Self {
        Self::bad_request(
            "BadRequest",
            format!("The fake Graph does not implement {what}."),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    }

    /// The app lacks the permission the request needs (`permissions.rs`), or a read-only
    /// application (User.Read.All, GroupMember.Read.All) writes to the directory.
    pub fn access_denied() -> Self {
        Self::new(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }
}

/// Per-request values that make every response traceable and reproducible.
pub struct Ctx {
    pub now: DateTime<Utc>,
    pub request_id: String,
    pub client_request_id: String,
}

impl Ctx {
    pub fn new(now: DateTime<Utc>, seq: u64, req: &HttpRequest) -> Self {
        let request_id = guid(0x5eed_0000_0000_0000 ^ seq);
        let client_request_id = req
            .header("client-request-id")
            .map(str::to_string)
            .unwrap_or_else(|| request_id.clone());
        Ctx {
            now,
            request_id,
            client_request_id,
        }
    }

    fn headers(&self, with_body: bool) -> Vec<(String, String)> {
        let mut headers = vec![
            ("request-id".to_string(), self.request_id.clone()),
            (
                "client-request-id".to_string(),
                self.client_request_id.clone(),
            ),
        ];
        if with_body {
            headers.insert(0, ("content-type".into(), GRAPH_CONTENT_TYPE.into()));
        }
        headers
    }

    pub fn json(&self, status: u16, body: &Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: self.headers(true),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(&self, status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: self.headers(false),
            body: Vec::new(),
        }
    }

    pub fn error(&self, err: &GraphError) -> HttpResponse {
        let body = json!({
            "error": {
                "code": err.code,
                "message": err.message,
                "innerError": {
                    "date": self.now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id,
                }
            }
        });
        self.json(err.status, &body)
    }
}

/// A GUID-looking id derived from `seed` (splitmix64), so runs are reproducible.
pub fn guid(seed: u64) -> String {
    let a = splitmix(seed);
    let b = splitmix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A request URL split into what the routers need.
#[derive(Debug, Clone)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    /// Path exactly as sent (still percent-encoded), starting with `/`.
    pub raw_path: String,
    /// Decoded path segments.
    pub segments: Vec<String>,
    /// (decoded name, decoded value, raw `name=value` text).
    pub query: Vec<(String, String, String)>,
}

pub fn parse_url(url: &str) -> Option<Url> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path_query) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host = authority
        .strip_suffix(":443")
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let (raw_path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let segments = raw_path
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s, false))
        .collect::<Vec<_>>();
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(name, true),
                percent_decode(value, true),
                pair.to_string(),
            )
        })
        .collect();
    Some(Url {
        scheme: scheme.to_ascii_lowercase(),
        host,
        raw_path: raw_path.into(),
        segments,
        query,
    })
}

/// Decodes `%XX` escapes (and `+` as space in query strings and forms); bad escapes stay literal.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query options an endpoint accepted.
#[derive(Debug, Default)]
pub struct Query {
    pub select: Option<Vec<String>>,
    pub top: Option<usize>,
    pub skiptoken: Option<String>,
    pub count: Option<bool>,
    /// The raw `$name=value` pairs other than `$skiptoken`, carried into `@odata.nextLink`.
    pub carried: Vec<String>,
}

/// OData system query options real Graph knows but this fake only implements on some endpoints.
const KNOWN_OPTIONS: &[&str] = &[
    "select",
    "top",
    "skiptoken",
    "count",
    "filter",
    "search",
    "orderby",
    "expand",
    "format",
    "deltatoken",
    "apply",
    "compute",
];

/// Parses the `$` options of `url`; `allowed` names them without `$`. Options without `$` are
/// ignored as Graph does; anything else fails loudly rather than being silently ignored.
pub fn parse_query(url: &Url, allowed: &[&str]) -> GraphResult<Query> {
    let mut q = Query::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value, raw) in &url.query {
        let Some(bare) = name.strip_prefix('$') else {
            continue;
        };
        let option = bare.to_ascii_lowercase();
        if seen.contains(&option) {
            return Err(GraphError::bad_request(
                "BadRequest",
                format!(
                    "Query option '{name}' was specified more than once, but it must be specified at most once."
                ),
            ));
        }
        seen.push(option.clone());
        if option == "skip" {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "'$skip' is not supported by the service.",
            ));
        }
        if !allowed.contains(&option.as_str()) {
            return Err(if KNOWN_OPTIONS.contains(&option.as_str()) {
                GraphError::bad_request(
                    "Request_BadRequest",
                    format!(
                        "The query option '{name}' is not implemented by the fake Graph on this endpoint."
                    ),
                )
            } else {
                GraphError::bad_request(
                    "BadRequest",
                    format!("The query parameter '{name}' is not supported."),
                )
            });
        }
        match option.as_str() {
            "select" => q.select = Some(parse_select(value)?),
            "top" => q.top = Some(parse_top(value)?),
            "count" => q.count = Some(parse_count(value)?),
            "skiptoken" => {
                q.skiptoken = Some(value.clone());
                continue;
            }
            _ => {}
        }
        q.carried.push(raw.clone());
    }
    Ok(q)
}

fn parse_select(value: &str) -> GraphResult<Vec<String>> {
    let props: Vec<String> = value.split(',').map(|p| p.trim().to_string()).collect();
    if props.iter().any(String::is_empty) {
        return Err(GraphError::bad_request(
            "BadRequest",
            format!("Syntax error: an empty property name in $select '{value}'."),
        ));
    }
    Ok(props)
}

fn parse_top(value: &str) -> GraphResult<usize> {
    match value.parse::<usize>() {
        Ok(n) if (1..=999).contains(&n) => Ok(n),
        _ => Err(GraphError::bad_request(
            "Request_BadRequest",
            format!("Invalid page size specified: '{value}'. Must be between 1 and 999 inclusive."),
        )),
    }
}

fn parse_count(value: &str) -> GraphResult<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(GraphError::bad_request(
            "BadRequest",
            format!("'{value}' is not a valid count option."),
        )),
    }
}

/// What to return for each object: the type's default set or exactly the `$select`ed names.
#[derive(Debug, Clone)]
pub enum Selection {
    Default,
    Props(Vec<String>),
}

impl Selection {
    /// Resolves `$select` names case-insensitively to canonical names via `lookup`.
    pub fn resolve(
        select: Option<&Vec<String>>,
        type_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> GraphResult<Self> {
        let Some(names) = select else {
            return Ok(Selection::Default);
        };
        let mut props = Vec::new();
        for name in names {
            let canonical = lookup(name).ok_or_else(|| {
                GraphError::bad_request(
                    "Request_BadRequest",
                    format!("Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."),
                )
            })?;
            if !props.contains(&canonical) {
                props.push(canonical);
            }
        }
        Ok(Selection::Props(props))
    }

    /// The `(a,b)` part of an `@odata.context` URL.
    pub fn context_suffix(&self) -> String {
        match self {
            Selection::Default => String::new(),
            Selection::Props(p) => format!("({})", p.join(",")),
        }
    }
}

/// `lookup` for `Selection::resolve` over a fixed list plus extra known names.
pub fn find_name<'a>(name: &str, lists: impl IntoIterator<Item = &'a str>) -> Option<String> {
    lists
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(name))
        .map(str::to_string)
}

/// Encodes a paging cursor. Opaque to clients (like Graph's `RFNwdAIAAQAAAD8...`), but bound to
/// the listing it came from, so a token from one collection is rejected by another.
pub fn encode_skiptoken(scope: &str, last_id: &str) -> String {
    seal("RFNwdAIAAQAAAD", &format!("{scope}\u{1f}{last_id}"))
}

pub fn decode_skiptoken(token: &str, scope: &str) -> GraphResult<String> {
    let invalid = || {
        GraphError::bad_request(
            "Request_BadRequest",
            format!("Invalid $skiptoken value '{token}'."),
        )
    };
    let payload = unseal(token, "RFNwdAIAAQAAAD").ok_or_else(invalid)?;
    match payload.split_once('\u{1f}') {
        Some((s, last)) if s == scope => Ok(last.to_string()),
        _ => Err(invalid()),
    }
}

/// An opaque, tamper-evident token: `prefix`, the payload in hex, a checksum. URL-safe.
pub fn seal(prefix: &str, payload: &str) -> String {
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}{:04x}", checksum(payload))
}

/// The payload of a `seal`ed token, or `None` when it was not made by `seal` with `prefix`.
pub fn unseal(token: &str, prefix: &str) -> Option<String> {
    let body = token.strip_prefix(prefix)?;
    if body.len() < 4 || !body.len().is_multiple_of(2) || !body.is_ascii() {
        return None;
    }
    let (hex, sum) = body.split_at(body.len() - 4);
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .ok()?;
    let payload = String::from_utf8(bytes).ok()?;
    (format!("{:04x}", checksum(&payload)) == sum).then_some(payload)
}

fn checksum(s: &str) -> u16 {
    (splitmix(
        s.bytes()
            .fold(7u64, |acc, b| acc.wrapping_mul(31).wrapping_add(b as u64)),
    ) & 0xffff) as u16
}

/// One page of an id-ordered listing, resuming after the cursor carried by `$skiptoken`.
pub struct Page {
    pub items: Vec<Value>,
    pub next_link: Option<String>,
}

/// Pages `items` (already sorted by id). `scope` binds the skiptoken to this listing.
pub fn paginate(
    items: Vec<(String, Value)>,
    url: &Url,
    q: &Query,
    scope: &str,
) -> GraphResult<Page> {
    let after = q
        .skiptoken
        .as_deref()
        .map(|t| decode_skiptoken(t, scope))
        .transpose()?;
    let top = q.top.unwrap_or(100);
    let mut rest = items
        .into_iter()
        .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a));
    let page: Vec<(String, Value)> = rest.by_ref().take(top).collect();
    let more = rest.next().is_some();
    let next_link = match page.last() {
        Some((last, _)) if more => Some(next_link(url, q, &encode_skiptoken(scope, last))),
        _ => None,
    };
    Ok(Page {
        items: page.into_iter().map(|(_, v)| v).collect(),
        next_link,
    })
}

/// The whole next-page URL: same path, the original `$` options, a new `$skiptoken`.
fn next_link(url: &Url, q: &Query, token: &str) -> String {
    let mut options = q.carried.clone();
    options.push(format!("$skiptoken={token}"));
    format!(
        "https://graph.microsoft.com{}?{}",
        url.raw_path,
        options.join("&")
    )
}

/// A collection response body.
pub fn collection(context: &str, count: Option<usize>, page: Page) -> Value {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{GRAPH_ROOT}/$metadata#{context}")),
    );
    if let Some(n) = count {
        body.insert("@odata.count".into(), json!(n));
    }
    if let Some(link) = page.next_link {
        body.insert("@odata.nextLink".into(), json!(link));
    }
    body.insert("value".into(), Value::Array(page.items));
    Value::Object(body)
}

/// `ConsistencyLevel: eventual`: the header that turns on directory advanced queries
/// (`$search`, `$count`, OData casts on memberships).
pub fn eventual_consistency(req: &HttpRequest) -> bool {
    req.header("consistencylevel")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// The decoded value of the `$`-option `name` (given without `$`, matched case-insensitively).
pub fn query_value<'u>(url: &'u Url, name: &str) -> Option<&'u str> {
    url.query
        .iter()
        .find(|(n, _, _)| {
            n.strip_prefix('$')
                .is_some_and(|bare| bare.eq_ignore_ascii_case(name))
        })
        .map(|(_, value, _)| value.as_str())
}

/// Parses a JSON object request body as Graph does (content type required).
pub fn json_body(req: &HttpRequest) -> GraphResult<Map<String, Value>> {
    let unreadable = || {
        GraphError::bad_request(
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    };
    let content_type = req
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/json") {
        return Err(unreadable());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(unreadable()),
    }
}
