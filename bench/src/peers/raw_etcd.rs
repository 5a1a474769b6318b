//! The floor of an etcd lock: a transaction that creates the key if it is
//! absent (compare create revision = 0, then put), and a delete, through
//! `etcd-client`, the client crate lock-etcd uses.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, KvClient, Txn, TxnOp};

/// Raw txn + delete on etcd.
pub struct RawEtcd {
    kv: KvClient,
}

impl RawEtcd {
    /// Connects to `endpoints` (`host:port` each).
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<RawEtcd> {
        let client = Client::connect(endpoints, None).await?;
        Ok(RawEtcd {
            kv: client.kv_client(),
        })
    }
}

#[async_trait]
impl Subject for RawEtcd {
    fn name(&self) -> &str {
        "raw: txn + delete"
    }

    fn kind(&self) -> Kind {
        Kind::Raw
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let key = format!("dlock-bench-raw/{key}");
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), "bench-owner", None)]);
        let answer = self.kv.clone().txn(txn).await?;
        anyhow::ensure!(answer.succeeded(), "raw etcd: {key} exists");
        Ok(Hold::new(key))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let key = hold.take::<String>()?;
        self.kv.clone().delete(key, None).await?;
        Ok(())
    }
}
