//! Request classification for the benchmark: reads versus writes, and what each Graph request
//! costs against the directory's per-tenant resource-unit budget
//! (`/work/shared/reference/graph/06-throttling-and-batching.md`, "Identity and access").

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sim::world::Target;
use crate::tools::native::Sent;

const GRAPH_V1: &str = "https://graph.microsoft.com/v1.0/";

/// Directory budget of one application+tenant pair, RU per 10 s, by tenant size.
pub fn quota_per_10s(users: u32) -> (u64, &'static str) {
    match users {
        0..50 => (3_500, "S (< 50 users)"),
        50..=500 => (5_000, "M (50-500 users)"),
        _ => (8_000, "L (> 500 users)"),
    }
}

/// A read: a Graph or ZenQMS request that changes nothing (GETs, ZenQMS searches, Graph's
/// POST-shaped queries). Token requests are neither reads nor writes.
pub fn is_read(s: &Sent) -> bool {
    if s.in_batch {
        return false; // its batch is the request
    }
    match s.target {
        Some(Target::Zenqms) => s.method == "GET" || path(&s.url).ends_with("/v2/users/search"),
        Some(Target::Graph) => {
            s.method == "GET"
                || [
                    "checkMemberGroups",
                    "getMemberGroups",
                    "getMemberObjects",
                    "getByIds",
                    // The component's batches carry only GETs.
                    "/$batch",
                ]
                .iter()
                .any(|op| path(&s.url).ends_with(op))
        }
        _ => false,
    }
}

/// What a read is, for the per-phase breakdown: e.g. "GET users (list)", "POST /v2/users/search".
pub fn read_kind(s: &Sent) -> Option<String> {
    if !is_read(s) {
        return None;
    }
    match base_cost(s) {
        Some((kind, _)) => Some(kind.to_string()),
        None if path(&s.url).ends_with("/$batch") => Some("POST $batch (Graph GETs)".into()),
        None => {
            let p = path(&s.url);
            let tail = p.find("/v2/").map_or(p, |i| &p[i..]);
            Some(format!("{} {tail}", s.method))
        }
    }
}

fn path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// What a Graph request is, and its base cost in RU before modifiers; `None` for requests
/// outside the directory budget (subscriptions, the token endpoint, ZenQMS).
fn base_cost(s: &Sent) -> Option<(&'static str, u32)> {
    if s.target != Some(Target::Graph) {
        return None;
    }
    let rest = path(&s.url).strip_prefix(GRAPH_V1)?;
    let seg: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let get = s.method == "GET";
    Some(match (seg.as_slice(), get) {
        (["subscriptions", ..], _) => return None,
        // A batch costs what its requests cost (each is recorded after it).
        (["$batch"], false) => return None,
        (["users"], true) => ("GET users (list)", 2),
        (["users" | "groups", "delta"], true) => ("GET users|groups/delta", 1),
        (["users", _], true) => ("GET users/{id}", 1),
        (["groups", _, "transitiveMembers"], true) => ("GET groups/{id}/transitiveMembers", 5),
        (["groups", _, "members"], true) => ("GET groups/{id}/members", 3),
        (["users", _, "transitiveMemberOf"], true) => ("GET users/{id}/transitiveMemberOf", 2),
        (["users", _, "memberOf"], true) => ("GET users/{id}/memberOf", 2),
        (["users", _, "checkMemberGroups"], false) => ("POST users/{id}/checkMemberGroups", 4),
        (["users", _, "getMemberGroups"], false) => ("POST users/{id}/getMemberGroups", 2),
        (["directoryObjects", "getByIds"], false) => ("POST directoryObjects/getByIds", 5),
        (_, true) => ("GET (other directory path)", 1),
        (_, false) => ("write (other directory path)", 1),
    })
}

/// RU of one request: base cost, `$select` -1, `$expand` +1, `$top` < 20 -1, at least 1.
pub fn resource_units(s: &Sent) -> Option<(&'static str, u64)> {
    let (kind, base) = base_cost(s)?;
    let query = s.url.split_once('?').map_or("", |(_, q)| q);
    let has = |opt: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = k.replace("%24", "$");
            (k == opt).then(|| v.to_string())
        })
    };
    let mut ru = i64::from(base);
    if has("$select").is_some() {
        ru -= 1;
    }
    if has("$expand").is_some() {
        ru += 1;
    }
    if has("$top")
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|t| t < 20)
    {
        ru -= 1;
    }
    Some((kind, ru.max(1) as u64))
}

/// One line of the cost breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct CostLine {
    pub request: String,
    pub count: u64,
    pub ru_each: u64,
    pub ru: u64,
}

/// What a run of requests spends against Graph's directory budget.
#[derive(Debug, Clone, Serialize)]
pub struct GraphCost {
    pub lines: Vec<CostLine>,
    pub total_ru: u64,
    /// The most RU spent in any 10 s of simulated time.
    pub peak_ru_per_10s: u64,
    pub quota_per_10s: u64,
    pub tenant_size: String,
    /// The shortest time the budget allows for `total_ru`, seconds.
    pub min_seconds_at_quota: f64,
}

pub fn graph_cost(sent: &[Sent], tenant_users: u32) -> GraphCost {
    let mut lines: BTreeMap<(&str, u64), u64> = BTreeMap::new();
    let mut timeline = Vec::new();
    for s in sent {
        if let Some((kind, ru)) = resource_units(s) {
            *lines.entry((kind, ru)).or_default() += 1;
            timeline.push((s.at_ms, ru));
        }
    }
    let total_ru: u64 = timeline.iter().map(|(_, ru)| ru).sum();
    // Sliding 10 s window over send times (sorted: the virtual clock only moves forward).
    let (mut peak, mut sum, mut lo) = (0u64, 0u64, 0usize);
    for hi in 0..timeline.len() {
        sum += timeline[hi].1;
        while timeline[hi].0 - timeline[lo].0 >= 10_000 {
            sum -= timeline[lo].1;
            lo += 1;
        }
        peak = peak.max(sum);
    }
    let (quota, size) = quota_per_10s(tenant_users);
    GraphCost {
        lines: lines
            .into_iter()
            .map(|((kind, ru_each), count)| CostLine {
                request: kind.to_string(),
                count,
                ru_each,
                ru: ru_each * count,
            })
            .collect(),
        total_ru,
        peak_ru_per_10s: peak,
        quota_per_10s: quota,
        tenant_size: size.to_string(),
        min_seconds_at_quota: total_ru as f64 * 10.0 / quota as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(method: &'static str, url: &str) -> Sent {
        Sent {
            at_ms: 0,
            method,
            url: url.into(),
            target: Some(Target::Graph),
            in_batch: false,
        }
    }

    #[test]
    fn a_batch_is_one_read_and_costs_what_its_items_cost() {
        let batch = sent("POST", "https://graph.microsoft.com/v1.0/$batch");
        assert!(is_read(&batch));
        assert_eq!(
            read_kind(&batch).as_deref(),
            Some("POST $batch (Graph GETs)")
        );
        assert_eq!(resource_units(&batch), None);
        let mut item = sent(
            "GET",
            "https://graph.microsoft.com/v1.0/groups/g/transitiveMembers?$select=id",
        );
        item.in_batch = true;
        assert!(!is_read(&item));
        assert_eq!(resource_units(&item).map(|(_, ru)| ru), Some(4));
    }

    #[test]
    fn costs_follow_the_published_table() {
        let ru = |m, u: &str| resource_units(&sent(m, u)).map(|(_, ru)| ru);
        assert_eq!(
            ru("GET", &format!("{GRAPH_V1}users?$select=id,mail&$top=100")),
            Some(1)
        );
        assert_eq!(ru("GET", &format!("{GRAPH_V1}users")), Some(2));
        let tm = format!("{GRAPH_V1}groups/g1/transitiveMembers?$select=id&$top=999");
        assert_eq!(ru("GET", &tm), Some(4));
        assert_eq!(
            ru("GET", &format!("{GRAPH_V1}users/u1?$select=id")),
            Some(1)
        );
        assert_eq!(ru("POST", &format!("{GRAPH_V1}subscriptions")), None);
        let check = format!("{GRAPH_V1}users/u1/checkMemberGroups");
        assert_eq!(ru("POST", &check), Some(4));
        assert!(is_read(&sent("POST", &check)));
        assert!(!is_read(&sent(
            "PATCH",
            &format!("{GRAPH_V1}subscriptions/s1")
        )));
    }
}
