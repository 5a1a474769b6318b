//! The `rslock` crate, the popular Redlock client: `SET NX PX` on every
//! master, retried after a random delay (up to 200 ms) while held.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use rslock::{Lock, LockManager};

/// rslock's `LockManager` over the Redlock masters.
pub struct Rslock {
    manager: LockManager,
}

impl Rslock {
    /// A manager over `nodes` (`redis://host:port` each).
    pub fn new(nodes: &[String]) -> Rslock {
        Rslock {
            manager: LockManager::new(nodes.to_vec()),
        }
    }
}

#[async_trait]
impl Subject for Rslock {
    fn name(&self) -> &str {
        "rslock"
    }

    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let lock = self
            .manager
            .acquire_no_guard(key.as_bytes(), super::TTL)
            .await
            .map_err(|e| anyhow::anyhow!("rslock: {e:?}"))?;
        Ok(Hold::new(lock))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let lock = hold.take::<Lock>()?;
        self.manager.unlock(&lock).await;
        Ok(())
    }
}
