//! The subjects of each backend: dlock's own (through `Locker`), the raw
//! round trips of its store, and the peers, one module each.

mod dlock;
mod etcd_lock_client;
mod quorum_floor;
mod raw_etcd;
mod raw_redis;
mod raw_zk;
mod rslock;
mod set_nx;
mod zk_recipe;

pub use dlock::DlockSubject;
pub use etcd_lock_client::EtcdLockClient;
pub use quorum_floor::QuorumFloor;
pub use raw_etcd::RawEtcd;
pub use raw_redis::RawRedis;
pub use raw_zk::RawZk;
pub use rslock::Rslock;
pub use set_nx::SetNx;
pub use zk_recipe::ZkRecipe;

use crate::backends::Backend;
use crate::servers::{REDLOCK_MAIN, Targets, hosts_of};
use crate::subject::Subject;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

/// The ttl every subject asks for (peers included), and the lease and
/// session length where a peer needs one.
pub const TTL: Duration = Duration::from_secs(30);

/// How often the polling peer retries a held key (as the seeds' snippets do).
pub const POLL: Duration = Duration::from_millis(100);

/// dlock, the raw round trips and the peers of `backend`, connected.
pub async fn lineup(backend: Backend, targets: &Targets) -> anyhow::Result<Vec<Arc<dyn Subject>>> {
    let url = targets
        .url(backend)
        .with_context(|| format!("no store for {}", backend.name()))?;
    let ours = DlockSubject::connect(dlock_name(backend), &url).await?;
    let mut all: Vec<Arc<dyn Subject>> = vec![Arc::new(ours)];
    match backend {
        Backend::Redis => {
            let nodes = vec![url.clone()];
            all.push(Arc::new(RawRedis::connect("raw: 2 EVALSHA", &nodes).await?));
            all.push(Arc::new(SetNx::connect(&url, POLL).await?));
        }
        Backend::Redlock => {
            let nodes: Vec<String> = targets.redlock[..REDLOCK_MAIN.min(targets.redlock.len())]
                .iter()
                .map(|n| format!("redis://{n}"))
                .collect();
            all.push(Arc::new(
                RawRedis::connect("raw: 2 EVALSHA on every node", &nodes).await?,
            ));
            all.push(Arc::new(QuorumFloor::connect(&nodes).await?));
            all.push(Arc::new(Rslock::new(&nodes)));
            // Issue 5's yardstick: lock-redis on one of the same masters.
            let one = DlockSubject::connect("lock-redis on one of the masters", &nodes[0]).await?;
            all.push(Arc::new(one.as_baseline()));
        }
        Backend::Etcd => {
            let endpoints = hosts_of(&url);
            all.push(Arc::new(RawEtcd::connect(&endpoints).await?));
            all.push(Arc::new(EtcdLockClient::connect(&endpoints).await?));
        }
        Backend::Zk => {
            let connect = hosts_of(&url).join(",");
            all.push(Arc::new(RawZk::connect(&connect).await?));
            all.push(Arc::new(ZkRecipe::connect(&connect).await?));
        }
    }
    Ok(all)
}

/// One `redis` crate connection to each of `urls` (`redis://host:port`),
/// for the subjects that talk to several nodes themselves.
async fn connect_each(urls: &[String]) -> anyhow::Result<Vec<redis::aio::ConnectionManager>> {
    let mut conns = Vec::with_capacity(urls.len());
    for url in urls {
        conns.push(
            redis::Client::open(url.as_str())?
                .get_connection_manager()
                .await?,
        );
    }
    Ok(conns)
}

/// The raw minimal acquire script (for `redis-benchmark`).
pub fn raw_redis_acquire_script() -> &'static str {
    raw_redis::MIN_ACQUIRE
}

/// The name of dlock's subject for `backend`.
pub fn dlock_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Redis => "lock-redis",
        Backend::Redlock => "lock-redlock",
        Backend::Etcd => "lock-etcd",
        Backend::Zk => "lock-zk",
    }
}
