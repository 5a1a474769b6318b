//! One hold's shared state: re-entry count, local validity deadline, and
//! whether (and why) it ended. Shared by the guards of the hold, the locker's
//! table and the renewal scheduler.

use crate::backend::drift;
use crate::{HoldInfo, LossReason};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct State {
    count: u32,
    deadline: Instant,
    /// Set once: the hold was released (count 0) or lost.
    ended: bool,
    /// Why it was lost, if it ended that way.
    lost: Option<LossReason>,
}

/// A hold's shared state.
#[derive(Debug)]
pub(crate) struct Hold {
    pub(crate) id: u64,
    pub(crate) info: Arc<HoldInfo>,
    /// Whether the scheduler renews it (else only its deadline is watched).
    pub(crate) renew: bool,
    state: Mutex<State>,
    /// Wakes the `lost()` futures when the hold is lost.
    lost: Notify,
}

/// The result of taking one count off a hold locally.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decrement {
    /// The hold was valid; `before` is the count before this release and
    /// `last` says whether it was the final count.
    Done { before: u32, last: bool },
    /// The hold had already expired or been lost: nothing to release.
    NotValid,
}

impl Hold {
    pub(crate) fn new(info: HoldInfo, valid_from: Instant, renew: bool) -> Arc<Self> {
        let deadline = deadline_from(valid_from, info.ttl);
        Arc::new(Hold {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info: Arc::new(info),
            renew,
            state: Mutex::new(State {
                count: 1,
                deadline,
                ended: false,
                lost: None,
            }),
            lost: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent
        // (every update is a single assignment), so a poisoned lock is used.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Valid now: not ended and before the local deadline (SPEC item 5).
    /// Reads the clock, so it turns false at the deadline even if the
    /// scheduler is late to notice.
    pub(crate) fn is_held(&self) -> bool {
        let s = self.state();
        !s.ended && Instant::now() < s.deadline
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.state().deadline
    }

    pub(crate) fn count(&self) -> u32 {
        self.state().count
    }

    /// Moves the deadline after a confirmed renewal whose request was sent
    /// at `sent`. Never moves it back; does nothing to an ended hold.
    pub(crate) fn renewed(&self, sent: Instant) -> bool {
        let mut s = self.state();
        if s.ended || Instant::now() >= s.deadline {
            return false;
        }
        let d = deadline_from(sent, self.info.ttl);
        if d > s.deadline {
            s.deadline = d;
        }
        true
    }

    /// Adds a re-entry count if the hold is still valid.
    pub(crate) fn add_count(&self) -> bool {
        let mut s = self.state();
        if s.ended || Instant::now() >= s.deadline {
            return false;
        }
        s.count += 1;
        true
    }

    /// Takes one count off; at zero the hold ends (released).
    pub(crate) fn decrement(&self) -> Decrement {
        let mut s = self.state();
        if s.ended || Instant::now() >= s.deadline {
            return Decrement::NotValid;
        }
        let before = s.count;
        s.count -= 1;
        let last = s.count == 0;
        if last {
            s.ended = true;
        }
        Decrement::Done { before, last }
    }

    /// Ends the hold as lost (all counts together, SPEC item 2) and wakes
    /// every `lost()` future. Returns false if it had already ended.
    pub(crate) fn mark_lost(&self, reason: LossReason) -> bool {
        let mut s = self.state();
        if s.ended {
            return false;
        }
        s.ended = true;
        s.count = 0;
        tracing::warn!(key = %self.info.key, owner = %self.info.owner, token = %self.info.token, %reason, "lock lost");
        // The reason is set together with `ended`: whoever sees
        // `is_held() == false` through this state sees `lost()` resolved.
        s.lost = Some(reason);
        drop(s);
        self.lost.notify_waiters();
        true
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.state().ended
    }

    /// Resolves when the hold is lost; never resolves for a hold released
    /// normally.
    pub(crate) fn lost(
        self: &Arc<Self>,
    ) -> impl std::future::Future<Output = LossReason> + Send + 'static {
        let hold = self.clone();
        async move {
            loop {
                let mut notified = std::pin::pin!(hold.lost.notified());
                // Registered before looking, so a loss in between wakes it.
                notified.as_mut().enable();
                let (reason, ended) = {
                    let s = hold.state();
                    (s.lost.clone(), s.ended)
                };
                match reason {
                    Some(reason) => return reason,
                    // Released: it can no longer be lost.
                    None if ended => return std::future::pending().await,
                    None => notified.await,
                }
            }
        }
    }
}

/// The local deadline for a hold of `ttl` whose request was sent at `sent`.
pub(crate) fn deadline_from(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.saturating_sub(drift(ttl))
}
