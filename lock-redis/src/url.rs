//! The `redis://` and `rediss://` URL schemes for [`lock_core::connect`].

use crate::{RedisBackend, RedisConfig};
use lock_core::{Backend, BackendUrl, Connecting, Error, Result};
use std::sync::Arc;

/// Makes `redis://` (and `rediss://`) URLs available to
/// [`lock_core::connect`]. Call it once at startup; calling it again is
/// harmless.
///
/// Without the crate's `tls` feature, a `rediss://` URL fails with
/// [`Error::InvalidConfig`] saying to enable it.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> lock_core::Result<()> {
/// lock_redis::register();
/// let locker = lock_core::connect("redis://127.0.0.1:6379?ttl=10s&prefix=app:").await?;
/// let guard = locker.lock("orders:1").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub fn register() {
    lock_core::register("redis", open);
    lock_core::register("rediss", open);
}

/// The error of a `rediss://` URL in a build without TLS.
#[cfg_attr(feature = "tls", allow(dead_code))]
pub(crate) fn tls_disabled() -> Error {
    Error::InvalidConfig(
        "rediss:// (TLS) needs the `tls` feature: enable the `tls` feature of lock-redis".into(),
    )
}

fn open(url: &mut BackendUrl) -> Result<Connecting> {
    let config = RedisConfig::take_from(url)?;
    if config.tls && !cfg!(feature = "tls") {
        return Err(tls_disabled());
    }
    Ok(Box::pin(async move {
        let backend = RedisBackend::connect(config).await?;
        Ok(Arc::new(backend) as Arc<dyn Backend>)
    }))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn rediss_says_what_to_enable_or_connects() {
        super::register();
        let result = lock_core::connect("rediss://127.0.0.1:1?timeout=200ms").await;
        let err = result.unwrap_err();
        if cfg!(feature = "tls") {
            assert_eq!(err.kind(), lock_core::ErrorKind::Unavailable, "{err}");
            assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        } else {
            assert_eq!(err.kind(), lock_core::ErrorKind::InvalidConfig, "{err}");
            assert!(
                err.to_string()
                    .contains("enable the `tls` feature of lock-redis"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_naming_it() {
        super::register();
        let err = lock_core::connect("redis://127.0.0.1:1?timeout=200ms")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), lock_core::ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert!(err.is_retryable());
    }
}
