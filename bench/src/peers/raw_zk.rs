//! The floor of a ZooKeeper lock: create an ephemeral node, then delete
//! it, through `zookeeper-client`, the client crate lock-zk uses.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use lock_zk::zk;

const DIR: &str = "/dlock-bench-raw";

/// Raw create + delete on ZooKeeper.
pub struct RawZk {
    client: zk::Client,
}

impl RawZk {
    /// Connects to `connect` (`host:port,...`) and creates the parent node.
    pub async fn connect(connect: &str) -> anyhow::Result<RawZk> {
        let client = zk::Client::connector()
            .with_session_timeout(super::TTL)
            .connect(connect)
            .await?;
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        match client.create(DIR, b"", &options).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(RawZk { client })
    }
}

#[async_trait]
impl Subject for RawZk {
    fn name(&self) -> &str {
        "raw: create + delete"
    }

    fn kind(&self) -> Kind {
        Kind::Raw
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let path = format!("{DIR}/{key}");
        let options = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.client.create(&path, b"", &options).await?;
        Ok(Hold::new(path))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let path = hold.take::<String>()?;
        self.client.delete(&path, None).await?;
        Ok(())
    }
}
