//! The floor of a Redis lock: two EVALSHA round trips (a minimal
//! Redisson-layout acquire, then a minimal release) on each node at once,
//! through the same `redis` crate the backends use. On one node this is
//! the floor of lock-redis, on N of Redlock.

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use futures::future::try_join_all;
use redis::aio::ConnectionManager;

/// A minimal acquire: the writes Redisson's lock does, no checks.
pub(super) const MIN_ACQUIRE: &str = r"
if redis.call('exists', KEYS[1]) == 0 then
  local t = redis.call('incr', KEYS[2])
  redis.call('hset', KEYS[1], ARGV[1], 1)
  redis.call('pexpire', KEYS[1], ARGV[2])
  return {1, t}
end
return {0, redis.call('pttl', KEYS[1])}
";

/// A minimal release: delete if the owner's, and publish.
const MIN_RELEASE: &str = r"
if redis.call('hget', KEYS[1], ARGV[1]) then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[3], 0)
  return 0
end
return -1
";

/// Raw EVALSHA round trips on one or more Redis nodes.
pub struct RawRedis {
    name: &'static str,
    conns: Vec<ConnectionManager>,
    acquire: redis::Script,
    release: redis::Script,
}

impl RawRedis {
    /// Connects to each of `urls` (`redis://host:port`).
    pub async fn connect(name: &'static str, urls: &[String]) -> anyhow::Result<RawRedis> {
        let conns = super::connect_each(urls).await?;
        Ok(RawRedis {
            name,
            conns,
            acquire: redis::Script::new(MIN_ACQUIRE),
            release: redis::Script::new(MIN_RELEASE),
        })
    }
}

fn keys(key: &str) -> (String, String) {
    (
        format!("redisson_lock_token:{{{key}}}"),
        format!("redisson_lock__channel:{{{key}}}"),
    )
}

#[async_trait]
impl Subject for RawRedis {
    fn name(&self) -> &str {
        self.name
    }

    fn kind(&self) -> Kind {
        Kind::Raw
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let (counter, _) = keys(key);
        let (acquire, counter) = (&self.acquire, &counter);
        try_join_all(self.conns.iter().map(|conn| {
            let mut conn = conn.clone();
            async move {
                let _: redis::Value = acquire
                    .key(key)
                    .key(counter)
                    .arg("bench-owner")
                    .arg(super::TTL.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(())
            }
        }))
        .await?;
        Ok(Hold::new(key.to_owned()))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        let key = hold.take::<String>()?;
        let (counter, channel) = keys(&key);
        let (release, key, counter, channel) = (&self.release, &key, &counter, &channel);
        try_join_all(self.conns.iter().map(|conn| {
            let mut conn = conn.clone();
            async move {
                let _: i64 = release
                    .key(key)
                    .key(counter)
                    .key(channel)
                    .arg("bench-owner")
                    .invoke_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(())
            }
        }))
        .await?;
        Ok(())
    }
}
