//! The floor of any Redlock on these masters: the cheapest command a node
//! can run to take a key (`SET key v NX PX`) and to give it back (`DEL`),
//! sent to every node at once, back as soon as a quorum answered. No
//! checks, no token, no layout: not a lock, only the two parallel rounds a
//! Redlock client cannot do without. Its ratio to lock-redis on one master
//! says whether issue 5's "within 1.5× of lock-redis" can be met on this
//! machine by any client.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use redis::aio::ConnectionManager;

/// `SET NX PX` and `DEL` on every node, back at a quorum.
pub struct QuorumFloor {
    conns: Vec<ConnectionManager>,
}

impl QuorumFloor {
    /// The subject's name in the tables.
    pub const NAME: &'static str = "floor: SET NX PX, then DEL, on every node, back at a quorum";

    /// Connects to each of `urls` (`redis://host:port`).
    pub async fn connect(urls: &[String]) -> anyhow::Result<QuorumFloor> {
        let conns = super::connect_each(urls).await?;
        Ok(QuorumFloor { conns })
    }

    /// Sends `cmd` to every node at once and returns when a majority
    /// answered. The other answers are left to arrive: the requests were
    /// all handed to their connections at the first poll, so each node
    /// still runs its command, as with a Redlock client that returns at a
    /// quorum.
    async fn at_quorum(&self, cmd: &redis::Cmd) -> anyhow::Result<()> {
        let quorum = self.conns.len() / 2 + 1;
        let mut answers: FuturesUnordered<_> = self
            .conns
            .iter()
            .map(|conn| {
                let mut conn = conn.clone();
                async move { cmd.query_async::<redis::Value>(&mut conn).await }
            })
            .collect();
        let mut answered = 0;
        while let Some(answer) = answers.next().await {
            answer?;
            answered += 1;
            if answered == quorum {
                return Ok(());
            }
        }
        anyhow::bail!("fewer than {quorum} nodes answered")
    }
}

#[async_trait]
impl Subject for QuorumFloor {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn kind(&self) -> Kind {
        Kind::Raw
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg("bench-owner")
            .arg("NX")
            .arg("PX")
            .arg(super::TTL.as_millis() as u64);
        self.at_quorum(&set).await?;
        Ok(Hold::new(key.to_owned()))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let key = hold.take::<String>()?;
        self.at_quorum(redis::cmd("DEL").arg(key)).await
    }
}
