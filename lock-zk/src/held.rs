//! The holds a backend has in the store, one ephemeral node each, and the
//! one watcher task per session that looks after them: it reports a hold
//! lost the moment the store says so (node deleted, session ended) and
//! deletes the node itself once its lease (the last confirmed renewal +
//! the ttl) has run out.
//!
//! Why the lease: a ZooKeeper node lives as long as its session, and the
//! session lives as long as this process pings. A hold whose owner stopped
//! renewing (renewal off, or a renewal that could not be confirmed) has
//! already been reported lost by the locker at its deadline; left in place,
//! its node would block the key for as long as the process lives. So the
//! node goes at the lease's end, which is never before the locker's own
//! deadline (the lease has no drift margin taken off).
//!
//! Why one task per session rather than one per hold: a hold that lasts
//! less than [`WATCH_DELAY`] (most of them) then costs no task, no wake-up
//! and no request beyond the lock's own; the task looks at the holds
//! granted meanwhile once, when the oldest of them is [`WATCH_DELAY`] old,
//! and sets a watch on each one still held.

use crate::error::{is_connection, is_session_over};
use crate::session::Session;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use lock_core::{LossReason, LossSignal};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use zookeeper_client as zk;

/// How long a failed background delete or watch waits before trying again.
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

#[derive(Debug)]
struct State {
    lease: Instant,
    phase: Phase,
    loss: Option<oneshot::Sender<LossReason>>,
}

/// One hold's node.
#[derive(Debug)]
pub(crate) struct HeldNode {
    pub(crate) path: String,
    pub(crate) token: u64,
    pub(crate) ttl: Duration,
    pub(crate) session: Arc<Session>,
    /// When its session's watcher looks at it first.
    watch_from: Instant,
    state: Mutex<State>,
}

impl HeldNode {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.state().phase
    }

    /// When the backend deletes the node unless renewed.
    pub(crate) fn lease(&self) -> Instant {
        self.state().lease
    }

    /// Moves the lease to `sent + ttl` if the hold is still held and its
    /// lease has not run out; returns whether it did.
    pub(crate) fn extend(&self, sent: Instant) -> bool {
        let mut s = self.state();
        if s.phase == Phase::Held && Instant::now() < s.lease {
            s.lease = s.lease.max(sent + self.ttl);
            true
        } else {
            false
        }
    }

    /// Sets the phase with `f` (given the old one); returns the new one.
    pub(crate) fn update(&self, f: impl FnOnce(Phase) -> Phase) -> Phase {
        let mut s = self.state();
        s.phase = f(s.phase);
        s.phase
    }

    /// The store says the hold is gone (a renewal found the node missing,
    /// or the session over): the hold ends, and its loss signal fires
    /// before the caller reports `NotHeld`, so the locker hears of the loss
    /// once, in order.
    pub(crate) fn gone(&self, why: &str) {
        self.end(|| LossReason::Gone(why.to_owned()));
    }

    /// The hold's node is gone, or will go, without our release: a held
    /// hold ends with the loss `why`. A hold being released ends too: the
    /// release in flight decides what it was. Its delete answering `Ok`
    /// means ours took the node; `NoNode` means the session's expiry or
    /// someone else did, and the release reports `NotHeld` (unless an
    /// earlier attempt of ours may have deleted it). Taking this event for
    /// our release made a release of an expired hold report success.
    fn end(&self, why: impl FnOnce() -> LossReason) {
        let mut s = self.state();
        match s.phase {
            Phase::Held => {
                s.phase = Phase::Gone;
                if let Some(tx) = s.loss.take() {
                    let why = why();
                    tracing::debug!(path = %self.path, %why, "hold lost");
                    let _ = tx.send(why);
                }
            }
            Phase::Releasing { .. } => s.phase = Phase::Gone,
            Phase::Released | Phase::Gone => {}
        }
    }

    /// Whether the hold has ended (released or gone).
    fn ended(&self) -> bool {
        matches!(self.phase(), Phase::Released | Phase::Gone)
    }
}

/// Every hold of one backend, by node path.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    map: Mutex<HashMap<String, Arc<HeldNode>>>,
}

impl Holds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HeldNode>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hold whose node is `path`, if this backend has it.
    pub(crate) fn get(&self, path: &str) -> Option<Arc<HeldNode>> {
        self.map().get(path).cloned()
    }

    /// Forgets `node` (its release was confirmed, or it ended and nobody
    /// can retry it).
    pub(crate) fn remove(&self, node: &Arc<HeldNode>) {
        let mut map = self.map();
        if map.get(&node.path).is_some_and(|n| Arc::ptr_eq(n, node)) {
            map.remove(&node.path);
        }
    }

    /// Whether `node` is still registered (a release may still be retried).
    fn has(&self, node: &Arc<HeldNode>) -> bool {
        self.map()
            .get(&node.path)
            .is_some_and(|n| Arc::ptr_eq(n, node))
    }

    /// How many holds there are (for tests and debugging).
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Registers a new hold of node `path` (created by `session`, with
    /// creation zxid `token`), valid from `valid_from` for the session's
    /// timeout, and hands it to the session's watcher. Returns the hold and
    /// its loss signal.
    pub(crate) fn insert(
        &self,
        path: String,
        token: u64,
        session: Arc<Session>,
        valid_from: Instant,
    ) -> (Arc<HeldNode>, LossSignal) {
        let ttl = session.timeout;
        let (tx, rx) = oneshot::channel();
        let node = Arc::new(HeldNode {
            path,
            token,
            ttl,
            session,
            watch_from: Instant::now() + WATCH_DELAY,
            state: Mutex::new(State {
                lease: valid_from + ttl,
                phase: Phase::Held,
                loss: Some(tx),
            }),
        });
        self.map().insert(node.path.clone(), node.clone());
        node.session.watcher.push(node.clone());
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

fn deleted(node: &HeldNode) -> LossReason {
    LossReason::Gone(format!("its ZooKeeper node {} was deleted", node.path))
}

/// What a session's holds share with its watcher task: the holds granted
/// and not yet looked at, in grant order.
#[derive(Debug, Default)]
pub(crate) struct Watcher {
    inbox: Mutex<Inbox>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Inbox {
    new: VecDeque<Arc<HeldNode>>,
    /// When the task looks at the inbox next, if it is to: a push that
    /// needs it sooner wakes it.
    due: Option<Instant>,
    /// The task has ended (its session is over): holds pushed now are
    /// lost at once.
    closed: Option<zk::SessionState>,
    /// The session has been dropped: the task ends once idle.
    dropped: bool,
}

impl Watcher {
    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a new hold to the task. Wakes it only if it would otherwise
    /// look at the inbox later than the hold's watch is due.
    fn push(&self, node: Arc<HeldNode>) {
        let mut inbox = self.inbox();
        if let Some(s) = inbox.closed {
            drop(inbox);
            node.end(|| session_ended(s));
            return;
        }
        let at = node.watch_from;
        inbox.new.push_back(node);
        if inbox.due.is_none_or(|due| due > at) {
            inbox.due = Some(at);
            drop(inbox);
            self.wake.notify_one();
        }
    }

    /// The session is gone: the task ends once it has nothing to do.
    pub(crate) fn session_dropped(&self) {
        self.inbox().dropped = true;
        self.wake.notify_one();
    }

    /// Takes the holds whose watch is due at `now` (all of them if `all`);
    /// returns them and when the next one is due.
    fn take_due(&self, now: Instant, all: bool) -> (Vec<Arc<HeldNode>>, Option<Instant>) {
        let mut inbox = self.inbox();
        let mut due = Vec::new();
        while inbox
            .new
            .front()
            .is_some_and(|n| all || n.watch_from <= now)
        {
            due.extend(inbox.new.pop_front());
        }
        inbox.due = inbox.new.front().map(|n| n.watch_from);
        (due, inbox.due)
    }
}

/// What became of a hold's watch.
enum Watched {
    /// The watch fired.
    Event(zk::WatchedEvent),
    /// The node is gone (or is another node now).
    Missing,
    /// The watch could not be set.
    Failed(zk::Error),
}

type Watching = BoxFuture<'static, (Arc<HeldNode>, Watched)>;

/// Sets a watch on `node` (after `after`, if given) and waits for it to
/// fire.
fn watch(node: Arc<HeldNode>, after: Option<Duration>) -> Watching {
    Box::pin(async move {
        if let Some(pause) = after {
            sleep(pause).await;
        }
        let client = node.session.client.clone();
        let outcome = match client.get_and_watch_data(&node.path).await {
            Ok((_, stat, w)) if stat.czxid as u64 == node.token => {
                Watched::Event(w.changed().await)
            }
            Ok(_) | Err(zk::Error::NoNode) => Watched::Missing,
            Err(e) => Watched::Failed(e),
        };
        (node, outcome)
    })
}

/// Starts the watcher task of a session: `holds` is the backend's
/// registry, `state` the session's state.
pub(crate) fn spawn_watcher(watcher: &Arc<Watcher>, holds: &Arc<Holds>, state: zk::StateWatcher) {
    tokio::spawn(run_watcher(watcher.clone(), Arc::downgrade(holds), state));
}

/// The watcher task of one session. It never keeps the session open: the
/// holds it watches do, and the task ends once the session is over or
/// dropped and nothing is left to look after.
async fn run_watcher(watcher: Arc<Watcher>, holds: Weak<Holds>, mut state: zk::StateWatcher) {
    // Holds the task looks after (watched, or waiting for their lease to
    // end), by node path.
    let mut live: HashMap<String, Arc<HeldNode>> = HashMap::new();
    let mut watches: FuturesUnordered<Watching> = FuturesUnordered::new();
    let mut over: Option<zk::SessionState> = None;
    loop {
        let holds = holds.upgrade().unwrap_or_default();
        let now = Instant::now();
        let (due, next_due) = watcher.take_due(now, over.is_some());
        for node in due {
            if let Some(s) = over {
                node.end(|| session_ended(s));
            }
            if node.phase() == Phase::Held {
                watches.push(watch(node.clone(), None));
            }
            live.insert(node.path.clone(), node);
        }
        // Leases that ran out, and holds that ended.
        let mut next = next_due;
        live.retain(|_, node| {
            let lease = {
                let mut s = node.state();
                if now >= s.lease && matches!(s.phase, Phase::Held | Phase::Releasing { .. }) {
                    let reap = s.phase == Phase::Held;
                    s.phase = if reap { Phase::Gone } else { Phase::Released };
                    if reap && let Some(tx) = s.loss.take() {
                        let _ = tx.send(LossReason::DeadlinePassed);
                    }
                    drop(s);
                    tracing::debug!(path = %node.path, "lease ran out without renewal; deleting the node");
                    tokio::spawn(delete_until_gone(
                        node.session.client.clone(),
                        node.path.clone(),
                    ));
                    holds.remove(node);
                    return false;
                }
                s.lease
            };
            match node.phase() {
                Phase::Gone => {
                    holds.remove(node);
                    false
                }
                // Released without a confirmed answer (a retry may come):
                // kept until the lease ends. A confirmed release has
                // removed it already.
                Phase::Released if now >= lease || !holds.has(node) => {
                    holds.remove(node);
                    false
                }
                _ => {
                    next = Some(next.map_or(lease, |n: Instant| n.min(lease)));
                    true
                }
            }
        });
        if over.is_some() || watcher.inbox().dropped {
            let mut inbox = watcher.inbox();
            if inbox.new.is_empty() && live.is_empty() {
                if let Some(s) = over {
                    inbox.closed = Some(s);
                }
                return;
            }
        }
        drop(holds);
        tokio::select! {
            () = watcher.wake.notified() => {}
            Some((node, outcome)) = watches.next(), if !watches.is_empty() => {
                match outcome {
                    Watched::Missing => node.end(|| deleted(&node)),
                    Watched::Event(ev) => match (ev.event_type, ev.session_state) {
                        (zk::EventType::NodeDeleted, _) => node.end(|| deleted(&node)),
                        (zk::EventType::Session, s) if s.is_terminated() => {
                            node.end(|| session_ended(s));
                        }
                        // Data changed by someone, or a session event
                        // that ends nothing: watch again.
                        _ if !node.ended() => watches.push(watch(node, None)),
                        _ => {}
                    },
                    Watched::Failed(e) if is_connection(&e) && !node.ended() => {
                        watches.push(watch(node, Some(RETRY)));
                    }
                    Watched::Failed(e) if is_session_over(&e) => {
                        let s = node.session.client.state();
                        node.end(|| session_ended(s));
                    }
                    // Anything else: the renewals find out.
                    Watched::Failed(_) => {}
                }
            }
            () = sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            s = state.changed(), if over.is_none() => {
                if s.is_terminated() {
                    over = Some(s);
                    for node in live.values() {
                        node.end(|| session_ended(s));
                    }
                    // The node watches end with the session.
                    watches = FuturesUnordered::new();
                }
            }
        }
    }
}
