//! Scenario 4: 64 tasks on distinct keys, next to `redis-benchmark -c 50`
//! running EVALSHA on the same Redis.

use super::load;
use crate::backends::Backend;
use crate::peers::raw_redis_acquire_script;
use crate::report::Report;
use crate::servers::hosts_of;
use crate::subject::Subject;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

/// The scenario's id in the report.
pub const ID: &str = "many-keys";

/// Tasks, each on keys of its own.
pub const TASKS: usize = 64;

/// The baseline's name in the table.
pub const BASELINE: &str = "redis-benchmark -c 50, EVALSHA";

/// Adds the scenario's section to `report`.
pub fn describe(report: &mut Report, rounds: u32, seconds: f64) {
    report.section(
        ID,
        "4. Many keys: 64 tasks on distinct keys",
        &format!(
            "{TASKS} tasks of one process, each locking and releasing fresh keys of \
             its own back to back for {seconds} s per round, {rounds} rounds: lock + \
             release pairs per second, and each pair's latency. On Redis the baseline \
             is `{BASELINE}` on the same server in the same round: 50 connections \
             (on 2 client threads, as this process has 2 runtime threads) \
             running the raw minimal acquire script (EXISTS, INCR, HSET, PEXPIRE) on \
             random keys, in commands per second. A pair is two scripts, so a \
             pairs/s ÷ EVALSHA/s ratio of 0.5 would match the baseline's script \
             rate. The baseline is not the server's ceiling: each of its 50 \
             connections waits for one answer before sending the next command, \
             while the `redis` crate's multiplexed connection (under lock-redis \
             and the SET NX peer) keeps many commands in flight on one socket, \
             which costs the server fewer reads and writes per command; so the \
             ratio can exceed 0.5."
        ),
    );
}

/// Measures dlock and the peers of `backend` (and the baseline on Redis).
pub async fn run(
    report: &mut Report,
    backend: Backend,
    subjects: &[Arc<dyn Subject>],
    rounds: u32,
    duration: Duration,
    redis_url: Option<&str>,
    tag: &str,
) -> anyhow::Result<()> {
    let measured: Vec<&Arc<dyn Subject>> = subjects
        .iter()
        .filter(|s| s.kind().is_lock_client())
        .collect();
    let name = backend.name();
    for round in 0..rounds {
        for (s, subject) in measured.iter().enumerate() {
            let l = load::run(
                (*subject).clone(),
                TASKS,
                duration,
                &format!("{tag}-m{round}-{s}"),
            )
            .await?;
            report.record(ID, name, subject.name(), "pairs/s", l.pairs_per_sec);
            report.record(ID, name, subject.name(), "p50 µs", l.latencies.p50());
            report.record(ID, name, subject.name(), "p99 µs", l.latencies.p99());
        }
        if let (Backend::Redis, Some(url)) = (backend, redis_url) {
            match redis_benchmark(url, duration).await {
                Ok(rate) => report.record(ID, name, BASELINE, "EVALSHA/s", rate),
                Err(e) => {
                    report.note(ID, format!("round {round}: redis-benchmark failed: {e:#}"));
                }
            }
        }
    }
    if backend == Backend::Redis {
        for subject in &measured {
            report.ratio(
                ID,
                name,
                (subject.name(), "pairs/s"),
                (BASELINE, "EVALSHA/s"),
                None,
            );
        }
    }
    Ok(())
}

/// EVALSHA per second of `redis-benchmark -c 50` against `url`, sized to
/// run about `duration`.
async fn redis_benchmark(url: &str, duration: Duration) -> anyhow::Result<f64> {
    let host = hosts_of(url)
        .into_iter()
        .next()
        .context("no host in the Redis URL")?;
    let (h, p) = host.rsplit_once(':').context("no port in the Redis URL")?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(raw_redis_acquire_script())
        .query_async(&mut conn)
        .await?;
    let requests = ((duration.as_secs_f64() * 30_000.0) as u64).max(10_000);
    let out = tokio::process::Command::new("redis-benchmark")
        .args([
            "-h",
            h,
            "-p",
            p,
            "-c",
            "50",
            "--threads",
            "2",
            "-r",
            "1000000",
            "-q",
        ])
        .args(["-n", &requests.to_string()])
        .args([
            "EVALSHA",
            &sha,
            "2",
            "bench:k:__rand_int__",
            "bench:c:__rand_int__",
            "owner",
            "30000",
        ])
        .output()
        .await
        .context("running redis-benchmark (install redis-tools)")?;
    anyhow::ensure!(
        out.status.success(),
        "redis-benchmark exited with {}",
        out.status
    );
    parse_rps(&String::from_utf8_lossy(&out.stdout)).with_context(|| {
        format!(
            "no rate in redis-benchmark's output: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The rate in `...: 41152.26 requests per second, p50=...`.
fn parse_rps(out: &str) -> Option<f64> {
    let before = out.rsplit_once(" requests per second")?.0;
    before.rsplit([' ', '\r', '\n']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_benchmark_rate_parses() {
        let out = "EVALSHA abc: rps=0.0\rEVALSHA abc 2 k c owner 30000: 41152.26 requests per second, p50=0.607 msec\n";
        assert_eq!(super::parse_rps(out), Some(41152.26));
    }
}
