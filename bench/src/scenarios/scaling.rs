//! Scenario 6: how cost grows with concurrent tasks, and with Redlock's
//! node count.

use super::load;
use crate::report::Report;
use crate::subject::Subject;
use std::sync::Arc;
use std::time::Duration;

/// The scenario's id in the report.
pub const ID: &str = "scaling";

/// Concurrent tasks measured.
pub const LEVELS: [usize; 4] = [1, 8, 64, 256];

/// Adds the scenario's section to `report`.
pub fn describe(report: &mut Report, rounds: u32, seconds: f64) {
    report.section(
        ID,
        "6. How cost grows: 1, 8, 64, 256 tasks; Redlock on 3, 5, 7 nodes",
        &format!(
            "dlock alone, through `Locker`: N tasks of one process each lock and \
             release fresh keys of their own back to back for {seconds} s per round, \
             {rounds} rounds (the loop of scenario 4). Redlock is measured on 3, 5 \
             and 7 of the masters. Throughput in lock + release pairs per second; \
             latency per pair."
        ),
    );
}

/// Measures `subject` (named `label` in the table) at every level.
pub async fn run(
    report: &mut Report,
    backend: &str,
    label: &str,
    subject: Arc<dyn Subject>,
    round: u32,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<()> {
    for tasks in LEVELS {
        let l = load::run(
            subject.clone(),
            tasks,
            duration,
            &format!("{tag}-s{round}-{tasks}"),
        )
        .await?;
        let row = format!("{label}, {tasks} task{}", if tasks == 1 { "" } else { "s" });
        report.record(ID, backend, &row, "pairs/s", l.pairs_per_sec);
        report.record(ID, backend, &row, "p50 µs", l.latencies.p50());
        report.record(ID, backend, &row, "p99 µs", l.latencies.p99());
    }
    Ok(())
}
