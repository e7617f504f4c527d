//! The last filter before text leaves the component: every configured secret and every access
//! token issued in the call, registered with [`crate::platform::Platform::add_secret`], is
//! replaced by [`REDACTED`] in every log line, failure message and summary.
//!
//! Registered forms of a secret: as it is, percent-encoded (as it travels in the token request's
//! form body; also with `~` encoded, with `+` for a space, and both, with `*` left as it is, as
//! other encoders — the
//! WHATWG form encoding, Java's `URLEncoder` — write it) and
//! JSON-escaped (as a JSON error body would echo it). Every occurrence of every form is found
//! in the text as given (ASCII case ignored), and each stretch of text they cover, overlapping
//! or touching, becomes one [`REDACTED`]: a secret inside another, or two side by side, go
//! whole. Text that was already a marker is never searched again (scrubbing twice changes
//! nothing, and cannot grow a text), and a value in which the markers themselves would
//! complete a form with the text beside them (`[redacte` + `d]Kx9…`, where `d]Kx9…` is a
//! secret) is withheld whole.

use std::cell::RefCell;

use crate::platform::url::encode;

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

/// The secrets of one call.
#[derive(Debug, Default)]
pub struct Secrets(RefCell<Vec<(String, String)>>);

impl Secrets {
    /// Registers `secret` (surrounding whitespace ignored; an empty one is ignored).
    pub fn add(&self, secret: &str) {
        let secret = secret.trim();
        if secret.is_empty() {
            return;
        }
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let encoded = encode(secret);
        // The WHATWG form encoding (URLSearchParams) and Java's URLEncoder leave `*` as it is
        // and write `~` as `%7E`, a space as `+` (a red team: an older Entra secret holding
        // `*`, echoed so, was not scrubbed).
        let form_encoded = encoded.replace("%2A", "*").replace('~', "%7E");
        let forms = [
            secret.to_string(),
            form_encoded.replace("%20", "+"),
            form_encoded,
            encoded.replace('~', "%7E").replace("%20", "+"),
            encoded.replace('~', "%7E"),
            encoded.replace("%20", "+"),
            encoded,
            json,
        ];
        let mut list = self.0.borrow_mut();
        // Each form kept as it is (a form is registered once) and lowered: matching ignores
        // ASCII case, and a line is lowered once, not once per form (every log line is
        // scrubbed, and an issued token is a form of 1–2 KB). Forms that differ only in case
        // stay two forms: the second is looked for again in the text the first left.
        for form in forms {
            if !form.is_empty() && !list.iter().any(|(f, _)| *f == form) {
                let lower = form.to_ascii_lowercase();
                list.push((form, lower));
            }
        }
        list.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// `text` with every registered secret replaced by [`REDACTED`] (see the module docs), or
    /// [`REDACTED`] alone when the markers would complete a form with the text beside them.
    /// Matching ignores ASCII case: percent-encoding's hex digits may be written either way
    /// (`%7e`), and an echo may have upper-cased the whole value. A text in which no form
    /// occurs costs one search per form and comes back as it was.
    pub fn scrub(&self, text: &str) -> String {
        let list = self.0.borrow();
        let lower = text.to_ascii_lowercase();
        let forms: Vec<&str> = list
            .iter()
            .map(|(_, f)| f.as_str())
            .filter(|f| f.len() <= lower.len() && lower.contains(f))
            .collect();
        if forms.is_empty() {
            return text.to_string();
        }
        let markers: Vec<(usize, usize)> = occurrences(&lower, REDACTED).collect();
        // Which bytes a form covers (bytes, not ranges: nothing to sort or merge).
        let mut covered = vec![false; text.len()];
        let mut any = false;
        for f in &forms {
            for r in occurrences(&lower, f).filter(|&r| !inside(&markers, r)) {
                covered[r.0..r.1].fill(true);
                any = true;
            }
        }
        if !any {
            return text.to_string();
        }
        // Each run of covered bytes (overlapping or touching occurrences) is one marker; runs
        // begin and end on character boundaries, as the forms do.
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
        // What is left between markers held no form; one across a marker's edge (the markers
        // placed here and those the text held) is a marker's own characters completing it:
        // the value goes whole.
        let out_lower = out.to_ascii_lowercase();
        let markers: Vec<(usize, usize)> = occurrences(&out_lower, REDACTED).collect();
        let completed = list
            .iter()
            .any(|(_, f)| occurrences(&out_lower, f).any(|r| !inside(&markers, r)));
        if completed {
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
    fn percent_encoding_and_case_variants_are_scrubbed() {
        let s = Secrets::default();
        s.add("client-secret~Zx9");
        let text = "a client-secret%7eZx9 b CLIENT-SECRET~ZX9 c client-secret%7EZx9 d";
        let out = s.scrub(text);
        assert!(!out.to_ascii_lowercase().contains("zx9"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }
}
