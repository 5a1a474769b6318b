//! Mutual exclusion between this crate and an independent implementation
//! of Curator's lock recipe, zookeeper-client's `LockPrefix::new_curator`,
//! on the same lock path of a real ZooKeeper server: each one waits for the
//! other, in both directions, and a mixed crowd never overlaps.

mod common;

use common::{PREFIX, ZkFixture, lock_zk_component};
use conformance::Fixture;
use lock_core::Locker;
use lock_zk::zk;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(5);

/// A plain zookeeper-client session, the peer's own.
async fn peer(fx: &ZkFixture) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(TTL)
        .connect(&fx.ensemble().connect_string())
        .await
        .expect("peer connects")
}

/// The lock node both sides use for `key`.
fn dir(key: &str) -> String {
    format!("{PREFIX}/{}", lock_zk_component(key))
}

fn options() -> zk::LockOptions<'static> {
    zk::LockOptions::new(zk::Acls::anyone_all())
        .with_ancestor_options(zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .expect("valid ancestor options")
}

/// The peer's lock, released explicitly (delete) rather than by drop.
async fn peer_release(lock: zk::LockClient<'_>) {
    lock.client()
        .delete(lock.lock_path(), None)
        .await
        .expect("peer deletes its lock node");
}

fn key(name: &str) -> String {
    format!("interop/{}/{name}", uuid::Uuid::new_v4())
}

#[test]
fn ours_waits_for_the_curator_recipe() {
    common::run(ours_waits())
}

async fn ours_waits() {
    let fx = common::standalone().await;
    let key = key("a");
    let dir = dir(&key);
    let client = peer(&fx).await;
    let locker = fx.locker(TTL).await.expect("locker");

    let theirs = client
        .lock(
            zk::LockPrefix::new_curator(&dir, "lock-").unwrap(),
            b"",
            options(),
        )
        .await
        .expect("the peer locks");
    assert!(
        locker.try_lock(&key).await.expect("try_lock").is_none(),
        "this crate got a lock the Curator recipe holds"
    );
    let status = locker.status(&key).await.expect("status");
    assert_eq!(status.holders.len(), 1, "{status:?}");
    assert!(
        status.holders[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("-lock-")),
        "{status:?}"
    );

    let waiting = {
        let (locker, key) = (locker.clone(), key.clone());
        tokio::spawn(async move {
            locker
                .request(&key)
                .wait(Duration::from_secs(10))
                .lock()
                .await
        })
    };
    sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "this crate was granted while the peer held the lock"
    );
    let released = Instant::now();
    peer_release(theirs).await;
    let guard = waiting
        .await
        .unwrap()
        .expect("granted once the peer released");
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "granted only {:?} after the peer released",
        released.elapsed()
    );
    guard.release().await.expect("release");
}

#[test]
fn the_curator_recipe_waits_for_ours() {
    common::run(theirs_waits())
}

async fn theirs_waits() {
    let fx = common::standalone().await;
    let key = key("b");
    let dir = dir(&key);
    let client = peer(&fx).await;
    let locker = fx.locker(TTL).await.expect("locker");

    let ours = locker.lock(&key).await.expect("this crate locks");
    let prefix = zk::LockPrefix::new_curator(&dir, "lock-").unwrap();
    let mut theirs = Box::pin(client.lock(prefix, b"", options()));
    assert!(
        timeout(Duration::from_millis(500), &mut theirs)
            .await
            .is_err(),
        "the Curator recipe got a lock this crate holds"
    );
    ours.release().await.expect("release");
    let lock = timeout(Duration::from_secs(5), theirs)
        .await
        .expect("the peer is granted once this crate released")
        .expect("the peer locks");
    peer_release(lock).await;
}

/// Four clients of this crate and four of the recipe take one lock ten times
/// each; a flag set inside the critical section never finds another inside.
#[test]
fn a_mixed_crowd_never_overlaps() {
    common::run(crowd())
}

async fn crowd() {
    let fx = common::standalone().await;
    let key = key("crowd");
    let inside = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let locker: Locker = fx.locker(TTL).await.expect("locker");
        let (key, inside, entries) = (key.clone(), inside.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let g = locker.lock(&key).await.expect("lock");
                critical(&inside, &entries, "this crate").await;
                g.release().await.expect("release");
            }
        }));
    }
    for _ in 0..4 {
        let client = peer(&fx).await;
        let (dir, inside, entries) = (dir(&key), inside.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let prefix = zk::LockPrefix::new_curator(&dir, "lock-").unwrap();
                let lock = client
                    .lock(prefix, b"", options())
                    .await
                    .expect("peer lock");
                critical(&inside, &entries, "the recipe").await;
                peer_release(lock).await;
            }
        }));
    }
    for t in tasks {
        timeout(Duration::from_secs(30), t)
            .await
            .expect("the crowd finishes")
            .expect("no task failed");
    }
    assert_eq!(entries.load(Ordering::SeqCst), 80);
}

async fn critical(inside: &AtomicBool, entries: &AtomicU32, who: &str) {
    assert!(
        !inside.swap(true, Ordering::SeqCst),
        "{who} entered the critical section while another holder was in it"
    );
    entries.fetch_add(1, Ordering::SeqCst);
    sleep(Duration::from_millis(2)).await;
    inside.store(false, Ordering::SeqCst);
}
