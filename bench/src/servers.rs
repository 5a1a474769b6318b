//! The stores a run measures: started on loopback with the kit, or given
//! as URLs.

use crate::backends::Backend;
use crate::cli::RunArgs;
use anyhow::Context as _;
use conformance::kit::{EtcdCluster, RedisMasters, RedisServer, ZkEnsemble};

/// Redis masters a run starts for Redlock: 7, so that the node-count
/// figures can use 3, 5 and 7 of them.
pub const REDLOCK_NODES: usize = 7;

/// How many of them the main Redlock figures use.
pub const REDLOCK_MAIN: usize = 5;

/// The stores of one run. Servers the run started stop when it is dropped.
#[derive(Debug, Default)]
pub struct Targets {
    /// `redis://host:port` of the single Redis.
    pub redis: Option<String>,
    /// `host:port` of each Redis master for Redlock.
    pub redlock: Vec<String>,
    /// `etcd://...` of etcd.
    pub etcd: Option<String>,
    /// `zk://...` of ZooKeeper.
    pub zk: Option<String>,
    /// Where each store came from, for the report.
    pub origin: Vec<(Backend, &'static str)>,
    kit: Kit,
}

#[derive(Debug, Default)]
struct Kit {
    _redis: Option<RedisServer>,
    _masters: Option<RedisMasters>,
    _etcd: Option<EtcdCluster>,
    _zk: Option<ZkEnsemble>,
}

impl Targets {
    /// The stores of `backends`: the URLs given in `args`, else servers
    /// started now (all at once).
    pub async fn prepare(args: &RunArgs, backends: &[Backend]) -> anyhow::Result<Targets> {
        let mut t = Targets::default();
        let wants = |b| backends.contains(&b);
        let start_redis = wants(Backend::Redis) && args.redis.is_none();
        let start_masters = wants(Backend::Redlock) && args.redlock.is_none();
        let start_etcd = wants(Backend::Etcd) && args.etcd.is_none();
        let start_zk = wants(Backend::Zk) && args.zk.is_none();
        let (redis, masters, etcd, zk) = tokio::join!(
            maybe(start_redis, RedisServer::start()),
            maybe(start_masters, RedisMasters::start(REDLOCK_NODES)),
            maybe(start_etcd, EtcdCluster::single()),
            maybe(start_zk, ZkEnsemble::standalone()),
        );
        let (redis, masters) = (
            redis.context("starting redis-server")?,
            masters.context("starting the Redlock masters")?,
        );
        let (etcd, zk) = (
            etcd.context("starting etcd")?,
            zk.context("starting ZooKeeper")?,
        );
        let origin = |given: bool| {
            if given {
                "given URL"
            } else {
                "started by the run (conformance kit)"
            }
        };
        if wants(Backend::Redis) {
            t.redis = Some(match (&args.redis, &redis) {
                (Some(url), _) => url.clone(),
                (None, Some(s)) => s.url(),
                (None, None) => unreachable!("started above"),
            });
            t.origin
                .push((Backend::Redis, origin(args.redis.is_some())));
        }
        if wants(Backend::Redlock) {
            t.redlock = match (&args.redlock, &masters) {
                (Some(url), _) => hosts_of(url),
                (None, Some(m)) => m.nodes().iter().map(|n| n.addr().to_string()).collect(),
                (None, None) => unreachable!("started above"),
            };
            t.origin
                .push((Backend::Redlock, origin(args.redlock.is_some())));
        }
        if wants(Backend::Etcd) {
            t.etcd = Some(match (&args.etcd, &etcd) {
                (Some(url), _) => url.clone(),
                (None, Some(e)) => e.url(),
                (None, None) => unreachable!("started above"),
            });
            t.origin.push((Backend::Etcd, origin(args.etcd.is_some())));
        }
        if wants(Backend::Zk) {
            t.zk = Some(match (&args.zk, &zk) {
                (Some(url), _) => url.clone(),
                (None, Some(z)) => z.url(),
                (None, None) => unreachable!("started above"),
            });
            t.origin.push((Backend::Zk, origin(args.zk.is_some())));
        }
        t.kit = Kit {
            _redis: redis,
            _masters: masters,
            _etcd: etcd,
            _zk: zk,
        };
        Ok(t)
    }

    /// `redlock://` over the first `n` masters, if there are that many.
    pub fn redlock_url(&self, n: usize) -> Option<String> {
        (self.redlock.len() >= n).then(|| format!("redlock://{}", self.redlock[..n].join(",")))
    }

    /// The URL of `backend`'s store (Redlock: its main node count).
    pub fn url(&self, backend: Backend) -> Option<String> {
        match backend {
            Backend::Redis => self.redis.clone(),
            Backend::Redlock => self.redlock_url(REDLOCK_MAIN.min(self.redlock.len())),
            Backend::Etcd => self.etcd.clone(),
            Backend::Zk => self.zk.clone(),
        }
    }
}

async fn maybe<T, E>(
    wanted: bool,
    start: impl Future<Output = Result<T, E>>,
) -> Result<Option<T>, E> {
    if wanted {
        start.await.map(Some)
    } else {
        Ok(None)
    }
}

/// The `host:port` list of a store URL (`scheme://[user@]h1:p1,h2:p2[/path][?query]`).
pub fn hosts_of(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..end]
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `url` with one more query option.
pub fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(hosts_of("redis://127.0.0.1:6379"), vec!["127.0.0.1:6379"]);
        assert_eq!(
            hosts_of("zk://a:1,b:2/chroot?session_timeout=30s"),
            vec!["a:1", "b:2"]
        );
        assert_eq!(hosts_of("redis://u:p@h:1/0"), vec!["h:1"]);
        assert_eq!(with_option("etcd://h:1", "ttl=30s"), "etcd://h:1?ttl=30s");
        assert_eq!(
            with_option("zk://h:1?a=b", "ttl=30s"),
            "zk://h:1?a=b&ttl=30s"
        );
    }
}
