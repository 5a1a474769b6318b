//! `dlock bench`: two scenarios on the store given (the full comparison
//! across backends and peers is the `dlock-bench` crate).

use crate::cli::BenchArgs;
use crate::exit::{self, Failure};
use lock_core::{ErrorKind, Locker};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) samples: Vec<Duration>,
    /// Operations per second, and what an operation is.
    pub(crate) rate: Option<(f64, &'static str)>,
}

pub(crate) use conformance::stats::percentile;

fn millis(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    })
}

/// The table.
pub(crate) fn table(target: &str, backend: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "dlock bench: {target} (backend {backend})");
    let _ = writeln!(
        out,
        "{:<36} {:>8} {:>11} {:>11} {:>16}",
        "SCENARIO", "SAMPLES", "P50", "P99", "THROUGHPUT"
    );
    for row in rows {
        let mut sorted = row.samples.clone();
        sorted.sort_unstable();
        let rate = row
            .rate
            .map_or("-".to_owned(), |(r, what)| format!("{r:.0} {what}/s"));
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>11} {:>11} {:>16}",
            row.scenario,
            sorted.len(),
            millis(percentile(&sorted, 0.50)),
            millis(percentile(&sorted, 0.99)),
            rate
        );
    }
    out
}

fn failed(e: &lock_core::Error) -> Failure {
    Failure::from_error(e)
}

/// Lock + release of one key, nobody else contending.
async fn uncontended(locker: &Locker, key: &str, iterations: u32) -> Result<Row, Failure> {
    let mut samples = Vec::with_capacity(iterations as usize);
    let started = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        let guard = locker.try_lock(key).await.map_err(|e| failed(&e))?;
        let guard = guard.ok_or_else(|| {
            Failure::new(
                exit::FAILURE,
                format!("bench key {key:?} is held by someone else"),
            )
        })?;
        guard.release().await.map_err(|e| failed(&e))?;
        samples.push(t.elapsed());
    }
    let rate = f64::from(iterations) / started.elapsed().as_secs_f64().max(1e-9);
    Ok(Row {
        scenario: "uncontended lock+release".to_owned(),
        samples,
        rate: Some((rate, "ops")),
    })
}

/// `tasks` tasks lock and release one key for `duration`: grants per
/// second, and the time from a release to the next grant.
async fn hot_key(
    locker: &Locker,
    key: &str,
    tasks: u32,
    duration: Duration,
) -> Result<Row, Failure> {
    let stop_at = Instant::now() + duration;
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handoffs: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let grants = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (locker, key) = (locker.clone(), key.to_owned());
        let (released_at, handoffs) = (released_at.clone(), handoffs.clone());
        let (grants, inside, overlaps) = (grants.clone(), inside.clone(), overlaps.clone());
        set.spawn(async move {
            loop {
                let left = stop_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                let guard = match locker.request(&key).wait(left).lock().await {
                    Ok(guard) => guard,
                    Err(e) if e.kind() == ErrorKind::Timeout => return Ok(()),
                    Err(e) => return Err(e),
                };
                let granted = Instant::now();
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                grants.fetch_add(1, Ordering::Relaxed);
                let previous = released_at.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(previous) = previous {
                    handoffs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(granted - previous);
                }
                inside.store(false, Ordering::SeqCst);
                *released_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                guard.release().await?;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(&e)),
            Err(e) => {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!("a bench task failed: {e}"),
                ));
            }
        }
    }
    let overlaps = overlaps.load(Ordering::SeqCst);
    if overlaps > 0 {
        return Err(Failure::new(
            exit::FAILURE,
            format!("MUTUAL EXCLUSION VIOLATED: {overlaps} grants overlapped another hold"),
        ));
    }
    let grants = grants.load(Ordering::Relaxed) as f64;
    let samples = std::mem::take(&mut *handoffs.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Row {
        scenario: format!("hot key, {tasks} tasks: hand-off"),
        samples,
        rate: Some((grants / started.elapsed().as_secs_f64().max(1e-9), "grants")),
    })
}

/// Runs `dlock bench` on `backend`; returns the exit code.
pub(crate) async fn bench(backend: &str, args: &BenchArgs) -> Result<u8, Failure> {
    let locker = crate::connect(backend)
        .await
        .map_err(|e| Failure::connect(backend, &e))?;
    let base = format!("{}/{}", args.prefix, uuid::Uuid::new_v4());
    lock_core::Key::new(format!("{base}/uncontended")).map_err(|e| failed(&e))?;
    let rows = vec![
        uncontended(&locker, &format!("{base}/uncontended"), args.iterations).await?,
        hot_key(&locker, &format!("{base}/hot"), args.tasks, args.duration).await?,
    ];
    print!(
        "{}",
        table(
            &lock_core::redact(backend),
            locker.capabilities().name,
            &rows
        )
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_scenarios_run_on_memory() {
        let locker = crate::connect("memory://bench-test").await.unwrap();
        let row = uncontended(&locker, "b/u", 20).await.unwrap();
        assert_eq!(row.samples.len(), 20);
        let row = hot_key(&locker, "b/h", 8, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(!row.samples.is_empty());
        let text = table("memory://", "memory", &[row]);
        assert!(text.contains("hot key, 8 tasks"), "{text}");
    }
}
