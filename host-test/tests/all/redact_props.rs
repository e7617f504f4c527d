//! Property tests of the secret scrubber (`entra_zenqms::log::redact::Secrets`): whatever the
//! secrets and the text (any case, secrets inside each other, repeated, at the edges), the
//! scrubbed text holds no registered form of any secret, equals what the plain rule gives
//! (every form, longest first, replaced wherever it occurs ignoring ASCII case), and is left
//! as it was when no secret occurs in it.

use entra_zenqms::log::redact::{REDACTED, Secrets};
use proptest::prelude::*;

const CASES: u32 = 4096;

/// The plain rule, one form at a time over the whole text (what the scrubber did before it
/// kept its forms lowered and skipped forms longer than the text).
fn reference(forms: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for f in forms {
        let lower = out.to_ascii_lowercase();
        let mut next = String::new();
        let mut at = 0;
        while let Some(i) = lower[at..].find(f.as_str()) {
            next.push_str(&out[at..at + i]);
            next.push_str(REDACTED);
            at += i + f.len();
        }
        next.push_str(&out[at..]);
        out = next;
    }
    out
}

/// The forms `Secrets::add` registers (as it is, percent-encoded three ways, JSON-escaped),
/// without exact repeats (forms that differ in case are two), longest first (stable), lowered.
fn forms(secrets: &[String]) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for s in secrets {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let json = serde_json::to_string(s).unwrap();
        let encoded = entra_zenqms::platform::url::encode(s);
        for f in [
            s.to_string(),
            encoded.replace('~', "%7E"),
            encoded.replace("%20", "+"),
            encoded.clone(),
            json.trim_matches('"').to_string(),
        ] {
            if !f.is_empty() && !list.contains(&f) {
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
    }
}
