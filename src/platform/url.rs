//! URLs: parsed by the `url` crate (the WHATWG URL Standard, as HTTP clients parse them), with
//! this component's rules on top, and percent-encoding helpers.
//!
//! The component only talks to a few well-known hosts, so it parses URLs to *check* them (which
//! host will receive our credentials?) rather than to accept everything the standard allows.
//! [`Url::parse`] refuses, with a reason that never repeats the text:
//! - any character outside printable ASCII (controls, space, DEL, non-ASCII) and `\` (which
//!   the standard reads as `/`): what is checked is what an HTTP client receives;
//! - anything but an absolute `http://` or `https://` URL written with exactly `//` before
//!   the host;
//! - user info (`https://graph.microsoft.com@evil.example/`) and fragments;
//! - a host not written in its plain form: the standard turns `0x7f.1`, `127.1`, `2130706433`
//!   and `loc%61lhost` into `127.0.0.1` and `localhost`, but another client might resolve them
//!   as names, so the text must already be what it means.
//!
//! Plain `http` is only for loopback ([`Url::is_loopback`]): an IP address in 127.0.0.0/8, `::1`,
//! or exactly `localhost`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Characters left as they are when encoding a query component (RFC 3986 unreserved).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A checked absolute http(s) URL, in the standard's serialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name, IPv4 address, or bracketed IPv6 address (`[::1]`).
    pub host: String,
    /// Explicit port, `None` for the scheme's default (an explicit `:443` on https is `None`).
    pub port: Option<u16>,
    /// Path, starting with `/` (empty path normalised to `/`; dot segments resolved).
    pub path: String,
    /// Query without `?`, percent-encoded as sent.
    pub query: Option<String>,
    parsed: url::Url,
}

impl Url {
    /// Parses and checks `text` (rules in the module docs). The error says what is wrong and
    /// never quotes the text, so it may name a config key whose value is a secret.
    pub fn parse(text: &str) -> Result<Url, String> {
        if let Some((i, c)) = text
            .char_indices()
            .find(|(_, c)| !c.is_ascii_graphic() || *c == '\\')
        {
            return Err(match c {
                '\\' => format!("has a backslash at character {}", i + 1),
                c => format!("has {} at character {}", describe_char(c), i + 1),
            });
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("is not an absolute http(s) URL".into());
        };
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Err(
                "is not an absolute http(s) URL (the scheme is neither https nor http)".into(),
            );
        }
        // The standard skips any further slashes after a special scheme's `//` (`http:///h`
        // has host `h`), so the authority read below would not be the one the parser reads.
        if rest.starts_with('/') {
            return Err("has more than two slashes after the scheme".into());
        }
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        // A percent-encoded host is refused before the URL parser decodes it: what it decodes
        // to is not the host written, and non-ASCII bytes would reach an IDNA back end we
        // build without Unicode tables (whose debug assertions reject such input).
        if raw_host(authority).contains('%') {
            return Err(
                "has a host that is not written plainly (e.g. an encoded or shortened address)"
                    .into(),
            );
        }
        let parsed = url::Url::parse(text).map_err(|e| format!("cannot be parsed ({e})"))?;
        if authority.contains('@') || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("carries user info (name@host)".into());
        }
        if parsed.fragment().is_some() {
            return Err("has a fragment".into());
        }
        let host = parsed.host_str().unwrap_or_default().to_string();
        if host.is_empty() || !raw_host(authority).eq_ignore_ascii_case(&host) {
            return Err(
                "has a host that is not written plainly (e.g. an encoded or shortened address)"
                    .into(),
            );
        }
        Ok(Url {
            scheme: parsed.scheme().to_string(),
            host,
            port: parsed.port(),
            path: parsed.path().to_string(),
            query: parsed.query().map(str::to_string),
            parsed,
        })
    }

    /// `scheme://host[:port]`, the unit of trust for credentials.
    pub fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme, self.host, p),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// The whole URL in the standard's serialisation: what to send.
    pub fn as_str(&self) -> &str {
        self.parsed.as_str()
    }

    /// True for hosts that only exist on this machine (plain http is allowed to them, for
    /// local test servers): an IPv4 address in 127.0.0.0/8, `[::1]`, or exactly `localhost`.
    /// `parse` already refused other spellings (`127.1`, `0x7f.1`, `localhost.`).
    pub fn is_loopback(&self) -> bool {
        match self.parsed.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        }
    }

    /// The decoded value of the first query parameter with this name.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref()?, name)
    }
}

/// The host as written in an authority (`host[:port]`, user info already refused).
fn raw_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `U+000D (a control character)` and the like: names a character without printing it.
pub fn describe_char(c: char) -> String {
    let kind = match c {
        ' ' => "a space",
        c if c.is_control() => "a control character",
        c if c.is_ascii() => "a character not allowed here",
        _ => "a non-ASCII character",
    };
    format!("U+{:04X} ({kind})", c as u32)
}

/// Text from outside (a rejected URL) put in a message: quoted, with `"` and `\` escaped so the
/// quotes delimit it. Never cut, nor escaped further, here: the call layer scrubs every
/// message of the call's secrets first, then escapes what must not reach a log line and caps
/// it (`log::clean`). A cut made here, before the scrub, left the first part of a secret that
/// a service echoed in a link (a red team: 29 of a client secret's 42 characters).
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
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

    /// Found by the fuzz target: a percent-encoded non-ASCII byte in an upper-case host used
    /// to reach the IDNA back end (a debug assertion there in test builds).
    /// A fuzz find: `url`'s host parsing reached a debug assertion of `idna_adapter` (see
    /// Cargo.toml's `profile.dev.package.idna_adapter`); the URL is parsed or refused, never a
    /// panic.
    #[test]
    fn a_percent_encoded_host_never_panics() {
        for text in [
            "http://:@A%AA0",
            "https://A%AA.example/",
            "https://%41B%C3%28/x",
        ] {
            let _ = Url::parse(text);
        }
    }

    #[test]
    fn a_percent_encoded_host_is_refused_before_parsing() {
        for text in [
            "http://A%8A",
            "https://graph.microsoft.com%2eevil.example/x",
            "http://%41:80/",
            // The standard skips any number of slashes after a special scheme's `//`: the
            // host it reads here is `A%a0`, not the empty authority in front of the slash.
            "http:///A%a0",
            "https:////graph.microsoft.com%2eevil.example/",
            "http:///127.0.0.1/",
        ] {
            let e = Url::parse(text).unwrap_err();
            assert!(
                e.contains("not written plainly") || e.contains("more than two slashes"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn parses_plain_https() {
        let u = Url::parse("https://Graph.Microsoft.com/v1.0/users?$top=100").unwrap();
        assert_eq!(u.host, "graph.microsoft.com");
        assert_eq!(u.path, "/v1.0/users");
        assert_eq!(u.query.as_deref(), Some("$top=100"));
        assert_eq!(u.origin(), "https://graph.microsoft.com");
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.com/v1.0/users?$top=100"
        );
    }

    #[test]
    fn refuses_userinfo_and_fragments() {
        for bad in [
            "https://graph.microsoft.com@evil.example/v1.0",
            "https://@graph.microsoft.com/v1.0",
            "https://a.example/#x",
            "ftp://a.example/",
            "https://",
            "https://a b/",
            "graph.microsoft.com/v1.0",
            "https:graph.microsoft.com/v1.0",
            "https:/graph.microsoft.com/v1.0",
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(!e.contains("graph") && !e.contains("a.example"), "{e}");
        }
    }

    #[test]
    fn ports_and_empty_paths() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.port, Some(8080));
        assert_eq!(u.path, "/");
        assert!(u.is_loopback());
        assert!(Url::parse("http://127.0.0.1:99999/").is_err());
        assert_eq!(Url::parse("https://a.example:443/").unwrap().port, None);
    }

    #[test]
    fn loopback_means_127_slash_8_ipv6_one_or_localhost() {
        for ok in [
            "http://127.0.0.1",
            "http://127.9.8.7:1",
            "http://localhost",
            "http://LocalHost:80/x",
            "http://[::1]:8080",
        ] {
            let u = Url::parse(ok).unwrap();
            assert!(u.is_loopback(), "{ok}");
        }
        for not in [
            "http://127.attacker.example",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.example",
            "http://128.0.0.1",
            "http://[::2]",
            "http://localhost.",
        ] {
            assert!(Url::parse(not).is_ok_and(|u| !u.is_loopback()), "{not}");
        }
        // Other spellings of 127.0.0.1 are refused outright (decision: only the plain form).
        for spelled in [
            "http://0x7f.1",
            "http://127.1",
            "http://2130706433",
            "http://0177.0.0.1",
            "http://127.0.0.01",
            "http://loc%61lhost",
            "http://[0:0:0:0:0:0:0:1]",
        ] {
            let e = Url::parse(spelled).unwrap_err();
            assert!(e.contains("not written plainly"), "{spelled}: {e}");
        }
    }

    #[test]
    fn characters_are_named_not_printed() {
        let e = Url::parse("https://a.example/x?y=1\r\nHost: b").unwrap_err();
        assert_eq!(e, "has U+000D (a control character) at character 24");
        let e = Url::parse("https://a.example/\u{202e}").unwrap_err();
        assert!(e.contains("U+202E (a non-ASCII character)"), "{e}");
        assert!(
            Url::parse("https://a.example/a\\b")
                .unwrap_err()
                .contains("backslash")
        );
    }

    #[test]
    fn shown_quotes_and_never_cuts() {
        assert_eq!(shown("a\"b\\c"), "\"a\\\"b\\\\c\"");
        // Control characters are left to the call layer's escaper (after its scrub).
        assert_eq!(shown("a\r\n"), "\"a\r\n\"");
        let long = "x".repeat(500);
        assert_eq!(shown(&long), format!("\"{long}\""));
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
