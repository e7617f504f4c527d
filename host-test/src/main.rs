//! `host-test` CLI: replay a scenario against the real component, or run the bundled demo.
//!
//! ```text
//! cargo run -p host-test -- demo [--verbose] [--report <out.json>]
//! cargo run -p host-test -- replay <scenario.json> [--report <out.json>] [--verbose]
//! cargo run --release -p host-test -- bench [--users N] [--groups G] [--rtt-ms 100] [--concurrency 8] [--json <file>]
//! ```

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use anyhow::{Context, Result, bail};
    use host_test::report::{self, Report};
    use host_test::runner::Runner;
    use host_test::runtime::Runtime;
    use host_test::scenario::Scenario;

    const USAGE: &str = "usage:
  host-test demo [--verbose] [--dry-run] [--report <out.json>]
  host-test replay <scenario.json> [--report <out.json>] [--verbose] [--dry-run]
  host-test fuzz [--runs 1000000] [--target webhook|config|state|planner|unseen|log_escape|config_errors]
  host-test serve <scenario.json> [--port P] [--requests N] [--seconds S]
  host-test run --config <file> [--state <file>] [--record <dir>] (deploy|event <request.json>|schedule|delete)
  host-test package [--out dist] [--manifest wit/integration.json]
  host-test bench [--users 10000] [--groups 40] [--rtt-ms 100] [--concurrency 8] [--budget-ms 20000] [--json <file>]";

    /// The bundled demo scenario.
    pub fn demo_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo.json")
    }

    struct Options {
        report: Option<PathBuf>,
        verbose: bool,
        dry_run: bool,
        positional: Vec<String>,
    }

    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            report: None,
            verbose: false,
            dry_run: false,
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--report" => {
                    let p = it.next().context("--report needs a file name")?;
                    o.report = Some(PathBuf::from(p));
                }
                "--verbose" | "-v" => o.verbose = true,
                "--dry-run" => o.dry_run = true,
                flag if flag.starts_with('-') => bail!("unknown option {flag}\n{USAGE}"),
                _ => o.positional.push(a.clone()),
            }
        }
        Ok(o)
    }

    fn replay(path: &Path, o: &Options) -> Result<Report> {
        let mut scenario = Scenario::load(path)?;
        if o.dry_run {
            scenario
                .instance
                .config
                .insert("dry_run".into(), serde_json::Value::String("true".into()));
            // What the scenario expects of a real run cannot hold for a run that writes nothing,
            // and steps after the deploy (notifications...) need what a real deploy sets up.
            scenario.expect = Default::default();
            scenario
                .steps
                .retain(|s| matches!(s, host_test::scenario::Step::Deploy(_)));
            scenario.steps.truncate(1);
            println!("Dry run of the deploy: the component reads everything and writes nothing.");
        }
        println!("Scenario: {}", path.display());
        if !scenario.description.is_empty() {
            println!("  {}", scenario.description);
        }
        println!(
            "  {} Entra users, {} groups, {} ZenQMS users; rtt {} ms, concurrency {}, budget {} ms\n",
            scenario.entra.users.len(),
            scenario.entra.groups.len(),
            scenario.zenqms.users.len(),
            scenario.rtt_ms,
            scenario.concurrency,
            scenario.budget_ms
        );
        let verbose = o.verbose;
        let steps = scenario.steps.len() as u64;
        let mut progress = host_test::progress::Progress::new(steps, "replaying");
        let report = Runner::new(Runtime::shared(), scenario).run(|step| {
            progress.advance(&format!("step {} ({}) done", step.index, step.kind));
            print!("{}", report::describe_step(step, verbose));
        });
        progress.finish();
        print!("{}", report::describe_end(&report));
        if let Some(out) = &o.report {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("Report written to {}", out.display());
        }
        Ok(report)
    }

    /// `bench`: the issue-6 benchmark (see `docs/performance.md`).
    fn bench(args: &[String]) -> Result<bool> {
        let (params, json) = host_test::bench::parse_args(args).context(USAGE)?;
        let command = format!("host-test bench {}", args.join(" "));
        println!(
            "Benchmark: {} users, {} groups; wasm and native runs of each phase",
            params.users, params.groups
        );
        let report = host_test::bench::run(&params, command.trim(), |line| println!("{line}"))?;
        print!("{}", host_test::bench::table::render(&report));
        if let Some(out) = &json {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("JSON written to {}", out.display());
        }
        Ok(true)
    }

    /// `fuzz [--runs N] [--target webhook|config|state|planner|unseen|log_escape|config_errors]`: runs the property-based fuzz
    /// targets natively for N executions each (default 1,000,000) and reports the counts.
    fn fuzz(args: &[String]) -> Result<bool> {
        let mut runs: u32 = 1_000_000;
        let mut only: Option<String> = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
                "--target" => only = Some(it.next().context("--target needs a name")?.clone()),
                other => bail!("unknown option {other}\n{USAGE}"),
            }
        }
        let mut ok = true;
        for (name, target) in host_test::fuzz::TARGETS {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let started = std::time::Instant::now();
            let mut runner = host_test::fuzz::runner(runs);
            let result = target(&mut runner);
            let secs = started.elapsed().as_secs_f64();
            match result {
                Ok(()) => println!("{name}: {runs} executions, no failure ({secs:.1} s)"),
                Err(e) => {
                    ok = false;
                    println!("{name}: FAILED after {secs:.1} s: {e}");
                }
            }
        }
        Ok(ok)
    }

    /// `package [--out dist] [--manifest wit/integration.json]`
    fn package(args: &[String]) -> Result<bool> {
        let mut out = PathBuf::from("dist");
        let mut manifest = host_test::package::default_manifest();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--out" => out = PathBuf::from(it.next().context("--out needs a directory")?),
                "--manifest" => {
                    manifest = PathBuf::from(it.next().context("--manifest needs a file")?)
                }
                other => bail!("unknown option {other}\n{USAGE}"),
            }
        }
        let files = host_test::package::package(&manifest, &out, Runtime::shared())?;
        for f in files {
            println!("wrote {}", f.display());
        }
        Ok(true)
    }

    fn run(args: &[String]) -> Result<bool> {
        let Some((cmd, rest)) = args.split_first() else {
            bail!("{USAGE}");
        };
        if cmd == "bench" {
            return bench(rest);
        }
        if cmd == "serve" {
            return host_test::serve::cli(rest);
        }
        if cmd == "run" {
            return host_test::live::cli(rest);
        }
        if cmd == "package" {
            return package(rest);
        }
        if cmd == "fuzz" {
            return fuzz(rest);
        }
        let o = parse(rest)?;
        let report = match cmd.as_str() {
            "demo" => replay(&demo_path(), &o)?,
            "replay" => {
                let [path] = o.positional.as_slice() else {
                    bail!("replay needs one scenario file\n{USAGE}");
                };
                replay(Path::new(path), &o)?
            }
            "help" | "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => bail!("unknown command {other}\n{USAGE}"),
        };
        Ok(report.expect.ok)
    }

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        }
    }
}
