//! [`UrlFixture`]: the suite against a live deployment named by URL.

use crate::fixture::Fixture;
use async_trait::async_trait;
use lock_core::{Locker, Result, format_duration};
use std::time::Duration;

/// Options the fixture sets itself, or that would change what a check
/// measures (a default wait turns "wait until granted" into a timeout;
/// `renew=false` would fail the renewal check): dropped from the user's URL.
const OWNED_OPTIONS: &[&str] = &["ttl", "wait", "renew"];

/// Lockers made by [`lock_core::connect`] on a URL, one connection each,
/// with `ttl=` set per locker. No fault injection: a live deployment is
/// never hurt, so the destructive checks are not applicable.
#[derive(Clone, Debug)]
pub struct UrlFixture {
    url: String,
    key_prefix: String,
}

impl UrlFixture {
    /// A fixture for `url` (its `ttl`, `wait` and `renew` options are
    /// replaced by the checks' own).
    pub fn new(url: impl Into<String>) -> Self {
        UrlFixture {
            url: without_options(&url.into(), OWNED_OPTIONS),
            key_prefix: "dlock-conformance".to_owned(),
        }
    }

    /// Puts every key the checks use under `prefix` (default
    /// `dlock-conformance`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The URL lockers are made from, before `ttl=` is added.
    pub fn base_url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl Fixture for UrlFixture {
    fn name(&self) -> String {
        lock_core::redact(&self.url)
    }

    async fn locker(&self, ttl: Duration) -> Result<Locker> {
        lock_core::connect(&with_option(&self.url, "ttl", &format_duration(ttl))).await
    }

    fn key_prefix(&self) -> String {
        self.key_prefix.clone()
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }
}

/// `url` with `name=value` added to its query (replacing a `name` it had).
pub(crate) fn with_option(url: &str, name: &str, value: &str) -> String {
    let base = without_options(url, &[name]);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{name}={value}")
}

/// `url` without the query options named in `names`.
pub(crate) fn without_options(url: &str, names: &[&str]) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && !names.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_replaced_not_duplicated() {
        assert_eq!(with_option("memory://", "ttl", "1s"), "memory://?ttl=1s");
        assert_eq!(
            with_option("redis://h:1?ttl=5s&prefix=x", "ttl", "1s"),
            "redis://h:1?prefix=x&ttl=1s"
        );
        assert_eq!(
            UrlFixture::new("etcd://h:1?wait=1s&renew=false&ttl=3s").base_url(),
            "etcd://h:1"
        );
    }
}
