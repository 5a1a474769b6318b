//! What the [`Locker`] adds to one uncontended lock + release on top of the
//! backend's own two calls, on `memory://` with no latency (so nearly all
//! that is measured is the Locker's own work).
//!
//! `cargo bench -p lock-core --bench overhead` prints, per round, ns per
//! pair for `MemoryBackend::acquire + release` called directly and for
//! `Locker::lock + LockGuard::release`, measured interleaved in blocks, from
//! the runtime's main thread (as `#[tokio::main]` code runs) and from a
//! spawned task; then the median over the rounds, and how often a worker
//! thread parked per pair (each park after work means it had been woken).
//! Built with `RUSTFLAGS="--cfg tokio_unstable"` it also counts task polls
//! and spawns per pair (with no other tasks, every poll on a worker is the
//! renewal task waking up), the times the renewal task was scheduled from
//! outside the workers, and forced yields (a spent cooperative budget).

#![allow(unexpected_cfgs)]

use lock_core::{AcquireRequest, Backend, HoldInfo, Key, Locker, MemoryBackend, Owner, Ttl, Wait};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::Instant;

/// Pairs per block; blocks of each side alternate.
const BLOCK: usize = 200;
/// Blocks per side per round.
const BLOCKS: usize = 25;
/// Rounds; the verdict is their median.
const ROUNDS: usize = 7;

#[derive(Clone, Copy, Default)]
struct Counts {
    parks: u64,
    polls: u64,
    spawns: u64,
    remote: u64,
    yields: u64,
}

fn counts() -> Counts {
    let m = Handle::current().metrics();
    let mut c = Counts::default();
    for w in 0..m.num_workers() {
        c.parks += m.worker_park_count(w);
        #[cfg(tokio_unstable)]
        {
            c.polls += m.worker_poll_count(w);
        }
    }
    #[cfg(tokio_unstable)]
    {
        c.spawns = m.spawned_tasks_count();
        c.remote = m.remote_schedule_count();
        c.yields = m.budget_forced_yield_count();
    }
    c
}

fn add(total: &mut Counts, before: Counts, after: Counts) {
    total.parks += after.parks - before.parks;
    total.polls += after.polls - before.polls;
    total.spawns += after.spawns - before.spawns;
    total.remote += after.remote - before.remote;
    total.yields += after.yields - before.yields;
}

struct Sides {
    backend: Arc<MemoryBackend>,
    locker: Locker,
}

impl Sides {
    async fn backend_pair(&self) {
        let req = AcquireRequest {
            key: Key::new("bench/backend").unwrap(),
            owner: Owner::random(),
            ttl: Ttl::new(Ttl::DEFAULT).unwrap(),
            wait: Wait::Forever,
        };
        let grant = self.backend.acquire(&req).await.unwrap().unwrap();
        let hold = HoldInfo {
            key: req.key,
            owner: req.owner,
            token: grant.token,
            ttl: grant.ttl,
            handle: grant.handle,
        };
        self.backend.release(&hold, 1).await.unwrap();
    }

    async fn locker_pair(&self) {
        let guard = self.locker.lock("bench/locker").await.unwrap();
        guard.release().await.unwrap();
    }

    /// One round: ns per pair and counts, (backend, locker).
    async fn round(&self) -> [(f64, Counts); 2] {
        let mut time = [Duration::ZERO; 2];
        let mut c = [Counts::default(); 2];
        for _ in 0..BLOCKS {
            for side in 0..2 {
                let before = counts();
                let start = Instant::now();
                for _ in 0..BLOCK {
                    if side == 0 {
                        self.backend_pair().await;
                    } else {
                        self.locker_pair().await;
                    }
                }
                time[side] += start.elapsed();
                // Let a woken renewal task run and park before counting.
                tokio::task::yield_now().await;
                add(&mut c[side], before, counts());
            }
        }
        let n = (BLOCK * BLOCKS) as f64;
        [0, 1].map(|s| (time[s].as_nanos() as f64 / n, c[s]))
    }
}

async fn run(sides: Arc<Sides>, where_: &str) {
    for _ in 0..BLOCK {
        sides.backend_pair().await;
        sides.locker_pair().await;
    }
    println!("{where_}: ns per lock + release pair ({BLOCKS} x {BLOCK} pairs per side per round)");
    println!(
        "{:>5} | {:>9} {:>9} {:>7} | per Locker pair: {:>6} {:>6} {:>6} {:>6} {:>6}",
        "round", "Backend", "Locker", "L/B", "parks", "polls", "spawns", "remote", "yields"
    );
    let mut ratios = Vec::new();
    let mut diffs = Vec::new();
    for round in 1..=ROUNDS {
        let [(b, _), (l, c)] = sides.round().await;
        let n = (BLOCK * BLOCKS) as f64;
        ratios.push(l / b);
        diffs.push(l - b);
        println!(
            "{round:>5} | {b:>9.0} {l:>9.0} {:>7.2} | {:>16.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
            l / b,
            c.parks as f64 / n,
            c.polls as f64 / n,
            c.spawns as f64 / n,
            c.remote as f64 / n,
            c.yields as f64 / n,
        );
    }
    ratios.sort_by(f64::total_cmp);
    diffs.sort_by(f64::total_cmp);
    println!(
        "median Locker - Backend: {:.0} ns ({:.0} .. {:.0}); Locker / Backend {:.2} ({:.2} .. {:.2})\n",
        diffs[ROUNDS / 2],
        diffs[0],
        diffs[ROUNDS - 1],
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1],
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let backend = Arc::new(MemoryBackend::new());
    let sides = Arc::new(Sides {
        backend: backend.clone(),
        locker: Locker::new(Arc::new(MemoryBackend::new())),
    });
    run(sides.clone(), "main thread").await;
    tokio::spawn(run(sides, "spawned task")).await.unwrap();
}
