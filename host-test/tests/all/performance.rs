//! Deterministic counts of the benchmark at a small size (no timed assertions: CPU and memory
//! figures vary by machine and are reported by `host-test bench`, see docs/performance.md).

use std::sync::OnceLock;

use host_test::bench::{self, BenchReport, Params};

const USERS: u32 = 300;
const GROUPS: u32 = 10;

/// One run shared by the tests (the benchmark runs every phase twice: wasm and native).
fn report() -> &'static BenchReport {
    static REPORT: OnceLock<BenchReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let p = Params {
            users: USERS,
            groups: GROUPS,
            ..Params::default()
        };
        bench::run(&p, "performance test", |_| {}).expect("the benchmark runs")
    })
}

#[test]
fn native_run_makes_the_same_requests_as_wasm() {
    for phase in &report().phases {
        assert!(
            phase.native_matches,
            "{}: native and wasm differ",
            phase.name
        );
    }
}

#[test]
fn resync_with_nothing_changed_writes_nothing() {
    let resync = &report().phases[1];
    assert_eq!(resync.zenqms_writes, 0, "{resync:#?}");
}

#[test]
fn one_user_notification_takes_at_most_four_rounds() {
    let user = &report().phases[2];
    assert_eq!(
        user.zenqms_writes, 1,
        "the changed title is written: {user:#?}"
    );
    assert!(user.rounds <= 4, "{} rounds", user.rounds);
}

#[test]
fn initial_sync_writes_what_the_tenant_needs() {
    let r = report();
    let t = &r.tenant;
    // Every complete, enabled Entra user is created or linked; nobody is created twice.
    let initial = &r.phases[0];
    assert!(initial.zenqms_writes > u64::from(t.entra_users - t.incomplete - t.disabled) / 2);
    assert!(
        r.zenqms_users_at_resync <= u64::from(t.zenqms_users + t.entra_users),
        "{r:#?}"
    );
    let floor = initial.floor_rounds.expect("a full sync has a floor");
    assert!(initial.rounds >= floor, "no run beats the floor");
}

/// A re-sync's reads follow the tenant, not the ZenQMS directory per call (issue 15): ZenQMS
/// is searched twice per user page (its users' ids, their addresses), a page of the linked
/// users' walk per 100 linked users (plus the page before, once per call that resumes the
/// walk), the role list and the guard's count; Graph is read a page per 100 users, a `$batch`
/// per 300 linked users (the walk) and, per call, the mapped groups' members (20 pages to a
/// `$batch`). A Graph `$batch` is the one request it is (Graph still charges its items one by
/// one: see the RU table of the bench).
#[test]
fn resync_reads_stay_within_the_formula() {
    let r = report();
    let resync = &r.phases[1];
    let n = u64::from(USERS);
    let m = r.zenqms_users_at_resync;
    let calls = resync.calls;
    let groups = u64::from(r.tenant.member_pages).div_ceil(20);
    let zenqms = 1 + 2 * n.div_ceil(100) + m.div_ceil(100) + 1 + calls;
    let graph = n.div_ceil(100) + m.div_ceil(300) + calls * (groups + 1);
    assert!(
        resync.zenqms_reads <= zenqms && resync.graph_reads <= graph,
        "re-sync reads: ZenQMS {} (formula {zenqms}), Graph {} (formula {graph}): {:#?}",
        resync.zenqms_reads,
        resync.graph_reads,
        resync.read_kinds
    );
    assert!(
        resync.graph_batched >= u64::from(r.tenant.mapped_groups),
        "every mapped group is read: {resync:#?}"
    );
}

/// The initial sync stays within its floor, max(ceil(N/100), ceil(W/C)), plus at most one
/// look-up round per user page and a few rounds per call of its own (token, mapped groups,
/// the leaver walk, the guard's count): at N = 300 those are most of the difference (the
/// bench's figures at 10,000 and 50,000 users are in docs/performance.md).
#[test]
fn initial_sync_rounds_stay_within_the_floor_plus_fixed_costs() {
    let initial = &report().phases[0];
    let floor = initial.floor_rounds.expect("a full sync has a floor");
    let bound = floor + u64::from(USERS).div_ceil(100) + 10 * initial.calls;
    assert!(
        initial.rounds <= bound,
        "{} rounds > floor {floor} + pages + 10 x {} calls = {bound}",
        initial.rounds,
        initial.calls
    );
}

/// Issue 15: no call's state grows past the platform's 64 KiB, in any phase, and a day of
/// quiet ticks does not grow it at all.
#[test]
fn state_stays_small_in_every_phase() {
    for phase in &report().phases {
        assert!(
            phase.max_state_bytes <= 64 * 1024,
            "{}: {} bytes",
            phase.name,
            phase.max_state_bytes
        );
    }
    let ticks = report()
        .phases
        .iter()
        .find(|p| p.name == bench::QUIET_TICKS)
        .expect("the quiet ticks phase");
    assert!(
        ticks.state_growth_bytes <= bench::TICK_STATE_SLACK,
        "{ticks:#?}"
    );
    assert_eq!(
        ticks.rounds,
        2 * bench::TICKS,
        "two rounds a tick: {ticks:#?}"
    );
}

#[test]
fn a_notification_burst_reads_graph_in_batches_and_replies_at_once() {
    let burst = report()
        .phases
        .iter()
        .find(|p| p.name == "notification burst")
        .expect("the burst phase");
    // 300 user notifications and a group notification.
    assert!(
        burst.graph_reads <= u64::from(USERS).div_ceil(20),
        "{} Graph read requests: {burst:#?}",
        burst.graph_reads
    );
    assert_eq!(
        (burst.max_reply_ms, burst.max_requests_before_reply),
        (0, 0)
    );
    assert!(burst.zenqms_writes >= u64::from(USERS) / 2, "{burst:#?}");
}

/// Issue 15's round targets where they are deterministic counts (the bench's own rows are at
/// 10,000 users and more, docs/performance.md): a 2,000-user initial sync within 1.1 x its
/// floor with 20 s calls (399 rounds against a floor of 365 when measured), and within 1.45 x
/// with 2 s calls (506: 1.39 x, the next pages' look-ups sent in a call's first round from
/// the checkpoint's keys). The component before those keys (16960ac, run with
/// `HOST_TEST_COMPONENT`) took 400 and 549 (1.50 x); the one before the reads ahead and the
/// plan-sized slices (8d7bc2b) 431 (1.18 x) and 850 (2.33 x).
#[test]
fn a_2000_user_initial_sync_stays_near_its_floor_at_20_s_and_at_2_s_calls() {
    for (budget_ms, bound) in [(20_000u32, 1.1), (2_000, 1.45)] {
        let p = Params {
            users: 2_000,
            budget_ms,
            ..Params::default()
        };
        let r = bench::run(&p, "performance test", |_| {}).expect("the benchmark runs");
        let initial = &r.phases[0];
        let floor = initial.floor_rounds.expect("a full sync has a floor");
        assert!(
            initial.rounds as f64 <= bound * floor as f64,
            "{budget_ms} ms calls: {} rounds > {bound} x floor {floor}",
            initial.rounds
        );
    }
}

/// The second walk's writing pass (a full sync with more deactivations than the state lists,
/// `Phase::Deactivations`) reads the linked users as the counting pass does while the writes
/// left outnumber what a call can send: it read them a search page a step before (a user
/// found may need a write), so a run whose leavers sort after thousands of linked users
/// crawled (20,000 users, 2 s calls: 14 calls of 17 rounds, no write; the initial sync 4,448
/// rounds against 4,248 now). Here: 1,500 users, 1 s calls, the phase where every user is
/// linked and 5 % are disabled: 374 rounds before, 357 now.
#[test]
fn the_deactivation_walk_reads_whole_steps_while_its_writes_outnumber_a_call() {
    let p = Params {
        users: 1_500,
        budget_ms: 1_000,
        ..Params::default()
    };
    let r = bench::run(&p, "performance test", |_| {}).expect("the benchmark runs");
    let linked = r
        .phases
        .iter()
        .find(|ph| ph.name.starts_with("full sync, tenant already linked"))
        .expect("the phase runs");
    assert!(
        linked.rounds <= 360,
        "{} rounds (374 before)",
        linked.rounds
    );
}
