//! The last filter before text leaves the component: every configured secret and every access
//! token issued in the call, registered with [`crate::platform::Platform::add_secret`], is
//! replaced by [`REDACTED`] in every log line, failure message and summary.
//!
//! A secret is found however an echo spells it, character by character: each character as it
//! is, percent-encoded (each UTF-8 byte as `%XX`, hex digits in either case, the `%` itself
//! as it is, encoded again as `%25` or JSON-escaped; a space also as `+`), JSON-escaped
//! (`\uXXXX` in either case, a surrogate pair beyond the BMP, and the short escapes `\"`,
//! `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, the backslash as it is or escaped again), or
//! as an HTML character reference (`&#x2B;`, `&#43;`, `&quot;`), in any mix — so every URL and
//! form encoder (which differ in which characters they leave as they are: `~`, `*`, `/`, `!`,
//! `'`, `(`, `)`), every JSON encoder (`\u002B` for `+`, `\/` for `/`), an encoding encoded
//! twice and an HTML-encoding gateway are covered at once. (Before, eight fixed spellings were
//! registered, and red teams found echoes by JavaScript's `encodeURIComponent`, Python's
//! `quote`, .NET's and PHP's JSON encoders, a double percent-encoding and ASP.NET's HTML
//! encoder passing through.) ASCII case is ignored throughout (an echo may have upper-cased
//! the value). A prefix of a secret counts too, from half of it and 12 characters on (an
//! upstream that cuts an echo short: `Bearer zqT0k3n+Ab/Cd=EfGh1234...`).
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

/// Whether `t` begins with the two lowercase hex digits of `b`.
fn hex2_at(t: &[u8], b: u8) -> bool {
    t.len() >= 2 && t[0] == HEX[usize::from(b >> 4)] && t[1] == HEX[usize::from(b & 15)]
}

/// Whether `t` begins with the four lowercase hex digits of `unit`.
fn hex4_at(t: &[u8], unit: u16) -> bool {
    t.len() >= 4 && (0..4).all(|k| t[k] == HEX[usize::from((unit >> (12 - 4 * k)) & 15)])
}

/// The lengths of the ways `t` (lowered) begins with a percent sign: as it is, itself
/// percent-encoded (`%25`: an encoding encoded again), or JSON-escaped (`\u0025`).
fn percent_signs(t: &[u8]) -> impl Iterator<Item = usize> + '_ {
    [(b"%" as &[u8], 1), (b"%25", 3), (b"\\u0025", 6)]
        .into_iter()
        .filter(move |(intro, _)| t.starts_with(intro))
        .map(|(_, n)| n)
}

/// The lengths of the ways `t` (lowered) begins with a JSON escape's backslash: as it is, or
/// escaped again (`\\`: a JSON text quoted inside another).
fn backslashes(t: &[u8]) -> impl Iterator<Item = usize> + '_ {
    [(b"\\\\" as &[u8], 2), (b"\\", 1)]
        .into_iter()
        .filter(move |(intro, _)| t.starts_with(intro))
        .map(|(_, n)| n)
}

/// Ends (offsets into `t`) of `bytes` percent-encoded one by one from the start of `t`.
fn percent_bytes(t: &[u8], bytes: &[u8], from: usize, push: &mut dyn FnMut(usize)) {
    let Some((&b, rest)) = bytes.split_first() else {
        push(from);
        return;
    };
    for n in percent_signs(&t[from..]) {
        if hex2_at(&t[from + n..], b) {
            percent_bytes(t, rest, from + n + 2, push);
        }
    }
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

/// HTML's named references encoders write for ASCII (HTML-escaping writes these five; others
/// use the numeric forms).
const HTML_NAMED: [(char, &str); 5] = [
    ('&', "amp"),
    ('<', "lt"),
    ('>', "gt"),
    ('"', "quot"),
    ('\'', "apos"),
];

/// End (offset into `t`, lowered) of an HTML character reference to `c` at its start:
/// `&#xHH;` or `&#DD;` (leading zeros allowed), or a named one.
fn html_at(t: &[u8], c: char) -> Option<usize> {
    let rest = t.strip_prefix(b"&")?;
    let semi = rest.iter().take(12).position(|&b| b == b';')?;
    let body = &rest[..semi];
    // Digits read by hand, at most 8 (a code point has at most 7): `from_str_radix` and
    // `parse` grew the component by kilobytes.
    let number = |digits: &[u8], radix: u32| -> Option<u32> {
        (!digits.is_empty() && digits.len() <= 8).then_some(())?;
        digits.iter().try_fold(0u32, |n, &d| {
            Some(n * radix + char::from(d).to_digit(radix)?)
        })
    };
    let value = if let Some(hex) = body.strip_prefix(b"#x") {
        number(hex, 16)?
    } else if let Some(dec) = body.strip_prefix(b"#") {
        number(dec, 10)?
    } else {
        let name = std::str::from_utf8(body).ok()?;
        HTML_NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(ch, _)| u32::from(*ch))?
    };
    [c.to_ascii_lowercase(), c.to_ascii_uppercase()]
        .contains(&char::from_u32(value)?)
        .then_some(semi + 2)
}

/// Calls `push` with the end of every spelling of `c` (either ASCII case) that `t` (lowered)
/// starts with: as it is; each UTF-8 byte percent-encoded (the `%` itself as it is, encoded
/// again, or JSON-escaped); a space as `+`; each UTF-16 unit as `\uXXXX` or JSON's short
/// escape (the backslash as it is or escaped again); an HTML character reference.
fn spellings_at(c: char, t: &[u8], push: &mut dyn FnMut(usize)) {
    let lower = c.to_ascii_lowercase();
    let mut buf = [0u8; 4];
    let literal = lower.encode_utf8(&mut buf).as_bytes();
    if t.starts_with(literal) {
        push(literal.len());
    }
    if c == ' ' && t.first() == Some(&b'+') {
        push(1);
    }
    // Every other spelling begins with an escape's first byte: most positions of a text stop
    // here (every log line is scrubbed).
    if !matches!(t.first(), Some(b'%' | b'\\' | b'&')) {
        return;
    }
    if let Some(e) = json_short(c) {
        for n in backslashes(t) {
            if t.get(n) == Some(&e) {
                push(n + 1);
            }
        }
    }
    if let Some(n) = html_at(t, c) {
        push(n);
    }
    let cases = [lower, c.to_ascii_uppercase()];
    for (i, v) in cases.iter().enumerate() {
        if i == 1 && cases[1] == cases[0] {
            break;
        }
        percent_bytes(t, v.encode_utf8(&mut buf).as_bytes(), 0, push);
        let mut units = [0u16; 2];
        json_units(t, v.encode_utf16(&mut units), 0, push);
    }
}

/// Ends of `units` written as `\uXXXX` escapes one after another from `from`.
fn json_units(t: &[u8], units: &[u16], from: usize, push: &mut dyn FnMut(usize)) {
    let Some((&u, rest)) = units.split_first() else {
        push(from);
        return;
    };
    for n in backslashes(&t[from..]) {
        let at = from + n;
        if t.get(at) == Some(&b'u') && hex4_at(&t[at + 1..], u) {
            json_units(t, rest, at + 5, push);
        }
    }
}

/// Most candidate ends one start may follow at once. Past it (a secret of backslashes
/// against a text of backslashes: each `\` is itself or half of `\\`), the rest of the text
/// from that start is taken as an occurrence: withheld rather than searched at a cost that
/// grows with the cube of the secret (a red team: 21 s for one line).
const MAX_CANDIDATES: usize = 128;

/// The shortest prefix of a secret that counts as an occurrence of it: half of it, and at
/// least 12 characters. An echo an upstream cut short (`Bearer zqT0k3n+Ab/Cd=EfGh1234...`,
/// 22 characters of 30) gives away most of the secret.
fn prefix_min(len: usize) -> usize {
    len.div_ceil(2).max(12).min(len)
}

/// The first byte of `c`'s literal spelling in an ASCII-lowered text.
fn lead_byte(c: char) -> u8 {
    let mut buf = [0u8; 4];
    c.to_ascii_lowercase().encode_utf8(&mut buf).as_bytes()[0]
}

/// Whether a spelling of `c` (see [`spellings_at`]) can begin with byte `b` of an
/// ASCII-lowered text: its literal's first byte, an escape's (`%`, `\`, `&`), `+` for a space.
/// A cheap test that spares most positions the spellings' search.
fn may_begin(c: char, b: u8) -> bool {
    b == lead_byte(c) || matches!(b, b'%' | b'\\' | b'&') || (c == ' ' && b == b'+')
}

/// The candidate ends of one character's step, each once: found by a scan of the list while
/// it is short (the usual case: one end), by a bitmap of the text's positions, made at first
/// need, once it is long (a secret of backslashes against a text of them).
struct Ends {
    list: Vec<usize>,
    marked: Vec<bool>,
    by_map: bool,
    text_len: usize,
}

impl Ends {
    /// Past this many ends, the bitmap is used (a scan of 8 is cheaper than making it).
    const SCANNED: usize = 8;

    fn new(text_len: usize) -> Self {
        Ends {
            list: Vec::new(),
            marked: Vec::new(),
            by_map: false,
            text_len,
        }
    }

    fn push(&mut self, p: usize) {
        if !self.by_map {
            if self.list.contains(&p) {
                return;
            }
            if self.list.len() < Self::SCANNED {
                self.list.push(p);
                return;
            }
            if self.marked.is_empty() {
                self.marked = vec![false; self.text_len + 1];
            }
            for &q in &self.list {
                self.marked[q] = true;
            }
            self.by_map = true;
        }
        if !self.marked[p] {
            self.marked[p] = true;
            self.list.push(p);
        }
    }

    fn clear(&mut self) {
        if self.by_map {
            for &q in &self.list {
                self.marked[q] = false;
            }
            self.by_map = false;
        }
        self.list.clear();
    }
}

/// Byte ranges where `secret` occurs in `lower` (the text, ASCII-lowered), spelled in any mix
/// of the ways the module docs list, whole or as a prefix of at least [`prefix_min`]
/// characters; overlapping occurrences too, each from its start to its longest spelling.
fn spelled<'a>(lower: &'a str, secret: &'a [char]) -> impl Iterator<Item = (usize, usize)> + 'a {
    let t = lower.as_bytes();
    let mut ends: Vec<usize> = Vec::new();
    let mut next = Ends::new(t.len());
    let min = prefix_min(secret.len());
    let mut rest_taken = false;
    let first = secret.first().copied();
    (0..t.len())
        .filter(move |&i| first.is_some_and(|c| may_begin(c, t[i])) && lower.is_char_boundary(i))
        .map_while(move |i| {
            if rest_taken {
                return None;
            }
            ends.clear();
            ends.push(i);
            for (k, &c) in secret.iter().enumerate() {
                next.clear();
                for &at in &ends {
                    if t.get(at).is_some_and(|&b| may_begin(c, b)) {
                        spellings_at(c, &t[at..], &mut |n| next.push(at + n));
                    }
                }
                if next.list.is_empty() {
                    // A prefix long enough counts (an echo cut short).
                    return Some((k >= min).then(|| (i, ends.iter().max().copied().unwrap_or(i))));
                }
                if next.list.len() > MAX_CANDIDATES {
                    rest_taken = true;
                    return Some(Some((i, t.len())));
                }
                ends.clear();
                ends.extend_from_slice(&next.list);
            }
            Some(ends.iter().max().map(|&e| (i, e)))
        })
        .flatten()
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
        // Spelled twice over, or as HTML, or cut short by the upstream (red teams).
        for echo in [
            "Kx9%252Bold%252Fstyle%253Dsecret-2468",
            "Kx9\\u00252Bold/style=secret-2468",
            "zq&#x2F;rt&#43;Token&#61;4711",
            "zq\\\\/rt\\\\u002bToken=4711",
            "Kx9+old/style=secr...",
        ] {
            let out = s.scrub(&format!("provided: {echo}. Trace ID: 1"));
            assert!(
                !out.contains("secret") && !out.contains("Token"),
                "{echo}: {out}"
            );
            assert!(out.starts_with("provided: [redacted]"), "{echo}: {out}");
        }
        // Not a spelling of it: left as it is.
        let other = "Kx8~old*style/secret-2468 and %4Bx9";
        assert_eq!(s.scrub(other), other);
    }

    #[test]
    fn a_short_prefix_is_not_a_secret_and_a_pathological_secret_costs_little() {
        let s = Secrets::default();
        s.add("zqT0k3n+Ab/Cd=EfGh1234IjKl5678");
        // 11 characters of 30: below both bounds; 14: below half.
        assert_eq!(s.scrub("id zqT0k3n+Ab/ x"), "id zqT0k3n+Ab/ x");
        assert_eq!(s.scrub("id zqT0k3n+Ab/Cd= x"), "id zqT0k3n+Ab/Cd= x");
        assert_eq!(s.scrub("id zqT0k3n+Ab/Cd=EfG x"), "id [redacted] x");
        // A secret of backslashes against a text of them: each `\` is itself or half of
        // `\\`; the candidates are bounded and the rest of the text is withheld.
        let b = Secrets::default();
        b.add(&"\\".repeat(300));
        let text = format!("title {}", "\\".repeat(5_000));
        assert_eq!(b.scrub(&text), "title [redacted]");
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
