//! The benchmark's synthetic tenant: N Entra users, G groups with nesting, half of the groups
//! mapped to roles, and a ZenQMS that already holds part of the tenant. Deterministic (no
//! randomness), so every run of the same size plans exactly the same work.
//!
//! Shares (of the N Entra users, by index i = 1..=N):
//! - incomplete (one required field missing or blank): i % 33 == 7, about 3 %
//! - disabled: i % 20 == 3, 5 %
//! - already linked in ZenQMS: i % 10 == 1, 10 % (a fifth of them with a stale title, a third
//!   of them holding mapped role r-0 whether or not their groups grant it)
//! - in ZenQMS by email only (to be linked): i % 10 == 2, 10 %
//! - plus ZenQMS-only users (contractors, never touched): N / 100, and leavers (linked to an
//!   Entra id the tenant no longer has): N / 200.

use serde_json::{Value, json};

use crate::scenario::Scenario;

pub const TENANT: &str = "8c3f3c1e-5d7a-4e38-9b76-2f0a4c1d9e11";
pub const CLIENT: &str = "0b5d9f2a-6c1e-4f7b-a3d2-91e8c7b6a5f4";
pub const SECRET: &str = "bench-client-secret~Zx9";
pub const API_TOKEN: &str = "zq-bench-api-token-4711";
pub const BASE: &str = "https://acme.zenqms.com";

/// Members of the group the group-notification phase changes (fewer when N is smaller).
pub const BIG_GROUP: u32 = 1_000;

/// What to generate and how the platform behaves.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Params {
    pub users: u32,
    pub groups: u32,
    pub rtt_ms: u64,
    pub concurrency: u32,
    pub budget_ms: u32,
    /// Which Entra users ZenQMS already holds linked.
    pub linked: Linked,
    /// How many times the whole benchmark runs (at least 1): each phase's CPU figures are the
    /// least of its runs, wasm and native each; every count must repeat exactly.
    pub repeats: u32,
}

/// Which Entra users the generated ZenQMS already holds, linked by external_id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Linked {
    /// 10 % linked and 10 % by email only (see the module docs): a first deploy.
    #[default]
    Tenth,
    /// Every Entra user (a redeploy after a migration): the already-linked phase's tenant.
    All,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            users: 10_000,
            groups: 40,
            rtt_ms: 100,
            concurrency: 8,
            budget_ms: 20_000,
            linked: Linked::Tenth,
            repeats: 1,
        }
    }
}

/// The generated tenant's shape, as the report shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Shape {
    pub entra_users: u32,
    pub incomplete: u32,
    pub disabled: u32,
    pub groups: u32,
    pub nested_groups: u32,
    pub mapped_groups: u32,
    pub roles_mapped: u32,
    pub zenqms_users: u32,
    pub zenqms_linked: u32,
    pub zenqms_by_email: u32,
    pub zenqms_only: u32,
    pub leavers: u32,
    /// Members of group 0, the one the group notification changes.
    pub big_group_members: u32,
    /// Pages of the mapped groups' transitive members at Graph's largest page (999 objects,
    /// nested groups included): what reading every mapped group once costs.
    pub member_pages: u32,
}

pub fn uid(i: u32) -> String {
    format!("{i:08x}-1d2c-4b5a-9e8f-{i:012x}")
}

pub fn gid(i: u32) -> String {
    format!("{i:08x}-6a6a-4c4c-8d8d-000000000000")
}

/// A fixed hash, to vary group sizes and offsets without randomness.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mail(i: u32) -> String {
    format!("user{i}@contoso.com")
}

const TITLES: [&str; 4] = [
    "QA Specialist",
    "Lab Technician",
    "Validation Engineer",
    "Document Controller",
];

fn is_incomplete(i: u32) -> bool {
    i % 33 == 7
}

fn is_disabled(i: u32) -> bool {
    i % 20 == 3
}

/// A user as Graph returns it with the sync's `$select`.
pub fn entra_user(i: u32) -> Value {
    let mut u = json!({
        "id": uid(i),
        "mail": mail(i),
        "givenName": format!("Given{i}"),
        "surname": format!("Sur{i}"),
        "jobTitle": TITLES[i as usize % TITLES.len()],
        "accountEnabled": !is_disabled(i),
        "userPrincipalName": mail(i),
    });
    if is_incomplete(i) {
        let (field, value) = match (i / 33) % 4 {
            0 => ("mail", Value::Null),
            1 => ("givenName", Value::Null),
            2 => ("surname", json!("")),
            _ => ("jobTitle", json!("   ")),
        };
        u[field] = value;
    }
    u
}

/// A user that is linked, complete and enabled (the user-notification phase changes it).
pub fn steady_user(n: u32) -> u32 {
    (1..=n)
        .find(|&i| i % 10 == 1 && !is_incomplete(i) && !is_disabled(i))
        .unwrap_or(1)
}

/// Group k's direct user members: group 0 has [`BIG_GROUP`] spread over the tenant; the others
/// 1-5 % of the tenant from a hashed offset (departments, sites, projects overlap).
pub fn group_users(k: u32, n: u32) -> Vec<u32> {
    if k == 0 {
        let size = n.min(BIG_GROUP);
        return (0..size)
            .map(|j| 1 + (j as u64 * n as u64 / size as u64) as u32)
            .collect();
    }
    let h = splitmix(u64::from(k));
    let size = (n as u64 * (1 + h % 5) / 100).max(5).min(n as u64) as u32;
    let start = ((h >> 8) % n as u64) as u32;
    (0..size).map(|j| 1 + (start + j) % n).collect()
}

/// Nesting: group k (k >= 2, k % 3 == 0) is a member of group k / 3, so chains like
/// 27 in 9 in 3 in 1 appear. Group 0 is neither nested nor nesting.
fn parent(k: u32) -> Option<u32> {
    (k >= 3 && k.is_multiple_of(3)).then_some(k / 3)
}

/// Distinct objects (users and nested groups) among group k's transitive members.
fn transitive_count(k: u32, g: u32, n: u32) -> u32 {
    let mut users = std::collections::BTreeSet::new();
    let mut groups = 0;
    let mut todo = vec![k];
    while let Some(x) = todo.pop() {
        users.extend(group_users(x, n));
        for c in (0..g).filter(|&c| parent(c) == Some(x)) {
            groups += 1;
            todo.push(c);
        }
    }
    users.len() as u32 + groups
}

/// Group k is mapped when k is even; mapped groups pair up onto one role each.
pub fn role_of(k: u32) -> Option<String> {
    k.is_multiple_of(2).then(|| format!("r-{}", k / 4))
}

/// The scenario (world only, no steps) and its shape.
pub fn build(p: &Params) -> (Scenario, Shape) {
    let n = p.users.max(1);
    let g = p.groups.max(1);
    let mut shape = Shape {
        entra_users: n,
        groups: g,
        ..Shape::default()
    };
    let users: Vec<Value> = (1..=n).map(entra_user).collect();
    shape.incomplete = (1..=n).filter(|&i| is_incomplete(i)).count() as u32;
    shape.disabled = (1..=n).filter(|&i| is_disabled(i)).count() as u32;

    let mut groups = Vec::new();
    let mut mappings: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for k in 0..g {
        let mut members: Vec<String> = group_users(k, n).into_iter().map(uid).collect();
        members.extend((0..g).filter(|&c| parent(c) == Some(k)).map(gid));
        if parent(k).is_some() {
            shape.nested_groups += 1;
        }
        if let Some(role) = role_of(k) {
            mappings.entry(role).or_default().push(gid(k));
            shape.mapped_groups += 1;
        }
        groups.push(json!({"id": gid(k), "displayName": format!("Group {k}"), "members": members}));
    }
    shape.big_group_members = n.min(BIG_GROUP);
    shape.member_pages = (0..g)
        .filter(|&k| role_of(k).is_some())
        .map(|k| transitive_count(k, g, n).div_ceil(999).max(1))
        .sum();
    shape.roles_mapped = mappings.len() as u32;
    let role_mappings: Vec<Value> = mappings
        .iter()
        .map(|(role, groups)| json!({"role": role, "groups": groups}))
        .collect();
    let mut roles: Vec<Value> = mappings
        .keys()
        .map(|r| json!({"id": r, "name": format!("Role {r}")}))
        .collect();
    roles.push(json!({"id": "r-admin", "name": "Administrator"}));
    roles.push(json!({"id": "r-viewer", "name": "Viewer"}));

    let zen_users = zenqms_users(n, p.linked, &mut shape);
    let scenario = json!({
        "description": format!("benchmark: {n} users, {g} groups"),
        "rtt_ms": p.rtt_ms,
        "concurrency": p.concurrency,
        "budget_ms": p.budget_ms,
        "instance": {
            "id": "bench-instance",
            "webhook_url": "https://hooks.platform.example/instances/bench-instance",
            "config": {
                "entra_tenant_id": TENANT,
                "entra_client_id": CLIENT,
                "entra_client_secret": SECRET,
                "zenqms_base_url": BASE,
                "zenqms_api_token": API_TOKEN,
                "role_mappings": role_mappings,
            }
        },
        "entra": {
            "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
            "users": users, "groups": groups,
        },
        "zenqms": {"api_token": API_TOKEN, "roles": roles, "users": zen_users},
    });
    let scenario = Scenario::from_json(&scenario.to_string()).expect("generated scenario parses");
    (scenario, shape)
}

/// A pre-existing ZenQMS user's id: `z-` and 16 hex digits of a hash of its position (the
/// simulator's own creates are `u-000001`, ... in creation order).
pub fn zenqms_id(seq: u32) -> String {
    format!("z-{:016x}", splitmix(u64::from(seq) ^ 0x5a5a))
}

fn zenqms_users(n: u32, linked: Linked, shape: &mut Shape) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seq = 0u32;
    // Ids from a hash: ZenQMS's id order (its search order) is unrelated to Graph's listing
    // order, as in a directory filled by hand or by another tool over the years.
    let mut push = |out: &mut Vec<Value>, mut u: Value| {
        seq += 1;
        u["id"] = json!(zenqms_id(seq));
        out.push(u);
    };
    for i in 1..=n {
        let e = entra_user(i);
        // ZenQMS requires every name field, whatever Entra lacks.
        let text = |k: &str| {
            let v = e[k].as_str().unwrap_or_default().trim();
            if v.is_empty() { "Unknown" } else { v }.to_string()
        };
        let base = json!({
            "email": mail(i), "first_name": text("givenName"), "last_name": text("surname"),
            "title": text("jobTitle"), "is_active": true, "roles": [],
        });
        let kind = match linked {
            Linked::Tenth => i % 10,
            Linked::All => 1,
        };
        match kind {
            1 => {
                let mut u = base;
                u["external_id"] = json!(uid(i));
                if i % 50 == 1 {
                    u["title"] = json!("Former Title");
                }
                if i % 30 == 1 {
                    u["roles"] = json!(["r-0", "r-viewer"]);
                }
                push(&mut out, u);
                shape.zenqms_linked += 1;
            }
            2 => {
                let mut u = base;
                u["first_name"] = json!(format!("Old{i}"));
                push(&mut out, u);
                shape.zenqms_by_email += 1;
            }
            _ => {}
        }
    }
    for j in 1..=n / 100 {
        push(
            &mut out,
            json!({"email": format!("contractor{j}@external.example"), "first_name": "Casey",
                   "last_name": format!("Contractor{j}"), "title": "Consultant", "roles": ["r-viewer"]}),
        );
        shape.zenqms_only += 1;
    }
    for j in 1..=n / 200 {
        push(
            &mut out,
            json!({"email": format!("gone{j}@contoso.com"), "first_name": "Gone",
                   "last_name": format!("Employee{j}"), "title": "Analyst",
                   "external_id": uid(n + j), "roles": ["r-0"]}),
        );
        shape.leavers += 1;
    }
    shape.zenqms_users = out.len() as u32;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_group_has_distinct_members() {
        let m = group_users(0, 10_000);
        assert_eq!(m.len(), 1_000);
        let set: std::collections::BTreeSet<_> = m.iter().collect();
        assert_eq!(set.len(), 1_000);
        assert!(m.iter().all(|&i| (1..=10_000).contains(&i)));
    }

    #[test]
    fn shape_counts_match_the_rules() {
        let p = Params {
            users: 300,
            groups: 10,
            ..Params::default()
        };
        let (s, shape) = build(&p);
        assert_eq!(s.entra.users.len(), 300);
        assert_eq!(s.entra.groups.len(), 10);
        assert_eq!(shape.mapped_groups, 5);
        assert_eq!(shape.zenqms_users as usize, s.zenqms.users.len());
        assert_eq!(shape.leavers, 1);
        assert!(entra_user(steady_user(300))["accountEnabled"] == json!(true));
    }
}
