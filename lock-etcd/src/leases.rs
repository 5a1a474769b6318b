//! The backend's leases: one per hold, granted ahead of time and kept in a
//! small pool so that an uncontended acquire is one round trip (the Txn that
//! creates the holder key), and returned to the pool when a release deleted
//! their key.
//!
//! A lease is in exactly one of three states: idle in the pool, in use by an
//! acquisition that waits (both kept alive by this module's task), or held
//! (kept alive by the locker's renewals through [`Leases::refresh`]). A
//! lease is never used by two acquisitions at once, so two owners never
//! share one. For each lease the book keeps when its last confirmed refresh
//! was SENT: a hold's validity counts from there, never from later.

use crate::errors;
use crate::keepalive::KeepAlive;
use etcd_client::LeaseClient;
use lock_core::Result;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, timeout, timeout_at};

/// The most idle leases a pool keeps per ttl (released leases beyond it are
/// revoked).
const POOL_MAX_FACTOR: usize = 2;

/// How many different ttls get a pool; further ones grant per acquire.
const MAX_CLASSES: usize = 8;

/// How often the task looks for leases to refresh.
const TICK: Duration = Duration::from_millis(100);

/// One lease as the book knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lease {
    /// etcd's lease id.
    pub(crate) id: i64,
    /// The ttl etcd granted.
    pub(crate) ttl: Duration,
    /// When the last confirmed grant or keep-alive of it was sent.
    pub(crate) refreshed: Instant,
    /// The requested ttl in whole seconds: the pool it returns to.
    class: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Idle,
    Waiting,
    Held,
}

#[derive(Debug)]
struct Entry {
    lease: Lease,
    used: Use,
    /// Set while the holder releases it, or once a renewal reported the
    /// hold gone, so that the watch on its key does not report that end a
    /// second time.
    releasing: Arc<AtomicBool>,
    /// The create revision of the hold it carries now, if any: a lease is
    /// used again after a release, so a stale caller (a retried release of
    /// an older hold) must not touch the newer hold's lease.
    hold: Option<i64>,
}

#[derive(Debug, Default)]
struct Book {
    entries: HashMap<i64, Entry>,
    /// Idle lease ids per class, most recently refreshed last.
    idle: HashMap<i64, Vec<i64>>,
}

/// The lease book, the pools, and the task that keeps idle and waiting
/// leases alive and refills the pools.
pub(crate) struct Leases {
    client: LeaseClient,
    keepalive: KeepAlive,
    endpoints: Arc<str>,
    op_timeout: Duration,
    pool: usize,
    book: Mutex<Book>,
    refill: Notify,
    /// Whether a refill task runs.
    refilling: AtomicBool,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("endpoints", &self.endpoints)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// The book, with its task started on the current runtime; the task
    /// ends when the book is dropped.
    pub(crate) fn start(
        client: LeaseClient,
        keepalive: KeepAlive,
        endpoints: Arc<str>,
        op_timeout: Duration,
        pool: usize,
    ) -> Arc<Self> {
        let leases = Arc::new(Leases {
            client,
            keepalive,
            endpoints,
            op_timeout,
            pool,
            book: Mutex::default(),
            refill: Notify::new(),
            refilling: AtomicBool::new(false),
        });
        tokio::spawn(keep(Arc::downgrade(&leases)));
        leases
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ttl class (whole seconds, rounded up) of a requested ttl.
    pub(crate) fn class_of(ttl: Duration) -> i64 {
        i64::try_from(ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// A lease for a new acquisition of ttl `class`: a fresh idle one from
    /// the pool, or a new grant (one round trip). The lease is then in use
    /// (kept alive by the task while it waits) until [`held`](Self::held),
    /// [`give_back`](Self::give_back) or [`discard`](Self::discard).
    ///
    /// # Cancel safety
    /// If dropped during a grant, the new lease is not kept alive and
    /// expires within its ttl.
    pub(crate) async fn take(&self, class: i64, pooled: bool) -> Result<Lease> {
        if pooled && let Some((lease, left)) = self.take_idle(class) {
            if left < self.pool {
                self.refill.notify_one();
            }
            return Ok(lease);
        }
        let lease = self.grant(class).await?;
        self.book().entries.insert(
            lease.id,
            Entry {
                lease,
                used: Use::Waiting,
                releasing: Arc::default(),
                hold: None,
            },
        );
        self.refill.notify_one();
        Ok(lease)
    }

    /// An idle lease of `class`, and how many are left.
    fn take_idle(&self, class: i64) -> Option<(Lease, usize)> {
        let mut book = self.book();
        let Book { entries, idle } = &mut *book;
        let ids = idle.get_mut(&class)?;
        let now = Instant::now();
        while let Some(id) = ids.pop() {
            let Some(entry) = entries.get_mut(&id) else {
                continue;
            };
            // Only a lease refreshed within half its ttl: the hold's
            // validity counts from that refresh.
            if entry.lease.refreshed + entry.lease.ttl / 2 > now {
                entry.used = Use::Waiting;
                return Some((entry.lease, ids.len()));
            }
        }
        None
    }

    async fn grant(&self, class: i64) -> Result<Lease> {
        let deadline = Instant::now() + self.op_timeout;
        let mut pause = Duration::from_millis(20);
        let (sent, resp) = loop {
            let sent = Instant::now();
            let mut client = self.client.clone();
            match timeout_at(deadline, client.grant(class, None)).await {
                Err(_) => return Err(errors::timed_out(&self.endpoints, "granting a lease")),
                Ok(Ok(resp)) => break (sent, resp),
                // Never received: a member that is gone, no leader.
                Ok(Err(e)) if errors::not_sent(&e) && Instant::now() + pause < deadline => {
                    sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Ok(Err(e)) => return Err(errors::map(&self.endpoints, "granting a lease", e)),
            }
        };
        if resp.ttl() <= 0 || resp.id() <= 0 {
            return Err(errors::unexpected(&self.endpoints, "a lease grant"));
        }
        Ok(Lease {
            id: resp.id(),
            ttl: Duration::from_secs(resp.ttl().unsigned_abs()),
            refreshed: sent,
            class,
        })
    }

    /// The book's view of lease `id` (its last confirmed refresh), while it
    /// has it.
    pub(crate) fn lease(&self, id: i64) -> Option<Lease> {
        self.book().entries.get(&id).map(|e| e.lease)
    }

    /// The lease now carries the hold created at revision `rev`: the
    /// locker renews it from here on. Returns its entry and the flag to
    /// raise when the hold is released.
    pub(crate) fn held(&self, id: i64, rev: i64) -> Option<(Lease, Arc<AtomicBool>)> {
        let mut book = self.book();
        let entry = book.entries.get_mut(&id)?;
        entry.used = Use::Held;
        entry.hold = Some(rev);
        entry.releasing = Arc::default();
        Some((entry.lease, entry.releasing.clone()))
    }

    /// The release flag of the hold created at `rev` on lease `id`, if the
    /// lease still carries that hold.
    pub(crate) fn releasing(&self, id: i64, rev: i64) -> Option<Arc<AtomicBool>> {
        self.book()
            .entries
            .get(&id)
            .filter(|e| e.hold == Some(rev))
            .map(|e| e.releasing.clone())
    }

    /// The hold created at `rev` on lease `id` is gone: revokes the lease
    /// unless it carries a newer hold by now (it was released and used
    /// again), whose key revoking it would delete.
    pub(crate) fn discard_hold(&self, id: i64, rev: i64) {
        let newer = self
            .book()
            .entries
            .get(&id)
            .is_some_and(|e| e.hold != Some(rev));
        if !newer {
            self.discard(id);
        }
    }

    /// Sends one keep-alive per lease on the backend's one stream. Returns
    /// per lease whether etcd still has it (`Ok(false)`: gone, and dropped
    /// from the book), recording each confirmed refresh as sent now.
    ///
    /// # Cancel safety
    /// If dropped, some leases may have been refreshed without the book
    /// knowing; it then keeps an older (safe) refresh time.
    pub(crate) async fn refresh(&self, ids: &[i64]) -> Vec<Result<bool>> {
        let sent = Instant::now();
        let answers = self.keepalive.refresh(ids).await;
        let mut book = self.book();
        ids.iter()
            .zip(answers)
            .map(|(id, answer)| {
                let ttl = answer?;
                if ttl > 0 {
                    if let Some(entry) = book.entries.get_mut(id)
                        && entry.lease.refreshed < sent
                    {
                        entry.lease.refreshed = sent;
                    }
                    Ok(true)
                } else {
                    book.entries.remove(id);
                    Ok(false)
                }
            })
            .collect()
    }

    /// The lease's key is deleted (released, or an abandoned wait cleaned
    /// up): back to the pool if it is fresh and the pool has room, else
    /// revoked.
    pub(crate) fn give_back(&self, id: i64) {
        let mut book = self.book();
        let now = Instant::now();
        let max = self.pool * POOL_MAX_FACTOR;
        let Book { entries, idle } = &mut *book;
        let Some(entry) = entries.get_mut(&id) else {
            return;
        };
        let class = entry.lease.class;
        let room = idle.get(&class).map_or(0, Vec::len) < max
            && (idle.contains_key(&class) || idle.len() < MAX_CLASSES);
        if room && entry.lease.refreshed + entry.lease.ttl / 2 > now {
            entry.used = Use::Idle;
            entry.hold = None;
            idle.entry(class).or_default().push(id);
        } else {
            drop(book);
            self.discard(id);
        }
    }

    /// Forgets lease `id` and revokes it in the background (deleting any key
    /// still attached to it).
    pub(crate) fn discard(&self, id: i64) {
        self.book().entries.remove(&id);
        let mut client = self.client.clone();
        let limit = self.op_timeout;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = timeout(limit, client.revoke(id)).await;
            });
        }
    }

    /// One round of upkeep: refresh idle and waiting leases due for it,
    /// drop leases that expired, refill pools that ran low (in a task of
    /// its own, so that a slow grant never delays a refresh).
    async fn upkeep(self: &Arc<Self>) {
        let now = Instant::now();
        let (due, classes) = {
            let mut book = self.book();
            // Leases nobody refreshed for a whole ttl are gone on the server.
            book.entries
                .retain(|_, e| e.lease.refreshed + e.lease.ttl > now || e.used == Use::Held);
            book.entries
                .retain(|_, e| e.used != Use::Held || e.lease.refreshed + e.lease.ttl * 4 > now);
            let Book { entries, idle } = &mut *book;
            for ids in idle.values_mut() {
                ids.retain(|id| entries.get(id).is_some_and(|e| e.used == Use::Idle));
            }
            let due: Vec<i64> = entries
                .values()
                .filter(|e| e.used != Use::Held && e.lease.refreshed + e.lease.ttl / 3 <= now)
                .map(|e| e.lease.id)
                .collect();
            let low: Vec<i64> = idle
                .iter()
                .filter(|(_, ids)| ids.len() < self.pool)
                .map(|(&class, _)| class)
                .collect();
            (due, low)
        };
        if !due.is_empty() {
            self.refresh(&due).await;
        }
        if !classes.is_empty() && !self.refilling.swap(true, Ordering::AcqRel) {
            let leases = Arc::downgrade(self);
            tokio::spawn(async move {
                if let Some(leases) = leases.upgrade() {
                    leases.refill(classes).await;
                    leases.refilling.store(false, Ordering::Release);
                }
            });
        }
    }

    /// Grants one idle lease for each of `classes`.
    async fn refill(&self, classes: Vec<i64>) {
        for class in classes {
            match self.grant(class).await {
                Ok(lease) => {
                    let mut book = self.book();
                    book.entries.insert(
                        lease.id,
                        Entry {
                            lease,
                            used: Use::Idle,
                            releasing: Arc::default(),
                            hold: None,
                        },
                    );
                    book.idle.entry(class).or_default().push(lease.id);
                }
                Err(e) => tracing::debug!(error = %e, "cannot refill the lease pool"),
            }
        }
    }

    /// Opens a pool for ttl `class` (if there is room for one), so the next
    /// acquire of that ttl finds a lease ready.
    pub(crate) fn want_pool(&self, class: i64) {
        if self.pool == 0 {
            return;
        }
        let mut book = self.book();
        if book.idle.len() < MAX_CLASSES && !book.idle.contains_key(&class) {
            book.idle.insert(class, Vec::new());
            drop(book);
            self.refill.notify_one();
        }
    }

    fn idle_ids(&self) -> Vec<i64> {
        self.book().idle.values().flatten().copied().collect()
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        // Idle leases hold nothing: revoke them rather than leave them to
        // expire.
        let ids = self.idle_ids();
        if ids.is_empty() {
            return;
        }
        let client = self.client.clone();
        let limit = self.op_timeout;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for id in ids {
                    let mut client = client.clone();
                    let _ = timeout(limit, client.revoke(id)).await;
                }
            });
        }
    }
}

/// The upkeep task: runs while the book lives.
async fn keep(leases: Weak<Leases>) {
    loop {
        let Some(strong) = leases.upgrade() else {
            return;
        };
        strong.upkeep().await;
        tokio::select! {
            () = strong.refill.notified() => {}
            () = sleep(TICK) => {}
        }
        drop(strong);
    }
}
