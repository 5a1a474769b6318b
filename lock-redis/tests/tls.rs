//! `rediss://` against a real `redis-server` serving TLS with a certificate
//! signed by a CA made for the test (the kit's `TestCerts`; `openssl` makes
//! them), with the `tls` feature: `cargo test -p lock-redis --features tls`.
//! Without the feature, this file checks that `rediss://` says to enable it.

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn rediss_says_to_enable_the_tls_feature() {
    lock_redis::register();
    let err = lock_core::connect("rediss://127.0.0.1:6379")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), lock_core::ErrorKind::InvalidConfig, "{err}");
    assert!(
        err.to_string()
            .contains("enable the `tls` feature of lock-redis"),
        "{err}"
    );
}

#[cfg(feature = "tls")]
mod common;

#[cfg(feature = "tls")]
mod with_tls {
    use crate::common::{bulks, cmd};
    use conformance::kit::{RedisOptions, RedisServer, TestCerts};

    #[tokio::test]
    async fn rediss_locks_over_tls() {
        let certs = TestCerts::make().await.unwrap();
        let tls_port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let path = |p: std::path::PathBuf| p.display().to_string();
        let server = RedisServer::start_with(RedisOptions {
            extra_args: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                path(certs.server_cert()),
                "--tls-key-file".into(),
                path(certs.server_key()),
                "--tls-ca-cert-file".into(),
                path(certs.ca()),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            ..RedisOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("cannot start redis-server with TLS: {e}"));

        lock_redis::register();
        let url = format!(
            "rediss://127.0.0.1:{tls_port}?tls_ca={}&timeout=2s",
            path(certs.ca())
        );
        let locker = lock_core::connect(&url).await.unwrap();
        let guard = locker.request("orders:1").owner("o1").lock().await.unwrap();
        // Seen through the plain port: the same server, the same layout.
        assert_eq!(
            cmd(server.addr(), &["HGETALL", "orders:1"]).await,
            bulks(&["o1", "1"])
        );
        guard.release().await.unwrap();

        // Without the CA the server's certificate is not trusted: an error,
        // never a connection.
        let untrusted = format!("rediss://127.0.0.1:{tls_port}?timeout=2s");
        assert!(lock_core::connect(&untrusted).await.is_err());
    }
}
