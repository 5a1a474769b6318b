//! etcd-client's `LockClient`: etcd's server-side v3lock (a
//! `concurrency.Mutex` run by the server, waiting there), with a lease
//! granted beforehand as its API needs. Each hold takes its own lease from
//! a pool (holds on one lease would share one lock key, and so exclude
//! nothing), granted once and reused.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use etcd_client::{Client, LeaseClient, LockClient, LockOptions};
use std::sync::Mutex;

/// Leases live this long (seconds): longer than any run, so that the
/// measured path never renews one.
const LEASE_SECS: i64 = 3600;

/// etcd-client's `LockClient`.
pub struct EtcdLockClient {
    lock: LockClient,
    lease: LeaseClient,
    leases: Mutex<Vec<i64>>,
}

impl EtcdLockClient {
    /// Connects to `endpoints` (`host:port` each).
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<EtcdLockClient> {
        let client = Client::connect(endpoints, None).await?;
        Ok(EtcdLockClient {
            lock: client.lock_client(),
            lease: client.lease_client(),
            leases: Mutex::new(Vec::new()),
        })
    }

    async fn take_lease(&self) -> anyhow::Result<i64> {
        let pooled = self.leases.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(id) => Ok(id),
            None => Ok(self.lease.clone().grant(LEASE_SECS, None).await?.id()),
        }
    }
}

#[async_trait]
impl Subject for EtcdLockClient {
    fn name(&self) -> &str {
        "etcd-client LockClient"
    }

    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let lease = self.take_lease().await?;
        let held = self
            .lock
            .clone()
            .lock(
                format!("dlock-bench-lockclient/{key}"),
                Some(LockOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(Hold::new((held.key().to_vec(), lease)))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let (key, lease) = hold.take::<(Vec<u8>, i64)>()?;
        self.lock.clone().unlock(key).await?;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lease);
        Ok(())
    }
}
