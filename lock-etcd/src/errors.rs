//! Mapping etcd-client errors to the one error type of dlock.

use lock_core::Error;

/// Whether a client error means "the store did not answer" (retryable)
/// rather than "the store refused".
pub(crate) fn is_unreachable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Cancelled
                | Code::ResourceExhausted
                | Code::Unknown
        ),
        _ => false,
    }
}

/// Whether a request certainly never took effect: no connection could be
/// made (a member that is gone), the backend's unary channel never handed
/// it to a connection, or etcd refused it for want of a leader before
/// proposing it. Such a request is safe to send again.
pub(crate) fn not_sent(e: &etcd_client::Error) -> bool {
    if let etcd_client::Error::GRpcStatus(status) = e
        && crate::unary::never_sent(status)
    {
        return true;
    }
    let text = format!("{e:?}");
    text.contains("ConnectError")
        || text.contains("tcp connect error")
        || text.contains("etcdserver: no leader")
}

/// Whether etcd refused a request because the lease it named is gone.
pub(crate) fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

/// The dlock error for a failed `what` against the cluster at `endpoints`.
pub(crate) fn map(endpoints: &str, what: &str, e: etcd_client::Error) -> Error {
    if is_unreachable(&e) {
        Error::unavailable_from(format!("etcd at {endpoints}: {what} failed"), e)
    } else {
        Error::backend_from(format!("etcd at {endpoints}: {what} failed"), e)
    }
}

/// The dlock error for `what` getting no answer within the request timeout.
pub(crate) fn timed_out(endpoints: &str, what: &str) -> Error {
    Error::unavailable(format!(
        "etcd at {endpoints}: {what} got no answer within the request timeout"
    ))
}

/// The dlock error for an answer that does not have the expected shape.
pub(crate) fn unexpected(endpoints: &str, what: &str) -> Error {
    Error::backend(format!("etcd at {endpoints}: unexpected answer to {what}"))
}
