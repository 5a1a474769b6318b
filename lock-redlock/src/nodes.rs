//! The masters: one [`Node`] of lock-redis per server, connected in the
//! background when it was down at start, and the parallel fan-out of one
//! request to all of them under the per-node timeout.

use futures::StreamExt;
use futures::future::{BoxFuture, join_all};
use futures::stream::FuturesUnordered;
use lock_core::{Error, Result};
use lock_redis::RedisConfig;
use lock_redis::node::Node;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// One master: its config, and its connection once it is open.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) addr: String,
    node: Arc<OnceLock<Node>>,
    connecting: Option<JoinHandle<()>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(task) = &self.connecting {
            task.abort();
        }
    }
}

impl Slot {
    /// The connection, if it is open.
    pub(crate) fn node(&self) -> Option<&Node> {
        self.node.get()
    }
}

/// Connects to every master in parallel. Fails with the first hard error
/// ([`Error::InvalidConfig`]: refused credentials) or, with
/// [`Error::Unavailable`], when fewer than `quorum` masters answer; the
/// others are connected in the background, retrying with a jittered
/// backoff.
pub(crate) async fn connect_all(configs: &[RedisConfig], quorum: usize) -> Result<Vec<Slot>> {
    let tries = join_all(configs.iter().cloned().map(Node::connect)).await;
    let mut up = 0;
    let mut errors = Vec::new();
    for t in &tries {
        match t {
            Ok(_) => up += 1,
            Err(e @ Error::InvalidConfig(_)) => return Err(Error::InvalidConfig(e.to_string())),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if up < quorum {
        return Err(Error::unavailable(format!(
            "redlock: only {up} of {} masters reachable, quorum is {quorum}: {}",
            configs.len(),
            errors.join("; ")
        )));
    }
    Ok(tries
        .into_iter()
        .zip(configs)
        .map(|(t, config)| {
            let cell = Arc::new(OnceLock::new());
            let connecting = match t {
                Ok(node) => {
                    let _ = cell.set(node);
                    None
                }
                Err(_) => Some(tokio::spawn(reconnect(config.clone(), cell.clone()))),
            };
            Slot {
                addr: config.addr(),
                node: cell,
                connecting,
            }
        })
        .collect())
}

async fn reconnect(config: RedisConfig, cell: Arc<OnceLock<Node>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        sleep(backoff.mul_f64(rand::random_range(0.5..1.0))).await;
        match Node::connect(config.clone()).await {
            Ok(node) => {
                tracing::debug!(addr = %config.addr(), "redlock: master connected");
                let _ = cell.set(node);
                return;
            }
            Err(e) => {
                tracing::debug!(addr = %config.addr(), error = %e, "redlock: master still down")
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// What one node answered within the per-node timeout.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    /// An answer.
    Answer(T),
    /// An error answer (or an unreachable node): the outcome is unknown.
    Failed(Error),
    /// No answer within the per-node timeout (or no connection): unknown.
    Silent,
}

impl<T> Reply<T> {
    /// The answer, if there is one.
    pub(crate) fn answer(&self) -> Option<&T> {
        match self {
            Reply::Answer(t) => Some(t),
            _ => None,
        }
    }
}

/// Sends `op` to every connected node at once and gathers what each
/// answered within `limit`, in node order. Nodes without a connection (or
/// whose pub/sub connection, which watches the server, is down) are
/// [`Reply::Silent`] without a request.
///
/// # Cancel safety
/// Dropping it drops every request in flight; what each did is unknown.
pub(crate) async fn fan_out<'a, T, F, Fut>(
    slots: &'a [Slot],
    limit: Duration,
    op: F,
) -> Vec<Reply<T>>
where
    F: Fn(usize, &'a Node) -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    let calls = slots.iter().enumerate().map(|(i, slot)| {
        let call = slot.node().filter(|n| n.epoch().up).map(|n| op(i, n));
        async move {
            let Some(call) = call else {
                return Reply::Silent;
            };
            match timeout(limit, call).await {
                Ok(Ok(t)) => Reply::Answer(t),
                Ok(Err(e)) => Reply::Failed(e),
                Err(_) => Reply::Silent,
            }
        }
    });
    join_all(calls).await
}

/// A connected node, owned: for requests that outlive the call that sent
/// them (a round that returns at quorum leaves the slower nodes' requests
/// running).
#[derive(Clone)]
pub(crate) struct NodeRef(Arc<OnceLock<Node>>);

impl std::ops::Deref for NodeRef {
    type Target = Node;
    fn deref(&self) -> &Node {
        // Only made for a slot whose cell is set, and a cell is set once.
        self.0
            .get()
            .expect("a NodeRef is made only for a connected node")
    }
}

impl Slot {
    /// The connection, owned, if it is open.
    pub(crate) fn node_ref(&self) -> Option<NodeRef> {
        self.node.get().map(|_| NodeRef(self.node.clone()))
    }
}

/// What becomes of an answer that arrives after the caller stopped
/// listening (it returned at quorum, or was cancelled). The requests not
/// answered yet are awaited in the background: a request dropped before
/// its connection wrote it is never sent (the `redis` client sheds
/// requests nobody waits for).
pub(crate) type Late<T> = Arc<dyn Fn(usize, NodeRef, Reply<T>) + Send + Sync>;

type Sent<T> = (usize, NodeRef, Reply<T>);

/// Answers of requests sent to every node at once, each bounded by the
/// per-node timeout, received in arrival order. The requests are polled by
/// the caller's task (no task per node on the fast path); answers not
/// received when it stops listening (it returned early, or was dropped) are
/// awaited by a background task and go to the `late` handler, so none is
/// lost.
pub(crate) struct Gather<T: Send + 'static> {
    pending: FuturesUnordered<BoxFuture<'static, Sent<T>>>,
    late: Late<T>,
    /// Each node's answer, once received.
    pub(crate) replies: Vec<Option<Reply<T>>>,
}

impl<T: Send + 'static> Gather<T> {
    /// Sends `op` to every node for which `live(i)` holds, each bounded by
    /// `limit`; the others are [`Reply::Silent`] at once. The requests
    /// leave when [`next`](Self::next) is first polled.
    pub(crate) fn spawn<F, Fut>(
        slots: &[Slot],
        limit: Duration,
        live: impl Fn(usize) -> bool,
        op: F,
        late: Late<T>,
    ) -> Gather<T>
    where
        F: Fn(usize, NodeRef) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let pending = FuturesUnordered::new();
        let mut replies: Vec<Option<Reply<T>>> = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            match slot.node_ref().filter(|_| live(i)) {
                Some(node) => {
                    replies.push(None);
                    let call = op(i, node.clone());
                    pending.push(Box::pin(async move {
                        let reply = match timeout(limit, call).await {
                            Ok(Ok(t)) => Reply::Answer(t),
                            Ok(Err(e)) => Reply::Failed(e),
                            Err(_) => Reply::Silent,
                        };
                        (i, node, reply)
                    }) as BoxFuture<'static, Sent<T>>);
                }
                None => replies.push(Some(Reply::Silent)),
            }
        }
        Gather {
            pending,
            late,
            replies,
        }
    }

    /// Receives the next answer; its node's index, or `None` when every
    /// node has answered.
    ///
    /// # Cancel safety
    /// Safe to drop: no answer is lost.
    pub(crate) async fn next(&mut self) -> Option<usize> {
        let (i, _, reply) = self.pending.next().await?;
        self.replies[i] = Some(reply);
        Some(i)
    }

    /// The answer received from node `i`, if any.
    pub(crate) fn answer(&self, i: usize) -> Option<&T> {
        self.replies[i].as_ref().and_then(Reply::answer)
    }
}

impl<T: Send + 'static> Drop for Gather<T> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let late = self.late.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = std::mem::take(&mut self.pending);
        runtime.spawn(async move {
            while let Some((i, node, reply)) = pending.next().await {
                late(i, node, reply);
            }
        });
    }
}
