//! Faults beyond the shared suite, against a real `redis-server`: a server
//! killed and restarted empty, a server paused past the ttl, and a
//! black-holed connection.

mod common;

use common::within;
use conformance::kit::FaultProxy;
use lock_core::{Backend, ErrorKind, Locker, LossReason};
use lock_redis::{RedisBackend, RedisConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep};

async fn locker(addr: SocketAddr, ttl: Duration, timeout: Duration) -> Locker {
    let mut config = RedisConfig::new(addr.ip().to_string(), addr.port());
    config.timeout = timeout;
    let backend = RedisBackend::connect(config).await.expect("connect");
    Locker::builder(Arc::new(backend) as Arc<dyn Backend>)
        .ttl(ttl)
        .build()
        .unwrap()
}

/// Tries `try_lock(key)` until granted (errors while the server is away
/// are expected), up to `limit`.
async fn take(locker: &Locker, key: &str, limit: Duration) -> lock_core::LockGuard {
    within(limit, "granted again", async {
        loop {
            if let Ok(Some(guard)) = locker.try_lock(key).await {
                return guard;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_empty_while_held() {
    let server = common::server().await;
    let ttl = Duration::from_secs(6);
    let a = locker(server.addr(), ttl, Duration::from_millis(500)).await;
    let held = a.lock("restart").await.unwrap();
    let lost = held.lost();

    server.kill();
    // The closed connection is the news: the holder gives up at once, long
    // before its deadline (6 s; a renewal cannot find the hold gone while
    // the server is down).
    let reason = within(Duration::from_secs(3), "loss after the kill", lost).await;
    assert!(matches!(reason, LossReason::Gone(_)), "{reason}");
    assert!(!held.is_held());
    assert!(
        held.valid_until() > Instant::now(),
        "loss came from the deadline"
    );

    server.restart().await.unwrap();
    // A restarted empty server grants the lock to anyone at once...
    let b = locker(server.addr(), ttl, Duration::from_millis(500)).await;
    let other = b
        .try_lock("restart")
        .await
        .unwrap()
        .expect("granted after restart");
    // ... and the old holder does not claim it any more: no double grant.
    assert!(!held.is_held());
    assert!(other.is_held());
    // The old holder's locker recovers on the new server.
    drop(other);
    let again = take(&a, "restart-2", Duration::from_secs(10)).await;
    assert!(again.is_held());
    again.release().await.unwrap();
    assert_eq!(held.release().await.unwrap_err().kind(), ErrorKind::NotHeld);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_paused_past_the_ttl() {
    let server = common::server().await;
    let ttl = Duration::from_secs(1);
    let a = locker(server.addr(), ttl, Duration::from_millis(300)).await;
    let held = a.lock("paused").await.unwrap();
    let deadline = held.valid_until();

    server.pause().await.unwrap();
    let paused_at = Instant::now();
    // Renewals get no answer: the hold ends at its local deadline, while
    // the server is still paused (it stays paused for 3 ttls).
    let reason = within(ttl * 5 / 2, "loss while paused", held.lost()).await;
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert!(!held.is_held());
    sleep((paused_at + ttl * 3).saturating_duration_since(Instant::now())).await;
    server.resume().unwrap();

    // The server expired the key meanwhile; another owner can have it,
    // and only after the holder's deadline (which a renewal may have moved
    // before the pause, never past the store's expiry).
    let b = locker(server.addr(), ttl, Duration::from_millis(300)).await;
    let other = take(&b, "paused", Duration::from_secs(5)).await;
    assert!(Instant::now() > deadline);
    assert!(!held.is_held());
    other.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_connection() {
    let server = common::server().await;
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let ttl = Duration::from_secs(1);
    let cut = locker(proxy.addr(), ttl, Duration::from_millis(300)).await;
    let direct = locker(server.addr(), ttl, Duration::from_millis(300)).await;
    let held = cut.lock("cut").await.unwrap();

    proxy.blackhole();
    let started = Instant::now();
    // New acquisitions fail with Unavailable in bounded time, never a grant.
    let err = within(
        Duration::from_secs(3),
        "try_lock",
        cut.try_lock("cut-other"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&proxy.addr().to_string()), "{err}");
    let err = within(
        Duration::from_secs(3),
        "lock",
        cut.request("cut-other").wait(Duration::from_secs(1)).lock(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // The holder loses its hold at its deadline...
    let reason = within(ttl * 3, "loss while cut off", held.lost()).await;
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert!(started.elapsed() < ttl * 3);
    // ... and only then can another owner have it.
    let other = take(&direct, "cut", Duration::from_secs(5)).await;
    assert!(!held.is_held());
    other.release().await.unwrap();

    // Healed: the cut-off client works again.
    proxy.pass();
    let again = take(&cut, "cut-after", Duration::from_secs(10)).await;
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_ends_holds_at_once() {
    let server = common::server().await;
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let a = locker(
        proxy.addr(),
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await;
    let held = a.lock("reset").await.unwrap();
    proxy.reset();
    let reason = within(Duration::from_secs(3), "loss on reset", held.lost()).await;
    assert!(matches!(reason, LossReason::Gone(_)), "{reason}");
    proxy.pass();
    let again = take(&a, "reset-after", Duration::from_secs(10)).await;
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_idle_timeout_does_not_end_holds() {
    let server = common::server().await;
    // The server closes connections idle for a second: the request
    // connection between renewals, and the pub/sub connection unless it is
    // in pub/sub mode (which the server exempts).
    common::cmd(server.addr(), &["CONFIG", "SET", "timeout", "1"]).await;
    let a = locker(
        server.addr(),
        Duration::from_secs(3),
        Duration::from_millis(500),
    )
    .await;
    let held = a.lock("idle").await.unwrap();
    let lost = held.lost();
    tokio::select! {
        reason = lost => panic!("lost while idle: {reason}"),
        () = sleep(Duration::from_millis(3500)) => {}
    }
    assert!(held.is_held());
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cancelled_in_flight_is_undone() {
    let server = common::server().await;
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let slow = locker(
        proxy.addr(),
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await;
    // Load the scripts first, so each try below is one EVALSHA.
    slow.lock("warm").await.unwrap().release().await.unwrap();
    proxy.latency(Duration::from_millis(300));
    for i in 0..3 {
        let key = format!("cancelled-{i}");
        // Dropped while the request travels to the server, which will
        // grant it: the undo, sent after it, takes it back.
        let attempt = tokio::time::timeout(Duration::from_millis(100), slow.try_lock(&key)).await;
        assert!(
            attempt.is_err(),
            "answered within 100 ms through a 300 ms proxy"
        );
        within(Duration::from_secs(5), "the undo", async {
            // Granted (the counter moved), then undone (the lock is gone).
            loop {
                let counted = common::cmd(
                    server.addr(),
                    &["EXISTS", &format!("redisson_lock_token:{{{key}}}")],
                )
                .await;
                let held = common::cmd(server.addr(), &["EXISTS", &key]).await;
                use conformance::kit::resp::Resp::Integer;
                if counted == Integer(1) && held == Integer(0) {
                    break;
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    proxy.pass();
    let direct = locker(
        server.addr(),
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await;
    assert!(direct.try_lock("cancelled-0").await.unwrap().is_some());
}
