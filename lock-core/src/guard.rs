//! [`LockGuard`]: one count of a hold, with its token, validity and loss
//! signal.

use crate::hold::{Decrement, Hold};
use crate::locker::LockerInner;
use crate::scheduler::Command;
use crate::{Error, FencingToken, HoldInfo, Key, LossReason, Owner, Result};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One count of a hold. While it lives, the hold is renewed in the
/// background (unless renewal is off); dropping it stops renewal and
/// releases that count in the background; [`release`](Self::release) does
/// it now and reports the outcome.
///
/// Re-entrant acquisitions by the same owner each get their own guard on
/// the same hold: same token, same loss signal, one count each.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let locker = lock_core::connect("memory://").await?;
/// let guard = locker.lock("cron.clean-expired").await?;
/// tokio::select! {
///     reason = guard.lost() => eprintln!("lock lost ({reason}); stop writing"),
///     () = async { /* the critical section, passing guard.token() to the store */ } => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LockGuard {
    locker: Arc<LockerInner>,
    hold: Arc<Hold>,
    /// Set once this guard's count has been given back.
    done: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", self.key())
            .field("owner", self.owner())
            .field("token", &self.token())
            .field("ttl", &self.ttl())
            .field("held", &self.is_held())
            .finish()
    }
}

impl LockGuard {
    pub(crate) fn new(locker: Arc<LockerInner>, hold: Arc<Hold>) -> Self {
        LockGuard {
            locker,
            hold,
            done: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn hold(&self) -> &Arc<Hold> {
        &self.hold
    }

    /// The locked key.
    pub fn key(&self) -> &Key {
        &self.hold.info.key
    }

    /// The owner holding it.
    pub fn owner(&self) -> &Owner {
        &self.hold.info.owner
    }

    /// The hold's fencing token: pass it with every write to the resource
    /// the lock protects.
    pub fn token(&self) -> FencingToken {
        self.hold.info.token
    }

    /// The effective ttl the store granted (rounded up where the store
    /// counts whole seconds or sessions).
    pub fn ttl(&self) -> Duration {
        self.hold.info.ttl
    }

    /// What the backend was told about this hold.
    pub fn info(&self) -> &HoldInfo {
        &self.hold.info
    }

    /// Whether the hold is valid now: not lost, and before its local
    /// deadline (SPEC item 5). False from the deadline on even if nothing
    /// has noticed yet, so it turns false before any other owner can be
    /// granted the key.
    pub fn is_held(&self) -> bool {
        self.hold.is_held()
    }

    /// The local deadline: the hold is valid until then unless a renewal
    /// moves it.
    pub fn valid_until(&self) -> Instant {
        self.hold.deadline()
    }

    /// The hold's re-entry count (all guards of the hold together).
    pub fn hold_count(&self) -> u32 {
        self.hold.count()
    }

    /// Resolves when the hold is lost (deadline passed without renewal, or
    /// the store said it is gone), with the reason. Never resolves for a
    /// hold that is released normally. Select on it in the critical
    /// section.
    ///
    /// # Cancel safety
    /// Safe to drop and call again.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.hold.lost()
    }

    /// Renews the hold now, by its ttl from now. Fails with
    /// [`Error::NotHeld`] (and the hold is lost) if it has expired or the
    /// store no longer has it; with a retryable error if the store could
    /// not be asked (the hold stays valid until its deadline).
    ///
    /// # Cancel safety
    /// If dropped, the hold may or may not have been extended; its local
    /// deadline only moves on a confirmed renewal.
    pub async fn extend(&self) -> Result<()> {
        let not_held = || Error::not_held(self.key(), self.owner());
        if !self.hold.is_held() {
            return Err(not_held());
        }
        let sent = Instant::now();
        let backend = &self.locker.shared.backend;
        let result = backend
            .renew(std::slice::from_ref(&self.hold.info))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(Error::backend("backend returned no renewal result")));
        match result {
            Ok(()) if self.hold.renewed(sent) => {
                self.locker.send(Command::Extended(self.hold.id));
                Ok(())
            }
            Ok(()) => Err(not_held()),
            Err(Error::NotHeld { .. }) => {
                self.locker.lose(
                    &self.hold,
                    LossReason::Gone("an extend found the hold gone".into()),
                );
                Err(not_held())
            }
            Err(e) => Err(e),
        }
    }

    /// Releases this guard's count now. At the last count the key is freed
    /// and waiters are woken. Fails with [`Error::NotHeld`], leaving the
    /// store untouched, if the hold had already expired or been lost.
    ///
    /// On a retryable error the outcome is unknown; the release is retried
    /// in the background until the hold's deadline (never taking off two
    /// counts), after which the store frees it by expiry.
    ///
    /// # Cancel safety
    /// If dropped, the release finishes in the background, as for a dropped
    /// guard.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        let hold = self.hold.clone();
        let (before, last) = match hold.decrement() {
            Decrement::Done { before, last } => (before, last),
            Decrement::NotValid => return Err(Error::not_held(self.key(), self.owner())),
        };
        if last {
            self.locker.ended(&hold);
        }
        let mut pending = PendingRelease {
            locker: &self.locker,
            hold: &hold,
            count: before,
            armed: true,
        };
        let result = self.locker.shared.backend.release(&hold.info, before).await;
        match &result {
            Ok(()) => {
                tracing::debug!(key = %hold.info.key, owner = %hold.info.owner, count = before - 1, "released")
            }
            Err(Error::NotHeld { .. }) if !last => {
                self.locker.lose(
                    &hold,
                    LossReason::Gone("a release found the hold gone".into()),
                );
            }
            Err(e) if e.is_retryable() => return result,
            Err(_) => {}
        }
        pending.armed = false;
        result
    }
}

/// Hands a release whose outcome is unknown (failed or cancelled) to the
/// renewal task, which retries it.
struct PendingRelease<'a> {
    locker: &'a LockerInner,
    hold: &'a Hold,
    count: u32,
    armed: bool,
}

impl Drop for PendingRelease<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.locker.send(Command::Release {
                info: self.hold.info.clone(),
                count: self.count,
                until: self
                    .hold
                    .deadline()
                    .max(Instant::now() + self.hold.info.ttl),
            });
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Decrement::Done { before, last } = self.hold.decrement() {
            if last {
                self.locker.ended(&self.hold);
            }
            tracing::debug!(key = %self.hold.info.key, owner = %self.hold.info.owner, "guard dropped; releasing in the background");
            self.locker.send(Command::Release {
                info: self.hold.info.clone(),
                count: before,
                until: self.hold.deadline(),
            });
        }
    }
}
