//! [`RedisBackend`]: the [`Backend`] of one Redis server.

use crate::config::RedisConfig;
use crate::errors::{from_redis, timed_out};
use crate::scripts::{self, Acquired, Names};
use crate::waiters::{Registration, Subscriber};
use futures::future::join_all;
use lock_core::{
    AcquireRequest, Backend, Capabilities, Error, FencingGuarantee, Grant, HoldInfo, Key,
    LockStatus, LossReason, NodeLoss, Result, Wait,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, ScriptInvocation, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// How many holds one renewal script covers; a larger batch is split into
/// several scripts sent together (pipelined on the one connection), so no
/// single script blocks the server for long.
const RENEW_CHUNK: usize = 1000;

/// The `redis://` backend: one Redis server, Redisson's lock layout, one
/// round trip per operation, waiters woken by pub/sub.
///
/// Cheap to share (`Arc<dyn Backend>` in a [`lock_core::Locker`]); it keeps
/// two connections: one multiplexed, auto-reconnecting connection for every
/// request, and one pub/sub connection shared by all waiters, which also
/// watches the server (see the crate docs on loss).
pub struct RedisBackend {
    conn: ConnectionManager,
    subscriber: Subscriber,
    config: RedisConfig,
    addr: String,
    caps: Capabilities,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.addr)
            .field("db", &self.config.db)
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
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

fn client(config: &RedisConfig) -> Result<redis::Client> {
    let addr = if config.tls {
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide crypto provider; install ring's
            // unless the application installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: false,
                tls_params: None,
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            return Err(crate::url::tls_disabled());
        }
    } else {
        ConnectionAddr::Tcp(config.host.clone(), config.port)
    };
    let mut settings = RedisConnectionInfo::default().set_db(config.db);
    if let Some(user) = &config.user {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    let bad =
        |e: redis::RedisError| Error::InvalidConfig(format!("redis at {}: {e}", config.addr()));
    let info = addr
        .into_connection_info()
        .map_err(bad)?
        .set_redis_settings(settings);
    #[cfg(feature = "tls")]
    if let Some(ca) = &config.tls_ca {
        let root = std::fs::read(ca).map_err(|e| {
            Error::InvalidConfig(format!("cannot read tls_ca {}: {e}", ca.display()))
        })?;
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        };
        return redis::Client::build_with_tls(info, certificates).map_err(bad);
    }
    redis::Client::open(info).map_err(bad)
}

fn ttl_ms(ttl: Duration) -> u64 {
    // Round up to Redis's millisecond: never shorter than asked.
    let ms = ttl.as_millis();
    let ms = if Duration::from_millis(ms as u64) < ttl {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn not_held(hold: &HoldInfo) -> Error {
    Error::NotHeld {
        key: hold.key.as_str().to_owned(),
        owner: hold.owner.as_str().to_owned(),
    }
}

/// The same failure again, for each hold of a failed batch.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable { message, .. } => Error::unavailable(message.clone()),
        other => Error::backend(other.to_string()),
    }
}

impl RedisBackend {
    /// Connects to the server `config` names: the request connection and
    /// the pub/sub connection. Fails with [`Error::Unavailable`] naming the
    /// address if either cannot be opened within the config's timeout.
    ///
    /// # Cancel safety
    /// If dropped, nothing is left behind but connections being closed.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        let client = client(&config)?;
        let addr = config.addr();
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = match timeout(
            config.timeout * 2,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(from_redis(&addr, "connect", e)),
            Err(_) => return Err(timed_out(&addr, "connect", config.timeout * 2)),
        };
        // The subscriber's own channel, named like a release channel so
        // that one ACL pattern covers all: `&redisson_lock__channel:*`.
        let own_channel = format!(
            "redisson_lock__channel:{{dlock:subscriber:{:016x}}}",
            rand::random::<u64>()
        );
        // A user without pub/sub rights would lose every wake-up (the
        // client does not report a refused SUBSCRIBE) and fail every final
        // release (its PUBLISH): say so now. One PUBLISH, nobody listens.
        let mut probe = conn.clone();
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&own_channel)
            .arg("0")
            .query_async(&mut probe)
            .await;
        match published {
            Ok(_) => {}
            Err(e) if e.code() == Some("NOPERM") => {
                return Err(Error::InvalidConfig(format!(
                    "redis at {addr}: the user may not use pub/sub ({e}); waiters and \
                     releases need the channels redisson_lock__channel:* \
                     (ACL `&redisson_lock__channel:*`, or `&*`)"
                )));
            }
            Err(e) => return Err(from_redis(&addr, "connect", e)),
        }
        let subscriber = Subscriber::start(client, addr.clone(), own_channel, config.timeout);
        if subscriber.live_epoch().await.is_none() {
            return Err(match subscriber.last_error() {
                Some(e) => from_redis(&addr, "open the pub/sub connection", e),
                None => Error::unavailable(format!(
                    "redis at {addr}: the pub/sub connection did not open within {:?}",
                    config.timeout
                )),
            });
        }
        Ok(RedisBackend {
            conn,
            subscriber,
            config,
            addr,
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
        &self.config
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The name of `key`'s lock hash in Redis: the prefix, then the key.
    /// Its fencing counter is `redisson_lock_token:{NAME}` and its release
    /// channel `redisson_lock__channel:{NAME}`.
    pub fn lock_name(&self, key: &Key) -> String {
        format!("{}{}", self.config.prefix, key.as_str())
    }

    fn names(&self, key: &Key) -> Names {
        Names::new(self.lock_name(key))
    }

    /// Runs one script invocation: EVALSHA, with EVAL's load on NOSCRIPT.
    /// Bounded by the connection's response and connection timeouts (the
    /// config's `timeout`): no extra timer on the hot path.
    async fn eval(&self, what: &str, invocation: &ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn.clone();
        invocation
            .invoke_async::<Value>(&mut conn)
            .await
            .map_err(|e| from_redis(&self.addr, what, e))
    }

    /// One try: `Ok(Ok(grant))`, or `Ok(Err(pttl))` when held by someone
    /// else.
    async fn attempt(
        &self,
        req: &AcquireRequest,
        names: &Names,
        ttl: u64,
    ) -> Result<std::result::Result<Grant, i64>> {
        let Some(epoch) = self.subscriber.live_epoch().await else {
            return Err(Error::unavailable(format!(
                "redis at {}: no connection (the pub/sub connection that watches the server is down)",
                self.addr
            )));
        };
        let mut invocation = scripts::ACQUIRE_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .arg(req.owner.as_str())
            .arg(ttl);
        let mut undo = Undo {
            backend: self,
            names,
            owner: req.owner.as_str(),
            armed: true,
        };
        let sent = Instant::now();
        let reply = self.eval("acquire", &invocation).await;
        // An answer came: whatever it says is known. An error may hide a
        // grant (a timeout after the server ran the script): undo it.
        let reply = reply?;
        undo.armed = false;
        let token = match scripts::parse_acquire(&reply)? {
            Acquired::New(token) | Acquired::Reentered(token) => token,
            Acquired::Held(pttl) => return Ok(Err(pttl)),
        };
        let ended = self.subscriber.epoch_ended(epoch.number);
        let addr = self.addr.clone();
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
    backend: &'a RedisBackend,
    names: &'a Names,
    owner: &'a str,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.backend.conn.clone();
        let limit = self.backend.config.timeout;
        let (lock, channel, owner) = (
            self.names.lock.clone(),
            self.names.channel.clone(),
            self.owner.to_owned(),
        );
        // The acquire was queued on the connection before this point, so
        // the undo, queued after it, runs after it on the server.
        runtime.spawn(async move {
            let mut invocation = scripts::UNDO_SCRIPT.prepare_invoke();
            invocation.key(&lock).key(&channel).arg(&owner);
            let cmd = invocation.invoke_async::<Value>(&mut conn);
            match timeout(limit, cmd).await {
                Ok(Ok(v)) => tracing::debug!(lock = %lock, owner = %owner, reply = ?v, "undid an acquire whose answer was lost"),
                _ => tracing::debug!(lock = %lock, owner = %owner, "could not undo an acquire; it expires within its ttl"),
            }
        });
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
        let mut pttl = match self.attempt(req, &names, ttl).await? {
            Ok(grant) => return Ok(Some(grant)),
            Err(pttl) => pttl,
        };
        if req.wait.expired(Instant::now()) {
            return Ok(None);
        }
        let reg = self.subscriber.register(&names.channel);
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
            let outcome = self.attempt(req, &names, ttl).await;
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
        let names = self.names(&hold.key);
        let mut invocation = scripts::REENTER_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .arg(hold.owner.as_str())
            .arg(hold.token.get())
            .arg(ttl_ms(hold.ttl));
        let reply = self.eval("re-enter", &invocation).await?;
        match scripts::parse_int("re-enter", &reply)? {
            n if n >= 1 => Ok(()),
            _ => Err(not_held(hold)),
        }
    }

    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        let batches = holds.chunks(RENEW_CHUNK).map(|chunk| async move {
            let mut invocation = scripts::RENEW_SCRIPT.prepare_invoke();
            for hold in chunk {
                let names = self.names(&hold.key);
                invocation
                    .key(names.lock)
                    .key(names.counter)
                    .arg(hold.owner.as_str())
                    .arg(hold.token.get())
                    .arg(ttl_ms(hold.ttl));
            }
            let outcome = match self.eval("renew", &invocation).await {
                Ok(reply) => scripts::parse_renew(&reply, chunk.len()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(extended) => chunk
                    .iter()
                    .zip(extended)
                    .map(|(hold, ok)| if ok { Ok(()) } else { Err(not_held(hold)) })
                    .collect::<Vec<_>>(),
                Err(e) => chunk.iter().map(|_| Err(copy_error(&e))).collect(),
            }
        });
        join_all(batches).await.into_iter().flatten().collect()
    }

    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        let names = self.names(&hold.key);
        let mut invocation = scripts::RELEASE_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .key(&names.channel)
            .arg(hold.owner.as_str())
            .arg(hold.token.get())
            .arg(count);
        let reply = self.eval("release", &invocation).await?;
        match scripts::parse_int("release", &reply)? {
            n if n >= 0 => Ok(()),
            _ => Err(not_held(hold)),
        }
    }

    async fn status(&self, key: &Key) -> Result<LockStatus> {
        let names = self.names(key);
        let mut invocation = scripts::STATUS_SCRIPT.prepare_invoke();
        invocation.key(&names.lock).key(&names.counter);
        let reply = self.eval("status", &invocation).await?;
        let found = scripts::parse_status(&reply)?;
        Ok(crate::status::lock_status(key, &names, found))
    }
}
