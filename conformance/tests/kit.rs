//! Self-tests of the server kit: every server kind starts, answers, survives
//! kill, pause and restart as documented, and is gone once dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use conformance::kit::resp::{self, Resp};
use conformance::kit::{
    EtcdCluster, FaultProxy, KitError, ProxyMode, RedisMasters, RedisOptions, RedisServer,
    ZkEnsemble,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether a process with this pid exists at all (a zombie counts).
fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a process with this pid is alive: it exists and is not a zombie.
/// A server orphaned by a killed test process is reparented to init, and
/// init does not reap on every machine.
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Polls `check` every 50 ms until it yields a value or `limit` passes.
async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() > limit {
            return None;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

async fn redis(addr: SocketAddr, args: &[&str]) -> Result<Resp, KitError> {
    resp::command(addr, args).await
}

fn bulk(value: &str) -> Resp {
    Resp::Bulk(Some(value.as_bytes().to_vec()))
}

#[tokio::test]
async fn redis_starts_pauses_restarts_empty_and_dies_on_drop() -> TestResult {
    let started = Instant::now();
    let server = RedisServer::start().await?;
    eprintln!("redis-server ready in {:?}", started.elapsed());
    let addr = server.addr();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", addr.port()));
    assert!(server.log_path().is_file());
    assert!(server.is_running());

    assert_eq!(
        redis(addr, &["SET", "k", "v"]).await?,
        Resp::Simple("OK".into())
    );
    assert_eq!(redis(addr, &["GET", "k"]).await?, bulk("v"));
    // The kit enables DEBUG for local clients.
    assert_eq!(
        redis(addr, &["DEBUG", "SLEEP", "0"]).await?,
        Resp::Simple("OK".into())
    );

    server.pause().await?;
    assert!(server.is_running(), "a paused server still runs");
    assert!(
        timeout(Duration::from_millis(300), redis(addr, &["PING"]))
            .await
            .is_err(),
        "a paused server answers nothing"
    );
    server.resume()?;
    assert_eq!(redis(addr, &["PING"]).await?, Resp::Simple("PONG".into()));

    let old_pid = server.pid().ok_or("no pid")?;
    server.kill();
    assert!(!server.is_running());
    assert!(!pid_exists(old_pid), "kill reaps the server");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after a kill"
    );
    assert!(
        server.pause().await.is_err(),
        "a killed server cannot be paused"
    );

    server.restart().await?;
    assert_eq!(server.addr(), addr, "a restart keeps the port");
    assert_eq!(
        redis(addr, &["GET", "k"]).await?,
        Resp::Bulk(None),
        "without appendonly a restart is empty"
    );

    let pid = server.pid().ok_or("no pid")?;
    let dir = server
        .log_path()
        .parent()
        .ok_or("no scratch dir")?
        .to_path_buf();
    drop(server);
    assert!(!pid_exists(pid), "drop kills and reaps the server");
    assert!(!dir.exists(), "drop removes the scratch directory");
    Ok(())
}

#[tokio::test]
async fn redis_with_appendonly_keeps_data_across_kill_and_restart() -> TestResult {
    let server = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..Default::default()
    })
    .await?;
    let addr = server.addr();
    assert_eq!(
        redis(addr, &["SET", "kept", "yes"]).await?,
        Resp::Simple("OK".into())
    );
    server.kill();
    server.restart().await?;
    assert_eq!(redis(addr, &["GET", "kept"]).await?, bulk("yes"));
    // A restart of a running server kills it first.
    server.restart().await?;
    assert_eq!(redis(addr, &["GET", "kept"]).await?, bulk("yes"));
    Ok(())
}

#[tokio::test]
async fn five_redis_masters_for_redlock() -> TestResult {
    let started = Instant::now();
    let masters = RedisMasters::start(5).await?;
    eprintln!("5 redis masters ready in {:?}", started.elapsed());
    assert_eq!(masters.len(), 5);
    let urls = masters.urls();
    let mut distinct = urls.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "each master has its own port: {urls:?}");
    let hosts: Vec<String> = masters
        .nodes()
        .iter()
        .map(|n| n.addr().to_string())
        .collect();
    assert_eq!(
        masters.redlock_url(),
        format!("redlock://{}", hosts.join(","))
    );
    for node in masters.nodes() {
        assert_eq!(
            redis(node.addr(), &["PING"]).await?,
            Resp::Simple("PONG".into())
        );
    }
    // The masters are independent: a key set on one is absent on another.
    redis(masters.node(0).addr(), &["SET", "only-here", "1"]).await?;
    assert_eq!(
        redis(masters.node(1).addr(), &["GET", "only-here"]).await?,
        Resp::Bulk(None)
    );

    masters.node(2).kill();
    assert!(!masters.node(2).is_running());
    assert!(masters.node(3).is_running());

    let pids: Vec<u32> = masters.nodes().iter().filter_map(|n| n.pid()).collect();
    assert_eq!(pids.len(), 4);
    drop(masters);
    assert!(pids.iter().all(|&pid| !pid_exists(pid)));
    Ok(())
}

#[tokio::test]
async fn single_etcd_restarts_on_its_data() -> TestResult {
    let started = Instant::now();
    let etcd = EtcdCluster::single().await?;
    eprintln!("single etcd ready in {:?}", started.elapsed());
    let endpoint = etcd.endpoints()[0];
    assert_eq!(etcd.url(), format!("etcd://{endpoint}"));
    assert_eq!(etcd.leader().await, Some(0));

    let member = etcd.member(0);
    member.pause().await?;
    assert_eq!(etcd.leader().await, None, "a paused member does not answer");
    member.resume()?;
    assert_eq!(
        eventually(Duration::from_secs(5), || async { etcd.leader().await }).await,
        Some(0)
    );

    member.kill();
    assert!(!member.is_running());
    assert_eq!(etcd.leader().await, None);
    member.restart().await?;
    assert_eq!(etcd.member(0).client_addr(), endpoint);
    assert_eq!(etcd.leader().await, Some(0));

    let pid = member.pid().ok_or("no pid")?;
    drop(etcd);
    assert!(!pid_exists(pid));
    Ok(())
}

#[tokio::test]
async fn three_etcd_members_elect_a_new_leader_when_the_leader_dies() -> TestResult {
    let started = Instant::now();
    let etcd = EtcdCluster::start(3).await?;
    eprintln!("3-member etcd ready in {:?}", started.elapsed());
    assert_eq!(etcd.endpoints().len(), 3);
    let old = etcd.leader().await.ok_or("no leader")?;

    let killed_at = Instant::now();
    etcd.member(old).kill();
    let new = eventually(Duration::from_secs(10), || async {
        etcd.leader().await.filter(|&l| l != old)
    })
    .await
    .ok_or("no new leader after the leader was killed")?;
    eprintln!(
        "etcd elected member {new} {:?} after member {old} was killed",
        killed_at.elapsed()
    );

    etcd.member(old).restart().await?;
    assert!(etcd.member(old).is_running());
    let leader = eventually(Duration::from_secs(10), || async { etcd.leader().await }).await;
    assert!(leader.is_some(), "the healed cluster has a leader");

    let pids: Vec<u32> = etcd.members().iter().filter_map(|m| m.pid()).collect();
    assert_eq!(pids.len(), 3);
    drop(etcd);
    assert!(pids.iter().all(|&pid| !pid_exists(pid)));
    Ok(())
}

#[tokio::test]
async fn standalone_zookeeper_pauses_and_restarts() -> TestResult {
    let started = Instant::now();
    let zk = ZkEnsemble::standalone().await?;
    eprintln!("standalone zookeeper ready in {:?}", started.elapsed());
    let server = zk.server(0);
    assert_eq!(zk.connect_string(), server.client_addr().to_string());
    assert_eq!(zk.url(), format!("zk://{}", zk.connect_string()));
    assert_eq!(server.mode().await?, "standalone");
    assert_eq!(zk.leader().await, Some(0));
    assert!(server.four_letter_word("ruok").await? == "imok");

    server.pause().await?;
    assert!(
        timeout(Duration::from_millis(300), server.mode())
            .await
            .is_err(),
        "a paused JVM answers nothing"
    );
    server.resume()?;
    assert_eq!(server.mode().await?, "standalone");

    server.kill();
    assert!(server.mode().await.is_err());
    server.restart().await?;
    assert_eq!(server.mode().await?, "standalone");

    let pid = server.pid().ok_or("no pid")?;
    drop(zk);
    assert!(!pid_exists(pid));
    Ok(())
}

#[tokio::test]
async fn three_zookeepers_elect_a_new_leader_when_the_leader_dies() -> TestResult {
    let started = Instant::now();
    let zk = ZkEnsemble::start(3).await?;
    eprintln!("3-server zookeeper ready in {:?}", started.elapsed());
    assert_eq!(zk.connect_string().split(',').count(), 3);
    let old = zk.leader().await.ok_or("no leader")?;
    for (i, server) in zk.servers().iter().enumerate() {
        let expected = if i == old { "leader" } else { "follower" };
        assert_eq!(server.mode().await?, expected);
    }

    let killed_at = Instant::now();
    zk.server(old).kill();
    let new = eventually(Duration::from_secs(20), || async {
        zk.leader().await.filter(|&l| l != old)
    })
    .await
    .ok_or("no new leader after the leader was killed")?;
    eprintln!(
        "zookeeper elected server {new} {:?} after server {old} was killed",
        killed_at.elapsed()
    );

    zk.server(old).restart().await?;
    assert_eq!(
        zk.server(old).mode().await?,
        "follower",
        "a restarted server rejoins as a follower"
    );

    let pids: Vec<u32> = zk.servers().iter().filter_map(|s| s.pid()).collect();
    assert_eq!(pids.len(), 3);
    drop(zk);
    assert!(pids.iter().all(|&pid| !pid_exists(pid)));
    Ok(())
}

/// An echo server for the proxy tests.
async fn echo_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    Ok(addr)
}

/// Writes `msg` and reads back as many bytes.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(msg).await?;
    let mut back = vec![0; msg.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

#[tokio::test]
async fn fault_proxy_passes_delays_blackholes_and_resets() -> TestResult {
    let upstream = echo_server().await?;
    let proxy = FaultProxy::start(upstream).await?;
    assert_eq!(proxy.upstream(), upstream);
    assert_ne!(proxy.addr(), upstream);

    // Pass.
    let mut conn = TcpStream::connect(proxy.addr()).await?;
    assert_eq!(round_trip(&mut conn, b"hello").await?, b"hello");

    // Latency applies to the open connection, each way.
    proxy.latency(Duration::from_millis(100));
    assert_eq!(proxy.mode(), ProxyMode::Latency(Duration::from_millis(100)));
    let sent = Instant::now();
    assert_eq!(round_trip(&mut conn, b"slow").await?, b"slow");
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "took only {:?}",
        sent.elapsed()
    );

    // Blackhole: the open connection and a new one both hang, and stay open.
    proxy.blackhole();
    let mut fresh = TcpStream::connect(proxy.addr()).await?;
    assert!(
        timeout(Duration::from_millis(300), round_trip(&mut conn, b"lost?"))
            .await
            .is_err()
    );
    assert!(
        timeout(Duration::from_millis(300), round_trip(&mut fresh, b"new?"))
            .await
            .is_err()
    );

    // Healing delivers what was held back, like TCP after a partition.
    proxy.pass();
    let mut back = [0u8; 5];
    timeout(Duration::from_secs(2), conn.read_exact(&mut back)).await??;
    assert_eq!(&back, b"lost?");
    let mut back = [0u8; 4];
    timeout(Duration::from_secs(2), fresh.read_exact(&mut back)).await??;
    assert_eq!(&back, b"new?");

    // Reset breaks open connections and refuses new ones.
    proxy.reset();
    let mut buf = [0u8; 1];
    let read = timeout(Duration::from_secs(2), conn.read(&mut buf)).await?;
    assert!(
        matches!(read, Err(_) | Ok(0)),
        "an open connection breaks: {read:?}"
    );
    let mut refused = TcpStream::connect(proxy.addr()).await?;
    let broken = timeout(Duration::from_secs(2), round_trip(&mut refused, b"no")).await?;
    assert!(broken.is_err(), "a new connection breaks: {broken:?}");

    // Pass heals: new connections work again.
    proxy.pass();
    let mut healed = TcpStream::connect(proxy.addr()).await?;
    assert_eq!(round_trip(&mut healed, b"again").await?, b"again");

    // Dropping the proxy closes its connections.
    drop(proxy);
    let mut buf = [0u8; 1];
    let read = timeout(Duration::from_secs(2), healed.read(&mut buf)).await?;
    assert!(
        matches!(read, Err(_) | Ok(0)),
        "dropped proxy left a connection open: {read:?}"
    );
    Ok(())
}

/// Set in the child process of the test below.
const VICTIM: &str = "DLOCK_KIT_ORPHAN_VICTIM";

/// A test process killed with SIGKILL (as nextest does on timeout) leaves
/// no server behind. The test runs itself as a child process (the victim)
/// which starts a server, prints its pid, and waits to be killed.
#[tokio::test]
async fn servers_die_with_a_sigkilled_test_process() -> TestResult {
    if std::env::var_os(VICTIM).is_some() {
        let server = RedisServer::start().await?;
        let dir = server
            .log_path()
            .parent()
            .ok_or("no scratch dir")?
            .display()
            .to_string();
        println!(
            "VICTIM {} {} {dir}",
            server.pid().ok_or("no pid")?,
            server.addr()
        );
        sleep(Duration::from_secs(60)).await;
        return Err("the victim was not killed".into());
    }
    let mut victim = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "servers_die_with_a_sigkilled_test_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(VICTIM, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = victim.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            // libtest prints "test NAME ... " on the same line first.
            if let Some((_, fields)) = line.split_once("VICTIM ") {
                return Ok(fields.to_string());
            }
        }
        Err(std::io::Error::other(
            "the victim exited without starting a server",
        ))
    })
    .await??;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [pid, addr, dir] = fields[..] else {
        return Err(format!("bad victim line {line:?}").into());
    };
    let (pid, addr): (u32, SocketAddr) = (pid.parse()?, addr.parse()?);
    assert!(pid_alive(pid));
    assert_eq!(redis(addr, &["PING"]).await?, Resp::Simple("PONG".into()));

    victim.start_kill()?;
    victim.wait().await?;
    let gone = eventually(Duration::from_secs(5), || async {
        (!pid_alive(pid) && TcpStream::connect(addr).await.is_err() && !Path::new(dir).exists())
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "server {pid} on {addr} outlived its SIGKILLed test process"
    );
    Ok(())
}
