//! `etcd://...?cacert=...&cert=...&key=...` against a real etcd from the
//! kit serving TLS with certificates from a CA made for the test (the kit's
//! [`TestCerts`](conformance::kit::TestCerts); `openssl` makes them) and
//! requiring client certificates, with the `tls` feature: `cargo nextest
//! run -p lock-etcd --features tls --test tls`. Without the feature, this
//! file checks that the TLS options say to enable it.

#[cfg(not(feature = "tls"))]
#[test]
fn tls_options_say_to_enable_the_tls_feature() {
    for options in ["tls=true", "cacert=/ca.pem", "cert=/c.pem&key=/c.key"] {
        let mut url =
            lock_core::BackendUrl::parse(&format!("etcd://127.0.0.1:2379?{options}")).unwrap();
        let err = lock_etcd::EtcdConfig::from_url(&mut url).unwrap_err();
        assert_eq!(err.kind(), lock_core::ErrorKind::InvalidConfig, "{err}");
        assert!(
            err.to_string()
                .contains("needs lock-etcd built with its `tls` feature"),
            "{err}"
        );
    }
}

#[cfg(feature = "tls")]
mod with_tls {
    use conformance::kit::{EtcdCluster, EtcdOptions, TestCerts};
    use lock_core::ErrorKind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn locks_over_tls_with_a_client_certificate() {
        let certs = TestCerts::make().await.unwrap();
        let mut options = EtcdOptions::default();
        options.tls = Some((certs.server_cert(), certs.server_key()));
        options.client_ca = Some(certs.ca());
        let etcd = EtcdCluster::start_with(1, options)
            .await
            .unwrap_or_else(|e| panic!("cannot start etcd with TLS: {e}"));
        let tls = etcd.tls_endpoints()[0];
        let ca = certs.ca().display().to_string();
        let cert = certs.client_cert().display().to_string();
        let key = certs.client_key().display().to_string();
        lock_etcd::register();

        let url = format!("etcd://{tls}?cacert={ca}&cert={cert}&key={key}&timeout=2s&ttl=1s");
        let locker = lock_core::connect(&url).await.expect("connect over TLS");
        let guard = locker.lock("tls").await.unwrap();
        // Renewed over the keep-alive stream (TLS too), still held.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(guard.is_held());
        // The same lock, seen through the plain port: one server.
        let plain = lock_core::connect(&format!("{}?timeout=2s", etcd.url()))
            .await
            .unwrap();
        assert!(plain.try_lock("tls").await.unwrap().is_none());
        guard.release().await.unwrap();
        assert!(plain.try_lock("tls").await.unwrap().is_some());

        // Without the client certificate the server refuses: an error,
        // never a connection.
        let no_cert = format!("etcd://{tls}?cacert={ca}&timeout=2s");
        assert!(lock_core::connect(&no_cert).await.is_err());
        // Without the CA the server's certificate is not trusted.
        let untrusted = format!("etcd://{tls}?cert={cert}&key={key}&timeout=2s");
        assert!(lock_core::connect(&untrusted).await.is_err());
        // TLS against the plain port fails too.
        let plain_port = etcd.endpoints()[0];
        let wrong = format!("etcd://{plain_port}?cacert={ca}&cert={cert}&key={key}&timeout=2s");
        assert!(lock_core::connect(&wrong).await.is_err());
    }

    #[tokio::test]
    async fn unreadable_certificate_files_are_invalid_config_naming_them() {
        lock_etcd::register();
        let err = lock_core::connect("etcd://127.0.0.1:1?cacert=/nonexistent/ca.pem")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = lock_core::connect("etcd://127.0.0.1:1?cert=/c.pem")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains("key="), "{err}");
    }
}
