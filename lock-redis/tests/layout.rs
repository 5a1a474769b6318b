//! The Redisson layout, checked with a plain client against a real
//! `redis-server`: the hash, the counter, the channel, foreign data, and
//! the round trips each operation costs.

mod common;

use common::{bulk, bulks, calls, cmd, within};
use conformance::kit::resp::Resp;
use futures::StreamExt;
use lock_core::{AcquireRequest, Backend, ErrorKind, Key, Locker, Owner, Ttl, Wait};
use lock_redis::RedisConfig;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn hash_is_owner_to_count_and_reentry_counts_in_the_store() {
    let server = common::server().await;
    let addr = server.addr();
    let locker = common::locker(addr).await;

    let outer = locker.request("orders:1").owner("o1").lock().await.unwrap();
    assert_eq!(
        cmd(addr, &["HGETALL", "orders:1"]).await,
        bulks(&["o1", "1"])
    );
    assert_eq!(
        cmd(addr, &["TYPE", "orders:1"]).await,
        Resp::Simple("hash".into())
    );
    let Resp::Integer(pttl) = cmd(addr, &["PTTL", "orders:1"]).await else {
        panic!("PTTL")
    };
    assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
    let token = outer.token().get().to_string();
    assert_eq!(
        cmd(addr, &["GET", "redisson_lock_token:{orders:1}"]).await,
        bulk(&token)
    );

    let inner = locker.request("orders:1").owner("o1").lock().await.unwrap();
    assert_eq!(inner.token(), outer.token(), "a re-entry keeps the token");
    assert_eq!(
        cmd(addr, &["HGETALL", "orders:1"]).await,
        bulks(&["o1", "2"])
    );
    assert_eq!(
        cmd(addr, &["GET", "redisson_lock_token:{orders:1}"]).await,
        bulk(&token),
        "a re-entry takes no new token"
    );

    inner.release().await.unwrap();
    assert_eq!(
        cmd(addr, &["HGETALL", "orders:1"]).await,
        bulks(&["o1", "1"])
    );
    let first = outer.token();
    outer.release().await.unwrap();
    assert_eq!(cmd(addr, &["EXISTS", "orders:1"]).await, Resp::Integer(0));
    // The counter is never deleted, and the next hold gets a larger token.
    let next = locker.lock("orders:1").await.unwrap();
    assert!(next.token() > first);
    next.release().await.unwrap();
    assert_eq!(
        cmd(addr, &["EXISTS", "redisson_lock_token:{orders:1}"]).await,
        Resp::Integer(1)
    );
}

#[tokio::test]
async fn the_final_release_publishes_and_only_it() {
    let server = common::server().await;
    let addr = server.addr();
    let locker = common::locker(addr).await;

    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let (mut sink, mut messages) = client.get_async_pubsub().await.unwrap().split();
    sink.subscribe("redisson_lock__channel:{orders:1}")
        .await
        .unwrap();

    let outer = locker.request("orders:1").owner("o1").lock().await.unwrap();
    let inner = locker.request("orders:1").owner("o1").lock().await.unwrap();
    inner.release().await.unwrap();
    // Nothing for a release that leaves a count: a PING's reply proves the
    // subscriber has seen everything published before it.
    let quiet = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
    assert!(
        quiet.is_err(),
        "published on a non-final release: {quiet:?}"
    );

    outer.release().await.unwrap();
    let msg = within(
        Duration::from_secs(5),
        "the release message",
        messages.next(),
    )
    .await
    .expect("subscriber closed");
    assert_eq!(msg.get_channel_name(), "redisson_lock__channel:{orders:1}");
    assert_eq!(msg.get_payload::<String>().unwrap(), "0");
}

#[tokio::test]
async fn foreign_data_counts_as_held_and_is_untouched() {
    let server = common::server().await;
    let addr = server.addr();
    let locker = common::locker(addr).await;

    cmd(addr, &["SET", "str", "someone else's"]).await;
    cmd(addr, &["RPUSH", "list", "a", "b"]).await;
    cmd(addr, &["HSET", "hash", "o1", "not a count"]).await;
    for key in ["str", "list", "hash"] {
        assert!(
            locker.try_lock(key).await.unwrap().is_none(),
            "{key} was granted over foreign data"
        );
        // Even the owner named in a foreign hash is refused.
        let named = locker.request(key).owner("o1").try_lock().await.unwrap();
        assert!(named.is_none(), "{key}");
        let waited = locker
            .request(key)
            .wait(Duration::from_millis(200))
            .lock()
            .await
            .unwrap_err();
        assert_eq!(waited.kind(), ErrorKind::Timeout, "{key}: {waited}");
        let status = locker.status(key).await.unwrap();
        assert!(!status.is_free(), "{key}");
        let detail = status.holders[0].detail.clone().unwrap_or_default();
        assert!(detail.contains("foreign data"), "{key}: {detail}");
    }
    assert_eq!(cmd(addr, &["GET", "str"]).await, bulk("someone else's"));
    assert_eq!(
        cmd(addr, &["LRANGE", "list", "0", "-1"]).await,
        bulks(&["a", "b"])
    );
    assert_eq!(
        cmd(addr, &["HGETALL", "hash"]).await,
        bulks(&["o1", "not a count"])
    );
    assert_eq!(cmd(addr, &["TTL", "str"]).await, Resp::Integer(-1));

    // A counter holding foreign data is an error, never a grant.
    cmd(addr, &["RPUSH", "redisson_lock_token:{k}", "x"]).await;
    let err = locker.try_lock("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert_eq!(cmd(addr, &["EXISTS", "k"]).await, Resp::Integer(0));
}

#[tokio::test]
async fn a_retried_release_takes_off_one_count() {
    let server = common::server().await;
    let addr = server.addr();
    let backend = common::backend(addr).await;
    let locker = Locker::new(backend.clone() as Arc<dyn Backend>);
    let outer = locker.request("k").owner("o").lock().await.unwrap();
    let _inner = locker.request("k").owner("o").lock().await.unwrap();
    assert_eq!(cmd(addr, &["HGET", "k", "o"]).await, bulk("2"));
    // The locker's count before this release is 2; a retry says 2 again.
    backend.release(outer.info(), 2).await.unwrap();
    backend.release(outer.info(), 2).await.unwrap();
    assert_eq!(cmd(addr, &["HGET", "k", "o"]).await, bulk("1"));
}

#[tokio::test]
async fn prefix_namespaces_every_name() {
    let server = common::server().await;
    let addr = server.addr();
    lock_redis::register();
    let locker = lock_core::connect(&format!("redis://{addr}?prefix=app:&ttl=5s"))
        .await
        .unwrap();
    let guard = locker.request("orders:1").owner("o1").lock().await.unwrap();
    assert_eq!(
        cmd(addr, &["HGETALL", "app:orders:1"]).await,
        bulks(&["o1", "1"])
    );
    assert_eq!(cmd(addr, &["EXISTS", "orders:1"]).await, Resp::Integer(0));
    assert_eq!(
        cmd(addr, &["EXISTS", "redisson_lock_token:{app:orders:1}"]).await,
        Resp::Integer(1)
    );
    let status = locker.status("orders:1").await.unwrap();
    assert_eq!(status.holders[0].owner.as_deref(), Some("o1"));
    assert_eq!(status.holders[0].count, Some(1));
    assert_eq!(status.last_token, Some(guard.token()));
    guard.release().await.unwrap();
}

#[tokio::test]
async fn one_round_trip_per_acquire_release_and_renewal_batch() {
    let server = common::server().await;
    let addr = server.addr();
    let backend = common::backend(addr).await;
    let req = |key: &str| AcquireRequest {
        key: Key::new(key).unwrap(),
        owner: Owner::random(),
        ttl: Ttl::new(Duration::from_secs(10)).unwrap(),
        wait: Wait::No,
    };
    let info = |r: &AcquireRequest, g: &lock_core::Grant| lock_core::HoldInfo {
        key: r.key.clone(),
        owner: r.owner.clone(),
        token: g.token,
        ttl: g.ttl,
        handle: g.handle.clone(),
    };
    // Load the scripts once (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    let r = req("warm");
    let warm = backend.acquire(&r).await.unwrap().unwrap();
    let warm = Arc::new(info(&r, &warm));
    assert!(backend.renew(std::slice::from_ref(&warm)).await[0].is_ok());
    backend.release(&warm, 1).await.unwrap();
    assert_eq!(calls(addr, "script|load").await, 3);
    let mut infos = Vec::new();
    for key in ["a", "b", "c"] {
        let grant = backend.acquire(&req(key)).await.unwrap();
        assert!(grant.is_some());
    }
    cmd(addr, &["CONFIG", "RESETSTAT"]).await;

    let r = req("fresh");
    let grant = backend.acquire(&r).await.unwrap().unwrap();
    assert_eq!(calls(addr, "evalsha").await, 1, "one acquire, one EVALSHA");
    let fresh = info(&r, &grant);
    infos.push(Arc::new(fresh.clone()));
    backend.release(&fresh, 1).await.unwrap();
    assert_eq!(calls(addr, "evalsha").await, 2, "one release, one EVALSHA");

    // Three holds (one of them gone by now) renewed in one call.
    let mut holds = Vec::new();
    for key in ["x", "y"] {
        let r = req(key);
        let g = backend.acquire(&r).await.unwrap().unwrap();
        holds.push(Arc::new(info(&r, &g)));
    }
    holds.extend(infos);
    let before = calls(addr, "evalsha").await;
    let results = backend.renew(&holds).await;
    assert_eq!(
        calls(addr, "evalsha").await,
        before + 1,
        "one batch, one EVALSHA"
    );
    assert!(results[0].is_ok() && results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::NotHeld);
    // Nothing else went to the server: no EVAL, no script load, no
    // transaction. (Commands the scripts run are counted too, so only
    // commands no script uses are looked at.)
    for other in ["eval", "script|load", "multi", "exec", "hgetall", "ping"] {
        assert_eq!(calls(addr, other).await, 0, "{other}");
    }
}

#[tokio::test]
async fn a_waiter_is_woken_by_the_release_message() {
    let server = common::server().await;
    let addr = server.addr();
    let locker = common::locker(addr).await;
    // The holder's ttl is long: a waiter that only polled would wait
    // about that long.
    let holder = locker
        .request("busy")
        .ttl(Duration::from_secs(60))
        .lock()
        .await
        .unwrap();
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let guard = locker
                .request("busy")
                .wait(Duration::from_secs(50))
                .lock()
                .await
                .unwrap();
            (started.elapsed(), guard)
        })
    };
    // Let the waiter subscribe and wait.
    common::within(Duration::from_secs(5), "waiter subscribed", async {
        loop {
            let n = cmd(addr, &["PUBSUB", "NUMSUB", "redisson_lock__channel:{busy}"]).await;
            if n == Resp::Array(Some(vec![
                bulk("redisson_lock__channel:{busy}"),
                Resp::Integer(1),
            ])) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    holder.release().await.unwrap();
    let (waited, guard) = within(Duration::from_secs(20), "waiter", waiter)
        .await
        .unwrap();
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    assert!(guard.is_held());
    guard.release().await.unwrap();
    // The waiter's subscription goes with it.
    common::within(Duration::from_secs(5), "unsubscribed", async {
        loop {
            let n = cmd(addr, &["PUBSUB", "NUMSUB", "redisson_lock__channel:{busy}"]).await;
            if n == Resp::Array(Some(vec![
                bulk("redisson_lock__channel:{busy}"),
                Resp::Integer(0),
            ])) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Redisson's `RLock` scripts (tryLockInnerAsync and unlockInnerAsync, as
/// in Redisson 3.x), run with a plain client: a Java service using Redisson
/// on the same server.
const REDISSON_LOCK: &str = "if ((redis.call('exists', KEYS[1]) == 0) or (redis.call('hexists', KEYS[1], ARGV[2]) == 1)) then \
    redis.call('hincrby', KEYS[1], ARGV[2], 1); redis.call('pexpire', KEYS[1], ARGV[1]); return nil; end; \
    return redis.call('pttl', KEYS[1]);";
const REDISSON_UNLOCK: &str = "if (redis.call('hexists', KEYS[1], ARGV[3]) == 0) then return nil; end; \
    local counter = redis.call('hincrby', KEYS[1], ARGV[3], -1); \
    if (counter > 0) then redis.call('pexpire', KEYS[1], ARGV[2]); return 0; \
    else redis.call('del', KEYS[1]); redis.call('publish', KEYS[2], ARGV[1]); return 1; end; return nil;";

#[tokio::test]
async fn redisson_and_this_crate_exclude_each_other() {
    let server = common::server().await;
    let addr = server.addr();
    let locker = common::locker(addr).await;
    let java = "7c1e7a52-2f4b-4f59-9d8e-5d0c0e7f0b6a:42";
    let channel = "redisson_lock__channel:{orders:1}";

    // Java holds it: this crate is refused, then woken by Redisson's
    // unlock message.
    let got = cmd(
        addr,
        &["EVAL", REDISSON_LOCK, "1", "orders:1", "30000", java],
    )
    .await;
    assert_eq!(got, Resp::Bulk(None), "Redisson got the lock");
    assert!(locker.try_lock("orders:1").await.unwrap().is_none());
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            locker
                .request("orders:1")
                .wait(Duration::from_secs(25))
                .lock()
                .await
        })
    };
    within(Duration::from_secs(5), "waiter subscribed", async {
        let want = Resp::Array(Some(vec![bulk(channel), Resp::Integer(1)]));
        while cmd(addr, &["PUBSUB", "NUMSUB", channel]).await != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let unlocked = cmd(
        addr,
        &[
            "EVAL",
            REDISSON_UNLOCK,
            "2",
            "orders:1",
            channel,
            "0",
            "30000",
            java,
        ],
    )
    .await;
    assert_eq!(unlocked, Resp::Integer(1));
    // Woken by the message: far sooner than Redisson's 30 s lease.
    let guard = within(
        Duration::from_secs(10),
        "woken by Redisson's unlock",
        waiter,
    )
    .await
    .unwrap()
    .unwrap();

    // This crate holds it: Redisson is refused with the remaining ttl.
    let refused = cmd(
        addr,
        &["EVAL", REDISSON_LOCK, "1", "orders:1", "30000", java],
    )
    .await;
    assert!(
        matches!(refused, Resp::Integer(ttl) if ttl > 0),
        "Redisson was not refused: {refused:?}"
    );
    guard.release().await.unwrap();
    let got = cmd(
        addr,
        &["EVAL", REDISSON_LOCK, "1", "orders:1", "30000", java],
    )
    .await;
    assert_eq!(got, Resp::Bulk(None), "Redisson gets it once released");
}

#[tokio::test]
async fn credentials_database_and_prefix_from_the_url() {
    let server = common::server().await;
    let addr = server.addr();
    cmd(
        addr,
        &[
            "ACL", "SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all",
        ],
    )
    .await;
    lock_redis::register();
    let locker = lock_core::connect(&format!("redis://app:s3cret@{addr}/3?prefix=p:"))
        .await
        .unwrap();
    let guard = locker.request("k").owner("o1").lock().await.unwrap();
    // In database 3 under the prefix, nowhere else.
    let client = redis::Client::open(format!("redis://{addr}/3")).unwrap();
    let mut plain = client.get_multiplexed_async_connection().await.unwrap();
    let hash: Vec<String> = redis::cmd("HGETALL")
        .arg("p:k")
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(hash, ["o1", "1"]);
    assert_eq!(cmd(addr, &["EXISTS", "p:k"]).await, Resp::Integer(0));
    guard.release().await.unwrap();

    let err = lock_core::connect(&format!("redis://app:xyzzy-bad@{addr}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(!err.to_string().contains("xyzzy"), "password in {err}");
}

#[tokio::test]
async fn a_user_without_pubsub_rights_is_told_what_to_grant() {
    let server = common::server().await;
    let addr = server.addr();
    cmd(
        addr,
        &[
            "ACL",
            "SETUSER",
            "nochan",
            "on",
            ">pw",
            "~*",
            "+@all",
            "resetchannels",
        ],
    )
    .await;
    lock_redis::register();
    let err = lock_core::connect(&format!("redis://nochan:pw@{addr}?timeout=500ms"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(
        err.to_string().contains("redisson_lock__channel:*"),
        "{err}"
    );
}

/// The acquire script with a proposed token (Redlock's one round): the
/// counter is raised to the proposal only when the proposal exceeds it;
/// otherwise, and when the counter is not a number, it is left exactly as
/// it was (value and expiry), and foreign data is an error, never a grant.
#[tokio::test]
async fn a_proposed_token_only_ever_raises_the_counter() {
    use lock_redis::node::{Acquired, Node};
    let server = common::server().await;
    let addr = server.addr();
    let node = Node::connect(RedisConfig::new(addr.ip().to_string(), addr.port()))
        .await
        .expect("connect");
    let key = |k: &str| Key::new(k).unwrap();
    let counter = |k: &str| format!("redisson_lock_token:{{{k}}}");

    // A fresh counter takes the proposal.
    let got = node
        .acquire(&key("p1"), "o", 30_000, Some(7))
        .await
        .unwrap();
    assert_eq!(got, Acquired::New(lock_core::FencingToken(7)));
    assert_eq!(cmd(addr, &["GET", &counter("p1")]).await, bulk("7"));

    // A counter below the proposal is raised to it.
    cmd(addr, &["SET", &counter("p2"), "3"]).await;
    let got = node
        .acquire(&key("p2"), "o", 30_000, Some(4))
        .await
        .unwrap();
    assert_eq!(got, Acquired::New(lock_core::FencingToken(4)));
    assert_eq!(cmd(addr, &["GET", &counter("p2")]).await, bulk("4"));

    // A counter at or past the proposal is left as it was, expiry too; the
    // hold is taken and the counter reported.
    for (k, value) in [("p3", "9"), ("p4", "5")] {
        cmd(addr, &["SET", &counter(k), value, "PX", "600000"]).await;
        let got = node.acquire(&key(k), "o", 30_000, Some(5)).await.unwrap();
        let expected = lock_core::FencingToken(value.parse().unwrap());
        assert_eq!(got, Acquired::Refused(expected), "{k}");
        assert_eq!(cmd(addr, &["GET", &counter(k)]).await, bulk(value), "{k}");
        let Resp::Integer(pttl) = cmd(addr, &["PTTL", &counter(k)]).await else {
            panic!("PTTL")
        };
        assert!(pttl > 500_000, "{k}: the counter's expiry changed: {pttl}");
        assert_eq!(cmd(addr, &["HGET", k, "o"]).await, bulk("1"), "{k}");
    }

    // A counter that is not a number, or not a string: an error, nothing
    // changed, no hold.
    cmd(addr, &["SET", &counter("p5"), "not a number"]).await;
    cmd(addr, &["RPUSH", &counter("p6"), "x"]).await;
    for k in ["p5", "p6"] {
        let err = node
            .acquire(&key(k), "o", 30_000, Some(5))
            .await
            .expect_err(k);
        assert_eq!(err.kind(), ErrorKind::Backend, "{k}: {err}");
        assert_eq!(cmd(addr, &["EXISTS", k]).await, Resp::Integer(0), "{k}");
    }
    assert_eq!(
        cmd(addr, &["GET", &counter("p5")]).await,
        bulk("not a number")
    );
    assert_eq!(
        cmd(addr, &["LRANGE", &counter("p6"), "0", "-1"]).await,
        bulks(&["x"])
    );
}
