//! Redis servers: one for the `redis` backend, N independent masters for
//! Redlock.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::try_join_all;
use nix::sys::signal::Signal;

use super::KitError;
use super::binaries::{find_program, scratch_dir};
use super::ports::Ports;
use super::process::ServerProcess;
use super::ready::wait_ready;
use super::resp::{self, Resp};

/// How long a Redis server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`RedisServer`] is run.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Keep data across [`RedisServer::restart`] and [`RedisServer::kill`]:
    /// `--appendonly yes --appendfsync always`, so every acknowledged write
    /// survives a SIGKILL. Without it a restarted server comes back empty.
    pub appendonly: bool,
    /// More `redis-server` arguments, appended to the kit's own
    /// (for example `["--maxmemory", "10mb"]`).
    pub extra_args: Vec<String>,
}

/// A `redis-server` on a free loopback port, with its data and log in a
/// scratch directory. Dropping it kills the server.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    addr: SocketAddr,
    options: RedisOptions,
    _ports: Ports,
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers PING.
    pub async fn start() -> Result<RedisServer, KitError> {
        RedisServer::start_with(RedisOptions::default()).await
    }

    /// Starts a server with `options` and waits until it answers PING.
    pub async fn start_with(options: RedisOptions) -> Result<RedisServer, KitError> {
        let program = find_program("redis-server", "redis-server")?;
        let ports = Ports::reserve(1)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.get(0)));
        let dir = scratch_dir("dlock-redis-")?;
        let data = data_dir(dir.path());
        std::fs::create_dir(&data)
            .map_err(|e| KitError::io("cannot create the Redis data directory", e))?;
        let args = arguments(addr.port(), &data, &options);
        let process = ServerProcess::new(format!("redis-server on {addr}"), program, args, dir);
        let server = RedisServer {
            process,
            addr,
            options,
            _ports: ports,
        };
        server.launch().await?;
        Ok(server)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The server's log (its stdout and stderr, over all its runs).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The server's process id, unless it was killed.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the server process is alive (a paused server is).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the server with SIGKILL, as a crash would. Does nothing if it is
    /// not running.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes the server with SIGSTOP: connections stay open, nothing is
    /// answered, as in a long GC pause or a stalled VM. Returns once every
    /// thread has stopped.
    pub async fn pause(&self) -> Result<(), KitError> {
        self.process.pause().await
    }

    /// Lets a paused server go on with SIGCONT.
    pub fn resume(&self) -> Result<(), KitError> {
        self.process.signal(Signal::SIGCONT)
    }

    /// Kills the server if it runs, starts it again on the same port and
    /// waits until it answers. With [`RedisOptions::appendonly`] it comes
    /// back with its data; otherwise it comes back empty.
    pub async fn restart(&self) -> Result<(), KitError> {
        self.process.kill();
        if !self.options.appendonly {
            let data = data_dir(self.process.dir());
            let _ = std::fs::remove_dir_all(&data);
            std::fs::create_dir(&data)
                .map_err(|e| KitError::io("cannot recreate the Redis data directory", e))?;
        }
        self.launch().await
    }

    async fn launch(&self) -> Result<(), KitError> {
        self.process.start()?;
        let addr = self.addr;
        wait_ready(&self.process, START_TIMEOUT, || async move {
            match resp::command(addr, &["PING"]).await {
                Ok(Resp::Simple(pong)) if pong == "PONG" => Ok(()),
                // `-LOADING` while it replays its append-only file.
                Ok(other) => Err(format!("PING answered {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }
}

fn data_dir(scratch: &Path) -> PathBuf {
    scratch.join("data")
}

fn arguments(port: u16, data: &Path, options: &RedisOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        // No RDB snapshots: a restart is empty unless append-only is on.
        "--save",
        "",
        // Tests use DEBUG SLEEP and friends.
        "--enable-debug-command",
        "local",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if options.appendonly {
        args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(OsString::from));
    } else {
        args.extend(["--appendonly", "no"].map(OsString::from));
    }
    args.push("--dir".into());
    args.push(data.into());
    args.extend(options.extra_args.iter().map(OsString::from));
    args
}

/// N independent Redis masters (no replication between them), as Redlock
/// wants them.
#[derive(Debug)]
pub struct RedisMasters {
    nodes: Vec<RedisServer>,
}

impl RedisMasters {
    /// Starts `n` servers at once, without persistence.
    pub async fn start(n: usize) -> Result<RedisMasters, KitError> {
        RedisMasters::start_with(n, RedisOptions::default()).await
    }

    /// Starts `n` servers at once, each with `options`.
    pub async fn start_with(n: usize, options: RedisOptions) -> Result<RedisMasters, KitError> {
        if n == 0 {
            return Err(KitError::Invalid {
                reason: "Redlock needs at least one Redis master".into(),
            });
        }
        let nodes = try_join_all((0..n).map(|_| RedisServer::start_with(options.clone()))).await?;
        Ok(RedisMasters { nodes })
    }

    /// The `i`-th server.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, as slice indexing does.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// All servers.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no servers.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `redis://127.0.0.1:PORT` of each server.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redlock://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn redlock_url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redlock://{}", hosts.join(","))
    }
}
