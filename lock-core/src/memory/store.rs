//! The in-process store behind `memory://`: holds with ttl expiry, a
//! fencing counter per key that is never reset, FIFO waiter queues, and the
//! fault hooks tests use.

use crate::LossReason;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// A store of locks living in this process. Share it between several
/// [`MemoryBackend`](super::MemoryBackend)s to model several clients of one
/// server; use its hooks to model what a real store does to a holder.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) keys: HashMap<String, Entry>,
    next_waiter: u64,
    pub(super) unavailable: bool,
    pub(super) latency: Duration,
}

#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) holder: Option<Holder>,
    /// The fencing counter: the last token handed out. Never reset.
    pub(super) counter: u64,
    /// Waiters in arrival order, each with its own wake-up: the key is
    /// granted to the front one, so only the front one is woken (no herd).
    pub(super) queue: VecDeque<(u64, Arc<Notify>)>,
}

#[derive(Debug)]
pub(super) struct Holder {
    pub(super) owner: String,
    pub(super) count: u32,
    pub(super) token: u64,
    pub(super) expires_at: Instant,
    /// Tells the holder's locker the hold was deleted behind its back.
    pub(super) lost: Option<oneshot::Sender<LossReason>>,
}

impl Entry {
    /// Drops the holder if its ttl has run out (the store's own expiry).
    pub(super) fn expire(&mut self, now: Instant) {
        if self.holder.as_ref().is_some_and(|h| h.expires_at <= now) {
            self.holder = None;
            self.wake_front();
        }
    }

    /// Wakes the waiter whose turn it is. `notify_one` keeps a permit if
    /// that waiter is between looks, so the wake-up is never missed.
    pub(super) fn wake_front(&self) {
        if let Some((_, wake)) = self.queue.front() {
            wake.notify_one();
        }
    }

    /// The live holder, after expiry.
    pub(super) fn holder(&mut self, now: Instant) -> Option<&mut Holder> {
        self.expire(now);
        self.holder.as_mut()
    }

    /// Whether the hold `token` of `owner` is the live holder.
    pub(super) fn held_by(&mut self, owner: &str, token: u64, now: Instant) -> Option<&mut Holder> {
        self.holder(now)
            .filter(|h| h.owner == owner && h.token == token)
    }

    pub(super) fn remove_waiter(&mut self, id: u64) {
        if let Some(at) = self.queue.iter().position(|(w, _)| *w == id) {
            self.queue.remove(at);
            self.wake_front();
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock completes before it is released, so
        // a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn new_waiter_id(state: &mut State) -> u64 {
        state.next_waiter += 1;
        state.next_waiter
    }

    /// Test hook: the store becomes unreachable (every call fails with
    /// `Unavailable`) or reachable again. Holds keep expiring meanwhile, as
    /// on a real server the client cannot reach.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Test hook: every call takes `latency` on the way to the store and
    /// again on the way back, so a caller can be cancelled mid-call.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Test hook: expires the hold of `name` (the key with the backend's
    /// prefix) now, silently, as a store expiring a ttl does; the holder
    /// finds out at its next renewal. Returns whether there was a hold.
    pub fn force_expire(&self, name: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.keys.get_mut(name) else {
            return false;
        };
        let had = entry.holder.take().is_some();
        entry.wake_front();
        had
    }

    /// Test hook: deletes the hold of `name` behind the holder's back, and
    /// tells the holder, as an etcd watch or a ZooKeeper session event
    /// would. Returns whether there was a hold.
    pub fn delete_hold(&self, name: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.keys.get_mut(name) else {
            return false;
        };
        let Some(mut holder) = entry.holder.take() else {
            return false;
        };
        if let Some(tx) = holder.lost.take() {
            let _ = tx.send(LossReason::Gone(
                "the hold was deleted from the store".into(),
            ));
        }
        entry.wake_front();
        true
    }

    /// Test hook: puts a hold on `name` for `owner` as a foreign client
    /// would (taking a token), for `ttl`.
    pub fn insert_foreign_hold(&self, name: &str, owner: &str, ttl: Duration) {
        let mut state = self.lock();
        let entry = state.keys.entry(name.to_owned()).or_default();
        entry.counter += 1;
        entry.holder = Some(Holder {
            owner: owner.to_owned(),
            count: 1,
            token: entry.counter,
            expires_at: Instant::now() + ttl,
            lost: None,
        });
    }

    /// The number of keys with a live holder (for tests asserting that
    /// nothing is left held).
    pub fn held_count(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .keys
            .values_mut()
            .filter_map(|e| e.holder(now).map(|_| ()))
            .count()
    }
}
