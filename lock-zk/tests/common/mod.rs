//! The ZooKeeper fixture the tests share: real servers from the kit, lockers
//! of `lock-zk` with one session each, and faults done the way an operator
//! or the network would do them.

#![allow(dead_code, unreachable_pub)]

use conformance::kit::{FaultProxy, ZkEnsemble};
use conformance::{Faults, Fixture, Link};
use lock_core::{Endpoint, Error, Key, Locker, Result, Ttl, async_trait};
use lock_zk::{ZkBackend, ZkConfig, zk};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// Starts a 3-server ensemble once no other test process of this machine
/// runs one (an exclusive `flock` on a file in the temp directory, held
/// while the returned guard lives): nextest runs each test in a process of
/// its own, two at a time, and the machine has room for one ensemble.
pub async fn exclusive_ensemble() -> (nix::fcntl::Flock<std::fs::File>, ZkEnsemble) {
    let path = std::env::temp_dir().join("dlock-lock-zk-ensemble.lock");
    let turn = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", path.display()))
    })
    .await
    .expect("waiting for the ensemble lock");
    let servers = ZkEnsemble::start(3)
        .await
        .unwrap_or_else(|e| panic!("start a 3-server ZooKeeper ensemble: {e}"));
    (turn, servers)
}

/// The prefix every test's locks live under.
pub const PREFIX: &str = "/dlock-test";

/// A kit server's or proxy's address as a URL endpoint.
pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// A session's id and password, and the proxies its connections go
/// through.
type SessionLink = (zk::SessionInfo, Vec<Arc<FaultProxy>>);

/// A backend of a fixture's locker, and the proxies its connections go
/// through.
type BackendLink = (std::sync::Weak<ZkBackend>, Vec<Arc<FaultProxy>>);

/// Lockers of `lock-zk` on one ensemble (standalone or not).
pub struct ZkFixture {
    name: String,
    ensemble: Arc<ZkEnsemble>,
    /// Session id -> id and password of every session this fixture's
    /// lockers opened, with the proxies its connections go through, to
    /// expire one as the server would.
    sessions: Mutex<HashMap<i64, SessionLink>>,
    /// The backends of this fixture's lockers, with the proxies their
    /// connections go through: a backend opens a session per session
    /// timeout asked for, when first asked, so its later sessions are
    /// found here.
    backends: Mutex<Vec<BackendLink>>,
    admin: tokio::sync::OnceCell<zk::Client>,
    short_ttl: Duration,
}

impl ZkFixture {
    /// A fixture on `ensemble`.
    pub fn new(name: &str, ensemble: Arc<ZkEnsemble>) -> Self {
        lock_zk::register();
        ZkFixture {
            name: name.to_owned(),
            ensemble,
            sessions: Mutex::new(HashMap::new()),
            backends: Mutex::new(Vec::new()),
            admin: tokio::sync::OnceCell::new(),
            short_ttl: Duration::from_secs(1),
        }
    }

    /// The ensemble.
    pub fn ensemble(&self) -> &ZkEnsemble {
        &self.ensemble
    }

    /// The configuration of a backend on `endpoints` with sessions of `ttl`.
    pub fn config(endpoints: Vec<Endpoint>, ttl: Duration) -> ZkConfig {
        ZkConfig::new(endpoints)
            .with_prefix(PREFIX)
            .expect("a valid prefix")
            .with_session_timeout(ttl)
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.ensemble
            .endpoints()
            .into_iter()
            .map(endpoint)
            .collect()
    }

    /// A backend with its own session of `ttl`, on every server, each
    /// through a fault proxy of its own; returns the proxies too.
    pub async fn backend_with_proxies(
        &self,
        ttl: Duration,
    ) -> Result<(ZkBackend, Vec<Arc<FaultProxy>>)> {
        Ttl::new(ttl)?;
        let mut proxies = Vec::new();
        for addr in self.ensemble.endpoints() {
            let proxy = FaultProxy::start(addr)
                .await
                .map_err(|e| Error::backend(format!("start a fault proxy: {e}")))?;
            proxies.push(Arc::new(proxy));
        }
        let endpoints = proxies.iter().map(|p| endpoint(p.addr())).collect();
        let backend = ZkBackend::connect(Self::config(endpoints, ttl)).await?;
        let info = backend.session_info();
        self.sessions
            .lock()
            .unwrap()
            .insert(info.id().0, (info, proxies.clone()));
        Ok((backend, proxies))
    }

    /// A backend with its own session of `ttl`.
    pub async fn backend(&self, ttl: Duration) -> Result<ZkBackend> {
        Ok(self.backend_with_proxies(ttl).await?.0)
    }

    /// A backend straight to the servers, without proxies.
    pub async fn direct_backend(&self, ttl: Duration) -> Result<ZkBackend> {
        Ttl::new(ttl)?;
        ZkBackend::connect(Self::config(self.endpoints(), ttl)).await
    }

    fn locker_on(
        &self,
        backend: ZkBackend,
        proxies: Vec<Arc<FaultProxy>>,
        ttl: Duration,
    ) -> Result<Locker> {
        let backend = Arc::new(backend);
        let mut backends = self.backends.lock().unwrap();
        backends.retain(|(b, _)| b.strong_count() > 0);
        backends.push((Arc::downgrade(&backend), proxies));
        drop(backends);
        Locker::builder(backend).ttl(ttl).build()
    }

    /// The id and password of session `id` of one of this fixture's
    /// backends, with the proxies its connections go through.
    fn session_link(&self, id: i64) -> Option<SessionLink> {
        if let Some(link) = self.sessions.lock().unwrap().get(&id) {
            return Some(link.clone());
        }
        let backends = self.backends.lock().unwrap();
        backends.iter().find_map(|(backend, proxies)| {
            let backend = backend.upgrade()?;
            let (info, _) = backend
                .sessions()
                .into_iter()
                .find(|(info, _)| info.id().0 == id)?;
            Some((info, proxies.clone()))
        })
    }

    /// A plain ZooKeeper client of the ensemble, as an operator's `zkCli`.
    pub async fn admin(&self) -> &zk::Client {
        self.admin
            .get_or_init(|| async {
                zk::Client::connector()
                    .with_session_timeout(Duration::from_secs(10))
                    .connect(&self.ensemble.connect_string())
                    .await
                    .expect("admin client connects")
            })
            .await
    }

    /// The lock node of `key`.
    pub fn lock_path(key: &Key) -> String {
        let component = lock_zk_component(key.as_str());
        format!("{PREFIX}/{component}")
    }

    /// The contenders of `key`'s lock in queue order, with their stats.
    pub async fn contenders(&self, key: &Key) -> Result<Vec<(String, zk::Stat)>> {
        let admin = self.admin().await;
        let dir = Self::lock_path(key);
        let mut children = match admin.list_children(&dir).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(Error::backend_from("list", e)),
        };
        children.retain(|c| c.len() > 10 && c[c.len() - 10..].bytes().all(|b| b.is_ascii_digit()));
        children.sort_by(|a, b| a[a.len() - 10..].cmp(&b[b.len() - 10..]));
        let mut out = Vec::new();
        for c in children {
            let path = format!("{dir}/{c}");
            if let Ok(Some(stat)) = admin.check_stat(&path).await {
                out.push((path, stat));
            }
        }
        Ok(out)
    }

    /// Waits until `path` is gone (up to 10 s).
    pub async fn wait_gone(&self, path: &str) -> Result<()> {
        let admin = self.admin().await;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(None) = admin.check_stat(path).await {
                return Ok(());
            }
            sleep(Duration::from_millis(20)).await;
        }
        Err(Error::backend(format!("{path} still exists after 10 s")))
    }

    /// Ends `session` as its expiry would: its client is cut off (so that
    /// it cannot take the session back), another connection takes the
    /// session over with its id and password and closes it, then the
    /// client's link heals and it learns the session is gone.
    pub async fn expire_session(
        &self,
        info: zk::SessionInfo,
        proxies: &[Arc<FaultProxy>],
    ) -> Result<()> {
        proxies.iter().for_each(|p| p.blackhole());
        let closed = self.close_session(info).await;
        proxies.iter().for_each(|p| p.pass());
        closed
    }

    /// Takes `session` over with its id and password, and closes it.
    pub async fn close_session(&self, info: zk::SessionInfo) -> Result<()> {
        let hijack = zk::Client::connector()
            .with_session(info)
            .with_session_timeout(Duration::from_secs(10))
            .connect(&self.ensemble.connect_string())
            .await;
        match hijack {
            // Dropping the last client of a session that is not detached
            // closes it.
            Ok(client) => drop(client),
            Err(zk::Error::SessionExpired) => {}
            Err(e) => return Err(Error::backend(format!("take the session over: {e:?}"))),
        }
        Ok(())
    }
}

/// The path component `lock-zk` gives a key (re-derived here, not taken
/// from the crate, so the tests check the layout).
pub fn lock_zk_component(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.char_indices() {
        let u = u32::from(c);
        let escape = c == '%'
            || c == '/'
            || (i == 0 && c == '.')
            || u <= 0x1f
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || u >= 0xfff0;
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[async_trait]
impl Fixture for ZkFixture {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        let (backend, proxies) = self.backend_with_proxies(ttl).await?;
        self.locker_on(backend, proxies, ttl)
    }

    fn short_ttl(&self) -> Duration {
        self.short_ttl
    }

    fn url(&self) -> Option<String> {
        Some(format!("{}?prefix={PREFIX}", self.ensemble.url()))
    }

    fn faults(&self) -> Option<&dyn Faults> {
        Some(self)
    }
}

#[async_trait]
impl Faults for ZkFixture {
    async fn delete_hold(&self, key: &Key) -> Result<bool> {
        let Some((path, _)) = self.contenders(key).await?.into_iter().next() else {
            return Ok(false);
        };
        match self.admin().await.delete(&path, None).await {
            Ok(()) => Ok(true),
            Err(zk::Error::NoNode) => Ok(false),
            Err(e) => Err(Error::backend_from("delete the holder's node", e)),
        }
    }

    async fn expire_hold(&self, key: &Key) -> Result<bool> {
        let Some((path, stat)) = self.contenders(key).await?.into_iter().next() else {
            return Ok(false);
        };
        match self.session_link(stat.ephemeral_owner) {
            Some((info, proxies)) => self.expire_session(info, &proxies).await?,
            // A session this fixture did not see opened (a backend's
            // replacement session): deleting the node is what its expiry
            // does to this hold.
            None => {
                let _ = self.admin().await.delete(&path, None).await;
            }
        }
        self.wait_gone(&path).await?;
        Ok(true)
    }

    async fn cuttable_locker(&self, ttl: Duration) -> Result<(Locker, Box<dyn Link>)> {
        let (backend, proxies) = self.backend_with_proxies(ttl).await?;
        let locker = self.locker_on(backend, proxies.clone(), ttl)?;
        Ok((locker, Box::new(proxies)))
    }
}

/// Runs `test` on the suite's shared runtime, where the one server of this
/// test binary and its clients live (so the server outlives each test).
pub fn run(test: impl std::future::Future<Output = ()> + Send + 'static) {
    let task = conformance::harness::runtime().spawn(test);
    if let Err(e) = conformance::harness::runtime().block_on(task) {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One standalone server for every test of a test binary.
pub async fn standalone() -> Arc<ZkFixture> {
    static FIXTURE: tokio::sync::OnceCell<Arc<ZkFixture>> = tokio::sync::OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let server = ZkEnsemble::standalone()
                .await
                .unwrap_or_else(|e| panic!("start a standalone ZooKeeper: {e}"));
            Arc::new(ZkFixture::new("zookeeper standalone", Arc::new(server)))
        })
        .await
        .clone()
}
