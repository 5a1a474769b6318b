//! Scenario 3: 32 tasks contend for one key, each holding it for ~0 time.

use crate::backends::Backend;
use crate::report::Report;
use crate::stats::Latencies;
use crate::subject::Subject;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The scenario's id in the report.
pub const ID: &str = "hot-key";

/// Tasks on the key.
pub const TASKS: usize = 32;

/// How long the waiters left at the deadline may take to get their grant.
const DRAIN: Duration = Duration::from_secs(60);

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
             time from the moment a holder starts its release to the moment another \
             task's lock call returns (so it includes the release round trip); \
             `hand-offs/s` counts those. `same holder again %` is the share of grants \
             that went to the task that had just released (it loops straight back \
             to `lock`): an unfair lock lets it win against waiters that are asleep, \
             which makes grants/s high and hand-offs rare."
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
    let contenders: Vec<&Arc<dyn Subject>> = subjects
        .iter()
        .filter(|s| s.kind().is_lock_client())
        .collect();
    for round in 0..rounds {
        for (s, subject) in contenders.iter().enumerate() {
            let key = format!("{tag}-h{round}-{s}");
            let (grants, handoffs) = contend((*subject).clone(), &key, duration).await?;
            let l = Latencies::new(handoffs);
            let (name, secs) = (subject.name(), duration.as_secs_f64());
            let same = 100.0 * grants.same as f64 / grants.all.max(1) as f64;
            for (metric, v) in [
                ("grants/s", grants.all as f64 / secs),
                ("hand-offs/s", l.len() as f64 / secs),
                ("same holder again %", same),
                ("hand-off p50 µs", l.p50()),
                ("hand-off p99 µs", l.p99()),
            ] {
                report.record(ID, backend.name(), name, metric, v);
            }
        }
    }
    Ok(())
}

/// Grants counted by the tasks.
#[derive(Debug, Default)]
struct Grants {
    /// All grants.
    all: u64,
    /// Grants to the task that had just released the key.
    same: u64,
}

/// [`TASKS`] tasks on `key` for `duration`: grants, and the hand-offs to
/// another task.
async fn contend(
    subject: Arc<dyn Subject>,
    key: &str,
    duration: Duration,
) -> anyhow::Result<(Grants, Vec<Duration>)> {
    let deadline = Instant::now() + duration;
    let released_at: Arc<Mutex<Option<(Instant, usize)>>> = Arc::default();
    let handoffs: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut set = JoinSet::new();
    for task in 0..TASKS {
        let (subject, key) = (subject.clone(), key.to_owned());
        let (released_at, handoffs) = (released_at.clone(), handoffs.clone());
        set.spawn(async move {
            let mut grants = Grants::default();
            // No lock call is cancelled: at the deadline, waiters still
            // wait for their grant, then release and stop (grants after the
            // deadline are not counted), so every subject ends its rounds
            // with nothing left behind in the store.
            while Instant::now() < deadline {
                let hold = subject.lock(&key).await?;
                let granted = Instant::now();
                if granted >= deadline {
                    subject.unlock(hold).await?;
                    break;
                }
                grants.all += 1;
                let previous = released_at.lock().unwrap_or_else(|p| p.into_inner()).take();
                match previous {
                    Some((_, by)) if by == task => grants.same += 1,
                    Some((at, _)) => handoffs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(granted - at),
                    None => {}
                }
                *released_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), task));
                subject.unlock(hold).await?;
            }
            Ok::<_, anyhow::Error>(grants)
        });
    }
    let mut grants = Grants::default();
    let drained = tokio::time::timeout(duration + DRAIN, async {
        while let Some(joined) = set.join_next().await {
            let g = joined??;
            grants.all += g.all;
            grants.same += g.same;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match drained {
        Ok(done) => done?,
        Err(_) => anyhow::bail!(
            "{}: the waiters were not all granted within {DRAIN:?} after the deadline",
            subject.name()
        ),
    }
    let handoffs = std::mem::take(&mut *handoffs.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((grants, handoffs))
}
