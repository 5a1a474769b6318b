//! The loop of the many-keys and scaling scenarios: `tasks` tasks, each
//! locking and releasing fresh keys of its own, back to back, for a while.

use crate::stats::Latencies;
use crate::subject::Subject;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What one load run measured.
#[derive(Debug)]
pub struct Load {
    /// Lock + release pairs per second, all tasks together.
    pub pairs_per_sec: f64,
    /// The latency of each pair.
    pub latencies: Latencies,
}

/// Runs `tasks` tasks on distinct keys for `duration`.
pub async fn run(
    subject: Arc<dyn Subject>,
    tasks: usize,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<Load> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for task in 0..tasks {
        let subject = subject.clone();
        let prefix = format!("{tag}-{task}");
        set.spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let hold = subject.lock(&format!("{prefix}-{i}")).await?;
                subject.unlock(hold).await?;
                samples.push(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        all.extend(joined??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Load {
        pairs_per_sec: all.len() as f64 / elapsed,
        latencies: Latencies::new(all),
    })
}
