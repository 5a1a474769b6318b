//! Real lock servers for tests: Redis, etcd and ZooKeeper, started from their
//! installed binaries (no mocks) on free loopback ports, plus a TCP proxy
//! that injects network faults.
//!
//! Each server keeps its data and log in a scratch directory on tmpfs
//! (`/dev/shm`) where there is one, and each can be killed (SIGKILL), paused
//! (SIGSTOP), resumed (SIGCONT) and restarted on its old port and data.
//! Servers die with their handle, and with the test process even when that
//! process is killed with SIGKILL (see `process.rs`).
//!
//! A missing server is an error that names the install command; run
//! `scripts/install-servers` to install them all.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conformance::kit::KitError> {
//! use conformance::kit::{EtcdCluster, FaultProxy, RedisServer};
//!
//! let redis = RedisServer::start().await?;
//! let proxy = FaultProxy::start(redis.addr()).await?;
//! // ... point a client at proxy.addr(), then:
//! proxy.blackhole();
//!
//! let etcd = EtcdCluster::start(3).await?;
//! if let Some(leader) = etcd.leader().await {
//!     etcd.member(leader).kill();
//! }
//! # Ok(())
//! # }
//! ```

mod binaries;
mod certs;
mod error;
mod etcd;
mod http;
mod ports;
mod process;
mod proxy;
mod ready;
mod redis;
pub mod resp;
mod zookeeper;

pub use certs::TestCerts;
pub use error::KitError;
pub use etcd::{EtcdCluster, EtcdMember, EtcdOptions};
pub use http::http_get;
pub use proxy::{FaultProxy, ProxyMode};
pub use redis::{RedisMasters, RedisOptions, RedisServer};
pub use zookeeper::{ZkEnsemble, ZkServer};
