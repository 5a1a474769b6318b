//! [`Mutant`]: the memory backend with one deliberate bug ([`Breakage`]).
//!
//! Tokens pass through a translation layer: the mutant hands the locker a
//! token of its own choosing and keeps the store's real token in the
//! grant's handle, so a mutant can lie about tokens (or grant holds the
//! store never made) while renewals and releases of real holds still reach
//! the store correctly.

use lock_core::{
    AcquireRequest, Backend, Capabilities, Error, FencingToken, Grant, HoldInfo, Key, LockStatus,
    MemoryBackend, Result, Wait, async_trait,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breakage {
    /// A release that finds the hold is not its own deletes whatever holds
    /// the key, and reports success.
    ReleaseFreesAnyOwner,
    /// Every hold gets the same token.
    RepeatingTokens,
    /// An acquisition that finds the key held grants it anyway.
    GrantsWhenHeld,
    /// Renewal reports success without extending anything.
    HollowRenewal,
    /// The grant's answer takes a while to arrive, and a `lock` dropped
    /// meanwhile leaves its hold in the store, although the capabilities
    /// say `cancel_cleans_up`.
    LeakyCancel,
    /// Waiters poll every 100 ms, although the capabilities say
    /// `notifies_waiters`.
    PollingWaiter,
    /// Waiters are served last come, first served, although the
    /// capabilities say `fair`.
    LifoWaiters,
    /// A release always takes a count off, so a retried release takes two.
    ReleaseIgnoresCount,
    /// The store's loss signal is dropped, and a renewal that finds the
    /// hold gone reports success.
    SilentLoss,
    /// An acquisition that cannot reach the store grants the lock.
    GrantsWhenUnreachable,
    /// As `LeakyCancel`, and the leaked hold is taken for a day, so it
    /// outlives the ttl.
    ImmortalLeak,
    /// Keys are mapped into the store with `/` turned into `_`, so two
    /// keys can share one lock.
    CollidingKeys,
}

/// State shared by every client (locker) of one mutant fixture.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    /// The LIFO "queue" of [`Breakage::LifoWaiters`]: waiter ids, newest
    /// last.
    stack: Arc<Mutex<Vec<u64>>>,
    next_id: Arc<AtomicU64>,
}

/// A memory backend client with one bug.
#[derive(Debug)]
pub(crate) struct Mutant {
    inner: MemoryBackend,
    breakage: Breakage,
    caps: Capabilities,
    stack: Arc<Mutex<Vec<u64>>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

const FAKE: &str = "fake";

/// A token the mutant makes up: above any the store hands out in a test.
fn fake_token(shared: &AtomicU64) -> FencingToken {
    FencingToken(1_000_000 + shared.fetch_add(1, Ordering::SeqCst))
}

impl Mutant {
    pub(crate) fn new(inner: MemoryBackend, breakage: Breakage, shared: Shared) -> Self {
        let caps = inner.capabilities().clone();
        Mutant {
            inner,
            breakage,
            caps,
            stack: shared.stack,
            next_id: shared.next_id,
        }
    }

    /// The hold as the store knows it (its real token), or `None` for a
    /// hold the mutant made up.
    fn real(&self, hold: &HoldInfo) -> Option<HoldInfo> {
        let token = hold.handle.strip_prefix("real:")?.parse().ok()?;
        Some(HoldInfo {
            key: self.map(&hold.key),
            token: FencingToken(token),
            ..hold.clone()
        })
    }

    /// Rewrites a real grant: the store's token into the handle, the
    /// mutant's choice of token out.
    fn disguise(&self, mut grant: Grant) -> Grant {
        grant.handle = format!("real:{}", grant.token.0);
        grant.token = match self.breakage {
            Breakage::RepeatingTokens => FencingToken(7),
            Breakage::GrantsWhenHeld => fake_token(&self.next_id),
            _ => grant.token,
        };
        if self.breakage == Breakage::SilentLoss {
            grant.lost = None;
        }
        grant
    }

    fn made_up(&self, req: &AcquireRequest) -> Grant {
        Grant {
            token: fake_token(&self.next_id),
            ttl: req.ttl.get(),
            valid_from: Instant::now(),
            handle: FAKE.to_owned(),
            lost: None,
        }
    }

    async fn acquire_real(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        let req = AcquireRequest {
            key: self.map(&req.key),
            ..req.clone()
        };
        Ok(self.inner.acquire(&req).await?.map(|g| self.disguise(g)))
    }

    /// The key as this client stores it.
    fn map(&self, key: &Key) -> Key {
        match self.breakage {
            Breakage::CollidingKeys => {
                Key::new(key.as_str().replace('/', "_")).expect("still valid")
            }
            _ => key.clone(),
        }
    }

    async fn poll(&self, req: &AcquireRequest, period: Duration) -> Result<Option<Grant>> {
        let once = AcquireRequest {
            wait: Wait::No,
            ..req.clone()
        };
        loop {
            if let Some(g) = self.acquire_real(&once).await? {
                return Ok(Some(g));
            }
            if req.wait.expired(Instant::now() + period) {
                return Ok(None);
            }
            sleep(period).await;
        }
    }

    async fn lifo(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        let once = AcquireRequest {
            wait: Wait::No,
            ..req.clone()
        };
        if req.wait == Wait::No {
            return self.acquire_real(&once).await;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let stack = self.stack.clone();
        stack.lock().unwrap().push(id);
        let _leave = Leave(stack.clone(), id);
        loop {
            let on_top = stack.lock().unwrap().last() == Some(&id);
            if on_top && let Some(g) = self.acquire_real(&once).await? {
                return Ok(Some(g));
            }
            if req.wait.expired(Instant::now()) {
                return Ok(None);
            }
            sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Takes a waiter off the LIFO stack however its acquisition ends.
struct Leave(Arc<Mutex<Vec<u64>>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.lock().unwrap().retain(|&w| w != self.1);
    }
}

#[async_trait]
impl Backend for Mutant {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        match self.breakage {
            Breakage::GrantsWhenHeld => {
                let once = AcquireRequest {
                    wait: Wait::No,
                    ..req.clone()
                };
                Ok(Some(match self.acquire_real(&once).await? {
                    Some(g) => g,
                    None => self.made_up(req),
                }))
            }
            Breakage::GrantsWhenUnreachable => match self.acquire_real(req).await {
                Err(Error::Unavailable { .. }) => Ok(Some(self.made_up(req))),
                other => other,
            },
            Breakage::LeakyCancel | Breakage::ImmortalLeak => {
                let mut taken = req.clone();
                if self.breakage == Breakage::ImmortalLeak {
                    taken.ttl = lock_core::Ttl::new(Duration::from_secs(86400))?;
                }
                let grant = self.acquire_real(&taken).await?.map(|mut g| {
                    g.ttl = req.ttl.get();
                    g
                });
                // The answer travels back; nothing undoes the grant if
                // this future is dropped here.
                sleep(Duration::from_millis(10)).await;
                Ok(grant)
            }
            Breakage::PollingWaiter if req.wait != Wait::No => {
                self.poll(req, Duration::from_millis(100)).await
            }
            Breakage::LifoWaiters => self.lifo(req).await,
            _ => self.acquire_real(req).await,
        }
    }

    async fn reenter(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        match self.real(hold) {
            Some(real) => self.inner.reenter(&real, count).await,
            None => Ok(()),
        }
    }

    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        if self.breakage == Breakage::HollowRenewal {
            return holds.iter().map(|_| Ok(())).collect();
        }
        let mut out = Vec::with_capacity(holds.len());
        for hold in holds {
            let result = match self.real(hold) {
                Some(real) => self.inner.renew(&[Arc::new(real)]).await.remove(0),
                None => Ok(()),
            };
            out.push(match (self.breakage, result) {
                (Breakage::SilentLoss, Err(Error::NotHeld { .. })) => Ok(()),
                (_, r) => r,
            });
        }
        out
    }

    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        let Some(real) = self.real(hold) else {
            return Ok(());
        };
        let count = match self.breakage {
            Breakage::ReleaseIgnoresCount => 1,
            _ => count,
        };
        match (self.breakage, self.inner.release(&real, count).await) {
            (Breakage::ReleaseFreesAnyOwner, Err(Error::NotHeld { .. })) => {
                self.inner.store().delete_hold(&self.inner.name(&hold.key));
                Ok(())
            }
            (_, r) => r,
        }
    }

    async fn status(&self, key: &Key) -> Result<LockStatus> {
        self.inner.status(&self.map(key)).await
    }
}
