//! The holds a backend has in the store: one ephemeral node each, watched by
//! one task that reports the hold lost the moment the store says so (node
//! deleted, session ended) and deletes the node itself once its lease (the
//! last confirmed renewal + the ttl) has run out.
//!
//! Why the lease: a ZooKeeper node lives as long as its session, and the
//! session lives as long as this process pings. A hold whose owner stopped
//! renewing (renewal off, or a renewal that could not be confirmed) has
//! already been reported lost by the locker at its deadline; left in place,
//! its node would block the key for as long as the process lives. So the
//! node goes at the lease's end, which is never before the locker's own
//! deadline (the lease has no drift margin taken off).

use crate::error::{is_connection, is_session_over};
use crate::session::Session;
use futures::FutureExt;
use lock_core::{LossReason, LossSignal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};
use zookeeper_client as zk;

/// How long a failed background delete waits before trying again.
const RETRY: Duration = Duration::from_millis(100);

/// How long after the grant a hold's node gets its watch (see the crate
/// docs: the bound on reporting a deletion that happens right after the
/// grant).
pub(crate) const WATCH_DELAY: Duration = Duration::from_millis(20);

/// Where a hold is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The node is ours and the hold valid until the lease.
    Held,
    /// A release is deleting the node; `maybe_applied` once a delete's
    /// outcome was unknown (connection lost while it was in flight).
    Releasing { maybe_applied: bool },
    /// The node is gone by our own delete: a retried release succeeds.
    Released,
    /// The hold ended without a release (node deleted behind our back,
    /// session over, lease run out): a release is `NotHeld`.
    Gone,
}

#[derive(Clone, Copy, Debug)]
struct State {
    lease: Instant,
    phase: Phase,
}

/// One hold's node.
#[derive(Debug)]
pub(crate) struct HeldNode {
    pub(crate) path: String,
    pub(crate) token: u64,
    pub(crate) ttl: Duration,
    pub(crate) session: Arc<Session>,
    state: watch::Sender<State>,
    loss: Mutex<Option<oneshot::Sender<LossReason>>>,
}

impl HeldNode {
    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.state.borrow().phase
    }

    /// When the backend deletes the node unless renewed.
    pub(crate) fn lease(&self) -> Instant {
        self.state.borrow().lease
    }

    /// Moves the lease to `sent + ttl` if the hold is still held and its
    /// lease has not run out; returns whether it did.
    pub(crate) fn extend(&self, sent: Instant) -> bool {
        let mut extended = false;
        self.state.send_if_modified(|s| {
            if s.phase == Phase::Held && Instant::now() < s.lease {
                s.lease = s.lease.max(sent + self.ttl);
                extended = true;
            }
            extended
        });
        extended
    }

    /// Sets the phase with `f` (given the old one); returns the new one.
    pub(crate) fn update(&self, f: impl FnOnce(Phase) -> Phase) -> Phase {
        let mut new = Phase::Gone;
        self.state.send_modify(|s| {
            s.phase = f(s.phase);
            new = s.phase;
        });
        new
    }

    /// The store says the hold is gone (a renewal found the node missing,
    /// or the session over): the hold ends, and its loss signal fires
    /// before the caller reports `NotHeld`, so the locker hears of the loss
    /// once, in order.
    pub(crate) fn gone(&self, why: &str) {
        self.update(|p| match p {
            Phase::Held => {
                self.lose(LossReason::Gone(why.to_owned()));
                Phase::Gone
            }
            p => p,
        });
    }

    /// Reports the hold lost to its locker (once).
    fn lose(&self, why: LossReason) {
        if let Some(tx) = self.loss.lock().unwrap_or_else(|p| p.into_inner()).take() {
            tracing::debug!(path = %self.path, %why, "hold lost");
            let _ = tx.send(why);
        }
    }
}

/// Every hold of one backend, by node path.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    map: Mutex<HashMap<String, Arc<HeldNode>>>,
}

impl Holds {
    /// The hold whose node is `path`, if this backend has it.
    pub(crate) fn get(&self, path: &str) -> Option<Arc<HeldNode>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// Forgets `node` (its release was confirmed: nobody retries it).
    pub(crate) fn remove(&self, node: &Arc<HeldNode>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&node.path).is_some_and(|n| Arc::ptr_eq(n, node)) {
            map.remove(&node.path);
        }
    }

    /// How many holds there are (for tests and debugging).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Registers a new hold of node `path` (created by `session`, with
    /// creation zxid `token`), valid from `valid_from` for `ttl`, and starts
    /// its watch task. Returns the hold and its loss signal.
    pub(crate) fn insert(
        self: &Arc<Self>,
        path: String,
        token: u64,
        session: Arc<Session>,
        valid_from: Instant,
    ) -> (Arc<HeldNode>, LossSignal) {
        let ttl = session.timeout;
        let (state, _) = watch::channel(State {
            lease: valid_from + ttl,
            phase: Phase::Held,
        });
        let (tx, rx) = oneshot::channel();
        let node = Arc::new(HeldNode {
            path,
            token,
            ttl,
            session,
            state,
            loss: Mutex::new(Some(tx)),
        });
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.path.clone(), node.clone());
        tokio::spawn(watch_node(self.clone(), node.clone()));
        let signal: LossSignal = Box::pin(async move {
            match rx.await {
                Ok(why) => why,
                // Released, or the backend is gone: nothing to report.
                Err(_) => std::future::pending().await,
            }
        });
        (node, signal)
    }
}

/// Deletes `path` with `client`, retrying on connection loss, until it is
/// gone or the session is over (which removes it too).
pub(crate) async fn delete_until_gone(client: zk::Client, path: String) {
    loop {
        match client.delete(&path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => return,
            Err(e) if is_session_over(&e) => return,
            Err(e) if is_connection(&e) => sleep(RETRY).await,
            Err(e) => {
                tracing::warn!(%path, error = %e, "cannot delete a lock node; it goes with the session");
                return;
            }
        }
    }
}

fn session_ended(state: zk::SessionState) -> LossReason {
    LossReason::Gone(format!("the ZooKeeper session ended ({state})"))
}

/// The watch task of one hold. Ends when the hold has ended and (after a
/// release) the lease has run out, so a retried release still finds it.
async fn watch_node(holds: Arc<Holds>, node: Arc<HeldNode>) {
    let client = node.session.client.clone();
    let mut session = client.state_watcher();
    let mut state = node.state.subscribe();
    // The watch is set WATCH_DELAY after the grant, unless the hold ended
    // by then: a lock held briefly costs no extra request and no watch
    // event. A node deleted before is "no such node" when it is set.
    let armed_at = Instant::now() + WATCH_DELAY;
    let mut held = node.state.subscribe();
    let ended = held.wait_for(|s| s.phase != Phase::Held).map(|_| ());
    tokio::select! {
        () = sleep_until(armed_at) => {}
        () = ended => {}
    }
    let mut event: Option<Watched> = match node.phase() {
        Phase::Held => rearm(&client, &node).await,
        _ => None,
    };
    loop {
        let now = state.borrow_and_update().to_owned();
        match now.phase {
            Phase::Gone => break,
            Phase::Released => {
                // Released without a confirmed answer (a retry may come):
                // keep the entry until the lease ends. A confirmed release
                // has removed it already.
                if holds
                    .get(&node.path)
                    .is_some_and(|n| Arc::ptr_eq(&n, &node))
                {
                    sleep_until(now.lease).await;
                }
                break;
            }
            Phase::Held | Phase::Releasing { .. } => {}
        }
        let watched = async {
            match event.as_mut() {
                Some(e) => e.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = watched => {
                event = None;
                match (ev.event_type, ev.session_state) {
                    (zk::EventType::NodeDeleted, _) => {
                        node.update(|p| match p {
                            Phase::Held => {
                                node.lose(LossReason::Gone(format!(
                                    "its ZooKeeper node {} was deleted", node.path
                                )));
                                Phase::Gone
                            }
                            Phase::Releasing { .. } => Phase::Released,
                            p => p,
                        });
                    }
                    (zk::EventType::Session, s) if s.is_terminated() => {
                        session_over(&node, s);
                    }
                    _ => {
                        // Data changed by someone, or a session event that
                        // ends nothing: watch again.
                        event = rearm(&client, &node).await;
                    }
                }
            }
            s = session.changed() => {
                if s.is_terminated() {
                    session_over(&node, s);
                }
            }
            () = sleep_until(now.lease) => {
                let mut reap = false;
                node.state.send_if_modified(|s| {
                    if Instant::now() < s.lease {
                        return false;
                    }
                    s.phase = match s.phase {
                        Phase::Held => { reap = true; Phase::Gone }
                        Phase::Releasing { .. } => { reap = true; Phase::Released }
                        p => p,
                    };
                    reap
                });
                if reap {
                    node.lose(LossReason::DeadlinePassed);
                    tracing::debug!(path = %node.path, "lease ran out without renewal; deleting the node");
                    tokio::spawn(delete_until_gone(client.clone(), node.path.clone()));
                    break;
                }
            }
            _ = state.changed() => {}
        }
    }
    holds.remove(&node);
}

fn session_over(node: &HeldNode, s: zk::SessionState) {
    node.update(|p| match p {
        Phase::Held => {
            node.lose(session_ended(s));
            Phase::Gone
        }
        // The node went with the session: a retried release has nothing
        // left to do.
        Phase::Releasing { .. } => Phase::Released,
        p => p,
    });
}

/// A pending watch on a hold's node.
type Watched = std::pin::Pin<Box<dyn Future<Output = zk::WatchedEvent> + Send>>;

/// Watches the node (again, after an event that did not end the hold).
async fn rearm(client: &zk::Client, node: &HeldNode) -> Option<Watched> {
    loop {
        match client.get_and_watch_data(&node.path).await {
            Ok((_, stat, w)) if stat.czxid as u64 == node.token => {
                return Some(Box::pin(w.changed()));
            }
            Ok(_) | Err(zk::Error::NoNode) => {
                node.update(|p| match p {
                    Phase::Held => {
                        node.lose(LossReason::Gone(format!(
                            "its ZooKeeper node {} was deleted",
                            node.path
                        )));
                        Phase::Gone
                    }
                    Phase::Releasing { .. } => Phase::Released,
                    p => p,
                });
                return None;
            }
            Err(e) if is_connection(&e) => sleep(RETRY).await,
            Err(e) => {
                if is_session_over(&e) {
                    session_over(node, node.session.client.state());
                }
                return None;
            }
        }
    }
}
