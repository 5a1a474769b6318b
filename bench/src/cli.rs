//! The command line.

use crate::backends::Backend;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `dlock-bench`: every backend against its raw store and its peers, in one
/// run; writes the markdown report and a CSV beside it.
#[derive(Debug, Parser)]
#[command(name = "dlock-bench", version, about)]
pub struct Cli {
    /// A hidden helper mode (many holds in a child process).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The run's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Hidden subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Holds many locks with renewal for a while and prints this process's
    /// CPU and memory (started by the many-holds scenario, one per backend).
    #[command(hide = true)]
    Hold(HoldArgs),
}

/// What a many-holds child does.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The backend URL.
    #[arg(long)]
    pub url: String,
    /// How many locks to hold at once.
    #[arg(long, default_value_t = 10_000)]
    pub holds: usize,
    /// The ttl of each hold, in seconds (renewal on).
    #[arg(long, default_value_t = 30)]
    pub ttl_secs: u64,
    /// How long to hold them, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Key prefix.
    #[arg(long, default_value = "holds")]
    pub prefix: String,
}

/// A scenario of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ScenarioName {
    /// 1 and 2: lock + release on fresh keys, one at a time.
    Uncontended,
    /// 3: 32 tasks on one key.
    HotKey,
    /// 4: 64 tasks on distinct keys, against redis-benchmark.
    ManyKeys,
    /// 6: 1, 8, 64, 256 tasks; Redlock on 3, 5, 7 nodes.
    Scaling,
    /// 5: 10,000 holds with renewal for a minute.
    ManyHolds,
}

impl ScenarioName {
    /// All, in the order a run goes through them.
    pub const ALL: [ScenarioName; 5] = [
        ScenarioName::Uncontended,
        ScenarioName::HotKey,
        ScenarioName::ManyKeys,
        ScenarioName::Scaling,
        ScenarioName::ManyHolds,
    ];
}

/// Options of a run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub out: PathBuf,
    /// The CSV to write [default: benchmarks.csv beside --out].
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Only these backends (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Backend>,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioName>,
    /// Rounds of every scenario but the uncontended one and many holds;
    /// figures are the median of the rounds, with their range.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Rounds of the uncontended scenario.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub uncontended_rounds: u32,
    /// Lock + release pairs per subject per uncontended round.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub pairs: u32,
    /// Seconds each concurrent measurement (hot key, many keys) runs per
    /// subject per round; scaling runs half of it per task count.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Locks held at once in the many-holds scenario.
    #[arg(long, default_value_t = 10_000)]
    pub holds: usize,
    /// How long the many-holds scenario holds them, in seconds.
    #[arg(long, default_value_t = 60)]
    pub hold_seconds: u64,
    /// Use this Redis (`redis://host:port`) instead of starting one.
    #[arg(long)]
    pub redis: Option<String>,
    /// Use these Redis masters (`redlock://h1:p1,...`, 7 of them for the
    /// node-count figures; fewer drop the larger counts) instead of
    /// starting them.
    #[arg(long)]
    pub redlock: Option<String>,
    /// Use this etcd (`etcd://host:port`) instead of starting one.
    #[arg(long)]
    pub etcd: Option<String>,
    /// Use this ZooKeeper (`zk://host:port`) instead of starting one.
    #[arg(long)]
    pub zk: Option<String>,
}

impl RunArgs {
    /// The backends to run, in table order.
    pub fn backends(&self) -> Vec<Backend> {
        pick(&self.only, &Backend::ALL)
    }

    /// The scenarios to run, in run order.
    pub fn scenario_list(&self) -> Vec<ScenarioName> {
        pick(&self.scenarios, &ScenarioName::ALL)
    }

    /// The CSV path.
    pub fn csv_path(&self) -> PathBuf {
        self.csv.clone().unwrap_or_else(|| {
            self.out.parent().map_or_else(
                || PathBuf::from("benchmarks.csv"),
                |d| d.join("benchmarks.csv"),
            )
        })
    }

    /// Checks what clap cannot: a clear message, no panic.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(format!(
                "--seconds {} is out of range (0 < s <= 3600)",
                self.seconds
            ));
        }
        if self.holds == 0 || self.holds > 1_000_000 {
            return Err(format!(
                "--holds {} is out of range (1 ..= 1000000)",
                self.holds
            ));
        }
        if self.hold_seconds == 0 {
            return Err("--hold-seconds must be at least 1".into());
        }
        Ok(())
    }
}

fn pick<T: Copy + Ord>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        return all.to_vec();
    }
    all.iter().copied().filter(|x| chosen.contains(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_keep_run_order() {
        let cli = Cli::try_parse_from([
            "dlock-bench",
            "--only",
            "zk,redis",
            "--scenarios",
            "many-holds,uncontended",
        ])
        .unwrap();
        assert_eq!(cli.run.backends(), vec![Backend::Redis, Backend::Zk]);
        assert_eq!(
            cli.run.scenario_list(),
            vec![ScenarioName::Uncontended, ScenarioName::ManyHolds]
        );
        assert_eq!(cli.run.csv_path(), PathBuf::from("docs/benchmarks.csv"));
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        assert!(Cli::try_parse_from(["dlock-bench", "--only", "mongo"]).is_err());
        assert!(Cli::try_parse_from(["dlock-bench", "--rounds", "0"]).is_err());
        let cli = Cli::try_parse_from(["dlock-bench", "--seconds", "0"]).unwrap();
        assert!(cli.run.validate().is_err());
    }
}
