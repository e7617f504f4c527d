use super::*;
use serde_json::json;

const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

/// The trust a batch earns when x.com is verified and each user alone holds its address.
fn trusted(users: &[EntraUser]) -> Trust {
    let mut t = Trust::default();
    t.domains.learned.insert("x.com".into());
    for u in users {
        if let Some(a) = u.match_address() {
            t.holders
                .entry(a.as_str().to_string())
                .or_default()
                .insert(u.id.clone());
        }
    }
    t
}

fn plan_user(u: &EntraUser, dir: &Directory) -> Action {
    super::plan_user(u, dir, &trusted(std::slice::from_ref(u)))
}

fn plan_batch(users: &[EntraUser], dir: &mut Directory) -> Vec<Planned> {
    super::plan_batch(users, dir, &trusted(users))
}

fn entra(id: &str, mail: Option<&str>, enabled: bool) -> EntraUser {
    EntraUser {
        id: id.into(),
        upn: format!("{id}@contoso.com"),
        mail: mail.map(str::to_string),
        given_name: Some("Ada".into()),
        surname: Some("Lovelace".into()),
        job_title: Some("QA".into()),
        account_enabled: Some(enabled),
        user_type: None,
        in_scope: true,
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
    // The stored address differs (case): the normalised one is written with the link.
    assert_eq!(fields(&a), vec!["external_id", "email"]);
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

#[test]
fn an_email_given_up_earlier_in_the_batch_is_taken_after_it_too() {
    // A bug hunt: B (earlier in the batch) moves from a@x.com to b@x.com, then A, new, gets
    // a@x.com. A was planned free of the address because B's move was assumed made, and its
    // create went out even when the move failed (only ZenQMS's own uniqueness check refused
    // it). Now A waits for B's answer, as when it comes first.
    let dir = Directory::new([z("u1", "a@x.com", Some(B))]);
    let batch = [
        entra(B, Some("b@x.com"), true),
        entra(A, Some("A@X.com "), true),
    ];
    let plans = plan_batch(&batch, &mut dir.clone());
    assert!(matches!(plans[0].action, Action::Write { .. }) && !plans[0].after_batch);
    assert!(matches!(&plans[1].action, Action::Create(_)) && plans[1].after_batch);
    let (now, later) = staged(plans);
    assert_eq!(now.len(), 1);
    assert_eq!(later, BTreeSet::from([A.to_string()]));
    // Had the move failed, A planned again against ZenQMS as it answered is a conflict.
    let again = super::plan_later(&batch, &later, &mut dir.clone(), &trusted(&batch));
    assert!(
        matches!(again[0].action, Action::Conflict { .. }),
        "{again:?}"
    );
}

#[test]
fn a_chain_of_addresses_is_planned_whatever_the_order_of_its_users() {
    // Z moves c -> d, Y moves b -> c, X (new) takes b: planned in every order, each taker waits
    // for the move before it, and writing each round's plans after the last converges.
    const C: &str = "cccccccc-0000-0000-0000-000000000003";
    let dir = Directory::new([z("uy", "b@x.com", Some(B)), z("uz", "c@x.com", Some(C))]);
    let x = entra(A, Some("b@x.com"), true);
    let y = entra(B, Some("c@x.com"), true);
    let zz = entra(C, Some("d@x.com"), true);
    for batch in [
        [x.clone(), y.clone(), zz.clone()],
        [zz.clone(), y.clone(), x.clone()],
        [y.clone(), x.clone(), zz.clone()],
        [x.clone(), zz.clone(), y.clone()],
    ] {
        let mut written = dir.clone();
        let (mut now, mut later) = staged(plan_batch(&batch, &mut written.clone()));
        let mut rounds = 0;
        loop {
            assert!(
                now.iter()
                    .all(|p| !matches!(p.action, Action::Conflict { .. })),
                "{now:?}"
            );
            for p in &now {
                apply_planned(0, &p.action, &mut written, &mut Vec::new());
            }
            if later.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= 3, "{later:?}");
            (now, later) = staged(super::plan_later(
                &batch,
                &later,
                &mut written,
                &trusted(&batch),
            ));
        }
        for (email, who) in [("b@x.com", A), ("c@x.com", B), ("d@x.com", C)] {
            let holders = written.by_email(email);
            assert!(
                holders.len() == 1 && holders[0].external_id.as_deref() == Some(who),
                "{email}: {holders:?}"
            );
        }
    }
}

// ---- The email-linking trust rule (issue 11 section 1; issue 12 section 5) ----

const M: &str = "cccccccc-0000-0000-0000-000000000003";

fn plan(u: &EntraUser, dir: &Directory) -> Action {
    plan_user(u, dir)
}

use super as plan;

fn is_link(a: &Action) -> bool {
    matches!(
        a,
        Action::Write {
            kind: WriteKind::Link,
            ..
        }
    )
}

fn reason(a: &Action) -> String {
    match a {
        Action::Skip { reason, .. } | Action::Conflict { reason } => reason.clone(),
        other => panic!("expected a skip or conflict, got {other:?}"),
    }
}

#[test]
fn an_incomplete_disabled_object_never_links_or_deactivates_an_account() {
    let dir = Directory::new([z("u-ceo", "ceo@x.com", None)]);
    let mut stub = entra(M, Some("ceo@x.com"), false);
    stub.given_name = None;
    stub.surname = None;
    stub.job_title = None;
    let a = plan(&stub, &dir);
    assert!(matches!(a, Action::Skip { .. }), "{a:?}");
}

#[test]
fn kelvin_sign_never_folds_onto_an_ascii_k() {
    let dir = Directory::new([z("u-k", "k.admin@x.com", None)]);
    let a = plan(&entra(M, Some("\u{212A}.admin@x.com"), true), &dir);
    assert!(matches!(a, Action::Skip { .. }), "{a:?}");
    assert!(reason(&a).contains("U+212A"), "{a:?}");
    // And the other way round: a ZenQMS address with the sign is not an ASCII k.
    let dir = Directory::new([z("u-k", "\u{212A}.admin@x.com", None)]);
    let a = plan(&entra(M, Some("k.admin@x.com"), true), &dir);
    assert!(!is_link(&a), "{a:?}");
}

#[test]
fn look_alike_and_invisible_addresses_are_neither_matched_nor_created() {
    for (mail, cp) in [
        ("\u{430}dmin@x.com", "U+0430"),
        ("ad\u{200B}min@x.com", "U+200B"),
        ("admin@x.com\u{202E}", "U+202E"),
        ("admin@x.com\u{3000}", "U+3000"),
    ] {
        let a = plan(&entra(M, Some(mail), true), &Directory::default());
        assert!(matches!(a, Action::Skip { .. }), "{mail:?}: {a:?}");
        assert!(reason(&a).contains(cp), "{mail:?}: {a:?}");
    }
}

#[test]
fn a_linked_user_with_a_refused_address_is_skipped_but_a_leaver_still_deactivated() {
    let dir = Directory::new([z("u1", "ada@x.com", Some(A))]);
    let a = plan(&entra(A, Some("ad\u{200B}a@x.com"), true), &dir);
    assert!(matches!(a, Action::Skip { .. }), "{a:?}");
    let a = plan(&entra(A, Some("ad\u{200B}a@x.com"), false), &dir);
    assert_eq!(fields(&a), vec!["is_active"], "{a:?}");
}

#[test]
fn linking_writes_the_normalised_address() {
    let dir = Directory::new([z("u-40", " Ada.Lovelace@X.com ", None)]);
    let a = plan(&entra(A, Some("ada.lovelace@x.com"), true), &dir);
    assert!(is_link(&a), "{a:?}");
    assert_eq!(fields(&a), vec!["external_id", "email"], "{a:?}");
}

#[test]
fn a_linked_users_stored_address_is_rewritten_when_it_differs_at_all() {
    let dir = Directory::new([z("u1", "Ada@X.com", Some(A))]);
    let a = plan(&entra(A, Some("ada@x.com"), true), &dir);
    assert_eq!(fields(&a), vec!["email"], "{a:?}");
}

#[test]
fn an_address_outside_the_verified_domains_never_links() {
    let dir = Directory::new([z("u-admin", "qms.admin@vendor.example", None)]);
    let mallory = entra(M, Some(" QMS.Admin@Vendor.example "), true);
    let mut trust = trusted(std::slice::from_ref(&mallory));
    let a = super::plan_user(&mallory, &dir, &trust);
    assert!(matches!(a, Action::Conflict { .. }), "{a:?}");
    assert!(reason(&a).contains("vendor.example"), "{a:?}");
    assert!(
        plan::link_candidates(std::slice::from_ref(&mallory), &dir, &trust.domains).is_empty(),
        "no Graph question for an address that cannot link"
    );
    // An admin who lists the domain lets it link (configured replaces learned).
    trust.domains.configured = Some(BTreeSet::from(["vendor.example".to_string()]));
    assert!(is_link(&super::plan_user(&mallory, &dir, &trust)));
    trust.domains.learned.insert("vendor.example".into());
    trust.domains.configured = Some(BTreeSet::from(["x.com".to_string()]));
    assert!(!is_link(&super::plan_user(&mallory, &dir, &trust)));
}

#[test]
fn two_entra_users_with_one_address_link_neither_and_both_are_logged() {
    let dir = Directory::new([z("u1", "ada@x.com", None)]);
    let a = entra(A, Some("ada@x.com"), true);
    let mut trust = trusted(std::slice::from_ref(&a));
    trust
        .holders
        .get_mut("ada@x.com")
        .unwrap()
        .insert(B.to_string());
    let plans = super::plan_batch(std::slice::from_ref(&a), &mut dir.clone(), &trust);
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert!(
        matches!(plans[0].action, Action::Conflict { .. }),
        "{plans:?}"
    );
    assert!(reason(&plans[0].action).contains(B));
    assert_eq!(plans[1].entra_id, B);
    assert!(reason(&plans[1].action).contains(A));
    // Both in the batch: each gets its own conflict, no extra line.
    let b = entra(B, Some("ADA@x.com"), true);
    let plans = super::plan_batch(&[a.clone(), b], &mut dir.clone(), &trust);
    assert_eq!(plans.len(), 2);
    assert!(
        plans
            .iter()
            .all(|p| matches!(p.action, Action::Conflict { .. }))
    );
    // Graph not asked (or the address missing from its answers): no link either.
    let unasked = Trust {
        holders: Default::default(),
        ..trust
    };
    assert!(!is_link(&super::plan_user(&a, &dir, &unasked)));
}

#[test]
fn candidates_are_unlinked_complete_verified_single_matches() {
    let dir = Directory::new([
        z("u1", "ada@x.com", None),
        z("u2", "bob@x.com", Some(B)),
        z("u3", "cy@x.com", Some("legacy-7")),
        z("u4", "dee@y.com", None),
    ]);
    let mut incomplete = entra(M, Some("ada@x.com"), true);
    incomplete.surname = None;
    let users = [
        entra(A, Some("Ada@X.com"), true),
        entra(
            "dddddddd-0000-0000-0000-000000000004",
            Some("bob@x.com"),
            true,
        ),
        entra(
            "eeeeeeee-0000-0000-0000-000000000005",
            Some("cy@x.com"),
            true,
        ),
        entra(
            "ffffffff-0000-0000-0000-000000000006",
            Some("dee@y.com"),
            true,
        ),
        entra(
            "abababab-0000-0000-0000-000000000007",
            Some("new@x.com"),
            true,
        ),
        incomplete,
    ];
    let got: Vec<String> = plan::link_candidates(&users, &dir, &trusted(&[]).domains)
        .into_iter()
        .map(|a| a.as_str().to_string())
        .collect();
    assert_eq!(got, vec!["ada@x.com"]);
}

#[test]
fn a_rename_onto_a_colleagues_address_is_a_conflict() {
    let dir = Directory::new([
        z("u1", "ada@x.com", Some(A)),
        z("u2", "Bob@X.com ", Some(B)),
    ]);
    let a = plan_user(&entra(A, Some("bob@x.com"), true), &dir);
    assert!(matches!(a, Action::Conflict { .. }), "{a:?}");
    assert!(reason(&a).contains("u2"));
}

#[test]
fn a_guest_with_an_external_address_proves_no_domain() {
    let mut guest = entra(M, Some("ext@partner.example"), true);
    guest.upn = "ext_partner.example#EXT#@x.onmicrosoft.com".into();
    assert_eq!(guest.member_domain(), None);
    guest.upn = "ext@partner.example".into();
    guest.user_type = Some("Guest".into());
    assert_eq!(guest.member_domain(), None);
    guest.user_type = Some("Member".into());
    assert_eq!(guest.member_domain().as_deref(), Some("partner.example"));
}

#[test]
fn a_disabled_user_whose_new_email_is_taken_is_still_deactivated() {
    // Enabled, the taken address is a conflict (nothing written); disabled, the leaver must
    // not stay active because of it: deactivated, its address left as it is.
    let dir = Directory::new([z("u1", "old@x.com", Some(A)), z("u2", "ada@x.com", None)]);
    let a = plan_user(&entra(A, Some("ada@x.com"), false), &dir);
    let Action::Write { kind, changes, .. } = &a else {
        panic!("{a:?}")
    };
    assert_eq!(*kind, WriteKind::Deactivate);
    assert!(changes.iter().any(|c| c.field == "is_active"));
    assert!(!changes.iter().any(|c| c.field == "email"), "{changes:?}");
}

/// Two accounts carrying one link: an enabled user's is a conflict (nothing written), a
/// disabled user's are both deactivated, and removing one from the directory keeps the other.
#[test]
fn two_accounts_carrying_one_link_are_a_conflict_and_both_leave_with_the_user() {
    let mut dir = Directory::new([z("z1", "ada@x.com", Some(A)), z("z2", "old@x.com", Some(A))]);
    assert_eq!(dir.linked_to(A).len(), 2);
    assert!(dir.linked_once(A).is_none());
    let enabled = entra(A, Some("ada@x.com"), true);
    assert!(
        matches!(plan_user(&enabled, &dir), Action::Conflict { reason } if reason.contains("z1, z2"))
    );
    let disabled = entra(A, Some("ada@x.com"), false);
    let plans = plan_batch(std::slice::from_ref(&disabled), &mut dir);
    let deactivated: Vec<&str> = plans
        .iter()
        .filter_map(|p| match &p.action {
            Action::Write {
                zenqms_id, changes, ..
            } if changes.iter().any(|c| c.field == "is_active") => Some(zenqms_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deactivated, ["z1", "z2"]);
    dir.remove("z1");
    assert_eq!(dir.linked_once(A).map(|z| z.id.as_str()), Some("z2"));
}
