//! zookeeper-client's own lock recipe in Curator's layout (`Client::lock`
//! with `LockPrefix::new_curator`): a sequential ephemeral node, the
//! contenders listed, a watch on the predecessor; released by an awaited
//! delete.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use lock_zk::zk;

const DIR: &str = "/dlock-bench-recipe";

/// zookeeper-client's lock recipe.
pub struct ZkRecipe {
    client: zk::Client,
}

impl ZkRecipe {
    /// Connects to `connect` (`host:port,...`).
    pub async fn connect(connect: &str) -> anyhow::Result<ZkRecipe> {
        let client = zk::Client::connector()
            .with_session_timeout(super::TTL)
            .connect(connect)
            .await?;
        Ok(ZkRecipe { client })
    }
}

#[async_trait]
impl Subject for ZkRecipe {
    fn name(&self) -> &str {
        "zookeeper-client lock recipe"
    }

    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let dir = format!("{DIR}/{key}");
        let prefix = zk::LockPrefix::new_curator(&dir, "lock-")?;
        let options = zk::LockOptions::new(zk::Acls::anyone_all())
            .with_ancestor_options(zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))?;
        let lock = self.client.lock(prefix, b"", options).await?;
        let path = lock.lock_path().to_owned();
        // Its Drop would send a delete in the background; the release
        // below is the awaited delete instead.
        std::mem::forget(lock);
        Ok(Hold::new(path))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let path = hold.take::<String>()?;
        self.client.delete(&path, None).await?;
        Ok(())
    }
}
