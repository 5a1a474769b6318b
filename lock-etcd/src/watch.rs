//! etcd watches: a waiter's wait for its predecessor's deletion, and a
//! holder's watch on its own key (the hold's loss signal).

use crate::errors;
use etcd_client::{EventType, GetOptions, KvClient, WatchClient, WatchFilterType, WatchOptions};
use lock_core::{LossReason, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

/// How a wait for a deletion ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// The key was deleted, or the watch was cancelled by etcd (compacted):
    /// look again.
    LookAgain,
    /// The deadline passed first.
    TimedOut,
}

/// Waits until `key` is deleted at revision `from` or later, or `deadline`
/// passes. Starting at `from` (the revision at which the key was seen)
/// means a deletion in between is not missed.
///
/// # Cancel safety
/// Safe to drop: the watch stream closes with it.
pub(crate) async fn deleted(
    watch: &WatchClient,
    endpoints: &str,
    key: &str,
    from: i64,
    deadline: Option<Instant>,
) -> Result<Deleted> {
    let wait = async {
        let mut client = watch.clone();
        let options = WatchOptions::new()
            .with_start_revision(from)
            .with_filters([WatchFilterType::NoPut]);
        let mut stream = client
            .watch(key, Some(options))
            .await
            .map_err(|e| errors::map(endpoints, "watching the predecessor", e))?;
        loop {
            let Some(resp) = stream
                .message()
                .await
                .map_err(|e| errors::map(endpoints, "watching the predecessor", e))?
            else {
                return Err(errors::map(
                    endpoints,
                    "watching the predecessor",
                    etcd_client::Error::WatchError("stream closed".into()),
                ));
            };
            if resp.canceled()
                || resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
            {
                return Ok(Deleted::LookAgain);
            }
        }
    };
    match deadline {
        None => wait.await,
        Some(deadline) => tokio::select! {
            r = wait => r,
            () = sleep_until(deadline) => Ok(Deleted::TimedOut),
        },
    }
}

/// How long a hold lives before its loss watch opens: most holds are
/// shorter, and then cost no watch at all.
pub(crate) const LOSS_WATCH_DELAY: Duration = Duration::from_millis(50);

/// Resolves when etcd says the hold with holder key `key`, created at
/// revision `rev`, is gone: the key deleted (lease revoked or expired, or a
/// client deleted it), unless `releasing` says the holder itself deleted
/// it. Stays pending otherwise. A broken watch is reopened from `rev + 1`,
/// so no deletion is missed; a watch cancelled by compaction is replaced
/// after checking that the key still has revision `rev`.
pub(crate) async fn loss(
    watch: WatchClient,
    kv: KvClient,
    key: String,
    rev: i64,
    releasing: Arc<AtomicBool>,
) -> LossReason {
    // Holds shorter than this never open a watch. Starting at `rev + 1`,
    // a watch opened later still reports a deletion made before.
    sleep(LOSS_WATCH_DELAY).await;
    let gone = |why: &str| LossReason::Gone(format!("holder key {key:?} {why}"));
    let mut from = rev + 1;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut client = watch.clone();
        let options = WatchOptions::new()
            .with_start_revision(from)
            .with_filters([WatchFilterType::NoPut]);
        if let Ok(mut stream) = client.watch(key.as_str(), Some(options)).await {
            while let Ok(Some(resp)) = stream.message().await {
                backoff = Duration::from_millis(50);
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    if releasing.load(Ordering::Acquire) {
                        return std::future::pending().await;
                    }
                    return gone(
                        "was deleted (its lease was revoked or expired, or a client deleted it)",
                    );
                }
                if resp.canceled() {
                    // Compacted past `from`: is the key still ours?
                    let mut kv = kv.clone();
                    if let Ok(got) = kv
                        .get(key.as_str(), Some(GetOptions::new().with_keys_only()))
                        .await
                    {
                        let still = got
                            .kvs()
                            .first()
                            .is_some_and(|kv| kv.create_revision() == rev);
                        if !still {
                            if releasing.load(Ordering::Acquire) {
                                return std::future::pending().await;
                            }
                            return gone("is gone");
                        }
                        from = got.header().map_or(from, |h| h.revision() + 1);
                    }
                    break;
                }
            }
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
