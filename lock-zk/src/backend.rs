//! [`ZkBackend`]: the [`Backend`] over ZooKeeper sessions, one per
//! session timeout asked for.

use crate::acquire::acquire;
use crate::config::ZkConfig;
use crate::error::{is_connection, is_session_over, to_error};
use crate::held::{Holds, Phase};
use crate::path::{contenders, lock_dir};
use crate::session::Sessions;
use futures::future::join_all;
use lock_core::{
    AcquireRequest, Backend, Capabilities, FencingGuarantee, FencingToken, Grant, HoldInfo,
    HolderStatus, Key, LockStatus, NodeLoss, Result, async_trait,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client as zk;

/// The server's tick as the kit and ZooKeeper's sample configuration run
/// it; session timeouts are whole ticks.
pub const TICK: Duration = Duration::from_millis(200);

/// How many bytes (of request or answer, whichever is larger, estimated)
/// one multi-read of a renewal carries at most: far below the 1 MiB both
/// the server (`jute.maxbuffer`) and the client accept in one packet.
const RENEW_CHUNK_BYTES: usize = 256 * 1024;

/// The bytes one read of a multi-read costs besides the node's path and
/// data: the op's header and the answer's stat, rounded up.
const READ_OVERHEAD: usize = 128;

/// What the `zk://` backend guarantees (see the crate docs' table).
pub fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new("zk");
    caps.fencing = FencingGuarantee::Unconditional;
    caps.node_loss = NodeLoss::SurvivesMinority;
    caps.notifies_waiters = true;
    caps.fair = true;
    caps.ttl_granularity = TICK;
    caps.cancel_cleans_up = true;
    caps
}

pub(crate) struct Inner {
    pub(crate) sessions: Sessions,
    pub(crate) holds: Arc<Holds>,
    pub(crate) base: String,
    /// Lock nodes this backend has seen exist lately (see [`LockNodes`]).
    pub(crate) lock_nodes: LockNodes,
    caps: Capabilities,
}

/// How many lock nodes [`LockNodes`] remembers at most (it forgets all of
/// them past that).
const KNOWN_LOCK_NODES: usize = 4096;

/// The lock nodes (parents of contenders) this backend last saw exist: an
/// attempt on one of them sends its create and listing alone; on any other
/// it sends the lock node's create first, in the same round trip. Only a
/// hint: a lock node forgotten or wrongly remembered costs a request (a
/// create that finds the node there) or a round trip (a create that finds
/// it gone, after which it is made again), never correctness.
#[derive(Debug, Default)]
pub(crate) struct LockNodes(std::sync::Mutex<std::collections::HashSet<String>>);

impl LockNodes {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `dir` was seen to exist lately.
    pub(crate) fn known(&self, dir: &str) -> bool {
        self.set().contains(dir)
    }

    /// `dir` exists (a child was just created in it).
    pub(crate) fn exists(&self, dir: &str) {
        let mut set = self.set();
        if set.len() >= KNOWN_LOCK_NODES && !set.contains(dir) {
            set.clear();
        }
        set.insert(dir.to_owned());
    }

    /// `dir` is gone (a create in it found no such node).
    pub(crate) fn gone(&self, dir: &str) {
        self.set().remove(dir);
    }
}

/// Locks in a ZooKeeper ensemble, in Curator's `InterProcessMutex` layout,
/// over one session per session timeout asked for, shared by every hold
/// that asks that timeout.
///
/// A request for ttl `T` is served on a session whose requested timeout is
/// `T` (rounded up, see [`round_timeout`](crate::round_timeout)); its
/// grant reports the timeout the server negotiated (see the crate docs).
/// Cheap to clone: clones share the sessions.
#[derive(Clone)]
pub struct ZkBackend {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkBackend")
            .field("servers", &self.inner.sessions.servers())
            .field("base", &self.inner.base)
            .field("session", &format_args!("{:#x}", self.session_id()))
            .finish()
    }
}

impl ZkBackend {
    /// Connects the session of `config.session_timeout` to the ensemble
    /// `config` names (sessions of other timeouts are opened when first
    /// asked for).
    ///
    /// # Errors
    /// [`Error::Unavailable`](lock_core::Error::Unavailable) naming the servers if no session can be
    /// established.
    ///
    /// # Cancel safety
    /// Safe to drop: a session being opened is closed.
    pub async fn connect(config: ZkConfig) -> Result<Self> {
        let base = config.base();
        let holds = Arc::new(Holds::default());
        let sessions = Sessions::connect(config, holds.clone()).await?;
        Ok(ZkBackend {
            inner: Arc::new(Inner {
                sessions,
                holds,
                base,
                lock_nodes: LockNodes::default(),
                caps: capabilities(),
            }),
        })
    }

    /// Connects to the ensemble a `zk://` URL names (options
    /// `session_timeout=` and `prefix=` only; for `ttl=`, `wait=` and the
    /// other locker options use [`lock_core::connect`]).
    ///
    /// # Cancel safety
    /// As [`connect`](Self::connect).
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(ZkConfig::from_url(url)?).await
    }

    /// The effective ttl of holds of the default ttl: the negotiated
    /// timeout of the session of `session_timeout`.
    pub fn ttl(&self) -> Duration {
        self.inner.sessions.peek().timeout
    }

    /// The id of the session of `session_timeout` (the one opened at
    /// connect).
    pub fn session_id(&self) -> i64 {
        self.inner.sessions.peek().id
    }

    /// The id and password of the session of `session_timeout` (for tools
    /// and tests that need to act on this session from elsewhere, e.g. to
    /// expire it).
    pub fn session_info(&self) -> zk::SessionInfo {
        self.inner.sessions.peek().client.session().clone()
    }

    /// The id, password and negotiated timeout of every session this
    /// backend has open now (one per session timeout asked for), the one
    /// of `session_timeout` first.
    pub fn sessions(&self) -> Vec<(zk::SessionInfo, Duration)> {
        self.inner
            .sessions
            .all()
            .iter()
            .map(|s| (s.client.session().clone(), s.timeout))
            .collect()
    }

    /// The ZooKeeper node of `key`'s lock (its contenders are the node's
    /// children).
    pub fn lock_path(&self, key: &Key) -> String {
        lock_dir(&self.inner.base, key)
    }

    /// How many holds this backend has in the store now (including ones
    /// being released).
    pub fn hold_count(&self) -> usize {
        self.inner.holds.len()
    }

    fn servers(&self) -> &str {
        self.inner.sessions.servers()
    }
}

#[async_trait]
impl Backend for ZkBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// # Cancel safety
    /// Dropped at any point, the node it created (or may have created) is
    /// deleted in the background.
    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        acquire(&self.inner, req).await
    }

    /// A `sync` per session, then the holds' nodes read in a few
    /// multi-reads (one request per 256 KiB of reads), all
    /// sent before any answer is awaited (one round trip, plus the
    /// follower's catching up with the leader): a hold is renewed if its
    /// node is still there, created by our live session with the hold's
    /// zxid.
    ///
    /// # Cancel safety
    /// Read-only in the store; safe to drop.
    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        let sent = Instant::now();
        let nodes: Vec<_> = holds
            .iter()
            .map(|h| {
                self.inner
                    .holds
                    .get(&h.handle)
                    .filter(|n| n.token == h.token.get())
                    .filter(|n| n.phase() == Phase::Held && sent < n.lease())
                    .filter(|n| !n.session.is_over())
            })
            .collect();
        // A follower may lag behind the leader, and a renewal must not
        // confirm a node the ensemble has already deleted: a `sync` first
        // (once per session), so that the reads after it, on the same
        // session, see every write committed before. The reads go in
        // multi-reads (one request for many nodes; a missing node is an
        // error of its own op, not of the request). Each call sends its
        // request at once, in order; the answers come in one trip.
        let mut sessions: Vec<&Arc<crate::session::Session>> = Vec::new();
        for n in nodes.iter().flatten() {
            if !sessions.iter().any(|s| s.id == n.session.id) {
                sessions.push(&n.session);
            }
        }
        let mut synced = Vec::with_capacity(sessions.len());
        // Per session: the multi-reads, each with the indexes (into
        // `nodes`) of the holds it reads.
        let mut reads = Vec::new();
        for session in &sessions {
            // Called here, so the sync leaves before the reads below.
            let sync = session.client.sync("/");
            synced.push(async move { (session.id, sync.await) });
            let mut reader = session.client.new_multi_reader();
            let mut batch = Vec::new();
            let mut bytes = 0;
            for (i, (node, hold)) in nodes.iter().zip(holds).enumerate() {
                let Some(node) = node.as_ref().filter(|n| n.session.id == session.id) else {
                    continue;
                };
                let cost = READ_OVERHEAD + node.path.len() + hold.owner.as_str().len();
                if !batch.is_empty() && bytes + cost > RENEW_CHUNK_BYTES {
                    reads.push((std::mem::take(&mut batch), reader.commit()));
                    bytes = 0;
                }
                match reader.add_get_data(&node.path) {
                    Ok(()) => {
                        batch.push(i);
                        bytes += cost;
                    }
                    // Cannot happen for a path we created.
                    Err(e) => {
                        tracing::warn!(path = %node.path, error = %e, "cannot read a lock node")
                    }
                }
            }
            if !batch.is_empty() {
                reads.push((batch, reader.commit()));
            }
        }
        let (synced, read) = futures::join!(
            join_all(synced),
            join_all(
                reads
                    .into_iter()
                    .map(|(batch, answer)| async move { (batch, answer.await) })
            )
        );
        let mut answers: Vec<Option<Result<Option<zk::Stat>, zk::Error>>> =
            nodes.iter().map(|_| None).collect();
        for (batch, answer) in read {
            match answer {
                Ok(results) if results.len() == batch.len() => {
                    for (i, result) in batch.into_iter().zip(results) {
                        answers[i] = Some(match result {
                            zk::MultiReadResult::Data { stat, .. } => Ok(Some(stat)),
                            zk::MultiReadResult::Error {
                                err: zk::Error::NoNode,
                            } => Ok(None),
                            zk::MultiReadResult::Error { err } => Err(err),
                            _ => Err(zk::Error::UnexpectedError(
                                "a multi-read answered a read of data with children".into(),
                            )),
                        });
                    }
                }
                Ok(results) => {
                    let e = zk::Error::UnexpectedError(format!(
                        "a multi-read of {} nodes answered {}",
                        batch.len(),
                        results.len()
                    ));
                    for i in batch {
                        answers[i] = Some(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for i in batch {
                        answers[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        // A failed sync makes its session's reads unconfirmed.
        let answers: Vec<_> = answers
            .into_iter()
            .zip(&nodes)
            .map(|(answer, node)| {
                let node = node.as_ref()?;
                match synced.iter().find(|(id, _)| *id == node.session.id) {
                    Some((_, Err(e))) => Some(Err(e.clone())),
                    _ => answer,
                }
            })
            .collect();
        holds
            .iter()
            .zip(nodes)
            .zip(answers)
            .map(|((hold, node), answer)| {
                let (Some(node), Some(answer)) = (node, answer) else {
                    return Err(hold.not_held());
                };
                match answer {
                    Ok(Some(stat))
                        if stat.czxid as u64 == node.token
                            && stat.ephemeral_owner == node.session.id =>
                    {
                        if node.extend(sent) {
                            Ok(())
                        } else {
                            // The lease ran out while the answer travelled:
                            // the hold's task deletes the node.
                            Err(hold.not_held())
                        }
                    }
                    Ok(_) => {
                        node.gone(&format!(
                            "its ZooKeeper node {} is gone (found by a renewal)",
                            node.path
                        ));
                        Err(hold.not_held())
                    }
                    Err(e) if is_session_over(&e) => {
                        node.gone(&format!("the ZooKeeper session ended ({e})"));
                        Err(hold.not_held())
                    }
                    Err(e) => Err(to_error(self.servers(), &format!("renew {}", hold.key), e)),
                }
            })
            .collect()
    }

    /// Deletes the hold's node at the last count; does nothing before.
    ///
    /// # Cancel safety
    /// If dropped, the delete may or may not have happened; a retry knows
    /// (a delete whose outcome was unknown makes a later "no such node" a
    /// success).
    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        if count > 1 {
            return Ok(());
        }
        let Some(node) = self
            .inner
            .holds
            .get(&hold.handle)
            .filter(|n| n.token == hold.token.get())
        else {
            return Err(hold.not_held());
        };
        // Mark the delete as possibly applied before it is sent: if this
        // future is dropped mid-way, a retry must not take a missing node
        // for someone else's doing.
        let mut was_applied = false;
        let phase = node.update(|p| match p {
            Phase::Held => Phase::Releasing {
                maybe_applied: true,
            },
            Phase::Releasing { maybe_applied } => {
                was_applied = maybe_applied;
                Phase::Releasing {
                    maybe_applied: true,
                }
            }
            p => p,
        });
        match phase {
            Phase::Released => return Ok(()),
            Phase::Gone => return Err(hold.not_held()),
            Phase::Held | Phase::Releasing { .. } => {}
        }
        let gone = |applied: bool| {
            let mut ok = false;
            node.update(|p| match p {
                Phase::Released => {
                    ok = true;
                    Phase::Released
                }
                // The node went while this release was in flight (the
                // session's end, or a deletion we were told of): ours only
                // if an earlier attempt of ours may have deleted it.
                Phase::Releasing { .. } | Phase::Gone if applied => {
                    ok = true;
                    Phase::Released
                }
                _ => Phase::Gone,
            });
            if ok { Ok(()) } else { Err(hold.not_held()) }
        };
        match node.session.client.delete(&node.path, None).await {
            Ok(()) => {
                // Confirmed: no retry will come, forget the hold now.
                self.inner.holds.remove(&node);
                node.update(|_| Phase::Released);
                Ok(())
            }
            Err(zk::Error::NoNode) => gone(was_applied),
            Err(e) if is_session_over(&e) => gone(was_applied),
            Err(e) => {
                if !is_connection(&e) {
                    node.update(|p| match p {
                        Phase::Releasing { .. } => Phase::Releasing {
                            maybe_applied: was_applied,
                        },
                        p => p,
                    });
                }
                Err(to_error(
                    self.servers(),
                    &format!("release {}", hold.key),
                    e,
                ))
            }
        }
    }

    /// The contenders under the key's lock node: the first is the holder
    /// (owner from the node's data, token its creation zxid, node name and
    /// session in `detail`), the rest are waiters.
    ///
    /// # Cancel safety
    /// Read-only; safe to drop.
    async fn status(&self, key: &Key) -> Result<LockStatus> {
        let session = self.inner.sessions.get_default().await?;
        let client = &session.client;
        let dir = self.lock_path(key);
        let what = || format!("status of {key}");
        let mut status = LockStatus::free(key.clone());
        let children = match client.list_children(&dir).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => {
                status.waiters = Some(0);
                return Ok(status);
            }
            Err(e) => return Err(to_error(self.servers(), &what(), e)),
        };
        let queue = contenders(children);
        let paths: Vec<String> = queue.iter().map(|(_, n)| format!("{dir}/{n}")).collect();
        let asked: Vec<_> = paths.iter().map(|p| client.get_data(p)).collect();
        let mut present = Vec::new();
        for ((_, name), answer) in queue.iter().zip(join_all(asked).await) {
            match answer {
                Ok((data, stat)) => present.push((name, data, stat)),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(to_error(self.servers(), &what(), e)),
            }
        }
        status.waiters = Some(present.len().saturating_sub(1));
        if let Some((name, data, stat)) = present.into_iter().next() {
            let owner = String::from_utf8(data).ok().filter(|o| !o.is_empty());
            let mut holder = HolderStatus::new(owner);
            holder.token = Some(FencingToken(stat.czxid as u64));
            holder.detail = Some(format!("node {name}, session {:#x}", stat.ephemeral_owner));
            status.holders.push(holder);
        }
        Ok(status)
    }
}
