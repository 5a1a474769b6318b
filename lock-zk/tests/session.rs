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

/// The session that created the node `path` (its ephemeral owner).
async fn session_of(fx: &ZkFixture, path: &str) -> i64 {
    fx.admin()
        .await
        .check_stat(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} is gone"))
        .ephemeral_owner
}

/// A request for ttl `T` is served on a session of timeout `T`, which its
/// grant reports; owners asking the same ttl share that session (each with
/// a node of its own), other ttls get sessions of their own, and the
/// default ttl stays on the session opened at connect.
#[test]
fn each_ttl_gets_a_session_of_its_own() {
    common::run(async {
        let fx = common::standalone().await;
        let backend = Arc::new(fx.backend(TTL).await.unwrap());
        let locker = Locker::builder(backend.clone()).ttl(TTL).build().unwrap();
        assert_eq!(backend.sessions().len(), 1);
        let (one, two) = (Duration::from_secs(1), Duration::from_secs(2));
        let a = locker.request(&key("a")).ttl(one).lock().await.unwrap();
        let b = locker.request(&key("b")).ttl(one).lock().await.unwrap();
        let c = locker.request(&key("c")).ttl(two).lock().await.unwrap();
        let d = locker.lock(&key("d")).await.unwrap();
        assert_eq!((a.ttl(), b.ttl(), c.ttl(), d.ttl()), (one, one, two, TTL));
        let sessions = backend.sessions();
        assert_eq!(sessions.len(), 3, "one session per ttl: {sessions:?}");
        let owners = [
            session_of(&fx, &a.info().handle).await,
            session_of(&fx, &b.info().handle).await,
            session_of(&fx, &c.info().handle).await,
            session_of(&fx, &d.info().handle).await,
        ];
        assert_eq!(owners[0], owners[1], "one ttl, one session");
        assert_ne!(a.info().handle, b.info().handle);
        assert_ne!(owners[0], owners[2]);
        assert_ne!(owners[2], owners[3]);
        assert_eq!(owners[3], backend.session_id(), "the default ttl's session");
        // Renewed on their own sessions well past the short ttls.
        sleep(two * 2).await;
        for g in [&a, &b, &c, &d] {
            assert!(
                g.is_held(),
                "{} lost: renewal of its session failed",
                g.key()
            );
        }
        for g in [a, b, c, d] {
            g.release().await.unwrap();
        }
    })
}

/// An expired session ends its own holds, at once, and no other: a hold on
/// another session of the same backend stays held.
#[test]
fn an_expired_session_ends_only_its_holds() {
    common::run(async {
        let fx = common::standalone().await;
        let locker = fx.locker(TTL).await.unwrap();
        let (short, long) = (key("short"), key("long"));
        let doomed = locker
            .request(&short)
            .ttl(Duration::from_secs(2))
            .lock()
            .await
            .unwrap();
        let kept = locker.lock(&long).await.unwrap();
        assert!(
            lock_core_faults(&fx)
                .expire_hold(&Key::new(&short).unwrap())
                .await
                .unwrap()
        );
        let why = timeout(AT_ONCE * 2, doomed.lost())
            .await
            .expect("an expired session's hold is reported lost at once");
        assert!(why.to_string().contains("session"), "{why}");
        sleep(Duration::from_millis(500)).await;
        assert!(kept.is_held(), "a hold on another session was ended too");
        assert!(
            fx.admin()
                .await
                .check_stat(&kept.info().handle)
                .await
                .unwrap()
                .is_some()
        );
        // The expired timeout gets a new session.
        let again = locker
            .request(&short)
            .ttl(Duration::from_secs(2))
            .lock()
            .await
            .expect("lock on a new session of the same timeout");
        assert!(again.token() > doomed.token());
        again.release().await.unwrap();
        kept.release().await.unwrap();
    })
}

/// Many distinct ttls at once open at most `MAX_SESSIONS` sessions; a
/// request that finds every session in use is served on a longer one
/// (never a shorter ttl than asked while a longer exists); once the holds
/// are gone, an idle session makes room for a new timeout.
#[test]
fn sessions_are_bounded() {
    common::run(async {
        let fx = common::standalone().await;
        let backend = Arc::new(fx.backend(TTL).await.unwrap());
        let locker = Locker::builder(backend.clone()).ttl(TTL).build().unwrap();
        let ttls: Vec<Duration> = [1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        let mut guards = Vec::new();
        for &ttl in &ttls {
            let g = locker
                .request(&key("bounded"))
                .ttl(ttl)
                .lock()
                .await
                .unwrap();
            assert!(g.ttl() >= ttl, "asked {ttl:?}, granted {:?}", g.ttl());
            guards.push(g);
        }
        let open = backend.sessions().len();
        assert_eq!(open, lock_zk::MAX_SESSIONS, "{open} sessions open");
        for g in guards {
            g.release().await.unwrap();
        }
        let ttl = Duration::from_millis(800);
        let g = locker.request(&key("room")).ttl(ttl).lock().await.unwrap();
        assert_eq!(g.ttl(), ttl, "an idle session did not make room");
        assert!(backend.sessions().len() <= lock_zk::MAX_SESSIONS);
        g.release().await.unwrap();
    })
}

/// In a URL, `session_timeout=` (what a Curator user reaches for) and the
/// common `ttl=` are one knob: either sets the ttl of holds whose request
/// names none; both must agree.
#[test]
fn session_timeout_in_the_url_is_the_default_ttl() {
    common::run(async {
        let fx = common::standalone().await;
        let url = fx.url().expect("a URL");
        for option in ["session_timeout=2s", "ttl=2s", "ttl=2s&session_timeout=2s"] {
            let locker = lock_core::connect(&format!("{url}&{option}"))
                .await
                .unwrap();
            let g = locker.lock(&key("url")).await.unwrap();
            assert_eq!(g.ttl(), Duration::from_secs(2), "{option}");
            g.release().await.unwrap();
        }
        let err = lock_core::connect(&format!("{url}&ttl=2s&session_timeout=3s"))
            .await
            .expect_err("ttl= and session_timeout= disagree");
        assert_eq!(err.kind(), lock_core::ErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains("session_timeout"), "{err}");
    })
}
