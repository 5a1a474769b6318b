//! The shared conformance suite against 5 real, independent `redis-server`
//! masters from the kit: one set of masters for the whole test binary, each
//! locker a new backend with its own connections.
//!
//! - A partition cuts the client off from EVERY master: a `FaultProxy` in
//!   front of each node for the cut-off client, all cut and healed
//!   together (a client cut from a minority only is not partitioned: it
//!   still has a quorum; `tests/faults.rs` covers that).
//! - A hold deleted behind its holder's back is a plain `DEL` on every
//!   master, as an administrator would do it.

use conformance::kit::resp::{self, Resp};
use conformance::kit::{FaultProxy, RedisMasters};
use conformance::{Faults, Fixture, Link};
use lock_core::{Backend, Error, Key, Locker, Result, async_trait};
use lock_redlock::{RedlockBackend, RedlockConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

struct RedlockFixture {
    masters: RedisMasters,
}

fn url_of(addrs: &[std::net::SocketAddr]) -> String {
    let hosts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    format!("redlock://{}?timeout=500ms", hosts.join(","))
}

async fn locker_at(url: &str, ttl: Duration) -> Result<Locker> {
    let backend = RedlockBackend::connect(RedlockConfig::from_url(url)?).await?;
    Locker::builder(Arc::new(backend) as Arc<dyn Backend>)
        .ttl(ttl)
        .build()
}

#[async_trait]
impl Fixture for RedlockFixture {
    fn name(&self) -> String {
        format!("redlock, {} masters", self.masters.len())
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        let addrs: Vec<_> = self.masters.nodes().iter().map(|n| n.addr()).collect();
        locker_at(&url_of(&addrs), ttl).await
    }

    fn url(&self) -> Option<String> {
        Some(self.masters.redlock_url())
    }

    fn faults(&self) -> Option<&dyn Faults> {
        Some(self)
    }
}

#[async_trait]
impl Faults for RedlockFixture {
    async fn delete_hold(&self, key: &Key) -> Result<bool> {
        // The fixture's lockers use the default (empty) prefix.
        let mut any = false;
        for node in self.masters.nodes() {
            let deleted = resp::command(node.addr(), &["DEL", key.as_str()])
                .await
                .map_err(|e| Error::unavailable(e.to_string()))?;
            any |= deleted == Resp::Integer(1);
        }
        Ok(any)
    }

    async fn expire_hold(&self, key: &Key) -> Result<bool> {
        // Redis's own expiry deletes the key without a message; so does DEL.
        self.delete_hold(key).await
    }

    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)> {
        let mut proxies = Vec::new();
        for node in self.masters.nodes() {
            let proxy = FaultProxy::start(node.addr())
                .await
                .map_err(|e| Error::unavailable(e.to_string()))?;
            proxies.push(proxy);
        }
        let addrs: Vec<_> = proxies.iter().map(FaultProxy::addr).collect();
        let locker = locker_at(&url_of(&addrs), ttl).await?;
        Ok((locker, Box::new(proxies)))
    }
}

async fn fixture() -> Arc<dyn Fixture> {
    static FIXTURE: OnceCell<Arc<RedlockFixture>> = OnceCell::const_new();
    lock_redlock::register();
    FIXTURE
        .get_or_init(|| async {
            let masters = RedisMasters::start(5)
                .await
                .unwrap_or_else(|e| panic!("cannot start 5 redis-server masters: {e}"));
            Arc::new(RedlockFixture { masters })
        })
        .await
        .clone()
}

conformance::suite!(fixture());
