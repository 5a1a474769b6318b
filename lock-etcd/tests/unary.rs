//! The backend's own connection for the lock protocol's Txns and reads
//! (src/unary.rs), against real etcd from the conformance kit: it skips a
//! dead member, dials again after a restart, leaves a partitioned member
//! for another, and stays open while idle; and etcd-client's connection
//! (keep-alive and watch streams) stays open under an idle hold.

use conformance::kit::{EtcdCluster, FaultProxy};
use lock_core::{ErrorKind, Locker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

async fn locker(endpoints: &[SocketAddr], options: &str) -> lock_core::Result<Locker> {
    lock_etcd::register();
    let hosts: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    lock_core::connect(&format!("etcd://{}?{options}", hosts.join(","))).await
}

/// Takes and releases a fresh lock (a new key each time, so that a failed
/// try leaves nothing in the way) until it works or `within` passes;
/// returns the failures seen before.
async fn lock_until(locker: &Locker, what: &str, within: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut failures = Vec::new();
    for n in 0.. {
        let key = format!("{what}-{n}");
        let outcome = match locker.try_lock(&key).await {
            Ok(Some(guard)) => guard.release().await.map_err(|e| e.to_string()),
            Ok(None) => Err(format!("{key} held by someone")),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => return failures,
            Err(e) => failures.push(e),
        }
        assert!(
            start.elapsed() < within,
            "{what}: no lock within {within:?}; failures: {failures:#?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// A loopback port nobody listens on.
fn dead_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped_for_the_next() {
    let etcd = EtcdCluster::single().await.unwrap();
    let endpoints = [dead_port(), etcd.endpoints()[0]];
    let locker = locker(&endpoints, "timeout=2s")
        .await
        .expect("connect with the second endpoint alive");
    for n in 0..3 {
        let guard = locker.lock(&format!("dead-first-{n}")).await.unwrap();
        guard.release().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_member_is_dialled_again() {
    let etcd = EtcdCluster::single().await.unwrap();
    let locker = locker(&etcd.endpoints(), "timeout=2s").await.unwrap();
    let guard = locker.lock("restart").await.unwrap();
    guard.release().await.unwrap();
    // Same port, same data: the connection the backend had is gone.
    etcd.member(0).kill();
    etcd.member(0).restart().await.unwrap();
    let failures = lock_until(&locker, "restart", Duration::from_secs(10)).await;
    // A call in flight while the member went may fail; the next ones not.
    assert!(failures.len() <= 3, "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_member_is_left_for_another() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    let mut proxies = Vec::new();
    for member in etcd.members() {
        proxies.push(FaultProxy::start(member.client_addr()).await.unwrap());
    }
    let endpoints: Vec<SocketAddr> = proxies.iter().map(FaultProxy::addr).collect();
    let locker = locker(&endpoints, "timeout=2s&ttl=5s").await.unwrap();
    // The lock's connection goes to the first endpoint listed.
    lock_until(&locker, "partition-before", Duration::from_secs(10)).await;
    // A partition, not a close: only a ping that goes unanswered tells.
    proxies[0].blackhole();
    let start = Instant::now();
    let failures = lock_until(&locker, "partition", Duration::from_secs(30)).await;
    eprintln!(
        "locked again after {:?}, {} failures",
        start.elapsed(),
        failures.len()
    );
}

#[tokio::test]
async fn an_unanswering_only_member_fails_connect_within_the_timeout() {
    let etcd = EtcdCluster::single().await.unwrap();
    let proxy = FaultProxy::start(etcd.endpoints()[0]).await.unwrap();
    proxy.blackhole();
    let start = Instant::now();
    let err = locker(&[proxy.addr()], "timeout=1s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// A TCP relay to `upstream` that counts the connections it accepted.
async fn counting_relay(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_idle_connection_is_kept_open() {
    // etcd closes a connection pinged while idle (GOAWAY too_many_pings
    // after the third ping within its keep-alive minimum time, 5 s): the
    // lock's connection pings only while a call waits, so after a pause
    // the next lock needs no new connection (etcd-client's connection, for
    // the pool's keep-alive stream, stays open too: see the next test).
    let etcd = EtcdCluster::single().await.unwrap();
    let (relay, accepted) = counting_relay(etcd.endpoints()[0]).await;
    let locker = locker(&[relay], "timeout=2s&ttl=1s").await.unwrap();
    lock_until(&locker, "idle-before", Duration::from_secs(10)).await;
    sleep(Duration::from_millis(500)).await;
    let before = accepted.load(Ordering::SeqCst);
    sleep(Duration::from_secs(8)).await;
    lock_until(&locker, "idle-after", Duration::from_secs(10)).await;
    let after = accepted.load(Ordering::SeqCst);
    assert_eq!(after, before, "connections made across an idle pause");
}

#[tokio::test]
async fn a_holder_keeps_its_connections_while_idle() {
    // etcd strikes a ping that comes within 5 s of the previous one with
    // nothing written in between (and any ping on a connection without
    // streams), and closes the connection at the third strike (GOAWAY
    // too_many_pings). A hold of 30 s gets a keep-alive answer only every
    // 10 s: etcd-client's connection, which carries the keep-alive and
    // watch streams, must not ping faster than etcd allows, or it is
    // closed and its streams reopened every few seconds.
    let etcd = EtcdCluster::single().await.unwrap();
    let (relay, accepted) = counting_relay(etcd.endpoints()[0]).await;
    let locker = locker(&[relay], "timeout=2s&ttl=30s").await.unwrap();
    let guard = locker.lock("idle-holder").await.unwrap();
    sleep(Duration::from_millis(500)).await;
    let before = accepted.load(Ordering::SeqCst);
    sleep(Duration::from_secs(12)).await;
    let after = accepted.load(Ordering::SeqCst);
    assert!(guard.is_held(), "the hold ended while idle");
    guard.release().await.unwrap();
    assert_eq!(after, before, "connections made while holding, idle");
}
