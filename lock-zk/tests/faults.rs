//! Faults of a real 3-server ZooKeeper ensemble from the kit: the leader
//! killed under a held lock with waiters queued, the holder's session
//! partitioned past its timeout, and a holder process killed.

mod common;

use common::ZkFixture;
use lock_core::{FencingToken, LockGuard, Locker};
use nix::fcntl::Flock;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::{Instant, sleep, timeout};

/// Long enough for a session to outlive a leader election on a busy
/// 2-core machine.
const SURVIVING_TTL: Duration = Duration::from_secs(8);

/// Runs `test` on the runtime the ensemble and its clients live on, one
/// test at a time (each hurts the ensemble).
fn run(test: impl std::future::Future<Output = ()> + Send + 'static) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    let task = conformance::harness::runtime().spawn(async move {
        let _turn = ONE_AT_A_TIME.lock().await;
        test.await
    });
    if let Err(e) = conformance::harness::runtime().block_on(task) {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One ensemble for every test of this process (one per test under
/// nextest, one at a time on the machine).
async fn fixture() -> Arc<ZkFixture> {
    static FIXTURE: OnceCell<(Flock<File>, Arc<ZkFixture>)> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let (turn, servers) = common::exclusive_ensemble().await;
            let fx = ZkFixture::new("zookeeper 3 servers", Arc::new(servers));
            (turn, Arc::new(fx))
        })
        .await
        .1
        .clone()
}

fn key(name: &str) -> String {
    format!("faults/{}/{name}", uuid::Uuid::new_v4())
}

async fn locker(fx: &ZkFixture, ttl: Duration) -> Locker {
    let backend = fx.direct_backend(ttl).await.expect("connect");
    Locker::builder(Arc::new(backend))
        .ttl(ttl)
        .build()
        .expect("locker")
}

#[test]
fn leader_killed_under_a_held_lock() {
    run(leader_killed())
}

async fn leader_killed() {
    let fx = fixture().await;
    let key = key("leader");
    let holder = locker(&fx, SURVIVING_TTL).await;
    let held = holder.lock(&key).await.expect("holder: lock");
    let first = held.token();

    let inside = Arc::new(AtomicBool::new(false));
    let mut waiters = Vec::new();
    for n in 0..3 {
        let l = locker(&fx, SURVIVING_TTL).await;
        let (key, inside) = (key.clone(), inside.clone());
        waiters.push(tokio::spawn(async move {
            let g = l
                .request(&key)
                .wait(Duration::from_secs(40))
                .lock()
                .await
                .unwrap_or_else(|e| panic!("waiter {n}: lock after the failover: {e}"));
            assert!(
                !inside.swap(true, Ordering::SeqCst),
                "waiter {n} was granted while another holder was inside"
            );
            sleep(Duration::from_millis(50)).await;
            inside.store(false, Ordering::SeqCst);
            let token = g.token();
            g.release().await.expect("waiter: release");
            token
        }));
    }
    // Let the waiters queue up.
    wait_for_waiters(&holder, &key, 3).await;

    let leader = fx
        .ensemble()
        .leader()
        .await
        .expect("the ensemble has a leader");
    fx.ensemble().server(leader).kill();
    let killed = Instant::now();
    // The hold survives the failover: the session outlives the election.
    sleep(Duration::from_secs(2)).await;
    let mut new_leader = None;
    while new_leader.is_none() && killed.elapsed() < Duration::from_secs(20) {
        new_leader = fx.ensemble().leader().await;
    }
    assert!(new_leader.is_some(), "no new leader within 20 s");
    assert!(
        held.is_held(),
        "the holder's hold did not survive the leader's death (session {SURVIVING_TTL:?})"
    );
    assert!(
        !waiters.iter().any(|w| w.is_finished()),
        "a waiter finished while the holder still held the lock"
    );
    held.release()
        .await
        .expect("holder: release after the failover");

    let mut tokens: Vec<FencingToken> = Vec::new();
    for w in waiters {
        tokens.push(
            timeout(Duration::from_secs(45), w)
                .await
                .expect("every waiter proceeds after the failover")
                .expect("waiter task"),
        );
    }
    assert!(tokens.iter().all(|t| *t > first), "{tokens:?} vs {first}");
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "tokens are distinct: {tokens:?}");
    fx.ensemble()
        .server(leader)
        .restart()
        .await
        .expect("restart the killed server");
}

async fn wait_for_waiters(locker: &Locker, key: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let s = locker.status(key).await.expect("status");
        if s.waiters == Some(n) {
            return;
        }
        assert!(Instant::now() < until, "never saw {n} waiters: {s:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn partitioned_holder_knows_before_the_next_is_granted() {
    run(partitioned_holder())
}

async fn partitioned_holder() {
    let fx = fixture().await;
    let key = key("partition");
    let ttl = Duration::from_secs(1);
    let (backend, proxies) = fx.backend_with_proxies(ttl).await.expect("connect");
    let holder = Locker::builder(Arc::new(backend)).ttl(ttl).build().unwrap();
    let other = locker(&fx, ttl).await;
    let guard = holder.lock(&key).await.expect("holder: lock");
    let token = guard.token();
    let lost_at = {
        let lost = guard.lost();
        tokio::spawn(async move {
            let why = lost.await;
            (Instant::now(), why)
        })
    };
    let next = {
        let key = key.clone();
        tokio::spawn(async move {
            let g = other
                .request(&key)
                .wait(Duration::from_secs(30))
                .lock()
                .await
                .expect("the other client: lock once the partitioned session expired");
            (Instant::now(), g)
        })
    };
    sleep(Duration::from_millis(100)).await;
    assert!(
        !next.is_finished(),
        "granted while the holder was connected"
    );

    proxies.iter().for_each(|p| p.blackhole());
    let cut = Instant::now();
    let (granted_at, next_guard): (Instant, LockGuard) = timeout(Duration::from_secs(20), next)
        .await
        .expect("granted")
        .unwrap();
    let (lost_at, why) = timeout(Duration::from_secs(5), lost_at)
        .await
        .expect("the holder reports the loss")
        .unwrap();
    assert!(
        lost_at <= granted_at,
        "the holder learned of its loss {:?} after another owner was granted ({why})",
        lost_at - granted_at
    );
    assert!(
        guard.valid_until() <= granted_at,
        "another owner was granted before the holder's local deadline"
    );
    assert!(!guard.is_held());
    assert!(next_guard.token() > token);
    assert!(
        granted_at - cut >= ttl / 2,
        "granted only {:?} after the cut: the session cannot have expired yet",
        granted_at - cut
    );
    proxies.iter().for_each(|p| p.pass());
    assert_eq!(
        guard.release().await.unwrap_err().kind(),
        lock_core::ErrorKind::NotHeld
    );
    next_guard.release().await.expect("release");
}

#[test]
fn killed_holder_process_nodes_go_with_its_session() {
    run(killed_holder())
}

async fn killed_holder() {
    let fx = fixture().await;
    let key = key("killed");
    let ttl = Duration::from_secs(2);
    let url = format!(
        "{}?session_timeout=2s&prefix={}",
        fx.ensemble().url(),
        common::PREFIX
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_zk-hold"))
        .args([&url, &key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder process");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .expect("read the holder's line");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("held"), "{line:?}");
    let token: u64 = words.next().unwrap().parse().unwrap();
    let node = words.next().unwrap().to_owned();
    let stat = fx
        .admin()
        .await
        .check_stat(&node)
        .await
        .unwrap()
        .expect("the holder's node exists");
    assert_ne!(stat.ephemeral_owner, 0, "the node is ephemeral");

    let other = locker(&fx, ttl).await;
    assert!(other.try_lock(&key).await.unwrap().is_none());
    child.kill().expect("SIGKILL the holder");
    let killed = Instant::now();
    let _ = child.wait();
    let g = other
        .request(&key)
        .wait(Duration::from_secs(20))
        .lock()
        .await
        .expect("granted once the killed holder's session expired");
    let waited = killed.elapsed();
    assert!(
        waited <= ttl + Duration::from_secs(3),
        "granted {waited:?} after the kill; the session timeout is {ttl:?}"
    );
    assert!(g.token().get() > token);
    assert!(
        fx.admin().await.check_stat(&node).await.unwrap().is_none(),
        "the killed holder's node is still there"
    );
    g.release().await.expect("release");
}
