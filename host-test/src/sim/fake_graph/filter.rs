//! `$filter` on `GET /users`: the clauses the component sends, `mail eq '<literal>'`,
//! `mail in ('<literal>', …)` and `id in ('<id>', …)`, with Graph's rules
//! (shared/reference/graph/03-users-list.md; OData v4 ABNF for string literals;
//! learn.microsoft.com/graph/filter-query-parameter: "the in operator is limited to 15
//! expressions by default"; the user resource's `mail`: "Supports `$filter` (`eq`, `ne`, `not`,
//! `ge`, `le`, `in`, `startsWith`, `endsWith`, and `eq` on `null` values)"):
//!
//! - the literal is single-quoted; an apostrophe inside is doubled (`'o''brien@x.com'`);
//! - `mail` is compared case-insensitively (Entra's string comparison is ordinal ignore-case:
//!   each character's simple uppercase mapping, so U+212A KELVIN SIGN is not `k`; the exact
//!   folding is not documented — UNCERTAIN);
//! - a malformed clause answers 400 `BadRequest` "Invalid filter clause: …", Graph's shape;
//!   a property the user type does not have answers 400 `Request_BadRequest`;
//! - a well-formed clause on another property or operator is refused as not simulated.
//!
//! Works inside `$batch` too: batch items are routed like top-level requests.

use serde_json::{Map, Value};

use super::odata::{GraphError, GraphResult, Url};

/// A parsed `$filter` on users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UserFilter {
    MailEq(String),
    /// `mail in (…)`: at most [`MAX_IN`] literals, each compared as `mail eq` compares.
    MailIn(Vec<String>),
    /// `id in (…)`: at most [`MAX_IN`] ids, compared case-insensitively (GUIDs).
    IdIn(Vec<String>),
}

/// Values an `in` clause takes (Graph's default limit).
pub const MAX_IN: usize = 15;

impl UserFilter {
    pub(super) fn matches(&self, user: &Map<String, Value>) -> bool {
        match self {
            UserFilter::MailEq(wanted) => user
                .get("mail")
                .and_then(Value::as_str)
                .is_some_and(|mail| ignore_case_eq(mail, wanted)),
            UserFilter::MailIn(wanted) => user
                .get("mail")
                .and_then(Value::as_str)
                .is_some_and(|mail| wanted.iter().any(|w| ignore_case_eq(mail, w))),
            UserFilter::IdIn(ids) => user
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| ids.iter().any(|x| x.eq_ignore_ascii_case(id))),
        }
    }
}

/// A character's simple uppercase (itself when it has no single-character mapping, e.g. ß).
fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Ordinal ignore-case: same length in characters, each character's simple uppercase equal.
fn ignore_case_eq(a: &str, b: &str) -> bool {
    a.chars().count() == b.chars().count()
        && a.chars().zip(b.chars()).all(|(x, y)| upper(x) == upper(y))
}

/// `s` with each character's simple uppercase: two strings fold alike exactly when
/// [`ignore_case_eq`] holds (each character maps to one), so folded values index `mail`.
pub(super) fn fold(s: &str) -> String {
    s.chars().map(upper).collect()
}

fn invalid(clause: &str, position: usize) -> GraphError {
    GraphError::bad_request(
        "BadRequest",
        format!("Invalid filter clause: Syntax error at position {position} in '{clause}'."),
    )
}

/// The `$filter` of a `/users` request, if any. `is_property` says whether the user type has
/// a property of that name.
pub(super) fn user_filter(
    url: &Url,
    is_property: impl Fn(&str) -> bool,
) -> GraphResult<Option<UserFilter>> {
    let Some((_, clause, _)) = url
        .query
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case("$filter"))
    else {
        return Ok(None);
    };
    let chars: Vec<char> = clause.chars().collect();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < chars.len() && chars[*i] == ' ' {
            *i += 1;
        }
    };
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    skip_spaces(&mut i);
    let property = word(&mut i);
    if property.is_empty() || i >= chars.len() || chars[i] != ' ' {
        return Err(invalid(clause, i));
    }
    skip_spaces(&mut i);
    let operator = word(&mut i);
    if operator.is_empty() || i >= chars.len() || chars[i] != ' ' {
        return Err(invalid(clause, i));
    }
    skip_spaces(&mut i);
    // A quoted literal at `i` (an apostrophe inside doubled).
    let literal = |i: &mut usize| -> GraphResult<String> {
        if *i >= chars.len() || chars[*i] != '\'' {
            return Err(invalid(clause, *i));
        }
        *i += 1;
        let mut out = String::new();
        loop {
            match chars.get(*i) {
                None => return Err(invalid(clause, *i)),
                Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                    out.push('\'');
                    *i += 2;
                }
                Some('\'') => {
                    *i += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(*c);
                    *i += 1;
                }
            }
        }
    };
    let filter = if property.eq_ignore_ascii_case("mail") && operator == "eq" {
        UserFilter::MailEq(literal(&mut i)?)
    } else if (property.eq_ignore_ascii_case("id") || property.eq_ignore_ascii_case("mail"))
        && operator == "in"
    {
        if chars.get(i) != Some(&'(') {
            return Err(invalid(clause, i));
        }
        i += 1;
        let mut values = Vec::new();
        loop {
            skip_spaces(&mut i);
            values.push(literal(&mut i)?);
            skip_spaces(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some(')') => {
                    i += 1;
                    break;
                }
                _ => return Err(invalid(clause, i)),
            }
        }
        if values.len() > MAX_IN {
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                format!(
                    "Too many values in an 'in' clause: {} (the limit is {MAX_IN}).",
                    values.len()
                ),
            ));
        }
        if property.eq_ignore_ascii_case("mail") {
            UserFilter::MailIn(values)
        } else {
            UserFilter::IdIn(values)
        }
    } else {
        // Any other well-formed clause is one real Graph may answer, so it fails loudly
        // instead of pretending to be a syntax error.
        if !is_property(&property) {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Could not find a property named '{property}' on type 'microsoft.graph.user'."
                ),
            ));
        }
        return Err(GraphError::not_implemented(&format!(
            "$filter on users other than mail eq '…', mail in (…) and id in (…) (got {property} {operator})"
        )));
    };
    skip_spaces(&mut i);
    if i != chars.len() {
        return Err(invalid(clause, i));
    }
    Ok(Some(filter))
}

#[cfg(test)]
mod tests {
    use super::super::odata::parse_url;
    use super::*;
    use serde_json::json;

    /// The index of `mail` (`user_index.rs`) finds by [`fold`] what [`ignore_case_eq`] compares.
    #[test]
    fn folding_alike_is_comparing_equal() {
        let words = [
            "k.admin@x.com",
            "K.ADMIN@X.COM",
            "\u{212A}.admin@x.com",
            "straße@x.de",
            "STRASSE@x.de",
            "strasse@x.de",
            "Ωmega@x.gr",
            "ωMEGA@x.gr",
            "ǅ@x.com",
            "ǆ@x.com",
            "Ǆ@x.com",
            "İ@x.tr",
            "i@x.tr",
            "ı@x.tr",
            "I@x.tr",
            "",
            "a",
            "A",
            "ab",
            "aB\u{301}",
        ];
        for a in words {
            for b in words {
                assert_eq!(fold(a) == fold(b), ignore_case_eq(a, b), "{a:?} / {b:?}");
            }
        }
    }

    fn parse(query: &str) -> GraphResult<Option<UserFilter>> {
        let url = parse_url(&format!("https://graph.microsoft.com/v1.0/users?{query}")).unwrap();
        user_filter(&url, |p| {
            ["mail", "city"].contains(&p.to_ascii_lowercase().as_str())
        })
    }

    #[test]
    fn id_in_takes_up_to_fifteen_quoted_ids() {
        let f = parse("$filter=id in ('A1', 'b2','c''3')").unwrap().unwrap();
        assert_eq!(
            f,
            UserFilter::IdIn(vec!["A1".into(), "b2".into(), "c'3".into()])
        );
        let user: Map<String, Value> = serde_json::from_value(json!({"id": "a1"})).unwrap();
        assert!(f.matches(&user));
        let many: Vec<String> = (0..16).map(|i| format!("'{i}'")).collect();
        let err = parse(&format!("$filter=id in ({})", many.join(","))).unwrap_err();
        assert_eq!(err.status, 400);
        for bad in [
            "$filter=id in 'a'",
            "$filter=id in ('a'",
            "$filter=id in ('a',)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mail_in_takes_up_to_fifteen_literals_compared_as_mail_eq() {
        let f = parse("$filter=mail%20in%20(%27a%40x.com%27,%20%27O%27%27B%40x.com%27)")
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            UserFilter::MailIn(vec!["a@x.com".into(), "O'B@x.com".into()])
        );
        let user = |mail: &str| json!({"mail": mail}).as_object().unwrap().clone();
        assert!(f.matches(&user("A@X.com")));
        assert!(f.matches(&user("o'b@x.com")));
        assert!(!f.matches(&user("\u{212A}@x.com")));
        let many: Vec<String> = (0..16).map(|i| format!("'{i}@x.com'")).collect();
        let err = parse(&format!("$filter=mail in ({})", many.join(","))).unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str()),
            (400, "Request_UnsupportedQuery")
        );
        assert!(parse("$filter=mail in ('a@x.com'").is_err());
    }

    #[test]
    fn mail_eq_with_doubled_apostrophes() {
        assert_eq!(parse("$select=id").unwrap(), None);
        assert_eq!(
            parse("$filter=mail%20eq%20%27o%27%27brien%40x.com%27").unwrap(),
            Some(UserFilter::MailEq("o'brien@x.com".into()))
        );
    }

    #[test]
    fn malformed_clauses_get_graphs_400() {
        for bad in [
            "$filter=mail eq 'o'brien@x.com'",
            "$filter=mail eq o",
            "$filter=mail eq 'open",
            "$filter=mail",
            "$filter=",
            "$filter=mail eq 'a' or",
        ] {
            let e = parse(&bad.replace(' ', "%20")).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert_eq!(e.code, "BadRequest", "{bad}");
            assert!(e.message.starts_with("Invalid filter clause"), "{bad}");
        }
        let e = parse("$filter=colour%20eq%20%27x%27").unwrap_err();
        assert_eq!(e.code, "Request_BadRequest");
        let e = parse("$filter=city%20eq%20%27x%27").unwrap_err();
        assert!(e.message.contains("does not implement"));
    }

    #[test]
    fn the_filter_answers_top_level_and_inside_a_batch() {
        use super::super::test_support::{U, code, get, ids, send_json, setup};
        let (mut g, t) = setup();
        let url = format!("{U}/users?$filter=mail%20eq%20%27USER3%40contoso.com%27&$select=id");
        let (status, body) = get(&mut g, &t, &url);
        assert_eq!((status, ids(&body)), (200, vec!["u3".to_string()]));
        let (status, body) = get(
            &mut g,
            &t,
            &format!("{U}/users?$filter=mail%20eq%20%27nobody%27"),
        );
        assert_eq!((status, ids(&body)), (200, Vec::<String>::new()));
        let (status, body) = get(&mut g, &t, &format!("{U}/users?$filter=mail%20eq%20%27x"));
        assert_eq!((status, code(&body)), (400, "BadRequest"));
        let batch = json!({"requests": [
            {"id": "1", "method": "GET", "url": "/users?$filter=mail%20eq%20%27user4%40Contoso.com%27&$select=id"},
            {"id": "2", "method": "GET", "url": "/users?$filter=mail%20eq%20%27o%27brien%27"},
        ]});
        let (status, body) = send_json(
            &mut g,
            &t,
            "POST",
            &format!("{U}/$batch"),
            &batch,
            super::super::test_support::now(),
        );
        assert_eq!(status, 200);
        let item = |id: &str| super::super::test_support::batch_item(&body, id);
        assert_eq!(item("1")["status"], 200);
        assert_eq!(ids(&item("1")["body"]), vec!["u4".to_string()]);
        assert_eq!(item("2")["status"], 400);
        assert_eq!(code(&item("2")["body"]), "BadRequest");
    }

    #[test]
    fn mail_compares_ignoring_case_but_not_folding_look_alikes() {
        let f = UserFilter::MailEq("k.admin@x.com".into());
        let user = |mail: &str| json!({"mail": mail}).as_object().unwrap().clone();
        assert!(f.matches(&user("K.Admin@X.COM")));
        assert!(!f.matches(&user("\u{212A}.admin@x.com")));
        assert!(!f.matches(&user(" k.admin@x.com ")));
        assert!(!f.matches(&json!({"mail": null}).as_object().unwrap().clone()));
    }
}
