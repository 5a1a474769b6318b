//! Uncontended lock + release latency of this crate next to etcd-client's
//! own `LockClient` lock + unlock (etcd's server-side v3lock, with a lease
//! granted beforehand, as its API needs), on the same single etcd member
//! from the kit, in one run.
//!
//! `cargo bench -p lock-etcd --bench latency` prints, per round, p50 and
//! p99 of each and the ratio at the median (this crate / LockClient; at
//! most 1.0 means no slower), then the median ratio over the rounds and
//! its spread. The two are measured interleaved in each round, so a
//! machine that slows down hurts both alike.

use conformance::kit::EtcdCluster;
use etcd_client::{Client, LockOptions};
use lock_core::{AcquireRequest, Backend, HoldInfo, Key, Owner, Ttl, Wait};
use std::time::Duration;
use tokio::time::Instant;

/// Lock + release cycles per side per round.
const CYCLES: usize = 300;
/// Rounds; the verdict is their median.
const ROUNDS: usize = 5;
/// Cycles per side before measuring (connections, lease pool, caches).
const WARMUP: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let etcd = EtcdCluster::single()
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    lock_etcd::register();
    let ours = lock_core::connect(&format!("{}?ttl=10s", etcd.url()))
        .await
        .expect("connect lock-etcd");
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|a| a.to_string()).collect();
    let raw = lock_etcd::EtcdBackend::connect(lock_etcd::EtcdConfig::new(
        etcd.endpoints()
            .iter()
            .map(|a| lock_core::Endpoint {
                host: a.ip().to_string(),
                port: a.port(),
            })
            .collect(),
    ))
    .await
    .expect("connect EtcdBackend");
    let raw_once = || async {
        let req = AcquireRequest {
            key: Key::new("bench/raw").unwrap(),
            owner: Owner::random(),
            ttl: Ttl::new(Duration::from_secs(10)).unwrap(),
            wait: Wait::Forever,
        };
        let start = Instant::now();
        let grant = raw.acquire(&req).await.expect("acquire").expect("granted");
        let hold = HoldInfo {
            key: req.key,
            owner: req.owner,
            token: grant.token,
            ttl: grant.ttl,
            handle: grant.handle,
        };
        raw.release(&hold, 1).await.expect("release");
        start.elapsed()
    };
    let mut theirs = Client::connect(&endpoints, None)
        .await
        .expect("connect etcd-client");
    // LockClient needs a lease; granted (and kept) beforehand.
    let lease = theirs.lease_grant(60, None).await.expect("lease").id();
    let lock_client = theirs.lock_client();

    let ours_once = || async {
        let start = Instant::now();
        let guard = ours.lock("bench/ours").await.expect("lock");
        guard.release().await.expect("release");
        start.elapsed()
    };
    let theirs_once = || {
        let mut client = lock_client.clone();
        async move {
            let start = Instant::now();
            let held = client
                .lock("bench/theirs", Some(LockOptions::new().with_lease(lease)))
                .await
                .expect("LockClient lock");
            client.unlock(held.key()).await.expect("LockClient unlock");
            start.elapsed()
        }
    };
    for _ in 0..WARMUP {
        ours_once().await;
        raw_once().await;
        theirs_once().await;
    }

    println!(
        "uncontended lock + release, {CYCLES} cycles x {ROUNDS} rounds, etcd {}",
        etcd.url()
    );
    println!("  Locker = lock-etcd through lock_core::Locker (what users call)");
    println!("  Backend = EtcdBackend::acquire + release alone (no Locker)");
    println!("  LockClient = etcd-client's LockClient lock + unlock (server-side v3lock)");
    println!(
        "{:>5} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9} | {:>7} {:>7}",
        "round", "Locker", "p99", "Backend", "p99", "LockCl.", "p99", "L/LC", "B/LC"
    );
    let mut ratios = Vec::with_capacity(ROUNDS);
    let mut raw_ratios = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let mut a = Vec::with_capacity(CYCLES);
        let mut r = Vec::with_capacity(CYCLES);
        let mut b = Vec::with_capacity(CYCLES);
        for _ in 0..CYCLES {
            a.push(ours_once().await);
            r.push(raw_once().await);
            b.push(theirs_once().await);
        }
        a.sort();
        r.sort();
        b.sort();
        let p50 = |v: &[Duration]| micros(percentile(v, 0.5));
        let p99 = |v: &[Duration]| micros(percentile(v, 0.99));
        let ratio = p50(&a) / p50(&b);
        let raw_ratio = p50(&r) / p50(&b);
        ratios.push(ratio);
        raw_ratios.push(raw_ratio);
        println!(
            "{round:>5} | {:>6.0} us {:>6.0} us | {:>6.0} us {:>6.0} us | {:>6.0} us {:>6.0} us | {ratio:>7.3} {raw_ratio:>7.3}",
            p50(&a),
            p99(&a),
            p50(&r),
            p99(&r),
            p50(&b),
            p99(&b),
        );
    }
    for (what, ratios) in [("Locker", &mut ratios), ("Backend", &mut raw_ratios)] {
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ROUNDS / 2];
        println!(
            "ratio at the median, {what} / LockClient: {median:.3} (rounds {:.3} .. {:.3}): {}",
            ratios[0],
            ratios[ROUNDS - 1],
            if median <= 1.0 { "no slower" } else { "slower" }
        );
    }
    let _ = theirs.lease_revoke(lease).await;
}
