//! The locker's own mechanics on the memory backend: re-entry, renewal by
//! one task, deadlines, loss, release on drop, errors. The SPEC items
//! themselves are checked by the conformance suite, which also runs on
//! `memory://`.

use lock_core::{Backend, ErrorKind, Locker, LossReason, MemoryBackend, MemoryStore, Owner};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

fn store_and_locker(ttl: Duration) -> (Arc<MemoryStore>, MemoryBackend, Locker) {
    let backend = MemoryBackend::new();
    let store = backend.store().clone();
    let locker = Locker::builder(Arc::new(backend.clone()))
        .ttl(ttl)
        .build()
        .unwrap();
    (store, backend, locker)
}

#[tokio::test]
async fn reentry_shares_token_and_counts() {
    let (store, _, locker) = store_and_locker(Duration::from_secs(5));
    let a = locker.request("k").owner("o").lock().await.unwrap();
    let b = locker.request("k").owner("o").lock().await.unwrap();
    assert_eq!(a.token(), b.token());
    assert_eq!(a.hold_count(), 2);
    let status = locker.status("k").await.unwrap();
    assert_eq!(status.holders[0].count, Some(2));
    b.release().await.unwrap();
    assert!(a.is_held());
    assert_eq!(locker.status("k").await.unwrap().holders[0].count, Some(1));
    a.release().await.unwrap();
    assert_eq!(store.held_count(), 0);
}

#[tokio::test]
async fn renewal_outlives_the_ttl() {
    let (_, _, locker) = store_and_locker(Duration::from_millis(150));
    let g = locker.lock("k").await.unwrap();
    sleep(Duration::from_millis(800)).await;
    assert!(g.is_held());
    assert!(locker.try_lock("k").await.unwrap().is_none());
    g.release().await.unwrap();
}

#[tokio::test]
async fn without_renewal_the_deadline_ends_the_hold() {
    let backend = MemoryBackend::new();
    let locker = Locker::builder(Arc::new(backend))
        .ttl(Duration::from_millis(200))
        .renewal(false)
        .build()
        .unwrap();
    let g = locker.lock("k").await.unwrap();
    let started = Instant::now();
    let reason = timeout(Duration::from_secs(2), g.lost()).await.unwrap();
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert!(started.elapsed() <= Duration::from_millis(250));
    assert!(!g.is_held());
    assert_eq!(g.release().await.unwrap_err().kind(), ErrorKind::NotHeld);
}

#[tokio::test]
async fn deletion_behind_the_back_is_reported_at_once() {
    let (store, backend, locker) = store_and_locker(Duration::from_secs(10));
    let g = locker.lock("k").await.unwrap();
    assert!(store.delete_hold(&backend.name(g.key())));
    let reason = timeout(Duration::from_secs(1), g.lost()).await.unwrap();
    assert!(matches!(reason, LossReason::Gone(_)), "{reason:?}");
    assert!(!g.is_held());
}

#[tokio::test]
async fn silent_expiry_is_found_by_the_next_renewal() {
    let (store, backend, locker) = store_and_locker(Duration::from_millis(300));
    let g = locker.lock("k").await.unwrap();
    assert!(store.force_expire(&backend.name(g.key())));
    let reason = timeout(Duration::from_millis(300), g.lost()).await.unwrap();
    assert!(matches!(reason, LossReason::Gone(_)), "{reason:?}");
}

#[tokio::test]
async fn unreachable_store_loses_the_hold_at_the_deadline() {
    let (store, _, locker) = store_and_locker(Duration::from_millis(300));
    let g = locker.lock("k").await.unwrap();
    store.set_unavailable(true);
    let reason = timeout(Duration::from_millis(400), g.lost()).await.unwrap();
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert_eq!(
        locker.try_lock("x").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    store.set_unavailable(false);
}

/// Holds released before the renewal task took them never reach it, and
/// do not wake it; a hold that follows them is still renewed and watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_after_short_ones_is_renewed_and_watched() {
    let (store, backend, locker) = store_and_locker(Duration::from_millis(300));
    for _ in 0..200 {
        let g = locker.lock("k").await.unwrap();
        let lost = g.lost();
        g.release().await.unwrap();
        // A released hold never reports a loss.
        assert!(timeout(Duration::ZERO, lost).await.is_err());
    }
    let g = locker.lock("k").await.unwrap();
    sleep(Duration::from_millis(1000)).await;
    assert!(g.is_held(), "not renewed");
    assert!(locker.try_lock("k").await.unwrap().is_none());
    assert!(store.delete_hold(&backend.name(g.key())));
    let reason = timeout(Duration::from_secs(1), g.lost()).await.unwrap();
    assert!(matches!(reason, LossReason::Gone(_)), "{reason:?}");
}

#[tokio::test]
async fn a_store_deletion_right_after_the_grant_is_reported() {
    let (store, backend, locker) = store_and_locker(Duration::from_secs(10));
    for _ in 0..3 {
        locker.lock("k").await.unwrap().release().await.unwrap();
    }
    let g = locker.lock("k").await.unwrap();
    // The renewal task has not run since the grant: the loss comes
    // through the signal the locker polled.
    assert!(store.delete_hold(&backend.name(g.key())));
    let reason = timeout(Duration::from_secs(1), g.lost()).await.unwrap();
    assert!(matches!(reason, LossReason::Gone(_)), "{reason:?}");
    assert!(!g.is_held());
}

#[tokio::test]
async fn dropped_guard_releases_in_the_background() {
    let (store, _, locker) = store_and_locker(Duration::from_secs(10));
    let g = locker.lock("k").await.unwrap();
    drop(g);
    let other = timeout(Duration::from_secs(1), locker.request("k").lock()).await;
    other.unwrap().unwrap().release().await.unwrap();
    sleep(Duration::from_millis(50)).await;
    assert_eq!(store.held_count(), 0);
}

#[tokio::test]
async fn timeout_error_says_how_long() {
    let (_, _, locker) = store_and_locker(Duration::from_secs(10));
    let _g = locker.lock("k").await.unwrap();
    let e = locker
        .request("k")
        .wait(Duration::from_millis(100))
        .lock()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_retryable());
}

#[tokio::test]
async fn many_holds_share_one_renewal_batch() {
    #[derive(Debug)]
    struct Counting(MemoryBackend, std::sync::atomic::AtomicUsize);
    #[lock_core::async_trait]
    impl Backend for Counting {
        fn capabilities(&self) -> &lock_core::Capabilities {
            self.0.capabilities()
        }
        async fn acquire(
            &self,
            r: &lock_core::AcquireRequest,
        ) -> lock_core::Result<Option<lock_core::Grant>> {
            self.0.acquire(r).await
        }
        async fn renew(&self, h: &[Arc<lock_core::HoldInfo>]) -> Vec<lock_core::Result<()>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.renew(h).await
        }
        async fn release(&self, h: &lock_core::HoldInfo, c: u32) -> lock_core::Result<()> {
            self.0.release(h, c).await
        }
        async fn status(&self, k: &lock_core::Key) -> lock_core::Result<lock_core::LockStatus> {
            self.0.status(k).await
        }
    }
    let backend = Arc::new(Counting(MemoryBackend::new(), Default::default()));
    let locker = Locker::builder(backend.clone())
        .ttl(Duration::from_millis(600))
        .build()
        .unwrap();
    let mut guards = Vec::new();
    for i in 0..1000 {
        guards.push(locker.lock(&format!("k{i}")).await.unwrap());
    }
    sleep(Duration::from_millis(1300)).await;
    assert!(guards.iter().all(|g| g.is_held()));
    let calls = backend.1.load(std::sync::atomic::Ordering::SeqCst);
    // 1000 holds renewed about 6 times each: a call per hold would be ~6000.
    assert!(calls <= 30, "{calls} renew calls for 1000 holds");
}

#[tokio::test]
async fn owner_is_validated() {
    let (_, _, locker) = store_and_locker(Duration::from_secs(1));
    let e = locker.request("k").owner("").lock().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let e = locker.request("").lock().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidKey);
    let e = locker
        .request("k")
        .ttl(Duration::ZERO)
        .lock()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let _ = Owner::random();
}

#[tokio::test]
async fn reentry_after_the_store_dropped_the_hold_is_a_new_hold() {
    use futures::FutureExt;
    let (store, _, locker) = store_and_locker(Duration::from_secs(10));
    let first = locker.request("k").owner("o").lock().await.unwrap();
    assert!(store.force_expire("k"));
    let again = locker.request("k").owner("o").lock().await.unwrap();
    assert!(!first.is_held());
    assert!(first.lost().now_or_never().is_some());
    assert!(again.token() > first.token());
    assert_eq!(again.hold_count(), 1);
}

#[tokio::test]
async fn a_cut_client_fails_while_others_go_on() {
    let backend = MemoryBackend::new();
    let other = Locker::new(Arc::new(MemoryBackend::with_store(backend.store().clone())));
    let cut = Locker::builder(Arc::new(backend.clone()))
        .ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let g = cut.lock("k").await.unwrap();
    backend.set_unreachable(true);
    assert_eq!(
        cut.try_lock("x").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert!(other.try_lock("x").await.unwrap().is_some());
    let reason = timeout(Duration::from_secs(1), g.lost()).await.unwrap();
    assert_eq!(reason, LossReason::DeadlinePassed);
    // The store expires the hold; the other client gets it.
    let got = timeout(Duration::from_secs(1), other.request("k").lock())
        .await
        .unwrap()
        .unwrap();
    assert!(got.token() > g.token());
}
