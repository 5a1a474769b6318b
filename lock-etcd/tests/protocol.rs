//! The etcd mutex protocol as this crate writes it, checked in etcd itself
//! (a real single-member etcd from the conformance kit).

use conformance::kit::EtcdCluster;
use etcd_client::{Client, GetOptions};
use lock_core::{AcquireRequest, Backend, ErrorKind, HoldInfo, Key, Locker, Owner, Ttl, Wait};
use lock_etcd::{EtcdBackend, EtcdConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, timeout};

async fn locker(etcd: &EtcdCluster, ttl: &str) -> Locker {
    lock_etcd::register();
    lock_core::connect(&format!("{}?ttl={ttl}", etcd.url()))
        .await
        .expect("connect")
}

fn config_of(etcd: &EtcdCluster) -> EtcdConfig {
    EtcdConfig::new(
        etcd.endpoints()
            .iter()
            .map(|a| lock_core::Endpoint {
                host: a.ip().to_string(),
                port: a.port(),
            })
            .collect(),
    )
}

async fn raw(etcd: &EtcdCluster) -> Client {
    let eps: Vec<String> = etcd.endpoints().iter().map(|a| a.to_string()).collect();
    Client::connect(eps, None).await.expect("etcd-client")
}

async fn keys(client: &mut Client, prefix: &str) -> Vec<(String, i64, i64)> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_owned(),
                kv.create_revision(),
                kv.lease(),
            )
        })
        .collect()
}

#[tokio::test]
async fn holder_key_is_name_slash_lease_hex_and_token_is_its_create_revision() {
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "5s").await;
    let mut client = raw(&etcd).await;
    let guard = a.lock("order/123").await.unwrap();
    let found = keys(&mut client, "order/123/").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (key, rev, lease) = &found[0];
    assert_eq!(key, &format!("order/123/{lease:x}"));
    assert_eq!(guard.token().get(), *rev as u64);
    // etcd granted 5 s and the lock reports what was granted.
    let ttl = client.lease_time_to_live(*lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 5);
    guard.release().await.unwrap();
    assert!(keys(&mut client, "order/123/").await.is_empty());
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order_with_increasing_tokens() {
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "5s").await;
    let b = locker(&etcd, "5s").await;
    let first = a.lock("fifo").await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let l = if i % 2 == 0 { b.clone() } else { a.clone() };
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = l.lock("fifo").await.unwrap();
            order.lock().unwrap().push((i, g.token().get()));
            g.release().await.unwrap();
        }));
        // Arrival order: each waiter's key exists before the next starts.
        let mut client = raw(&etcd).await;
        let mut tries = 0;
        while keys(&mut client, "fifo/").await.len() < i + 2 {
            tries += 1;
            assert!(tries < 500, "waiter {i} never queued its key");
            sleep(Duration::from_millis(10)).await;
        }
    }
    let t0 = first.token().get();
    first.release().await.unwrap();
    for t in tasks {
        timeout(Duration::from_secs(10), t).await.unwrap().unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    let tokens: Vec<u64> = order.iter().map(|(_, t)| *t).collect();
    assert!(
        t0 < tokens[0] && tokens.windows(2).all(|w| w[0] < w[1]),
        "{t0} {tokens:?}"
    );
}

#[tokio::test]
async fn try_lock_on_a_held_key_leaves_nothing_behind() {
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "5s").await;
    let b = locker(&etcd, "5s").await;
    let mut client = raw(&etcd).await;
    let held = a.lock("try").await.unwrap();
    assert!(b.try_lock("try").await.unwrap().is_none());
    assert_eq!(keys(&mut client, "try/").await.len(), 1);
    held.release().await.unwrap();
    let g = b.try_lock("try").await.unwrap().expect("free now");
    g.release().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_wait_removes_its_key_and_the_next_waiter_proceeds() {
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "5s").await;
    let b = locker(&etcd, "5s").await;
    let mut client = raw(&etcd).await;
    let held = a.lock("cancel").await.unwrap();
    let waiting = timeout(Duration::from_millis(300), b.lock("cancel")).await;
    assert!(waiting.is_err(), "the lock is held");
    // The dropped wait's key goes (revoked in the background).
    let mut n = usize::MAX;
    for _ in 0..100 {
        n = keys(&mut client, "cancel/").await.len();
        if n == 1 {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 1, "only the holder's key is left");
    held.release().await.unwrap();
    let g = timeout(Duration::from_secs(5), b.lock("cancel"))
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
}

#[tokio::test]
async fn deleting_the_holder_key_is_reported_as_loss_and_release_is_not_held() {
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "30s").await;
    let mut client = raw(&etcd).await;
    let guard = a.lock("deleted").await.unwrap();
    client
        .delete(
            "deleted/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let reason = timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("loss is reported without waiting for the ttl");
    assert!(reason.to_string().contains("deleted"), "{reason}");
    assert!(!guard.is_held());
    let err = guard.release().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotHeld | ErrorKind::Lost),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_unavailable_naming_the_endpoints() {
    lock_etcd::register();
    let err = lock_core::connect("etcd://127.0.0.1:1?timeout=500ms")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_waiter_whose_key_vanished_is_not_granted_on_it() {
    // etcd#11456: a waiter must confirm its own key before reporting the
    // lock; here an administrator deletes it while it waits.
    let etcd = EtcdCluster::single().await.unwrap();
    let a = locker(&etcd, "5s").await;
    let b = locker(&etcd, "5s").await;
    let mut client = raw(&etcd).await;
    let held = a.lock("vanish").await.unwrap();
    let waiter = tokio::spawn(async move { b.lock("vanish").await });
    let mut found = Vec::new();
    for _ in 0..250 {
        found = keys(&mut client, "vanish/").await;
        if found.len() == 2 {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(found.len(), 2, "the waiter queued: {found:?}");
    let newest = found.iter().max_by_key(|(_, rev, _)| *rev).unwrap();
    client.delete(newest.0.as_str(), None).await.unwrap();
    held.release().await.unwrap();
    let guard = timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Granted on a key that exists, and the store agrees who holds it.
    let status = a.status("vanish").await.unwrap();
    assert_eq!(
        status.holders.first().and_then(|h| h.token),
        Some(guard.token()),
        "granted on a key etcd does not have: {status:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_stale_release_never_deletes_a_newer_hold_of_the_same_lease() {
    // etcd#22082: leases return to the pool and are used again, so one
    // lease (and one key name) can carry an old and a new hold; the release
    // is guarded by the create revision.
    let etcd = EtcdCluster::single().await.unwrap();
    let mut config = config_of(&etcd);
    config.pool = 1;
    let backend = EtcdBackend::connect(config).await.unwrap();
    let req = AcquireRequest {
        key: Key::new("stale").unwrap(),
        owner: Owner::random(),
        ttl: Ttl::new(Duration::from_secs(5)).unwrap(),
        wait: Wait::No,
    };
    let hold = |g: &lock_core::Grant| HoldInfo {
        key: req.key.clone(),
        owner: req.owner.clone(),
        token: g.token,
        ttl: g.ttl,
        handle: g.handle.clone(),
    };
    let old = hold(&backend.acquire(&req).await.unwrap().unwrap());
    backend.release(&old, 1).await.unwrap();
    // The same lease again (the pool gives back what was released).
    let new = hold(&backend.acquire(&req).await.unwrap().unwrap());
    assert_eq!(new.handle, old.handle, "the pool reused the lease");
    assert!(new.token > old.token);
    let err = backend.release(&old, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    let status = backend.status(&req.key).await.unwrap();
    assert_eq!(
        status.holders.first().and_then(|h| h.token),
        Some(new.token),
        "the stale release deleted the newer hold"
    );
    backend.release(&new, 1).await.unwrap();
}

#[tokio::test]
async fn guarded_writes_apply_only_while_the_hold_is_current() {
    let etcd = EtcdCluster::single().await.unwrap();
    let backend = Arc::new(EtcdBackend::connect(config_of(&etcd)).await.unwrap());
    let locker = Locker::new(backend.clone());
    let mut client = raw(&etcd).await;
    let guard = locker.lock("ledger").await.unwrap();
    let hold = guard.info().clone();
    backend
        .put_if_held(&hold, "ledger-balance", "1")
        .await
        .unwrap();
    guard.release().await.unwrap();
    // A stale holder writes nothing.
    let err = backend
        .put_if_held(&hold, "ledger-balance", "2")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    let err = backend
        .delete_if_held(&hold, "ledger-balance")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotHeld, "{err}");
    let got = client.get("ledger-balance", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"1");
}

/// etcd's `/metrics` text.
async fn metrics(etcd: &EtcdCluster) -> String {
    let addr = etcd.member(0).client_addr().to_string();
    conformance::kit::http_get(&addr, "/metrics").await.unwrap()
}

/// The value of the first metric line starting with `prefix`.
async fn metric(etcd: &EtcdCluster, prefix: &str) -> u64 {
    metrics(etcd)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("etcd reports no {prefix}")) as u64
}

/// etcd's count of range reads so far.
async fn range_reads(etcd: &EtcdCluster) -> u64 {
    metric(etcd, "etcd_debugging_mvcc_range_total ").await
}

#[tokio::test]
async fn a_release_wakes_only_the_next_waiter() {
    // Each waiter watches only its immediate predecessor: when the holder
    // leaves, one waiter looks (one Txn of two reads), not all of them.
    let etcd = EtcdCluster::single().await.unwrap();
    let holder = locker(&etcd, "10s").await;
    let mut client = raw(&etcd).await;
    let held = holder.lock("herd").await.unwrap();
    let mut waiters = Vec::new();
    for n in 0..5 {
        let l = locker(&etcd, "10s").await;
        waiters.push(tokio::spawn(async move {
            let g = l.lock("herd").await.unwrap();
            // Hold on, so that the next waiter is not woken in this window.
            sleep(Duration::from_secs(30)).await;
            drop(g);
        }));
        let mut tries = 0;
        while keys(&mut client, "herd/").await.len() < n + 2 {
            tries += 1;
            assert!(tries < 500, "waiter {n} never queued");
            sleep(Duration::from_millis(10)).await;
        }
    }
    // Let every waiter settle on its watch.
    sleep(Duration::from_millis(300)).await;
    let before = range_reads(&etcd).await;
    held.release().await.unwrap();
    // Each status is one range read of its own; count them.
    let mut statuses = 0;
    let mut granted = false;
    for _ in 0..250 {
        statuses += 1;
        if holder.status("herd").await.unwrap().waiters == Some(4) {
            granted = true;
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert!(granted, "the next waiter took the lock");
    sleep(Duration::from_millis(300)).await;
    let woken = range_reads(&etcd).await - before - statuses;
    // The next waiter's one Txn of two reads; a herd would be 5 such Txns.
    assert!(woken <= 3, "{woken} range reads after one release: a herd");
    for w in waiters {
        w.abort();
    }
}

#[tokio::test]
async fn every_lease_is_kept_alive_on_one_stream() {
    let etcd = EtcdCluster::single().await.unwrap();
    let ours = locker(&etcd, "1s").await;
    let mut guards = Vec::new();
    for n in 0..20 {
        guards.push(ours.lock(&format!("many/{n}")).await.unwrap());
    }
    // Several renewals of every hold (each a third of the 1 s ttl).
    sleep(Duration::from_millis(1500)).await;
    assert!(guards.iter().all(|g| g.is_held()), "a hold was not renewed");
    let streams = metric(
        &etcd,
        "grpc_server_started_total{grpc_method=\"LeaseKeepAlive\"",
    )
    .await;
    assert_eq!(
        streams, 1,
        "keep-alive streams opened for 20 holds and the pool"
    );
    for g in guards {
        g.release().await.unwrap();
    }
}
