//! What a backend's tests hand the suite: a way to make clients of one store
//! ([`Fixture`]), and optionally a way to hurt that store ([`Faults`]).
//!
//! The shape follows the test harnesses of `object_store` and `opendal`: the
//! backend implements one small trait, the suite does the rest.

use async_trait::async_trait;
use lock_core::{Key, Locker, Result};
use std::time::Duration;

/// One store under test, as a backend's tests describe it.
///
/// Every [`locker`](Self::locker) call is a NEW client of the SAME store,
/// with its own connection(s): the checks use several of them to stand for
/// several processes. The checks only ever touch keys under
/// [`key_prefix`](Self::key_prefix), each check fresh unique ones, so checks
/// can run at the same time and against a shared deployment.
///
/// # Examples
/// ```
/// use conformance::{Fixture, MemoryFixture};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fx = MemoryFixture::new();
/// let a = fx.locker(std::time::Duration::from_secs(5)).await.unwrap();
/// let b = fx.locker(std::time::Duration::from_secs(5)).await.unwrap();
/// let held = a.lock("k").await.unwrap();
/// assert!(b.try_lock("k").await.unwrap().is_none()); // one store, two clients
/// # drop(held); }
/// ```
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A short name for messages and reports (`memory`, `redis single`,
    /// `etcd 3 members`).
    fn name(&self) -> String;

    /// A new client of the store, whose holds last `ttl` by default. Renewal
    /// is on and `lock` waits until granted unless a check says otherwise
    /// per request. A `ttl` out of range must fail with
    /// [`lock_core::Error::InvalidConfig`], as the locker builder does.
    async fn locker(&self, ttl: Duration) -> Result<Locker>;

    /// The shortest ttl the checks ask for when they wait for expiry. Stores
    /// that count in whole seconds or sessions round it up anyway; a
    /// fixture can raise it when its store cannot honour a shorter one.
    ///
    /// One second by default: renewal runs every third of a ttl, so a hold
    /// survives a stall of its renewal task of up to about two thirds of a
    /// ttl; on a loaded 2-core CI machine, stalls of a few hundred
    /// milliseconds happen.
    fn short_ttl(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// The first component of every key the checks use. Each check appends
    /// a fresh UUID, so nothing collides with other runs or with real locks.
    fn key_prefix(&self) -> String {
        "dlock-conformance".to_owned()
    }

    /// A URL naming this same store, if there is one, for the checks of bad
    /// URL options. `None` makes those checks not applicable.
    fn url(&self) -> Option<String> {
        None
    }

    /// Fault injection, if this fixture can hurt its store. Checks that need
    /// it (the "destructive" ones) are not applicable without it.
    fn faults(&self) -> Option<&dyn Faults> {
        None
    }
}

/// What a fixture can do to its store behind its clients' backs.
///
/// Keys are the user's keys, as passed to `lock`: the fixture maps them to
/// its store's names the way its backend does (with its prefix).
#[async_trait]
pub trait Faults: Send + Sync {
    /// Deletes the hold of `key` as an administrator would (`DEL`,
    /// `etcdctl del`, `zkCli delete`). Returns whether there was one.
    async fn delete_hold(&self, key: &Key) -> Result<bool>;

    /// Ends the hold of `key` now, as the store's own expiry would (a
    /// Redis key's ttl running out, an etcd lease revoked, a ZooKeeper
    /// session expired). Whether the holder is told is up to the store.
    /// Returns whether there was one.
    async fn expire_hold(&self, key: &Key) -> Result<bool>;

    /// A new client of the store, like [`Fixture::locker`], whose connection
    /// to the store can be cut, slowed and healed.
    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)>;
}

/// A client's connection to its store, under a check's control. Real
/// backends put the kit's `FaultProxy` in between: `cut` is `blackhole()`,
/// `heal` is `pass()`, `delay` is `latency(..)`.
pub trait Link: Send + Sync {
    /// A partition: the client's requests get no answer (or an error) until
    /// [`heal`](Self::heal).
    fn cut(&self);
    /// Ends a partition and any delay.
    fn heal(&self);
    /// Adds `latency` each way to every request (zero removes it).
    fn delay(&self, latency: Duration);
}

/// A client connected through the kit's proxy: `cut` black-holes it, `heal`
/// passes, `delay` adds latency (zero passes).
impl Link for crate::kit::FaultProxy {
    fn cut(&self) {
        self.blackhole();
    }

    fn heal(&self) {
        self.pass();
    }

    fn delay(&self, latency: Duration) {
        if latency.is_zero() {
            self.pass();
        } else {
            self.latency(latency);
        }
    }
}

/// Several links hurt together (a client of several servers: Redlock's
/// masters, a ZooKeeper ensemble).
impl<L: Link> Link for Vec<L> {
    fn cut(&self) {
        self.iter().for_each(Link::cut);
    }

    fn heal(&self) {
        self.iter().for_each(Link::heal);
    }

    fn delay(&self, latency: Duration) {
        self.iter().for_each(|l| l.delay(latency));
    }
}

impl<L: Link + ?Sized> Link for std::sync::Arc<L> {
    fn cut(&self) {
        (**self).cut();
    }

    fn heal(&self) {
        (**self).heal();
    }

    fn delay(&self, latency: Duration) {
        (**self).delay(latency);
    }
}
