//! Backends chosen by URL scheme (SPEC "URLs"): [`connect`] builds a
//! [`Locker`] from a string, so moving a service from Redis to etcd is a
//! configuration change.
//!
//! `memory://` is always there. A store crate adds its schemes with
//! [`register`] (each has a `register()` function that does it); a scheme
//! the project knows whose crate is not registered fails with a message
//! saying which crate to add, and an unknown scheme lists the known ones.

use crate::{
    Backend, BackendUrl, Error, Locker, LockerBuilder, MemoryBackend, Requirements, Result,
    parse_duration,
};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

/// A backend being connected.
pub type Connecting = BoxFuture<'static, Result<Arc<dyn Backend>>>;

/// Opens a backend from a parsed URL: takes the options it knows from
/// `url` (anything left over is reported as unknown) and returns the
/// connection future. Parsing errors are [`Error::InvalidConfig`]; an
/// unreachable store is [`Error::Unavailable`] naming the address tried.
pub type OpenFn = fn(&mut BackendUrl) -> Result<Connecting>;

/// The schemes of the project's backends, with the crate that provides
/// each, so a missing one gets a precise message.
const KNOWN: &[(&str, &str)] = &[
    ("memory", "lock-core"),
    ("redis", "lock-redis"),
    ("rediss", "lock-redis"),
    ("redlock", "lock-redlock"),
    ("etcd", "lock-etcd"),
    ("zk", "lock-zk"),
];

fn registry() -> &'static RwLock<BTreeMap<String, OpenFn>> {
    static REGISTRY: OnceLock<RwLock<BTreeMap<String, OpenFn>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map = BTreeMap::new();
        map.insert("memory".to_owned(), open_memory as OpenFn);
        RwLock::new(map)
    })
}

/// Makes `scheme` available to [`connect`]. Registering a scheme again
/// replaces its opener.
pub fn register(scheme: &str, open: OpenFn) {
    registry()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(scheme.to_ascii_lowercase(), open);
}

/// The schemes [`connect`] can open now.
pub fn registered_schemes() -> Vec<String> {
    registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect()
}

fn open_memory(url: &mut BackendUrl) -> Result<Connecting> {
    if url.user().is_some() || url.path().len() > 1 {
        return Err(Error::InvalidConfig(format!(
            "bad URL {}: memory:// takes only a store name (memory://NAME)",
            url.redacted()
        )));
    }
    let store = crate::memory::shared_store(url.hosts());
    let mut backend = MemoryBackend::with_store(store);
    if let Some(prefix) = url.take("prefix") {
        backend = backend.with_prefix(prefix);
    }
    Ok(Box::pin(async move {
        Ok(Arc::new(backend) as Arc<dyn Backend>)
    }))
}

/// Opens the backend `url` names and returns a builder carrying the URL's
/// common options (`ttl`, `wait`, `renew`, `require`), to adjust before
/// [`build`](LockerBuilder::build).
pub async fn builder_from_url(url: &str) -> Result<LockerBuilder> {
    let mut parsed = BackendUrl::parse(url)?;
    let ttl = parsed.take_parsed("ttl", parse_duration)?;
    let wait = parsed.take_parsed("wait", |v| match v {
        "forever" => Ok(None),
        v => parse_duration(v).map(Some),
    })?;
    let renew = parsed.take_bool("renew")?;
    let require = parsed.take_parsed("require", Requirements::parse)?;

    let open = registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(parsed.scheme())
        .copied();
    let Some(open) = open else {
        return Err(missing_scheme(&parsed));
    };
    let connecting = open(&mut parsed)?;
    parsed.finish()?;
    let backend = connecting.await?;

    let mut builder = Locker::builder(backend);
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    match wait {
        Some(Some(w)) => builder = builder.wait(w),
        Some(None) => builder = builder.wait_forever(),
        None => {}
    }
    if let Some(renew) = renew {
        builder = builder.renewal(renew);
    }
    if let Some(require) = require {
        builder = builder.require(require);
    }
    Ok(builder)
}

fn missing_scheme(url: &BackendUrl) -> Error {
    let scheme = url.scheme();
    if let Some((_, krate)) = KNOWN.iter().find(|(s, _)| *s == scheme) {
        let module = krate.replace('-', "_");
        return Error::InvalidConfig(format!(
            "the {scheme}:// backend is not enabled in this build: add the `{krate}` crate \
             and call `{module}::register()` before connecting"
        ));
    }
    let mut known: Vec<&str> = KNOWN.iter().map(|(s, _)| *s).collect();
    known.sort_unstable();
    Error::InvalidConfig(format!(
        "unknown scheme {scheme:?} in {}; known schemes: {}",
        url.redacted(),
        known.join(", ")
    ))
}

/// Builds a [`Locker`] from a URL (SPEC "URLs"):
///
/// ```text
/// memory://[NAME]
/// redis://[user:pass@]host:port[/db]
/// rediss://...
/// redlock://host1:port1,host2:port2,host3:port3[?quorum=...]
/// etcd://host1:port1[,host2:port2...][?prefix=...]
/// zk://host1:port1[,host2:port2...][/chroot]
/// ```
///
/// Options every scheme takes: `ttl=30s` (default ttl), `wait=10s|forever`
/// (default wait of `lock`), `renew=true|false`, `prefix=...` (namespace in
/// the store), `require=fair,node-loss,fencing-unconditional,...`
/// (guarantees the backend must offer). An unknown scheme, a malformed host
/// list or an option the backend does not know is
/// [`Error::InvalidConfig`], naming what was wrong.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use lock_core::ErrorKind;
/// let locker = lock_core::connect("memory://?ttl=5s&wait=1s").await.unwrap();
/// assert_eq!(locker.ttl().get(), std::time::Duration::from_secs(5));
/// let err = lock_core::connect("mongodb://x:1").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
/// assert!(err.to_string().contains("known schemes: etcd, memory, redis"));
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Locker> {
    builder_from_url(url).await?.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_enabled_names_the_crate() {
        let e = connect("etcd://127.0.0.1:2379")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`lock-etcd`"), "{e}");
        assert!(e.contains("lock_etcd::register()"), "{e}");
    }

    #[tokio::test]
    async fn unknown_options_and_bad_values_are_named() {
        let e = connect("memory://?tll=1s").await.unwrap_err().to_string();
        assert!(e.contains("\"tll\""), "{e}");
        let e = connect("memory://?ttl=0s").await.unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = connect("memory://?ttl=10").await.unwrap_err().to_string();
        assert!(e.contains("ttl=\"10\""), "{e}");
        let e = connect("memory://?require=node-loss")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("loss of a store node"), "{e}");
    }
}
