//! The embedded `memory://` backend: a real in-process store with ttl
//! expiry, fencing counters, FIFO waiters woken by notification, and fault
//! hooks ([`MemoryStore`]) for testing the locker without servers.
//!
//! | guarantee | memory |
//! | --- | --- |
//! | mutual exclusion | within one process |
//! | fencing tokens | a counter per key, never reset: monotonic without condition (the store dies with the process) |
//! | fair (FIFO) waiting | yes |
//! | waiters woken by | in-process notification |
//! | survives node loss | not applicable |
//! | ttl granularity | exact |
//! | cancelled `lock` | leaves the store exactly as before |
//!
//! `memory://` names one store shared by every locker of the process (as a
//! URL naming one server); `memory://NAME` names another. It exists for the
//! core's own tests, the conformance suite's self-test and the demo: it does
//! not lock anything across processes.

mod store;

pub use store::MemoryStore;

use crate::backend::{AcquireRequest, Grant, HoldInfo, HolderStatus, LockStatus};
use crate::{
    Backend, Capabilities, Error, FencingGuarantee, FencingToken, Key, LossReason, NodeLoss, Result,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::{Entry, Holder};
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

/// The `memory://` backend: one client of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: Arc<MemoryStore>,
    prefix: String,
    caps: Capabilities,
    /// This client's connection is cut (shared by clones of this client).
    cut: Arc<AtomicBool>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new("memory");
    caps.fencing = FencingGuarantee::Unconditional;
    caps.node_loss = NodeLoss::NotApplicable;
    caps.notifies_waiters = true;
    caps.fair = true;
    caps.ttl_granularity = Duration::from_nanos(1);
    caps.cancel_cleans_up = true;
    caps
}

/// The process-wide stores named by `memory://NAME` URLs (`""` for
/// `memory://`).
pub fn shared_store(name: &str) -> Arc<MemoryStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    stores
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

impl MemoryBackend {
    /// A client of a new, private store.
    pub fn new() -> Self {
        Self::with_store(MemoryStore::new())
    }

    /// A client of `store`; several clients of one store model several
    /// processes using one server.
    pub fn with_store(store: Arc<MemoryStore>) -> Self {
        MemoryBackend {
            store,
            prefix: String::new(),
            caps: capabilities(),
            cut: Arc::default(),
        }
    }

    /// Puts every key under `prefix` in the store.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Test hook: cuts this client off the store (every call fails with
    /// `Unavailable`) or reconnects it, as a network partition between one
    /// process and its server would; other clients of the store go on.
    /// Clones of this client share the cut.
    pub fn set_unreachable(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Whether calls fail now: this client is cut off, or the whole store is
    /// unavailable.
    fn is_unreachable(&self, store_unavailable: bool) -> bool {
        store_unavailable || self.cut.load(Ordering::SeqCst)
    }

    /// The store, for its test hooks.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// The store's name for `key` (the prefix, then the key): what the
    /// store's hooks take.
    pub fn name(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// Waits out the modelled network latency of one direction.
    async fn travel(&self) {
        let latency = self.store.lock().latency;
        if !latency.is_zero() {
            sleep(latency).await;
        }
    }

    fn unreachable(&self) -> Error {
        Error::unavailable(
            "memory store unreachable (MemoryStore::set_unavailable or \
             MemoryBackend::set_unreachable)",
        )
    }

    /// One pass over the key: grants it if it is free and it is this
    /// waiter's turn, else says when to look again.
    fn attempt(
        &self,
        req: &AcquireRequest,
        name: &str,
        spot: &mut QueueSpot<'_>,
    ) -> Result<Attempt> {
        let mut state = self.store.lock();
        if self.is_unreachable(state.unavailable) {
            return Err(self.unreachable());
        }
        let latency = state.latency;
        let now = Instant::now();
        if !state.keys.contains_key(name) {
            state.keys.insert(name.to_owned(), Entry::default());
        }
        let new_id = spot
            .id
            .is_none()
            .then(|| MemoryStore::new_waiter_id(&mut state));
        let entry = state.keys.get_mut(name).expect("inserted above");
        let ttl = req.ttl.get();
        let valid_from = now.checked_sub(latency).unwrap_or(now);
        let my_turn = entry.queue.front().is_none_or(|(w, _)| Some(*w) == spot.id);
        match entry.holder(now) {
            Some(h) if h.owner == req.owner.as_str() => {
                // A second client naming the same owner: count it in the
                // store, as Redis's hash does.
                h.count += 1;
                h.expires_at = now + ttl;
                let token = h.token;
                Ok(Attempt::Granted(self.grant(token, ttl, valid_from, None)))
            }
            Some(h) => {
                let expires = h.expires_at;
                if req.wait.expired(now) {
                    return Ok(Attempt::NotNow);
                }
                spot.enqueue(entry, new_id);
                Ok(Attempt::Wait(Some(expires)))
            }
            None if my_turn => {
                if let Some(id) = spot.id.take() {
                    entry.remove_waiter(id);
                }
                entry.counter += 1;
                let (tx, rx) = oneshot::channel();
                entry.holder = Some(Holder {
                    owner: req.owner.as_str().to_owned(),
                    count: 1,
                    token: entry.counter,
                    expires_at: now + ttl,
                    lost: Some(tx),
                });
                let lost = Box::pin(async move {
                    match rx.await {
                        Ok(reason) => reason,
                        // The holder went without being deleted behind its
                        // back (released or expired): nothing to report.
                        Err(_) => std::future::pending().await,
                    }
                });
                Ok(Attempt::Granted(self.grant(
                    entry.counter,
                    ttl,
                    valid_from,
                    Some(lost),
                )))
            }
            None => {
                // Free, but waiters queued before us go first (FIFO).
                if req.wait.expired(now) {
                    return Ok(Attempt::NotNow);
                }
                spot.enqueue(entry, new_id);
                Ok(Attempt::Wait(None))
            }
        }
    }

    fn grant(
        &self,
        token: u64,
        ttl: Duration,
        valid_from: Instant,
        lost: Option<crate::backend::LossSignal>,
    ) -> Grant {
        Grant {
            token: FencingToken(token),
            ttl,
            valid_from,
            handle: String::new(),
            lost,
        }
    }
}

enum Attempt {
    Granted(Grant),
    NotNow,
    /// Wait for a change, or until the holder's expiry if known.
    Wait(Option<Instant>),
}

/// This acquisition's place in the key's FIFO queue; leaving it (granted,
/// timed out, or cancelled) removes it and lets the next waiter go.
struct QueueSpot<'a> {
    store: &'a MemoryStore,
    name: &'a str,
    id: Option<u64>,
    /// Notified when this waiter reaches the front or the key changes.
    wake: Arc<Notify>,
}

impl QueueSpot<'_> {
    fn enqueue(&mut self, entry: &mut Entry, new_id: Option<u64>) {
        if let Some(id) = new_id {
            entry.queue.push_back((id, self.wake.clone()));
            self.id = Some(id);
            tracing::debug!(name = self.name, place = entry.queue.len(), "waiting");
        }
    }
}

impl Drop for QueueSpot<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id
            && let Some(entry) = self.store.lock().keys.get_mut(self.name)
        {
            entry.remove_waiter(id);
        }
    }
}

/// Undoes a grant whose answer never reached the caller (the acquire was
/// cancelled while the answer "travelled back").
struct UndoGrant<'a> {
    store: &'a MemoryStore,
    name: &'a str,
    token: u64,
    armed: bool,
}

impl Drop for UndoGrant<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.store.lock();
        if let Some(entry) = state.keys.get_mut(self.name)
            && let Some(h) = entry.holder.as_mut().filter(|h| h.token == self.token)
        {
            h.count -= 1;
            if h.count == 0 {
                entry.holder = None;
                entry.wake_front();
            }
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        let name = self.name(&req.key);
        self.travel().await;
        let mut spot = QueueSpot {
            store: &self.store,
            name: &name,
            id: None,
            wake: Arc::new(Notify::new()),
        };
        let grant = loop {
            let wake = match self.attempt(req, &name, &mut spot)? {
                Attempt::Granted(grant) => break grant,
                Attempt::NotNow => return Ok(None),
                Attempt::Wait(expiry) => expiry,
            };
            let until = [wake, req.wait.deadline()].into_iter().flatten().min();
            match until {
                Some(t) => tokio::select! {
                    () = spot.wake.notified() => {}
                    () = sleep_until(t) => {}
                },
                None => spot.wake.notified().await,
            }
        };
        let mut undo = UndoGrant {
            store: &self.store,
            name: &name,
            token: grant.token.0,
            armed: true,
        };
        self.travel().await;
        undo.armed = false;
        Ok(Some(grant))
    }

    async fn reenter(&self, hold: &HoldInfo, _count: u32) -> Result<()> {
        self.travel().await;
        let name = self.name(&hold.key);
        {
            let mut state = self.store.lock();
            if self.is_unreachable(state.unavailable) {
                return Err(self.unreachable());
            }
            let now = Instant::now();
            let h = state
                .keys
                .get_mut(&name)
                .and_then(|e| e.held_by(hold.owner.as_str(), hold.token.0, now))
                .ok_or_else(|| Error::not_held(&hold.key, &hold.owner))?;
            h.count += 1;
            h.expires_at = now + hold.ttl;
        }
        self.travel().await;
        Ok(())
    }

    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        self.travel().await;
        let results = {
            let mut state = self.store.lock();
            let unavailable = self.is_unreachable(state.unavailable);
            let now = Instant::now();
            holds
                .iter()
                .map(|hold| {
                    if unavailable {
                        return Err(self.unreachable());
                    }
                    let h = state
                        .keys
                        .get_mut(&self.name(&hold.key))
                        .and_then(|e| e.held_by(hold.owner.as_str(), hold.token.0, now))
                        .ok_or_else(|| Error::not_held(&hold.key, &hold.owner))?;
                    h.expires_at = now + hold.ttl;
                    Ok(())
                })
                .collect()
        };
        self.travel().await;
        results
    }

    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        self.travel().await;
        {
            let mut state = self.store.lock();
            if self.is_unreachable(state.unavailable) {
                return Err(self.unreachable());
            }
            let now = Instant::now();
            let entry = state
                .keys
                .get_mut(&self.name(&hold.key))
                .ok_or_else(|| Error::not_held(&hold.key, &hold.owner))?;
            let h = entry
                .held_by(hold.owner.as_str(), hold.token.0, now)
                .ok_or_else(|| Error::not_held(&hold.key, &hold.owner))?;
            // A count below ours means an earlier try of this very release
            // took effect: do not take off a second count.
            if h.count >= count {
                h.count -= 1;
                if h.count == 0 {
                    entry.holder = None;
                    entry.wake_front();
                }
            }
        }
        self.travel().await;
        Ok(())
    }

    async fn status(&self, key: &Key) -> Result<LockStatus> {
        self.travel().await;
        let mut state = self.store.lock();
        if self.is_unreachable(state.unavailable) {
            return Err(self.unreachable());
        }
        let mut status = LockStatus::free(key.clone());
        let now = Instant::now();
        if let Some(entry) = state.keys.get_mut(&self.name(key)) {
            if let Some(h) = entry.holder(now) {
                let mut holder = HolderStatus::new(Some(h.owner.clone()));
                holder.token = Some(FencingToken(h.token));
                holder.count = Some(h.count);
                holder.remaining = Some(h.expires_at - now);
                status.holders.push(holder);
            }
            status.waiters = Some(entry.queue.len());
            status.last_token = (entry.counter > 0).then_some(FencingToken(entry.counter));
        } else {
            status.waiters = Some(0);
        }
        Ok(status)
    }
}

/// What a holder's `lost()` reports when [`MemoryStore::delete_hold`]
/// deleted its hold.
pub fn deleted_reason() -> LossReason {
    LossReason::Gone("the hold was deleted from the store".into())
}
