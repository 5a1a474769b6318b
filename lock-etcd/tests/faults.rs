//! Faults of real etcd servers from the kit: a leader killed while a lock
//! is held and others wait; a single member paused past the ttl; a whole
//! 3-member cluster restarted on its data.

use conformance::kit::EtcdCluster;
use futures::FutureExt;
use lock_core::{FencingToken, Locker};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// A wait that a passing run never reaches.
const LONG: Duration = Duration::from_secs(30);

async fn locker(etcd: &EtcdCluster, ttl: &str) -> Locker {
    lock_etcd::register();
    lock_core::connect(&format!("{}?ttl={ttl}&timeout=1s", etcd.url()))
        .await
        .expect("connect")
}

/// The critical sections of one key: entering while another is inside is
/// an overlap.
#[derive(Default)]
struct Section {
    inside: AtomicUsize,
    overlaps: AtomicUsize,
}

impl Section {
    fn enter(&self) {
        if self.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < LONG, "{what}: not within {LONG:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_while_held_and_awaited_keeps_exclusion_and_waiters_proceed() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    let clients = [
        locker(&etcd, "5s").await,
        locker(&etcd, "5s").await,
        locker(&etcd, "5s").await,
    ];
    let section = Arc::new(Section::default());
    let holder = clients[0].lock("leader-kill").await.unwrap();
    section.enter();
    let first_token = holder.token();

    // Two waiters, queued in order, each holding briefly once granted.
    let mut waiters = Vec::new();
    for (n, client) in clients[1..].iter().enumerate() {
        let (client, section) = (client.clone(), section.clone());
        waiters.push(tokio::spawn(async move {
            let guard = client.lock("leader-kill").await?;
            section.enter();
            sleep(Duration::from_millis(100)).await;
            let held = guard.is_held();
            section.leave();
            let token = guard.token();
            guard.release().await?;
            Ok::<(FencingToken, bool), lock_core::Error>((token, held))
        }));
        until("waiter queued", || async {
            let s = clients[0].status("leader-kill").await;
            s.is_ok_and(|s| s.waiters == Some(n + 1))
        })
        .await;
    }

    let leader = etcd.leader().await.expect("a leader");
    etcd.member(leader).kill();
    until("a new leader", || async {
        etcd.leader().await.is_some_and(|l| l != leader)
    })
    .await;
    // The hold outlives the election (etcd keeps leases across it), and
    // the background renewal goes on with the members left.
    sleep(Duration::from_secs(6)).await;
    if !holder.is_held() {
        let why = holder.lost().now_or_never();
        panic!("the hold was lost across a leader change: {why:?}");
    }
    section.leave();
    holder
        .release()
        .await
        .expect("release with two members of three up");

    let mut tokens = vec![first_token];
    for waiter in waiters {
        let (token, held) = timeout(LONG, waiter)
            .await
            .expect("a waiter proceeds after the re-election")
            .unwrap()
            .expect("a waiter gets the lock");
        assert!(held, "a waiter's hold ended inside its critical section");
        tokens.push(token);
    }
    assert_eq!(
        section.overlaps.load(Ordering::SeqCst),
        0,
        "two holds overlapped"
    );
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
}

#[tokio::test]
async fn pausing_the_only_member_past_the_ttl_is_reported_as_loss() {
    let etcd = EtcdCluster::single().await.unwrap();
    let ours = locker(&etcd, "2s").await;
    let guard = ours.lock("paused").await.unwrap();
    let token = guard.token();
    etcd.member(0).pause().await.unwrap();
    let paused = Instant::now();
    let reason = timeout(LONG, guard.lost())
        .await
        .expect("the loss is reported while the member is paused");
    let after = paused.elapsed();
    assert!(!guard.is_held());
    // Reported from the local deadline: no later than the ttl after the
    // last confirmed renewal (plus slack for a loaded machine).
    assert!(
        after < Duration::from_secs(2) + Duration::from_secs(2),
        "{after:?}: {reason}"
    );
    etcd.member(0).resume().unwrap();
    // Once the member is back, the lease expires there and the lock is
    // granted again, with a larger token.
    let other = locker(&etcd, "2s").await;
    let next = timeout(LONG, other.lock("paused")).await.unwrap().unwrap();
    assert!(next.token() > token);
    next.release().await.unwrap();
}

#[tokio::test]
async fn tokens_keep_increasing_across_a_restart_of_the_whole_cluster() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    let before = locker(&etcd, "5s").await;
    let guard = before.lock("restart").await.unwrap();
    let token = guard.token();
    guard.release().await.unwrap();
    drop(before);
    for member in etcd.members() {
        member.kill();
    }
    // All at once: each needs a quorum to report itself healthy.
    futures::future::try_join_all(etcd.members().iter().map(|m| m.restart()))
        .await
        .unwrap();
    let after = locker(&etcd, "5s").await;
    let guard = after.lock("restart").await.unwrap();
    assert!(guard.token() > token, "{:?} after {token:?}", guard.token());
    guard.release().await.unwrap();
}
