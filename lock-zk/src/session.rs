//! The one ZooKeeper session a backend uses for all its holds, and its
//! replacement once it has expired.

use crate::config::ZkConfig;
use crate::error::to_error;
use lock_core::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zookeeper_client as zk;

/// How long connecting may take at most, whatever the session timeout.
const CONNECT_TIMEOUT_FLOOR: Duration = Duration::from_secs(5);

/// One session: its client and what the server granted.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client: zk::Client,
    pub(crate) id: i64,
    /// The negotiated session timeout: every hold's effective ttl.
    pub(crate) timeout: Duration,
}

impl Session {
    /// Whether the session has ended (expired, closed, auth failed): its
    /// ephemeral nodes are gone, and a new session is needed.
    pub(crate) fn is_over(&self) -> bool {
        self.client.state().is_terminated()
    }
}

/// The current session, replaced by a new one when it has ended.
#[derive(Debug)]
pub(crate) struct Sessions {
    config: ZkConfig,
    servers: String,
    current: Mutex<Arc<Session>>,
    /// Serialises reconnects, so that many callers make one new session.
    reconnect: tokio::sync::Mutex<()>,
}

impl Sessions {
    /// Connects the first session.
    pub(crate) async fn connect(config: ZkConfig) -> Result<Self> {
        let servers = config.connect_string();
        let first = open(&config, &servers).await?;
        Ok(Sessions {
            config,
            servers,
            current: Mutex::new(Arc::new(first)),
            reconnect: tokio::sync::Mutex::new(()),
        })
    }

    /// The servers, for messages.
    pub(crate) fn servers(&self) -> &str {
        &self.servers
    }

    /// The current session, whatever its state.
    pub(crate) fn peek(&self) -> Arc<Session> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A live session: the current one, or a new one if it has ended.
    ///
    /// # Cancel safety
    /// Safe to drop: a session being opened is closed when dropped.
    pub(crate) async fn get(&self) -> Result<Arc<Session>> {
        let current = self.peek();
        if !current.is_over() {
            return Ok(current);
        }
        let _turn = self.reconnect.lock().await;
        let current = self.peek();
        if !current.is_over() {
            return Ok(current);
        }
        tracing::info!(
            servers = %self.servers,
            old = format_args!("{:#x}", current.id),
            "ZooKeeper session ended; opening a new one"
        );
        let fresh = Arc::new(open(&self.config, &self.servers).await?);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

async fn open(config: &ZkConfig, servers: &str) -> Result<Session> {
    let connecting = zk::Client::connector()
        .with_session_timeout(config.session_timeout)
        .with_fail_eagerly()
        .connect(servers);
    let limit = config.session_timeout.max(CONNECT_TIMEOUT_FLOOR);
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
        ?timeout,
        "ZooKeeper session opened"
    );
    Ok(Session {
        client,
        id,
        timeout,
    })
}
