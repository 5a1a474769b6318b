//! Helpers shared by the integration tests: a real `redis-server` from the
//! conformance kit, lockers over it, and a plain client to look at the
//! store behind the backend's back.

#![allow(dead_code, unreachable_pub)]

use conformance::kit::RedisServer;
use conformance::kit::resp::{self, Resp};
use lock_core::{Backend, Locker};
use lock_redis::{RedisBackend, RedisConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Starts a server (failing with the install command if redis-server is
/// missing).
pub async fn server() -> RedisServer {
    RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// A backend talking to `addr`, with a short request timeout.
pub async fn backend(addr: SocketAddr) -> Arc<RedisBackend> {
    let mut config = RedisConfig::new(addr.ip().to_string(), addr.port());
    config.timeout = Duration::from_millis(500);
    Arc::new(RedisBackend::connect(config).await.expect("connect"))
}

/// A locker over a new backend talking to `addr`.
pub async fn locker(addr: SocketAddr) -> Locker {
    Locker::new(backend(addr).await as Arc<dyn Backend>)
}

/// One command on a fresh plain connection.
pub async fn cmd(addr: SocketAddr, args: &[&str]) -> Resp {
    tokio::time::timeout(Duration::from_secs(5), resp::command(addr, args))
        .await
        .expect("plain client timed out")
        .expect("plain client failed")
}

/// A bulk-string reply.
pub fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

/// An array of bulk strings.
pub fn bulks(items: &[&str]) -> Resp {
    Resp::Array(Some(items.iter().map(|s| bulk(s)).collect()))
}

/// `calls` of `cmdstat_NAME` in `INFO commandstats` (0 if never called).
pub async fn calls(addr: SocketAddr, name: &str) -> u64 {
    let Resp::Bulk(Some(info)) = cmd(addr, &["INFO", "commandstats"]).await else {
        panic!("INFO answered oddly");
    };
    let info = String::from_utf8(info).unwrap();
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// Waits for `fut` up to `limit`, failing the test with `what`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}
