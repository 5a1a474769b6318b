//! The command line: clap definitions, usage errors, dispatch.

use crate::exit::{self, Failure};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use lock_core::{Key, Owner, Ttl};
use std::ffi::OsString;
use std::time::Duration;

const ABOUT: &str = "Run commands under a distributed lock: flock(1) across machines.";

const LONG_ABOUT: &str = "\
Run commands under a distributed lock: flock(1) across machines.

Where flock locks a file on one machine, dlock locks a KEY in a shared store \
(Redis, etcd, ZooKeeper, ...), so the command is excluded on every machine \
that uses the same store. A lock has a ttl: if the machine holding it dies, \
the store frees it after the ttl; while the command runs, dlock renews it.";

const AFTER_HELP: &str = "\
Examples (flock(1) users: --key names the lock where flock takes a file):
  dlock run --key backup -- backup.sh             # flock /var/lock/backup backup.sh
  dlock run --key backup --no-wait -- backup.sh   # flock -n ...  (busy: exit 75)
  dlock run --key backup --wait 10s -- backup.sh  # flock -w 10 ... (busy: exit 75)
  dlock status --key backup                       # who holds it, for how long still
  dlock check                                     # does this store keep the lock contract?
  dlock bench                                     # how fast is it?
  dlock demo flash-sale                           # 1,000 buyers, 100 items, with and without a lock

Every subcommand but demo needs a store: --backend URL, or DLOCK_BACKEND:
  export DLOCK_BACKEND=redis://10.0.0.5:6379

Exit codes: 0 success (run: the command's own status); 64 bad usage; \
69 store unavailable; 75 lock busy; 76 lock lost while the command ran; \
126/127 command not executable/not found; 128+N command killed by signal N.";

const BACKEND_HELP: &str = "\
The store's URL: memory://, redis://[user:pass@]host:port[/db], rediss://..., \
redlock://h1:p1,h2:p2,h3:p3, etcd://h1:p1[,h2:p2], zk://h1:p1[,h2:p2][/chroot]; \
options such as ?ttl=30s&prefix=app/ apply. Needed by every subcommand but \
`demo` (memory:// there). memory:// lives inside one dlock process: it \
excludes nothing across processes.";

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "dlock",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    arg_required_else_help = true,
    propagate_version = true
)]
pub(crate) struct Cli {
    /// The store's URL, e.g. redis://10.0.0.5:6379.
    #[arg(
        long,
        short = 'b',
        env = "DLOCK_BACKEND",
        global = true,
        value_name = "URL",
        long_help = BACKEND_HELP
    )]
    pub(crate) backend: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command while holding a lock (flock(1) across machines).
    #[command(
        long_about = RUN_ABOUT,
        after_help = RUN_EXAMPLES,
    )]
    Run(RunArgs),
    /// Show who holds a lock, with its token and time left.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Check the store against the lock contract (the conformance checks
    /// that do not hurt the store).
    #[command(long_about = CHECK_ABOUT, after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Measure lock latency and throughput on the store.
    #[command(long_about = BENCH_ABOUT, after_help = BENCH_EXAMPLES)]
    Bench(BenchArgs),
    /// Run a demo (default store memory://).
    #[command(subcommand)]
    Demo(Demo),
}

const RUN_ABOUT: &str = "\
Run a command while holding a lock (flock(1) across machines).

dlock takes the lock KEY in the store, runs CMD with DLOCK_KEY, DLOCK_TOKEN \
(the lock's fencing token: larger for each new hold of KEY) and DLOCK_OWNER \
in its environment, renews the lock while CMD runs, releases it when CMD \
exits, and exits with CMD's status.

Like flock without -n or -w, it waits until the lock is free; --no-wait \
(flock -n) gives up at once and --wait 10s (flock -w 10) after a while, both \
with exit 75 and one line saying who holds the lock and for how long still. \
While it waits on a terminal, a status line shows the time waited and the \
holder.

If the lock is LOST while CMD runs (deleted, taken over, or not renewed in \
time because the store could not be reached), CMD can no longer assume it is \
alone: dlock sends it SIGTERM, then SIGKILL after --grace, says why, and \
exits 76. SIGINT, SIGTERM and SIGHUP sent to dlock are passed on to CMD; the \
lock is released once CMD has exited. Unless dlock runs in the foreground of \
a terminal, CMD gets a process group of its own and signals go to the whole \
group (its children too).";

const RUN_EXAMPLES: &str = "\
flock(1) and dlock:
  flock /var/lock/job job.sh          dlock run --key job -- job.sh
  flock -n /var/lock/job job.sh       dlock run --key job --no-wait -- job.sh    (busy: 75, flock: 1)
  flock -w 10 /var/lock/job job.sh    dlock run --key job --wait 10s -- job.sh   (busy: 75, flock: 1)
  flock -n -E 0 /var/lock/job job.sh  dlock run --key job --no-wait -- job.sh || [ $? -eq 75 ]
flock's lock is a file on one machine, held while its descriptor is open; \
dlock's is a key in a shared store, held while dlock renews it.

Examples:
  # crontab on five machines: the cleanup runs on one of them each night
  0 3 * * * dlock run -b redis://10.0.0.5:6379 --key cron.cleanup --no-wait -- /opt/cleanup.sh

  # wait up to 5 minutes for the previous deploy; a crashed deploy frees the lock after 2 minutes
  dlock run --key deploy/web --wait 5m --ttl 2m -- ./deploy.sh

  # pass the fencing token on, so the database refuses a stale holder's write
  dlock run --key stock:42 -- sh -c 'psql -c \"UPDATE stock SET n = n - 1, fence = $DLOCK_TOKEN WHERE id = 42 AND fence < $DLOCK_TOKEN\"'";

const STATUS_EXAMPLES: &str = "\
Examples:
  dlock status --key cron.cleanup
  dlock status --key cron.cleanup --json | jq -r .owner

Prints held or free, the owner, its fencing token, the time left before the \
store expires the hold, and the number of waiters where the store queues \
them (etcd, ZooKeeper). Exit 0 either way; 64 bad key, 69 store unavailable.";

const CHECK_ABOUT: &str = "\
Check the store against the lock contract.

Runs the conformance checks that do not hurt the store (the same checks, \
table and exit codes as the `conformance` runner) against the store named by \
--backend, with every key under PREFIX/<uuid>/. Checks that need fault \
injection (killing or pausing servers) are reported not applicable: they are \
never run against a live deployment.";

const CHECK_EXAMPLES: &str = "\
Examples:
  dlock check --backend redis://10.0.0.5:6379
  DLOCK_BACKEND=etcd://h1:2379,h2:2379,h3:2379 dlock check --jobs 2

Exit codes: 0 all passed (or not applicable), 1 a check failed, 64 bad URL, \
69 store unreachable.";

const BENCH_ABOUT: &str = "\
Measure lock latency and throughput on the store.

Two scenarios on the store you point it at: uncontended lock + release \
(p50/p99 latency over --iterations rounds, one key per round), and a hot key \
(--tasks tasks of this process contending for one key for --duration: grants \
per second, and the hand-off time from one holder's release to the next \
holder's grant, p50/p99). The full comparison (every backend against its \
store's raw round trips and the peer clients, many keys, many holds, scaling) \
is the workspace's dlock-bench: `cargo run --release -p dlock-bench`.";

const BENCH_EXAMPLES: &str = "\
Examples:
  dlock bench --backend redis://127.0.0.1:6379
  dlock bench --backend memory:// --iterations 1000 --tasks 64 --duration 5s";

/// `dlock run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The lock's name: 1 to 255 bytes, no control characters
    /// (e.g. cron.cleanup, deploy/web, stock:42).
    #[arg(long, short = 'k', value_parser = key)]
    pub(crate) key: String,

    /// How long the store keeps the lock if dlock stops renewing it (its
    /// machine dies): 100ms to 24h. Default: the URL's ttl=, else 30s.
    #[arg(long, value_parser = ttl, value_name = "DURATION")]
    pub(crate) ttl: Option<Duration>,

    /// Wait at most this long for the lock (flock -w), then exit 75.
    /// Default: the URL's wait=, else until the lock is free.
    #[arg(long, short = 'w', value_parser = duration, value_name = "DURATION")]
    pub(crate) wait: Option<Duration>,

    /// Do not wait: exit 75 at once if the lock is held (flock -n).
    #[arg(long, short = 'n', conflicts_with = "wait")]
    pub(crate) no_wait: bool,

    /// The owner id recorded in the store (shown by `dlock status`).
    /// Default: HOSTNAME:PID:UUID. Two runs naming the same owner share the
    /// hold, so give each run its own.
    #[arg(long, value_parser = owner)]
    pub(crate) owner: Option<String>,

    /// After a lost lock, how long CMD has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = duration, default_value = "5s", value_name = "DURATION")]
    pub(crate) grace: Duration,

    /// The command to run, and its arguments (after `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(OsString)
    )]
    pub(crate) command: Vec<OsString>,
}

/// `dlock status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The lock's name.
    #[arg(long, short = 'k', value_parser = key)]
    pub(crate) key: String,

    /// Print one JSON object (key, held, owner, token, remaining_ms,
    /// waiters, last_token, holders) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `dlock check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Every key the checks use is under PREFIX/<uuid>/.
    #[arg(long, default_value = "dlock-conformance")]
    pub(crate) prefix: String,

    /// How many checks run at the same time.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
}

/// `dlock bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Rounds of the uncontended lock + release scenario.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) iterations: u32,

    /// Tasks contending for the hot key.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) tasks: u32,

    /// How long the hot-key scenario runs.
    #[arg(long, default_value = "3s", value_parser = duration, value_name = "DURATION")]
    pub(crate) duration: Duration,

    /// Every key the benchmark uses is under PREFIX/<uuid>/.
    #[arg(long, default_value = "dlock-bench")]
    pub(crate) prefix: String,
}

/// `dlock demo ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum Demo {
    /// 1,000 buyers race for 100 items: without a lock the stock is
    /// oversold, with one exactly 100 are sold, each sale fenced.
    #[command(after_help = "\
Examples:
  dlock demo flash-sale
  dlock demo flash-sale --buyers 5000 --stock 10
  dlock demo flash-sale --backend redis://127.0.0.1:6379

Exit codes: 0 the lock protected the stock, 1 it did not, 64 bad flag or \
URL, 69 store unavailable.")]
    FlashSale(FlashSaleArgs),
}

/// `dlock demo flash-sale`.
#[derive(Debug, Args)]
pub(crate) struct FlashSaleArgs {
    /// How many buyers race (each a Tokio task).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) buyers: u32,

    /// How many items are for sale.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) stock: u32,

    /// The key every buyer locks.
    #[arg(long, default_value = dlock_examples::flash_sale::DEFAULT_KEY, value_parser = key)]
    pub(crate) key: String,

    /// How long a buyer waits for the lock before giving up.
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
    pub(crate) wait: Duration,

    /// How long one round trip to the stock takes; 0s only yields.
    #[arg(long, default_value = "1ms", value_parser = duration, value_name = "DURATION")]
    pub(crate) round_trip: Duration,
}

/// An input error's message without the kind's prefix.
fn plain(e: lock_core::Error) -> String {
    match e {
        lock_core::Error::InvalidConfig(m) | lock_core::Error::InvalidKey(m) => m,
        other => other.to_string(),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    lock_core::parse_duration(text).map_err(plain)
}

fn ttl(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    Ttl::new(d).map_err(plain)?;
    Ok(d)
}

fn key(text: &str) -> Result<String, String> {
    Key::new(text).map_err(plain)?;
    Ok(text.to_owned())
}

fn owner(text: &str) -> Result<String, String> {
    Owner::new(text).map_err(plain)?;
    Ok(text.to_owned())
}

/// The backend URL, or a usage failure saying how to give one.
pub(crate) fn require_backend(backend: Option<String>, command: &str) -> Result<String, Failure> {
    match backend.filter(|b| !b.trim().is_empty()) {
        Some(b) => Ok(b),
        None => Err(Failure::new(
            exit::USAGE,
            format!(
                "`dlock {command}` needs a store: pass --backend URL or set DLOCK_BACKEND \
                 (e.g. redis://127.0.0.1:6379)"
            ),
        )),
    }
}

/// The whole command with the schemes of this build in its help.
fn command() -> clap::Command {
    let schemes: Vec<String> = crate::backends()
        .into_iter()
        .map(|s| format!("{s}://"))
        .collect();
    Cli::command().mut_arg("backend", |a| {
        let schemes = schemes.join(", ");
        a.long_help(format!("{BACKEND_HELP} Schemes in this build: {schemes}."))
    })
}

/// A clap error as one line (its text up to the first blank line).
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let head: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = head.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line).to_owned();
    format!("{line} (see dlock --help)")
}

/// Parses and runs; returns the exit code.
pub(crate) fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = match command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind as K;
            return match e.kind() {
                K::DisplayHelp | K::DisplayVersion => {
                    let _ = e.print();
                    exit::OK
                }
                K::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    exit::USAGE
                }
                _ => {
                    eprintln!("dlock: {}", usage_line(&e));
                    exit::USAGE
                }
            };
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("dlock: {}", usage_line(&e));
            return exit::USAGE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => require_backend(cli.backend, "run")
            .and_then(|b| current_thread()?.block_on(crate::run::run(&b, args))),
        Command::Status(args) => require_backend(cli.backend, "status")
            .and_then(|b| current_thread()?.block_on(crate::status::status(&b, &args))),
        Command::Check(args) => require_backend(cli.backend, "check")
            .and_then(|b| multi_thread()?.block_on(crate::check::check(&b, &args))),
        Command::Bench(args) => require_backend(cli.backend, "bench")
            .and_then(|b| multi_thread()?.block_on(crate::bench::bench(&b, &args))),
        Command::Demo(Demo::FlashSale(args)) => {
            let backend = cli.backend.unwrap_or_else(|| "memory://".to_owned());
            multi_thread().and_then(|rt| rt.block_on(crate::demo::flash_sale(&backend, &args)))
        }
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("dlock: {}", f.message);
            f.code
        }
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot start the runtime: {e}")))
}

fn multi_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot start the runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let m = command().try_get_matches_from(args)?;
        Cli::from_arg_matches(&m)
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_the_flags() {
        let cli = parse(&["dlock", "run", "--key", "k", "--", "sh", "-c", "echo hi"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.command, ["sh", "-c", "echo hi"]);
        assert_eq!(args.grace, Duration::from_secs(5));
        assert!(args.wait.is_none() && !args.no_wait);
    }

    #[test]
    fn bad_input_is_a_one_line_usage_error() {
        for bad in [
            &["dlock", "run", "--key", "k", "--ttl", "30", "--", "true"][..],
            &["dlock", "run", "--key", "k", "--ttl", "50ms", "--", "true"],
            &["dlock", "run", "--key", "", "--", "true"],
            &[
                "dlock",
                "run",
                "--key",
                "k",
                "--wait",
                "1s",
                "--no-wait",
                "--",
                "true",
            ],
            &["dlock", "run", "--key", "k"],
            &["dlock", "run", "--kye", "k", "--", "true"],
            &["dlock", "status"],
        ] {
            let e = parse(bad).unwrap_err();
            let line = usage_line(&e);
            assert!(!line.contains('\n'), "{bad:?}: {line}");
            assert!(e.use_stderr(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_backend_says_how_to_give_one() {
        let f = require_backend(None, "run").unwrap_err();
        assert_eq!(f.code, exit::USAGE);
        assert!(f.message.contains("DLOCK_BACKEND"), "{}", f.message);
        assert_eq!(
            require_backend(Some("memory://".into()), "run").unwrap(),
            "memory://"
        );
    }
}
