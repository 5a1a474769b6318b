//! ZooKeeper: one standalone server, or an ensemble that runs ZAB.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KitError;
use super::binaries::{find_program, require_file, scratch_dir};
use super::ports::Ports;
use super::process::ServerProcess;
use super::ready::wait_ready;

/// How long a server may take to serve: a JVM start plus, for an ensemble,
/// a leader election, on a possibly busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`ZkEnsemble::leader`] waits for each server's `srvr` answer.
const SRVR_TIMEOUT: Duration = Duration::from_millis(500);

const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// The jar's manifest names its dependencies (slf4j-api, netty, jute, ...)
/// but no logging backend; without one slf4j discards every line. The
/// simple backend writes to stderr, which goes to the server's log.
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// The JVM's options. The heap is always capped: a test machine may run
/// several ensembles at once.
const JVM_OPTIONS: &[&str] = &[
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    // The client compiler only: starts a JVM noticeably faster, and a test
    // server never runs long enough to profit from C2.
    "-XX:TieredStopAtLevel=1",
    // No hsperfdata files left in /tmp.
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
];

/// A ZooKeeper ensemble of real JVMs on loopback ports (or one standalone
/// server). Dropping it kills every server.
///
/// The tick is 200 ms, so sessions may be as short as 500 ms
/// (`minSessionTimeout`) and a failover takes well under a second.
#[derive(Debug)]
pub struct ZkEnsemble {
    servers: Vec<ZkServer>,
}

/// One server of a [`ZkEnsemble`].
#[derive(Debug)]
pub struct ZkServer {
    process: ServerProcess,
    client: SocketAddr,
    _ports: Ports,
}

impl ZkEnsemble {
    /// Starts one server in standalone mode.
    pub async fn standalone() -> Result<ZkEnsemble, KitError> {
        ZkEnsemble::start(1).await
    }

    /// Starts `n` servers (standalone if `n` is 1) and waits until each one
    /// serves clients, which in an ensemble needs an elected leader.
    pub async fn start(n: usize) -> Result<ZkEnsemble, KitError> {
        if n == 0 {
            return Err(KitError::Invalid {
                reason: "a ZooKeeper ensemble needs at least one server".into(),
            });
        }
        let java = find_program("java", "default-jre-headless")?;
        let mut classpath = require_file(ZOOKEEPER_JAR, "zookeeper")?.into_os_string();
        if Path::new(SLF4J_SIMPLE_JAR).is_file() {
            classpath.push(":");
            classpath.push(SLF4J_SIMPLE_JAR);
        }
        // Ports: client, quorum (followers to leader), leader election.
        let ports = (0..n)
            .map(|_| Ports::reserve(3))
            .collect::<Result<Vec<_>, _>>()?;
        let mut servers_lines = String::new();
        if n > 1 {
            for (i, p) in ports.iter().enumerate() {
                let _ = writeln!(
                    servers_lines,
                    "server.{}=127.0.0.1:{}:{}",
                    i + 1,
                    p.get(1),
                    p.get(2)
                );
            }
        }
        let mut servers = Vec::with_capacity(n);
        for (i, ports) in ports.into_iter().enumerate() {
            let client = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.get(0)));
            let dir = scratch_dir("dlock-zk-")?;
            let config = write_config(dir.path(), i + 1, client.port(), &servers_lines)?;
            let mut args: Vec<OsString> = JVM_OPTIONS.iter().map(OsString::from).collect();
            args.extend(["-cp".into(), classpath.clone()]);
            args.push("org.apache.zookeeper.server.quorum.QuorumPeerMain".into());
            args.push(config.into());
            let name = format!("zookeeper server.{} on {client}", i + 1);
            let process = ServerProcess::new(name, java.clone(), args, dir);
            servers.push(ZkServer {
                process,
                client,
                _ports: ports,
            });
        }
        for server in &servers {
            server.process.start()?;
        }
        try_join_all(servers.iter().map(ZkServer::wait_serving)).await?;
        Ok(ZkEnsemble { servers })
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,...`, as ZooKeeper clients take it.
    pub fn connect_string(&self) -> String {
        let hosts: Vec<String> = self.servers.iter().map(|s| s.client.to_string()).collect();
        hosts.join(",")
    }

    /// `zk://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn url(&self) -> String {
        format!("zk://{}", self.connect_string())
    }

    /// The client address of each server.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.client).collect()
    }

    /// The `i`-th server (its `myid` is `i + 1`).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, as slice indexing does.
    pub fn server(&self, i: usize) -> &ZkServer {
        &self.servers[i]
    }

    /// All servers.
    pub fn servers(&self) -> &[ZkServer] {
        &self.servers
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are no servers (never true for a started ensemble).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The index of the server whose `srvr` says `Mode: leader` (or
    /// `standalone`), if one does within 500 ms.
    pub async fn leader(&self) -> Option<usize> {
        let modes = join_all(
            self.servers
                .iter()
                .map(|s| tokio::time::timeout(SRVR_TIMEOUT, s.mode())),
        )
        .await;
        modes
            .into_iter()
            .position(|mode| matches!(mode, Ok(Ok(m)) if m == "leader" || m == "standalone"))
    }
}

impl ZkServer {
    /// The address clients connect to.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// The server's log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The JVM's process id, unless it was killed.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the JVM is alive (a paused one is).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the server with SIGKILL. Its data directory stays.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes the server with SIGSTOP, and returns once every thread has
    /// stopped.
    pub async fn pause(&self) -> Result<(), KitError> {
        self.process.pause().await
    }

    /// Lets a paused server go on with SIGCONT.
    pub fn resume(&self) -> Result<(), KitError> {
        self.process.signal(Signal::SIGCONT)
    }

    /// Kills the server if it runs, starts it again on its old data and ports,
    /// and waits until it serves again.
    pub async fn restart(&self) -> Result<(), KitError> {
        self.process.start()?;
        self.wait_serving().await
    }

    /// Sends a four-letter word (`srvr`, `stat`, `mntr`, `cons`, ...) and
    /// returns the answer. All of them are enabled.
    pub async fn four_letter_word(&self, word: &str) -> Result<String, KitError> {
        let context = || format!("`{word}` to {}", self.process.name());
        let mut stream = TcpStream::connect(self.client)
            .await
            .map_err(|e| KitError::io(context(), e))?;
        stream
            .write_all(word.as_bytes())
            .await
            .map_err(|e| KitError::io(context(), e))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .map_err(|e| KitError::io(context(), e))?;
        Ok(answer)
    }

    /// The server's `Mode` from `srvr`: `standalone`, `leader`, `follower` or
    /// `observer`. An error while it has no quorum.
    pub async fn mode(&self) -> Result<String, KitError> {
        let answer = self.four_letter_word("srvr").await?;
        answer
            .lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .map(|mode| mode.trim().to_string())
            .ok_or_else(|| {
                KitError::protocol(format!(
                    "srvr of {}: {}",
                    self.process.name(),
                    answer.trim()
                ))
            })
    }

    /// Waits for a `Mode` line: `ruok` answers `imok` even without a quorum,
    /// `srvr` says "not currently serving requests" until there is one.
    async fn wait_serving(&self) -> Result<(), KitError> {
        wait_ready(&self.process, START_TIMEOUT, || async {
            self.mode().await.map(drop).map_err(|e| e.to_string())
        })
        .await
    }
}

/// Writes `myid` and `zoo.cfg` into a server's scratch directory and returns
/// the path of `zoo.cfg`.
fn write_config(
    dir: &Path,
    myid: usize,
    client_port: u16,
    servers: &str,
) -> Result<PathBuf, KitError> {
    let data = dir.join("data");
    std::fs::create_dir(&data)
        .map_err(|e| KitError::io("cannot create the ZooKeeper data directory", e))?;
    std::fs::write(data.join("myid"), format!("{myid}\n"))
        .map_err(|e| KitError::io("cannot write the ZooKeeper myid file", e))?;
    let config = format!(
        "# Written by the dlock test kit.\n\
         tickTime=200\n\
         # Followers get 5 s to sync at start-up, a busy machine may be slow.\n\
         initLimit=25\n\
         # A follower that hears nothing from the leader for 2 s leaves it.\n\
         syncLimit=10\n\
         dataDir={data}\n\
         clientPort={client_port}\n\
         clientPortAddress=127.0.0.1\n\
         minSessionTimeout=500\n\
         maxSessionTimeout=60000\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=*\n\
         # The data is on tmpfs and thrown away: fsync buys nothing.\n\
         forceSync=no\n\
         # Transaction logs are preallocated in 64 MB blocks by default, and\n\
         # tmpfs is memory.\n\
         preAllocSize=4096\n\
         {servers}",
        data = data.display(),
    );
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, config).map_err(|e| KitError::io("cannot write zoo.cfg", e))?;
    Ok(path)
}
