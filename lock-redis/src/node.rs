//! [`Node`]: the connection to one Redis server and the lock operations on
//! it, one script each, in Redisson's layout.
//!
//! [`RedisBackend`](crate::RedisBackend) is one node plus the [`Backend`]
//! logic (waiting, loss); a Redlock backend is several nodes plus quorum
//! logic. Both run the same scripts ([`crate::lua`]), so a lock taken
//! through either has the same layout.
//!
//! Every method sends one request on the node's one multiplexed
//! connection, so requests reach the server in the order they were sent
//! (the undo of an acquire sent after it runs after it). Each is bounded by
//! the config's `timeout`; a caller wanting a shorter bound wraps it in
//! [`tokio::time::timeout`], which is safe (see the methods' cancel
//! safety).
//!
//! [`Backend`]: lock_core::Backend

use crate::config::RedisConfig;
use crate::errors::{from_redis, timed_out};
use crate::scripts;
pub use crate::scripts::{Acquired, Names, Raised};
use crate::waiters::Subscriber;
pub use crate::waiters::{Channel, Epoch, Registration};
use lock_core::{Error, HoldInfo, Key, LockStatus, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, ScriptInvocation, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// How many holds one renewal script covers; a larger batch is split into
/// several scripts sent together (pipelined on the one connection), so no
/// single script blocks the server for long.
const RENEW_CHUNK: usize = 1000;

/// `ttl` in whole milliseconds, rounded up: never shorter than asked.
pub fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_millis();
    let ms = if Duration::from_millis(ms as u64) < ttl {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// One Redis server: a multiplexed, auto-reconnecting request connection,
/// and one pub/sub connection shared by every waiter, which also watches
/// the server (its [`Epoch`]s).
pub struct Node {
    pub(crate) conn: ConnectionManager,
    pub(crate) subscriber: Subscriber,
    pub(crate) config: RedisConfig,
    pub(crate) addr: String,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("db", &self.config.db)
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
            .finish()
    }
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

impl Node {
    /// Connects to the server `config` names: the request connection and
    /// the pub/sub connection. Fails with [`Error::Unavailable`] naming the
    /// address if either cannot be opened within the config's timeout, and
    /// with [`Error::InvalidConfig`] if the credentials are refused or the
    /// user may not use pub/sub.
    ///
    /// # Cancel safety
    /// If dropped, nothing is left behind but connections being closed.
    pub async fn connect(config: RedisConfig) -> Result<Node> {
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
        Ok(Node {
            conn,
            subscriber,
            config,
            addr,
        })
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The names of `key`'s lock on this server, under the config's prefix.
    pub fn names(&self, key: &Key) -> Names {
        Names::new(format!("{}{}", self.config.prefix, key.as_str()))
    }

    /// The pub/sub connection's current epoch (no waiting).
    pub fn epoch(&self) -> Epoch {
        self.subscriber.epoch()
    }

    /// The live epoch, waiting up to the config's timeout for the pub/sub
    /// connection to come up; `None` if it does not.
    ///
    /// # Cancel safety
    /// Read-only; safe to drop.
    pub async fn live_epoch(&self) -> Option<Epoch> {
        self.subscriber.live_epoch().await
    }

    /// Why the pub/sub connection's last attempt failed, as an error naming
    /// the server, for a node found without a live epoch.
    pub fn down(&self) -> Error {
        match self.subscriber.last_error() {
            Some(e) => from_redis(&self.addr, "no connection", e),
            None => Error::unavailable(format!(
                "redis at {}: no connection (the pub/sub connection that watches the server is down)",
                self.addr
            )),
        }
    }

    /// Resolves when epoch `number` ends (at once if it already has): the
    /// server closed the connection, and may have forgotten every lock.
    pub fn epoch_ended(
        &self,
        number: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.subscriber.epoch_ended(number)
    }

    /// Starts listening on the release `channel` for one waiter.
    pub fn register(&self, channel: &str) -> Registration {
        self.subscriber.register(channel)
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

    /// The acquire script ([`crate::lua::ACQUIRE`]) for `owner` on `key`
    /// with a ttl of `ttl_ms`; with `proposal`, the counter is raised to it
    /// only if it exceeds it ([`Acquired::Refused`] otherwise) instead of
    /// incremented. Foreign data is [`Acquired::Held`], an odd reply an
    /// error: never a grant. A proposal needs Redis 6.2 or newer (the
    /// script raises the counter with `SET ... KEEPTTL GET`, one call).
    ///
    /// # Cancel safety
    /// If dropped while in flight, the server may still take the hold:
    /// call [`undo_in_background`](Self::undo_in_background) (it runs after
    /// the acquire), or let it expire within `ttl_ms`.
    pub async fn acquire(
        &self,
        key: &Key,
        owner: &str,
        ttl_ms: u64,
        proposal: Option<u64>,
    ) -> Result<Acquired> {
        let names = self.names(key);
        let mut invocation = scripts::ACQUIRE_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .arg(owner)
            .arg(ttl_ms);
        if let Some(t) = proposal {
            invocation.arg(t);
        }
        let reply = self.eval("acquire", &invocation).await?;
        scripts::parse_acquire(&reply)
    }

    /// Takes back one count `owner` has on `key` ([`crate::lua::UNDO`]: the
    /// undo of an acquire whose answer was lost or is not used); at the last
    /// count the hash is deleted and `0` published. The count left, or -1
    /// if `owner` has no count there.
    ///
    /// # Cancel safety
    /// If dropped, the count may or may not have been taken back.
    pub async fn undo(&self, key: &Key, owner: &str) -> Result<i64> {
        let names = self.names(key);
        let mut invocation = scripts::UNDO_SCRIPT.prepare_invoke();
        invocation.key(&names.lock).key(&names.channel).arg(owner);
        let reply = self.eval("undo", &invocation).await?;
        scripts::parse_int("undo", &reply)
    }

    /// As [`undo`](Self::undo), in a background task, sent
    /// now on the same connection, so after any acquire sent before. If it
    /// fails, the hold expires within its ttl.
    pub fn undo_in_background(&self, key: &Key, owner: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let names = self.names(key);
        let mut conn = self.conn.clone();
        let limit = self.config.timeout;
        let owner = owner.to_owned();
        let mut invocation = scripts::UNDO_SCRIPT.prepare_invoke();
        invocation.key(&names.lock).key(&names.channel).arg(&owner);
        runtime.spawn(async move {
            let cmd = invocation.invoke_async::<Value>(&mut conn);
            match timeout(limit, cmd).await {
                Ok(Ok(v)) => tracing::debug!(lock = %names.lock, owner = %owner, reply = ?v, "undid an acquire"),
                _ => tracing::debug!(lock = %names.lock, owner = %owner, "could not undo an acquire; it expires within its ttl"),
            }
        });
    }

    /// Raises the counter of `key` to `token` where `owner` holds it, if
    /// `token` exceeds it ([`crate::lua::RAISE`]): Redlock's second round.
    ///
    /// # Cancel safety
    /// If dropped, the counter may or may not have been raised; a counter
    /// only ever goes up.
    pub async fn raise(&self, key: &Key, owner: &str, token: u64) -> Result<Raised> {
        let names = self.names(key);
        let mut invocation = scripts::RAISE_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .arg(owner)
            .arg(token);
        let reply = self.eval("raise", &invocation).await?;
        scripts::parse_raise(&reply)
    }

    /// Adds a count to `hold` here (the re-entry script). `false` if the
    /// hold is gone from this server.
    ///
    /// # Cancel safety
    /// If dropped, the count may or may not have been added.
    pub async fn reenter(&self, hold: &HoldInfo) -> Result<bool> {
        let names = self.names(&hold.key);
        let mut invocation = scripts::REENTER_SCRIPT.prepare_invoke();
        invocation
            .key(&names.lock)
            .key(&names.counter)
            .arg(hold.owner.as_str())
            .arg(hold.token.get())
            .arg(ttl_ms(hold.ttl));
        let reply = self.eval("re-enter", &invocation).await?;
        Ok(scripts::parse_int("re-enter", &reply)? >= 1)
    }

    /// Extends each hold by its ttl here, one script per 1000 holds, sent
    /// together. One answer per hold, in order: `Ok(true)` extended,
    /// `Ok(false)` gone from this server, or the error of its batch.
    ///
    /// # Cancel safety
    /// If dropped, some holds may have been extended; that is harmless.
    pub async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<bool>> {
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
                Ok(extended) => extended.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => chunk.iter().map(|_| Err(copy_error(&e))).collect(),
            }
        });
        futures::future::join_all(batches)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Takes one count off `hold` here, with the count-before rule
    /// ([`crate::lua::RELEASE`]); at the last count the hash is deleted and
    /// `0` published on the channel. `false` if the hold is gone from this
    /// server (nothing changed).
    ///
    /// # Cancel safety
    /// If dropped, the release may or may not have happened; retrying it
    /// with the same `count` never takes off two counts.
    pub async fn release(&self, hold: &HoldInfo, count: u32) -> Result<bool> {
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
        Ok(scripts::parse_int("release", &reply)? >= 0)
    }

    /// What this server has at `key`'s place: holders, foreign data, and the
    /// counter as `last_token`.
    ///
    /// # Cancel safety
    /// Read-only; safe to drop.
    pub async fn status(&self, key: &Key) -> Result<LockStatus> {
        let names = self.names(key);
        let mut invocation = scripts::STATUS_SCRIPT.prepare_invoke();
        invocation.key(&names.lock).key(&names.counter);
        let reply = self.eval("status", &invocation).await?;
        let found = scripts::parse_status(&reply)?;
        Ok(crate::status::lock_status(key, &names, found))
    }
}

/// The same failure again, for each hold of a failed batch.
pub(crate) fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable { message, .. } => Error::unavailable(message.clone()),
        other => Error::backend(other.to_string()),
    }
}
