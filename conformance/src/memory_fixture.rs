//! [`MemoryFixture`]: the suite over lock-core's embedded `memory://` store,
//! with every fault the store's test hooks can make.

use crate::fixture::{Faults, Fixture, Link};
use async_trait::async_trait;
use lock_core::memory::shared_store;
use lock_core::{Backend, Key, Locker, MemoryBackend, MemoryStore, Result};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Wraps each client's backend (mutants and decorators under test).
type Wrap = Arc<dyn Fn(MemoryBackend) -> Arc<dyn Backend> + Send + Sync>;

/// A private, named in-process store (`memory://conformance-<uuid>`), one
/// [`MemoryBackend`] client of it per locker, and faults made with the
/// store's hooks.
///
/// A partition ([`Link::cut`]) cuts one client off the store
/// ([`MemoryBackend::set_unreachable`]) while the others go on, as a
/// network partition between one process and its server would. A delay
/// ([`Link::delay`]) slows the whole store.
pub struct MemoryFixture {
    name: String,
    store: Arc<MemoryStore>,
    wrap: Option<Wrap>,
    faults: bool,
}

impl fmt::Debug for MemoryFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryFixture")
            .field("name", &self.name)
            .field("wrapped", &self.wrap.is_some())
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for MemoryFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFixture {
    /// A fixture over a new private store, with faults.
    pub fn new() -> Self {
        let name = format!("conformance-{}", uuid::Uuid::new_v4());
        MemoryFixture {
            store: shared_store(&name),
            name,
            wrap: None,
            faults: true,
        }
    }

    /// A fixture whose lockers use `wrap(client)` instead of the plain
    /// client: for backends that decorate the memory store, and for the
    /// suite's own deliberately broken mutants.
    pub fn wrapped(
        wrap: impl Fn(MemoryBackend) -> Arc<dyn Backend> + Send + Sync + 'static,
    ) -> Self {
        MemoryFixture {
            wrap: Some(Arc::new(wrap)),
            ..Self::new()
        }
    }

    /// The same fixture without fault injection, as a live deployment is
    /// seen: the destructive checks become not applicable.
    pub fn without_faults(mut self) -> Self {
        self.faults = false;
        self
    }

    /// The store, for its test hooks.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    fn backend(&self) -> Arc<dyn Backend> {
        self.wrap_client(MemoryBackend::with_store(self.store.clone()))
    }

    fn wrap_client(&self, client: MemoryBackend) -> Arc<dyn Backend> {
        match &self.wrap {
            Some(wrap) => wrap(client),
            None => Arc::new(client),
        }
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn name(&self) -> String {
        match self.wrap {
            Some(_) => format!("memory (wrapped) {}", self.name),
            None => format!("memory {}", self.name),
        }
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        Locker::builder(self.backend()).ttl(ttl).build()
    }

    fn url(&self) -> Option<String> {
        // A URL opens the plain memory backend, not the wrapper.
        self.wrap
            .is_none()
            .then(|| format!("memory://{}", self.name))
    }

    fn faults(&self) -> Option<&dyn Faults> {
        self.faults.then_some(self as &dyn Faults)
    }
}

#[async_trait]
impl Faults for MemoryFixture {
    async fn delete_hold(&self, key: &Key) -> Result<bool> {
        // The backend has no prefix, so the store's name is the key.
        Ok(self.store.delete_hold(key.as_str()))
    }

    async fn expire_hold(&self, key: &Key) -> Result<bool> {
        Ok(self.store.force_expire(key.as_str()))
    }

    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)> {
        let client = MemoryBackend::with_store(self.store.clone());
        let locker = Locker::builder(self.wrap_client(client.clone()))
            .ttl(ttl)
            .build()?;
        let link = ClientLink {
            client,
            store: self.store.clone(),
        };
        Ok((locker, Box::new(link)))
    }
}

/// One memory client's "connection": its own cut, and the store's latency.
struct ClientLink {
    client: MemoryBackend,
    store: Arc<MemoryStore>,
}

impl Link for ClientLink {
    fn cut(&self) {
        self.client.set_unreachable(true);
    }

    fn heal(&self) {
        self.client.set_unreachable(false);
        self.store.set_latency(Duration::ZERO);
    }

    fn delay(&self, latency: Duration) {
        self.store.set_latency(latency);
    }
}
