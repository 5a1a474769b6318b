//! The runner for users' CI: the non-destructive checks against a live
//! deployment named by URL, as a table, with an exit code. The `conformance`
//! binary is a thin shell over [`main_with_args`]; `dlock check` can call
//! [`run_url`] or [`run`].

use crate::checks::all_checks;
use crate::harness::{Outcome, run_check};
use crate::timing::LONG_TTL;
use crate::{Fixture, UrlFixture, Verdict};
use futures::StreamExt;
use lock_core::ErrorKind;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: every check passed or was not applicable.
pub const EXIT_OK: u8 = 0;
/// Exit code: a check failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or a bad URL (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code: the store cannot be reached (sysexits `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Checks run at the same time (each uses its own keys).
    pub jobs: usize,
    /// Whether to run the destructive checks (those needing fault
    /// injection); never against a live deployment.
    pub destructive: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 4,
            destructive: false,
        }
    }
}

/// One check's line of the report.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// The check.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took (zero if it did not run).
    pub took: Duration,
}

/// The results of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was checked (the fixture's name, e.g. the redacted URL).
    pub target: String,
    /// The backend's name from its capabilities.
    pub backend: String,
    /// One line per check, in the registry's order.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.outcome.failed()).count()
    }

    /// The report as a table (check, result, time), followed by the
    /// details of every check that did not simply pass.
    pub fn table(&self) -> String {
        let width = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dlock conformance: {} (backend {})",
            self.target, self.backend
        );
        let _ = writeln!(out, "{:<width$}  {:<16}  {:>8}", "CHECK", "RESULT", "TIME");
        for r in &self.results {
            let (result, time) = match &r.outcome {
                Outcome::Verdict(Verdict::Passed) => ("passed", Some(r.took)),
                Outcome::Verdict(Verdict::Partial(_)) => ("passed in part", Some(r.took)),
                Outcome::Verdict(Verdict::NotApplicable(_)) => ("not applicable", None),
                Outcome::Failed(_) => ("FAILED", Some(r.took)),
            };
            let time = time.map_or("-".to_owned(), |t| format!("{:.2}s", t.as_secs_f64()));
            let _ = writeln!(out, "{:<width$}  {result:<16}  {time:>8}", r.name);
        }
        let details: Vec<String> = self
            .results
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Verdict(Verdict::Passed) => None,
                Outcome::Verdict(Verdict::Partial(why) | Verdict::NotApplicable(why)) => {
                    Some(format!("  {}: {why}", r.name))
                }
                Outcome::Failed(why) => Some(format!("  {}: FAILED: {why}", r.name)),
            })
            .collect();
        if !details.is_empty() {
            let _ = writeln!(out, "\nnotes:\n{}", details.join("\n"));
        }
        let count = |f: fn(&Outcome) -> bool| self.results.iter().filter(|r| f(&r.outcome)).count();
        let _ = writeln!(
            out,
            "\nsummary: {} passed, {} failed, {} not applicable",
            count(|o| matches!(o, Outcome::Verdict(Verdict::Passed | Verdict::Partial(_)))),
            self.failures(),
            count(|o| matches!(o, Outcome::Verdict(Verdict::NotApplicable(_)))),
        );
        out
    }

    /// The process exit code for this report.
    pub fn exit_code(&self) -> u8 {
        if self.failures() == 0 {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }
}

/// Runs the suite on `fx`, `opts.jobs` checks at a time. Destructive checks
/// are reported not applicable unless `opts.destructive`.
pub async fn run(fx: Arc<dyn Fixture>, backend: String, opts: &RunOptions) -> Report {
    let results = futures::stream::iter(all_checks())
        .map(|check| {
            let fx = fx.clone();
            let destructive = check.destructive() && !opts.destructive;
            async move {
                let (outcome, took) = match destructive {
                    true => (
                        Outcome::Verdict(Verdict::NotApplicable(
                            "destructive (needs fault injection): never run against a live deployment"
                                .to_owned(),
                        )),
                        Duration::ZERO,
                    ),
                    false => run_check(fx, check).await,
                };
                CheckResult {
                    name: check.name,
                    outcome,
                    took,
                }
            }
        })
        .buffered(opts.jobs.max(1))
        .collect()
        .await;
    Report {
        target: fx.name(),
        backend,
        results,
    }
}

/// Why a run could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// A bad URL, an unknown scheme, a backend not enabled in this build.
    Usage(String),
    /// The store could not be reached or used.
    Unavailable(String),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) => EXIT_USAGE,
            RunError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(m) | RunError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Checks that `fx` can make a locker and reach its store (one `status`
/// call); returns the backend's name.
pub async fn probe(fx: &dyn Fixture) -> Result<String, RunError> {
    check_reach(fx.locker(LONG_TTL).await, &fx.name(), &fx.key_prefix()).await
}

/// Maps what connecting gave into a usable backend's name or a [`RunError`]:
/// a bad URL or config is a usage error, anything else means the store
/// cannot be used.
async fn check_reach(
    connected: lock_core::Result<lock_core::Locker>,
    target: &str,
    key_prefix: &str,
) -> Result<String, RunError> {
    let locker = connected.map_err(|e| match e.kind() {
        ErrorKind::InvalidConfig | ErrorKind::InvalidKey => RunError::Usage(e.to_string()),
        _ => RunError::Unavailable(format!("cannot connect to {target}: {e}")),
    })?;
    match locker.status(&format!("{key_prefix}/probe")).await {
        Ok(_) => Ok(locker.capabilities().name.to_owned()),
        Err(e) if e.kind() == ErrorKind::InvalidKey => Err(RunError::Usage(format!(
            "bad key prefix {key_prefix:?}: {e}"
        ))),
        Err(e) => Err(RunError::Unavailable(format!("cannot use {target}: {e}"))),
    }
}

/// Runs the non-destructive checks against the deployment at `url`, keys
/// under `key_prefix`. The URL is first opened as given, so that its
/// errors name it exactly as the user wrote it.
pub async fn run_url(url: &str, key_prefix: &str, opts: &RunOptions) -> Result<Report, RunError> {
    let target = lock_core::redact(url);
    let backend = check_reach(lock_core::connect(url).await, &target, key_prefix).await?;
    let fx: Arc<dyn Fixture> = Arc::new(UrlFixture::new(url).with_key_prefix(key_prefix));
    let opts = RunOptions {
        destructive: false,
        ..opts.clone()
    };
    Ok(run(fx, backend, &opts).await)
}

const USAGE: &str = "usage: conformance [--jobs N] [--prefix PREFIX] URL

Runs the dlock conformance checks that do not hurt the store against the
deployment at URL (memory://, redis://, redlock://, etcd://, zk://), with
every key under PREFIX/<uuid>/ (default prefix: dlock-conformance).
Exit status: 0 all passed, 1 a check failed, 64 bad usage or URL,
69 store unreachable.";

struct Args {
    url: String,
    prefix: String,
    jobs: usize,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut url = None;
    let mut prefix = "dlock-conformance".to_owned();
    let mut jobs = RunOptions::default().jobs;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--prefix" => prefix = value("--prefix")?,
            "--jobs" | "-j" => {
                let v = value("--jobs")?;
                jobs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--jobs wants a positive number, got {v:?}"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            _ if url.is_some() => return Err(format!("one URL only (got another: {arg:?})")),
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or("no URL given")?;
    Ok(Some(Args { url, prefix, jobs }))
}

/// The `conformance` binary: parses `args` (without the program name),
/// runs, prints the table to stdout and problems to stderr as one line.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("conformance: {why}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let opts = RunOptions {
        jobs: args.jobs,
        destructive: false,
    };
    let result = crate::harness::runtime().block_on(run_url(&args.url, &args.prefix, &opts));
    match result {
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
