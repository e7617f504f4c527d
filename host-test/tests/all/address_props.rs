//! Property tests of the email-address rule (`entra_zenqms::domain::address`) with arbitrary Unicode:
//! it never panics, folds ASCII case only, and refuses any non-ASCII, invisible or control
//! character by naming its code point (never echoing it).

use entra_zenqms::domain::address::{self, AddressError};
use proptest::prelude::*;

const CASES: u32 = 4096;

/// The first character (after trimming surrounding U+0020) that is not printable ASCII.
fn first_refused(raw: &str) -> Option<(usize, char)> {
    raw.trim_matches(' ')
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
}

fn check(raw: &str) -> Result<(), TestCaseError> {
    let parsed = address::parse(raw);
    match (&parsed, first_refused(raw)) {
        (Ok(a), refused) => {
            prop_assert!(refused.is_none(), "accepted {raw:?} with {refused:?}");
            prop_assert!(a.as_str().bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(a.as_str(), raw.trim_matches(' ').to_ascii_lowercase());
            prop_assert_eq!(a.as_str(), address::fold(raw));
            // The OData literal doubles every apostrophe and holds nothing else unescaped.
            let filter = a.mail_filter();
            let literal = &filter["mail eq '".len()..filter.len() - 1];
            prop_assert_eq!(literal.replace("''", "'"), a.as_str());
            prop_assert!(!literal.replace("''", "").contains('\''));
        }
        (Err(e), Some((i, c))) => {
            let text = e.to_string();
            match e {
                AddressError::Character {
                    code_point,
                    position,
                    ..
                } => {
                    prop_assert_eq!(*code_point, c as u32);
                    prop_assert_eq!(*position, i + 1);
                }
                other => prop_assert!(false, "{raw:?} refused as {other:?}"),
            }
            prop_assert!(text.contains(&format!("U+{:04X}", c as u32)), "{text}");
            if c != ' ' {
                prop_assert!(!text.contains(c), "the raw character is echoed: {text:?}");
            }
            prop_assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        (Err(e), None) => {
            prop_assert!(!matches!(e, AddressError::Character { .. }), "{e:?}");
        }
    }
    // Folding touches ASCII letters only: every other character survives as it was.
    let trimmed = raw.trim_matches(' ');
    let folded = address::fold(raw);
    prop_assert_eq!(folded.chars().count(), trimmed.chars().count());
    for (a, b) in trimmed.chars().zip(folded.chars()) {
        if a.is_ascii_uppercase() {
            prop_assert_eq!(a.to_ascii_lowercase(), b);
        } else {
            prop_assert_eq!(a, b);
        }
    }
    Ok(())
}

/// Characters that attack addresses: look-alikes, invisible and bidi characters, controls.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('\u{212A}'),                                // KELVIN SIGN
        Just('\u{212B}'),                                // ANGSTROM SIGN
        Just('\u{0130}'), // I WITH DOT ABOVE (lowercases to two characters)
        Just('\u{0131}'), // DOTLESS I
        Just('\u{017F}'), // LONG S (uppercases to ASCII S)
        Just('\u{FB05}'), // LIGATURE LONG S T
        proptest::char::range('\u{0400}', '\u{04FF}'), // Cyrillic
        proptest::char::range('\u{0370}', '\u{03FF}'), // Greek
        proptest::char::range('\u{FF01}', '\u{FF5E}'), // fullwidth ASCII
        proptest::char::range('\u{2000}', '\u{206F}'), // spaces, zero-width, bidi, separators
        proptest::char::range('\u{FE00}', '\u{FE0F}'), // variation selectors
        proptest::char::range('\u{E0000}', '\u{E007F}'), // tags
        proptest::char::range('\u{0}', '\u{1F}'), // C0
        proptest::char::range('\u{7F}', '\u{9F}'), // DEL, C1
        Just('\u{FEFF}'),
        Just('\u{00A0}'),
        Just('\u{00AD}'),
        Just('\u{3000}'),
        any::<char>(),
    ]
    .prop_filter("refused by the rule", |c| {
        !c.is_ascii_graphic() && *c != ' '
    })
}

/// A plausible address with one hostile character inserted somewhere (also among the
/// surrounding spaces, which it keeps from being trimmed away).
fn address_with_hostile_char() -> impl Strategy<Value = (String, char)> {
    (
        "[A-Za-z0-9.'+_-]{1,12}",
        "[a-z0-9]{1,10}",
        hostile_char(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(local, domain, c, at)| {
            let clean: Vec<char> = format!(" {local}@{domain}.example ").chars().collect();
            let i = at.index(clean.len()); // never after the trailing space
            let mut chars = clean;
            chars.insert(i, c);
            (chars.into_iter().collect(), c)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_unicode(raw in any::<String>()) {
        check(&raw)?;
    }

    #[test]
    fn plausible_addresses_with_a_hostile_character((raw, c) in address_with_hostile_char()) {
        check(&raw)?;
        match address::parse(&raw) {
            Err(AddressError::Character { code_point, .. }) => prop_assert_eq!(code_point, c as u32),
            other => prop_assert!(false, "{raw:?} with U+{:04X} gave {other:?}", c as u32),
        }
    }

    #[test]
    fn ascii_addresses_fold_case_only(local in "[A-Za-z0-9.'+_-]{1,20}", domain in "[A-Za-z0-9]{1,10}") {
        let raw = format!("  {local}@{domain}.Example ");
        let a = address::parse(&raw).expect("plain ASCII address");
        prop_assert_eq!(a.as_str(), format!("{}@{}.example", local.to_ascii_lowercase(), domain.to_ascii_lowercase()));
        prop_assert_eq!(a.domain(), format!("{}.example", domain.to_ascii_lowercase()));
    }

    #[test]
    fn upn_domains_are_plain_ascii_or_nothing(upn in any::<String>(), guest in any::<bool>()) {
        let user_type = guest.then_some("Guest");
        if let Some(d) = address::upn_domain(&upn, user_type) {
            prop_assert!(!guest);
            prop_assert!(address::is_domain(&d));
            prop_assert!(d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
        }
    }
}
