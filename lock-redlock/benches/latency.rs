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
//! the median and spread (min .. max) of each ratio over the rounds.
//! Targets: redlock faster than rslock at the median (ratio < 1), and
//! within 1.5x of lock-redis.

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

async fn rslock_pair(manager: &LockManager, key: &str) -> Duration {
    let started = Instant::now();
    let lock = manager
        .lock(key.as_bytes(), TTL)
        .await
        .expect("rslock: free key");
    manager.unlock(&lock).await;
    started.elapsed()
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

async fn backend_pair(backend: &dyn Backend, key: &str) -> Duration {
    let req = AcquireRequest {
        key: Key::new(key).unwrap(),
        owner: Owner::random(),
        ttl: Ttl::new(TTL).unwrap(),
        wait: Wait::No,
    };
    let started = Instant::now();
    let grant = backend.acquire(&req).await.unwrap().expect("free key");
    let info = HoldInfo {
        key: req.key,
        owner: req.owner,
        token: grant.token,
        ttl: grant.ttl,
        handle: grant.handle,
    };
    backend.release(&info, 1).await.unwrap();
    started.elapsed()
}

async fn locker_pair(locker: &Locker, key: &str) -> Duration {
    let started = Instant::now();
    let guard = locker.try_lock(key).await.unwrap().expect("free key");
    guard.release().await.unwrap();
    started.elapsed()
}

/// Median and spread of per-round ratios, against a target `< max`.
fn summary(name: &str, mut ratios: Vec<f64>, max: f64) {
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
    runtime.block_on(async move {
        let masters = RedisMasters::start(5)
            .await
            .unwrap_or_else(|e| panic!("cannot start 5 redis-server masters: {e}"));
        let config = RedlockConfig::from_url(&masters.redlock_url()).unwrap();
        let redlock = RedlockBackend::connect(config.clone()).await.unwrap();
        let redlock_locker = Locker::new(
            Arc::new(RedlockBackend::connect(config).await.unwrap()) as Arc<dyn Backend>,
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
            raw.conns.push(client.get_connection_manager().await.unwrap());
        }

        // Warm up: load the scripts, open rslock's connections.
        for i in 0..300 {
            rslock_pair(&rslock, &format!("warm:rslock:{i}")).await;
            raw.pair(&format!("warm:raw:{i}")).await;
            backend_pair(&redlock, &format!("warm:redlock:{i}")).await;
            locker_pair(&redlock_locker, &format!("warm:redlock-locker:{i}")).await;
            backend_pair(&redis, &format!("warm:redis:{i}")).await;
            locker_pair(&redis_locker, &format!("warm:redis-locker:{i}")).await;
        }

        println!(
            "5 masters {}; {rounds} rounds x {iters} lock+release pairs per series; fresh keys; \
             p50 / p99 in microseconds",
            masters.redlock_url()
        );
        println!(
            "{:>5} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15} | rl-lk/rslock rl-be/rd-be rl-lk/rd-lk",
            "round", "rslock", "raw 5x scripts", "redlock backend", "redlock locker", "redis backend", "redis locker"
        );
        let (mut vs_rslock, mut vs_redis_backend, mut vs_redis_locker, mut be_vs_rslock) =
            (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let mut series: [Vec<Duration>; 6] = Default::default();
            for block in 0..iters.div_ceil(BLOCK) {
                let tag = |s: &str, i: usize| format!("{s}:{round}:{block}:{i}");
                for i in 0..BLOCK {
                    series[0].push(rslock_pair(&rslock, &tag("rslock", i)).await);
                }
                for i in 0..BLOCK {
                    series[5].push(raw.pair(&tag("raw", i)).await);
                }
                for i in 0..BLOCK {
                    series[1].push(backend_pair(&redlock, &tag("redlock", i)).await);
                }
                for i in 0..BLOCK {
                    series[2].push(locker_pair(&redlock_locker, &tag("redlock-locker", i)).await);
                }
                for i in 0..BLOCK {
                    series[3].push(backend_pair(&redis, &tag("redis", i)).await);
                }
                for i in 0..BLOCK {
                    series[4].push(locker_pair(&redis_locker, &tag("redis-locker", i)).await);
                }
            }
            let [rs, rb, rl, db, dl, raw5] = series.map(stats);
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
        println!("ratios at the median:");
        summary("redlock locker / rslock", vs_rslock, 1.0);
        summary("redlock backend / rslock", be_vs_rslock, 1.0);
        summary("redlock backend / redis backend", vs_redis_backend, 1.5);
        summary("redlock locker / redis locker", vs_redis_locker, 1.5);
    });
}
