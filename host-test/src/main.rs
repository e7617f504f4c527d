//! `host-test` CLI: the platform simulator's tools (`host-test --help`, and `--help` on each
//! command).
//!
//! ```text
//! cargo run -p host-test -- demo [--verbose] [--dry-run] [--report <out.json>]
//! cargo run -p host-test -- replay <scenario.json> [--report <out.json>] [--verbose] [--dry-run]
//! cargo run -p host-test -- fuzz [--runs 1000000] [--target <name>]
//! cargo run -p host-test -- serve <scenario.json> [--port 0] [--requests N] [--seconds S]
//! cargo run -p host-test -- run --config <file> [--state <file>] [--record <dir>] (deploy | event <request.json> | schedule | delete)
//! cargo run -p host-test -- package [--out dist] [--manifest wit/integration.json]
//! cargo run --release -p host-test -- bench [--users N] [--groups G] [--rtt-ms 100] [--concurrency 8] [--budget-ms 20000] [--json <file>]
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

    use anyhow::{Context, Result};
    use clap::{Parser, Subcommand};
    use host_test::report::{self, Report};
    use host_test::runner::Runner;
    use host_test::runtime::Runtime;
    use host_test::scenario::Scenario;

    /// The platform simulator: replay scenarios against the real component in wasmtime, run it
    /// live, benchmark, fuzz, package.
    #[derive(Debug, Parser)]
    #[command(name = "host-test", version)]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Replay the bundled fixtures/demo.json (250 users) and print the ZenQMS users.
        Demo(ReplayOptions),
        /// Replay a scenario file (fixtures/README.md); exit 1 when an expectation fails.
        Replay {
            /// The scenario file.
            scenario: PathBuf,
            #[command(flatten)]
            options: ReplayOptions,
        },
        /// Run the property-based fuzz targets natively.
        Fuzz {
            /// Executions per target.
            #[arg(long, default_value_t = 1_000_000)]
            runs: u32,
            /// Only this target.
            #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
                host_test::fuzz::TARGETS.iter().map(|(name, _)| *name)))]
            target: Option<String>,
        },
        /// Serve a scenario's simulated Graph and ZenQMS over HTTP (real time).
        Serve(host_test::serve::ServeArgs),
        /// Run the component live against real services, state kept in a file.
        Run(host_test::live::RunArgs),
        /// Write the marketplace bundle (the .wasm, the manifest, SHA-256 sums).
        Package {
            /// Output directory.
            #[arg(long, default_value = "dist")]
            out: PathBuf,
            /// The manifest to validate against the component.
            #[arg(long)]
            manifest: Option<PathBuf>,
        },
        /// The benchmark (docs/performance.md): counts, rounds, CPU, memory per phase.
        Bench(host_test::bench::BenchArgs),
        /// Print the component's self-description (`describe`): name, version, contract and
        /// the configuration's JSON Schema.
        Describe,
    }

    /// The bundled demo scenario.
    pub fn demo_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo.json")
    }

    #[derive(Debug, clap::Args)]
    struct ReplayOptions {
        /// Write the full report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print every log line.
        #[arg(long, short)]
        verbose: bool,
        /// Run only the deploy, with dry_run=true: read everything, write nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    }

    fn replay(path: &Path, o: &ReplayOptions) -> Result<Report> {
        let mut scenario = Scenario::load(path)?;
        if o.dry_run {
            scenario
                .instance
                .config
                .insert("dry_run".into(), serde_json::Value::String("true".into()));
            // What the scenario expects of a real run cannot hold for a run that writes nothing,
            // and steps after the deploy (notifications...) need what a real deploy sets up.
            scenario.expect = Default::default();
            let steps = scenario.steps.len();
            scenario
                .steps
                .retain(|s| matches!(s, host_test::scenario::Step::Deploy(_)));
            scenario.steps.truncate(1);
            println!(
                "Dry run of the deploy only: the component reads everything and writes nothing. The scenario's other {} steps and its expectations are left out (\"Expectations: ok\" below checks nothing).",
                steps.saturating_sub(scenario.steps.len())
            );
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

    /// `bench`: the benchmark (see `docs/performance.md`).
    fn bench(args: &host_test::bench::BenchArgs) -> Result<bool> {
        let (params, json) = args.params();
        let argv: Vec<String> = std::env::args().skip(2).collect();
        let command = format!("host-test bench {}", argv.join(" "));
        println!(
            "Benchmark: {} users, {} groups; wasm and native runs of each phase{}",
            params.users,
            params.groups,
            if params.repeats > 1 {
                format!(
                    "; {} runs, CPU the least of each phase's (the lines below are the first run's)",
                    params.repeats
                )
            } else {
                String::new()
            }
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

    /// `fuzz [--runs N] [--target webhook|config|state|planner|log_escape|config_errors]`: runs the property-based fuzz
    /// targets natively for N executions each (default 1,000,000) and reports the counts.
    fn fuzz(runs: u32, only: Option<&str>) -> Result<bool> {
        let mut ok = true;
        for (name, target) in host_test::fuzz::TARGETS {
            if only.is_some_and(|o| o != name) {
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

    /// `package`: the marketplace bundle.
    fn package(out: &Path, manifest: Option<&Path>) -> Result<bool> {
        let manifest =
            manifest.map_or_else(host_test::package::default_manifest, Path::to_path_buf);
        let files = host_test::package::package(&manifest, out, Runtime::shared())?;
        for f in files {
            println!("wrote {}", f.display());
        }
        Ok(true)
    }

    fn run(cli: Cli) -> Result<bool> {
        let report = match &cli.command {
            Cmd::Bench(args) => return bench(args),
            Cmd::Serve(args) => return host_test::serve::cli(args),
            Cmd::Run(args) => return host_test::live::cli(args),
            Cmd::Package { out, manifest } => return package(out, manifest.as_deref()),
            Cmd::Describe => {
                let text = host_test::package::describe_text(Runtime::shared())?;
                let value: serde_json::Value = serde_json::from_str(&text)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(true);
            }
            Cmd::Fuzz { runs, target } => return fuzz(*runs, target.as_deref()),
            Cmd::Demo(o) => replay(&demo_path(), o)?,
            Cmd::Replay { scenario, options } => replay(scenario, options)?,
        };
        Ok(report.expect.ok)
    }

    pub fn main() -> ExitCode {
        // Usage errors exit 2 with clap's message; `--help` and `--version` exit 0.
        let cli = Cli::parse();
        match run(cli) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        }
    }
}
