//! Certificates for TLS tests: a CA made for the test, a server certificate
//! for 127.0.0.1 and a client certificate, both signed by it. `openssl`
//! makes them (`scripts/install-servers` installs it).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::KitError;
use super::binaries::{find_program, scratch_dir};

/// A test CA and the certificates it signed, as PEM files in a scratch
/// directory that is removed when this is dropped. Keys are unencrypted
/// P-256; everything is valid for one day.
///
/// | file | what |
/// | --- | --- |
/// | [`ca`](Self::ca) | the CA certificate, to trust |
/// | [`server_cert`](Self::server_cert), [`server_key`](Self::server_key) | for `127.0.0.1` and `localhost` (server auth) |
/// | [`client_cert`](Self::client_cert), [`client_key`](Self::client_key) | CN `dlock test client` (client auth) |
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
}

const CURVE: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

impl TestCerts {
    /// Makes a CA and a server and a client certificate signed by it.
    ///
    /// Fails with [`KitError::MissingBinary`] if `openssl` is not
    /// installed, or with the output of the `openssl` command that failed.
    pub async fn make() -> Result<TestCerts, KitError> {
        let openssl = find_program("openssl", "openssl")?;
        let dir = scratch_dir("dlock-certs-")?;
        let run = |args: Vec<&str>| {
            let openssl = openssl.clone();
            let dir = dir.path().to_owned();
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            async move {
                let out = tokio::process::Command::new(&openssl)
                    .args(&args)
                    .current_dir(&dir)
                    .output()
                    .await
                    .map_err(|e| KitError::io("cannot run openssl", e))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(KitError::protocol(format!(
                        "openssl {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            }
        };
        let with_curve = |mut args: Vec<&'static str>, tail: [&'static str; 4]| {
            args.extend(CURVE);
            args.extend(tail);
            args
        };
        run(with_curve(
            vec![
                "req",
                "-x509",
                "-new",
                "-days",
                "1",
                "-subj",
                "/CN=dlock test CA",
            ],
            ["-keyout", "ca.key", "-out", "ca.pem"],
        ))
        .await?;
        for (name, cn, ext) in [
            (
                "server",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            (
                "client",
                "/CN=dlock test client",
                "extendedKeyUsage=clientAuth\n",
            ),
        ] {
            let csr = format!("{name}.csr");
            let key = format!("{name}.key");
            let pem = format!("{name}.pem");
            let cnf = format!("{name}.cnf");
            std::fs::write(
                dir.path().join(&cnf),
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{ext}"
                ),
            )
            .map_err(|e| KitError::io("cannot write an openssl extension file", e))?;
            let mut req = vec!["req", "-new", "-subj", cn];
            req.extend(CURVE);
            req.extend(["-keyout", &key, "-out", &csr]);
            run(req).await?;
            run(vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &cnf,
                "-out",
                &pem,
            ])
            .await?;
        }
        Ok(TestCerts { dir })
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The client certificate (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client certificate's private key (PEM).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}
