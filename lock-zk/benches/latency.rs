//! Uncontended lock + release latency of `lock-zk`, next to
//! zookeeper-client's own Curator-style lock recipe (`Client::lock` with
//! `LockPrefix::new_curator`, released by an awaited delete), on the same
//! real standalone ZooKeeper server and the same lock path.
//!
//! Both create a node, list the contenders and delete the node; `lock-zk`
//! sends the listing with the create (one round trip where the recipe
//! waits for the create's answer first), and tracks the hold for renewal
//! and loss (a watch on its node only if it is held 20 ms). Rounds alternate
//! between the two; each round reports p50 and p99, and the summary the
//! median of the rounds' medians, their spread, and the ratio at the
//! median.
//!
//! `cargo bench -p lock-zk --bench latency [-- ROUNDS ITERATIONS]`

use conformance::kit::ZkEnsemble;
use lock_core::{Endpoint, Locker};
use lock_zk::{ZkBackend, ZkConfig, zk};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const PREFIX: &str = "/dlock-bench";
const KEY: &str = "bench";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Round {
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Round {
    samples.sort();
    Round {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

async fn ours(locker: &Locker, n: usize) -> Round {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let g = locker.lock(KEY).await.expect("lock-zk: lock");
        g.release().await.expect("lock-zk: release");
        samples.push(t.elapsed());
    }
    summarize(samples)
}

async fn theirs(client: &zk::Client, dir: &str, n: usize) -> Round {
    let options = || {
        zk::LockOptions::new(zk::Acls::anyone_all())
            .with_ancestor_options(zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
            .expect("options")
    };
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let prefix = zk::LockPrefix::new_curator(dir, "lock-").expect("prefix");
        let lock = client
            .lock(prefix, b"", options())
            .await
            .expect("recipe: lock");
        client
            .delete(lock.lock_path(), None)
            .await
            .expect("recipe: release");
        samples.push(t.elapsed());
        // Its Drop would send a second delete in the background; the node
        // is already gone, so skip it (a few bytes leak per iteration).
        std::mem::forget(lock);
    }
    summarize(samples)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = ZkEnsemble::standalone().await.expect("start ZooKeeper");
        let addr = server.server(0).client_addr();
        let config = ZkConfig::new(vec![Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
        }])
        .with_prefix(PREFIX)
        .expect("prefix")
        .with_session_timeout(Duration::from_secs(10));
        let backend = ZkBackend::connect(config).await.expect("lock-zk connects");
        let dir = backend.lock_path(&lock_core::Key::new(KEY).unwrap());
        let locker = Locker::new(Arc::new(backend));
        let client = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&server.connect_string())
            .await
            .expect("recipe connects");

        // Warm up both (JIT of the server, connections, the lock node).
        ours(&locker, 100).await;
        theirs(&client, &dir, 100).await;
        println!(
            "uncontended lock+release on one standalone ZooKeeper, {rounds} rounds x {iterations}"
        );
        println!(
            "{:<7} {:>22} {:>22}",
            "round", "lock-zk p50 / p99", "recipe p50 / p99"
        );
        let (mut ours_p50, mut theirs_p50) = (Vec::new(), Vec::new());
        let (mut ours_p99, mut theirs_p99) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Alternate which goes first, so drift favours neither.
            let (a, b) = if r % 2 == 0 {
                let a = ours(&locker, iterations).await;
                (a, theirs(&client, &dir, iterations).await)
            } else {
                let b = theirs(&client, &dir, iterations).await;
                (ours(&locker, iterations).await, b)
            };
            println!(
                "{:<7} {:>22} {:>22}",
                r + 1,
                format!("{} / {}", ms(a.p50), ms(a.p99)),
                format!("{} / {}", ms(b.p50), ms(b.p99)),
            );
            ours_p50.push(a.p50);
            theirs_p50.push(b.p50);
            ours_p99.push(a.p99);
            theirs_p99.push(b.p99);
        }
        let spread = |v: &[Duration]| {
            let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
            format!("{} .. {}", ms(*lo), ms(*hi))
        };
        let (o, t) = (median(ours_p50.clone()), median(theirs_p50.clone()));
        println!(
            "lock-zk: median p50 {} (spread {}), median p99 {}",
            ms(o),
            spread(&ours_p50),
            ms(median(ours_p99))
        );
        println!(
            "recipe:  median p50 {} (spread {}), median p99 {}",
            ms(t),
            spread(&theirs_p50),
            ms(median(theirs_p99))
        );
        println!(
            "ratio lock-zk / recipe at the median: {:.3}",
            o.as_secs_f64() / t.as_secs_f64()
        );
    });
}
