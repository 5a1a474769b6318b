//! One acquisition round of Redlock, with its fencing token: every master
//! asked at once, the answers counted, the token settled, and everything
//! not used taken back.
//!
//! The token: the acquire script on each node takes the lock and raises
//! the node's counter to the proposal `t` only if `t` exceeds it. If a
//! quorum raised theirs to `t`, `t` is the token: any earlier hold's quorum
//! shares a node with this one, whose counter was at least that hold's
//! token and was still below `t`. Otherwise a second round raises the
//! counters of the nodes holding the lock to `max + 1` (the largest counter
//! any node reported, plus one), and the same argument holds for a quorum
//! of them. Counters only go up, so this holds while a majority of the
//! nodes keeps its data.

use crate::backend::Inner;
use crate::nodes::{Gather, Late, NodeRef, Reply, fan_out};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lock_core::{AcquireRequest, Error, FencingToken, Grant, Key, LossReason, Result, drift};
use lock_redis::node::{Acquired, Epoch, Raised, ttl_ms};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How a round ended without a grant.
#[derive(Debug)]
pub(crate) enum Busy {
    /// Held by someone else: the largest remaining ttl the nodes reported
    /// (`None`: no expiry, foreign data).
    Held(Option<Duration>),
    /// No quorum either way (contention, a refused token, validity spent):
    /// try again after a short random delay.
    Split,
}

/// Takes back, on drop, one count on every node still armed: nodes that
/// may have taken the lock in a round whose hold is not handed out. Sent
/// on each node's one connection, so after that node's acquire.
struct Undo<'a> {
    inner: &'a Inner,
    key: &'a Key,
    owner: &'a str,
    armed: Vec<bool>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for (slot, armed) in self.inner.slots.iter().zip(&self.armed) {
            if let (true, Some(node)) = (*armed, slot.node()) {
                node.undo_in_background(self.key, self.owner);
            }
        }
    }
}

/// The token value most answers agree on, with its nodes.
fn agreed(reentered: &[(usize, FencingToken)]) -> Option<(FencingToken, Vec<usize>)> {
    let mut by_token: HashMap<FencingToken, Vec<usize>> = HashMap::new();
    for &(i, t) in reentered {
        by_token.entry(t).or_default().push(i);
    }
    by_token.into_iter().max_by_key(|(_, nodes)| nodes.len())
}

impl Undo<'_> {
    /// Takes back every armed node now, waiting for the answers (each
    /// bounded by `limit`), so that the next round of the same owner is
    /// sent after them: it must never find this round's fragments and take
    /// them for a re-entry.
    async fn now(&mut self, limit: Duration) {
        let armed = std::mem::take(&mut self.armed);
        let (key, owner) = (self.key, self.owner);
        fan_out(&self.inner.slots, limit, |i, node| {
            let go = armed[i];
            async move {
                if go {
                    node.undo(key, owner).await?;
                }
                Ok(())
            }
        })
        .await;
    }
}

/// One round: `Ok(Ok(grant))`, `Ok(Err(busy))`, or [`Error::Unavailable`]
/// when fewer than a quorum of nodes answered at all. Whatever a round that
/// hands out no hold took is taken back on every node before it returns.
///
/// # Cancel safety
/// If dropped, every node asked is sent an undo (after its acquire, on its
/// connection); what an undo cannot reach expires within the ttl.
pub(crate) async fn attempt(
    inner: &Inner,
    req: &AcquireRequest,
) -> Result<std::result::Result<Grant, Busy>> {
    let mut undo = Undo {
        inner,
        key: &req.key,
        owner: req.owner.as_str(),
        armed: vec![false; inner.slots.len()],
    };
    let outcome = round(inner, req, &mut undo).await;
    if !matches!(outcome, Ok(Ok(_))) {
        undo.now(inner.config.node_timeout_for(req.ttl.get())).await;
    }
    outcome
}

async fn round<'a>(
    inner: &'a Inner,
    req: &'a AcquireRequest,
    undo: &mut Undo<'a>,
) -> Result<std::result::Result<Grant, Busy>> {
    let n = inner.slots.len();
    let q = inner.config.quorum;
    let ttl = req.ttl.get();
    let ttl_ms = ttl_ms(ttl);
    let limit = inner.config.node_timeout_for(ttl);
    let owner = req.owner.as_str();
    let key = &req.key;
    let proposal = inner.seen.proposal(key);
    let epochs: Vec<Option<Epoch>> = inner
        .slots
        .iter()
        .map(|s| s.node().map(|n| n.epoch()).filter(|e| e.up))
        .collect();

    // Answers that come after this round stopped listening (it returned
    // at quorum, or was dropped): keep a late winner of a granted round,
    // take back anything else it may have taken.
    let holding = Arc::new(Mutex::new(Holding {
        granted: false,
        holders: vec![false; n],
    }));
    let late: Late<Acquired> = {
        let (key, owner, holding) = (key.clone(), req.owner.clone(), holding.clone());
        Arc::new(move |i, node: NodeRef, reply: Reply<Acquired>| {
            let keep = match reply {
                Reply::Answer(Acquired::Held(_)) => true,
                Reply::Answer(Acquired::New(t)) if t.get() == proposal => {
                    let mut holding = holding.lock().unwrap_or_else(|p| p.into_inner());
                    // A late winner of a granted round holds it too.
                    holding.holders[i] = holding.granted;
                    holding.granted
                }
                _ => false,
            };
            if !keep {
                node.undo_in_background(&key, owner.as_str());
            }
        })
    };

    let sent = Instant::now();
    let mut gather = Gather::spawn(
        &inner.slots,
        limit,
        |i| epochs[i].is_some(),
        |_, node| {
            let (key, owner) = (key.clone(), req.owner.clone());
            async move {
                node.acquire(&key, owner.as_str(), ttl_ms, Some(proposal))
                    .await
            }
        },
        late,
    );
    // Return as soon as a quorum took the lock with the proposed token
    // (the slower nodes' answers go to `late`); otherwise hear every node.
    let mut winners = 0;
    let mut reentry = false;
    while let Some(i) = gather.next().await {
        let answer = gather.answer(i);
        // Anything but "held by someone else" may have taken something.
        undo.armed[i] = !matches!(answer, Some(Acquired::Held(_)));
        match answer {
            Some(Acquired::New(t)) if t.get() == proposal => winners += 1,
            Some(Acquired::Reentered(_)) => reentry = true,
            _ => {}
        }
        if winners >= q && !reentry {
            break;
        }
    }

    let mut answered = 0;
    let mut largest = 0u64;
    let mut won = Vec::new();
    let mut taken = Vec::new();
    let mut reentered = Vec::new();
    let mut held = 0;
    let mut held_pttl: Option<Option<Duration>> = None;
    let mut failures = Vec::new();
    for (i, reply) in gather.replies.iter().enumerate() {
        let Some(reply) = reply else {
            continue;
        };
        match reply {
            Reply::Answer(a) => {
                answered += 1;
                match *a {
                    Acquired::New(t) => {
                        largest = largest.max(t.get());
                        taken.push(i);
                        if t.get() == proposal {
                            won.push(i);
                        }
                    }
                    Acquired::Refused(c) => {
                        largest = largest.max(c.get());
                        taken.push(i);
                    }
                    Acquired::Reentered(t) => {
                        largest = largest.max(t.get());
                        reentered.push((i, t));
                    }
                    Acquired::Held(pttl) => {
                        held += 1;
                        let p = u64::try_from(pttl).ok().map(Duration::from_millis);
                        held_pttl = Some(match (held_pttl, p) {
                            (None, p) => p,
                            (Some(Some(a)), Some(b)) => Some(a.max(b)),
                            _ => None,
                        });
                    }
                    _ => {}
                }
            }
            Reply::Failed(e) => failures.push(e.to_string()),
            Reply::Silent => failures.push(format!(
                "redis at {}: no answer within {limit:?}",
                inner.slots[i].addr
            )),
        }
    }
    inner.seen.observe(key, largest);
    if answered < q {
        return Err(Error::unavailable(format!(
            "redlock: only {answered} of {n} masters answered, quorum is {q}: {}",
            failures.join("; ")
        )));
    }

    // A hold this owner already has on the nodes (another client naming
    // the same owner): one more count, the hold's own token.
    if !reentered.is_empty() {
        return Ok(match agreed(&reentered) {
            Some((token, nodes)) if nodes.len() >= q => {
                finish(inner, undo, sent, ttl_ms, token, nodes, &epochs, &holding)
            }
            _ => Err(Busy::Split),
        });
    }
    if taken.len() < q {
        // The nodes that did not answer cost the quorum (with them it was
        // within reach): that is unavailability, not "held", and retryable.
        // Otherwise someone else has a quorum (wait for its release or
        // expiry), or nobody has (contention: try again soon).
        if taken.len() + (n - answered) >= q {
            return Err(Error::unavailable(format!(
                "redlock: only {} of {n} masters took the lock and {} did not answer, \
                 quorum is {q}: {}",
                taken.len(),
                n - answered,
                failures.join("; ")
            )));
        }
        return Ok(Err(match held_pttl {
            Some(p) if held >= q => Busy::Held(p),
            _ => Busy::Split,
        }));
    }
    if won.len() >= q {
        let token = FencingToken(proposal);
        return Ok(finish(
            inner, undo, sent, ttl_ms, token, won, &epochs, &holding,
        ));
    }

    // Second round: some nodes of the quorum had counters at or past the
    // proposal. Raise the holders' counters past every counter seen.
    let t2 = largest.max(proposal) + 1;
    let replies = fan_out(&inner.slots, limit, |i, node| {
        let ours = taken.contains(&i);
        async move {
            if !ours {
                return Ok(Raised::NotHeld);
            }
            node.raise(key, owner, t2).await
        }
    })
    .await;
    let mut raised = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        match reply.answer() {
            Some(Raised::To(t)) if t.get() == t2 => raised.push(i),
            Some(Raised::Refused(c)) => inner.seen.observe(key, *c),
            _ => {}
        }
    }
    inner.seen.observe(key, t2);
    if raised.len() < q {
        return Ok(Err(Busy::Split));
    }
    Ok(finish(
        inner,
        undo,
        sent,
        ttl_ms,
        FencingToken(t2),
        raised,
        &epochs,
        &holding,
    ))
}

/// Hands out the hold on `holders` if validity remains, keeping it there
/// (the undo takes back every other node).
#[allow(clippy::too_many_arguments)]
fn finish(
    inner: &Inner,
    undo: &mut Undo<'_>,
    sent: Instant,
    ttl_ms: u64,
    token: FencingToken,
    holders: Vec<usize>,
    epochs: &[Option<Epoch>],
    holding: &Arc<Mutex<Holding>>,
) -> std::result::Result<Grant, Busy> {
    let ttl = Duration::from_millis(ttl_ms);
    // Validity = ttl - elapsed - drift, from the instant before sending.
    if sent.elapsed() + drift(ttl) >= ttl {
        return Err(Busy::Split);
    }
    inner.seen.observe(undo.key, token.get());
    {
        let mut holding = holding.lock().unwrap_or_else(|p| p.into_inner());
        holding.granted = true;
        for &i in &holders {
            undo.armed[i] = false;
            holding.holders[i] = true;
        }
    }
    // Watch every node asked: a late winner joins the holders after this.
    let mut ended = FuturesUnordered::new();
    for (i, epoch) in epochs.iter().enumerate() {
        if let (Some(node), Some(epoch)) = (inner.slots[i].node(), epoch) {
            let end = node.epoch_ended(epoch.number);
            ended.push(async move {
                end.await;
                i
            });
        }
    }
    let q = inner.config.quorum;
    let holding = holding.clone();
    let mut gone = vec![false; epochs.len()];
    let lost = Box::pin(async move {
        while let Some(i) = ended.next().await {
            gone[i] = true;
            let holding = holding.lock().unwrap_or_else(|p| p.into_inner());
            let left = holding
                .holders
                .iter()
                .zip(&gone)
                .filter(|&(&held, &gone)| held && !gone)
                .count();
            if left < q {
                return LossReason::Gone(format!(
                    "the connections to masters holding the lock closed while it was held \
                     (a restarted master may have forgotten it): only {left} may still have \
                     it, fewer than the quorum ({q})"
                ));
            }
        }
        std::future::pending().await
    });
    Ok(Grant {
        token,
        ttl,
        valid_from: sent,
        handle: String::new(),
        lost: Some(lost),
    })
}

/// Which nodes hold a granted round's hold, shared with the handler of the
/// answers that come after the round returned.
#[derive(Debug)]
struct Holding {
    /// The round handed out its hold.
    granted: bool,
    /// Per node: it holds the hold with the round's token.
    holders: Vec<bool>,
}
