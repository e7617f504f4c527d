//! Property tests of the secret scrubber (`entra_zenqms::log::redact::Secrets`): whatever the
//! secrets and the text (any case, secrets inside each other, side by side, repeated, at the
//! edges, overlapping the redaction marker), the scrubbed text equals what the plain rule gives
//! (every stretch of text any form covers, ignoring ASCII case and leaving text that is
//! already a marker alone, becomes one marker; a value in which the markers would complete a
//! form is withheld whole), holds no form outside a marker, is left as it was when no secret
//! occurs in it, and does not change when scrubbed again.

use entra_zenqms::log::redact::{REDACTED, Secrets};
use proptest::prelude::*;

const CASES: u32 = 4096;

/// Byte ranges of every occurrence of `form` in `lower`, overlapping ones too (naively).
fn all_at(lower: &str, form: &str) -> Vec<(usize, usize)> {
    (0..lower.len())
        .filter(|&i| lower.is_char_boundary(i) && lower[i..].starts_with(form))
        .map(|i| (i, i + form.len()))
        .collect()
}

fn within(spans: &[(usize, usize)], (a, b): (usize, usize)) -> bool {
    spans.iter().any(|&(x, y)| x <= a && b <= y)
}

/// The plain rule, written naively: a byte is covered when an occurrence of a form (not lying
/// within a marker the text already held) covers it; each run of covered bytes becomes one
/// marker; then a form found across a marker's edge withholds the whole value.
fn reference(forms: &[String], text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let markers = all_at(&lower, REDACTED);
    let mut covered = vec![false; text.len()];
    for f in forms {
        for (a, b) in all_at(&lower, f) {
            if !within(&markers, (a, b)) {
                covered[a..b].iter_mut().for_each(|c| *c = true);
            }
        }
    }
    if !covered.contains(&true) {
        return text.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        if covered[i] {
            while i < text.len() && covered[i] {
                i += 1;
            }
            out.push_str(REDACTED);
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    let out_lower = out.to_ascii_lowercase();
    let markers = all_at(&out_lower, REDACTED);
    if forms.iter().any(|f| {
        all_at(&out_lower, f)
            .into_iter()
            .any(|r| !within(&markers, r))
    }) {
        return REDACTED.to_string();
    }
    out
}

/// The forms `Secrets::add` registers, without exact repeats (forms that differ in case are
/// two), longest first (stable), lowered.
fn forms(secrets: &[String]) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for s in secrets {
        for f in crate::common::secret_forms(s) {
            if !list.contains(&f) {
                list.push(f);
            }
        }
        list.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }
    list.iter().map(|f| f.to_ascii_lowercase()).collect()
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9~/+ ._-]{1,12}",
        "[aA][bB][cC]",
        "\"[a-z]{1,4}\\\\[a-z]{0,3}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
        // Pieces of the marker and what may follow one (a marker completing a secret).
        (
            prop::sample::select(vec!["d]", "ed]", "[r", "red", "acted]", "]["]),
            "[a-z0-9]{0,4}"
        )
            .prop_map(|(a, b)| format!("{a}{b}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn the_scrubber_removes_every_form_and_follows_the_plain_rule(
        secrets in prop::collection::vec(secret(), 0..4)
            .prop_flat_map(|s| (Just(s), any::<bool>()))
            .prop_map(|(mut s, twin)| {
                // Sometimes a second secret equal to the first but for case (a client secret and
                // a token that differ only in case), or one overlapping the redaction marker.
                if twin && let Some(first) = s.first().cloned() {
                    s.push(first.to_uppercase());
                    s.push("Redacted".into());
                }
                s
            }),
        pieces in prop::collection::vec(
            prop_oneof![Just(None), any::<String>().prop_map(Some), (0usize..4).prop_map(|i| Some(format!("#{i}")))],
            0..8,
        ),
        upper in any::<bool>(),
    ) {
        // Text made of arbitrary pieces and the secrets themselves (some in upper case).
        let mut text = String::new();
        for (i, p) in pieces.iter().enumerate() {
            match p {
                Some(p) if p.starts_with('#') && !secrets.is_empty() => {
                    let s = &secrets[i % secrets.len()];
                    text.push_str(&if upper { s.to_uppercase() } else { s.clone() });
                }
                Some(p) => text.push_str(p),
                None => text.push(' '),
            }
        }
        let s = Secrets::default();
        for secret in &secrets {
            s.add(secret);
        }
        let out = s.scrub(&text);
        let forms = forms(&secrets);
        prop_assert_eq!(&out, &reference(&forms, &text));
        let lower = text.to_ascii_lowercase();
        if !forms.iter().any(|f| lower.contains(f.as_str())) {
            prop_assert_eq!(&out, &text);
        }
        // No form outside a marker, and scrubbing again changes nothing.
        let out_lower = out.to_ascii_lowercase();
        let markers = all_at(&out_lower, REDACTED);
        for f in &forms {
            for r in all_at(&out_lower, f) {
                prop_assert!(within(&markers, r), "{:?} left in {:?}", f, out);
            }
        }
        prop_assert_eq!(s.scrub(&out), out.clone());
    }
}
