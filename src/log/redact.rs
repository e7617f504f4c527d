//! The last filter before text leaves the component: every configured secret and every access
//! token issued in the call, registered with [`crate::platform::Platform::add_secret`], is
//! replaced by [`REDACTED`] in every log line, failure message and summary.
//!
//! A secret is found however an echo spells it, character by character: each character as it
//! is, percent-encoded (each UTF-8 byte as `%XX`, hex digits in either case; a space also as
//! `+`), or JSON-escaped (`\uXXXX` in either case, a surrogate pair beyond the BMP, and the
//! short escapes `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`), in any mix — so every
//! URL and form encoder (which differ in which characters they leave as they are: `~`, `*`,
//! `/`, `!`, `'`, `(`, `)`) and every JSON encoder (`\u002B` for `+`, `\/` for `/`) is covered
//! at once. (Before, eight fixed spellings were registered, and a red team found echoes by
//! JavaScript's `encodeURIComponent`, Python's `quote`, .NET's and PHP's JSON encoders passing
//! through.) ASCII case is ignored throughout (an echo may have upper-cased the value).
//! Every occurrence is found in the text as given, and each stretch of text they cover,
//! overlapping or touching, becomes one [`REDACTED`]: a secret inside another, or two side by
//! side, go whole. Text that was already a marker is never searched again (scrubbing twice
//! changes nothing, and cannot grow a text), and a value in which the markers themselves would
//! complete an occurrence with the text beside them (`[redacte` + `d]Kx9…`, where `d]Kx9…` is
//! a secret) is withheld whole.

use std::cell::RefCell;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Byte ranges where `needle` occurs in `lower` (overlapping occurrences too).
fn occurrences<'a>(lower: &'a str, needle: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        let i = from + lower.get(from..)?.find(needle)?;
        // The next search starts one character on (a needle is whole characters).
        from = i + lower[i..].chars().next().map_or(1, char::len_utf8);
        Some((i, i + needle.len()))
    })
}

/// Whether `(start, end)` lies within one of `spans`.
/// `spans` are in order and do not overlap (occurrences of the marker, which cannot overlap
/// itself): only the last one starting at or before `start` can hold the range (a binary
/// search, so a text full of markers and occurrences costs n log n, not n²).
fn inside(spans: &[(usize, usize)], (start, end): (usize, usize)) -> bool {
    let i = spans.partition_point(|&(a, _)| a <= start);
    i > 0 && end <= spans[i - 1].1
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `t` (lowered) starts with `%` and the two lowercase hex digits of `b`.
fn percent_at(t: &[u8], b: u8) -> bool {
    t.len() >= 3
        && t[0] == b'%'
        && t[1] == HEX[usize::from(b >> 4)]
        && t[2] == HEX[usize::from(b & 15)]
}

/// Whether `t` (lowered) starts with `\u` and the four lowercase hex digits of `unit`.
fn json_unit_at(t: &[u8], unit: u16) -> bool {
    t.len() >= 6
        && t[0] == b'\\'
        && t[1] == b'u'
        && (0..4).all(|k| t[2 + k] == HEX[usize::from((unit >> (12 - 4 * k)) & 15)])
}

/// The JSON short escape of `c`, if it has one.
fn json_short(c: char) -> Option<u8> {
    Some(match c {
        '"' => b'"',
        '\\' => b'\\',
        '/' => b'/',
        '\u{8}' => b'b',
        '\u{c}' => b'f',
        '\n' => b'n',
        '\r' => b'r',
        '\t' => b't',
        _ => return None,
    })
}

/// Pushes onto `ends` the end of every spelling of `c` (either ASCII case) that `t` (lowered)
/// starts with, as an offset from `at`.
fn spellings_at(c: char, t: &[u8], at: usize, ends: &mut Vec<usize>) {
    let mut push = |n: usize| {
        if !ends.contains(&(at + n)) {
            ends.push(at + n);
        }
    };
    let lower = c.to_ascii_lowercase();
    let mut buf = [0u8; 4];
    let literal = lower.encode_utf8(&mut buf).as_bytes();
    if t.starts_with(literal) {
        push(literal.len());
    }
    if c == ' ' && t.first() == Some(&b'+') {
        push(1);
    }
    if let Some(e) = json_short(c)
        && t.len() >= 2
        && t[0] == b'\\'
        && t[1] == e
    {
        push(2);
    }
    let cases = [lower, c.to_ascii_uppercase()];
    for (i, v) in cases.iter().enumerate() {
        if i == 1 && cases[1] == cases[0] {
            break;
        }
        let bytes = v.encode_utf8(&mut buf).as_bytes();
        if (0..bytes.len()).all(|k| percent_at(t.get(3 * k..).unwrap_or_default(), bytes[k])) {
            push(3 * bytes.len());
        }
        let mut units = [0u16; 2];
        let units = v.encode_utf16(&mut units);
        if (0..units.len()).all(|k| json_unit_at(t.get(6 * k..).unwrap_or_default(), units[k])) {
            push(6 * units.len());
        }
    }
}

/// Byte ranges where `secret` occurs in `lower` (the text, ASCII-lowered), spelled in any mix
/// of the ways the module docs list; overlapping occurrences too, each from its start to its
/// longest spelling.
fn spelled<'a>(lower: &'a str, secret: &'a [char]) -> impl Iterator<Item = (usize, usize)> + 'a {
    let t = lower.as_bytes();
    let mut ends = Vec::new();
    let mut next = Vec::new();
    // Every spelling of the first character begins with one of these bytes: most of a text
    // is passed over with a byte compare (every log line is scrubbed).
    let first = secret.first().map_or([0u8; 4], |c| {
        let mut buf = [0u8; 4];
        let lead = c.to_ascii_lowercase().encode_utf8(&mut buf).as_bytes()[0];
        [lead, b'%', b'\\', if *c == ' ' { b'+' } else { b'%' }]
    });
    (0..t.len())
        .filter(move |&i| first.contains(&t[i]) && lower.is_char_boundary(i))
        .filter_map(move |i| {
            ends.clear();
            ends.push(i);
            for &c in secret {
                next.clear();
                for &at in &ends {
                    spellings_at(c, &t[at..], at, &mut next);
                }
                if next.is_empty() {
                    return None;
                }
                std::mem::swap(&mut ends, &mut next);
            }
            ends.iter().max().map(|&e| (i, e))
        })
}

/// The secrets of one call, each as its characters.
#[derive(Debug, Default)]
pub struct Secrets(RefCell<Vec<Vec<char>>>);

impl Secrets {
    /// Registers `secret` (surrounding whitespace ignored; an empty one is ignored).
    pub fn add(&self, secret: &str) {
        let secret: Vec<char> = secret.trim().chars().collect();
        let mut list = self.0.borrow_mut();
        if !secret.is_empty() && !list.contains(&secret) {
            list.push(secret);
        }
    }

    /// Where any secret occurs in `lower`, outside the spans of `markers`.
    fn found(&self, lower: &str, markers: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let list = self.0.borrow();
        list.iter()
            .flat_map(|s| spelled(lower, s))
            .filter(|&r| !inside(markers, r))
            .collect()
    }

    /// `text` with every registered secret replaced by [`REDACTED`] (see the module docs), or
    /// [`REDACTED`] alone when the markers would complete an occurrence with the text beside
    /// them. A text in which no secret occurs comes back as it was.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.borrow().is_empty() {
            return text.to_string();
        }
        let lower = text.to_ascii_lowercase();
        let markers: Vec<(usize, usize)> = occurrences(&lower, REDACTED).collect();
        let found = self.found(&lower, &markers);
        if found.is_empty() {
            return text.to_string();
        }
        // Which bytes an occurrence covers (bytes, not ranges: nothing to sort or merge).
        let mut covered = vec![false; text.len()];
        for (a, b) in found {
            covered[a..b].fill(true);
        }
        // Each run of covered bytes (overlapping or touching occurrences) is one marker; runs
        // begin and end on character boundaries, as the occurrences do.
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            let run = covered[at..]
                .iter()
                .position(|&c| c != covered[at])
                .unwrap_or(text.len() - at);
            if covered[at] {
                out.push_str(REDACTED);
            } else {
                out.push_str(&text[at..at + run]);
            }
            at += run;
        }
        // What is left between markers held no secret; one across a marker's edge (the
        // markers placed here and those the text held) is a marker's own characters
        // completing it: the value goes whole.
        let out_lower = out.to_ascii_lowercase();
        let markers: Vec<(usize, usize)> = occurrences(&out_lower, REDACTED).collect();
        if !self.found(&out_lower, &markers).is_empty() {
            return REDACTED.to_string();
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_every_secret_is_replaced() {
        let s = Secrets::default();
        s.add("client-secret~Zx9/te st+");
        s.add("  ");
        s.add("eyJ0eXAi.token\"quoted");
        let text = "a client-secret~Zx9/te st+ b client-secret%7EZx9%2Fte%20st%2B \
                    c {\"t\":\"eyJ0eXAi.token\\\"quoted\"} d eyJ0eXAi.token\"quoted";
        let out = s.scrub(text);
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
        assert!(!out.contains("Zx9") && !out.contains("eyJ0"), "{out}");
    }

    #[test]
    fn a_secret_in_the_form_encoding_that_keeps_the_star_is_replaced() {
        let s = Secrets::default();
        s.add("Kx9~old*style/secret 2468");
        for echo in [
            "Kx9%7Eold*style%2Fsecret+2468",
            "Kx9%7Eold*style%2Fsecret%202468",
            "kx9%7eold*style%2fsecret+2468",
        ] {
            let out = s.scrub(&format!("Invalid client secret provided: {echo}."));
            assert_eq!(out, "Invalid client secret provided: [redacted].", "{echo}");
        }
    }

    #[test]
    fn a_secret_that_is_the_marker_leaves_the_marker() {
        let s = Secrets::default();
        s.add("redacted");
        s.add("REDACTED");
        assert_eq!(s.scrub("x Redacted y"), "x [redacted] y");
        // Scrubbing twice changes nothing, whatever the secrets.
        assert_eq!(s.scrub("x [Redacted] y"), "x [Redacted] y");
        let d = Secrets::default();
        d.add("d");
        assert_eq!(d.scrub("ddd x d"), "[redacted] x [redacted]");
        assert_eq!(d.scrub(&d.scrub("ddd x d")), "[redacted] x [redacted]");
    }

    #[test]
    fn a_secret_inside_another_and_secrets_side_by_side_go_whole() {
        let s = Secrets::default();
        s.add("abcdef");
        s.add("xxabcdefyy");
        assert_eq!(s.scrub("[xxabcdefyy]"), "[[redacted]]");
        s.add("zz");
        assert_eq!(s.scrub("a zzabcdef b"), "a [redacted] b");
        assert_eq!(s.scrub("a zabcdefzz b"), "a z[redacted] b");
    }

    #[test]
    fn a_value_the_markers_would_complete_a_secret_in_is_withheld() {
        // `[redacte` + `d]Kx9-old` would read as the second secret.
        let s = Secrets::default();
        s.add("zq-tok-4711");
        s.add("d]Kx9-old");
        assert_eq!(s.scrub("token zq-tok-4711Kx9-old rejected"), REDACTED);
        // And a text that already holds a marker beside such a tail.
        assert_eq!(
            s.scrub("[redacted]Kx9-old zq-tok-4711"),
            "[redacte[redacted] [redacted]"
        );
        assert_eq!(s.scrub("[redacted] zq-tok-4711"), "[redacted] [redacted]");
    }

    #[test]
    fn the_form_encoding_of_a_secret_with_a_tilde_and_a_space_is_scrubbed() {
        // `~` as `%7E` and a space as `+`: URLSearchParams and Java's URLEncoder.
        let s = Secrets::default();
        s.add("Kx9~old style-secret");
        let out = s.scrub("provided: Kx9%7Eold+style-secret. Trace ID: 1");
        assert_eq!(out, "provided: [redacted]. Trace ID: 1");
    }

    #[test]
    fn a_secret_spelled_by_any_url_or_json_encoder_is_scrubbed() {
        // A red team's echoes (eighteenth session): encodeURIComponent (keeps `~*'()!`),
        // Python's quote (keeps `/`), .NET's JSON (`\u002B`), PHP's JSON (`\/`), and mixes.
        let s = Secrets::default();
        s.add("Kx9~old*style/secret-2468");
        s.add("Kx9+old/style=secret-2468");
        s.add("zq/rt+Token=4711");
        s.add("pässwörd 😀\"x\\");
        for echo in [
            "Kx9~old*style%2Fsecret-2468",
            "Kx9~old%2Astyle/secret-2468",
            "Kx9%7eold%2astyle%2fsecret%2d2468",
            "Kx9\\u002Bold/style=secret-2468",
            "Kx9+old\\/style=secret-2468",
            "Kx9%2Bold%2Fstyle%3Dsecret-2468",
            "zq\\/rt\\u002BToken=4711",
            "ZQ%2FRT%2BTOKEN%3D4711",
            "\\u007aq/rt+Token\\u003d4711",
            "p%C3%A4ssw\\u00f6rd+%F0%9F%98%80\\\"x\\\\",
            "pässwörd \\ud83d\\ude00%22x%5C",
        ] {
            let out = s.scrub(&format!("provided: {echo}. Trace ID: 1"));
            assert_eq!(out, "provided: [redacted]. Trace ID: 1", "{echo}");
        }
        // Not a spelling of it: left as it is.
        let other = "Kx9~old*style/secret-2469 and %4Bx9";
        assert_eq!(s.scrub(other), other);
    }

    #[test]
    fn percent_encoding_and_case_variants_are_scrubbed() {
        let s = Secrets::default();
        s.add("client-secret~Zx9");
        let text = "a client-secret%7eZx9 b CLIENT-SECRET~ZX9 c client-secret%7EZx9 d";
        let out = s.scrub(text);
        assert!(!out.to_ascii_lowercase().contains("zx9"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }
}
