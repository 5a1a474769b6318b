//! [`RedisBackend`]: the [`Backend`] of one Redis server.

use crate::config::RedisConfig;
use crate::node::{Acquired, Names, Node, Registration, ttl_ms};
use lock_core::{
    AcquireRequest, Backend, Capabilities, Error, FencingGuarantee, Grant, HoldInfo, Key,
    LockStatus, LossReason, NodeLoss, Result, Wait,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

/// The `redis://` backend: one Redis server, Redisson's lock layout, one
/// round trip per operation, waiters woken by pub/sub.
///
/// Cheap to share (`Arc<dyn Backend>` in a [`lock_core::Locker`]); it keeps
/// two connections: one multiplexed, auto-reconnecting connection for every
/// request, and one pub/sub connection shared by all waiters, which also
/// watches the server (see the crate docs on loss).
pub struct RedisBackend {
    node: Node,
    caps: Capabilities,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.node.addr)
            .field("db", &self.node.config.db)
            .field("prefix", &self.node.config.prefix)
            .field("timeout", &self.node.config.timeout)
            .finish()
    }
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new("redis");
    caps.fencing = FencingGuarantee::WhileStoreKeepsData;
    caps.node_loss = NodeLoss::NotSurvived;
    caps.notifies_waiters = true;
    caps.fair = false;
    caps.ttl_granularity = Duration::from_millis(1);
    // A cancelled acquire whose request was in flight is undone in the
    // background, which may fail: then the hold expires within one ttl.
    caps.cancel_cleans_up = false;
    caps
}

impl RedisBackend {
    /// Connects to the server `config` names: the request connection and
    /// the pub/sub connection. Fails with [`Error::Unavailable`] naming the
    /// address if either cannot be opened within the config's timeout.
    ///
    /// # Cancel safety
    /// If dropped, nothing is left behind but connections being closed.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        Ok(RedisBackend {
            node: Node::connect(config).await?,
            caps: capabilities(),
        })
    }

    /// Parses `url` ([`RedisConfig::from_url`]) and connects.
    ///
    /// # Cancel safety
    /// As [`connect`](Self::connect).
    pub async fn open(url: &str) -> Result<RedisBackend> {
        Self::connect(RedisConfig::from_url(url)?).await
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.node.config
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.node.addr
    }

    /// The name of `key`'s lock hash in Redis: the prefix, then the key.
    /// Its fencing counter is `redisson_lock_token:{NAME}` and its release
    /// channel `redisson_lock__channel:{NAME}`.
    pub fn lock_name(&self, key: &Key) -> String {
        format!("{}{}", self.node.config.prefix, key.as_str())
    }

    fn names(&self, key: &Key) -> Names {
        self.node.names(key)
    }

    /// The connection to the server, for the lock operations one by one.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// One try: `Ok(Ok(grant))`, or `Ok(Err(pttl))` when held by someone
    /// else.
    async fn attempt(
        &self,
        req: &AcquireRequest,
        ttl: u64,
    ) -> Result<std::result::Result<Grant, i64>> {
        let Some(epoch) = self.node.live_epoch().await else {
            return Err(Error::unavailable(format!(
                "redis at {}: no connection (the pub/sub connection that watches the server is down)",
                self.node.addr
            )));
        };
        let mut undo = Undo {
            node: &self.node,
            req,
            armed: true,
        };
        let sent = Instant::now();
        let reply = self
            .node
            .acquire(&req.key, req.owner.as_str(), ttl, None)
            .await;
        // An answer came: whatever it says is known. An error may hide a
        // grant (a timeout after the server ran the script): undo it.
        let reply = reply?;
        undo.armed = false;
        let token = match reply {
            Acquired::New(token) | Acquired::Reentered(token) => token,
            Acquired::Held(pttl) => return Ok(Err(pttl)),
            other => {
                return Err(Error::backend(format!(
                    "redis at {}: unexpected acquire answer {other:?}",
                    self.node.addr
                )));
            }
        };
        let ended = self.node.epoch_ended(epoch.number);
        let addr = self.node.addr.clone();
        let lost = Box::pin(async move {
            ended.await;
            LossReason::Gone(format!(
                "the connection to redis at {addr} closed while the lock was held; \
                 a restarted server may have forgotten it"
            ))
        });
        Ok(Ok(Grant {
            token,
            ttl: Duration::from_millis(ttl),
            valid_from: sent,
            handle: String::new(),
            lost: Some(lost),
        }))
    }
}

/// Takes back what an acquire may have granted when its answer never
/// reached the caller (cancelled or failed while in flight). Sent on the
/// same connection after the acquire, so the server runs it after it.
struct Undo<'a> {
    node: &'a Node,
    req: &'a AcquireRequest,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.node
                .undo_in_background(&self.req.key, self.req.owner.as_str());
        }
    }
}

/// A wake-up taken from a release message: if the woken waiter goes
/// (cancelled, or failed) before its try is answered, the wake passes to
/// another waiter of the same lock.
struct Baton<'a> {
    reg: &'a Registration,
    armed: bool,
}

impl Drop for Baton<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.reg.channel().pass_wake();
        }
    }
}

/// How long to wait before trying again when no message comes: bounded by
/// the holder's remaining ttl, since a message can be missed.
fn pause(pttl: i64, subscribed: bool, backoff: &mut Duration) -> Duration {
    // The key expires by `pttl`; one more millisecond covers rounding.
    let bound = u64::try_from(pttl)
        .ok()
        .map(|p| Duration::from_millis(p + 1));
    let jitter = rand::random_range(0.75..=1.0);
    let d = if subscribed {
        bound.unwrap_or(Duration::from_secs(2)).mul_f64(jitter)
    } else {
        let d = backoff.mul_f64(jitter);
        *backoff = (*backoff * 2).min(Duration::from_secs(1));
        bound.map_or(d, |b| d.min(b))
    };
    d.max(Duration::from_millis(1))
}

#[lock_core::async_trait]
impl Backend for RedisBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        let names = self.names(&req.key);
        let ttl = ttl_ms(req.ttl.get());
        let mut pttl = match self.attempt(req, ttl).await? {
            Ok(grant) => return Ok(Some(grant)),
            Err(pttl) => pttl,
        };
        if req.wait.expired(Instant::now()) {
            return Ok(None);
        }
        let reg = self.node.register(&names.channel);
        let deadline = match req.wait {
            Wait::Until(t) => Some(t),
            _ => None,
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            let mut baton = Baton {
                reg: &reg,
                armed: false,
            };
            if !reg.is_current() && reg.subscribe().await {
                // Just subscribed: try again before waiting, so a release
                // that came before the subscription is not missed.
            } else {
                let pause = pause(pttl, reg.is_current(), &mut backoff);
                tokio::select! {
                    () = reg.channel().notified() => baton.armed = true,
                    () = sleep(pause) => {}
                    () = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {}
                }
            }
            let outcome = self.attempt(req, ttl).await;
            baton.armed = false;
            pttl = match outcome? {
                Ok(grant) => return Ok(Some(grant)),
                Err(pttl) => pttl,
            };
            if req.wait.expired(Instant::now()) {
                return Ok(None);
            }
        }
    }

    async fn reenter(&self, hold: &HoldInfo, _count: u32) -> Result<()> {
        match self.node.reenter(hold).await? {
            true => Ok(()),
            false => Err(hold.not_held()),
        }
    }

    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        let answers = self.node.renew(holds).await;
        holds
            .iter()
            .zip(answers)
            .map(|(hold, answer)| match answer {
                Ok(true) => Ok(()),
                Ok(false) => Err(hold.not_held()),
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        match self.node.release(hold, count).await? {
            true => Ok(()),
            false => Err(hold.not_held()),
        }
    }

    async fn status(&self, key: &Key) -> Result<LockStatus> {
        self.node.status(key).await
    }
}
