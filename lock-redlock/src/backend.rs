//! [`RedlockBackend`]: the [`Backend`] over N independent Redis masters.

use crate::config::RedlockConfig;
use crate::nodes::{Gather, Reply, Slot, connect_all, fan_out};
use crate::round::attempt;
use crate::tokens::Seen;
use crate::wait::Waiters;
use lock_core::{
    AcquireRequest, Backend, Capabilities, Error, FencingGuarantee, Grant, HoldInfo, HolderStatus,
    Key, LockStatus, NodeLoss, Result, drift,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What every part of the backend shares.
pub(crate) struct Inner {
    pub(crate) slots: Vec<Slot>,
    pub(crate) config: RedlockConfig,
    pub(crate) seen: Seen,
}

/// The `redlock://` backend: Redlock over N independent Redis masters
/// (odd N ≥ 3), each in lock-redis's layout and with its scripts, with
/// fencing tokens that stay monotonic while a majority keeps its data.
///
/// Every operation goes to all masters at once, each bounded by the
/// per-node timeout ([`RedlockConfig::node_timeout_for`]), and counts only
/// with a quorum. See the crate docs for the guarantees.
pub struct RedlockBackend {
    inner: Inner,
    caps: Capabilities,
}

impl fmt::Debug for RedlockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<&str> = self.inner.slots.iter().map(|s| s.addr.as_str()).collect();
        f.debug_struct("RedlockBackend")
            .field("nodes", &addrs)
            .field("quorum", &self.inner.config.quorum)
            .field("node_timeout", &self.inner.config.node_timeout)
            .finish()
    }
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new("redlock");
    caps.fencing = FencingGuarantee::WhileMajorityKeepsData;
    caps.node_loss = NodeLoss::SurvivesMinority;
    caps.notifies_waiters = true;
    caps.fair = false;
    caps.ttl_granularity = Duration::from_millis(1);
    // A cancelled or failed round is undone in the background, which may
    // not reach every node: then those fragments expire within one ttl.
    caps.cancel_cleans_up = false;
    caps
}

/// How a quorum operation on one hold came out, from the per-node answers
/// (`true`: done there; `false`: the hold is not there).
fn tally(
    what: &str,
    hold: &HoldInfo,
    answers: impl Iterator<Item = Option<bool>>,
    n: usize,
    q: usize,
) -> Result<()> {
    let (mut yes, mut no) = (0, 0);
    for a in answers {
        match a {
            Some(true) => yes += 1,
            Some(false) => no += 1,
            None => {}
        }
    }
    verdict(what, hold, (yes, no), n, q)
}

/// The outcome from `yes` nodes that did it and `no` nodes without the
/// hold (the others did not answer).
fn verdict(
    what: &str,
    hold: &HoldInfo,
    (yes, no): (usize, usize),
    n: usize,
    q: usize,
) -> Result<()> {
    if yes >= q {
        Ok(())
    } else if n - no < q {
        // Not a quorum of nodes can still have it.
        Err(hold.not_held())
    } else {
        Err(Error::unavailable(format!(
            "redlock: {what} of {:?} confirmed by {yes} of {n} masters ({no} without the hold), \
             quorum is {q}",
            hold.key.as_str()
        )))
    }
}

impl RedlockBackend {
    /// Connects to the masters `config` names, all at once. Fails with
    /// [`Error::Unavailable`] when fewer than a quorum can be reached (the
    /// others are connected in the background), and with
    /// [`Error::InvalidConfig`] when one refuses the credentials.
    ///
    /// # Cancel safety
    /// If dropped, nothing is left behind but connections being closed.
    pub async fn connect(config: RedlockConfig) -> Result<RedlockBackend> {
        let slots = connect_all(&config.nodes, config.quorum).await?;
        Ok(RedlockBackend {
            inner: Inner {
                slots,
                config,
                seen: Seen::default(),
            },
            caps: capabilities(),
        })
    }

    /// Parses `url` ([`RedlockConfig::from_url`]) and connects.
    ///
    /// # Cancel safety
    /// As [`connect`](Self::connect).
    pub async fn open(url: &str) -> Result<RedlockBackend> {
        Self::connect(RedlockConfig::from_url(url)?).await
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &RedlockConfig {
        &self.inner.config
    }

    fn limit(&self, ttl: Duration) -> Duration {
        self.inner.config.node_timeout_for(ttl)
    }
}

#[lock_core::async_trait]
impl Backend for RedlockBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        let limit = self.limit(req.ttl.get());
        let mut waiters: Option<Waiters> = None;
        let mut unavailable_backoff = Duration::from_millis(10);
        loop {
            // A round that met no quorum because nodes did not answer is
            // retried (it is retryable) while the wait lasts; the error is
            // the answer only when the wait runs out.
            let busy = match attempt(&self.inner, req).await {
                Ok(Ok(grant)) => return Ok(Some(grant)),
                Ok(Err(busy)) => Ok(busy),
                Err(e) if e.is_retryable() => Err(e),
                Err(e) => return Err(e),
            };
            if req.wait.expired(Instant::now()) {
                return busy.map(|_| None);
            }
            match busy {
                Ok(busy) => {
                    unavailable_backoff = Duration::from_millis(10);
                    let waiters =
                        waiters.get_or_insert_with(|| Waiters::register(&self.inner, &req.key));
                    waiters.wait(&busy, req.wait.deadline(), limit).await;
                }
                Err(_) => {
                    // Masters down: a jittered, growing pause, not a spin.
                    let pause = unavailable_backoff.mul_f64(rand::random_range(0.5..=1.0));
                    unavailable_backoff = (unavailable_backoff * 2).min(Duration::from_secs(1));
                    match req.wait.deadline() {
                        Some(d) => tokio::time::sleep_until(d.min(Instant::now() + pause)).await,
                        None => tokio::time::sleep(pause).await,
                    }
                }
            }
        }
    }

    async fn reenter(&self, hold: &HoldInfo, _count: u32) -> Result<()> {
        let inner = &self.inner;
        let replies = fan_out(&inner.slots, self.limit(hold.ttl), |_, node| {
            node.reenter(hold)
        })
        .await;
        let answers = replies.iter().map(|r| r.answer().copied());
        tally(
            "re-entry",
            hold,
            answers,
            inner.slots.len(),
            inner.config.quorum,
        )
    }

    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        let inner = &self.inner;
        let (n, q) = (inner.slots.len(), inner.config.quorum);
        let shortest = holds.iter().map(|h| h.ttl).min().unwrap_or_default();
        let sent = Instant::now();
        // Renewal is not on the caller's path: a tenth of the ttl per node,
        // at least the per-node timeout; it must end within validity anyway.
        let limit = self.limit(shortest).max(shortest / 10);
        let batch: Arc<[Arc<HoldInfo>]> = holds.into();
        let mut gather = Gather::spawn(
            &inner.slots,
            limit,
            |i| inner.slots[i].node().is_some_and(|n| n.epoch().up),
            |_, node| {
                let batch = batch.clone();
                async move { Ok(node.renew(&batch).await) }
            },
            Arc::new(|_, _, _| {}),
        );
        // Per hold: nodes that extended it, nodes without it. Returns once
        // every hold is decided; the slower nodes' renewals go on in the
        // background.
        let mut counts = vec![(0usize, 0usize); holds.len()];
        let decided = |(yes, no): (usize, usize)| yes >= q || n - no < q;
        while let Some(i) = gather.next().await {
            if let Some(per_hold) = gather.answer(i) {
                for (count, answer) in counts.iter_mut().zip(per_hold) {
                    match answer {
                        Ok(true) => count.0 += 1,
                        Ok(false) => count.1 += 1,
                        Err(_) => {}
                    }
                }
            }
            if counts.iter().all(|&c| decided(c)) {
                break;
            }
        }
        let elapsed = sent.elapsed();
        holds
            .iter()
            .zip(counts)
            .map(|(hold, count)| {
                verdict("renewal", hold, count, n, q)?;
                // It counts only if the quorum confirmed within validity.
                if elapsed + drift(hold.ttl) >= hold.ttl {
                    return Err(Error::unavailable(format!(
                        "redlock: renewal of {:?} took {elapsed:?}, past its validity",
                        hold.key.as_str()
                    )));
                }
                Ok(())
            })
            .collect()
    }

    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        let inner = &self.inner;
        let (n, q) = (inner.slots.len(), inner.config.quorum);
        let shared = Arc::new(hold.clone());
        // Returns once the outcome is known; the slower nodes' releases are
        // awaited in the background (a dropped request may never be sent:
        // the client sheds requests nobody waits for), their answers no
        // longer matter.
        let mut gather = Gather::spawn(
            &inner.slots,
            // It returns at quorum, so a slow node costs nothing unless it
            // is needed: give each the request timeout, not the per-node one.
            self.limit(hold.ttl).max(inner.config.nodes[0].timeout),
            |i| inner.slots[i].node().is_some_and(|n| n.epoch().up),
            |_, node| {
                let hold = shared.clone();
                async move { node.release(&hold, count).await }
            },
            Arc::new(|_, _, _| {}),
        );
        let (mut yes, mut no) = (0, 0);
        while let Some(i) = gather.next().await {
            match gather.answer(i) {
                Some(true) => yes += 1,
                Some(false) => no += 1,
                None => {}
            }
            if yes >= q || n - no < q {
                break;
            }
        }
        verdict("release", hold, (yes, no), n, q)
    }

    async fn status(&self, key: &Key) -> Result<LockStatus> {
        let inner = &self.inner;
        let (n, q) = (inner.slots.len(), inner.config.quorum);
        let limit = inner.config.nodes[0].timeout;
        let replies = fan_out(&inner.slots, limit, |_, node| node.status(key)).await;
        let found: Vec<&LockStatus> = replies.iter().filter_map(Reply::answer).collect();
        if found.len() < q {
            return Err(Error::unavailable(format!(
                "redlock: status of {:?}: only {} of {n} masters answered, quorum is {q}",
                key.as_str(),
                found.len()
            )));
        }
        // A holder counts when a quorum of the masters shows it; what fewer
        // show is a fragment (a round being undone, a node behind), shown in
        // the detail of the holder, or as a holder of its own when foreign.
        let mut holders: BTreeMap<Option<String>, (usize, HolderStatus)> = BTreeMap::new();
        for status in &found {
            for h in &status.holders {
                let entry = holders
                    .entry(h.owner.clone())
                    .or_insert_with(|| (0, h.clone()));
                entry.0 += 1;
                if let (Some(a), Some(b)) = (entry.1.token, h.token) {
                    entry.1.token = Some(a.min(b));
                }
            }
        }
        let mut status = LockStatus::free(key.clone());
        status.last_token = found.iter().filter_map(|s| s.last_token).max();
        for (_, (nodes, mut holder)) in holders {
            let foreign = holder.count.is_none();
            if nodes >= q || foreign {
                let note = format!("on {nodes} of {n} masters");
                holder.detail = Some(match holder.detail {
                    Some(d) => format!("{d} ({note})"),
                    None => note,
                });
                status.holders.push(holder);
            }
        }
        Ok(status)
    }
}
