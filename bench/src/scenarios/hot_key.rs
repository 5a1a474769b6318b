//! Scenario 3: 32 tasks contend for one key, each holding it for ~0 time.

use crate::backends::Backend;
use crate::report::Report;
use crate::stats::Latencies;
use crate::subject::{Kind, Subject};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The scenario's id in the report.
pub const ID: &str = "hot-key";

/// Tasks on the key.
pub const TASKS: usize = 32;

/// Adds the scenario's section to `report`.
pub fn describe(report: &mut Report, rounds: u32, seconds: f64) {
    report.section(
        ID,
        "3. Hot key: 32 tasks on one key",
        &format!(
            "{TASKS} tasks of one process loop on one key: lock (waiting as the \
             subject waits: dlock by notification from the store, the SET NX peer by \
             polling every 100 ms, rslock by retrying after a random delay of up to \
             200 ms, etcd's LockClient in a server-side queue, the ZooKeeper recipe \
             by a watch on its predecessor), then release at once. `grants/s` counts \
             grants over {seconds} s per round, {rounds} rounds. `hand-off` is the \
             time from the moment a holder starts its release to the moment the next \
             holder's lock call returns (so it includes the release round trip)."
        ),
    );
}

/// Measures dlock and the peers of `backend`.
pub async fn run(
    report: &mut Report,
    backend: Backend,
    subjects: &[Arc<dyn Subject>],
    rounds: u32,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<()> {
    let contenders: Vec<&Arc<dyn Subject>> =
        subjects.iter().filter(|s| s.kind() != Kind::Raw).collect();
    for round in 0..rounds {
        for (s, subject) in contenders.iter().enumerate() {
            let key = format!("{tag}-h{round}-{s}");
            let (grants, handoffs) = contend((*subject).clone(), &key, duration).await?;
            let l = Latencies::new(handoffs);
            report.record(
                ID,
                backend.name(),
                subject.name(),
                "grants/s",
                grants as f64 / duration.as_secs_f64(),
            );
            report.record(
                ID,
                backend.name(),
                subject.name(),
                "hand-off p50 µs",
                l.p50(),
            );
            report.record(
                ID,
                backend.name(),
                subject.name(),
                "hand-off p99 µs",
                l.p99(),
            );
        }
    }
    Ok(())
}

/// [`TASKS`] tasks on `key` for `duration`: grants, and the hand-offs.
async fn contend(
    subject: Arc<dyn Subject>,
    key: &str,
    duration: Duration,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let deadline = Instant::now() + duration;
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handoffs: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut set = JoinSet::new();
    for _ in 0..TASKS {
        let (subject, key) = (subject.clone(), key.to_owned());
        let (released_at, handoffs) = (released_at.clone(), handoffs.clone());
        set.spawn(async move {
            let mut grants = 0u64;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(hold) = tokio::time::timeout(left, subject.lock(&key)).await else {
                    return Ok::<_, anyhow::Error>(grants);
                };
                let hold = hold?;
                let granted = Instant::now();
                grants += 1;
                let previous = released_at.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(previous) = previous {
                    handoffs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(granted - previous);
                }
                *released_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                subject.unlock(hold).await?;
            }
        });
    }
    let mut grants = 0;
    while let Some(joined) = set.join_next().await {
        grants += joined??;
    }
    let handoffs = std::mem::take(&mut *handoffs.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((grants, handoffs))
}
