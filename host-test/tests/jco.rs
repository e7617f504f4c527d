//! The component is plain WebAssembly component model, not wasmtime's: jco transpiles it to
//! JavaScript and a small Node host (tests/jco/host.mjs) runs it with its own `http` and `log`
//! imports and WASI from @bytecodealliance/preview2-shim. The checks: a deploy with no
//! configuration fails with "invalid configuration", the webhook validation handshake echoes
//! its token, and `describe` names the contract.
//!
//! Needs `node` (18 or later) and `npm` on PATH and, once, the npm registry: jco is installed
//! into `target/jco/` and reused. Without them the test prints `skipped: ...` and passes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The jco release the test transpiles with, and the WASI shim it runs on (jco's own).
const JCO: &str = "1.35.0";
const PREVIEW2_SHIM: &str = "0.26.1";

/// The component the build script built (host-test/build.rs).
const COMPONENT_WASM: &str = env!("COMPONENT_WASM");

/// Why the test did not run, or why it failed.
enum Stop {
    Skip(String),
    Fail(String),
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cmd`, killing it after `limit`; `Err` when it could not start or ran out of time.
fn run(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    // Read both pipes while waiting, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).ok();
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            return Err(format!("{what}: no answer within {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// The tail of a command's output, for a failure message.
fn tail(o: &Output) -> String {
    let all = format!("{}\n{}", text(&o.stdout), text(&o.stderr));
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `node` and `npm` usable, or why not.
fn tools() -> Result<(), Stop> {
    let version = |tool: &str| {
        run(Command::new(tool).arg("--version"), Duration::from_secs(30))
            .ok()
            .filter(|o| o.status.success())
            .map(|o| text(&o.stdout))
            .ok_or_else(|| Stop::Skip(format!("`{tool}` is not on PATH (or does not run)")))
    };
    let node = version("node")?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Err(Stop::Skip(format!("node {node} is older than 18")));
    }
    let npm = version("npm")?;
    println!("node {node}, npm {npm}");
    Ok(())
}

/// The installed package's version, if `dir` holds it.
fn installed(dir: &Path, package: &str) -> Option<String> {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    let v: Value = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// jco and the shim, installed once under `target/jco/` and reused.
fn jco_install() -> Result<PathBuf, Stop> {
    let base = workspace().join("target").join("jco");
    let dir = base.join(format!("jco-{JCO}-shim-{PREVIEW2_SHIM}"));
    let ready = |d: &Path| {
        installed(d, "@bytecodealliance/jco").as_deref() == Some(JCO)
            && installed(d, "@bytecodealliance/preview2-shim").as_deref() == Some(PREVIEW2_SHIM)
    };
    if ready(&dir) {
        return Ok(dir);
    }
    // No registry at hand is a reason to skip (asked first: a failing install retries for
    // minutes); an install that fails with the registry at hand is a failure.
    match run(
        Command::new("npm").args(["ping", "--fetch-timeout=15000", "--fetch-retries=0"]),
        Duration::from_secs(30),
    ) {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(Stop::Skip(format!(
                "npm cannot reach its registry (`npm ping`):\n{}",
                tail(&o)
            )));
        }
        Err(e) => return Err(Stop::Skip(format!("npm cannot reach its registry: {e}"))),
    }
    // Installed beside the final directory and renamed into place, so a concurrent run (or an
    // interrupted one) never sees half an install.
    let staging = base.join(format!("install-{}", std::process::id()));
    std::fs::remove_dir_all(&staging).ok();
    std::fs::create_dir_all(&staging).map_err(|e| Stop::Fail(format!("{staging:?}: {e}")))?;
    std::fs::write(
        staging.join("package.json"),
        "{\"private\": true, \"type\": \"module\"}\n",
    )
    .map_err(|e| Stop::Fail(e.to_string()))?;
    println!("installing jco {JCO} into {} ...", dir.display());
    let started = Instant::now();
    let install = run(
        Command::new("npm")
            .current_dir(&staging)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--loglevel=error",
                "--fetch-timeout=60000",
                "--fetch-retries=2",
                "--fetch-retry-mintimeout=2000",
                "--fetch-retry-maxtimeout=10000",
            ])
            .arg(format!("@bytecodealliance/jco@{JCO}"))
            .arg(format!("@bytecodealliance/preview2-shim@{PREVIEW2_SHIM}")),
        Duration::from_secs(300),
    )
    .map_err(Stop::Fail)?;
    if !install.status.success() || !ready(&staging) {
        std::fs::remove_dir_all(&staging).ok();
        return Err(Stop::Fail(format!(
            "npm install of jco {JCO} failed (the registry answered `npm ping`):\n{}",
            tail(&install)
        )));
    }
    println!("installed in {:.0?}", started.elapsed());
    if dir.exists() && !ready(&dir) {
        std::fs::remove_dir_all(&dir).ok(); // what an older or broken install left
    }
    if std::fs::rename(&staging, &dir).is_err() {
        // Another run installed it first: use theirs.
        std::fs::remove_dir_all(&staging).ok();
        if !ready(&dir) {
            return Err(Stop::Fail(format!("could not move the install to {dir:?}")));
        }
    }
    Ok(dir)
}

/// The JSON the Node host printed.
fn transpile_and_run(jco: &Path) -> Result<Value, Stop> {
    let fail = |what: &str, o: &Output| Stop::Fail(format!("{what} failed:\n{}", tail(o)));
    // Inside the install, so the host's `import '@bytecodealliance/preview2-shim'` resolves.
    let work = jco.join(format!("run-{}", std::process::id()));
    std::fs::remove_dir_all(&work).ok();
    let component = work.join("component");
    std::fs::create_dir_all(&component).map_err(|e| Stop::Fail(e.to_string()))?;
    // ES modules for node 20 too (which does not detect them in `.js` files).
    std::fs::write(work.join("package.json"), "{\"type\": \"module\"}\n")
        .map_err(|e| Stop::Fail(e.to_string()))?;
    let host = work.join("host.mjs");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jco/host.mjs"),
        &host,
    )
    .map_err(|e| Stop::Fail(format!("copying host.mjs: {e}")))?;

    let manifest: Value = serde_json::from_slice(
        &std::fs::read(jco.join("node_modules/@bytecodealliance/jco/package.json"))
            .map_err(|e| Stop::Fail(e.to_string()))?,
    )
    .map_err(|e| Stop::Fail(e.to_string()))?;
    let bin = manifest["bin"]["jco"]
        .as_str()
        .or(manifest["bin"].as_str())
        .ok_or_else(|| Stop::Fail("jco's package.json names no bin".into()))?;
    let started = Instant::now();
    let transpiled = run(
        Command::new("node")
            .arg(jco.join("node_modules/@bytecodealliance/jco").join(bin))
            .args(["transpile", COMPONENT_WASM, "-o"])
            .arg(&component)
            .args([
                "--name",
                "entra",
                "--instantiation",
                "async",
                "--no-typescript",
                "--quiet",
            ]),
        Duration::from_secs(120),
    )
    .map_err(Stop::Fail)?;
    if !transpiled.status.success() {
        return Err(fail("jco transpile", &transpiled));
    }
    println!("transpiled in {:.0?}", started.elapsed());

    let ran = run(
        Command::new("node")
            .current_dir(&work)
            .arg(&host)
            .arg(&component)
            .arg("entra"),
        Duration::from_secs(60),
    )
    .map_err(Stop::Fail)?;
    let stdout = text(&ran.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JCO-RESULT "))
        .ok_or_else(|| fail("the Node host", &ran))?;
    let report: Value = serde_json::from_str(line).map_err(|e| {
        Stop::Fail(format!(
            "the Node host's report does not parse: {e}\n{line}"
        ))
    })?;
    if !ran.status.success() {
        return Err(fail("the Node host", &ran));
    }
    std::fs::remove_dir_all(&work).ok();
    Ok(report)
}

/// The contract `wit/world.wit` declares (`zenqms:entra-sync@x.y.z`).
fn wit_package() -> String {
    let wit = std::fs::read_to_string(workspace().join("wit/world.wit")).unwrap();
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .expect("world.wit declares its package")
        .trim_end_matches(';')
        .to_string()
}

fn check(report: &Value) {
    assert!(
        report.get("instantiate").is_none(),
        "instantiating the transpiled component failed: {}",
        report["instantiate"]
    );
    // (a) A deploy without configuration is refused, not retryable, and says why.
    let deploy = &report["deploy"];
    let message = deploy["err"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("on-deploy with no configuration must fail: {deploy}"));
    assert!(message.contains("invalid configuration"), "{message}");
    assert_eq!(deploy["err"]["retryable"], false, "{deploy}");
    // The log import works: the failure is logged.
    let logged = report["deploy_logs"].as_array().unwrap();
    assert!(
        logged
            .iter()
            .any(|l| l["level"] == "error" && l["message"].as_str().unwrap().contains("deploy")),
        "{logged:?}"
    );

    // (b) The validation handshake: 200, the token echoed as plain text, nothing stored.
    let webhook = &report["webhook"]["ok"];
    assert!(
        webhook.is_object(),
        "on-event(webhook) must succeed: {report}"
    );
    let response = &webhook["response"];
    assert_eq!(response["status"], 200, "{response}");
    assert_eq!(response["body"], "abc", "{response}");
    let headers = response["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(
            |h| h[0].as_str().unwrap().eq_ignore_ascii_case("content-type")
                && h[1].as_str().unwrap().starts_with("text/plain")
        ),
        "{headers:?}"
    );
    assert!(
        webhook["state"].is_null(),
        "a webhook stores no state: {webhook}"
    );

    // (c) describe: JSON naming the contract of wit/world.wit, with the configuration schema.
    let text = report["describe"]["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("describe must answer: {}", report["describe"]));
    let d: Value = serde_json::from_str(text).expect("describe answers JSON");
    assert_eq!(d["contract"], wit_package().as_str(), "{d}");
    assert_eq!(d["name"], "entra-zenqms");
    assert_eq!(d["configuration"]["type"], "object");

    // None of these calls sends anything.
    assert_eq!(report["requests"], serde_json::json!([]), "{report}");
}

#[test]
fn the_component_runs_under_jco_in_node() {
    let started = Instant::now();
    let outcome = tools()
        .and_then(|()| jco_install())
        .and_then(|jco| transpile_and_run(&jco));
    match outcome {
        Ok(report) => {
            check(&report);
            println!(
                "jco {JCO}: deploy, webhook handshake and describe checked in {:.1?}",
                started.elapsed()
            );
        }
        Err(Stop::Skip(why)) => println!("skipped: {why}"),
        Err(Stop::Fail(why)) => panic!("{why}"),
    }
}
