//! `list-groups` and `list-roles`: ids and display names for the configuration wizard's
//! pickers (scope groups, role mappings).

use serde_json::{Value, json};

use crate::clients::graph::{GRAPH_BASE, Graph};
use crate::clients::zenqms::{Zenqms, api};
use crate::config::Config;
use crate::failure::Failure;
use crate::platform::Method;
use crate::platform::url::encode;

/// Most groups one answer lists (the picker narrows with search text).
const GROUPS_SHOWN: u32 = 50;

/// `$search` text for Graph, inside double quotes (Graph's `$search` syntax, "Use the $search
/// query parameter" in the Microsoft Graph docs). Quotes, backslashes and control characters
/// are left out (a display-name prefix search needs none of them, and a stray quote would end
/// the clause); `None` when nothing is left to search for.
fn search_clause(text: &str) -> Option<String> {
    let kept: String = text
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| format!("\"displayName:{kept}\""))
}

/// `list-groups`: groups whose display name has a word starting with `input` (Graph
/// `$search` on displayName, which needs `ConsistencyLevel: eventual`), or the first groups
/// without input. Result: `{"groups": [{"id", "displayName"}], "more": bool}`.
///
/// Errors: the token or the Graph read failed (a 403 names Group.Read.All).
pub fn groups(
    p: &dyn crate::platform::Platform,
    config: &Config,
    input: Option<&str>,
) -> Result<(String, Value), Failure> {
    let graph = super::graph(p, config)?;
    let mut url = format!("{GRAPH_BASE}/groups?$select=id,displayName&$top={GROUPS_SHOWN}");
    let clause = input.and_then(search_clause);
    // What is sent, not what was typed, is checked for a pasted credential (the cleaning
    // above may join its parts).
    if clause.as_deref().is_some_and(|c| p.scrub(c) != c) {
        return Err(Failure::fatal(
            "the search text contains a configured secret: nothing was sent",
        ));
    }
    if let Some(clause) = clause {
        url.push_str(&format!("&$count=true&$search={}", encode(&clause)));
    }
    let mut req = graph.request(Method::Get, &url, None)?;
    // Advanced query (shared/reference/graph/03-users-list.md: $search needs it).
    req.headers
        .push(("ConsistencyLevel".into(), "eventual".into()));
    let resp = graph.send(req);
    let page = Graph::read_page(resp, &url, "listing groups").map_err(|mut f| {
        if f.message.contains("403") {
            f.message = format!(
                "{} (the app needs Group.Read.All with admin consent)",
                f.message
            );
        }
        f
    })?;
    let groups: Vec<Value> = page
        .items
        .iter()
        .filter_map(|g| {
            let id = g.get("id")?.as_str()?;
            let name = g.get("displayName").and_then(Value::as_str).unwrap_or("");
            Some(json!({"id": id, "displayName": name}))
        })
        .collect();
    let summary = format!("{} groups", groups.len());
    Ok((
        summary,
        json!({"groups": groups, "more": page.next.is_some()}),
    ))
}

/// `list-roles`: ZenQMS's roles. Result: `{"roles": [{"id", "name"}]}`.
///
/// Errors: ZenQMS did not answer or refused the token.
pub fn roles(
    p: &dyn crate::platform::Platform,
    config: &Config,
) -> Result<(String, Value), Failure> {
    let zen = Zenqms::new(p, config);
    let roles = Zenqms::parse_roles(p.send(zen.request(&api::list_roles())))?;
    let list: Vec<Value> = roles
        .iter()
        .map(|r| json!({"id": r.id, "name": r.name}))
        .collect();
    Ok((format!("{} roles", list.len()), json!({ "roles": list })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_quoted_and_escaped() {
        assert_eq!(search_clause("QA").unwrap(), "\"displayName:QA\"");
        assert_eq!(
            search_clause("a\"b\\c\u{7}").unwrap(),
            "\"displayName:abc\""
        );
        assert_eq!(search_clause(" \"\u{1b} "), None);
    }
}
