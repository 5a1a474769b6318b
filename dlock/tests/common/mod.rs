//! Test helpers: real stores from `conformance::kit`, and the built `dlock`
//! binary.
//!
//! [`stores`] starts one store of every kind compiled into this build
//! (`dlock::backends()`), so a backend appears in every end-to-end test as
//! soon as its cargo feature is on: adding etcd is the feature line, no
//! line here. Kinds not compiled in are checked by the usage test (their
//! URLs must be refused with exit 64, naming the crate to add).

#![allow(dead_code)] // each test binary uses a part of this module

use conformance::kit::{EtcdCluster, RedisMasters, RedisServer, ZkEnsemble};
use std::any::Any;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long any one `dlock` invocation may take in a test before the test
/// fails (generous: the machine is shared).
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// A kind of store the project has a backend for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One Redis server.
    Redis,
    /// Three Redis masters.
    Redlock,
    /// A one-member etcd cluster.
    Etcd,
    /// A standalone ZooKeeper.
    Zk,
}

impl Kind {
    /// Every kind, compiled in or not.
    pub(crate) const ALL: [Kind; 4] = [Kind::Redis, Kind::Redlock, Kind::Etcd, Kind::Zk];

    /// The URL scheme.
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Redlock => "redlock",
            Kind::Etcd => "etcd",
            Kind::Zk => "zk",
        }
    }

    /// The crate that provides it.
    pub(crate) fn krate(self) -> &'static str {
        match self {
            Kind::Redis => "lock-redis",
            Kind::Redlock => "lock-redlock",
            Kind::Etcd => "lock-etcd",
            Kind::Zk => "lock-zk",
        }
    }

    /// Whether this build of dlock opens its URLs.
    pub(crate) fn enabled(self) -> bool {
        dlock::backends().iter().any(|s| s == self.scheme())
    }

    /// Starts a real store of this kind.
    pub(crate) async fn start(self) -> Store {
        let started: Result<(String, Option<SocketAddr>, Box<dyn Any + Send>), _> = match self {
            Kind::Redis => RedisServer::start()
                .await
                .map(|s| (s.url(), Some(s.addr()), Box::new(s) as Box<dyn Any + Send>)),
            Kind::Redlock => RedisMasters::start(3)
                .await
                .map(|s| (s.redlock_url(), None, Box::new(s) as Box<dyn Any + Send>)),
            Kind::Etcd => EtcdCluster::single()
                .await
                .map(|s| (s.url(), None, Box::new(s) as Box<dyn Any + Send>)),
            Kind::Zk => ZkEnsemble::standalone()
                .await
                .map(|s| (s.url(), None, Box::new(s) as Box<dyn Any + Send>)),
        };
        let (url, redis, server) =
            started.unwrap_or_else(|e| panic!("starting a {self:?} store: {e}"));
        println!("store: {self:?} at {url}");
        Store {
            kind: self,
            url,
            redis,
            _server: server,
        }
    }
}

/// A running store; dropping it stops the servers.
pub(crate) struct Store {
    /// Its kind.
    pub(crate) kind: Kind,
    /// Its URL, for `--backend`.
    pub(crate) url: String,
    /// The address of the Redis server (single-Redis stores only).
    pub(crate) redis: Option<SocketAddr>,
    _server: Box<dyn Any + Send>,
}

/// One store of every kind compiled into this build.
pub(crate) async fn stores() -> Vec<Store> {
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.enabled()).collect();
    assert!(!kinds.is_empty(), "no store backend is compiled in");
    let mut stores = Vec::new();
    for kind in kinds {
        stores.push(kind.start().await);
    }
    stores
}

/// `dlock ARGS` with captured output, no stdin, no DLOCK_BACKEND from the
/// environment; killed if the test drops it.
pub(crate) fn dlock<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlock"));
    cmd.args(args)
        .env_remove("DLOCK_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits for a spawned `dlock` to end, failing the test after [`LIMIT`].
pub(crate) async fn finish(child: Child) -> Output {
    timeout(LIMIT, child.wait_with_output())
        .await
        .expect("dlock did not finish in time")
        .expect("waiting for dlock")
}

/// Runs `dlock ARGS` to its end.
pub(crate) async fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    finish(dlock(args).spawn().expect("spawning dlock")).await
}

/// The exit code (panics on death by signal: dlock handles its signals).
pub(crate) fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("dlock died by a signal: {out:?}"))
}

/// Stderr as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout as text.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `path` exists (the command under test got that far).
pub(crate) async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + LIMIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address nothing listens on.
pub(crate) fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    addr
}
