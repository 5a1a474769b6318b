//! The peer the seeds' Go and Python snippets are: `SET key token NX PX`,
//! retried every [`POLL`](super::POLL) while the key is held, released by
//! a compare-and-delete script, through the `redis` crate.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::time::Duration;

const COMPARE_AND_DELETE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/// `SET NX PX` + compare-and-delete on one Redis.
pub struct SetNx {
    conn: ConnectionManager,
    release: redis::Script,
    poll: Duration,
}

impl SetNx {
    /// Connects to `url` (`redis://host:port`).
    pub async fn connect(url: &str, poll: Duration) -> anyhow::Result<SetNx> {
        let conn = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(SetNx {
            conn,
            release: redis::Script::new(COMPARE_AND_DELETE),
            poll,
        })
    }
}

#[async_trait]
impl Subject for SetNx {
    fn name(&self) -> &str {
        "SET NX PX + compare-and-delete (redis crate, 100 ms poll)"
    }

    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut conn = self.conn.clone();
        loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(super::TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                return Ok(Hold::new((key.to_owned(), token)));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let (key, token) = hold.take::<(String, String)>()?;
        let mut conn = self.conn.clone();
        let _: i64 = self
            .release
            .key(key)
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
