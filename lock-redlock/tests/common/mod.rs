//! Helpers shared by the fault and token tests.
#![allow(dead_code, unreachable_pub)]

use conformance::kit::RedisMasters;
use lock_core::{Backend, ErrorKind, FencingToken, Locker, Result};
use lock_redlock::{RedlockBackend, RedlockConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// A new client of `masters` (its own connections and token memory).
pub async fn locker(masters: &RedisMasters, ttl: Duration) -> Locker {
    locker_with(masters, ttl, "timeout=500ms").await
}

/// A new client of `masters` with the URL options `options`.
pub async fn locker_with(masters: &RedisMasters, ttl: Duration, options: &str) -> Locker {
    let url = format!("{}?{options}", masters.redlock_url());
    let backend = RedlockBackend::connect(RedlockConfig::from_url(&url).unwrap())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the masters: {e}"));
    Locker::builder(Arc::new(backend) as Arc<dyn Backend>)
        .ttl(ttl)
        .build()
        .unwrap()
}

/// Takes `key` (it is free) and releases it, returning the hold's token.
/// A retryable error (the client still reconnecting to restarted nodes)
/// is retried for up to 20 s; anything else fails the test.
pub async fn take_and_release(locker: &Locker, key: &str) -> FencingToken {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        match locker.try_lock(key).await {
            Ok(Some(guard)) => {
                let token = guard.token();
                guard.release().await.expect("release");
                return token;
            }
            Ok(None) => panic!("{key} is free, but try_lock said not acquired"),
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < give_up => {
                sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("try_lock {key}: {e}"),
        }
    }
}

/// Asserts `f` returns within `limit` (a loose bound: a deadlock or a
/// blocked round, not a benchmark).
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// The result type of the helpers.
pub type R<T> = Result<T>;
