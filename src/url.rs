//! A deliberately strict URL parser and percent-encoding helpers.
//!
//! The component only talks to a few well-known hosts, so it parses URLs to *check* them (which
//! host will receive our credentials?) rather than to accept everything RFC 3986 allows: user
//! info, odd schemes and non-ASCII hosts are refused instead of interpreted. That keeps a forged
//! `@odata.nextLink` such as `https://graph.microsoft.com@evil.example/` from fooling the check.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Characters left as they are when encoding a query component (RFC 3986 unreserved).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    /// Lowercase host name or IPv4 address.
    pub host: String,
    pub port: Option<u16>,
    /// Path, starting with `/` (empty path normalised to `/`).
    pub path: String,
    /// Raw query without `?`.
    pub query: Option<String>,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| "not an absolute URL".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(format!("scheme '{scheme}' is not http(s)"));
        }
        if rest.contains('#') {
            return Err("URL has a fragment".into());
        }
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("URL carries user info".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?;
                (h, Some(port))
            }
            None => (authority, None),
        };
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['.', '-'])
            && !host.ends_with('-');
        if !valid_host {
            return Err("bad host name".into());
        }
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path_query, None),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("path contains spaces or control characters".into());
        }
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            query,
        })
    }

    /// `scheme://host[:port]`, the unit of trust for credentials.
    pub fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme, self.host, p),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// True for hosts that only exist on this machine (allowed over plain http for local testing).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host == "127.0.0.1" || self.host.starts_with("127.")
    }

    /// The decoded value of the first query parameter with this name.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref()?, name)
    }
}

/// The decoded value of the first `name=value` pair in a raw query string (`+` means space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// Percent-decodes a query component (`+` as space); invalid UTF-8 is replaced, not trusted.
pub fn decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Percent-encodes a query or form component.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_https() {
        let u = Url::parse("https://Graph.Microsoft.com/v1.0/users?$top=100").unwrap();
        assert_eq!(u.host, "graph.microsoft.com");
        assert_eq!(u.path, "/v1.0/users");
        assert_eq!(u.query.as_deref(), Some("$top=100"));
        assert_eq!(u.origin(), "https://graph.microsoft.com");
    }

    #[test]
    fn refuses_userinfo_and_fragments() {
        assert!(Url::parse("https://graph.microsoft.com@evil.example/v1.0").is_err());
        assert!(Url::parse("https://a.example/#x").is_err());
        assert!(Url::parse("ftp://a.example/").is_err());
        assert!(Url::parse("https://").is_err());
        assert!(Url::parse("https://a b/").is_err());
        assert!(Url::parse("graph.microsoft.com/v1.0").is_err());
    }

    #[test]
    fn ports_and_empty_paths() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.port, Some(8080));
        assert_eq!(u.path, "/");
        assert!(u.is_loopback());
        assert!(Url::parse("http://127.0.0.1:99999/").is_err());
    }

    #[test]
    fn query_round_trip() {
        let encoded = encode("a b&c=d/é");
        assert_eq!(decode(&encoded), "a b&c=d/é");
        assert_eq!(
            query_param(&format!("x=1&validationToken={encoded}"), "validationToken").as_deref(),
            Some("a b&c=d/é")
        );
        assert_eq!(query_param("x=1", "y"), None);
    }
}
