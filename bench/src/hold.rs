//! The child side of the many-holds scenario (`dlock-bench hold`): takes
//! many locks with renewal on, holds them, and reports this process's CPU
//! and memory on stdout, one `key=value` line per phase.

use crate::backends::register_all;
use crate::cli::HoldArgs;
use crate::procstat::{cpu_time, rss_kib};
use crate::servers::with_option;
use futures::StreamExt as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Locks taken at once while acquiring.
const IN_FLIGHT: usize = 64;

/// Runs the child, then exits the process without releasing (the holds
/// expire with their ttl, or with the session on ZooKeeper).
pub async fn run(args: &HoldArgs) -> anyhow::Result<()> {
    register_all();
    let url = with_option(&args.url, &format!("ttl={}s", args.ttl_secs));
    let locker = lock_core::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
    let rss_before = rss_kib()?;
    let started = Instant::now();
    let guards: Vec<_> = futures::stream::iter(0..args.holds)
        .map(|i| {
            let locker = locker.clone();
            let key = format!("{}-{i}", args.prefix);
            async move { locker.lock(&key).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let guards = guards.into_iter().collect::<Result<Vec<_>, _>>()?;
    let acquire = started.elapsed();
    say(&format!("held acquire_s={:.3}", acquire.as_secs_f64()));
    let (cpu0, t0) = (cpu_time()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (cpu1, wall) = (cpu_time()?, t0.elapsed());
    let kept = guards.iter().filter(|g| g.is_held()).count();
    say(&format!(
        "done cpu_pct={:.3} rss_kib={} rss_before_kib={rss_before} kept={kept} acquire_s={:.3}",
        (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64() * 100.0,
        rss_kib()?,
        acquire.as_secs_f64()
    ));
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
