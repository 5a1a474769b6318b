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
//! | ttl | the session's negotiated timeout, whatever the request asked for; granularity: the server's tick (200 ms in the test kit, 2 s in ZooKeeper's sample configuration) |
//! | loss reported | at once when the session expires or closes, and when the holder's node is deleted (a watch on the node, set 20 ms after the grant so that a lock held briefly costs no extra request: a deletion before then is reported when the watch is set); when the connection drops, the hold is in doubt and ends at its local deadline unless a renewal gets through |
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
//! A backend opens ONE session, with the timeout `session_timeout=` asks
//! for (default 30 s, clamped by the server to its
//! `[minSessionTimeout, maxSessionTimeout]`), and every hold it grants
//! lives in that session: its effective ttl is the negotiated timeout,
//! reported in the grant, whatever ttl the request asked for. To have
//! holds of another ttl, open another backend with another
//! `session_timeout`. Several owners of one process share the session but
//! never a node. When the session expires, the backend opens a new one for
//! later acquisitions.
//!
//! Renewal confirms the session is alive and the node is still there (a
//! `sync`, so that a lagging follower cannot confirm a node the ensemble
//! already deleted, then one `exists` per hold, all pipelined in one round
//! trip; ZooKeeper does not make `sync` + read strictly linearizable across
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
