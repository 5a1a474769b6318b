//! What only ZooKeeper's sessions and watches give, on a real standalone
//! server: loss reported at once (not at the next renewal) when the node is
//! deleted or the session expires, one node per attempt even when the
//! connection breaks during the create, and a lease that frees the key of a
//! hold that stopped renewing while its session lives on.

mod common;

use common::ZkFixture;
use conformance::Fixture;
use lock_core::{Key, Locker};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// Long enough that a renewal (at a third of it) cannot be what reports a
/// loss within [`AT_ONCE`].
const TTL: Duration = Duration::from_secs(10);

/// "At once": a watch event and a little scheduling, far below `TTL / 3`.
const AT_ONCE: Duration = Duration::from_millis(1500);

fn key(name: &str) -> String {
    format!("session/{}/{name}", uuid::Uuid::new_v4())
}

#[test]
fn deleted_node_is_lost_at_once() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("deleted");
        let locker = fx.locker(TTL).await.unwrap();
        let guard = locker.lock(&key).await.unwrap();
        // Past the delay after which the node is watched.
        sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        assert!(
            lock_core_faults(&fx)
                .delete_hold(&Key::new(&key).unwrap())
                .await
                .unwrap()
        );
        let why = timeout(AT_ONCE, guard.lost())
            .await
            .unwrap_or_else(|_| panic!("a deleted node was not reported lost within {AT_ONCE:?}"));
        assert!(why.to_string().contains("deleted"), "{why}");
        assert!(t.elapsed() < AT_ONCE);
        assert!(!guard.is_held());
    })
}

#[test]
fn deletion_right_after_the_grant_is_lost_too() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("early");
        let locker = fx.locker(TTL).await.unwrap();
        let guard = locker.lock(&key).await.unwrap();
        // Before the node's watch is set.
        assert!(
            lock_core_faults(&fx)
                .delete_hold(&Key::new(&key).unwrap())
                .await
                .unwrap()
        );
        timeout(AT_ONCE, guard.lost())
            .await
            .expect("a node deleted before its watch was set is reported lost when it is set");
    })
}

#[test]
fn expired_session_is_lost_at_once() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("expired");
        // Renewal (at a third of 30 s) cannot be what finds the loss.
        let ttl = Duration::from_secs(30);
        let locker = fx.locker(ttl).await.unwrap();
        let guard = locker.lock(&key).await.unwrap();
        assert!(
            lock_core_faults(&fx)
                .expire_hold(&Key::new(&key).unwrap())
                .await
                .unwrap()
        );
        let t = Instant::now();
        let why = timeout(AT_ONCE * 2, guard.lost())
            .await
            .expect("an expired session is reported at once, not at the next renewal");
        println!(
            "session expiry reported {:?} after the session was closed: {why}",
            t.elapsed()
        );
        assert!(!guard.is_held(), "{why}");
        // The backend opens a new session for what comes next.
        let again = locker.lock(&key).await.expect("lock on a new session");
        again.release().await.unwrap();
    })
}

fn lock_core_faults(fx: &ZkFixture) -> &dyn conformance::Faults {
    fx.faults().expect("the fixture has faults")
}

/// The connection breaks after the server applied the create and before
/// its answer arrived: the attempt finds its node again by its `_c_<uuid>`
/// prefix instead of making a second one (which, first in the queue and
/// owned by a live session, would block the key for good).
#[test]
fn connection_lost_during_create_makes_one_node() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("create");
        let (backend, proxies) = fx.backend_with_proxies(TTL).await.unwrap();
        let lock_path = backend.lock_path(&Key::new(&key).unwrap());
        let locker = Locker::builder(Arc::new(backend)).ttl(TTL).build().unwrap();
        // Make the key's lock node exist, so the create below is the first
        // request of the attempt.
        locker.lock(&key).await.unwrap().release().await.unwrap();

        let latency = Duration::from_millis(300);
        proxies.iter().for_each(|p| p.latency(latency));
        let attempt = {
            let (locker, key) = (locker.clone(), key.clone());
            tokio::spawn(async move {
                locker
                    .request(&key)
                    .wait(Duration::from_secs(20))
                    .lock()
                    .await
            })
        };
        // The create reaches the server after `latency`; its answer would
        // be back after twice that. Break the connection in between.
        sleep(latency + latency / 2).await;
        proxies.iter().for_each(|p| p.reset());
        sleep(Duration::from_millis(50)).await;
        proxies.iter().for_each(|p| p.pass());
        let guard = timeout(Duration::from_secs(20), attempt)
            .await
            .expect("the attempt ends")
            .unwrap()
            .expect("granted after the connection came back");
        let contenders = fx.contenders(&Key::new(&key).unwrap()).await.unwrap();
        assert_eq!(
            contenders.len(),
            1,
            "one attempt made {} nodes under {lock_path}: {:?}",
            contenders.len(),
            contenders.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        assert_eq!(contenders[0].0, guard.info().handle);
        assert_eq!(contenders[0].1.czxid as u64, guard.token().get());
        guard.release().await.unwrap();
    })
}

/// Renewal off: the hold ends at its deadline, and the backend deletes its
/// node although its session lives on, so another client gets the key.
#[test]
fn a_hold_that_stops_renewing_frees_the_key() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("lease");
        let ttl = Duration::from_secs(1);
        let holder = fx.locker(ttl).await.unwrap();
        let other = fx.locker(ttl).await.unwrap();
        let guard = holder.request(&key).renewal(false).lock().await.unwrap();
        let node = guard.info().handle.clone();
        let deadline = guard.valid_until();
        std::mem::forget(guard);
        let next = other
            .request(&key)
            .wait(Duration::from_secs(10))
            .lock()
            .await
            .expect("the key is freed after the lease");
        assert!(
            Instant::now() >= deadline,
            "granted before the old hold's deadline"
        );
        assert!(fx.admin().await.check_stat(&node).await.unwrap().is_none());
        next.release().await.unwrap();
    })
}

/// The guarded write is one multi: it writes while the hold's node exists,
/// and is refused, writing nothing, once the node is gone.
#[test]
fn guarded_write_needs_the_hold() {
    common::run(async {
        let fx = common::standalone().await;
        let key = key("guarded");
        let backend = Arc::new(fx.backend(TTL).await.unwrap());
        let locker = Locker::builder(backend.clone()).ttl(TTL).build().unwrap();
        let target = format!("{}/guarded-{}", common::PREFIX, uuid::Uuid::new_v4());
        let admin = fx.admin().await;
        let persistent =
            lock_zk::zk::CreateMode::Persistent.with_acls(lock_zk::zk::Acls::anyone_all());
        // The lock creates the prefix the target lives in.
        let guard = locker.lock(&key).await.unwrap();
        admin.create(&target, b"v0", &persistent).await.unwrap();
        backend
            .guarded_set_data(guard.info(), &target, b"v1", None)
            .await
            .expect("a guarded write while held");
        let created = backend
            .guarded_create(
                guard.info(),
                &format!("{target}-child"),
                b"",
                lock_zk::zk::CreateMode::Persistent,
            )
            .await
            .expect("a guarded create while held");
        assert_eq!(admin.get_data(&target).await.unwrap().0, b"v1");

        assert!(
            lock_core_faults(&fx)
                .delete_hold(&Key::new(&key).unwrap())
                .await
                .unwrap()
        );
        let err = backend
            .guarded_set_data(guard.info(), &target, b"v2", None)
            .await
            .expect_err("a guarded write after the hold's node was deleted");
        assert_eq!(err.kind(), lock_core::ErrorKind::NotHeld, "{err}");
        assert_eq!(
            admin.get_data(&target).await.unwrap().0,
            b"v1",
            "a refused guarded write changed the data"
        );
        admin.delete(&created, None).await.unwrap();
        admin.delete(&target, None).await.unwrap();
    })
}

/// No server there: connecting is `Unavailable`, naming the address, never
/// a hang or a locker.
#[test]
fn unreachable_servers_are_unavailable() {
    common::run(async {
        lock_zk::register();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("zk://127.0.0.1:{port}?session_timeout=1s");
        let err = timeout(Duration::from_secs(15), lock_core::connect(&url))
            .await
            .expect("connecting gives up")
            .expect_err("nothing listens there");
        assert_eq!(err.kind(), lock_core::ErrorKind::Unavailable, "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    })
}

/// The holder is cut off past its deadline (so it reports the loss) and the
/// link heals at once, before the server expires its session: the session
/// lives on, and with it the node, until the backend deletes it for the
/// lease that ran out. Another client gets the key soon after; it is never
/// blocked for as long as the session lives. Three rounds, since the
/// healing races the server's expiry.
#[test]
fn a_partition_healed_before_the_session_expired_frees_the_key() {
    common::run(async {
        let fx = common::standalone().await;
        let ttl = Duration::from_secs(1);
        for round in 0..3 {
            let key = key(&format!("healed-{round}"));
            let (backend, proxies) = fx.backend_with_proxies(ttl).await.unwrap();
            let cut = Locker::builder(Arc::new(backend)).ttl(ttl).build().unwrap();
            let other = fx.locker(ttl).await.unwrap();
            let guard = cut.lock(&key).await.unwrap();
            proxies.iter().for_each(|p| p.blackhole());
            timeout(ttl * 3, guard.lost())
                .await
                .expect("the cut-off holder reports the loss");
            proxies.iter().for_each(|p| p.pass());
            let next = other
                .request(&key)
                .wait(Duration::from_secs(10))
                .lock()
                .await
                .unwrap_or_else(|e| panic!("round {round}: the key stays blocked: {e}"));
            assert!(next.token() > guard.token());
            next.release().await.unwrap();
        }
    })
}
