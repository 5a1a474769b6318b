//! How locker handles and guards hand work to the renewal task without
//! waking it for every hold.
//!
//! A wake-up of the renewal task costs a thread hand-off, twice per
//! lock+release: measured on Redis, that alone made the user-facing path
//! ~15% slower than the backend's own calls. So commands wait in this inbox
//! until the task wakes anyway (its next timer), unless a command needs it
//! sooner: a release to finish, or a hold whose first timer comes before the
//! task's next wake-up.
//!
//! A hold released before the task took it is withdrawn from the inbox by
//! its release ([`Inbox::withdraw`]): the task never hears of it, and its
//! loss signal is dropped at once, so a signal that resolves or wakes on
//! release (a channel closed by the store, a timer) costs no wake-up. The
//! task still sets a timer by the first deadline any new hold asked for
//! (withdrawn or not), so the holds that follow need not wake it either.
//! And a loss signal that wakes before the task took its hold wakes the task
//! only while the hold lasts.

use crate::hold::Hold;
use crate::scheduler::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Wake;
use std::time::Duration;
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

/// How many of the newest commands [`Inbox::withdraw`] looks through. A
/// release mostly follows its own acquisition closely; a hold whose
/// command is further back is untracked by a command instead.
const WITHDRAW_SCAN: usize = 16;

/// Commands for the renewal task, and its wake-up.
pub(crate) struct Inbox {
    queue: Mutex<Vec<Command>>,
    notify: Notify,
    /// When the task next wakes by itself, in ns after `base`; `u64::MAX`
    /// when it has no timer.
    next_wake: AtomicU64,
    /// The earliest instant a new hold pushed since the task last took
    /// the queue needs the task by, in ns after `base`; `u64::MAX` if none.
    /// Kept when the hold is withdrawn: the task sets a timer by it, so
    /// that the holds that follow (whose first timers come later) find it
    /// awake by then and need not wake it.
    wanted: AtomicU64,
    base: Instant,
    closed: AtomicBool,
}

impl Inbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Inbox {
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            next_wake: AtomicU64::new(u64::MAX),
            wanted: AtomicU64::new(u64::MAX),
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
            if let Urgency::By(t) = urgency {
                self.wanted.fetch_min(self.nanos(t), Ordering::SeqCst);
            }
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

    /// Takes every queued command, and the earliest instant a hold pushed
    /// since the last take (withdrawn or not) needs the task by.
    pub(crate) fn take(&self) -> (Vec<Command>, Option<Instant>) {
        let mut q = self.queue();
        let wanted = self.wanted.swap(u64::MAX, Ordering::SeqCst);
        let cmds = std::mem::take(&mut *q);
        drop(q);
        let wanted = (wanted != u64::MAX).then(|| self.base + Duration::from_nanos(wanted));
        (cmds, wanted)
    }

    /// Takes back hold `id`'s [`Command::Track`] if the task has not taken
    /// it yet (looking through the newest commands only). The caller drops
    /// it, after the queue's lock is released; `None` if it was not found,
    /// and then the task must be told.
    pub(crate) fn withdraw(&self, id: u64) -> Option<Command> {
        let mut q = self.queue();
        let back = q
            .iter()
            .rev()
            .take(WITHDRAW_SCAN)
            .position(|c| matches!(c, Command::Track(h, ..) if h.id == id))?;
        let at = q.len() - 1 - back;
        Some(q.remove(at))
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

    /// A waker for `hold`'s loss signal before the task has taken the
    /// hold: it wakes the task, which then polls the signal itself, unless
    /// the hold has ended (released or lost), when the signal no longer
    /// matters.
    pub(crate) fn waker(self: &Arc<Self>, hold: &Arc<Hold>) -> std::task::Waker {
        std::task::Waker::from(Arc::new(Nudge {
            inbox: self.clone(),
            hold: Arc::downgrade(hold),
        }))
    }
}

struct Nudge {
    inbox: Arc<Inbox>,
    hold: Weak<Hold>,
}

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.hold.upgrade().is_some_and(|h| !h.has_ended()) {
            self.inbox.notify.notify_one();
        }
    }
}
