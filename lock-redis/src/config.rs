//! [`RedisConfig`]: where the server is and how locks are named there.

use lock_core::{BackendUrl, Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The port a `redis://` URL without one means.
pub const DEFAULT_PORT: u16 = 6379;

/// How long one request may wait for its answer by default (and one
/// connection attempt for its handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach one Redis server and where to put locks in it.
///
/// Built from a URL ([`RedisConfig::from_url`]) or by hand
/// ([`RedisConfig::new`], then set fields).
///
/// # Examples
/// ```
/// use lock_redis::RedisConfig;
/// let c = RedisConfig::from_url("redis://app:s3cret@cache.local:6380/2?prefix=locks:&timeout=500ms").unwrap();
/// assert_eq!((c.host.as_str(), c.port, c.db), ("cache.local", 6380, 2));
/// assert_eq!(c.prefix, "locks:");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS (`rediss://`; needs the crate's `tls` feature).
    pub tls: bool,
    /// The database number (`/db` in the URL).
    pub db: i64,
    /// ACL user name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Put before every key to make the lock's name in Redis (URL option
    /// `prefix=`, empty by default: then a lock `orders:1` is the hash
    /// `orders:1`, exactly where Redisson puts it).
    pub prefix: String,
    /// A PEM file of the certificate authority that signed the server's
    /// certificate, for servers whose certificate the platform's roots do
    /// not vouch for (URL option `tls_ca=`; `rediss://` only).
    pub tls_ca: Option<PathBuf>,
    /// The longest wait for one answer or one connection (URL option
    /// `timeout=`, 3 s by default). An operation that gets no answer in time
    /// fails with [`Error::Unavailable`].
    pub timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .field("tls_ca", &self.tls_ca)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisConfig {
    /// `host:port`, database 0, no credentials, no TLS, empty prefix, the
    /// default timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisConfig {
            host: host.into(),
            port,
            tls: false,
            db: 0,
            user: None,
            password: None,
            prefix: String::new(),
            tls_ca: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `host:port`, as messages name the server.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses `redis://[user:pass@]host[:port][/db][?prefix=...&timeout=...]`
    /// or `rediss://...[?tls_ca=/path/ca.pem]`. Any other option is [`Error::InvalidConfig`]
    /// (the locker's own options, `ttl=` and the like, are for
    /// [`lock_core::connect`]).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = BackendUrl::parse(url)?;
        let config = Self::take_from(&mut parsed)?;
        parsed.finish()?;
        Ok(config)
    }

    /// Reads the scheme, host, credentials, database and this backend's
    /// options (`prefix`, `timeout`) from `url`, leaving other options.
    pub(crate) fn take_from(url: &mut BackendUrl) -> Result<Self> {
        let redacted = url.redacted();
        let bad = |why: String| Error::InvalidConfig(format!("bad URL {redacted}: {why}"));
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(bad(format!("scheme {other:?} is not redis or rediss"))),
        };
        let endpoints = url.endpoints_or(DEFAULT_PORT)?;
        let [endpoint] = endpoints.as_slice() else {
            return Err(bad(format!(
                "{}:// takes one host; use redlock:// for several independent masters",
                url.scheme()
            )));
        };
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| {
                bad(format!(
                    "database {db:?} is not a number (redis://host:port/DB)"
                ))
            })?,
        };
        let mut config = RedisConfig::new(endpoint.host.clone(), endpoint.port);
        config.tls = tls;
        config.db = db;
        config.user = url.user().map(str::to_owned);
        config.password = url.password().map(str::to_owned);
        if let Some(prefix) = url.take("prefix") {
            config.prefix = prefix;
        }
        if let Some(ca) = url.take("tls_ca") {
            if !tls {
                return Err(bad("tls_ca= needs a rediss:// URL".into()));
            }
            config.tls_ca = Some(PathBuf::from(ca));
        }
        if let Some(timeout) = url.take_parsed("timeout", lock_core::parse_duration)? {
            if timeout.is_zero() {
                return Err(bad("timeout=0 would fail every request".into()));
            }
            config.timeout = timeout;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let c = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!((c.port, c.db, c.tls), (DEFAULT_PORT, 0, false));
        assert_eq!(c.addr(), "127.0.0.1:6379");
        let c = RedisConfig::from_url("rediss://u:p%40ss@[::1]:7000/").unwrap();
        assert!(c.tls);
        assert_eq!(c.addr(), "[::1]:7000");
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.user.as_deref(), Some("u"));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let err = |u: &str| RedisConfig::from_url(u).unwrap_err().to_string();
        assert!(err("redis://a:1,b:2").contains("redlock://"));
        assert!(err("redis://a:1/x").contains("\"x\""));
        assert!(err("redis://a:1?prefixx=a").contains("\"prefixx\""));
        assert!(err("redis://a:1?timeout=soon").contains("timeout"));
        assert!(err("redis://a:1?timeout=0s").contains("timeout"));
        assert!(err("http://a:1").contains("\"http\""));
        assert!(err("redis://a:1?tls_ca=/x").contains("rediss://"));
    }
}
