//! `/users/{id}/memberOf`, `/users/{id}/transitiveMemberOf`, `/groups/{id}/memberOf`,
//! `/groups/{id}/transitiveMemberOf`: the groups that contain an object, directly or through
//! nesting. Real Graph also lists directory roles and administrative units here; the fake has
//! only groups, so every item is a `#microsoft.graph.group`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::FakeGraph;
use super::directory::Kind;
use super::odata::{GraphError, GraphResult, Url};
use crate::sim::http_types::HttpRequest;

impl FakeGraph {
    /// Lists the groups containing `id` (a live user or a group, already resolved). `cast` is an
    /// optional trailing segment (`microsoft.graph.group`); `$ref`/`$count` are not simulated.
    pub(super) fn list_member_of(
        &self,
        req: &HttpRequest,
        url: &Url,
        id: &str,
        transitive: bool,
        cast: Option<&str>,
    ) -> GraphResult<Value> {
        let relation = if transitive {
            "transitiveMemberOf"
        } else {
            "memberOf"
        };
        if let Some(segment) = cast.filter(|c| c.starts_with('$')) {
            return Err(GraphError::not_implemented(&format!(
                "/{{id}}/{relation}/{segment}"
            )));
        }
        let groups: BTreeMap<String, Kind> = self
            .containing_groups(id, transitive)
            .into_iter()
            .map(|g| (g, Kind::Group))
            .collect();
        self.list_objects(req, url, groups, cast, &format!("{relation}:{id}"))
    }

    /// Groups whose direct members include `id` (only live members count, as for `/members`),
    /// and with `transitive` every group containing one of those, and so on. Breadth-first over
    /// the reverse membership graph, so cycles terminate; the object itself is never listed.
    pub(super) fn containing_groups(&self, id: &str, transitive: bool) -> BTreeSet<String> {
        let parents = |child: &str| -> Vec<String> {
            self.groups
                .iter()
                .filter(|(gid, _)| self.direct_members(gid).contains_key(child))
                .map(|(gid, _)| gid.clone())
                .collect()
        };
        let mut found = BTreeSet::new();
        let mut queue = vec![id.to_string()];
        while let Some(current) = queue.pop() {
            for parent in parents(&current) {
                if parent != id && found.insert(parent.clone()) && transitive {
                    queue.push(parent);
                }
            }
        }
        found
    }
}
