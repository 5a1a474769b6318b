//! Uncontended lock + release latency of the redis backend, next to two raw
//! EVALSHA round trips through the same `redis` client on the same server.
//!
//! Not a timed test: it prints figures. Run with
//! `cargo bench -p lock-redis --bench latency` (a kit `redis-server` is
//! started; `BENCH_ROUNDS` and `BENCH_ITERS` change the run's size).
//!
//! Each round measures, interleaved in blocks of 100 so that load on the
//! machine hits every series alike, with a fresh key for every pair:
//! - `raw min`: EVALSHA of a minimal acquire (EXISTS, INCR, HSET, PEXPIRE)
//!   then of a minimal release (HGET, DEL, PUBLISH), on a plain
//!   `ConnectionManager` of the `redis` crate: the floor of any
//!   Redisson-layout lock;
//! - `raw same`: the backend's own two scripts ([`lock_redis::lua`]) sent
//!   the same raw way: isolates the client-side cost of the backend;
//! - `backend`: `Backend::acquire` + `Backend::release`;
//! - `locker`: `Locker::try_lock` + `LockGuard::release`, what users call
//!   (fresh owner, the hold table, the renewal task's bookkeeping).
//!
//! Per round: p50 and p99 of each, and ratios at the median; at the end,
//! the median and spread (min .. max) of each ratio over the rounds.

use conformance::kit::RedisServer;
use lock_core::{AcquireRequest, Backend, HoldInfo, Key, Locker, Owner, Ttl, Wait};
use lock_redis::{RedisBackend, RedisConfig, lua};
use redis::Value;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A minimal acquire: the writes Redisson's lock does, no checks.
const MIN_ACQUIRE: &str = r"
if redis.call('exists', KEYS[1]) == 0 then
  local t = redis.call('incr', KEYS[2])
  redis.call('hset', KEYS[1], ARGV[1], 1)
  redis.call('pexpire', KEYS[1], ARGV[2])
  return {1, t}
end
return {0, redis.call('pttl', KEYS[1])}
";
/// A minimal release: delete if the owner's, and publish.
const MIN_RELEASE: &str = r"
if redis.call('hget', KEYS[1], ARGV[1]) then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[3], 0)
  return 0
end
return -1
";

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

/// Two raw EVALSHA round trips (acquire, then release) on `conn`.
struct Raw {
    conn: ConnectionManager,
    acquire: redis::Script,
    release: redis::Script,
}

impl Raw {
    async fn pair(&mut self, key: &str) -> Duration {
        let counter = format!("redisson_lock_token:{{{key}}}");
        let channel = format!("redisson_lock__channel:{{{key}}}");
        let owner = "bench-owner";
        let started = Instant::now();
        let reply: Value = self
            .acquire
            .key(key)
            .key(&counter)
            .arg(owner)
            .arg(30_000u64)
            .invoke_async(&mut self.conn)
            .await
            .expect("raw acquire");
        let token = match &reply {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(1), Value::Int(token)] => *token,
                _ => panic!("raw acquire answered {reply:?}"),
            },
            _ => panic!("raw acquire answered {reply:?}"),
        };
        let left: i64 = self
            .release
            .key(key)
            .key(&counter)
            .key(&channel)
            .arg(owner)
            .arg(token)
            .arg(1u32)
            .invoke_async(&mut self.conn)
            .await
            .expect("raw release");
        assert_eq!(left, 0);
        started.elapsed()
    }
}

async fn backend_pair(backend: &RedisBackend, key: &str) -> Duration {
    let req = AcquireRequest {
        key: Key::new(key).unwrap(),
        owner: Owner::random(),
        ttl: Ttl::new(Duration::from_secs(30)).unwrap(),
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

/// Median and spread of per-round ratios.
fn summary(name: &str, mut ratios: Vec<f64>, target: Option<f64>) {
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let verdict = match target {
        Some(t) if median <= t => format!(" (target <= {t}: met)"),
        Some(t) => format!(" (target <= {t}: NOT met)"),
        None => String::new(),
    };
    println!(
        "{name:<22} median {median:.3}, spread {:.3} .. {:.3} over {} rounds{verdict}",
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

fn main() {
    let rounds = env("BENCH_ROUNDS", 7);
    let iters = env("BENCH_ITERS", 2000);
    const BLOCK: usize = 100;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let server = RedisServer::start()
            .await
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        let addr = server.addr();
        let config = RedisConfig::new(addr.ip().to_string(), addr.port());
        let backend = RedisBackend::connect(config.clone()).await.unwrap();
        let locker = Locker::new(
            Arc::new(RedisBackend::connect(config).await.unwrap()) as Arc<dyn Backend>
        );
        let client = redis::Client::open(format!("redis://{addr}")).unwrap();
        let mut min = Raw {
            conn: client.get_connection_manager().await.unwrap(),
            acquire: redis::Script::new(MIN_ACQUIRE),
            release: redis::Script::new(MIN_RELEASE),
        };
        let mut same = Raw {
            conn: client.get_connection_manager().await.unwrap(),
            acquire: redis::Script::new(lua::ACQUIRE),
            release: redis::Script::new(&format!("{}{}", lua::OURS, lua::RELEASE)),
        };

        // Warm up: load the scripts, settle the connections.
        for i in 0..300 {
            min.pair(&format!("warm:min:{i}")).await;
            same.pair(&format!("warm:same:{i}")).await;
            backend_pair(&backend, &format!("warm:backend:{i}")).await;
            locker_pair(&locker, &format!("warm:locker:{i}")).await;
        }

        println!(
            "redis-server {addr}; {rounds} rounds x {iters} lock+release pairs per series; fresh keys"
        );
        println!(
            "{:>5} | {:>15} | {:>15} | {:>15} | {:>15} | backend/min backend/same locker/min",
            "round", "raw min p50/p99", "raw same", "backend", "locker"
        );
        let (mut b_min, mut b_same, mut l_min, mut l_same) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let (mut m, mut s, mut b, mut l) = (vec![], vec![], vec![], vec![]);
            for block in 0..iters.div_ceil(BLOCK) {
                for i in 0..BLOCK {
                    m.push(min.pair(&format!("min:{round}:{block}:{i}")).await);
                }
                for i in 0..BLOCK {
                    s.push(same.pair(&format!("same:{round}:{block}:{i}")).await);
                }
                for i in 0..BLOCK {
                    b.push(backend_pair(&backend, &format!("backend:{round}:{block}:{i}")).await);
                }
                for i in 0..BLOCK {
                    l.push(locker_pair(&locker, &format!("locker:{round}:{block}:{i}")).await);
                }
            }
            let (m, s, b, l) = (stats(m), stats(s), stats(b), stats(l));
            let ratio = |x: (Duration, Duration), y: (Duration, Duration)| us(x.0) / us(y.0);
            b_min.push(ratio(b, m));
            b_same.push(ratio(b, s));
            l_min.push(ratio(l, m));
            l_same.push(ratio(l, s));
            let cell = |x: (Duration, Duration)| format!("{:>6.1} / {:>6.1}", us(x.0), us(x.1));
            println!(
                "{round:>5} | {} | {} | {} | {} | {:>11.3} {:>12.3} {:>10.3}",
                cell(m),
                cell(s),
                cell(b),
                cell(l),
                ratio(b, m),
                ratio(b, s),
                ratio(l, m)
            );
        }
        println!("ratios at the median (microseconds above are per lock+release pair):");
        summary("backend / raw min", b_min, Some(1.2));
        summary("backend / raw same", b_same, None);
        summary("locker / raw min", l_min, None);
        summary("locker / raw same", l_same, None);
    });
}
