//! # lock-redlock
//!
//! The `redlock://` backend of dlock: the Redlock algorithm over N
//! independent Redis masters (odd N ≥ 3, no replication between them),
//! with fencing tokens that stay monotonic although Redlock itself has
//! none.
//!
//! | guarantee | redlock (N masters, quorum Q = N/2 + 1) |
//! | --- | --- |
//! | mutual exclusion | while a majority of the masters keeps its data, and the holder's local deadline (taken before the requests were sent, minus the drift) has not passed |
//! | fencing tokens | `WhileMajorityKeepsData`: a quorum max-register (below), strictly increasing **while a majority of the masters keeps its data** (persistence with `appendfsync always`, or the Redlock spec's delayed restart). A majority restarted empty can move tokens back: use etcd or ZooKeeper where fencing must survive that |
//! | survives node loss | yes, a minority: with N − Q masters dead or paused, locks are still granted and exclusive; with more, every operation is [`lock_core::Error::Unavailable`], never a grant |
//! | fair (FIFO) waiting | no |
//! | waiters woken by | pub/sub: a release publishes on each master's channel, and a waiter listens on all of them; a jittered sleep (bounded by the holders' remaining ttl) is the fallback |
//! | ttl granularity | 1 ms |
//! | round trips | one parallel round per uncontended acquire (two when a counter refused the proposed token), one per release, one per renewal batch |
//! | cancelled `lock` | every master asked is sent an undo after its acquire; what an undo cannot reach expires within one ttl, never reported as held |
//! | loss detection | a renewal not confirmed by a quorum within validity; the local deadline; and at once when the connections to so many masters holding the lock close that fewer than a quorum may still have it |
//!
//! ## The algorithm
//!
//! Each master holds the lock in lock-redis's layout (Redisson's `RLock`:
//! a hash whose field is the owner and value the hold count, the counter
//! `redisson_lock_token:{KEY}`, the channel `redisson_lock__channel:{KEY}`),
//! through lock-redis's own scripts ([`lock_redis::node`]).
//!
//! - An acquire asks **all masters at once**, each bounded by a per-node
//!   timeout (2% of the ttl, at least 200 ms, at most a third of the ttl; URL
//!   option `node_timeout=`): a slow or dead master never blocks the round,
//!   and a round returns as soon as a quorum took the lock with the
//!   proposed token (the slower answers are handled in the background: a
//!   late winner joins the hold, anything else is taken back).
//! - The hold is granted when a quorum took it and validity remains:
//!   ttl − elapsed − drift (drift = 1% of the ttl + 2 ms), measured on a
//!   monotonic clock from the instant before the requests were sent (which
//!   is the grant's `valid_from`). Otherwise it is taken back on **every**
//!   master, including those that did not answer (sent after the acquire on
//!   each master's connection, and awaited before the next round), and the
//!   round counts as not acquired. When the masters that did not answer
//!   cost the quorum (fewer than a quorum answered, or the lock is free on
//!   enough of the others) it is [`lock_core::Error::Unavailable`], which a
//!   waiting `lock` retries until its wait runs out: never a grant, and
//!   never "held by someone else" when nobody holds it.
//! - Renewal and release go to all masters at once and return as soon as
//!   every outcome is known (renewal with a tenth of the ttl per node,
//!   release with the URL's `timeout`; the slower masters' requests go on
//!   in the background). A renewal counts only if a quorum confirms it
//!   within validity, a release only if a quorum confirms it; when fewer
//!   than a quorum can still have the hold, both say
//!   [`lock_core::Error::NotHeld`].
//! - A failed round is retried after a random jittered delay (2 to 40 ms
//!   under contention); a waiter sleeps until release messages from a
//!   quorum of the masters (or one and a short grace), bounded by the
//!   holders' remaining ttl.
//! - Re-entry by the same owner from another client counts on each
//!   master's hash, as in lock-redis.
//!
//! ## Fencing tokens
//!
//! Each client proposes t = 1 + the largest counter it has seen for the key.
//! Each master's acquire script takes the lock and raises its counter to t
//! **only if t exceeds it**, else reports its counter. If a quorum raised
//! theirs to t, t is the token: one round. Otherwise a second round raises
//! the counters of the masters that took the lock to max + 1 (the largest
//! counter reported), and a quorum of those must confirm. Any earlier
//! hold's quorum shares a master with this one, whose counter was at least
//! that hold's token and was raised above it: so tokens strictly increase,
//! **as long as counters never go down on a majority**, which holds while a
//! majority of the masters keeps its data. A master restarted without its
//! data forgets its counter; a majority restarted empty can hand out a
//! token that was handed out before (the crate's tests show it).
//!
//! The masters must run Redis 6.2 or newer: the acquire script raises the
//! counter and reads its old value in one `SET ... KEEPTTL GET`.
//!
//! ## URLs
//!
//! `redlock://[user:pass@]host1:port1,host2:port2,host3:port3[/db][?quorum=Q&prefix=...&timeout=1s&node_timeout=...]`
//! — odd N ≥ 3; `quorum` must be a majority (N/2 + 1 to N); `timeout`
//! bounds each connection attempt and `status`; anything else is
//! [`lock_core::Error::InvalidConfig`].
//!
//! ```no_run
//! # async fn demo() -> lock_core::Result<()> {
//! lock_redlock::register();
//! let locker = lock_core::connect("redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379?ttl=10s").await?;
//! let guard = locker.lock("orders:1").await?;
//! // ... write to the resource, passing guard.token() ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod nodes;
mod round;
mod tokens;
mod url;
mod wait;

pub use backend::RedlockBackend;
pub use config::{DEFAULT_CONNECT_TIMEOUT, MIN_NODE_TIMEOUT, RedlockConfig};
pub use url::register;
