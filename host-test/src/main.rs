//! `host-test` CLI: replay a scenario against the real component, or run the bundled demo.
//!
//! ```text
//! cargo run -p host-test -- demo [--verbose] [--report <out.json>]
//! cargo run -p host-test -- replay <scenario.json> [--report <out.json>] [--verbose]
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
  host-test demo [--verbose] [--report <out.json>]
  host-test replay <scenario.json> [--report <out.json>] [--verbose]";

    /// The bundled demo scenario.
    pub fn demo_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo.json")
    }

    struct Options {
        report: Option<PathBuf>,
        verbose: bool,
        positional: Vec<String>,
    }

    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            report: None,
            verbose: false,
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
                flag if flag.starts_with('-') => bail!("unknown option {flag}\n{USAGE}"),
                _ => o.positional.push(a.clone()),
            }
        }
        Ok(o)
    }

    fn replay(path: &Path, o: &Options) -> Result<Report> {
        let scenario = Scenario::load(path)?;
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
        let report = Runner::new(Runtime::shared(), scenario)
            .run(|step| print!("{}", report::describe_step(step, verbose)));
        print!("{}", report::describe_end(&report));
        if let Some(out) = &o.report {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("Report written to {}", out.display());
        }
        Ok(report)
    }

    fn run(args: &[String]) -> Result<bool> {
        let Some((cmd, rest)) = args.split_first() else {
            bail!("{USAGE}");
        };
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
