use super::*;
use serde_json::json;

const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

fn entra(id: &str, mail: Option<&str>, enabled: bool) -> EntraUser {
    EntraUser {
        id: id.into(),
        upn: format!("{id}@contoso.com"),
        mail: mail.map(str::to_string),
        given_name: Some("Ada".into()),
        surname: Some("Lovelace".into()),
        job_title: Some("QA".into()),
        account_enabled: Some(enabled),
    }
}

fn z(id: &str, email: &str, ext: Option<&str>) -> ZUser {
    ZUser {
        id: id.into(),
        email: email.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        title: "QA".into(),
        is_active: true,
        external_id: ext.map(str::to_string),
        roles: vec![],
    }
}

fn fields(a: &Action) -> Vec<&'static str> {
    match a {
        Action::Write { changes, .. } => changes.iter().map(|c| c.field).collect(),
        _ => vec![],
    }
}

#[test]
fn new_complete_user_is_created_linked_and_active() {
    let a = plan_user(&entra(A, Some(" Ada@X.com "), true), &Directory::default());
    let Action::Create(n) = a else {
        panic!("{a:?}")
    };
    assert_eq!(n.email, "ada@x.com");
    assert_eq!(n.external_id.as_deref(), Some(A));
    assert!(n.is_active);
}

#[test]
fn external_id_wins_over_email() {
    let dir = Directory::new([z("u1", "old@x.com", Some(A)), z("u2", "ada@x.com", None)]);
    let a = plan_user(&entra(A, Some("ada@x.com"), true), &dir);
    // The email now belongs to u2: changing u1's email to it would collide.
    assert!(matches!(a, Action::Conflict { .. }), "{a:?}");
    let dir = Directory::new([z("u1", "old@x.com", Some(A))]);
    let a = plan_user(&entra(A, Some("new@x.com"), true), &dir);
    assert_eq!(fields(&a), vec!["email"]);
    assert!(matches!(
        a,
        Action::Write {
            kind: WriteKind::Update,
            ..
        }
    ));
}

#[test]
fn unlinked_email_match_is_linked_ignoring_case_and_spaces() {
    let dir = Directory::new([z("u1", "Ada@X.com", None)]);
    let a = plan_user(&entra(A, Some("  ADA@x.COM"), true), &dir);
    assert!(
        matches!(
            a,
            Action::Write {
                kind: WriteKind::Link,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(fields(&a), vec!["external_id"]);
}

#[test]
fn email_of_user_linked_elsewhere_is_a_conflict() {
    let dir = Directory::new([z("u1", "ada@x.com", Some(B))]);
    let a = plan_user(&entra(A, Some("ada@x.com"), true), &dir);
    assert!(matches!(a, Action::Conflict { .. }));
}

#[test]
fn several_email_matches_is_a_conflict() {
    let dir = Directory::new([z("u1", "ada@x.com", None), z("u2", "ADA@x.com", None)]);
    let a = plan_user(&entra(A, Some("ada@x.com"), true), &dir);
    let Action::Conflict { reason } = a else {
        panic!()
    };
    assert!(reason.contains("u1") && reason.contains("u2"));
}

#[test]
fn missing_fields_skip_with_names() {
    let mut u = entra(A, None, true);
    u.job_title = Some("  ".into());
    let a = plan_user(&u, &Directory::default());
    assert_eq!(
        a,
        Action::Skip {
            reason: "missing required fields: mail, jobTitle".into(),
            missing: vec!["mail", "jobTitle"]
        }
    );
}

#[test]
fn disabled_new_user_is_not_created() {
    let a = plan_user(&entra(A, Some("ada@x.com"), false), &Directory::default());
    assert!(matches!(a, Action::Skip { .. }));
}

#[test]
fn disabled_unlinked_match_is_linked_and_set_inactive() {
    let dir = Directory::new([z("u1", "ada@x.com", None)]);
    let a = plan_user(&entra(A, Some("ada@x.com"), false), &dir);
    assert!(matches!(
        a,
        Action::Write {
            kind: WriteKind::Link,
            ..
        }
    ));
    assert_eq!(fields(&a), vec!["external_id", "is_active"]);
}

#[test]
fn disabled_linked_user_missing_fields_is_still_deactivated() {
    let dir = Directory::new([z("u1", "ada@x.com", Some(A))]);
    let mut u = entra(A, Some("ada@x.com"), false);
    u.surname = None;
    let a = plan_user(&u, &dir);
    assert!(
        matches!(
            a,
            Action::Write {
                kind: WriteKind::Deactivate,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(fields(&a), vec!["is_active"]);
    // Already inactive: nothing to write, and the user is reported as skipped.
    let mut inactive = z("u1", "ada@x.com", Some(A));
    inactive.is_active = false;
    let a = plan_user(&u, &Directory::new([inactive]));
    assert!(matches!(a, Action::Skip { .. }));
}

#[test]
fn enabled_linked_user_missing_fields_is_skipped_not_touched() {
    let dir = Directory::new([z("u1", "ada@x.com", Some(A))]);
    let mut u = entra(A, Some("ada@x.com"), true);
    u.given_name = None;
    assert!(matches!(plan_user(&u, &dir), Action::Skip { .. }));
}

#[test]
fn unchanged_and_reactivation() {
    let dir = Directory::new([z("u1", "ada@x.com", Some(A))]);
    assert!(matches!(
        plan_user(&entra(A, Some("ada@x.com"), true), &dir),
        Action::Unchanged { .. }
    ));
    let mut inactive = z("u1", "ada@x.com", Some(A));
    inactive.is_active = false;
    let a = plan_user(
        &entra(A, Some("ada@x.com"), true),
        &Directory::new([inactive]),
    );
    assert!(matches!(
        a,
        Action::Write {
            kind: WriteKind::Update,
            ..
        }
    ));
    assert_eq!(fields(&a), vec!["is_active"]);
}

#[test]
fn missing_account_enabled_is_skipped() {
    let mut u = entra(A, Some("ada@x.com"), true);
    u.account_enabled = None;
    assert!(matches!(
        plan_user(&u, &Directory::default()),
        Action::Skip { .. }
    ));
}

#[test]
fn batch_does_not_let_two_users_claim_one_email() {
    let batch = [
        entra(A, Some("ada@x.com"), true),
        entra(B, Some("ADA@x.com"), true),
    ];
    let mut dir = Directory::default();
    let plans = plan_batch(&batch, &mut dir);
    assert!(dir.is_empty(), "planning leaves the directory as it was");
    assert!(matches!(plans[0].action, Action::Create(_)));
    assert!(matches!(plans[1].action, Action::Conflict { .. }));
}

#[test]
fn leavers_are_active_linked_users_missing_from_entra() {
    let mut gone_inactive = z(
        "u3",
        "c@x.com",
        Some("cccccccc-0000-0000-0000-000000000003"),
    );
    gone_inactive.is_active = false;
    let dir = Directory::new([
        z("u1", "a@x.com", Some(A)),
        z("u2", "b@x.com", Some(B)),
        gone_inactive,
        z("u4", "d@x.com", None),
        z("u5", "e@x.com", Some("legacy-123")),
    ]);
    let ids = BTreeSet::from([A.to_string()]);
    let l: Vec<_> = leavers(&dir, &ids).iter().map(|u| u.id.clone()).collect();
    assert_eq!(l, vec!["u2"]);
}

#[test]
fn patch_body_holds_only_changed_fields() {
    let dir = Directory::new([z("u1", "ada@x.com", None)]);
    let mut u = entra(A, Some("ada@x.com"), true);
    u.job_title = Some("Director".into());
    let Action::Write { changes, .. } = plan_user(&u, &dir) else {
        panic!()
    };
    assert_eq!(
        Value::Object(patch_fields(&changes)),
        json!({"external_id": A, "title": "Director"})
    );
    let after = apply_changes(dir.get("u1").unwrap(), &changes);
    assert_eq!(after.title, "Director");
    assert_eq!(after.external_id.as_deref(), Some(A));
}

#[test]
fn an_external_id_from_another_system_is_never_overwritten() {
    // Found by the planner fuzz target: a non-GUID external_id is someone else's link.
    let dir = Directory::new([z("u1", "ada@x.com", Some("legacy-42"))]);
    let a = plan_user(&entra(A, Some("ada@x.com"), false), &dir);
    assert!(matches!(a, Action::Conflict { .. }), "{a:?}");
}

#[test]
fn an_email_given_up_in_the_batch_is_taken_after_it() {
    // Found by the planner fuzz target: B moves from a@x.com to b@x.com while A, new, gets
    // a@x.com. In page order A comes first and finds the address taken; planned again with
    // the batch applied, A is created, after B's write (ZenQMS would refuse it before).
    let dir = Directory::new([z("u1", "a@x.com", Some(B))]);
    let batch = [
        entra(A, Some("a@x.com"), true),
        entra(B, Some("b@x.com"), true),
    ];
    let mut scratch = dir.clone();
    let plans = plan_batch(&batch, &mut scratch);
    assert_eq!(
        scratch.len(),
        dir.len(),
        "planning leaves the directory as it was"
    );
    assert!(matches!(plans[1].action, Action::Write { .. }) && !plans[1].after_batch);
    assert!(matches!(&plans[0].action, Action::Create(n) if n.email == "a@x.com"));
    assert!(plans[0].after_batch);
    let (now, later) = staged(plans);
    assert_eq!(now.len(), 1);
    assert_eq!(later, BTreeSet::from([A.to_string()]));
    // Without a move in the batch, a conflict stays a conflict.
    let plans = plan_batch(
        &batch[..1],
        &mut Directory::new([z("u1", "a@x.com", Some(B))]),
    );
    assert!(matches!(plans[0].action, Action::Conflict { .. }) && !plans[0].after_batch);
}
