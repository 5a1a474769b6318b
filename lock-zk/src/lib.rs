//! # lock-zk
//!
//! dlock's ZooKeeper backend: locks in Curator's `InterProcessMutex`
//! layout, fenced by the creation zxid of the holder's node.
//!
//! | guarantee | zk |
//! | --- | --- |
//! | mutual exclusion | while a majority of the ensemble is up (ZAB) |
//! | fencing tokens | the holder's node's creation zxid (`czxid`): global to the ensemble and monotonic without condition; never the sequence number, which restarts when the lock's container node is removed |
//! | survives node loss | yes, a minority of servers |
//! | fair (FIFO) waiting | yes: sequence order; each waiter watches only its predecessor |
//! | waiters woken by | a ZooKeeper watch on the predecessor's node |
//! | ttl | the negotiated timeout of the hold's session: a request for ttl `T` is served on a session that asked for `T` (rounded up by at most a third, [`round_timeout`]), which the server clamps to its `[minSessionTimeout, maxSessionTimeout]` (500 ms to 60 s in the test kit; 4 s to 40 s in ZooKeeper's sample configuration); the grant reports it |
//! | loss reported | at once when the hold's session expires or closes (holds on the backend's other sessions stay), and when the holder's node is deleted (a watch on the node, set 20 ms after the grant so that a lock held briefly costs no extra request: a deletion before then is reported when the watch is set); when the connection drops, the hold is in doubt and ends at its local deadline unless a renewal gets through |
//! | cancelled `lock` | its node is deleted (in the background if need be) |
//! | guarded writes | [`ZkBackend::guarded_set_data`] / [`ZkBackend::guarded_create`]: one multi that checks the hold's node exists, then writes |
//! | interoperates with | Curator's `InterProcessMutex` and zookeeper-client's `LockPrefix::new_curator` on the same path |
//!
//! ## URL
//!
//! ```text
//! zk://host1:port1[,host2:port2...][/chroot][?session_timeout=30s&prefix=/dlock]
//! ```
//!
//! `session_timeout=` and the common `ttl=` are one knob on `zk://`: the
//! ttl of holds whose request names none (default 30 s). Give either (a
//! Curator user will reach for `session_timeout=`), or both with the same
//! value; both with different values is `InvalidConfig`.
//!
//! The lock of key `K` is the node `<chroot><prefix>/<K escaped>` (a
//! container node); its contenders are its children
//! `_c_<uuid>-lock-<10 digits>`, ephemeral and sequential, holding the
//! owner id as data. `K` is escaped into one path component by
//! percent-encoding `%`, `/`, a leading `.` and the characters ZooKeeper
//! refuses ([`encode_key`]; [`decode_key`] reads it back). A Curator `InterProcessMutex`
//! on `<chroot><prefix>/<K escaped>` excludes this crate's holders and is
//! excluded by them. The chroot need not exist: it is created with the
//! prefix.
//!
//! ## Sessions and ttls
//!
//! A hold lives as long as the session whose ephemeral node it is, so its
//! ttl is a session timeout. A backend opens one session per session
//! timeout asked for, when first asked, and every hold asking that
//! timeout shares it (several owners share a session, never a node):
//!
//! - a request that names no ttl (the locker's default ttl, 30 s unless
//!   `ttl=` says otherwise) is served on the session of `session_timeout=`
//!   ([`ZkConfig::session_timeout`]), opened at connect; so is a request
//!   for exactly that timeout. A request for exactly 30 s cannot be told
//!   from one that names no ttl, and gets that session too;
//! - a request for another ttl `T` is served on a session that asks for
//!   `T` rounded up to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power
//!   of ten milliseconds ([`round_timeout`]), so that slightly different
//!   ttls share a session;
//! - at most [`MAX_SESSIONS`] sessions are open at once: past that, a
//!   session no hold uses is closed to make room, and if every one is in
//!   use, the request is served on the session of the next longer timeout
//!   (else the longest).
//!
//! The server clamps each timeout to its `[minSessionTimeout,
//! maxSessionTimeout]`, and the grant reports the negotiated timeout as the
//! hold's ttl: on a server whose maximum is 40 s, a request for 5 minutes
//! gets 40 s (and is renewed accordingly). When a session expires, its
//! holds are lost and the backend opens a new session of that timeout for
//! later acquisitions; holds on other sessions are untouched. One task per
//! session watches its holds.
//!
//! Renewal confirms the session is alive and the node is still there (a
//! `sync`, so that a lagging follower cannot confirm a node the ensemble
//! already deleted, then the holds' nodes read in multi-reads of up to
//! 256 KiB each, about a thousand nodes per request with short keys, all
//! pipelined in one round trip: the requests of a renewal grow with the
//! batch divided by that, not with the batch; ZooKeeper does not make `sync` + read strictly linearizable across
//! a leader change, which the drift margin and the session timeout cover in
//! practice). A hold whose
//! renewal stops (renewal off, or a connection that stays down) is lost
//! at its local deadline, and its node is then deleted by this backend
//! (the session would otherwise keep it, and the key, forever): the store
//! frees it within one ttl, as a lease would. That holds too when a cut-off
//! connection heals before the server expired the session: a hold is lost
//! for good at its deadline, and a session confirmed alive afterwards does
//! not bring it back.
//!
//! ## Errors
//!
//! A broken connection or an ended session is [`lock_core::Error::Unavailable`]
//! naming the servers; never a grant.
//!
//! ## Examples
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! lock_zk::register();
//! let locker = lock_core::connect("zk://127.0.0.1:2181/app?session_timeout=10s").await?;
//! let guard = locker.lock("order/123").await?;
//! println!("token {} valid for {:?}", guard.token(), guard.ttl());
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod acquire;
mod backend;
mod config;
mod error;
mod guarded;
mod held;
mod path;
mod session;

pub use backend::{TICK, ZkBackend, capabilities};
pub use config::{DEFAULT_PREFIX, DEFAULT_SESSION_TIMEOUT, ZkConfig};
pub use path::{decode_key, encode_key};
pub use session::{MAX_SESSIONS, round_timeout};
/// The ZooKeeper client this crate uses (for [`ZkBackend::session_info`]
/// and the guarded writes' types).
pub use zookeeper_client as zk;

use lock_core::{Backend, BackendUrl, Connecting, Result};
use std::sync::Arc;

/// Makes `zk://` URLs available to [`lock_core::connect`].
pub fn register() {
    lock_core::register("zk", open);
}

fn open(url: &mut BackendUrl) -> Result<Connecting> {
    let config = ZkConfig::take_from(url)?;
    Ok(Box::pin(async move {
        Ok(Arc::new(ZkBackend::connect(config).await?) as Arc<dyn Backend>)
    }))
}
