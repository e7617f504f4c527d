//! `GET /groups`: the group collection with `$select`, `$top` (paged), `$orderby=displayName`,
//! and the advanced queries `$search="displayName:text"` and `$count=true`, which Graph serves
//! only with the `ConsistencyLevel: eventual` header.
//!
//! Search, as Graph's tokenized search on `displayName`: case-insensitive, a group matches when
//! a word of its display name (split on whitespace and punctuation) starts with the text; a
//! text with several words matches from a word start on (`"sales te"` finds "Global Sales
//! Team"). Graph also splits on case changes and digits (`"Team"` finds "SalesTeam"); the fake
//! does not, so a scenario relying on that finds less. Other search forms (`description:`,
//! `AND`/`OR`, a bare text) answer a 400 saying the fake does not implement them.

use serde_json::Value;

use super::FakeGraph;
use super::directory::{GROUP_PROPS, Kind, render};
use super::odata::{
    GraphError, GraphResult, Selection, Url, collection, eventual_consistency, find_name, paginate,
    parse_query, query_value,
};
use crate::sim::http_types::HttpRequest;

impl FakeGraph {
    /// `GET /groups` (the route checked the method).
    pub(super) fn list_groups(&self, req: &HttpRequest, url: &Url) -> GraphResult<Value> {
        let q = self.page_top(parse_query(
            url,
            &["select", "top", "skiptoken", "count", "search", "orderby"],
        )?);
        let eventual = eventual_consistency(req);
        let search = query_value(url, "search")
            .map(|raw| search_text(raw, eventual))
            .transpose()?;
        if q.count == Some(true) && !eventual {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "$count is not currently supported.",
            ));
        }
        let by_name = query_value(url, "orderby")
            .map(order_by_display_name)
            .transpose()?
            .is_some();
        let sel = Selection::resolve(q.select.as_ref(), "group", |n| {
            find_name(n, GROUP_PROPS.iter().copied())
        })?;
        let mut items: Vec<(String, Value)> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                search
                    .as_deref()
                    .is_none_or(|s| matches(&g.display_name, s))
            })
            .map(|(id, g)| {
                let key = if by_name {
                    name_key(&g.display_name, id)
                } else {
                    id.clone()
                };
                (key, render(&self.group_object(id), Kind::Group, &sel))
            })
            .collect();
        // `paginate` resumes after the last key of a page: the keys must be in listing order.
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let count = (q.count == Some(true) && q.skiptoken.is_none()).then_some(items.len());
        // A cursor of one ordering means nothing in the other.
        let scope = if by_name {
            "groups:displayName"
        } else {
            "groups"
        };
        let page = paginate(items, url, &q, scope)?;
        Ok(collection(
            &format!("groups{}", sel.context_suffix()),
            count,
            page,
        ))
    }
}

/// The text of `$search="displayName:text"`, checked as Graph does: the header first (without
/// it Graph refuses any `$search`), then the double quotes.
fn search_text(raw: &str, eventual: bool) -> GraphResult<String> {
    if !eventual {
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        ));
    }
    let quoted = raw
        .trim()
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| {
            GraphError::bad_request(
                "Request_UnsupportedQuery",
                format!(
                    "Invalid $search value '{raw}': the search clause must be enclosed in double quotes, e.g. $search=\"displayName:text\"."
                ),
            )
        })?;
    if quoted.contains('"') {
        return Err(GraphError::not_implemented(
            "$search with several clauses (AND, OR)",
        ));
    }
    match quoted.split_once(':') {
        Some((property, text)) if property.trim().eq_ignore_ascii_case("displayName") => {
            if text.trim().is_empty() {
                return Err(GraphError::bad_request(
                    "Request_UnsupportedQuery",
                    format!("Invalid $search value '{raw}': the search text is empty."),
                ));
            }
            Ok(text.trim().to_lowercase())
        }
        Some((property, _)) => Err(GraphError::not_implemented(&format!(
            "$search on '{}' (only displayName)",
            property.trim()
        ))),
        None => Err(GraphError::not_implemented(
            "$search without a property name (use \"displayName:text\")",
        )),
    }
}

/// Accepts `displayName` (optionally `asc`), the one sort order the fake implements.
fn order_by_display_name(raw: &str) -> GraphResult<()> {
    let mut words = raw.split_whitespace();
    let property = words.next().unwrap_or_default();
    let direction = words.next().map(str::to_ascii_lowercase);
    let ascending = matches!(direction.as_deref(), None | Some("asc"));
    if property.eq_ignore_ascii_case("displayName") && ascending && words.next().is_none() {
        Ok(())
    } else {
        Err(GraphError::not_implemented(&format!(
            "$orderby={raw} on /groups (only displayName, ascending)"
        )))
    }
}

/// Graph's tokenized prefix search, approximated: `text` (lowercase) starts at the beginning
/// of `display_name` or right after a whitespace or punctuation character.
fn matches(display_name: &str, text: &str) -> bool {
    let name = display_name.to_lowercase();
    let mut previous: Option<char> = None;
    name.char_indices().any(|(i, c)| {
        let word_start = previous.is_none_or(|p| !p.is_alphanumeric());
        previous = Some(c);
        word_start && name[i..].starts_with(text)
    })
}

/// A paging key that sorts as `$orderby=displayName` does (case-insensitively, ties by id). The
/// NUL separator sorts below every character, so "Sales" comes before "Sales EU".
fn name_key(display_name: &str, id: &str) -> String {
    format!("{}\0{id}", display_name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::FakeGraph;
    use super::super::test_support::*;
    use super::matches;

    const EVENTUAL: (&str, &str) = ("ConsistencyLevel", "eventual");

    /// The standard fixture plus groups whose names exercise the search.
    fn setup_named() -> (FakeGraph, String) {
        let mut s = spec();
        let extra: Vec<crate::sim::seed::GroupSpec> = serde_json::from_value(json!([
            {"id": "E", "displayName": "Global Sales Team", "members": ["u5"]},
            {"id": "F", "displayName": "sales-eu", "members": []},
            {"id": "G", "displayName": "Wholesale", "members": []},
            {"id": "H", "members": []},
        ]))
        .unwrap();
        s.groups.extend(extra);
        let mut g = FakeGraph::new(&s);
        let t = token(&mut g);
        (g, t)
    }

    fn names(body: &Value) -> Vec<&str> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["displayName"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_search_is_a_case_insensitive_word_prefix() {
        assert!(matches("Global Sales Team", "sales"));
        assert!(matches("Global Sales Team", "sales te"));
        assert!(matches("sales-eu", "eu"));
        assert!(matches("Group A", "group a"));
        assert!(!matches("Wholesale", "sale"));
        assert!(!matches("Global Sales Team", "ales"));
    }

    #[test]
    fn groups_list_pages_by_id_with_top() {
        let (mut g, t) = setup_named();
        let (status, first) = get(&mut g, &t, &format!("{U}/groups?$top=5&$select=id"));
        assert_eq!(status, 200, "{first}");
        assert_eq!(ids(&first), ["A", "B", "C", "D", "E"]);
        assert_eq!(first["value"][0], json!({"id": "A"}));
        let next = first["@odata.nextLink"].as_str().unwrap().to_string();
        assert!(next.contains("$top=5"), "{next}");
        let (_, second) = get(&mut g, &t, &next);
        assert_eq!(ids(&second), ["F", "G", "H"]);
        assert!(second.get("@odata.nextLink").is_none());
        // A group without a displayName in the scenario is named by its id.
        assert_eq!(second["value"][2]["id"], "H");
        let (_, h) = get(&mut g, &t, &format!("{U}/groups/H?$select=displayName"));
        assert_eq!(h["displayName"], "H");
        // Without the header, $count is refused as on other directory collections.
        assert_eq!(get(&mut g, &t, &format!("{U}/groups?$count=true")).0, 400);
        assert_eq!(get(&mut g, &t, &format!("{U}/groups?$filter=x")).0, 400);
    }

    #[test]
    fn search_needs_the_consistency_header_and_quotes() {
        let (mut g, t) = setup_named();
        let url = format!("{U}/groups?$search=%22displayName:sales%22");
        let (status, body) = get(&mut g, &t, &url);
        assert_eq!(
            (status, code(&body)),
            (400, "Request_UnsupportedQuery"),
            "{body}"
        );
        assert!(
            message(&body).contains("'ConsistencyLevel: eventual'"),
            "{body}"
        );
        let (status, body) = get_with(
            &mut g,
            &t,
            &format!("{U}/groups?$search=displayName:sales"),
            &[EVENTUAL],
        );
        assert_eq!(
            (status, code(&body)),
            (400, "Request_UnsupportedQuery"),
            "{body}"
        );
        for unsupported in [
            "%22description:sales%22",
            "%22sales%22",
            "%22displayName:a%22%20OR%20%22displayName:b%22",
        ] {
            let url = format!("{U}/groups?$search={unsupported}");
            assert_eq!(get_with(&mut g, &t, &url, &[EVENTUAL]).0, 400, "{url}");
        }
    }

    #[test]
    fn search_finds_word_prefixes_with_count_order_and_paging() {
        let (mut g, t) = setup_named();
        let url = format!(
            "{U}/groups?$search=\"displayName:SALES\"&$count=true&$orderby=displayName&$select=id,displayName&$top=1"
        );
        let (status, first) = get_with(&mut g, &t, &url, &[EVENTUAL]);
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["@odata.count"], 2);
        assert_eq!(names(&first), ["Global Sales Team"]);
        let next = first["@odata.nextLink"].as_str().unwrap().to_string();
        // Graph does not carry custom headers to the next page: the client resends them.
        let (_, second) = get_with(&mut g, &t, &next, &[EVENTUAL]);
        assert_eq!(names(&second), ["sales-eu"]);
        assert!(second.get("@odata.count").is_none());
        assert!(second.get("@odata.nextLink").is_none());

        let (_, groups) = get_with(
            &mut g,
            &t,
            &format!("{U}/groups?$search=%22displayName:group%22"),
            &[EVENTUAL],
        );
        assert_eq!(ids(&groups), ["A", "B", "C", "D"]);
        let (_, none) = get_with(
            &mut g,
            &t,
            &format!("{U}/groups?$search=%22displayName:sale%20x%22"),
            &[EVENTUAL],
        );
        assert!(ids(&none).is_empty());
        let desc = format!("{U}/groups?$orderby=displayName%20desc");
        assert_eq!(get(&mut g, &t, &desc).0, 400);
    }

    #[test]
    fn search_works_inside_a_batch_with_the_item_header() {
        let (mut g, t) = setup_named();
        let body = json!({"requests": [
            {"id": "1", "method": "GET", "url": "/groups?$search=\"displayName:wholesale\"",
             "headers": {"ConsistencyLevel": "eventual"}},
            {"id": "2", "method": "GET", "url": "/groups?$search=\"displayName:wholesale\""},
        ]});
        let (status, answer) = send_json(&mut g, &t, "POST", &format!("{U}/$batch"), &body, now());
        assert_eq!(status, 200, "{answer}");
        let item = |id: &str| batch_item(&answer, id);
        assert_eq!(ids(&item("1")["body"]), ["G"]);
        assert_eq!(item("2")["status"], 400);
    }
}
