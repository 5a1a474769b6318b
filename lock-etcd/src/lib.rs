//! # lock-etcd
//!
//! The etcd backend of dlock, on the protocol of etcd's own
//! `concurrency.Mutex` (the one behind `etcdctl lock NAME`): a holder of
//! this crate's lock and a holder of `etcdctl lock NAME` (or of a Go
//! service's `concurrency.NewMutex(s, "NAME")`) exclude each other.
//!
//! | guarantee | etcd |
//! | --- | --- |
//! | mutual exclusion | linearizable (Raft), while a majority of members is up |
//! | fencing tokens | create revision of the holder's key: monotonic without condition (survives leader changes and restarts) |
//! | fair (FIFO) waiting | yes: create-revision order |
//! | waiters woken by | an etcd watch on their immediate predecessor only (no herd) |
//! | watches | all of a backend's watches on ONE etcd watch stream, by watch id; a broken stream is reopened with every watch on it |
//! | survives node loss | yes, a minority of members |
//! | ttl granularity | 1 s (leases are whole seconds, rounded up; the ttl etcd granted is reported) |
//! | renewal | one keep-alive stream per backend for all its leases, plus one read of the holder keys per batch |
//! | loss seen | from a watch on the holder's own key (opened once a hold is 50 ms old; it starts at the key's revision, so a deletion before is reported then), a renewal finding the lease or key gone, or the local deadline |
//! | cancelled `lock` | its lease is revoked in the background at once (its key goes with it) |
//! | uncontended `lock` / `try_lock` | one round trip (a pooled, kept-alive lease); two for a `try_lock` on a held key (it queues, then leaves) |
//! | transport | the lock's Txns and reads on one HTTP/2 connection of the backend's own (`h2`, no task per request; pinged when a call waits on a silent member, redialled on the next member when it ends); watches, leases and keep-alives on etcd-client's channel; with TLS, everything on etcd-client's channel |
//! | interoperates with | `etcdctl lock NAME`, Go's `concurrency.Mutex`, etcd-client's `LockClient` on the same name (with an empty `prefix`) |
//!
//! ```text
//! etcd://host1:2379[,host2:2379...][?prefix=locks/&timeout=5s&pool=2]
//! etcd://user:password@host:2379                     etcd's own auth (`etcdctl auth enable`)
//! etcd://host:2379?cacert=ca.pem[&cert=c.pem&key=c.key]   TLS (the `tls` feature), client certificate optional
//! etcd://host:2379?tls=true                          TLS trusting the platform's roots only
//! ```
//!
//! # Layout
//! A lock `NAME` is the keys `PREFIX NAME/<lease id in lowercase hex>`,
//! one per contender, each with an empty value and attached to its own
//! lease (one lease per hold, never shared); the contender with the
//! smallest create revision holds the lock, and each waiter watches only
//! the contender just before it. Keys one level deeper (`NAME/x/y`) belong
//! to other locks.
//!
//! # Validity
//! A hold's local deadline counts from when its lease's last confirmed
//! grant or keep-alive was *sent* (never from when the answer came back), so
//! it passes before etcd can expire the lease. A pooled lease is refreshed
//! every third of its ttl and used only while less than half its ttl old.
//!
//! # Guarded writes
//! [`EtcdBackend::txn_if_held`], [`put_if_held`](EtcdBackend::put_if_held)
//! and [`delete_if_held`](EtcdBackend::delete_if_held) write to etcd only
//! while a hold is current (a Txn on the holder key's create revision).
//!
//! # Examples
//! ```no_run
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! lock_etcd::register();
//! let locker = lock_core::connect("etcd://127.0.0.1:2379?ttl=10s").await?;
//! let guard = locker.lock("inventory:1001").await?;
//! println!("token {}", guard.token()); // the holder key's create revision
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod errors;
mod guarded;
mod keepalive;
mod leases;
mod mutex;
mod names;
mod unary;
mod watch;

pub use backend::EtcdBackend;
pub use config::{DEFAULT_POOL, DEFAULT_TIMEOUT, EtcdConfig};

use lock_core::{Backend, BackendUrl, Connecting, Result};
use std::sync::Arc;

/// Makes `etcd://` URLs available to [`lock_core::connect`].
pub fn register() {
    lock_core::register("etcd", open);
}

/// Opens an `etcd://` URL: the [`lock_core::OpenFn`] that [`register`]
/// installs.
pub fn open(url: &mut BackendUrl) -> Result<Connecting> {
    let config = EtcdConfig::from_url(url)?;
    Ok(Box::pin(async move {
        Ok(Arc::new(EtcdBackend::connect(config).await?) as Arc<dyn Backend>)
    }))
}
