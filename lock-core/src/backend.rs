//! The store-facing [`Backend`] trait: what a store crate implements, and
//! exactly what each method must do under the SPEC.
//!
//! The [`Locker`](crate::Locker) does everything that is the same on every
//! store: re-entry counts, the local validity deadline, the one renewal
//! scheduler, loss signalling, release on drop. A backend only talks to its
//! store.

use crate::{Capabilities, Error, FencingToken, Key, LossReason, Owner, Result, Ttl};
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long an acquisition may wait for a held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Try once and answer at once (`try_lock`).
    No,
    /// Wait until this instant, then give up.
    Until(Instant),
    /// Wait until granted.
    Forever,
}

impl Wait {
    /// Whether the wait has run out at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        match self {
            Wait::No => true,
            Wait::Until(t) => now >= *t,
            Wait::Forever => false,
        }
    }

    /// The instant the wait runs out, if it ever does.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(t) => Some(*t),
            Wait::Forever => None,
        }
    }
}

/// One request to start a new hold.
#[derive(Clone, Debug)]
pub struct AcquireRequest {
    /// The key to lock.
    pub key: Key,
    /// The owner that will hold it.
    pub owner: Owner,
    /// The requested ttl; the store may round it up (report that in
    /// [`Grant::ttl`]).
    pub ttl: Ttl,
    /// How long to wait if the key is held.
    pub wait: Wait,
}

/// A future a backend resolves when its store says a hold is gone (an etcd
/// watch on the holder's key, a ZooKeeper session expiry, ...). It may stay
/// pending forever; the locker drops it when the hold ends.
pub type LossSignal = BoxFuture<'static, LossReason>;

/// A new hold, as granted by the store.
pub struct Grant {
    /// The hold's fencing token.
    pub token: FencingToken,
    /// The ttl the store actually granted (the requested one rounded up to
    /// the store's granularity, or a ZooKeeper session timeout).
    pub ttl: Duration,
    /// When the request that took the hold was SENT (SPEC item 5): the local
    /// deadline counts from here, so it never outlasts the store's own
    /// expiry, however long the answer took.
    pub valid_from: Instant,
    /// The backend's own reference to the hold (etcd key, ZooKeeper node
    /// path, ...), handed back in [`HoldInfo::handle`]; opaque to the locker.
    pub handle: String,
    /// Resolves if the store reports the hold gone; `None` when the store
    /// cannot tell (the next renewal finds out instead).
    pub lost: Option<LossSignal>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("token", &self.token)
            .field("ttl", &self.ttl)
            .field("valid_from", &self.valid_from)
            .field("handle", &self.handle)
            .field("lost", &self.lost.as_ref().map(|_| "LossSignal"))
            .finish()
    }
}

/// A hold the locker has, as passed back to the backend: fixed for the
/// hold's whole life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldInfo {
    /// The key.
    pub key: Key,
    /// The owner.
    pub owner: Owner,
    /// The token the grant carried.
    pub token: FencingToken,
    /// The effective ttl the grant carried.
    pub ttl: Duration,
    /// The grant's [`Grant::handle`].
    pub handle: String,
}

impl HoldInfo {
    /// The [`Error::NotHeld`] a backend returns when the store no longer has
    /// this hold.
    pub fn not_held(&self) -> Error {
        Error::not_held(&self.key, &self.owner)
    }
}

/// One holder of a key, as far as the store can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HolderStatus {
    /// The owner id, where the store records it.
    pub owner: Option<String>,
    /// The hold's token, where the store can tell.
    pub token: Option<FencingToken>,
    /// Re-entry count, where the store counts.
    pub count: Option<u32>,
    /// Time left before the store expires the hold, where it can tell.
    pub remaining: Option<Duration>,
    /// Anything else the store shows (foreign data, a lease id, a node path).
    pub detail: Option<String>,
}

impl HolderStatus {
    /// A holder with nothing known about it but `owner`.
    pub fn new(owner: Option<String>) -> Self {
        HolderStatus {
            owner,
            ..Self::default()
        }
    }
}

/// What the store says of a key, for `dlock status`, error messages and
/// tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStatus {
    /// The key.
    pub key: Key,
    /// The holder, if any (a list because foreign data may look like
    /// several).
    pub holders: Vec<HolderStatus>,
    /// The number of queued waiters, where the store queues them.
    pub waiters: Option<usize>,
    /// The largest fencing token handed out for this key so far, where the
    /// store keeps a counter.
    pub last_token: Option<FencingToken>,
}

impl LockStatus {
    /// A status with no holder.
    pub fn free(key: Key) -> Self {
        LockStatus {
            key,
            holders: Vec::new(),
            waiters: None,
            last_token: None,
        }
    }

    /// Whether nobody holds the key.
    pub fn is_free(&self) -> bool {
        self.holders.is_empty()
    }
}

/// A lock store. Implemented once per store crate; used through
/// `Arc<dyn Backend>` by the [`Locker`](crate::Locker).
///
/// # Contract
///
/// Every method may be called concurrently from many tasks. Every async
/// method may be dropped at any await point (the locker's callers cancel);
/// what that leaves behind is stated per method. Errors: store unreachable or
/// quorum not met → [`Error::Unavailable`]; the hold is gone →
/// [`Error::NotHeld`]; anything else → [`Error::Backend`]. Never answer "yes"
/// when the answer is not known (SPEC item 9): an unexpected reply, foreign
/// data at the lock's place, a key of another type all count as "held by
/// someone else", never as granted, never overwritten, never a panic.
///
/// Keys reach the backend validated ([`Key`]); the backend maps them into its
/// namespace injectively and reversibly, under its `prefix=` option.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// What this backend guarantees.
    fn capabilities(&self) -> &Capabilities;

    /// Starts a new hold of `req.key` for `req.owner`, waiting per
    /// `req.wait` (by the store's notification, polling only as a
    /// fallback). Returns `Ok(None)` when the key is still held by someone
    /// else when the wait runs out (at once for [`Wait::No`]).
    ///
    /// If the store already has a hold of this key by this very owner (a
    /// second client naming the same owner), a backend that counts
    /// re-entries in the store adds a count and grants with the hold's
    /// existing token; others may treat it as held by someone else.
    ///
    /// The grant's token must be larger than every token granted for this
    /// key before (SPEC item 3), and `valid_from` no later than when the
    /// request that took the hold was sent.
    ///
    /// # Cancel safety
    /// If dropped, nothing it created may stay held for longer than one ttl,
    /// and a queue entry made for waiting must be removed (in the background
    /// if need be). Say in [`Capabilities::cancel_cleans_up`] whether the
    /// store is left exactly as before.
    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>>;

    /// Called when the locker re-enters a hold it has; `count` is the count
    /// after re-entry. The default keeps counts only in the locker (etcd,
    /// ZooKeeper). Backends that count in the store (Redis's hash) add one
    /// there, and fail with [`Error::NotHeld`] if the hold is gone.
    ///
    /// # Cancel safety
    /// If dropped, the store may or may not have counted the re-entry; an
    /// extra count is at worst freed by the store's expiry one ttl after the
    /// final release.
    async fn reenter(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        let _ = (hold, count);
        Ok(())
    }

    /// Extends each hold by its ttl, measured from when the request is
    /// sent. Returns one result per hold, in order: `Ok` if extended,
    /// [`Error::NotHeld`] if the store no longer has it (expired, deleted,
    /// taken), another error if the outcome is unknown (the locker retries
    /// until the hold's deadline). Backends send the whole slice in as few
    /// round trips as the store allows (one script, one pipeline, one
    /// keep-alive stream).
    ///
    /// # Cancel safety
    /// If dropped, some holds may have been extended; that is harmless.
    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>>;

    /// Takes one count off a hold; `count` is the locker's count BEFORE this
    /// release. At the last count the hold is deleted and waiters notified.
    ///
    /// Must be idempotent, because the locker retries a release whose
    /// outcome is unknown: a backend counting in the store takes a count off
    /// only if the store's count is at least `count` (a smaller count means
    /// a previous try already took effect: succeed without change). A
    /// backend counting only in the locker does nothing while `count > 1`.
    /// Fails with [`Error::NotHeld`], leaving the store untouched, if the
    /// hold is gone or belongs to someone else.
    ///
    /// # Cancel safety
    /// If dropped, the release may or may not have happened; the locker
    /// retries it in the background.
    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()>;

    /// What the store says of `key` now.
    ///
    /// # Cancel safety
    /// Read-only; safe to drop.
    async fn status(&self, key: &Key) -> Result<LockStatus>;
}

/// The drift margin taken off every local deadline (SPEC item 5): 1% of
/// the ttl plus 2 ms, as in the Redlock algorithm. It covers the difference
/// between this clock and the store's over one ttl.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Maps a renew result vector of the wrong length to errors, so a backend
/// bug can never renew holds it did not report on.
pub(crate) fn renew_results(mut results: Vec<Result<()>>, len: usize) -> Vec<Result<()>> {
    if results.len() != len {
        let n = results.len();
        results = (0..len)
            .map(|_| {
                Err(Error::backend(format!(
                    "backend returned {n} renewal results for {len} holds"
                )))
            })
            .collect();
    }
    results
}
