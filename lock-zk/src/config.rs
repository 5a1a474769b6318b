//! [`ZkConfig`]: what a `zk://` URL says.

use crate::path::normalize_base;
use lock_core::{BackendUrl, Endpoint, Error, Result, Ttl, parse_duration};
use std::time::Duration;

/// The session timeout asked for when the URL names none: the SPEC's
/// default ttl.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// The base path of locks when the URL names no `prefix=`.
pub const DEFAULT_PREFIX: &str = "/dlock";

/// How to reach the ensemble and where the locks live.
///
/// `zk://h1:p1[,h2:p2...][/chroot][?session_timeout=10s&prefix=/locks]`:
/// the lock of key `K` is the node `<chroot><prefix>/<K escaped>` (see
/// [`decode_key`](crate::decode_key)), its contenders are that node's
/// children.
///
/// # Examples
/// ```
/// use lock_zk::ZkConfig;
/// use std::time::Duration;
/// let c = ZkConfig::from_url("zk://a:2181,b:2181/app?session_timeout=5s&prefix=locks").unwrap();
/// assert_eq!(c.connect_string(), "a:2181,b:2181");
/// assert_eq!(c.base(), "/app/locks");
/// assert_eq!(c.session_timeout, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkConfig {
    /// The servers.
    pub endpoints: Vec<Endpoint>,
    /// The chroot (empty, or `/a/b`).
    pub chroot: String,
    /// The prefix under the chroot (empty, or `/a/b`).
    pub prefix: String,
    /// The session timeout of holds that ask the default ttl (30 s, a
    /// request that names none): the URL's `session_timeout=`, else its
    /// `ttl=`, else 30 s. Its session is opened at connect; holds asking
    /// another ttl get sessions of their own (see the crate docs). The
    /// server clamps every timeout to its
    /// `[minSessionTimeout, maxSessionTimeout]`; a hold's effective ttl is
    /// its session's negotiated timeout.
    pub session_timeout: Duration,
}

impl ZkConfig {
    /// A configuration for `endpoints` with the default prefix and session
    /// timeout, and no chroot.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        ZkConfig {
            endpoints,
            chroot: String::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
        }
    }

    /// Parses a `zk://` URL (see the type's docs).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = BackendUrl::parse(url)?;
        let config = Self::take_from(&mut parsed)?;
        parsed.finish()?;
        Ok(config)
    }

    /// Takes what this backend knows from `url`, leaving other options for
    /// the registry to report.
    pub fn take_from(url: &mut BackendUrl) -> Result<Self> {
        if url.scheme() != "zk" {
            return Err(Error::config(format!(
                "{} is not a zk:// URL",
                url.redacted()
            )));
        }
        if url.user().is_some() || url.password().is_some() {
            return Err(Error::config(format!(
                "bad URL {}: zk:// takes no user or password",
                url.redacted()
            )));
        }
        let endpoints = url.endpoints()?;
        let chroot = normalize_base("chroot", url.path())
            .map_err(|e| Error::config(format!("bad URL {}: {e}", url.redacted())))?;
        let prefix = match url.take("prefix") {
            Some(p) => normalize_base("prefix", &p)
                .map_err(|e| Error::config(format!("bad URL {}: {e}", url.redacted())))?,
            None => DEFAULT_PREFIX.to_owned(),
        };
        let session_timeout = url.take_parsed("session_timeout", |v| {
            let d = parse_duration(v)?;
            Ttl::new(d).map(Ttl::get)
        })?;
        // `ttl=` is the locker's, taken from the URL before the backend
        // sees it: read it from the URL's text. On zk:// it and
        // `session_timeout=` are one knob, so they must agree.
        let ttl = BackendUrl::parse(&url.redacted())
            .ok()
            .and_then(|mut u| u.take("ttl"))
            .and_then(|v| parse_duration(&v).ok())
            .and_then(|d| Ttl::new(d).ok())
            .map(Ttl::get);
        let session_timeout = match (session_timeout, ttl) {
            (Some(s), Some(t)) if s != t => {
                return Err(Error::config(format!(
                    "bad URL {}: ttl={} and session_timeout={} disagree; on zk:// a hold's ttl \
                     is its session's timeout: give one of them",
                    url.redacted(),
                    lock_core::format_duration(t),
                    lock_core::format_duration(s),
                )));
            }
            (Some(s), _) => s,
            (None, Some(t)) => t,
            (None, None) => DEFAULT_SESSION_TIMEOUT,
        };
        Ok(ZkConfig {
            endpoints,
            chroot,
            prefix,
            session_timeout,
        })
    }

    /// Sets the prefix (checked like the URL option).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        self.prefix = normalize_base("prefix", prefix)?;
        Ok(self)
    }

    /// Sets the session timeout to ask for.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// `h1:p1,h2:p2`, as ZooKeeper clients take it (without the chroot:
    /// this crate puts the chroot in front of its paths itself, so that it
    /// need not exist beforehand).
    pub fn connect_string(&self) -> String {
        let hosts: Vec<String> = self.endpoints.iter().map(|e| e.to_string()).collect();
        hosts.join(",")
    }

    /// Where the locks live: chroot then prefix (empty for the root).
    pub fn base(&self) -> String {
        format!("{}{}", self.chroot, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let c = ZkConfig::from_url("zk://h:1").unwrap();
        assert_eq!(c.base(), DEFAULT_PREFIX);
        assert_eq!(c.session_timeout, DEFAULT_SESSION_TIMEOUT);
        let c = ZkConfig::from_url("zk://h:1,[::1]:2/a/b?prefix=").unwrap();
        assert_eq!(c.base(), "/a/b");
        assert_eq!(c.connect_string(), "h:1,[::1]:2");
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |u: &str| ZkConfig::from_url(u).unwrap_err().to_string();
        assert!(err("zk://h:1?session_timeout=soon").contains("session_timeout"));
        assert!(err("zk://h:1?session_timeout=0s").contains("session_timeout"));
        assert!(err("zk://h:1?prefix=/a/../b").contains("prefix"));
        assert!(err("zk://h:1/a/./b").contains("chroot"));
        assert!(err("zk://h:1?colour=red").contains("colour"));
        assert!(err("zk://u:p@h:1").contains("no user"));
        assert!(err("zk://h").contains("no port"));
    }

    #[test]
    fn ttl_and_session_timeout_are_one_knob() {
        let take = |u: &str| {
            let mut url = BackendUrl::parse(u).unwrap();
            // As the registry does before the backend sees the URL.
            url.take("ttl");
            ZkConfig::take_from(&mut url).map(|c| c.session_timeout)
        };
        assert_eq!(take("zk://h:1?ttl=5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            take("zk://h:1?session_timeout=7s").unwrap(),
            Duration::from_secs(7)
        );
        assert_eq!(
            take("zk://h:1?ttl=7s&session_timeout=7s").unwrap(),
            Duration::from_secs(7)
        );
        let err = take("zk://h:1?ttl=5s&session_timeout=7s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("disagree"), "{err}");
        assert_eq!(take("zk://h:1").unwrap(), DEFAULT_SESSION_TIMEOUT);
    }
}
