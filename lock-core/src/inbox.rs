//! How locker handles and guards hand work to the renewal task without
//! waking it for every hold.
//!
//! A wake-up of the renewal task costs a thread hand-off, twice per
//! lock+release: measured on Redis, that alone made the user-facing path
//! ~15% slower than the backend's own calls. So commands wait in this inbox
//! until the task wakes anyway (its next timer), unless a command needs it
//! sooner: a release to finish, or a hold whose first timer comes before the
//! task's next wake-up.

use crate::scheduler::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Wake;
use tokio::sync::Notify;
use tokio::time::Instant;

/// When the renewal task must look at a command.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Urgency {
    /// At once (a background release).
    Now,
    /// By this instant (a new hold's first renewal or deadline).
    By(Instant),
    /// Whenever it next wakes (a hold that ended, a moved deadline).
    Later,
}

/// More lazy commands than this wake the task, to bound memory.
const MAX_LAZY: usize = 1024;

/// Commands for the renewal task, and its wake-up.
pub(crate) struct Inbox {
    queue: Mutex<Vec<Command>>,
    notify: Notify,
    /// When the task next wakes by itself, in ns after `base`; `u64::MAX`
    /// when it has no timer.
    next_wake: AtomicU64,
    base: Instant,
    closed: AtomicBool,
}

impl Inbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Inbox {
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            next_wake: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            closed: AtomicBool::new(false),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Command>> {
        // Pushes and takes cannot be left half done, so a poisoned lock is fine.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Queues `cmd` and wakes the task if `urgency` needs it.
    pub(crate) fn push(&self, cmd: Command, urgency: Urgency) {
        let len = {
            let mut q = self.queue();
            q.push(cmd);
            q.len()
        };
        // Pairs with the fence in `publish`: either the task sees this
        // command before it sleeps, or this sees the wake-up it sleeps until.
        fence(Ordering::SeqCst);
        let wake = match urgency {
            Urgency::Now => true,
            Urgency::By(t) => self.nanos(t) < self.next_wake.load(Ordering::SeqCst),
            Urgency::Later => len >= MAX_LAZY,
        };
        if wake {
            self.notify.notify_one();
        }
    }

    /// Takes every queued command.
    pub(crate) fn take(&self) -> Vec<Command> {
        std::mem::take(&mut *self.queue())
    }

    /// The task says when it will next wake by itself; returns whether
    /// commands arrived meanwhile (then it must not sleep).
    pub(crate) fn publish(&self, next: Option<Instant>) -> bool {
        let at = next.map_or(u64::MAX, |t| self.nanos(t));
        self.next_wake.store(at, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        !self.queue().is_empty()
    }

    /// Resolves when a command needs the task.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The last locker handle and guard are gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A waker for a hold's loss signal before the task has taken the hold:
    /// it wakes the task, which then polls the signal itself.
    pub(crate) fn waker(self: &Arc<Self>) -> std::task::Waker {
        std::task::Waker::from(Arc::new(Nudge(self.clone())))
    }
}

struct Nudge(Arc<Inbox>);

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.0.notify.notify_one();
    }
}
