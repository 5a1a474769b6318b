//! [`RedlockConfig`]: the masters, the quorum, and the per-node timeout.

use lock_core::{BackendUrl, Error, Result};
use lock_redis::{DEFAULT_PORT, RedisConfig};
use std::time::Duration;

/// The shortest per-node timeout of an acquire (unless a third of the ttl
/// is shorter): a loaded machine or network easily adds tens of
/// milliseconds to a round trip.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(200);

/// How long one connection attempt (and a request outside the lock path,
/// such as `status`) may take on one node, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// N independent Redis masters and how to use them.
///
/// # Examples
/// ```
/// use lock_redlock::RedlockConfig;
/// let c = RedlockConfig::from_url("redlock://a:7001,b:7002,c:7003?prefix=app:").unwrap();
/// assert_eq!((c.nodes.len(), c.quorum), (3, 2));
/// assert_eq!(c.nodes[1].addr(), "b:7002");
/// assert!(RedlockConfig::from_url("redlock://a:1,b:2").is_err()); // even N
/// assert!(RedlockConfig::from_url("redlock://a:1,b:2,c:3?quorum=1").is_err()); // not a majority
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedlockConfig {
    /// One config per master (host, port, db, credentials, prefix,
    /// connection timeout), in URL order.
    pub nodes: Vec<RedisConfig>,
    /// How many nodes must agree: N/2 + 1 unless the URL's `quorum=` names
    /// another majority (at most N).
    pub quorum: usize,
    /// The per-node timeout of the lock operations (URL option
    /// `node_timeout=`); `None`: 2% of the hold's ttl, at least
    /// [`MIN_NODE_TIMEOUT`] and at most a third of the ttl.
    pub node_timeout: Option<Duration>,
}

impl RedlockConfig {
    /// A config for `nodes` (odd N ≥ 3, each with the same prefix and
    /// credentials as it should use) with the default quorum.
    pub fn new(nodes: Vec<RedisConfig>) -> Result<Self> {
        check_nodes(nodes.len(), "")?;
        let quorum = nodes.len() / 2 + 1;
        Ok(RedlockConfig {
            nodes,
            quorum,
            node_timeout: None,
        })
    }

    /// Parses
    /// `redlock://[user:pass@]h1:p1,h2:p2,...[/db][?quorum=&prefix=&timeout=&node_timeout=]`.
    /// Any other option is [`Error::InvalidConfig`].
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = BackendUrl::parse(url)?;
        let config = Self::take_from(&mut parsed)?;
        parsed.finish()?;
        Ok(config)
    }

    /// Reads the scheme, hosts and this backend's options from `url`,
    /// leaving the locker's options.
    pub(crate) fn take_from(url: &mut BackendUrl) -> Result<Self> {
        let redacted = url.redacted();
        let bad = |why: String| Error::InvalidConfig(format!("bad URL {redacted}: {why}"));
        if url.scheme() != "redlock" {
            return Err(bad(format!("scheme {:?} is not redlock", url.scheme())));
        }
        let endpoints = url.endpoints_or(DEFAULT_PORT)?;
        check_nodes(endpoints.len(), &redacted)?;
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|&n| n >= 0)
                .ok_or_else(|| bad(format!("database {db:?} is not a number")))?,
        };
        let prefix = url.take("prefix").unwrap_or_default();
        let timeout = url
            .take_parsed("timeout", lock_core::parse_duration)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        if timeout.is_zero() {
            return Err(bad("timeout=0 would fail every request".into()));
        }
        let node_timeout = url.take_parsed("node_timeout", lock_core::parse_duration)?;
        if node_timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("node_timeout=0 would fail every request".into()));
        }
        let n = endpoints.len();
        let quorum = match url.take("quorum") {
            None => n / 2 + 1,
            Some(q) => match q.parse::<usize>() {
                Ok(q) if q > n / 2 && q <= n => q,
                _ => {
                    return Err(bad(format!(
                        "quorum={q:?} must be a majority of the {n} nodes: {} to {n}",
                        n / 2 + 1
                    )));
                }
            },
        };
        let nodes = endpoints
            .into_iter()
            .map(|e| {
                let mut c = RedisConfig::new(e.host, e.port);
                c.db = db;
                c.user = url.user().map(str::to_owned);
                c.password = url.password().map(str::to_owned);
                c.prefix = prefix.clone();
                c.timeout = timeout;
                c
            })
            .collect();
        Ok(RedlockConfig {
            nodes,
            quorum,
            node_timeout,
        })
    }

    /// The per-node timeout for holds of `ttl`.
    pub fn node_timeout_for(&self, ttl: Duration) -> Duration {
        self.node_timeout
            .unwrap_or_else(|| (ttl / 50).max(MIN_NODE_TIMEOUT).min(ttl / 3))
    }
}

fn check_nodes(n: usize, url: &str) -> Result<()> {
    if n < 3 || n % 2 == 0 {
        return Err(Error::InvalidConfig(format!(
            "bad URL {url}: redlock needs an odd number of independent masters, at least 3 \
             (got {n})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_and_hosts() {
        let c = RedlockConfig::from_url("redlock://a:1,b:2,c:3,d:4,e:5").unwrap();
        assert_eq!(c.quorum, 3);
        let c = RedlockConfig::from_url("redlock://a:1,b:2,c:3,d:4,e:5?quorum=5").unwrap();
        assert_eq!(c.quorum, 5);
        let c = RedlockConfig::from_url("redlock://u:pw@a,b,c/2?timeout=200ms").unwrap();
        assert_eq!(c.nodes[2].port, DEFAULT_PORT);
        assert_eq!(c.nodes[0].db, 2);
        assert_eq!(c.nodes[1].password.as_deref(), Some("pw"));
        assert_eq!(c.nodes[1].timeout, Duration::from_millis(200));
    }

    #[test]
    fn bad_urls_are_invalid_config() {
        for url in [
            "redlock://a:1",
            "redlock://a:1,b:2",
            "redlock://a:1,b:2,c:3,d:4",
            "redlock://a:1,b:2,c:3?quorum=1",
            "redlock://a:1,b:2,c:3?quorum=4",
            "redlock://a:1,b:2,c:3?quorum=two",
            "redlock://a:1,b:2,c:3?quorum=",
            "redlock://a:1,b:2,c:3?timeout=0s",
            "redlock://a:1,b:2,c:3?node_timeout=0s",
            "redlock://a:1,b:2,c:3?colour=red",
            "redlock://a:1,b:2,c:3/x",
            "redis://a:1,b:2,c:3",
        ] {
            let e = RedlockConfig::from_url(url).unwrap_err();
            assert_eq!(e.kind(), lock_core::ErrorKind::InvalidConfig, "{url}: {e}");
        }
    }

    #[test]
    fn node_timeout_is_a_few_percent_with_a_floor() {
        let c = RedlockConfig::from_url("redlock://a:1,b:2,c:3").unwrap();
        assert_eq!(
            c.node_timeout_for(Duration::from_secs(30)),
            Duration::from_millis(600)
        );
        assert_eq!(c.node_timeout_for(Duration::from_secs(1)), MIN_NODE_TIMEOUT);
        assert_eq!(
            c.node_timeout_for(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
    }
}
