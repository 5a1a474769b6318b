//! The user-facing [`Locker`]: acquisition with waiting and re-entry, over
//! any [`Backend`].

use crate::backend::{AcquireRequest, LossSignal, Wait};
use crate::guard::LockGuard;
use crate::hold::Hold;
use crate::inbox::{Inbox, Urgency};
use crate::scheduler::{self, Command, renew_interval};
use crate::{
    Backend, Capabilities, Error, HoldInfo, Key, LockStatus, LossReason, Owner, Requirements,
    Result, Ttl,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Locks over one backend. Cheap to clone; clones share the backend, the
/// table of holds (so an owner re-enters through any clone) and the one
/// renewal task.
///
/// Reentrancy is per owner within a locker: [`LockRequest::owner`] names
/// the owner; with none named, each acquisition gets a fresh
/// [`Owner::random`], so two tasks exclude each other exactly as two
/// processes do (unlike Redisson, ownership is never tied to a thread).
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let locker = lock_core::connect("memory://").await?;
/// let guard = locker.lock("inventory:1001").await?;
/// assert!(guard.is_held());
/// // Someone else (a fresh owner) cannot have it now.
/// assert!(locker.try_lock("inventory:1001").await?.is_none());
/// guard.release().await?;
/// assert!(locker.try_lock("inventory:1001").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locker {
    inner: Arc<LockerInner>,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.inner.shared.backend)
            .field("ttl", &self.inner.ttl)
            .field("wait", &self.inner.wait)
            .field("renew", &self.inner.renew)
            .finish()
    }
}

/// Builds a [`Locker`] with defaults for every acquisition, and checks the
/// backend against the caller's [`Requirements`].
#[derive(Debug)]
pub struct LockerBuilder {
    backend: Arc<dyn Backend>,
    ttl: Duration,
    wait: Option<Duration>,
    renew: bool,
    required: Requirements,
}

impl LockerBuilder {
    /// Default ttl of every hold (30 s unless set; 100 ms to 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Default wait of [`Locker::lock`]: how long it waits for a held lock
    /// before failing with [`Error::Timeout`]. Without it, `lock` waits
    /// until granted, as Redisson's `lock()`, Curator's `acquire()` and
    /// etcd's `Lock(ctx)` do.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// `lock` waits until granted (the default).
    pub fn wait_forever(mut self) -> Self {
        self.wait = None;
        self
    }

    /// Whether holds are renewed in the background (default true). Without
    /// renewal a hold lasts one ttl unless [`LockGuard::extend`] is called.
    pub fn renewal(mut self, on: bool) -> Self {
        self.renew = on;
        self
    }

    /// Guarantees the backend must offer; [`build`](Self::build) fails with
    /// [`Error::InvalidConfig`] naming what is missing.
    pub fn require(mut self, required: Requirements) -> Self {
        self.required = required;
        self
    }

    /// Checks the settings and requirements, and builds the locker. The
    /// renewal task starts on the first hold (inside the caller's Tokio
    /// runtime).
    pub fn build(self) -> Result<Locker> {
        let ttl = Ttl::new(self.ttl)?;
        self.backend.capabilities().check(&self.required)?;
        Ok(Locker {
            inner: Arc::new(LockerInner {
                shared: Arc::new(Shared {
                    backend: self.backend,
                    table: Mutex::new(HashMap::new()),
                }),
                inbox: Inbox::new(),
                started: AtomicBool::new(false),
                ttl,
                wait: self.wait,
                renew: self.renew,
            }),
        })
    }
}

/// State shared by the locker and its renewal task.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    /// Per (key, owner): serialises that owner's acquisitions of the key, so
    /// a re-entry never races the first acquisition, and holds its current
    /// hold.
    table: Mutex<HashMap<(Key, Owner), Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    turn: tokio::sync::Mutex<()>,
    hold: Mutex<Option<Arc<Hold>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a single map or option update, so a
    // poisoned mutex still holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn slot(&self, key: &Key, owner: &Owner) -> Arc<Slot> {
        lock(&self.table)
            .entry((key.clone(), owner.clone()))
            .or_default()
            .clone()
    }

    /// Drops the table's entry for `(key, owner)` if nobody uses it and it
    /// has no live hold.
    fn forget_idle(&self, key: &Key, owner: &Owner) {
        let mut table = lock(&self.table);
        let k = (key.clone(), owner.clone());
        if let Some(slot) = table.get(&k) {
            let live = lock(&slot.hold).as_ref().is_some_and(|h| !h.has_ended());
            if !live && Arc::strong_count(slot) == 1 {
                table.remove(&k);
            }
        }
    }

    /// Removes an ended hold from the table.
    pub(crate) fn forget(&self, hold: &Hold) {
        let k = (hold.info.key.clone(), hold.info.owner.clone());
        let mut table = lock(&self.table);
        if let Some(slot) = table.get(&k) {
            let mut current = lock(&slot.hold);
            if current.as_ref().is_some_and(|h| h.id == hold.id) {
                *current = None;
            }
            // A late report about an old hold must not drop a newer live one
            // of the same owner.
            let idle = current.as_ref().is_none_or(|h| h.has_ended());
            drop(current);
            if idle && Arc::strong_count(slot) == 1 {
                table.remove(&k);
            }
        }
    }
}

/// What locker handles and guards share.
pub(crate) struct LockerInner {
    pub(crate) shared: Arc<Shared>,
    /// Commands for the renewal task.
    inbox: Arc<Inbox>,
    /// Whether the renewal task runs (it starts with the first hold).
    started: AtomicBool,
    ttl: Ttl,
    wait: Option<Duration>,
    renew: bool,
}

impl LockerInner {
    /// Hands a command to the renewal task, waking it only if the command
    /// cannot wait for its next timer.
    pub(crate) fn send(&self, cmd: Command) {
        let urgency = match &cmd {
            Command::Untrack(_) | Command::Extended(_) => Urgency::Later,
            Command::Release { .. } | Command::Track(..) => Urgency::Now,
        };
        self.push(cmd, urgency);
    }

    fn push(&self, cmd: Command, urgency: Urgency) {
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(scheduler::run(self.shared.clone(), self.inbox.clone()));
        }
        self.inbox.push(cmd, urgency);
    }

    /// Starts renewing and watching a new hold. The store's loss signal is
    /// polled here once, with a waker that wakes the renewal task, so the
    /// task need not wake now just to start listening: it looks at the hold
    /// by its first renewal (or deadline).
    pub(crate) fn track(&self, hold: Arc<Hold>, signal: Option<LossSignal>, sent: Instant) {
        let first = if hold.renew {
            sent + renew_interval(hold.info.ttl)
        } else {
            hold.deadline()
        };
        let (signal, urgency): (Option<LossSignal>, _) = match signal {
            None => (None, Urgency::By(first)),
            Some(mut signal) => {
                let waker = self.inbox.waker(&hold);
                let mut cx = std::task::Context::from_waker(&waker);
                // Outside the caller's cooperative budget: with the budget
                // spent, a Tokio primitive in the signal would answer
                // Pending and wake (the renewal task) at once.
                let mut unbudgeted = tokio::task::coop::unconstrained(signal.as_mut());
                match std::pin::Pin::new(&mut unbudgeted).poll(&mut cx) {
                    std::task::Poll::Ready(reason) => {
                        (Some(Box::pin(std::future::ready(reason))), Urgency::Now)
                    }
                    std::task::Poll::Pending => (Some(signal), Urgency::By(first)),
                }
            }
        };
        self.push(Command::Track(hold, signal, sent), urgency);
    }

    /// Ends a hold as lost, from a caller that learned it first.
    pub(crate) fn lose(&self, hold: &Hold, reason: crate::LossReason) {
        if hold.mark_lost(reason) {
            self.untrack(hold);
            self.shared.forget(hold);
        }
    }

    /// The hold's last count is gone: stop renewing and forget it.
    pub(crate) fn ended(&self, hold: &Hold) {
        self.untrack(hold);
        self.shared.forget(hold);
    }

    /// Stops renewing and watching an ended hold: takes its
    /// [`Command::Track`] back if the renewal task has not taken it yet (and
    /// drops its loss signal here), else tells the task when it next wakes.
    /// Neither wakes the task.
    fn untrack(&self, hold: &Hold) {
        if let Some(track) = self.inbox.withdraw(hold.id) {
            drop(track);
        } else {
            self.send(Command::Untrack(hold.id));
        }
    }
}

impl Drop for LockerInner {
    fn drop(&mut self) {
        self.inbox.close();
    }
}

/// Removes the table entry on every way out of an acquisition, including
/// cancellation, unless the acquisition made a hold that still lasts.
struct SlotUse<'a> {
    shared: &'a Shared,
    key: &'a Key,
    owner: &'a Owner,
    slot: Option<Arc<Slot>>,
    /// The hold this acquisition put in the slot.
    made: Option<Arc<Hold>>,
}

impl Drop for SlotUse<'_> {
    fn drop(&mut self) {
        // Every other reference this acquisition had to the slot is gone by
        // now. A hold that ends from here on is removed by whoever ends it
        // (`Shared::forget` then finds the slot unused); one that ended
        // before this look is removed here.
        self.slot = None;
        if self.made.take().is_some_and(|h| !h.has_ended()) {
            return;
        }
        self.shared.forget_idle(self.key, self.owner);
    }
}

impl Locker {
    /// A locker over `backend` with default settings (ttl 30 s, `lock`
    /// waits until granted, renewal on).
    pub fn new(backend: Arc<dyn Backend>) -> Locker {
        Self::builder(backend)
            .build()
            .expect("the default settings are valid and require nothing")
    }

    /// A builder for a locker over `backend`.
    pub fn builder(backend: Arc<dyn Backend>) -> LockerBuilder {
        LockerBuilder {
            backend,
            ttl: Ttl::DEFAULT,
            wait: None,
            renew: true,
            required: Requirements::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.shared.backend
    }

    /// What the backend guarantees.
    pub fn capabilities(&self) -> &Capabilities {
        self.inner.shared.backend.capabilities()
    }

    /// The default ttl of holds.
    pub fn ttl(&self) -> Ttl {
        self.inner.ttl
    }

    /// The default wait of [`lock`](Self::lock); `None` waits until granted.
    pub fn wait(&self) -> Option<Duration> {
        self.inner.wait
    }

    /// Locks `key` for a fresh owner, waiting up to the locker's default
    /// wait; fails with [`Error::Timeout`] when it runs out.
    ///
    /// Each call is a new owner, so a task that locks a key it already
    /// holds this way waits for itself (until the wait runs out, or for
    /// ever by default). To re-enter, name the owner:
    /// `locker.request(key).owner(id).lock()`.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no hold behind (SPEC item 8): what the
    /// backend created is removed, or at worst expires within one ttl; it is
    /// never reported as held.
    pub async fn lock(&self, key: &str) -> Result<LockGuard> {
        self.request(key).lock().await
    }

    /// Tries once to lock `key` for a fresh owner: `Ok(None)` if someone
    /// else holds it.
    ///
    /// # Cancel safety
    /// As [`lock`](Self::lock).
    pub async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>> {
        self.request(key).try_lock().await
    }

    /// An acquisition with its own owner, ttl, wait or renewal.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// use std::time::Duration;
    /// let locker = lock_core::connect("memory://").await?;
    /// let outer = locker.request("order/123").owner("worker-7").ttl(Duration::from_secs(5)).lock().await?;
    /// let inner = locker.request("order/123").owner("worker-7").lock().await?; // re-entry
    /// assert_eq!(outer.token(), inner.token());
    /// assert_eq!(inner.hold_count(), 2);
    /// inner.release().await?;
    /// assert!(outer.is_held());
    /// outer.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn request(&self, key: &str) -> LockRequest<'_> {
        LockRequest {
            locker: self,
            key: Key::new(key),
            owner: None,
            ttl: None,
            wait: None,
            renew: None,
        }
    }

    /// What the store says of `key` now (holder, token, time left, where
    /// the backend can tell).
    pub async fn status(&self, key: &str) -> Result<LockStatus> {
        let key = Key::new(key)?;
        self.inner.shared.backend.status(&key).await
    }

    async fn acquire(
        &self,
        key: Key,
        owner: Owner,
        ttl: Ttl,
        wait: Wait,
        renew: bool,
    ) -> Result<Option<LockGuard>> {
        let shared = &*self.inner.shared;
        let mut slot_use = SlotUse {
            shared,
            key: &key,
            owner: &owner,
            slot: Some(shared.slot(&key, &owner)),
            made: None,
        };
        let slot = slot_use.slot.clone().expect("set above");
        // One acquisition per (key, owner) at a time, so that a re-entry
        // sees the hold the first acquisition made.
        // A free turn is taken without awaiting: awaiting even a free
        // Tokio mutex spends the task's cooperative budget, and a spent
        // budget makes the caller yield to the runtime.
        let _turn = match (slot.turn.try_lock(), wait) {
            (Ok(turn), _) => turn,
            (Err(_), Wait::No) => return Ok(None),
            (Err(_), Wait::Until(t)) => match tokio::time::timeout_at(t, slot.turn.lock()).await {
                Ok(turn) => turn,
                Err(_) => return Ok(None),
            },
            (Err(_), Wait::Forever) => slot.turn.lock().await,
        };

        let current = lock(&slot.hold).clone();
        if let Some(hold) = current.filter(|h| h.is_held()) {
            match shared.backend.reenter(&hold.info, hold.count() + 1).await {
                Ok(()) if hold.add_count() => {
                    tracing::debug!(key = %key, owner = %owner, count = hold.count(), "re-entered");
                    slot_use.made = Some(hold.clone());
                    return Ok(Some(LockGuard::new(self.inner.clone(), hold)));
                }
                // Lost while re-entering: start a new hold below.
                Ok(()) => {}
                Err(Error::NotHeld { .. }) => {
                    // The store dropped the hold without telling us: that
                    // is a loss (SPEC item 5), and this is a new hold.
                    self.inner.lose(
                        &hold,
                        LossReason::Gone("a re-entry found the hold gone".into()),
                    );
                }
                Err(e) => return Err(e),
            }
        }

        let req = AcquireRequest {
            key: key.clone(),
            owner: owner.clone(),
            ttl,
            wait,
        };
        loop {
            let Some(grant) = shared.backend.acquire(&req).await? else {
                return Ok(None);
            };
            if grant.ttl.is_zero() {
                return Err(Error::backend("backend granted a hold with a zero ttl"));
            }
            let info = HoldInfo {
                key: key.clone(),
                owner: owner.clone(),
                token: grant.token,
                ttl: grant.ttl,
                handle: grant.handle,
            };
            let hold = Hold::new(info, grant.valid_from, renew);
            if !hold.is_held() {
                // The answer came after the hold's own deadline: it is not
                // valid, so give it back and try again if time is left.
                tracing::warn!(key = %key, "grant arrived after its deadline; discarded");
                self.inner.send(Command::Release {
                    info: hold.info.clone(),
                    count: 1,
                    until: Instant::now() + hold.info.ttl,
                });
                if req.wait.expired(Instant::now()) {
                    return Ok(None);
                }
                continue;
            }
            *lock(&slot.hold) = Some(hold.clone());
            self.inner.track(hold.clone(), grant.lost, grant.valid_from);
            tracing::debug!(key = %key, owner = %owner, token = %hold.info.token, "acquired");
            slot_use.made = Some(hold.clone());
            return Ok(Some(LockGuard::new(self.inner.clone(), hold)));
        }
    }
}

/// One acquisition's settings; finish with [`lock`](Self::lock) or
/// [`try_lock`](Self::try_lock). Invalid settings are reported there.
#[derive(Debug)]
#[must_use = "a request does nothing until .lock() or .try_lock() is awaited"]
pub struct LockRequest<'a> {
    locker: &'a Locker,
    key: Result<Key>,
    owner: Option<Result<Owner>>,
    ttl: Option<Duration>,
    wait: Option<Option<Duration>>,
    renew: Option<bool>,
}

impl<'a> LockRequest<'a> {
    /// The owner; acquisitions by the same owner through this locker
    /// re-enter. Without it, a fresh [`Owner::random`].
    pub fn owner(mut self, owner: impl AsRef<str>) -> Self {
        self.owner = Some(Owner::new(owner));
        self
    }

    /// The hold's ttl (100 ms to 24 h). Ignored on re-entry: a hold keeps
    /// the ttl it began with.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long [`lock`](Self::lock) waits before [`Error::Timeout`].
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(Some(wait));
        self
    }

    /// [`lock`](Self::lock) waits until granted.
    pub fn wait_forever(mut self) -> Self {
        self.wait = Some(None);
        self
    }

    /// Whether this hold is renewed in the background.
    pub fn renewal(mut self, on: bool) -> Self {
        self.renew = Some(on);
        self
    }

    fn validate(self) -> Result<Checked<'a>> {
        let inner = &self.locker.inner;
        Ok(Checked {
            locker: self.locker,
            key: self.key?,
            owner: self.owner.transpose()?.unwrap_or_else(Owner::random),
            ttl: match self.ttl {
                Some(t) => Ttl::new(t)?,
                None => inner.ttl,
            },
            renew: self.renew.unwrap_or(inner.renew),
            wait: self.wait.unwrap_or(inner.wait),
        })
    }

    /// Locks, waiting up to the wait timeout; [`Error::Timeout`] when it
    /// runs out.
    ///
    /// # Cancel safety
    /// As [`Locker::lock`].
    pub async fn lock(self) -> Result<LockGuard> {
        let Checked {
            locker,
            key,
            owner,
            ttl,
            renew,
            wait,
        } = self.validate()?;
        let started = Instant::now();
        let until = match wait {
            Some(w) => Wait::Until(started + w),
            None => Wait::Forever,
        };
        let span = tracing::debug_span!("lock", key = %key, owner = %owner);
        let got = locker
            .acquire(key.clone(), owner, ttl, until, renew)
            .instrument(span)
            .await?;
        got.ok_or_else(|| Error::Timeout {
            key: key.as_str().to_owned(),
            waited: started.elapsed(),
        })
    }

    /// Tries once; `Ok(None)` if the key is held by someone else.
    ///
    /// # Cancel safety
    /// As [`Locker::lock`].
    pub async fn try_lock(self) -> Result<Option<LockGuard>> {
        let Checked {
            locker,
            key,
            owner,
            ttl,
            renew,
            ..
        } = self.validate()?;
        let span = tracing::debug_span!("try_lock", key = %key, owner = %owner);
        locker
            .acquire(key, owner, ttl, Wait::No, renew)
            .instrument(span)
            .await
    }
}

/// A [`LockRequest`] whose settings passed validation.
struct Checked<'a> {
    locker: &'a Locker,
    key: Key,
    owner: Owner,
    ttl: Ttl,
    renew: bool,
    wait: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[tokio::test]
    async fn a_late_report_about_an_old_hold_keeps_the_newer_one() {
        let locker = Locker::new(Arc::new(MemoryBackend::new()));
        let old = locker.request("k").owner("o").lock().await.unwrap();
        let old_hold = old.hold().clone();
        old.release().await.unwrap();
        let new = locker.request("k").owner("o").lock().await.unwrap();
        // The renewal task reports on the old hold late (a loss signal or a
        // renewal answer that was in flight).
        locker.inner.shared.forget(&old_hold);
        let again = locker.request("k").owner("o").try_lock().await.unwrap();
        assert!(again.is_some());
        assert_eq!(
            new.hold_count(),
            2,
            "the re-entry did not join the live hold"
        );
    }
}
