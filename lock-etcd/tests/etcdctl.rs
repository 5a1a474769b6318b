//! Interoperability with the official clients: `etcdctl lock NAME --
//! <command>` (etcd's `concurrency.Mutex`) and this crate's lock on NAME
//! exclude each other, in both directions, on one real etcd from the kit;
//! so do etcd-client's `LockClient` (etcd's server-side v3lock) and this crate.

use conformance::kit::EtcdCluster;
use lock_core::{ErrorKind, Locker};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// Long enough for `etcdctl` to start, connect and queue (or grab) its key.
const SETTLE: Duration = Duration::from_millis(1500);

/// A wait that a passing run never reaches.
const LONG: Duration = Duration::from_secs(20);

async fn locker(etcd: &EtcdCluster) -> Locker {
    lock_etcd::register();
    lock_core::connect(&format!("{}?ttl=10s", etcd.url()))
        .await
        .expect("connect")
}

/// `etcdctl lock NAME -- sh -c SCRIPT DIR` against `etcd`.
fn etcdctl_lock(etcd: &EtcdCluster, name: &str, script: &str, dir: &Path) -> Child {
    let endpoints: Vec<String> = etcd.endpoints().iter().map(ToString::to_string).collect();
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["lock", name, "--", "sh", "-c", script])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etcdctl is installed (scripts/install-servers)")
}

fn scratch(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("lock-etcd-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn until_exists(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < LONG, "{} never appeared", path.display());
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn etcdctl_waits_while_this_crate_holds_the_lock() {
    let etcd = EtcdCluster::single().await.unwrap();
    let ours = locker(&etcd).await;
    let dir = scratch("ctl-waits");
    let guard = ours.lock("interop/a").await.unwrap();
    // etcdctl's command records that it ran, and when.
    let mut ctl = etcdctl_lock(&etcd, "interop/a", r#"touch "$0/ran""#, &dir);
    sleep(SETTLE).await;
    assert!(
        !dir.join("ran").exists(),
        "etcdctl ran its command while this crate held the lock"
    );
    assert!(ctl.try_wait().unwrap().is_none(), "etcdctl gave up waiting");
    let status = ours.status("interop/a").await.unwrap();
    assert_eq!(
        status.waiters,
        Some(1),
        "etcdctl's key queues behind ours: {status:?}"
    );
    guard.release().await.unwrap();
    let out = timeout(LONG, ctl.wait_with_output())
        .await
        .expect("etcdctl gets the lock once released")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.join("ran").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn this_crate_waits_while_etcdctl_holds_the_lock() {
    let etcd = EtcdCluster::single().await.unwrap();
    let ours = locker(&etcd).await;
    let dir = scratch("we-wait");
    // etcdctl holds the lock until the file `done` appears.
    let script = r#"touch "$0/held"; while [ ! -e "$0/done" ]; do sleep 0.05; done"#;
    let ctl = etcdctl_lock(&etcd, "interop/b", script, &dir);
    until_exists(&dir.join("held")).await;
    let etcdctl_token = ours.status("interop/b").await.unwrap().holders[0]
        .token
        .expect("etcdctl's key has a create revision");
    assert!(ours.try_lock("interop/b").await.unwrap().is_none());
    let err = ours
        .request("interop/b")
        .wait(Duration::from_millis(500))
        .lock()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Queue for real, then let etcdctl finish and release.
    let waiting = tokio::spawn({
        let ours = ours.clone();
        async move { ours.lock("interop/b").await }
    });
    sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "granted while etcdctl held the lock"
    );
    std::fs::write(dir.join("done"), b"").unwrap();
    let guard = timeout(LONG, waiting)
        .await
        .expect("granted once etcdctl releases")
        .unwrap()
        .unwrap();
    assert!(guard.token() > etcdctl_token);
    let out = timeout(LONG, ctl.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    guard.release().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn etcd_client_lock_client_and_this_crate_exclude_each_other() {
    // etcd's server-side v3lock (etcd-client's `LockClient`) runs the same
    // mutex protocol on the same keys.
    let etcd = EtcdCluster::single().await.unwrap();
    let ours = locker(&etcd).await;
    let endpoints: Vec<String> = etcd.endpoints().iter().map(ToString::to_string).collect();
    let mut client = etcd_client::Client::connect(&endpoints, None)
        .await
        .unwrap();
    let lease = client.lease_grant(30, None).await.unwrap().id();
    let mut lock_client = client.lock_client();

    // Theirs first: ours waits.
    let held = lock_client
        .lock(
            "interop/c",
            Some(etcd_client::LockOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    assert!(ours.try_lock("interop/c").await.unwrap().is_none());
    lock_client.unlock(held.key()).await.unwrap();
    let guard = ours.try_lock("interop/c").await.unwrap().expect("free now");

    // Ours first: theirs waits until ours is released.
    let mut theirs = lock_client.clone();
    let waiting = tokio::spawn(async move {
        theirs
            .lock(
                "interop/c",
                Some(etcd_client::LockOptions::new().with_lease(lease)),
            )
            .await
    });
    sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "LockClient got the lock while ours held it"
    );
    guard.release().await.unwrap();
    let theirs = timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
    lock_client.unlock(theirs.key()).await.unwrap();
    client.lease_revoke(lease).await.unwrap();
}
