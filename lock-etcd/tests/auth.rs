//! etcd's own authentication (`etcd://user:password@host:port`) against a
//! real etcd from the kit with auth enabled (user `root`, as `etcdctl user
//! add root` and `etcdctl auth enable` make it).

use conformance::kit::EtcdCluster;
use etcd_client::{Client, ConnectOptions, DeleteOptions};
use lock_core::ErrorKind;
use std::time::Duration;
use tokio::time::{sleep, timeout};

const PASSWORD: &str = "s3cret p@ss";

fn url(etcd: &EtcdCluster, userinfo: &str, options: &str) -> String {
    let host = etcd.endpoints()[0];
    format!("etcd://{userinfo}{host}?timeout=2s{options}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_lock_renew_and_watch_on_an_etcd_with_auth() {
    let etcd = EtcdCluster::single().await.unwrap();
    etcd.enable_auth(PASSWORD).await.unwrap();
    lock_etcd::register();
    // The password is percent-encoded in the URL.
    let locker = lock_core::connect(&url(&etcd, "root:s3cret%20p%40ss@", "&ttl=1s"))
        .await
        .expect("connect with user and password");
    let guard = locker.lock("authed").await.unwrap();
    // Renewed over the keep-alive stream (a third of the 1 s ttl), and
    // watched: both streams carry the user's token.
    sleep(Duration::from_millis(1500)).await;
    assert!(guard.is_held(), "renewals failed under auth");
    let status = locker.status("authed").await.unwrap();
    assert_eq!(status.holders.len(), 1, "{status:?}");
    let mut admin = Client::connect(
        [etcd.endpoints()[0].to_string()],
        Some(ConnectOptions::new().with_user("root", PASSWORD)),
    )
    .await
    .unwrap();
    admin
        .delete("authed/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let reason = timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("loss reported under auth");
    assert!(reason.to_string().contains("deleted"), "{reason}");
    let again = locker.lock("authed").await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_a_clear_error() {
    let etcd = EtcdCluster::single().await.unwrap();
    etcd.enable_auth(PASSWORD).await.unwrap();
    lock_etcd::register();
    let err = lock_core::connect(&url(&etcd, "root:wrong@", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("wrong"), "the password leaked: {text}");
    let err = lock_core::connect(&url(&etcd, "", "")).await.unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(text.contains("user name is empty"), "{text}");
}
