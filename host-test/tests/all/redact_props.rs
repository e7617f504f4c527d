//! Property tests of the secret scrubber (`entra_zenqms::log::redact::Secrets`): whatever the
//! secrets and the text (any case, any mix of percent-encoding and JSON escapes, secrets inside
//! each other, side by side, repeated, at the edges, overlapping the redaction marker), the
//! scrubbed text equals what the plain rule gives (every stretch of text an occurrence of a
//! secret covers — each character spelled as it is, percent-encoded or JSON-escaped, ignoring
//! ASCII case, and not within text that is already a marker — becomes one marker; a value in
//! which the markers would complete an occurrence is withheld whole), holds no occurrence
//! outside a marker, is left as it was when no secret occurs in it, and does not change when
//! scrubbed again.

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

/// Every way `c` may be spelled, lowered (naively, with `format!`): as it is; each UTF-8 byte
/// as `%xx` (the `%` as it is, as `%25` or as `\u0025`); each UTF-16 unit as `\uxxxx`
/// (the backslash as it is or as `\\`); a space as `+`; JSON's short escapes (the same two
/// backslashes); HTML's `&#xhh;`, `&#dd;` and named references — for both ASCII cases of `c`.
fn spellings(c: char) -> Vec<String> {
    fn product(parts: Vec<Vec<String>>) -> Vec<String> {
        parts.into_iter().fold(vec![String::new()], |acc, ways| {
            acc.iter()
                .flat_map(|a| ways.iter().map(move |w| format!("{a}{w}")))
                .collect()
        })
    }
    let mut out = Vec::new();
    for v in [c.to_ascii_lowercase(), c.to_ascii_uppercase()] {
        out.push(v.to_ascii_lowercase().to_string());
        out.extend(product(
            v.to_string()
                .bytes()
                .map(|b| {
                    ["%", "%25", "\\u0025"]
                        .iter()
                        .map(|p| format!("{p}{b:02x}"))
                        .collect()
                })
                .collect(),
        ));
        out.extend(product(
            v.encode_utf16(&mut [0; 2])
                .iter()
                .map(|u| vec![format!("\\u{u:04x}"), format!("\\\\u{u:04x}")])
                .collect(),
        ));
        out.push(format!("&#x{:x};", u32::from(v)));
        out.push(format!("&#{};", u32::from(v)));
    }
    let short = match c {
        '"' => Some('"'),
        '\\' => Some('\\'),
        '/' => Some('/'),
        '\u{8}' => Some('b'),
        '\u{c}' => Some('f'),
        '\n' => Some('n'),
        '\r' => Some('r'),
        '\t' => Some('t'),
        _ => None,
    };
    if let Some(e) = short {
        out.push(format!("\\{e}"));
        out.push(format!("\\\\{e}"));
    }
    if c == ' ' {
        out.push("+".into());
    }
    let named = [
        ('&', "amp"),
        ('<', "lt"),
        ('>', "gt"),
        ('"', "quot"),
        ('\'', "apos"),
    ];
    out.extend(
        named
            .iter()
            .filter(|(ch, _)| *ch == c)
            .map(|(_, n)| format!("&{n};")),
    );
    out
}

/// The longest prefix of `secret` (its spellings per character, `ways`) spelled from byte `i`
/// of `lower`, naively (every path, remembered by position in `seen`): how many characters,
/// and the furthest end of them.
fn longest(
    lower: &str,
    ways: &[Vec<String>],
    i: usize,
    seen: &mut std::collections::HashMap<(usize, usize), (usize, usize)>,
) -> (usize, usize) {
    let Some((first, rest)) = ways.split_first() else {
        return (0, i);
    };
    if let Some(&known) = seen.get(&(i, rest.len())) {
        return known;
    }
    let mut best = (0, i);
    for w in first {
        if lower[i..].starts_with(w.as_str()) {
            let (k, e) = longest(lower, rest, i + w.len(), seen);
            best = best.max((k + 1, e));
        }
    }
    seen.insert((i, rest.len()), best);
    best
}

/// The shortest prefix of a secret that counts: half of it, at least 12 characters.
fn prefix_min(len: usize) -> usize {
    len.div_ceil(2).max(12).min(len)
}

/// Every occurrence of any secret in `lower`: from each start, the longest prefix of at least
/// `prefix_min` characters (the whole secret included) spelled there, to its longest spelling.
fn occurrences(lower: &str, secrets: &[Vec<char>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for s in secrets {
        let ways: Vec<Vec<String>> = s.iter().map(|c| spellings(*c)).collect();
        // (Only to be quick: no spelling of the first character starts with another byte.)
        let mut firsts = [false; 256];
        for w in &ways[0] {
            firsts[usize::from(w.as_bytes()[0])] = true;
        }
        for i in (0..lower.len())
            .filter(|&i| firsts[usize::from(lower.as_bytes()[i])] && lower.is_char_boundary(i))
        {
            let (k, e) = longest(lower, &ways, i, &mut Default::default());
            if k >= prefix_min(s.len()) {
                out.push((i, e));
            }
        }
    }
    out
}

/// The plain rule, written naively: a byte is covered when an occurrence (not lying within a
/// marker the text already held) covers it; each run of covered bytes becomes one marker;
/// then an occurrence found across a marker's edge withholds the whole value.
fn reference(secrets: &[Vec<char>], text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let markers = all_at(&lower, REDACTED);
    let mut covered = vec![false; text.len()];
    for (a, b) in occurrences(&lower, secrets) {
        if !within(&markers, (a, b)) {
            covered[a..b].iter_mut().for_each(|c| *c = true);
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
    if occurrences(&out_lower, secrets)
        .into_iter()
        .any(|r| !within(&markers, r))
    {
        return REDACTED.to_string();
    }
    out
}

/// The secrets as `Secrets::add` keeps them: trimmed, empty ones left out.
fn kept(secrets: &[String]) -> Vec<Vec<char>> {
    secrets
        .iter()
        .map(|s| s.trim().chars().collect::<Vec<char>>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `secret` with each character spelled one of its ways, as `pick` chooses.
fn spelled(secret: &str, pick: u64) -> String {
    secret
        .chars()
        .enumerate()
        .map(|(k, c)| {
            let ways = spellings(c);
            let i = ((pick >> (k % 61)) as usize + k) % ways.len();
            // Spelled as the text would hold it (the spellings are lowered: upper-case the
            // encoded ones now and then, as encoders do).
            if pick & 1 == 1 {
                ways[i].to_uppercase()
            } else {
                ways[i].clone()
            }
        })
        .collect()
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9~/+ ._-]{1,12}",
        // Long enough for a prefix to count (an echo cut short).
        "[a-zA-Z0-9+/=%&;\\\\]{13,24}",
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
        pick in any::<u64>(),
    ) {
        // Text made of arbitrary pieces and the secrets themselves (some in upper case).
        let mut text = String::new();
        for (i, p) in pieces.iter().enumerate() {
            match p {
                Some(p) if p.starts_with('#') && !secrets.is_empty() => {
                    let s = &secrets[i % secrets.len()];
                    text.push_str(&match (upper, i % 3) {
                        (_, 0) => spelled(s, pick.rotate_left(i as u32)),
                        // Cut short, as an upstream may echo it.
                        (true, 1) => s.chars().take(s.chars().count() * 2 / 3 + 1).collect(),
                        (true, _) => s.to_uppercase(),
                        (false, _) => s.clone(),
                    });
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
        let secrets = kept(&secrets);
        // (The reference gives the text back when nothing occurs in it.)
        prop_assert_eq!(&out, &reference(&secrets, &text));
        // No occurrence outside a marker, and scrubbing again changes nothing.
        let out_lower = out.to_ascii_lowercase();
        let markers = all_at(&out_lower, REDACTED);
        for r in occurrences(&out_lower, &secrets) {
            prop_assert!(within(&markers, r), "{:?} left in {:?}", r, out);
        }
        prop_assert_eq!(s.scrub(&out), out.clone());
    }
}
