//! What the backend costs the store, in requests, on a real standalone
//! server (its `zk_packets_received` from `mntr`, which counts every
//! request a client sends, pings included): lock + release, on fresh keys
//! and on one key again and again, sends no more than zookeeper-client's
//! own Curator-style lock recipe; one renewal of many holds sends a handful
//! of requests, not one per hold; and a renewal never confirms a node
//! deleted behind the backend's back.

mod common;

use lock_core::{AcquireRequest, Backend, HoldInfo, Key, Locker, Owner, Ttl, Wait};
use lock_zk::{ZkBackend, zk};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::sleep;

/// Long, so that no session ping falls inside a measurement (pings go at a
/// third of the session timeout).
const TTL: Duration = Duration::from_secs(60);

async fn packets(fx: &common::ZkFixture) -> u64 {
    let mntr = fx
        .ensemble()
        .server(0)
        .four_letter_word("mntr")
        .await
        .expect("mntr");
    mntr.lines()
        .find_map(|l| l.strip_prefix("zk_packets_received\t"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no zk_packets_received in {mntr:?}"))
}

/// The requests `f` makes the server receive: the packets counted around
/// it, less those counted around nothing (`mntr` counts itself).
async fn count<F: Future<Output = ()>>(fx: &common::ZkFixture, f: F) -> u64 {
    let before = packets(fx).await;
    let idle = packets(fx).await - before;
    let before = packets(fx).await;
    f.await;
    (packets(fx).await - before).saturating_sub(idle)
}

#[test]
fn fresh_keys_cost_no_more_requests_than_the_recipe() {
    common::run(async {
        let fx = common::standalone().await;
        const PAIRS: u64 = 20;
        let run = uuid::Uuid::new_v4();

        let backend = Arc::new(fx.direct_backend(TTL).await.unwrap());
        let locker = Locker::builder(backend.clone()).ttl(TTL).build().unwrap();
        // The base path exists from here on, as in any long-lived process.
        locker
            .lock(&format!("warm-{run}"))
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        let ours = count(&fx, async {
            for i in 0..PAIRS {
                let guard = locker.lock(&format!("fresh-{run}-{i}")).await.unwrap();
                guard.release().await.unwrap();
            }
        })
        .await;

        let client = zk::Client::connector()
            .with_session_timeout(TTL)
            .connect(&fx.ensemble().connect_string())
            .await
            .unwrap();
        let recipe = |dir: String| {
            let client = &client;
            async move {
                let prefix = zk::LockPrefix::new_curator(&dir, "lock-").unwrap();
                let options = zk::LockOptions::new(zk::Acls::anyone_all())
                    .with_ancestor_options(
                        zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
                    )
                    .unwrap();
                let lock = client.lock(prefix, b"", options).await.unwrap();
                let path = lock.lock_path().to_owned();
                std::mem::forget(lock);
                client.delete(&path, None).await.unwrap();
            }
        };
        recipe(format!("/recipe-{run}/warm")).await;
        let theirs = count(&fx, async {
            for i in 0..PAIRS {
                recipe(format!("/recipe-{run}/fresh-{i}")).await;
            }
        })
        .await;
        println!(
            "requests per lock + release on a fresh key: lock-zk {:.2}, recipe {:.2}",
            ours as f64 / PAIRS as f64,
            theirs as f64 / PAIRS as f64
        );
        assert!(
            ours <= theirs,
            "fresh keys: lock-zk sent {ours} requests for {PAIRS} pairs, the recipe {theirs}"
        );

        // One key again and again (its lock node stays: a contender is
        // created in it as the last one goes).
        let ours = count(&fx, async {
            for _ in 0..PAIRS {
                let guard = locker.lock(&format!("fresh-{run}-0")).await.unwrap();
                guard.release().await.unwrap();
            }
        })
        .await;
        let theirs = count(&fx, async {
            for _ in 0..PAIRS {
                recipe(format!("/recipe-{run}/fresh-0")).await;
            }
        })
        .await;
        println!(
            "requests per lock + release on one key: lock-zk {:.2}, recipe {:.2}",
            ours as f64 / PAIRS as f64,
            theirs as f64 / PAIRS as f64
        );
        assert!(
            ours <= theirs,
            "one key: lock-zk sent {ours} requests for {PAIRS} pairs, the recipe {theirs}"
        );
    });
}

#[test]
fn a_renewal_of_watched_holds_costs_a_few_requests() {
    common::run(async {
        let fx = common::standalone().await;
        const HOLDS: usize = 300;
        let backend: ZkBackend = fx.direct_backend(TTL).await.unwrap();
        let holds = hold_many(&backend, "renewal-counter", HOLDS).await;
        // Let the watcher set its watches (and answer them) first.
        sleep(Duration::from_secs(1)).await;
        let sent = count(&fx, async {
            for answer in backend.renew(&holds).await {
                answer.unwrap();
            }
        })
        .await;
        println!("requests for one renewal of {HOLDS} watched holds: {sent}");
        assert!(
            sent <= 4,
            "one renewal of {HOLDS} watched holds sent {sent} requests"
        );
    });
}

/// Holds of fresh keys granted by `backend` to one owner, as the locker
/// passes them back to renewals.
async fn hold_many(backend: &ZkBackend, name: &str, n: usize) -> Vec<Arc<HoldInfo>> {
    hold_many_padded(backend, name, n, 0).await
}

/// As [`hold_many`], with keys and owner `pad` bytes longer.
async fn hold_many_padded(
    backend: &ZkBackend,
    name: &str,
    n: usize,
    pad: usize,
) -> Vec<Arc<HoldInfo>> {
    let run = uuid::Uuid::new_v4();
    let padding = "p".repeat(pad);
    let owner = Owner::new(format!("{name}{padding}")).unwrap();
    let mut holds = Vec::new();
    for i in 0..n {
        let key = Key::new(format!("{name}-{run}-{i}{padding}")).unwrap();
        let req = AcquireRequest {
            key: key.clone(),
            owner: owner.clone(),
            ttl: Ttl::new(TTL).unwrap(),
            wait: Wait::No,
        };
        let grant = backend.acquire(&req).await.unwrap().expect("a free key");
        holds.push(Arc::new(HoldInfo {
            key,
            owner: owner.clone(),
            token: grant.token,
            ttl: grant.ttl,
            handle: grant.handle,
        }));
    }
    holds
}

#[test]
fn a_renewal_never_confirms_a_deleted_node() {
    common::run(async {
        let fx = common::standalone().await;
        let backend: ZkBackend = fx.direct_backend(TTL).await.unwrap();
        let admin = fx.admin().await;
        // Young holds (not watched yet, so the renewal's reads are what
        // finds out) and watched ones, each batch with some of its nodes
        // deleted behind the backend's back.
        for (name, settle) in [("young", None), ("watched", Some(Duration::from_secs(1)))] {
            let holds = hold_many(&backend, name, 6).await;
            if let Some(settle) = settle {
                sleep(settle).await;
            }
            let deleted = [1, 2, 5];
            let deletes: Vec<_> = deleted
                .iter()
                .map(|&i| admin.delete(&holds[i].handle, None))
                .collect();
            for d in futures::future::join_all(deletes).await {
                d.unwrap();
            }
            let answers = backend.renew(&holds).await;
            for (i, answer) in answers.iter().enumerate() {
                if deleted.contains(&i) {
                    assert!(
                        matches!(answer, Err(lock_core::Error::NotHeld { .. })),
                        "{name} hold {i}: its node was deleted, yet the renewal answered {answer:?}"
                    );
                } else {
                    assert!(answer.is_ok(), "{name} hold {i}: {answer:?}");
                }
            }
        }
    });
}

#[test]
fn a_renewal_in_several_multi_reads_answers_each_hold() {
    common::run(async {
        let fx = common::standalone().await;
        let backend: ZkBackend = fx.direct_backend(TTL).await.unwrap();
        let admin = fx.admin().await;
        // Long keys and owners: a few hundred reads fill a multi-read.
        const HOLDS: usize = 900;
        let holds = hold_many_padded(&backend, "chunked", HOLDS, 200).await;
        // Let the watcher set its watches first (they are requests too).
        sleep(Duration::from_secs(1)).await;
        let deleted = [0, 1, 383, 384, 385, 500, 768, 769, HOLDS - 1];
        let deletes: Vec<_> = deleted
            .iter()
            .map(|&i| admin.delete(&holds[i].handle, None))
            .collect();
        for d in futures::future::join_all(deletes).await {
            d.unwrap();
        }
        let mut answers = Vec::new();
        let sent = count(&fx, async {
            answers = backend.renew(&holds).await;
        })
        .await;
        println!("requests for one renewal of {HOLDS} holds with long names: {sent}");
        assert!(
            (3..=10).contains(&sent),
            "{sent} requests: not a sync and a few multi-reads"
        );
        for (i, answer) in answers.iter().enumerate() {
            if deleted.contains(&i) {
                assert!(
                    matches!(answer, Err(lock_core::Error::NotHeld { .. })),
                    "hold {i}: its node was deleted, yet the renewal answered {answer:?}"
                );
            } else {
                assert!(answer.is_ok(), "hold {i}: {answer:?}");
            }
        }
    });
}
