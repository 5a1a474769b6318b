//! etcd clusters: one member, or several with a static initial cluster.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use nix::sys::signal::Signal;

use super::KitError;
use super::binaries::{find_program, scratch_dir};
use super::http::{json_field, request};
use super::ports::Ports;
use super::process::ServerProcess;
use super::ready::wait_ready;

/// How long a member may take to report itself healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`EtcdCluster::leader`] waits for each member's status: a paused
/// member must not stall it.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// An etcd cluster of real `etcd` processes on loopback ports.
///
/// Raft runs with a 10 ms heartbeat and a 100 ms election timeout, so that a
/// 1 s lease is honoured to within a few tens of milliseconds and a new
/// leader is elected quickly after a kill. Dropping the cluster kills every
/// member.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
}

/// One member of an [`EtcdCluster`].
#[derive(Debug)]
pub struct EtcdMember {
    process: ServerProcess,
    client: SocketAddr,
    peer: SocketAddr,
    tls_client: Option<SocketAddr>,
    _ports: Ports,
}

/// How to start an [`EtcdCluster`] beyond the defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Serve clients over TLS too, with this certificate and key (PEM), on
    /// a port of their own ([`EtcdMember::tls_client_addr`]); the plain
    /// client port stays (the kit's health checks use it).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With [`tls`](Self::tls): require client certificates signed by this
    /// CA (PEM) on the TLS port (`--client-cert-auth`).
    pub client_ca: Option<PathBuf>,
}

impl EtcdCluster {
    /// Starts a one-member cluster.
    pub async fn single() -> Result<EtcdCluster, KitError> {
        EtcdCluster::start(1).await
    }

    /// Starts an `n`-member cluster and waits until every member reports
    /// itself healthy (which needs an elected leader).
    pub async fn start(n: usize) -> Result<EtcdCluster, KitError> {
        EtcdCluster::start_with(n, EtcdOptions::default()).await
    }

    /// [`start`](Self::start) with `options`.
    pub async fn start_with(n: usize, options: EtcdOptions) -> Result<EtcdCluster, KitError> {
        if n == 0 {
            return Err(KitError::Invalid {
                reason: "an etcd cluster needs at least one member".into(),
            });
        }
        let program = find_program("etcd", "etcd-server")?;
        let ports = (0..n)
            .map(|_| Ports::reserve(if options.tls.is_some() { 3 } else { 2 }))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_url = |p: &Ports| format!("http://127.0.0.1:{}", p.get(1));
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}={}", peer_url(p)))
            .collect();
        let initial_cluster = initial_cluster.join(",");
        // A token of its own per cluster, so that members of two clusters
        // can never join each other even if a port were reused.
        let token = format!("dlock-kit-{:016x}", rand::random::<u64>());
        let mut members = Vec::with_capacity(n);
        for (i, ports) in ports.into_iter().enumerate() {
            let client = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.get(0)));
            let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.get(1)));
            let tls_client = options
                .tls
                .is_some()
                .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, ports.get(2))));
            let dir = scratch_dir("dlock-etcd-")?;
            let mut args = arguments(
                i,
                Listen {
                    client,
                    tls_client,
                    peer,
                },
                &dir.path().join("data"),
                &initial_cluster,
                &token,
            );
            if let Some((cert, key)) = &options.tls {
                args.extend([
                    "--cert-file".into(),
                    cert.into(),
                    "--key-file".into(),
                    key.into(),
                ]);
                if let Some(ca) = &options.client_ca {
                    args.extend([
                        "--client-cert-auth".into(),
                        "--trusted-ca-file".into(),
                        ca.into(),
                    ]);
                }
            }
            let process = ServerProcess::new(
                format!("etcd member m{i} on {client}"),
                program.clone(),
                args,
                dir,
            );
            members.push(EtcdMember {
                process,
                client,
                peer,
                tls_client,
                _ports: ports,
            });
        }
        // All members must run before any of them can elect a leader.
        for member in &members {
            member.process.start()?;
        }
        try_join_all(members.iter().map(EtcdMember::wait_healthy)).await?;
        Ok(EtcdCluster { members })
    }

    /// The client address of each member.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| m.client.to_string()).collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The TLS client address of each member (empty unless started with
    /// [`EtcdOptions::tls`]).
    pub fn tls_endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().filter_map(|m| m.tls_client).collect()
    }

    /// Turns on etcd's authentication: creates the user `root` with
    /// `password` and the role `root`, grants it, and enables auth (what
    /// `etcdctl user add root`, `etcdctl auth enable` do), through member
    /// 0's JSON gateway. From then on every client must log in.
    pub async fn enable_auth(&self, password: &str) -> Result<(), KitError> {
        let addr = self.members[0].client;
        let quoted = password.replace('\\', "\\\\").replace('"', "\\\"");
        let steps = [
            ("/v3/auth/role/add", r#"{"name":"root"}"#.to_owned()),
            (
                "/v3/auth/user/add",
                format!(r#"{{"name":"root","password":"{quoted}"}}"#),
            ),
            (
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#.to_owned(),
            ),
            ("/v3/auth/enable", "{}".to_owned()),
        ];
        for (path, body) in steps {
            match request(addr, "POST", path, &body).await? {
                (200, _) => {}
                (code, answer) => {
                    return Err(KitError::protocol(format!(
                        "etcd {path} answered {code}: {}",
                        answer.trim()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The `i`-th member.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, as slice indexing does.
    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }

    /// All members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The index of the member that reports itself as leader, if one does.
    /// Members that are down or do not answer within 500 ms are skipped; if
    /// two claim leadership (a stale one cut off from the rest), the one with
    /// the higher Raft term wins.
    pub async fn leader(&self) -> Option<usize> {
        let statuses = join_all(self.members.iter().map(EtcdMember::status)).await;
        statuses
            .into_iter()
            .enumerate()
            .filter_map(|(i, status)| {
                status
                    .ok()
                    .filter(|s| s.is_leader)
                    .map(|s| (s.raft_term, i))
            })
            .max()
            .map(|(_, i)| i)
    }
}

/// What a member says about itself.
struct Status {
    is_leader: bool,
    raft_term: u64,
}

impl EtcdMember {
    /// The address clients connect to.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// The address clients connect to over TLS, if the cluster serves it
    /// ([`EtcdOptions::tls`]).
    pub fn tls_client_addr(&self) -> Option<SocketAddr> {
        self.tls_client
    }

    /// The address other members connect to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The member's log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The member's process id, unless it was killed.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the member process is alive (a paused member is).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the member with SIGKILL. Its data directory stays.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes the member with SIGSTOP, and returns once every thread has
    /// stopped.
    pub async fn pause(&self) -> Result<(), KitError> {
        self.process.pause().await
    }

    /// Lets a paused member go on with SIGCONT.
    pub fn resume(&self) -> Result<(), KitError> {
        self.process.signal(Signal::SIGCONT)
    }

    /// Kills the member if it runs, starts it again on its old data and ports,
    /// and waits until it is healthy (rejoined, with a leader in sight).
    pub async fn restart(&self) -> Result<(), KitError> {
        self.process.start()?;
        self.wait_healthy().await
    }

    /// Whether this member answers its status and says it is the leader.
    pub async fn is_leader(&self) -> bool {
        self.status().await.is_ok_and(|s| s.is_leader)
    }

    async fn wait_healthy(&self) -> Result<(), KitError> {
        let client = self.client;
        wait_ready(&self.process, START_TIMEOUT, || async move {
            match request(client, "GET", "/health", "").await {
                // etcd 3.4 answers {"health":"true"}; later versions add a reason.
                Ok((200, body)) if json_field(&body, "health") == Some("true") => Ok(()),
                Ok((code, body)) => Err(format!("/health answered {code}: {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    async fn status(&self) -> Result<Status, KitError> {
        if !self.is_running() {
            return Err(KitError::protocol("member is down"));
        }
        let (code, body) = tokio::time::timeout(
            STATUS_TIMEOUT,
            request(self.client, "POST", "/v3/maintenance/status", "{}"),
        )
        .await
        .map_err(|_| {
            KitError::protocol(format!("{} did not answer its status", self.process.name()))
        })??;
        let field = |key| json_field(&body, key).and_then(|v| v.parse::<u64>().ok());
        match (code, field("member_id"), field("leader")) {
            (200, Some(me), Some(leader)) => Ok(Status {
                is_leader: me == leader,
                raft_term: field("raftTerm").unwrap_or(0),
            }),
            _ => Err(KitError::protocol(format!(
                "status of {}: {code} {body}",
                self.process.name()
            ))),
        }
    }
}

/// Where a member listens.
struct Listen {
    client: SocketAddr,
    tls_client: Option<SocketAddr>,
    peer: SocketAddr,
}

fn arguments(
    i: usize,
    listen: Listen,
    data: &Path,
    initial_cluster: &str,
    token: &str,
) -> Vec<OsString> {
    let mut client_url = format!("http://{}", listen.client);
    if let Some(tls) = listen.tls_client {
        client_url.push_str(&format!(",https://{tls}"));
    }
    let peer_url = format!("http://{}", listen.peer);
    let mut args: Vec<OsString> = vec![
        "--name".into(),
        format!("m{i}").into(),
        "--data-dir".into(),
        data.into(),
    ];
    let flags = [
        ("--listen-client-urls", client_url.as_str()),
        ("--advertise-client-urls", &client_url),
        ("--listen-peer-urls", &peer_url),
        ("--initial-advertise-peer-urls", &peer_url),
        ("--initial-cluster", initial_cluster),
        // Ignored once the data directory exists, so a restart rejoins.
        ("--initial-cluster-state", "new"),
        ("--initial-cluster-token", token),
        // The defaults (100 ms, 1000 ms) make a 1 s lease expire late and a
        // failover take seconds.
        ("--heartbeat-interval", "10"),
        ("--election-timeout", "100"),
        ("--logger", "zap"),
        ("--log-outputs", "stderr"),
    ];
    for (flag, value) in flags {
        args.push(flag.into());
        args.push(value.into());
    }
    args
}
