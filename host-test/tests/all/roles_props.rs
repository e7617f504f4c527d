//! Property test of the member index the full sync asks a user's roles of
//! (`entra_zenqms::domain::roles::MemberIndex`): for any memberships (groups with any members,
//! empty groups, users in several groups, mappings naming unread groups) it answers exactly
//! what the plain rule (`roles::desired_roles`, one look-up per mapped group) answers.

use std::collections::{BTreeMap, BTreeSet};

use entra_zenqms::config::RoleMapping;
use entra_zenqms::domain::roles::{self, MemberIndex, Memberships};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = String> {
    "[a-d]{1,2}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_member_index_answers_as_the_plain_rule(
        groups in prop::collection::btree_map(id(), prop::collection::btree_set(id(), 0..6), 0..5),
        mappings in prop::collection::vec((id(), prop::collection::vec(id(), 0..4)), 0..5),
        users in prop::collection::vec(id(), 1..6),
    ) {
        let members: Memberships = groups
            .into_iter()
            .map(|(g, m)| (format!("g{g}"), m.into_iter().map(|u| format!("u{u}")).collect::<BTreeSet<_>>()))
            .collect::<BTreeMap<_, _>>();
        let mappings: Vec<RoleMapping> = mappings
            .into_iter()
            .map(|(role, groups)| RoleMapping {
                role: format!("r{role}"),
                groups: groups.into_iter().map(|g| format!("g{g}")).collect(),
            })
            .collect();
        let index = MemberIndex::new(&members);
        for u in users.iter().map(|u| format!("u{u}")) {
            prop_assert_eq!(
                index.desired_roles(&mappings, &u),
                roles::desired_roles(&mappings, &members, &u),
                "user {}", u
            );
        }
    }
}
