//! Mapping of the `redis` client's errors to dlock's [`Error`] kinds.

use lock_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Whether `e` means the store could not be reached or cannot serve now
/// (retryable): I/O errors, timeouts, a server that is loading, busy with a
/// script, read-only (a replica after failover) or not a master.
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
            )
        )
        || matches!(e.code(), Some("BUSY"))
}

/// Whether the server refused the URL's credentials (or wants some).
fn rejected_credentials(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// `e`, met while doing `what` against the Redis at `addr`, as an
/// [`Error::InvalidConfig`] (credentials refused), [`Error::Unavailable`]
/// (retryable) or [`Error::Backend`].
pub(crate) fn from_redis(addr: &str, what: &str, e: RedisError) -> Error {
    let message = format!("redis at {addr}: {what}: {e}");
    if rejected_credentials(&e) {
        return Error::InvalidConfig(message);
    }
    if unreachable(&e) {
        Error::unavailable_from(message, e)
    } else {
        Error::backend_from(message, e)
    }
}

/// A request to the Redis at `addr` that got no answer within `timeout`.
pub(crate) fn timed_out(addr: &str, what: &str, timeout: std::time::Duration) -> Error {
    Error::unavailable(format!(
        "redis at {addr}: {what}: no answer within {timeout:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_name_the_address() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = from_redis("127.0.0.1:1", "acquire", RedisError::from(io));
        assert_eq!(e.kind(), lock_core::ErrorKind::Unavailable);
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        let e = from_redis(
            "h:1",
            "acquire",
            RedisError::from((ErrorKind::UnexpectedReturnType, "odd")),
        );
        assert_eq!(e.kind(), lock_core::ErrorKind::Backend);
    }
}
