//! The `redlock://` URL scheme for [`lock_core::connect`].

use crate::{RedlockBackend, RedlockConfig};
use lock_core::{Backend, BackendUrl, Connecting, Result};
use std::sync::Arc;

/// Makes `redlock://` URLs available to [`lock_core::connect`]. Call it
/// once at startup; calling it again is harmless.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> lock_core::Result<()> {
/// lock_redlock::register();
/// let locker = lock_core::connect("redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379?ttl=10s").await?;
/// let guard = locker.lock("orders:1").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub fn register() {
    lock_core::register("redlock", open);
}

fn open(url: &mut BackendUrl) -> Result<Connecting> {
    let config = RedlockConfig::take_from(url)?;
    Ok(Box::pin(async move {
        let backend = RedlockBackend::connect(config).await?;
        Ok(Arc::new(backend) as Arc<dyn Backend>)
    }))
}
