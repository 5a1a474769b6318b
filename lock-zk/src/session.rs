//! The sessions of a backend: one per distinct session timeout asked for,
//! opened on first use and replaced once expired, each with one watcher
//! task for its holds.
//!
//! A hold lives as long as its session, so a request for ttl `T` is served
//! on a session whose requested timeout is `T` (rounded up, see
//! [`round_timeout`]), which the server clamps to its
//! `[minSessionTimeout, maxSessionTimeout]`. Holds asking the same timeout
//! share one session (never one node). At most [`MAX_SESSIONS`] sessions
//! are open at once; past that a session no hold uses is closed to make
//! room, and if every one is in use, the request is served on the session
//! of the next longer timeout (else the longest): its grant reports the
//! ttl it got.

use crate::config::ZkConfig;
use crate::error::to_error;
use crate::held::{Holds, Watcher, spawn_watcher};
use lock_core::{Error, Result, Ttl};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zookeeper_client as zk;

/// How long connecting may take at least, however short the session.
const CONNECT_TIMEOUT_FLOOR: Duration = Duration::from_secs(5);

/// How long connecting may take at most, however long the session.
const CONNECT_TIMEOUT_CEILING: Duration = Duration::from_secs(30);

/// How many sessions a backend keeps open at most (one per distinct
/// rounded timeout asked for).
pub const MAX_SESSIONS: usize = 8;

/// The session timeout asked for a ttl `t` other than the configured one:
/// `t` rounded up to the next of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
/// times a power of ten milliseconds (at most a third more), so that a
/// process asking many slightly different ttls opens few sessions.
///
/// # Examples
/// ```
/// use lock_zk::round_timeout;
/// use std::time::Duration;
/// assert_eq!(round_timeout(Duration::from_secs(30)), Duration::from_secs(30));
/// assert_eq!(round_timeout(Duration::from_millis(1100)), Duration::from_millis(1200));
/// assert_eq!(round_timeout(Duration::from_secs(7)), Duration::from_secs(8));
/// assert_eq!(round_timeout(Duration::from_secs(90)), Duration::from_secs(100));
/// ```
pub fn round_timeout(t: Duration) -> Duration {
    const STEPS: [u64; 10] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 80];
    let ms = u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    let mut scale: u64 = 1;
    loop {
        for step in STEPS {
            let v = step.saturating_mul(scale);
            if ms <= v || v == u64::MAX {
                return Duration::from_millis(v);
            }
        }
        scale = scale.saturating_mul(10);
    }
}

/// One session: its client and what the server granted.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client: zk::Client,
    pub(crate) id: i64,
    /// The negotiated session timeout: the effective ttl of its holds.
    pub(crate) timeout: Duration,
    /// What its holds share with its watcher task.
    pub(crate) watcher: Arc<Watcher>,
}

impl Session {
    /// Whether the session has ended (expired, closed, auth failed): its
    /// ephemeral nodes are gone, and a new session is needed.
    pub(crate) fn is_over(&self) -> bool {
        self.client.state().is_terminated()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.watcher.session_dropped();
    }
}

/// The session of one requested timeout, replaced by a new one when it
/// has ended.
#[derive(Debug)]
struct Slot {
    /// The session timeout asked for.
    asked: Duration,
    current: Mutex<Option<Arc<Session>>>,
    /// Serialises (re)connects, so that many callers make one session.
    reconnect: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new(asked: Duration, first: Option<Session>) -> Self {
        Slot {
            asked,
            current: Mutex::new(first.map(Arc::new)),
            reconnect: tokio::sync::Mutex::new(()),
        }
    }

    fn peek(&self) -> Option<Arc<Session>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether nothing but this slot uses it (no hold, no attempt).
    fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1 && self.peek().is_none_or(|s| Arc::strong_count(&s) == 2)
    }
}

/// Every session of a backend.
#[derive(Debug)]
pub(crate) struct Sessions {
    config: ZkConfig,
    servers: String,
    holds: Arc<Holds>,
    /// The session of `config.session_timeout`, opened at connect: it
    /// serves the default ttl and `status`.
    default: Arc<Slot>,
    /// Every slot, the default one included; at most [`MAX_SESSIONS`].
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Sessions {
    /// Connects the session of the configured timeout.
    ///
    /// # Cancel safety
    /// Safe to drop: a session being opened is closed when dropped.
    pub(crate) async fn connect(config: ZkConfig, holds: Arc<Holds>) -> Result<Self> {
        let servers = config.connect_string();
        let first = open(config.session_timeout, &servers, &holds).await?;
        let default = Arc::new(Slot::new(config.session_timeout, Some(first)));
        Ok(Sessions {
            config,
            servers,
            holds,
            slots: Mutex::new(vec![default.clone()]),
            default,
        })
    }

    /// The servers, for messages.
    pub(crate) fn servers(&self) -> &str {
        &self.servers
    }

    /// The default session, whatever its state.
    pub(crate) fn peek(&self) -> Arc<Session> {
        self.default
            .peek()
            .expect("the default session is opened at connect")
    }

    /// Every open session, the default one first.
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().filter_map(|s| s.peek()).collect()
    }

    /// The session timeout asked for holds of `ttl`: the configured one for
    /// the default ttl (a request that named none) and for the configured
    /// timeout itself; else `ttl` rounded up ([`round_timeout`]).
    pub(crate) fn timeout_for(&self, ttl: Duration) -> Duration {
        if ttl == Ttl::DEFAULT || ttl == self.config.session_timeout {
            self.config.session_timeout
        } else {
            round_timeout(ttl)
        }
    }

    /// The slot of session timeout `asked`: its own, a new one, or (all
    /// [`MAX_SESSIONS`] in use) the next longer one, else the longest.
    fn slot(&self, asked: Duration) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.iter().find(|s| s.asked == asked) {
            return slot.clone();
        }
        if slots.len() >= MAX_SESSIONS
            && let Some(i) = slots
                .iter()
                .position(|s| !Arc::ptr_eq(s, &self.default) && s.is_idle())
        {
            let idle = slots.swap_remove(i);
            tracing::debug!(timeout = ?idle.asked, "closing an idle ZooKeeper session to make room");
        }
        if slots.len() < MAX_SESSIONS {
            let slot = Arc::new(Slot::new(asked, None));
            slots.push(slot.clone());
            return slot;
        }
        slots
            .iter()
            .filter(|s| s.asked >= asked)
            .min_by_key(|s| s.asked)
            .or_else(|| slots.iter().max_by_key(|s| s.asked))
            .expect("at least the default slot")
            .clone()
    }

    /// A live session for holds of `ttl` (see [`timeout_for`](Self::timeout_for)),
    /// opened if need be.
    ///
    /// # Cancel safety
    /// Safe to drop: a session being opened is closed when dropped.
    pub(crate) async fn get(&self, ttl: Duration) -> Result<Arc<Session>> {
        let asked = self.timeout_for(ttl);
        let slot = if asked == self.default.asked {
            self.default.clone()
        } else {
            self.slot(asked)
        };
        self.live(&slot).await
    }

    /// A live default session.
    ///
    /// # Cancel safety
    /// As [`get`](Self::get).
    pub(crate) async fn get_default(&self) -> Result<Arc<Session>> {
        self.live(&self.default).await
    }

    async fn live(&self, slot: &Slot) -> Result<Arc<Session>> {
        if let Some(s) = slot.peek().filter(|s| !s.is_over()) {
            return Ok(s);
        }
        let _turn = slot.reconnect.lock().await;
        let old = slot.peek();
        if let Some(s) = old.as_ref().filter(|s| !s.is_over()) {
            return Ok(s.clone());
        }
        if let Some(old) = old {
            tracing::info!(
                servers = %self.servers,
                old = format_args!("{:#x}", old.id),
                "ZooKeeper session ended; opening a new one"
            );
        }
        let fresh = Arc::new(open(slot.asked, &self.servers, &self.holds).await?);
        *slot.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}

async fn open(asked: Duration, servers: &str, holds: &Arc<Holds>) -> Result<Session> {
    let connecting = zk::Client::connector()
        .with_session_timeout(asked)
        .with_fail_eagerly()
        .connect(servers);
    let limit = asked.clamp(CONNECT_TIMEOUT_FLOOR, CONNECT_TIMEOUT_CEILING);
    let client = match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(to_error(servers, "connect", e)),
        Err(_) => {
            return Err(Error::unavailable(format!(
                "ZooKeeper at {servers}: no session established within {limit:?}"
            )));
        }
    };
    let id = client.session_id().0;
    let timeout = client.session_timeout();
    tracing::debug!(
        servers,
        session = format_args!("{id:#x}"),
        ?asked,
        ?timeout,
        "ZooKeeper session opened"
    );
    let watcher = Arc::new(Watcher::default());
    spawn_watcher(&watcher, holds, client.state_watcher());
    Ok(Session {
        client,
        id,
        timeout,
        watcher,
    })
}
