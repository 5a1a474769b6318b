//! `flash-sale`: 1,000 buyers race for 100 items, without and with a lock.
//!
//! ```text
//! cargo demo                                   # memory://, 1000 buyers, 100 items
//! cargo demo --buyers 5000 --stock 10
//! cargo demo --backend redis://127.0.0.1:6379  # once that backend has landed
//! ```
//!
//! Exit codes: 0 when the lock protected the stock, 1 when it did not (or
//! another error), 64 for a bad URL or flag, 69 when the store cannot be
//! reached.

use clap::Parser;
use dlock_examples::exit_code;
use dlock_examples::flash_sale::{self, DEFAULT_KEY, Options};
use std::process::ExitCode;
use std::time::Duration;

/// 1,000 buyers race for 100 items of stock: once without a lock (the
/// stock is oversold), once with a dlock lock and a fenced stock (exactly
/// the stock is sold).
#[derive(Debug, Parser)]
#[command(name = "flash-sale", version)]
struct Args {
    /// Backend URL: memory://, redis://host:port, redlock://h1:p1,h2:p2,h3:p3,
    /// etcd://host:port, zk://host:port
    #[arg(long, env = "DLOCK_BACKEND", default_value = "memory://")]
    backend: String,

    /// How many buyers race (each a Tokio task).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    buyers: u32,

    /// How many items are for sale.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    stock: u32,

    /// The key every buyer locks.
    #[arg(long, default_value = DEFAULT_KEY)]
    key: String,

    /// How long a buyer waits for the lock before giving up.
    #[arg(long, default_value = "60s", value_parser = duration)]
    wait: Duration,

    /// How long one round trip to the stock takes (one to read the count,
    /// one to write the sale); 0s only yields.
    #[arg(long, default_value = "1ms", value_parser = duration)]
    round_trip: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    lock_core::parse_duration(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version print to stdout and succeed; a bad flag
            // is a usage error (64, as a bad URL).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let opts = Options {
        backend: args.backend,
        buyers: args.buyers,
        stock: args.stock,
        key: args.key,
        wait: args.wait,
        round_trip: args.round_trip,
    };
    match flash_sale::run(&opts).await {
        Ok(report) => {
            print!("{report}");
            if report.lock_held() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("flash-sale: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
