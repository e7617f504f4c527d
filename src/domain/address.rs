//! The email-address rule: which `mail` values may be matched, linked or created, and how two
//! addresses compare.
//!
//! - An address is trimmed of surrounding ASCII spaces (U+0020) only, then compared by ASCII
//!   case folding only: `K` (U+212A KELVIN SIGN) never folds to `k`, so a look-alike can never
//!   equal a real address.
//! - Every other character must be printable ASCII (U+0021..=U+007E). An address holding a
//!   non-ASCII, invisible or control character (Cyrillic `а` U+0430, ZERO WIDTH SPACE U+200B,
//!   RIGHT-TO-LEFT OVERRIDE U+202E, TAB U+0009, …) is refused, and the reason names the first
//!   such character's code point (`U+212A`), never the raw character.
//! - The shape is `local@domain`: one `@`, a local part of 1-64 characters, a domain of
//!   letters, digits and hyphens in at least two dot-separated labels (RFC 1035 host names;
//!   internationalised domains in their `xn--` form), 254 characters in all (RFC 5321).
//!
//! Domains of the tenant: see [`Domains`] (learned from member users' UPN suffixes, or the
//! `email_match_domains` configuration key).

use std::collections::BTreeSet;

/// The most learned domains kept (in state). A tenant has a handful; Entra allows up to 5,000
/// per tenant, and a tenant with more than this (or than [`MAX_LEARNED_BYTES`] of names) sets
/// `email_match_domains` instead.
pub const MAX_LEARNED_DOMAINS: usize = 200;

/// A valid, normalised address: printable ASCII, lowercase, `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(String);

impl Address {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part (after the `@`), lowercase.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The OData `$filter` clause that finds the Entra users whose `mail` is this address:
    /// `mail eq '…'`, an apostrophe doubled as OData string literals require. (Not yet
    /// URL-encoded: the caller encodes the whole clause.)
    pub fn mail_filter(&self) -> String {
        format!("mail eq '{}'", self.0.replace('\'', "''"))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an address was refused. `Display` never shows the raw value, only code points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    /// A character outside printable ASCII: its code point, its 1-based position and kind.
    Character {
        code_point: u32,
        position: usize,
        kind: CharKind,
    },
    /// Printable ASCII but not `local@domain` (the text says what is wrong).
    Shape(&'static str),
}

/// What kind of refused character an address holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharKind {
    /// C0, DEL or C1 control.
    Control,
    /// Invisible: a space other than U+0020, or a format/zero-width/bidi/filler character.
    Invisible,
    /// Any other non-ASCII character (look-alike letters, symbols, …).
    NonAscii,
    /// U+0020 inside the address (surrounding ones are trimmed).
    Space,
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::Empty => f.write_str("mail is empty"),
            AddressError::Character {
                code_point,
                position,
                kind,
            } => {
                let what = match kind {
                    CharKind::Control => "a control character",
                    CharKind::Invisible => "an invisible character",
                    CharKind::NonAscii => "a non-ASCII character",
                    CharKind::Space => "a space",
                };
                write!(
                    f,
                    "mail holds {what} U+{code_point:04X} at position {position}: only plain ASCII addresses are matched or created"
                )
            }
            AddressError::Shape(why) => write!(f, "mail is not an address local@domain: {why}"),
        }
    }
}

/// Characters that render as nothing or as a blank (besides controls): those the log escaper
/// makes visible ([`crate::log::escape::hidden`]: format characters, separators, fillers),
/// ZWNJ and ZWJ, non-ASCII spaces (Unicode `White_Space`), the Braille blank, variation
/// selectors and the unassigned rest of the tag and variation-selector planes' block.
pub fn is_invisible(c: char) -> bool {
    crate::log::escape::hidden(c)
        || matches!(c as u32,
            0x00A0 | 0x1680 | 0x2000..=0x200F | 0x202F | 0x205F..=0x2065 | 0x2800 | 0x3000
            | 0xFE00..=0xFE0F | 0xFFF0..=0xFFF8 | 0xE0000..=0xE0FFF)
}

fn kind_of(c: char) -> CharKind {
    if c.is_control() {
        CharKind::Control
    } else if is_invisible(c) {
        CharKind::Invisible
    } else if c == ' ' {
        CharKind::Space
    } else {
        CharKind::NonAscii
    }
}

/// Applies the rule to a raw `mail` value: the normalised address, or why it is refused.
pub fn parse(raw: &str) -> Result<Address, AddressError> {
    let text = raw.trim_matches(' ');
    if text.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Some((i, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        return Err(AddressError::Character {
            code_point: c as u32,
            position: i + 1,
            kind: kind_of(c),
        });
    }
    let text = text.to_ascii_lowercase();
    if text.len() > 254 {
        return Err(AddressError::Shape("longer than 254 characters"));
    }
    let Some((local, domain)) = text.split_once('@') else {
        return Err(AddressError::Shape("no @"));
    };
    if domain.contains('@') {
        return Err(AddressError::Shape("more than one @"));
    }
    if local.is_empty() || local.len() > 64 {
        return Err(AddressError::Shape(
            "the part before @ must have 1 to 64 characters",
        ));
    }
    if !is_domain(domain) {
        return Err(AddressError::Shape(
            "the part after @ is not a domain name like contoso.com",
        ));
    }
    Ok(Address(text))
}

/// ASCII-only folding of a stored address (ZenQMS emails): surrounding U+0020 trimmed, ASCII
/// letters lowercased, nothing else touched, so a look-alike never folds onto a real address.
pub fn fold(email: &str) -> String {
    email.trim_matches(' ').to_ascii_lowercase()
}

/// True for a lowercase host name: two or more dot-separated labels of 1-63 letters, digits
/// and hyphens, no label starting or ending with a hyphen, 253 characters at most.
pub fn is_domain(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').count() >= 2
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The verified domain a member user's UPN proves: its suffix after the last `@`, lowercase,
/// when the user is not a guest (`userType` is not `Guest` and the UPN has no `#EXT#`).
/// Entra accepts only the tenant's verified domains as UPN suffixes.
pub fn upn_domain(upn: &str, user_type: Option<&str>) -> Option<String> {
    if user_type.is_some_and(|t| t.trim().eq_ignore_ascii_case("guest"))
        || upn.to_ascii_uppercase().contains("#EXT#")
    {
        return None;
    }
    let (_, domain) = upn.trim_matches(' ').rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    is_domain(&domain).then_some(domain)
}

/// The domains an address may be linked in: the configured list when `email_match_domains`
/// is set (it replaces the learned one), else the domains learned from member UPN suffixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domains {
    pub configured: Option<BTreeSet<String>>,
    pub learned: BTreeSet<String>,
}

impl Domains {
    pub fn verified(&self, domain: &str) -> bool {
        match &self.configured {
            Some(list) => list.contains(domain),
            None => self.learned.contains(domain),
        }
    }

    /// Where the list comes from, for log reasons.
    pub fn source(&self) -> &'static str {
        if self.configured.is_some() {
            "email_match_domains"
        } else {
            "the UPN suffixes of the tenant's member users"
        }
    }
}

/// The most bytes of domain names a learned set keeps (in state, where it may be held twice:
/// the tenant's and a running full sync's), so the state stays within 64 KiB.
pub const MAX_LEARNED_BYTES: usize = 3 * 1024;

/// Adds a domain to a learned set, up to [`MAX_LEARNED_DOMAINS`] and [`MAX_LEARNED_BYTES`];
/// false when the set is full and the domain was not in it.
pub fn learn(set: &mut BTreeSet<String>, domain: String) -> bool {
    if set.contains(&domain) {
        return true;
    }
    let bytes: usize = set.iter().map(|d| d.len() + 3).sum();
    if set.len() < MAX_LEARNED_DOMAINS && bytes + domain.len() + 3 <= MAX_LEARNED_BYTES {
        set.insert(domain);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> String {
        parse(raw).unwrap_err().to_string()
    }

    #[test]
    fn trims_spaces_and_folds_ascii_case_only() {
        let a = parse("  QMS.Admin@Vendor-Support.example ").unwrap();
        assert_eq!(a.as_str(), "qms.admin@vendor-support.example");
        assert_eq!(a.domain(), "vendor-support.example");
        assert_eq!(
            fold(" First.Last@Contoso.Example "),
            "first.last@contoso.example"
        );
        // Unicode lowercasing would turn U+212A into `k`; ASCII folding leaves it alone.
        assert_eq!(fold("\u{212A}.admin@x.com"), "\u{212A}.admin@x.com");
    }

    #[test]
    fn look_alikes_and_invisible_characters_are_refused_by_code_point() {
        for (raw, cp, kind) in [
            ("\u{212A}.admin@contoso.com", "U+212A", "non-ASCII"),
            ("\u{430}dmin@contoso.com", "U+0430", "non-ASCII"),
            ("ad\u{200B}min@contoso.com", "U+200B", "invisible"),
            ("admin@contoso.com\u{202E}", "U+202E", "invisible"),
            ("admin\t@contoso.com", "U+0009", "control"),
            ("admin@contoso.com\n", "U+000A", "control"),
            ("\u{A0}admin@contoso.com", "U+00A0", "invisible"),
            ("admin@cont\u{AD}oso.com", "U+00AD", "invisible"),
            ("adm in@contoso.com", "U+0020", "a space"),
            ("admin@contoso.com\u{FEFF}", "U+FEFF", "invisible"),
            ("admin@contoso.com\u{E0041}", "U+E0041", "invisible"),
            ("admin@contoso.com\u{85}", "U+0085", "control"),
            ("ａdmin@contoso.com", "U+FF41", "non-ASCII"),
        ] {
            let why = refused(raw);
            assert!(why.contains(cp), "{raw:?}: {why}");
            assert!(why.contains(kind), "{raw:?}: {why}");
            assert!(
                !why.contains(raw.trim_matches(' ')),
                "the reason never echoes the raw value: {why}"
            );
        }
    }

    #[test]
    fn shapes_that_are_not_an_address() {
        for raw in [
            "",
            "   ",
            "admin",
            "a@b@contoso.com",
            "@contoso.com",
            "admin@",
            "admin@localhost",
            "admin@-contoso.com",
            "admin@contoso..com",
            "admin@contoso_x.com",
        ] {
            assert!(parse(raw).is_err(), "{raw:?}");
        }
        assert!(parse(&format!("{}@x.com", "a".repeat(65))).is_err());
        assert!(parse("o'brien+qa@xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn odata_filter_doubles_apostrophes() {
        let a = parse("O'Brien@Contoso.com").unwrap();
        assert_eq!(a.mail_filter(), "mail eq 'o''brien@contoso.com'");
    }

    #[test]
    fn member_upns_prove_domains_guests_do_not() {
        assert_eq!(
            upn_domain("Ada@Contoso.COM", Some("Member")).as_deref(),
            Some("contoso.com")
        );
        assert_eq!(
            upn_domain("ada@contoso.com", None).as_deref(),
            Some("contoso.com")
        );
        assert_eq!(upn_domain("ada@contoso.com", Some("Guest")), None);
        assert_eq!(
            upn_domain("ada_fabrikam.com#EXT#@contoso.onmicrosoft.com", None),
            None
        );
        assert_eq!(upn_domain("no-at-sign", None), None);
    }

    #[test]
    fn configured_domains_replace_the_learned_ones() {
        let mut d = Domains::default();
        d.learned.insert("contoso.com".into());
        assert!(d.verified("contoso.com"));
        d.configured = Some(BTreeSet::from(["fabrikam.com".to_string()]));
        assert!(!d.verified("contoso.com"));
        assert!(d.verified("fabrikam.com"));
    }

    #[test]
    fn learned_set_is_bounded() {
        let mut set = BTreeSet::new();
        for i in 0..MAX_LEARNED_DOMAINS {
            assert!(learn(&mut set, format!("d{i}.example")));
        }
        assert!(!learn(&mut set, "one-too-many.example".into()));
        assert!(learn(&mut set, "d0.example".into()));
        assert_eq!(set.len(), MAX_LEARNED_DOMAINS);
        // Long names: the byte bound comes first.
        let mut long = BTreeSet::new();
        let mut n = 0;
        while learn(&mut long, format!("{n}{}.example", "x".repeat(200))) {
            n += 1;
        }
        let bytes: usize = long.iter().map(|d| d.len() + 3).sum();
        assert!(
            n > 0 && bytes <= MAX_LEARNED_BYTES,
            "{n} names, {bytes} bytes"
        );
    }
}
