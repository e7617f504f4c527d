//! The provisioning scope (`scope_groups`): when set, only transitive members of those Entra
//! groups are provisioned. A linked user outside it is deactivated like a leaver (link kept,
//! the guard counts it) and reactivated when next synced in scope ([`crate::domain::plan`]:
//! a change of the user, `provision-user`, a full sync; never by a group change alone, see
//! [`entering`]); an unlinked one is neither
//! created nor linked. A scope group that is gone is an error, never "nobody is in scope".

use std::collections::BTreeSet;

use crate::clients::zenqms::api::ZUser;
use crate::config::Config;
use crate::domain::plan;
use crate::domain::roles::Memberships;
use crate::failure::Failure;

/// The `reason` logged with the deactivation of a user who left the scope.
pub const LEFT: &str = "left the scope (not a transitive member of any scope group)";
/// The `reason` when both hold at once.
pub const LEFT_AND_DISABLED: &str =
    "left the scope (not a transitive member of any scope group) and disabled in Entra";

/// Whether a user whose groups (of those read: mapped and scope groups) are `groups` is in
/// scope. No scope set: everyone is.
pub fn contains(config: &Config, groups: Option<&BTreeSet<String>>) -> bool {
    !config.scoped() || groups.is_some_and(|g| config.scope_groups.iter().any(|s| g.contains(s)))
}

/// Fails when a scope group does not exist (`exists` is false for it): deciding scope without
/// it would deactivate all its members.
///
/// Errors: fatal (an admin must fix `scope_groups`), naming the groups.
pub fn check_exists(config: &Config, exists: impl Fn(&str) -> bool) -> Result<(), Failure> {
    let gone: Vec<&str> = config
        .scope_groups
        .iter()
        .map(String::as_str)
        .filter(|g| !exists(g))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    Err(Failure::fatal(format!(
        "scope_groups: group {} does not exist in the Entra tenant (Graph answers 404); nobody is deactivated or provisioned by scope until scope_groups is fixed",
        gone.join(", ")
    )))
}

/// Every Entra user id in scope: the union of the scope groups' transitive members.
///
/// Errors: a scope group missing from `members` (gone), as [`check_exists`].
pub fn members(config: &Config, members: &Memberships) -> Result<BTreeSet<String>, Failure> {
    check_exists(config, |g| members.contains_key(g))?;
    Ok(config
        .scope_groups
        .iter()
        .filter_map(|g| members.get(g))
        .flatten()
        .cloned()
        .collect())
}

/// After a scope group's membership changed, the Entra ids whose ZenQMS account the change
/// may change are [`leaving`] and [`entering`]: those who left (linked, active, not in scope:
/// deactivated) and those who entered (in scope, not linked, members of a changed group:
/// created or linked). Each is then synced as a notified user is, so the same rules and the
/// guard apply.
///
/// Nobody else: a scope change is not a change of every user in scope. An inactive linked
/// account of a user in scope is left alone, because an account an admin deactivated in
/// ZenQMS cannot be told from one the scope took out (no history is kept), and reactivating
/// it on an unrelated group change would undo the admin (a bug hunt: QA's suspension of a
/// user was switched back on when someone else left the scope group). A user back in scope
/// is reactivated when next synced: a change of that user in Entra, `provision-user`, or a
/// full sync. Unlinked users already in scope (skipped for a missing field, a conflict) are
/// not planned again by every scope change either (1,100 of them overflowed the queue).
///
/// Those entering: in scope, members of a changed group (`touched`: their transitive members
/// now), and not linked (`linked_ids`: the Entra ids the linked accounts carry).
pub fn entering(
    in_scope: &BTreeSet<String>,
    linked_ids: &BTreeSet<String>,
    touched: &BTreeSet<String>,
) -> Vec<String> {
    in_scope
        .intersection(touched)
        .filter(|id| !linked_ids.contains(*id))
        .cloned()
        .collect()
}

/// Those a scope change takes out (see [`entering`]): linked, active and no longer in scope
/// (each one a deactivation for the guard).
pub fn leaving(in_scope: &BTreeSet<String>, linked: &[ZUser]) -> BTreeSet<String> {
    linked
        .iter()
        .filter(|z| z.is_active)
        .filter_map(plan::link_of)
        .filter(|id| !in_scope.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(id: &str, ext: &str, active: bool) -> ZUser {
        ZUser {
            id: id.into(),
            email: format!("{id}@contoso.com"),
            first_name: "A".into(),
            last_name: "B".into(),
            title: "T".into(),
            is_active: active,
            external_id: Some(ext.into()),
            roles: Vec::new(),
        }
    }

    const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const B: &str = "aaaaaaaa-0000-0000-0000-000000000002";
    const C: &str = "aaaaaaaa-0000-0000-0000-000000000003";
    const D: &str = "aaaaaaaa-0000-0000-0000-000000000004";

    #[test]
    fn a_scope_change_names_who_left_and_who_entered_a_changed_group() {
        let in_scope: BTreeSet<String> = [A, B, D].iter().map(|s| s.to_string()).collect();
        let linked = vec![
            z("1", A, true),  // in, active: nothing to do
            z("2", B, false), // in, inactive: left alone (an admin's suspension, or a return)
            z("3", C, true),  // out, active: left
        ];
        // D entered by a changed group; B is in it too, but its account is not reactivated.
        let touched: BTreeSet<String> = [B, D].iter().map(|s| s.to_string()).collect();
        let linked_ids: BTreeSet<String> = [A, B, C].iter().map(|s| s.to_string()).collect();
        assert_eq!(entering(&in_scope, &linked_ids, &touched), vec![D]);
        // D in scope but in no changed group: not planned again.
        assert!(entering(&in_scope, &linked_ids, &BTreeSet::new()).is_empty());
        assert_eq!(leaving(&in_scope, &linked), [C.to_string()].into());
    }

    #[test]
    fn a_missing_scope_group_is_an_error_not_an_empty_scope() {
        let config = crate::config::test_support::with_keys(&[("scope_groups", A)]);
        let err = members(&config, &Memberships::new()).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains(A));
        let mut m = Memberships::new();
        m.insert(A.into(), [B.to_string()].into());
        assert_eq!(members(&config, &m).unwrap().len(), 1);
    }
}
