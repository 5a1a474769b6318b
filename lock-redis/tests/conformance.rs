//! The shared conformance suite against a real `redis-server` from the kit:
//! one server for the whole test binary, each locker a new backend with its
//! own connections, partitions through the kit's `FaultProxy`, and a hold
//! deleted behind its holder's back with a plain `DEL`.

use conformance::kit::resp::{self, Resp};
use conformance::kit::{FaultProxy, RedisServer};
use conformance::{Faults, Fixture, Link};
use lock_core::{Backend, Error, Key, Locker, Result, async_trait};
use lock_redis::{RedisBackend, RedisConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The request timeout of every client: short, so a partitioned client
/// gets its `Unavailable` quickly.
const TIMEOUT: Duration = Duration::from_millis(500);

struct RedisFixture {
    server: RedisServer,
}

impl RedisFixture {
    async fn locker_at(&self, addr: SocketAddr, ttl: Duration) -> Result<Locker> {
        let mut config = RedisConfig::new(addr.ip().to_string(), addr.port());
        config.timeout = TIMEOUT;
        let backend = RedisBackend::connect(config).await?;
        Locker::builder(Arc::new(backend) as Arc<dyn Backend>)
            .ttl(ttl)
            .build()
    }

    async fn plain(&self, args: &[&str]) -> Result<Resp> {
        resp::command(self.server.addr(), args)
            .await
            .map_err(|e| Error::unavailable(e.to_string()))
    }
}

#[async_trait]
impl Fixture for RedisFixture {
    fn name(&self) -> String {
        format!("redis single ({})", self.server.addr())
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        self.locker_at(self.server.addr(), ttl).await
    }

    fn url(&self) -> Option<String> {
        Some(self.server.url())
    }

    fn faults(&self) -> Option<&dyn Faults> {
        Some(self)
    }
}

#[async_trait]
impl Faults for RedisFixture {
    async fn delete_hold(&self, key: &Key) -> Result<bool> {
        // The fixture's lockers use the default (empty) prefix.
        Ok(self.plain(&["DEL", key.as_str()]).await? == Resp::Integer(1))
    }

    async fn expire_hold(&self, key: &Key) -> Result<bool> {
        // Redis's own expiry deletes the key without a message; so does DEL.
        self.delete_hold(key).await
    }

    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)> {
        let proxy = FaultProxy::start(self.server.addr())
            .await
            .map_err(|e| Error::unavailable(e.to_string()))?;
        let locker = self.locker_at(proxy.addr(), ttl).await?;
        Ok((locker, Box::new(proxy)))
    }
}

async fn fixture() -> Arc<dyn Fixture> {
    static FIXTURE: OnceCell<Arc<RedisFixture>> = OnceCell::const_new();
    lock_redis::register();
    FIXTURE
        .get_or_init(|| async {
            let server = RedisServer::start()
                .await
                .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
            Arc::new(RedisFixture { server })
        })
        .await
        .clone()
}

conformance::suite!(fixture());
