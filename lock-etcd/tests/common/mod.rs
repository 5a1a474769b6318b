//! The conformance fixture of etcd, shared by the single-member and the
//! 3-member suites: each locker a new backend with its own connection,
//! partitions through the kit's `FaultProxy` in front of one member, a hold
//! deleted behind its holder's back with a plain etcd-client delete, and
//! expiry by revoking the holder's lease.

use conformance::kit::{EtcdCluster, FaultProxy};
use conformance::{Faults, Fixture, Link};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use lock_core::{Backend, Endpoint, Error, Key, Locker, Result, async_trait};
use lock_etcd::{EtcdBackend, EtcdConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The request timeout of every client: short, so that a partitioned
/// client gets its `Unavailable` quickly.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One etcd cluster from the kit, as the suite sees it.
pub(crate) struct EtcdFixture {
    pub(crate) cluster: EtcdCluster,
    name: String,
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

fn kit(e: impl std::fmt::Display) -> Error {
    Error::unavailable(e.to_string())
}

impl EtcdFixture {
    /// Starts a cluster of `members`.
    pub(crate) async fn start(members: usize) -> EtcdFixture {
        let cluster = EtcdCluster::start(members)
            .await
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        let name = if members == 1 {
            "etcd single".to_owned()
        } else {
            format!("etcd {members} members")
        };
        EtcdFixture { cluster, name }
    }

    async fn locker_at(&self, addrs: Vec<SocketAddr>, ttl: Duration) -> Result<Locker> {
        let mut config = EtcdConfig::new(addrs.into_iter().map(endpoint).collect());
        config.timeout = TIMEOUT;
        let backend = EtcdBackend::connect(config).await?;
        Locker::builder(Arc::new(backend) as Arc<dyn Backend>)
            .ttl(ttl)
            .build()
    }

    /// A plain etcd-client, as an administrator's.
    pub(crate) async fn admin(&self) -> Result<Client> {
        let eps: Vec<String> = self
            .cluster
            .endpoints()
            .iter()
            .map(ToString::to_string)
            .collect();
        Client::connect(eps, None).await.map_err(kit)
    }

    /// The holder key of `key` (the oldest contender) and its lease.
    async fn holder(&self, client: &mut Client, key: &Key) -> Result<Option<(Vec<u8>, i64)>> {
        let dir = format!("{}/", key.as_str());
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let resp = client.get(dir.as_str(), Some(options)).await.map_err(kit)?;
        Ok(resp
            .kvs()
            .iter()
            .find(|kv| !kv.key()[dir.len()..].contains(&b'/'))
            .map(|kv| (kv.key().to_vec(), kv.lease())))
    }
}

#[async_trait]
impl Fixture for EtcdFixture {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        self.locker_at(self.cluster.endpoints(), ttl).await
    }

    fn short_ttl(&self) -> Duration {
        // etcd leases are whole seconds.
        Duration::from_secs(1)
    }

    fn url(&self) -> Option<String> {
        Some(self.cluster.url())
    }

    fn faults(&self) -> Option<&dyn Faults> {
        Some(self)
    }
}

#[async_trait]
impl Faults for EtcdFixture {
    async fn delete_hold(&self, key: &Key) -> Result<bool> {
        let mut client = self.admin().await?;
        let Some((holder, _)) = self.holder(&mut client, key).await? else {
            return Ok(false);
        };
        let resp = client.delete(holder, None).await.map_err(kit)?;
        Ok(resp.deleted() == 1)
    }

    async fn expire_hold(&self, key: &Key) -> Result<bool> {
        let mut client = self.admin().await?;
        let Some((_, lease)) = self.holder(&mut client, key).await? else {
            return Ok(false);
        };
        client.lease_revoke(lease).await.map_err(kit)?;
        Ok(true)
    }

    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)> {
        let proxy = FaultProxy::start(self.cluster.member(0).client_addr())
            .await
            .map_err(kit)?;
        let locker = self.locker_at(vec![proxy.addr()], ttl).await?;
        Ok((locker, Box::new(proxy)))
    }
}
