//! Uncontended lock + release latency of the redlock backend, in one run on
//! the same 5 kit `redis-server` masters, next to the `rslock` crate (the
//! popular Redlock client) and next to lock-redis on one of the nodes.
//!
//! Not a timed test: it prints figures. Run with
//! `cargo bench -p lock-redlock --bench latency` (`BENCH_ROUNDS` and
//! `BENCH_ITERS` change the run's size).
//!
//! Each round measures, interleaved in blocks of 100 so that load on the
//! machine hits every series alike, with a fresh key for every pair:
//! - `rslock`: `LockManager::lock` + `LockManager::unlock` over the 5
//!   masters (SET NX PX on each, no fencing token, no re-entry);
//! - `raw 5x scripts`: this backend's two scripts sent raw to the 5
//!   masters at once, waiting for all: the floor of the design;
//! - `redlock backend`: this crate's `Backend::acquire` + `release`;
//! - `redlock locker`: `Locker::try_lock` + `LockGuard::release` over this
//!   crate, what users call;
//! - `redis backend` / `redis locker`: the same with lock-redis on node 0.
//!
//! Per round: p50 and p99 of each, and ratios at the median; at the end,
//! the acquire and the release apart (p50 over all rounds) for rslock and
//! both backends, and the median and spread (min .. max) of each ratio
//! over the rounds. Targets: redlock faster than rslock at the median
//! (ratio < 1), and within 1.5x of lock-redis.
//!
//! `BENCH_IN_TASK=1` runs the series in a task on the runtime's workers
//! (as a lock taken in a request handler) instead of on the `block_on`
//! thread. `BENCH_PROFILE=1` adds, per series run alone, the CPU time per
//! pair of this process and of each master (from `/proc/*/schedstat`),
//! node 0's commands per pair and their `usec_per_call`, and the acquire
//! half alone sent raw to the 5 masters as rslock's `SET NX PX` and as this
//! backend's acquire script: the servers' share of the difference.

use conformance::kit::RedisMasters;
use futures::future::join_all;
use lock_core::{AcquireRequest, Backend, HoldInfo, Key, Locker, Owner, Ttl, Wait};
use lock_redis::{RedisBackend, RedisConfig, lua};
use lock_redlock::{RedlockBackend, RedlockConfig};
use rslock::LockManager;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(30);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of `samples`.
fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    (at(0.50), at(0.99))
}

/// One pair's time: the acquire, and the release after it.
#[derive(Clone, Copy, Default)]
struct Pair {
    acquire: Duration,
    release: Duration,
}

impl Pair {
    fn total(self) -> Duration {
        self.acquire + self.release
    }
}

async fn rslock_pair(manager: &LockManager, key: &str) -> Pair {
    let started = Instant::now();
    let lock = manager
        .lock(key.as_bytes(), TTL)
        .await
        .expect("rslock: free key");
    let acquire = started.elapsed();
    manager.unlock(&lock).await;
    Pair {
        acquire,
        release: started.elapsed() - acquire,
    }
}

/// The floor of this design: the backend's own acquire and release
/// scripts ([`lock_redis::lua`]) sent raw to all 5 masters at once
/// (`join_all`), waiting for every answer, with no client logic.
struct Raw {
    conns: Vec<redis::aio::ConnectionManager>,
    acquire: redis::Script,
    release: redis::Script,
}

impl Raw {
    /// The acquire half alone, sent raw to all 5 masters at once, waiting
    /// for every answer: rslock's `SET NX PX` (`script` false) or this
    /// backend's acquire script with a proposed token. Same client, same
    /// connections: the difference is the servers' work.
    async fn acquire_only(&mut self, key: &str, script: bool) -> Duration {
        let counter = format!("redisson_lock_token:{{{key}}}");
        let owner = "bench-owner";
        let started = Instant::now();
        let (acquire, counter) = (&self.acquire, &counter);
        join_all(self.conns.iter_mut().map(|conn| async move {
            let reply: redis::RedisResult<redis::Value> = if script {
                acquire
                    .key(key)
                    .key(counter)
                    .arg(owner)
                    .arg(30_000u64)
                    .arg(1u64)
                    .invoke_async(conn)
                    .await
            } else {
                redis::cmd("SET")
                    .arg(key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000u64)
                    .query_async(conn)
                    .await
            };
            reply.expect("raw acquire");
        }))
        .await;
        started.elapsed()
    }

    async fn pair(&mut self, key: &str) -> Duration {
        let counter = format!("redisson_lock_token:{{{key}}}");
        let channel = format!("redisson_lock__channel:{{{key}}}");
        let owner = "bench-owner";
        let started = Instant::now();
        let (acquire, release) = (&self.acquire, &self.release);
        let (counter, channel) = (&counter, &channel);
        join_all(self.conns.iter_mut().map(|conn| async move {
            let reply: redis::Value = acquire
                .key(key)
                .key(counter)
                .arg(owner)
                .arg(30_000u64)
                .arg(1u64)
                .invoke_async(conn)
                .await
                .expect("raw acquire");
            let _: i64 = release
                .key(key)
                .key(counter)
                .key(channel)
                .arg(owner)
                .arg(1u64)
                .arg(1u32)
                .invoke_async(conn)
                .await
                .expect("raw release");
            drop(reply);
        }))
        .await;
        started.elapsed()
    }
}

async fn backend_pair(backend: &dyn Backend, key: &str) -> Pair {
    let req = AcquireRequest {
        key: Key::new(key).unwrap(),
        owner: Owner::random(),
        ttl: Ttl::new(TTL).unwrap(),
        wait: Wait::No,
    };
    let started = Instant::now();
    let grant = backend.acquire(&req).await.unwrap().expect("free key");
    let acquire = started.elapsed();
    let info = HoldInfo {
        key: req.key,
        owner: req.owner,
        token: grant.token,
        ttl: grant.ttl,
        handle: grant.handle,
    };
    backend.release(&info, 1).await.unwrap();
    Pair {
        acquire,
        release: started.elapsed() - acquire,
    }
}

async fn locker_pair(locker: &Locker, key: &str) -> Duration {
    let started = Instant::now();
    let guard = locker.try_lock(key).await.unwrap().expect("free key");
    guard.release().await.unwrap();
    started.elapsed()
}

/// Median and spread of per-round ratios, against a target `< max`.
fn summary(name: &str, mut ratios: Vec<f64>, max: f64) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let verdict = if median < max { "met" } else { "NOT met" };
    println!(
        "{name:<32} median {median:.3}, spread {:.3} .. {:.3} over {} rounds (target < {max}: {verdict})",
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

fn main() {
    let rounds = env("BENCH_ROUNDS", 5);
    let iters = env("BENCH_ITERS", 1000);
    const BLOCK: usize = 100;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async move {
        let masters = RedisMasters::start(5)
            .await
            .unwrap_or_else(|e| panic!("cannot start 5 redis-server masters: {e}"));
        let config = RedlockConfig::from_url(&masters.redlock_url()).unwrap();
        let redlock = RedlockBackend::connect(config.clone()).await.unwrap();
        let redlock_locker = Locker::new(
            Arc::new(RedlockBackend::connect(config).await.unwrap()) as Arc<dyn Backend>
        );
        let one = masters.node(0).addr();
        let redis_config = RedisConfig::new(one.ip().to_string(), one.port());
        let redis = RedisBackend::connect(redis_config.clone()).await.unwrap();
        let redis_locker = Locker::new(
            Arc::new(RedisBackend::connect(redis_config).await.unwrap()) as Arc<dyn Backend>,
        );
        let rslock = LockManager::new(masters.urls());
        let mut raw = Raw {
            conns: Vec::new(),
            acquire: redis::Script::new(lua::ACQUIRE),
            release: redis::Script::new(&format!("{}{}", lua::OURS, lua::RELEASE)),
        };
        for url in masters.urls() {
            let client = redis::Client::open(url).unwrap();
            raw.conns
                .push(client.get_connection_manager().await.unwrap());
        }
        let mut s = Subjects {
            rslock,
            raw,
            redlock,
            redlock_locker,
            redis,
            redis_locker,
        };

        // Warm up: load the scripts, open rslock's connections.
        for i in 0..300 {
            for series in 0..SERIES.len() {
                s.pair(series, &format!("warm:{series}:{i}")).await;
            }
        }

        println!(
            "5 masters {}; {rounds} rounds x {iters} lock+release pairs per series; fresh keys; \
             p50 / p99 in microseconds{}",
            masters.redlock_url(),
            if in_task() { "; in a spawned task" } else { "" }
        );
        print!("{:>5}", "round");
        for name in SERIES {
            print!(" | {name:>15}");
        }
        println!(" | rl-lk/rslock rl-be/rd-be rl-lk/rd-lk");
        let (mut vs_rslock, mut vs_redis_backend, mut vs_redis_locker, mut be_vs_rslock) =
            (vec![], vec![], vec![], vec![]);
        // Acquire and release apart: rslock, redlock backend, redis backend.
        let mut halves: [Vec<Pair>; 3] = Default::default();
        for round in 0..rounds {
            let mut series: [Vec<Duration>; 6] = Default::default();
            for block in 0..iters.div_ceil(BLOCK) {
                for (k, samples) in series.iter_mut().enumerate() {
                    for i in 0..BLOCK {
                        let pair = s.pair(k, &format!("{k}:{round}:{block}:{i}")).await;
                        samples.push(pair.total());
                        match k {
                            RSLOCK => halves[0].push(pair),
                            REDLOCK_BACKEND => halves[1].push(pair),
                            REDIS_BACKEND => halves[2].push(pair),
                            _ => {}
                        }
                    }
                }
            }
            let [rs, raw5, rb, rl, db, dl] = series.map(stats);
            let ratio = |x: (Duration, Duration), y: (Duration, Duration)| us(x.0) / us(y.0);
            vs_rslock.push(ratio(rl, rs));
            be_vs_rslock.push(ratio(rb, rs));
            vs_redis_backend.push(ratio(rb, db));
            vs_redis_locker.push(ratio(rl, dl));
            let cell = |x: (Duration, Duration)| format!("{:>6.1} / {:>6.1}", us(x.0), us(x.1));
            println!(
                "{round:>5} | {} | {} | {} | {} | {} | {} | {:>12.3} {:>11.3} {:>11.3}",
                cell(rs),
                cell(raw5),
                cell(rb),
                cell(rl),
                cell(db),
                cell(dl),
                ratio(rl, rs),
                ratio(rb, db),
                ratio(rl, dl)
            );
        }
        if rounds > 0 {
            println!("acquire and release apart, p50 over all rounds (microseconds):");
            for (name, pairs) in ["rslock", "redlock backend", "redis backend"]
                .iter()
                .zip(halves)
            {
                let p50 = |f: fn(&Pair) -> Duration| stats(pairs.iter().map(f).collect()).0;
                println!(
                    "  {name:<16} acquire {:>6.1}   release {:>6.1}",
                    us(p50(|p| p.acquire)),
                    us(p50(|p| p.release))
                );
            }
            println!("ratios at the median:");
            summary("redlock locker / rslock", vs_rslock, 1.0);
            summary("redlock backend / rslock", be_vs_rslock, 1.0);
            summary("redlock backend / redis backend", vs_redis_backend, 1.5);
            summary("redlock locker / redis locker", vs_redis_locker, 1.5);
        }
        if std::env::var("BENCH_PROFILE").is_ok() {
            profile(&masters, &mut s).await;
        }
    };
    if in_task() {
        runtime.block_on(async { runtime.spawn(body).await.unwrap() });
    } else {
        runtime.block_on(body);
    }
}

/// `BENCH_IN_TASK`: run the series in a task on the runtime's workers (as
/// a lock taken in a request handler) instead of on the thread that calls
/// `block_on` (as `#[tokio::main]`'s body).
fn in_task() -> bool {
    std::env::var("BENCH_IN_TASK").is_ok()
}

const SERIES: [&str; 6] = [
    "rslock",
    "raw 5x scripts",
    "redlock backend",
    "redlock locker",
    "redis backend",
    "redis locker",
];
const RSLOCK: usize = 0;
const REDLOCK_BACKEND: usize = 2;
const REDIS_BACKEND: usize = 4;

/// Everything measured, on the same 5 masters.
struct Subjects {
    rslock: LockManager,
    raw: Raw,
    redlock: RedlockBackend,
    redlock_locker: Locker,
    redis: RedisBackend,
    redis_locker: Locker,
}

impl Subjects {
    /// One lock + release pair of series `k` ([`SERIES`]) on `key`.
    async fn pair(&mut self, k: usize, key: &str) -> Pair {
        let whole = |d| Pair {
            acquire: d,
            release: Duration::ZERO,
        };
        match k {
            0 => rslock_pair(&self.rslock, key).await,
            1 => whole(self.raw.pair(key).await),
            2 => backend_pair(&self.redlock, key).await,
            3 => whole(locker_pair(&self.redlock_locker, key).await),
            4 => backend_pair(&self.redis, key).await,
            _ => whole(locker_pair(&self.redis_locker, key).await),
        }
    }
}

/// Nanoseconds a thread ran, from its `schedstat`.
fn ran_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process (every thread), in nanoseconds.
fn client_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| ran_ns(&format!("{}/schedstat", e.path().display())))
                .sum()
        })
        .unwrap_or(0)
}

/// CPU time of each master's main thread (where commands run), in
/// nanoseconds.
fn servers_ns(masters: &RedisMasters) -> Vec<u64> {
    masters
        .nodes()
        .iter()
        .map(|n| ran_ns(&format!("/proc/{}/schedstat", n.pid().unwrap_or(0))))
        .collect()
}

/// `INFO commandstats` of node 0 after `CONFIG RESETSTAT` on every node.
async fn commandstats(masters: &RedisMasters, reset: bool) -> String {
    let mut out = String::new();
    for url in masters.urls() {
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        if reset {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut c)
                .await
                .unwrap();
        } else {
            out = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut c)
                .await
                .unwrap();
            break;
        }
    }
    out
}

/// `BENCH_PROFILE`: where the time goes. Per series, run alone: wall time,
/// CPU time of this process and of each master per pair, and node 0's
/// commands (calls per pair, microseconds per call, as Redis measures them:
/// wall time, so a command preempted midway counts long). Then the acquire
/// half alone, raw, as rslock sends it and as this backend does.
async fn profile(masters: &RedisMasters, s: &mut Subjects) {
    let n = env("BENCH_PROFILE_ITERS", 1000);
    println!("profile: {n} pairs per series, each series alone; microseconds per pair");
    for (k, name) in SERIES.iter().enumerate() {
        commandstats(masters, true).await;
        let (client0, servers0) = (client_ns(), servers_ns(masters));
        let started = Instant::now();
        for i in 0..n {
            s.pair(k, &format!("profile:{k}:{i}")).await;
        }
        let wall = us(started.elapsed()) / n as f64;
        let (client1, servers1) = (client_ns(), servers_ns(masters));
        let per_pair = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64 / 1e3;
        let servers: Vec<f64> = servers1
            .iter()
            .zip(&servers0)
            .map(|(&a, &b)| per_pair(a, b))
            .collect();
        let mut cmds = Vec::new();
        for line in commandstats(masters, false).await.lines() {
            let Some((cmd, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            if cmd != "config|resetstat" {
                cmds.push(format!(
                    "{cmd} {:.0}x {:.1}us",
                    field("calls") / n as f64,
                    field("usec_per_call")
                ));
            }
        }
        println!(
            "  {name:<15} wall {wall:>6.1}  cpu: client {:>6.1}, masters {:>6.1} ({})  node 0: {}",
            per_pair(client1, client0),
            servers.iter().sum::<f64>(),
            servers
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            cmds.join(", ")
        );
    }
    let (mut set, mut script) = (Vec::new(), Vec::new());
    for block in 0..n.div_ceil(100) {
        for i in 0..100 {
            set.push(
                s.raw
                    .acquire_only(&format!("half:set:{block}:{i}"), false)
                    .await,
            );
        }
        for i in 0..100 {
            script.push(
                s.raw
                    .acquire_only(&format!("half:script:{block}:{i}"), true)
                    .await,
            );
        }
    }
    let (set, script) = (stats(set), stats(script));
    println!(
        "  acquire half alone, raw to 5 masters, all answers: SET NX PX p50 {:.1}, \
         this backend's acquire script p50 {:.1}",
        us(set.0),
        us(script.0)
    );
}
