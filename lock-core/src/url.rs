//! Parsing of backend URLs (SPEC "URLs"):
//! `scheme://[user:pass@]host:port[,host:port...][/path][?option=value&...]`.
//!
//! The `url` crate cannot read host lists (`h1:p1,h2:p2`), so this is a
//! small parser of its own; it percent-decodes user info and options.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// One `host:port` of a URL's host list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed backend URL. Backends take the options they know with
/// [`take`](Self::take); the registry reports any option left over as
/// unknown, so a typo is never silently ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrl {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    hosts: String,
    path: String,
    options: BTreeMap<String, String>,
    text: String,
}

fn bad(url: &str, why: impl fmt::Display) -> Error {
    Error::InvalidConfig(format!("bad URL {:?}: {why}", redact(url)))
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
        }
    }
    url.to_owned()
}

fn decode(url: &str, s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(url, format!("bad percent-escape in {s:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad(url, format!("{s:?} is not UTF-8 once decoded")))
}

impl BackendUrl {
    /// Parses `text`, or fails with [`Error::InvalidConfig`] naming what is
    /// wrong. Does not check the scheme or options: the registry and the
    /// backend do.
    ///
    /// # Examples
    /// ```
    /// use lock_core::BackendUrl;
    /// let mut url = BackendUrl::parse("redlock://a:6379,b:6380?quorum=2").unwrap();
    /// assert_eq!(url.scheme(), "redlock");
    /// assert_eq!(url.endpoints().unwrap().len(), 2);
    /// assert_eq!(url.take("quorum").as_deref(), Some("2"));
    /// assert!(BackendUrl::parse("redis//nope").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad(text, "expected scheme://..., e.g. redis://127.0.0.1:6379"))?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(bad(text, format!("bad scheme {scheme:?}")));
        }
        if rest.contains('#') {
            return Err(bad(text, "fragments (#...) are not allowed"));
        }
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(decode(text, u)?), Some(decode(text, p)?)),
                None => (Some(decode(text, info)?), None),
            },
        };
        let mut options = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(text, k)?;
            if k.is_empty() {
                return Err(bad(text, "an option has no name"));
            }
            if options.insert(k.clone(), decode(text, v)?).is_some() {
                return Err(bad(text, format!("option {k:?} given twice")));
            }
        }
        Ok(BackendUrl {
            scheme: scheme.to_ascii_lowercase(),
            user: user.filter(|u| !u.is_empty()),
            password,
            hosts: hosts.to_owned(),
            path: path.to_owned(),
            options,
            text: text.to_owned(),
        })
    }

    /// The scheme, lowercased.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The raw host list (may be empty: `memory://`).
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    /// The path, with its leading `/` (empty if none).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URL as given, with the password redacted (for messages).
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }

    /// The host list as endpoints; every entry needs a host and a port.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        if self.hosts.is_empty() {
            return Err(bad(&self.text, "no host given (expected host:port)"));
        }
        self.hosts
            .split(',')
            .map(|entry| self.endpoint(entry, None))
            .collect()
    }

    /// The host list as endpoints, with `default_port` for entries that
    /// name none.
    pub fn endpoints_or(&self, default_port: u16) -> Result<Vec<Endpoint>> {
        if self.hosts.is_empty() {
            return Err(bad(&self.text, "no host given (expected host:port)"));
        }
        self.hosts
            .split(',')
            .map(|entry| self.endpoint(entry, Some(default_port)))
            .collect()
    }

    fn endpoint(&self, entry: &str, default_port: Option<u16>) -> Result<Endpoint> {
        let url = &self.text;
        if entry.is_empty() {
            return Err(bad(url, "empty entry in the host list"));
        }
        let (host, port) =
            if let Some(rest) = entry.strip_prefix('[') {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or_else(|| bad(url, format!("unclosed [ in {entry:?}")))?;
                match after {
                    "" => (host, None),
                    p => (
                        host,
                        Some(p.strip_prefix(':').ok_or_else(|| {
                            bad(url, format!("expected :port after ] in {entry:?}"))
                        })?),
                    ),
                }
            } else {
                match entry.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (entry, None),
                }
            };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(bad(url, format!("bad host {host:?}")));
        }
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(url, format!("bad port {p:?} (1 to 65535)")))?,
            (None, Some(d)) => d,
            (None, None) => return Err(bad(url, format!("{entry:?} has no port"))),
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// Removes and returns option `name`.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.options.remove(name)
    }

    /// Removes option `name` and parses it with `parse`; a parse error
    /// names the option.
    pub fn take_parsed<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.options.remove(name) {
            None => Ok(None),
            Some(v) => parse(&v).map(Some).map_err(|e| {
                Error::InvalidConfig(format!("option {name}={v:?} in {}: {e}", self.redacted()))
            }),
        }
    }

    /// Removes a boolean option (`true`/`false`, `1`/`0`, `yes`/`no`).
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
        self.take_parsed(name, |v| match v {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Error::config("expected true or false")),
        })
    }

    /// Fails with [`Error::InvalidConfig`] naming any option nobody took.
    pub fn finish(&self) -> Result<()> {
        match self.options.keys().next() {
            None => Ok(()),
            Some(name) => Err(Error::InvalidConfig(format!(
                "unknown option {name:?} for {}:// in {}",
                self.scheme,
                self.redacted()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_spec_forms() {
        let u = BackendUrl::parse("redis://user:p%40ss@127.0.0.1:6379/2").unwrap();
        assert_eq!((u.user(), u.password()), (Some("user"), Some("p@ss")));
        assert_eq!(u.path(), "/2");
        assert_eq!(u.endpoints().unwrap()[0].to_string(), "127.0.0.1:6379");
        assert!(!u.redacted().contains("p%40ss"));

        let u = BackendUrl::parse("zk://a:1,b:2,[::1]:3/app/locks").unwrap();
        let eps = u.endpoints().unwrap();
        assert_eq!(eps[2].host, "::1");
        assert_eq!(u.path(), "/app/locks");

        let u = BackendUrl::parse("memory://").unwrap();
        assert_eq!(u.hosts(), "");
    }

    #[test]
    fn names_what_is_wrong() {
        let text = |u: &str| {
            BackendUrl::parse(u)
                .and_then(|u| u.endpoints())
                .unwrap_err()
                .to_string()
        };
        assert!(text("redis:/x").contains("scheme://"));
        assert!(text("redis://h:0").contains("bad port"));
        assert!(text("redis://h:99999").contains("bad port"));
        assert!(text("redlock://a:1,,b:2").contains("empty entry"));
        assert!(text("redis://h").contains("no port"));
        assert!(text("redis://").contains("no host"));
        assert!(text("redis://h:1?x=1&x=2").contains("twice"));
        assert!(text("1redis://h:1").contains("bad scheme"));
    }

    #[test]
    fn leftover_options_are_errors() {
        let mut u = BackendUrl::parse("redis://h:1?prefix=a&tll=5s").unwrap();
        assert_eq!(u.take("prefix").as_deref(), Some("a"));
        let e = u.finish().unwrap_err().to_string();
        assert!(e.contains("\"tll\""), "{e}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,60}") {
            if let Ok(u) = BackendUrl::parse(&s) {
                let _ = u.endpoints();
                let _ = u.redacted();
            }
        }

        #[test]
        fn parse_url_like_never_panics(s in "[a-z]{1,6}://[a-z0-9:@,%\\[\\]/?=&.-]{0,40}") {
            if let Ok(u) = BackendUrl::parse(&s) {
                let _ = u.endpoints_or(1);
            }
        }
    }
}
