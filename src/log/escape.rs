//! The one escaper for text the component hands to a human: every log message and field value
//! (and the call's summary and failure message) pass through [`escape`] at the platform layer
//! (`retry::Resilient::log` and the WIT glue in `wasm.rs`), never at call sites.
//!
//! What it does, so that a log line cannot lie or grow without bound:
//! - C0 controls, DEL and C1 controls (Unicode category `Cc`) become visible escapes: `\n`, `\r`,
//!   `\t`, else `\u{1b}`-style (lowercase hex). A newline in a user's title can therefore not
//!   start a forged second line, and an ANSI escape cannot clear a terminal.
//! - Bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the line and paragraph
//!   separators (U+2028, U+2029), every other format character (`Cf`: U+00AD, U+0600–U+0605,
//!   U+180E, U+200B, U+2060–U+2064, U+FEFF, the tag block U+E0000–U+E007F, …) and the
//!   characters that render as nothing or a blank (Hangul fillers, U+034F, …) become `\u{…}`
//!   too: [`hidden`] lists them. ZWNJ and ZWJ (U+200C, U+200D) are kept: names in several
//!   scripts (and emoji) need them, and they cannot reorder or break a line.
//! - The result is at most `cap` characters (the unit is a Unicode scalar value). A longer value is
//!   cut at a character boundary, never inside an escape, and ends with `…[+N chars]`, N being how
//!   many characters of the original were left out (so its length stays visible).
//! - Everything else, printable ASCII included, is unchanged; so is a backslash (an escaped
//!   newline and a literal `\n` typed by someone read the same, but neither breaks a line).
//!
//! Applying it twice changes nothing (the output has nothing left to escape and fits the cap), so
//! layers may each apply it.

use std::fmt::Write as _;

/// Longest log message, in characters.
pub const MESSAGE_CAP: usize = 2_048;
/// Longest log field value, in characters.
pub const FIELD_CAP: usize = 1_024;
/// Longest summary or failure message a call returns.
pub const OUTCOME_CAP: usize = 8_192;
/// Longest field key (keys are the component's own words; the cap is only a backstop).
pub const KEY_CAP: usize = 64;
/// Smallest cap [`escape`] honours (room for the `…[+N chars]` marker).
pub const MIN_CAP: usize = 32;

/// True for a character that must not reach a log line raw: controls (`Cc`) and
/// [`hidden`] ones.
pub fn must_escape(c: char) -> bool {
    c.is_control() || hidden(c)
}

/// Characters that change how text reads without being seen (besides controls): every format
/// character (Unicode category `Cf`, as of Unicode 16: soft hyphen, Arabic number signs,
/// zero-width space, bidi controls, word joiner and invisible operators, BOM, interlinear
/// annotation, Egyptian and shorthand format controls, musical beam controls, the tag block)
/// but ZWNJ and ZWJ (U+200C, U+200D), which names in several scripts and emoji need; the line
/// and paragraph separators (U+2028, U+2029); the Hangul fillers, the combining grapheme
/// joiner, the Khmer inherent vowels and the Mongolian free variation selectors, which render
/// as nothing or a blank. The one list: the log escaper uses it, and the address rule
/// (`domain::address::is_invisible`) adds spaces and the characters kept here. (A red team
/// found U+0600, U+13430, U+1BCA0, U+1D173 and U+3164 reaching the log raw from a hand-kept
/// list narrower than the address rule's.)
pub fn hidden(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891
        | 0x08E2 | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x200B | 0x200E
        | 0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0x3164 | 0xFEFF
        | 0xFFA0 | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE007F)
}

/// Appends `c` as it is shown; returns how many characters that took.
fn push(out: &mut String, c: char) -> usize {
    if !must_escape(c) {
        out.push(c);
        return 1;
    }
    let before = out.len();
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    // Escapes are ASCII: bytes are characters.
    out.len() - before
}

fn marker(left_out: usize) -> String {
    format!("…[+{left_out} chars]")
}

/// `text` with every [`must_escape`] character made visible, at most `cap` characters long
/// (`cap` below [`MIN_CAP`] counts as [`MIN_CAP`]).
pub fn escape(text: &str, cap: usize) -> String {
    let cap = cap.max(MIN_CAP);
    // The common case: nothing to escape, short enough.
    if text.len() <= cap && !text.chars().any(must_escape) {
        return text.to_string();
    }
    let total = text.chars().count();
    // Room for the widest marker this text could need.
    let budget = cap - marker(total).chars().count();
    let mut out = String::with_capacity(text.len().min(cap * 4));
    let mut shown = 0; // characters in `out`
    let mut kept = 0; // characters of `text` in `out`
    let mut fits_whole = true;
    for c in text.chars() {
        let mut piece = String::new();
        let n = push(&mut piece, c);
        if shown + n > budget {
            fits_whole = false;
            // Whatever follows would need the marker anyway; check whether the rest, as is,
            // still fits the full cap (a text just over the budget but within the cap).
            break;
        }
        out.push_str(&piece);
        shown += n;
        kept += 1;
    }
    if fits_whole {
        return out;
    }
    // The text did not fit the budget: it may still fit the cap without a marker.
    let mut whole = out.clone();
    let mut whole_len = shown;
    for c in text.chars().skip(kept) {
        whole_len += push(&mut whole, c);
        if whole_len > cap {
            out.push_str(&marker(total - kept));
            return out;
        }
    }
    whole
}

/// A log message, escaped and capped at [`MESSAGE_CAP`].
pub fn message(text: &str) -> String {
    escape(text, MESSAGE_CAP)
}

/// A log field value, escaped and capped at [`FIELD_CAP`].
pub fn field(text: &str) -> String {
    escape(text, FIELD_CAP)
}

/// A log field key, escaped and capped at [`KEY_CAP`].
pub fn key(text: &str) -> String {
    escape(text, KEY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_forge_a_second_line() {
        let title = "QA\nwarn  ZenQMS user deactivated zenqms_id=u-ceo";
        let out = field(title);
        assert_eq!(out, "QA\\nwarn  ZenQMS user deactivated zenqms_id=u-ceo");
        assert!(!out.contains('\n'));
    }

    #[test]
    fn ansi_bidi_and_separators_become_visible() {
        let cases = [
            ("\u{1b}[2J\u{1b}[H", "\\u{1b}[2J\\u{1b}[H"),
            ("a\r\tb\0", "a\\r\\tb\\u{0}"),
            ("\u{7f}\u{85}\u{9b}", "\\u{7f}\\u{85}\\u{9b}"),
            ("admin\u{202e}txt.exe", "admin\\u{202e}txt.exe"),
            (
                "\u{2066}x\u{2069}\u{200e}\u{200f}\u{61c}",
                "\\u{2066}x\\u{2069}\\u{200e}\\u{200f}\\u{61c}",
            ),
            ("a\u{2028}b\u{2029}c", "a\\u{2028}b\\u{2029}c"),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            // A red team's finds: format characters and fillers a narrower list let through.
            (
                "QA\u{1d173}\u{1bca0}\u{13430}\u{3164}\u{34f}Lead",
                "QA\\u{1d173}\\u{1bca0}\\u{13430}\\u{3164}\\u{34f}Lead",
            ),
            (
                "\u{600}\u{6dd}\u{70f}\u{8e2}\u{110bd}",
                "\\u{600}\\u{6dd}\\u{70f}\\u{8e2}\\u{110bd}",
            ),
            (
                "\u{115f}\u{1160}\u{ffa0}\u{17b4}\u{180b}",
                "\\u{115f}\\u{1160}\\u{ffa0}\\u{17b4}\\u{180b}",
            ),
            // Kept: ZWNJ, ZWJ (names, emoji) and variation selectors.
            ("\u{200c}\u{200d}\u{fe0f}", "\u{200c}\u{200d}\u{fe0f}"),
        ];
        for (input, want) in cases {
            assert_eq!(field(input), want, "{input:?}");
        }
    }

    #[test]
    fn printable_text_and_ordinary_unicode_are_unchanged() {
        for s in [
            "ZenQMS user updated",
            "Zoë Ångström-Łukasz \\ \"quoted\" ~!@#$%^&*()",
            "मनोज्ञ — 日本語 — العربية — 👩\u{200d}🔬",
        ] {
            assert_eq!(field(s), s);
        }
    }

    #[test]
    fn long_values_are_cut_and_say_how_much() {
        let title = "x".repeat(100_000);
        let out = field(&title);
        assert!(out.chars().count() <= FIELD_CAP);
        let (kept, marker) = out.split_once('…').unwrap();
        let left_out: usize = marker[2..marker.len() - 7].parse().unwrap();
        assert_eq!(kept.len() + left_out, 100_000, "{marker}");
        assert!(kept.len() > FIELD_CAP - 20);
        // Exactly at the cap: kept whole, no marker.
        let exact = "y".repeat(FIELD_CAP);
        assert_eq!(field(&exact), exact);
        // Escapes count towards the cap and are never split.
        let newlines = "\n".repeat(FIELD_CAP);
        let out = field(&newlines);
        assert!(out.chars().count() <= FIELD_CAP);
        let body = out.split('…').next().unwrap();
        assert_eq!(body.len() % 2, 0);
        assert!(body.chars().all(|c| c == '\\' || c == 'n'));
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        for s in [
            "a\nb".to_string(),
            "\u{1b}".repeat(5_000),
            "é".repeat(3_000),
            format!("{}\u{202e}", "z".repeat(1_023)),
        ] {
            let once = field(&s);
            assert_eq!(field(&once), once);
            let once = message(&s);
            assert_eq!(message(&once), once);
        }
    }
}
