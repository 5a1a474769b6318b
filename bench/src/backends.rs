//! The backends a run covers.

use clap::ValueEnum;

/// A dlock backend (with its store, its raw round trips and its peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Backend {
    /// `lock-redis` on one Redis server.
    Redis,
    /// `lock-redlock` on independent Redis masters.
    Redlock,
    /// `lock-etcd` on one etcd member.
    Etcd,
    /// `lock-zk` on one standalone ZooKeeper server.
    Zk,
}

impl Backend {
    /// All of them, in table order.
    pub const ALL: [Backend; 4] = [Backend::Redis, Backend::Redlock, Backend::Etcd, Backend::Zk];

    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Redlock => "redlock",
            Backend::Etcd => "etcd",
            Backend::Zk => "zookeeper",
        }
    }
}

/// Registers every backend crate's URL scheme with `lock_core::connect`.
pub fn register_all() {
    lock_redis::register();
    lock_redlock::register();
    lock_etcd::register();
    lock_zk::register();
}
