//! `etcd://` URLs and the options they carry.

use lock_core::{BackendUrl, Endpoint, Error, Result, parse_duration};
use std::fmt;
use std::time::Duration;

/// How long one request to etcd may take before it counts as unanswered
/// ([`Error::Unavailable`]), by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many idle, kept-alive leases the backend keeps per ttl, by default,
/// so that an uncontended acquire is one round trip.
pub const DEFAULT_POOL: usize = 2;

/// Where and how to connect: parsed from an `etcd://` URL by
/// [`EtcdConfig::from_url`], or built by hand.
///
/// # Examples
/// ```
/// use lock_etcd::EtcdConfig;
/// let mut url = lock_core::BackendUrl::parse("etcd://a:2379,b:2379?prefix=locks/").unwrap();
/// let config = EtcdConfig::from_url(&mut url).unwrap();
/// assert_eq!(config.endpoints.len(), 2);
/// assert_eq!(config.prefix, "locks/");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The members to talk to (any subset of the cluster; requests need a
    /// leader).
    pub endpoints: Vec<Endpoint>,
    /// Put before every lock name in etcd (`prefix=`). Empty by default, so
    /// that `etcdctl lock NAME` and this crate's lock on `NAME` meet.
    pub prefix: String,
    /// User name and password (`etcd://user:pass@host:port`), for etcd's
    /// own authentication.
    pub user: Option<(String, String)>,
    /// Per-request timeout (`timeout=`), also used to connect.
    pub timeout: Duration,
    /// Idle leases kept per ttl (`pool=`, 0 turns the pool off: every
    /// acquire then grants its lease first, two round trips).
    pub pool: usize,
    /// Connect with TLS (`tls=true`; needs the crate's `tls` feature).
    pub tls: bool,
    /// A PEM file of CA certificates to trust besides the platform's
    /// (`cacert=PATH`; implies `tls=true`).
    pub ca_cert: Option<std::path::PathBuf>,
    /// A client certificate and its private key, PEM files (`cert=PATH`
    /// and `key=PATH`, both or neither; imply `tls=true`), for a cluster
    /// that checks client certificates (`--client-cert-auth`).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints_text())
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "***")))
            .field("timeout", &self.timeout)
            .field("pool", &self.pool)
            .field("tls", &self.tls)
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl EtcdConfig {
    /// A configuration for `endpoints` with every option at its default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: String::new(),
            user: None,
            timeout: DEFAULT_TIMEOUT,
            pool: DEFAULT_POOL,
            tls: false,
            ca_cert: None,
            client_cert: None,
        }
    }

    /// Reads the host list, user info and the options this backend knows
    /// (`prefix`, `timeout`, `pool`, `tls`, `cacert`, `cert`, `key`) from
    /// `url`, leaving any other option for [`BackendUrl::finish`] to report.
    pub fn from_url(url: &mut BackendUrl) -> Result<Self> {
        let mut config = EtcdConfig::new(url.endpoints()?);
        if url.path().len() > 1 {
            return Err(Error::config(format!(
                "bad URL {}: etcd:// takes no path; use ?prefix=... to place the locks",
                url.redacted()
            )));
        }
        if let Some(user) = url.user() {
            config.user = Some((user.to_owned(), url.password().unwrap_or("").to_owned()));
        }
        if let Some(prefix) = url.take("prefix") {
            config.prefix = prefix;
        }
        if let Some(timeout) = url.take_parsed("timeout", parse_duration)? {
            if timeout.is_zero() {
                return Err(Error::config(format!(
                    "option timeout in {} must be more than zero",
                    url.redacted()
                )));
            }
            config.timeout = timeout;
        }
        if let Some(pool) = url.take_parsed("pool", |v| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n <= 64)
                .ok_or_else(|| Error::config("expected a number of leases from 0 to 64"))
        })? {
            config.pool = pool;
        }
        let tls_given = url.take_bool("tls")?;
        if let Some(tls) = tls_given {
            if tls && !cfg!(feature = "tls") {
                return Err(Error::config(format!(
                    "tls=true in {} needs lock-etcd built with its `tls` feature",
                    url.redacted()
                )));
            }
            config.tls = tls;
        }
        let needs_tls = |option: &str, url: &BackendUrl| {
            if cfg!(feature = "tls") {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{option}= in {} needs lock-etcd built with its `tls` feature",
                    url.redacted()
                )))
            }
        };
        if let Some(path) = url.take("cacert") {
            needs_tls("cacert", url)?;
            config.ca_cert = Some(path.into());
            config.tls = true;
        }
        match (url.take("cert"), url.take("key")) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                needs_tls("cert", url)?;
                config.client_cert = Some((cert.into(), key.into()));
                config.tls = true;
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::config(format!(
                    "bad URL {}: a client certificate needs both cert=PATH and key=PATH",
                    url.redacted()
                )));
            }
        }
        if config.tls && tls_given == Some(false) {
            return Err(Error::config(format!(
                "bad URL {}: tls=false, but cacert=, cert= or key= ask for TLS",
                url.redacted()
            )));
        }
        Ok(config)
    }

    /// The endpoints as `h1:p1,h2:p2`, for messages.
    pub fn endpoints_text(&self) -> String {
        let list: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        list.join(",")
    }

    /// The endpoints as the URLs etcd-client takes.
    pub(crate) fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EtcdConfig> {
        let mut url = BackendUrl::parse(text)?;
        let config = EtcdConfig::from_url(&mut url)?;
        url.finish()?;
        Ok(config)
    }

    #[test]
    fn reads_hosts_user_and_options() {
        let c = parse("etcd://u:p%40ss@a:1,[::1]:2?prefix=x/&timeout=2s&pool=0").unwrap();
        assert_eq!(c.endpoints_text(), "a:1,[::1]:2");
        assert_eq!(c.endpoint_urls(), ["http://a:1", "http://[::1]:2"]);
        assert_eq!(c.user, Some(("u".into(), "p@ss".into())));
        assert_eq!(c.prefix, "x/");
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.pool, 0);
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn names_what_is_wrong() {
        let e = parse("etcd://a:1?pool=many").unwrap_err().to_string();
        assert!(e.contains("pool"), "{e}");
        let e = parse("etcd://a:1?prefx=x").unwrap_err().to_string();
        assert!(e.contains("\"prefx\""), "{e}");
        let e = parse("etcd://a").unwrap_err().to_string();
        assert!(e.contains("no port"), "{e}");
        let e = parse("etcd://a:1/path").unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
        let e = parse("etcd://a:1?timeout=0s").unwrap_err().to_string();
        assert!(e.contains("timeout"), "{e}");
        let e = parse("etcd://a:1?cert=/c.pem").unwrap_err().to_string();
        assert!(e.contains("cert=PATH and key=PATH"), "{e}");
        let e = parse("etcd://a:1?key=/c.key").unwrap_err().to_string();
        assert!(e.contains("cert=PATH and key=PATH"), "{e}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_options_turn_tls_on() {
        let c = parse("etcd://a:1?cacert=/ca.pem&cert=/c.pem&key=/c.key").unwrap();
        assert!(c.tls);
        assert_eq!(c.endpoint_urls(), ["https://a:1"]);
        assert_eq!(c.ca_cert, Some("/ca.pem".into()));
        assert_eq!(c.client_cert, Some(("/c.pem".into(), "/c.key".into())));
        let e = parse("etcd://a:1?tls=false&cacert=/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls=false"), "{e}");
    }
}
