//! ZooKeeper client errors as lock-core errors.

use lock_core::Error;
use zookeeper_client as zk;

/// Whether `e` says the answer is unknown because the connection broke (the
/// request may or may not have been applied). The client reports a
/// connection reset or an I/O error of its socket as a custom error.
pub(crate) fn is_connection(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::NoHosts | zk::Error::Custom(_)
    )
}

/// Whether `e` says the session is over (expired or closed): every
/// ephemeral node it owned is gone.
pub(crate) fn is_session_over(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
    )
}

/// `e`, met while doing `what` against `servers`: connection trouble and an
/// ended session are [`Error::Unavailable`] (a retry, on a new session, may
/// help), anything else [`Error::Backend`].
pub(crate) fn to_error(servers: &str, what: &str, e: zk::Error) -> Error {
    if is_connection(&e) || is_session_over(&e) {
        Error::unavailable_from(format!("ZooKeeper at {servers}: {what}: {e}"), e)
    } else {
        Error::backend_from(format!("ZooKeeper at {servers}: {what}: {e}"), e)
    }
}
