//! The last filter before text leaves the component: every configured secret and every access
//! token issued in the call, registered with [`crate::platform::Platform::add_secret`], is
//! replaced by [`REDACTED`] in every log line, failure message and summary.
//!
//! Registered forms of a secret: as it is, percent-encoded (as it travels in the token request's
//! form body; also with `~` encoded and with `+` for a space, as other encoders write it) and
//! JSON-escaped (as a JSON error body would echo it). Longer secrets are replaced
//! first, so a secret that contains another disappears whole.

use std::cell::RefCell;

use crate::platform::url::encode;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// `haystack` with every match of `needle` replaced by `with`, the matches found in `lower`
/// (`haystack` lowered) with `needle` lowered. ASCII case changes keep byte offsets, so matches
/// found in the lowered copy are cut from the original.
fn replace_lowered(haystack: &str, lower: &str, needle: &str, with: &str) -> String {
    let mut out = String::with_capacity(haystack.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(needle) {
        out.push_str(&haystack[at..at + i]);
        out.push_str(with);
        at += i + needle.len();
    }
    out.push_str(&haystack[at..]);
    out
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
        let forms = [
            secret.to_string(),
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

    /// `text` with every registered secret replaced by [`REDACTED`]. Matching ignores ASCII
    /// case: percent-encoding's hex digits may be written either way (`%7e`), and an echo may
    /// have upper-cased the whole value.
    pub fn scrub(&self, text: &str) -> String {
        let list = self.0.borrow();
        let mut replaced: Option<String> = None;
        let mut lower = String::new();
        for (_, needle) in list.iter() {
            let current = replaced.as_deref().unwrap_or(text);
            if needle.len() > current.len() {
                continue;
            }
            if lower.is_empty() {
                lower = current.to_ascii_lowercase();
            }
            if !lower.contains(needle.as_str()) {
                continue;
            }
            let next = replace_lowered(current, &lower, needle, REDACTED);
            lower = next.to_ascii_lowercase();
            replaced = Some(next);
        }
        replaced.unwrap_or_else(|| text.to_string())
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
    fn secrets_that_differ_only_in_case_are_two_forms() {
        // The second form is looked for again in what the first left, as every form is.
        let s = Secrets::default();
        s.add("redacted");
        s.add("REDACTED");
        assert_eq!(s.scrub("x Redacted y"), "x [[redacted]] y");
    }

    #[test]
    fn a_secret_inside_another_goes_whole() {
        let s = Secrets::default();
        s.add("abcdef");
        s.add("xxabcdefyy");
        assert_eq!(s.scrub("[xxabcdefyy]"), "[[redacted]]");
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
