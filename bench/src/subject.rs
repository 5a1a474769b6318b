//! What a scenario measures: anything that takes and gives back a lock
//! (a dlock backend through its `Locker`, a peer, or the store's raw round
//! trips), behind one trait.

use async_trait::async_trait;
use std::any::Any;

/// What a subject is, which decides the scenarios it takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A dlock backend, called through `lock_core::Locker` as users do.
    Dlock,
    /// Another lock client on the same store.
    Peer,
    /// The store's raw round trips, no lock logic: the floor.
    Raw,
    /// Another dlock backend on one of the same servers: the yardstick a
    /// backend's issue sets (lock-redis on one Redlock master). Measured in
    /// the uncontended scenario only.
    Baseline,
}

impl Kind {
    /// Whether it is a lock client of the backend's own store (dlock or a
    /// peer), which the contended and throughput scenarios measure.
    pub fn is_lock_client(self) -> bool {
        matches!(self, Kind::Dlock | Kind::Peer)
    }
}

/// A lock that a subject holds; given back to the same subject's
/// [`Subject::unlock`].
pub struct Hold(pub Box<dyn Any + Send>);

impl Hold {
    /// Wraps any value a subject needs to release.
    pub fn new<T: Any + Send>(value: T) -> Hold {
        Hold(Box::new(value))
    }

    /// The value back, or an error naming the mix-up.
    pub fn take<T: Any>(self) -> anyhow::Result<T> {
        self.0
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| anyhow::anyhow!("a hold was given back to the wrong subject"))
    }
}

/// Something that locks keys.
#[async_trait]
pub trait Subject: Send + Sync {
    /// Its name in the tables (`lock-redis`, `rslock`, ...).
    fn name(&self) -> &str;

    /// What it is.
    fn kind(&self) -> Kind;

    /// Takes `key`, waiting its own way (notification, polling, server-side
    /// queue) while someone else holds it.
    async fn lock(&self, key: &str) -> anyhow::Result<Hold>;

    /// Gives back what [`lock`](Subject::lock) took.
    async fn unlock(&self, hold: Hold) -> anyhow::Result<()>;
}
