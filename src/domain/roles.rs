//! The role rule: for linked users only, a mapped role R is desired when the user is a transitive
//! member of at least one group mapped to R. Missing desired roles are added, mapped roles not
//! desired are removed, and roles no mapping names are never touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::clients::zenqms::api::ZUser;
use crate::config::RoleMapping;
use crate::domain::plan::{Directory, link_of};

/// Role additions and removals for one ZenQMS user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub zenqms_id: String,
    pub entra_id: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Transitive user members of each mapped group (group id -> Entra user ids, lowercase).
/// A group that could not be read (Graph answers 404: it is gone) has NO entry: missing is not
/// empty, and a role mapped to it is left as it is (see [`known`]).
pub type Memberships = BTreeMap<String, BTreeSet<String>>;

/// The mappings whose every group was read, i.e. is a key of `members`. A role mapped to a
/// group that is gone (or unread) is not managed until the mapping is fixed: its holders keep
/// it and nobody gains it, because its true membership is unknown.
pub fn known(mappings: &[RoleMapping], members: &Memberships) -> Vec<RoleMapping> {
    mappings
        .iter()
        .filter(|m| m.groups.iter().all(|g| members.contains_key(g)))
        .cloned()
        .collect()
}

/// `(group, role)` for every mapped group `exists` says is gone.
pub fn missing(mappings: &[RoleMapping], exists: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in mappings {
        for g in &m.groups {
            if !exists(g) {
                out.push((g.clone(), m.role.clone()));
            }
        }
    }
    out
}

/// The error every run logs while a mapped group is gone: it names the group and the role,
/// and says the role's holders are left as they are.
pub fn log_missing(log: &crate::log::Log, missing: &[(String, String)]) {
    for (group, role) in missing {
        log.error(
            "mapped group not found in Entra (Graph answers 404): its role is left as it is until role_mappings is fixed",
            &[
                ("group", group),
                ("role", role),
                ("fix", "map the role to an existing group (or remove the mapping) and redeploy"),
            ],
        );
    }
}

/// The mapped roles an Entra user should hold.
pub fn desired_roles(
    mappings: &[RoleMapping],
    members: &Memberships,
    entra_id: &str,
) -> BTreeSet<String> {
    mappings
        .iter()
        .filter(|m| {
            m.groups
                .iter()
                .any(|g| members.get(g).is_some_and(|s| s.contains(entra_id)))
        })
        .map(|m| m.role.clone())
        .collect()
}

/// Memberships turned around: for each member, which of the read groups hold it. Built once
/// per read of the members, so a user's desired roles are one look-up of the user instead of
/// one per mapped group (the full sync asks for every user of every page).
#[derive(Debug, Default, Clone)]
pub struct MemberIndex {
    /// The groups read, by position.
    groups: Vec<String>,
    /// Member id -> positions in `groups` of the groups that hold it.
    of: BTreeMap<String, Vec<u32>>,
}

impl MemberIndex {
    pub fn new(members: &Memberships) -> Self {
        let groups: Vec<String> = members.keys().cloned().collect();
        let mut of: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, set) in members.values().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            for member in set {
                of.entry(member.clone()).or_default().push(i);
            }
        }
        MemberIndex { groups, of }
    }

    /// The mapped roles `entra_id` should hold: what [`desired_roles`] answers for the
    /// memberships this index was built from.
    pub fn desired_roles(&self, mappings: &[RoleMapping], entra_id: &str) -> BTreeSet<String> {
        let Some(positions) = self.of.get(entra_id) else {
            return BTreeSet::new();
        };
        let held: BTreeSet<&str> = positions
            .iter()
            .filter_map(|i| self.groups.get(*i as usize))
            .map(String::as_str)
            .collect();
        mappings
            .iter()
            .filter(|m| m.groups.iter().any(|g| held.contains(g.as_str())))
            .map(|m| m.role.clone())
            .collect()
    }
}

/// The change one linked user needs, given the mapped roles it should hold.
pub fn change_for(
    user: &ZUser,
    entra_id: &str,
    mappings: &[RoleMapping],
    desired: &BTreeSet<String>,
) -> Option<RoleChange> {
    let held: BTreeSet<&String> = user.roles.iter().collect();
    let add: Vec<String> = desired
        .iter()
        .filter(|r| !held.contains(r))
        .cloned()
        .collect();
    let mapped: BTreeSet<&String> = mappings.iter().map(|m| &m.role).collect();
    let remove: Vec<String> = held
        .into_iter()
        .filter(|r| mapped.contains(r) && !desired.contains(*r))
        .cloned()
        .collect();
    (!add.is_empty() || !remove.is_empty()).then(|| RoleChange {
        zenqms_id: user.id.clone(),
        entra_id: entra_id.to_string(),
        add,
        remove,
    })
}

/// Takes changes from the end of `plan` (a plan reversed, so popped in directory order) until
/// they make `calls` role calls (a change is one add and/or one remove call), or the plan is
/// empty.
pub fn take_calls(plan: &mut Vec<RoleChange>, calls: usize) -> Vec<RoleChange> {
    let mut chunk = Vec::new();
    let mut taken = 0;
    while taken < calls
        && let Some(c) = plan.pop()
    {
        taken += usize::from(!c.add.is_empty()) + usize::from(!c.remove.is_empty());
        chunk.push(c);
    }
    chunk
}

/// Role changes for every linked user in the directory. An Entra id on two or more accounts
/// is a conflict (which account is the user's is not known): neither is granted a role (as in
/// a full sync, see [`duplicate_links`]), but both lose a mapped role the user no longer
/// holds, since taking access away is the safe side (a red team: skipping them whole left the
/// role on both for good).
pub fn plan_roles(
    mappings: &[RoleMapping],
    members: &Memberships,
    dir: &Directory,
) -> Vec<RoleChange> {
    let mappings = &known(mappings, members);
    if mappings.is_empty() {
        return Vec::new();
    }
    dir.linked()
        .filter_map(|z| {
            let entra_id = link_of(z)?;
            let desired = desired_roles(mappings, members, &entra_id);
            let mut change = change_for(z, &entra_id, mappings, &desired)?;
            if dir.linked_once(&entra_id).is_none() {
                change.add.clear();
            }
            (!change.remove.is_empty() || !change.add.is_empty()).then_some(change)
        })
        .collect()
}

/// The Entra ids linked from two or more accounts of the directory, each with those accounts'
/// ZenQMS ids (in ZenQMS id order): the conflicts [`plan_roles`] leaves alone.
pub fn duplicate_links(dir: &Directory) -> Vec<(String, Vec<String>)> {
    let ids: std::collections::BTreeSet<String> = dir.linked().filter_map(link_of).collect();
    ids.into_iter()
        .filter_map(|e| {
            let accounts = dir.linked_to(&e);
            (accounts.len() > 1)
                .then(|| (e.clone(), accounts.iter().map(|z| z.id.clone()).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const G1: &str = "00000000-0000-0000-0000-0000000000g1";
    const G2: &str = "00000000-0000-0000-0000-0000000000g2";

    fn user(id: &str, ext: Option<&str>, roles: &[&str]) -> ZUser {
        ZUser {
            id: id.into(),
            email: format!("{id}@x.com"),
            first_name: "A".into(),
            last_name: "B".into(),
            title: "T".into(),
            is_active: true,
            external_id: ext.map(str::to_string),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn maps() -> Vec<RoleMapping> {
        vec![
            RoleMapping {
                role: "qa".into(),
                groups: vec![G1.into(), G2.into()],
            },
            RoleMapping {
                role: "viewer".into(),
                groups: vec![G2.into()],
            },
        ]
    }

    fn members(g1: &[&str], g2: &[&str]) -> Memberships {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        BTreeMap::from([(G1.to_string(), set(g1)), (G2.to_string(), set(g2))])
    }

    #[test]
    fn role_kept_while_in_any_mapped_group() {
        let dir = Directory::new([user("u1", Some(U1), &["qa"])]);
        assert!(plan_roles(&maps(), &members(&[U1], &[]), &dir).is_empty());
        let c = plan_roles(&maps(), &members(&[], &[]), &dir);
        assert_eq!(c[0].remove, vec!["qa"]);
    }

    #[test]
    fn missing_roles_added_unmapped_untouched() {
        let dir = Directory::new([user("u1", Some(U1), &["admin"])]);
        let c = plan_roles(&maps(), &members(&[], &[U1]), &dir);
        assert_eq!(c[0].add, vec!["qa", "viewer"]);
        assert!(c[0].remove.is_empty());
    }

    #[test]
    fn unlinked_users_never_touched() {
        let dir = Directory::new([user("u1", None, &["qa"])]);
        assert!(plan_roles(&maps(), &members(&[], &[]), &dir).is_empty());
    }

    #[test]
    fn a_missing_group_is_not_an_empty_one() {
        // G2 is gone (no entry): "viewer" (only G2) and "qa" (G1 and G2) are both unknown.
        let dir = Directory::new([user("u1", Some(U1), &["qa", "viewer"])]);
        let only_g1 = BTreeMap::from([(G1.to_string(), BTreeSet::new())]);
        assert!(plan_roles(&maps(), &only_g1, &dir).is_empty());
        assert!(known(&maps(), &only_g1).is_empty());
        let gone = missing(&maps(), |g| g == G1);
        assert_eq!(
            gone,
            vec![
                (G2.to_string(), "qa".to_string()),
                (G2.to_string(), "viewer".to_string())
            ]
        );
        // Both read, both empty: the roles are removed.
        let c = plan_roles(&maps(), &members(&[], &[]), &dir);
        assert_eq!(c[0].remove, vec!["qa", "viewer"]);
    }

    #[test]
    fn no_mappings_no_changes() {
        let dir = Directory::new([user("u1", Some(U1), &["qa"])]);
        assert!(plan_roles(&[], &members(&[], &[]), &dir).is_empty());
    }
}
