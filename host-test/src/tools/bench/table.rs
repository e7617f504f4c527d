//! The benchmark's printed account and the issue-6 target checks.

use std::fmt::Write as _;

use super::{BenchReport, Check, PhaseResult};
use crate::sim::world::Target;

const MIB: f64 = 1024.0 * 1024.0;

fn n(r: &PhaseResult, t: Target) -> u64 {
    r.by_target.get(&t).copied().unwrap_or(0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB
}

/// One line per phase, printed as the phase ends.
pub fn phase_line(r: &PhaseResult) -> String {
    // The floor, memory and state too: a long run (N = 100,000) stopped after its first phases
    // still reports what its targets need.
    let floor = r.floor_rounds.map_or(String::new(), |f| {
        format!(
            ", {} ZenQMS writes, floor {f} rounds ({:.3} x)",
            r.zenqms_writes,
            r.rounds as f64 / f.max(1) as f64
        )
    });
    format!(
        "  {:<36} {} calls, {} requests, {} rounds{floor}, {:.1} s simulated, wasm {:.3} s / native {:.3} s, \
         peak guest memory {:.1} MiB, largest state {} bytes, {} Graph RU",
        r.name,
        r.calls,
        r.requests,
        r.rounds,
        r.simulated_ms as f64 / 1000.0,
        r.wasm_cpu_s,
        r.native_cpu_s,
        r.peak_memory_bytes as f64 / (1024.0 * 1024.0),
        r.max_state_bytes,
        r.graph_ru
    )
}

/// The full table, the Graph cost and the target checks.
pub fn render(report: &BenchReport) -> String {
    let p = &report.params;
    let t = &report.tenant;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTenant: {} Entra users ({} incomplete, {} disabled), {} groups ({} nested, {} mapped to {} roles); \
         ZenQMS {} users ({} linked, {} by email, {} ZenQMS-only, {} leavers)",
        t.entra_users,
        t.incomplete,
        t.disabled,
        t.groups,
        t.nested_groups,
        t.mapped_groups,
        t.roles_mapped,
        t.zenqms_users,
        t.zenqms_linked,
        t.zenqms_by_email,
        t.zenqms_only,
        t.leavers
    );
    let _ = writeln!(
        out,
        "Platform: rtt {} ms, concurrency {}, budget {} ms per call\n",
        p.rtt_ms, p.concurrency, p.budget_ms
    );
    let header = [
        "phase",
        "calls",
        "login",
        "graph",
        "zenqms",
        "reads",
        "writes",
        "rounds",
        "floor",
        "sim s",
        "wasm s",
        "native s",
        "svc w/n s",
        "ratio",
        "peak MiB",
        "state KiB",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in &report.phases {
        rows.push(vec![
            r.name.clone(),
            r.calls.to_string(),
            n(r, Target::Login).to_string(),
            n(r, Target::Graph).to_string(),
            n(r, Target::Zenqms).to_string(),
            r.reads.to_string(),
            r.zenqms_writes.to_string(),
            r.rounds.to_string(),
            r.floor_rounds.map_or("-".into(), |f| f.to_string()),
            format!("{:.1}", r.simulated_ms as f64 / 1000.0),
            format!("{:.3}", r.wasm_component_s),
            format!("{:.3}", r.native_component_s),
            format!("{:.3}/{:.3}", r.wasm_service_cpu_s, r.service_cpu_s),
            // Below a few ms the subtraction of the services' time is noise, not a ratio.
            if r.native_component_s < 0.005 {
                "-".into()
            } else {
                format!("{:.2}", r.cpu_ratio)
            },
            format!("{:.1}", mib(r.peak_memory_bytes)),
            format!("{:.1}", r.max_state_bytes as f64 / 1024.0),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if c == 0 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  "));
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
    let _ = writeln!(
        out,
        "wasm s / native s: the component's own CPU time (each run's real time minus its time in \
         the host's send/send-all, \"svc w/n s\", measured in each run); ratio = wasm / native."
    );
    if report.phases.iter().any(|r| !r.native_matches) {
        let _ = writeln!(
            out,
            "WARNING: the native run's requests or rounds differ from the wasm run's."
        );
    }
    let _ = writeln!(
        out,
        "\nComponent: {:.0} KiB; instantiate (pre-instantiated) median {:.0} us, min {:.0} us",
        report.component_bytes as f64 / 1024.0,
        report.instantiate_us,
        report.instantiate_min_us
    );
    let _ = writeln!(out, "\nWebhook calls (the reply path alone):");
    for r in report.phases.iter().filter(|r| r.webhook_cpu_s > 0.0) {
        let _ = writeln!(
            out,
            "  {:<36} largest reply {} ms, {} requests before a reply, wasm CPU {:.2} ms",
            r.name,
            r.max_reply_ms,
            r.max_requests_before_reply,
            r.webhook_cpu_s * 1e3
        );
    }
    let _ = writeln!(
        out,
        "  a 1 MiB body of notifications: wasm CPU {:.2} ms (median of 11)",
        report.webhook_1mib_ms
    );
    let c = &report.initial_sync_graph_cost;
    let _ = writeln!(
        out,
        "\nGraph directory budget, initial sync (tenant size {}):",
        c.tenant_size
    );
    for l in &c.lines {
        let _ = writeln!(
            out,
            "  {:<40} {:>6} x {} RU = {:>7} RU",
            l.request, l.count, l.ru_each, l.ru
        );
    }
    let _ = writeln!(
        out,
        "  total {} RU; peak {} RU in any 10 s (quota {} RU / 10 s); the quota alone allows it in {:.1} s",
        c.total_ru, c.peak_ru_per_10s, c.quota_per_10s, c.min_seconds_at_quota
    );
    if let Some(resync) = report.phases.get(1) {
        let kinds: Vec<String> = resync
            .read_kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "\nRe-sync reads by request: {}; Graph requests inside those batches: {}",
            kinds.join(", "),
            resync.graph_batched
        );
    }
    let _ = writeln!(out, "\nTargets:");
    for ch in &report.checks {
        let _ = writeln!(
            out,
            "  [{}] {:<48} target {:<28} measured {}",
            if ch.pass { "PASS" } else { "MISS" },
            ch.name,
            ch.target,
            ch.measured
        );
    }
    out
}

fn check(name: &str, target: String, measured: String, pass: bool) -> Check {
    Check {
        name: name.into(),
        target,
        measured,
        pass,
    }
}

/// The targets, each with the measured value. Targets stated for a given size
/// (N = 10,000; 50,000 users) are checked at whatever size ran; the name says which it is for.
pub fn checks(report: &BenchReport) -> Vec<Check> {
    let p = &report.params;
    let ph = &report.phases;
    let mut out = Vec::new();
    let users = u64::from(p.users);
    let initial = &ph[0];
    // Issue 15: 1.1 x at calls of 20 s (N = 10,000, 50,000, 100,000; C = 8 and 32), 1.3 x at
    // 2 s calls (N = 20,000).
    let allowed = if p.budget_ms >= 20_000 { 1.1 } else { 1.3 };
    if let Some(floor) = initial.floor_rounds {
        let ratio = initial.rounds as f64 / floor.max(1) as f64;
        out.push(check(
            &format!(
                "initial sync rounds (N={}, C={}, {} s calls)",
                p.users,
                p.concurrency,
                f64::from(p.budget_ms) / 1000.0
            ),
            format!("<= {allowed} x floor = {:.0}", allowed * floor as f64),
            format!("{} rounds = {ratio:.2} x floor {floor}", initial.rounds),
            ratio <= allowed,
        ));
    }
    let resync = &ph[1];
    out.push(check(
        "re-sync, nothing changed: ZenQMS writes",
        "0".into(),
        resync.zenqms_writes.to_string(),
        resync.zenqms_writes == 0,
    ));
    let m = report.zenqms_users_at_resync;
    let pages = u64::from(report.tenant.member_pages);
    for r in ph
        .iter()
        .filter(|r| r.name == resync.name || r.name == super::ALREADY_LINKED)
    {
        // M: the directory the phase starts from (the already-linked tenant holds N users).
        let m = if r.name == resync.name { m } else { users };
        out.push(check(
            &format!(
                "{}: reads, issue 15's read-once target (N={})",
                r.name, p.users
            ),
            format!(
                "ZenQMS <= ceil(M/100) = {}, Graph <= ceil(N/100) + member pages = {}",
                m.div_ceil(100),
                users.div_ceil(100) + pages
            ),
            format!(
                "ZenQMS {}, Graph {} (M={m}, member pages {pages}, {} writes)",
                r.zenqms_reads, r.graph_reads, r.zenqms_writes
            ),
            r.zenqms_reads <= m.div_ceil(100) && r.graph_reads <= users.div_ceil(100) + pages,
        ));
    }
    let state = ph.iter().map(|r| r.max_state_bytes).max().unwrap_or(0);
    let at = ph
        .iter()
        .max_by_key(|r| r.max_state_bytes)
        .map_or("", |r| r.name.as_str());
    out.push(check(
        &format!("state after every call, every phase (N={})", p.users),
        "<= 64 KiB".into(),
        format!("{:.1} KiB ({at})", state as f64 / 1024.0),
        state <= 64 * 1024,
    ));
    if let Some(t) = ph.iter().find(|r| r.name == super::QUIET_TICKS) {
        let per_tick = t.rounds as f64 / super::TICKS as f64;
        let cpu_ms = t.wasm_component_s * 1e3 / super::TICKS as f64;
        out.push(check(
            "quiet tick: rounds, wasm CPU, state growth over 24",
            // Without the delta links and the revision, which every tick rewrites.
            "2 rounds, <= 2 ms, 0 bytes of growth".into(),
            format!(
                "{per_tick:.1} rounds, {cpu_ms:.2} ms, {} bytes",
                t.state_growth_bytes
            ),
            per_tick <= 2.0 && cpu_ms <= 2.0 && t.state_growth_bytes <= super::TICK_STATE_SLACK,
        ));
    }
    let user = &ph[2];
    out.push(check(
        "one user notification: rounds",
        "<= 4".into(),
        user.rounds.to_string(),
        user.rounds <= 4,
    ));
    if let Some(burst) = ph.iter().find(|r| r.name == "notification burst") {
        let n = u64::from(p.users.min(super::BURST));
        let graph_reads = burst.graph_reads;
        out.push(check(
            &format!("notification burst ({n} users + a group): Graph read requests"),
            format!("<= ceil({n}/20) = {}", n.div_ceil(20)),
            format!("{graph_reads} ({} rounds)", burst.rounds),
            graph_reads <= n.div_ceil(20),
        ));
    }
    let reply = ph.iter().map(|r| r.max_reply_ms).max().unwrap_or(0);
    let before = ph
        .iter()
        .map(|r| r.max_requests_before_reply)
        .max()
        .unwrap_or(0);
    out.push(check(
        "webhook replies: largest reply_ms, requests before reply",
        "0 ms, 0".into(),
        format!("{reply} ms, {before}"),
        reply == 0 && before == 0,
    ));
    out.push(check(
        "webhook call with a 1 MiB body: wasm CPU (median)",
        "< 10 ms".into(),
        format!("{:.2} ms", report.webhook_1mib_ms),
        report.webhook_1mib_ms < 10.0,
    ));
    let wasm: f64 = ph.iter().map(|r| r.wasm_component_s).sum();
    let native: f64 = ph.iter().map(|r| r.native_component_s).sum();
    let ratio = wasm / native.max(1e-9);
    out.push(check(
        "wasm CPU vs native, all phases together",
        "<= 1.5 x native".into(),
        format!("{ratio:.2} x ({wasm:.3} s vs {native:.3} s)"),
        ratio <= 1.5,
    ));
    // Issue 15: every phase at N >= 10,000 (phases under 5 ms of native CPU are noise).
    let worst = ph
        .iter()
        .filter(|r| r.native_component_s >= 0.005)
        .max_by(|a, b| a.cpu_ratio.total_cmp(&b.cpu_ratio));
    if let Some(w) = worst {
        out.push(check(
            &format!("wasm CPU vs native, worst phase (N={})", p.users),
            "<= 1.3 x native (stated for N >= 10,000)".into(),
            format!("{:.2} x ({})", w.cpu_ratio, w.name),
            w.cpu_ratio <= 1.3,
        ));
    }
    let peak = ph.iter().map(|r| r.peak_memory_bytes).max().unwrap_or(0);
    out.push(check(
        &format!("peak guest linear memory (N={})", p.users),
        "<= 64 MiB (stated for N = 100,000)".into(),
        format!("{:.1} MiB", mib(peak)),
        peak as f64 <= 64.0 * MIB,
    ));
    out.push(check(
        "component size",
        "<= 1 MiB".into(),
        format!("{:.0} KiB", report.component_bytes as f64 / 1024.0),
        report.component_bytes as f64 <= MIB,
    ));
    out.push(check(
        "instantiate, pre-instantiated (median)",
        "<= 1 ms".into(),
        format!("{:.0} us", report.instantiate_us),
        report.instantiate_us <= 1000.0,
    ));
    out
}
