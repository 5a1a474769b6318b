//! # lock-redis
//!
//! The `redis://` backend of dlock: locks in one Redis server, in
//! Redisson's `RLock` layout, one round trip per operation, waiters woken
//! by pub/sub.
//!
//! | guarantee | redis (one server) |
//! | --- | --- |
//! | mutual exclusion | while the server keeps its data and the holder's local deadline has not passed |
//! | fencing tokens | `INCR` of a per-key counter in the acquire script, never reset by lock code: monotonic **while the server keeps its data**. A restart without persistence, or a failover to an asynchronous replica (Sentinel, managed Redis), can move them back: use etcd or ZooKeeper where fencing must survive that |
//! | survives node loss | no: losing the server loses every lock |
//! | fair (FIFO) waiting | no |
//! | waiters woken by | pub/sub on the release channel (one waiter of a process per release), with a sleep bounded by the holder's remaining ttl as the fallback |
//! | ttl granularity | 1 ms |
//! | round trips | one per uncontended acquire, one per release, one per renewal batch (one EVALSHA covering up to 1000 holds; larger batches send one script per 1000, pipelined). A server that lost its scripts costs one load |
//! | cancelled `lock` | waiting leaves nothing in the store; an acquire dropped while its request is in flight is undone by a script sent after it on the same connection (if that fails, the hold expires within one ttl, never reported as held) |
//! | loss detection | a renewal that finds the hold gone; the local deadline; and at once when the server closes the connection (killed, restarted, reset) |
//!
//! ## Layout (Redisson-compatible)
//!
//! With an empty `prefix=` (the default), the lock `orders:1` is:
//!
//! - the hash `orders:1`, whose field is the owner and whose value is the
//!   hold count (`HGETALL orders:1` → `{owner: 1}`), with a `PEXPIRE` of the
//!   ttl;
//! - the fencing counter `redisson_lock_token:{orders:1}`, incremented for
//!   each new hold and never deleted;
//! - the channel `redisson_lock__channel:{orders:1}`, on which the final
//!   release publishes `0`.
//!
//! So a Java service using Redisson's `RLock` and a Rust service using this
//! crate exclude each other on the same name. Where Redisson is wrong, this
//! crate differs: a re-entry keeps the hold's token, and a retried release
//! never takes off two counts. A key of another type, or foreign data in
//! the hash, counts as held by someone else: it is never overwritten, and
//! no `WRONGTYPE` error is surfaced.
//!
//! The lock hash carries no braces, so in a Redis Cluster it shares the
//! slot of the `{KEY}` hash tag of its counter and channel only while the
//! key itself has no `{`: this backend targets one server, not a cluster.
//!
//! ## Loss
//!
//! A hold is lost when a renewal finds it gone, when the local deadline
//! passes without a confirmed renewal (a paused server, a partition), and as
//! soon as the server closes the backend's connection: a restarted server
//! without persistence has forgotten every lock and may grant it again at
//! once, so the holder gives up before that can happen. (A network reset
//! therefore also ends holds; the store frees them within one ttl.)
//!
//! ## Building on it
//!
//! [`node`] exposes one server's connection and the lock operations on it,
//! one script each ([`node::Node`]), with the key and channel naming
//! ([`node::Names`]) and the pub/sub waiters ([`node::Registration`]): the
//! Redlock backend (`lock-redlock`) runs the very same scripts on each of
//! its masters. The acquire script takes an optional proposed token for
//! it: the counter is raised to the proposal only if the proposal exceeds
//! it, instead of incremented ([`node::Acquired::Refused`] otherwise), and
//! [`lua::RAISE`] is its second round.
//!
//! ## URLs
//!
//! `redis://[user:pass@]host[:port][/db][?prefix=...&timeout=...]`, and
//! `rediss://...[&tls_ca=/path/ca.pem]` for TLS with the `tls` feature.
//! `timeout` (default 3 s) bounds every request and connection attempt: a
//! server that does not answer in time is
//! [`lock_core::Error::Unavailable`], naming its address. `prefix` (default
//! empty) goes before every key.
//!
//! The Redis user needs the scripting commands and pub/sub on the release
//! channels: with ACLs, `&redisson_lock__channel:*` (or `&*`) besides the
//! keys. A user without pub/sub rights is refused at connect with
//! [`lock_core::Error::InvalidConfig`] saying so; refused credentials are
//! `InvalidConfig` too.
//!
//! ```no_run
//! # async fn demo() -> lock_core::Result<()> {
//! lock_redis::register();
//! let locker = lock_core::connect("redis://127.0.0.1:6379?ttl=10s").await?;
//! let guard = locker.lock("orders:1").await?;
//! // ... write to the resource, passing guard.token() ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod errors;
pub mod node;
mod scripts;
mod status;
mod url;
mod waiters;

pub use backend::RedisBackend;
pub use config::{DEFAULT_PORT, DEFAULT_TIMEOUT, RedisConfig};
pub use url::register;

/// The Lua source of every script the backend runs, for audit (and for
/// `dlock-bench`'s raw comparison). The scripts that act on a hold this client
/// has are sent as [`OURS`](lua::OURS) followed by their own text.
pub mod lua {
    pub use crate::scripts::{ACQUIRE, OURS, RAISE, REENTER, RELEASE, RENEW, STATUS, UNDO};
}
