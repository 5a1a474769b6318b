//! The one error type of every backend (SPEC "Errors").

use std::time::Duration;

/// A boxed error from a store client, kept as the [`std::error::Error::source`]
/// of [`Error::Unavailable`] and [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a hold ended without its owner releasing it (SPEC item 5).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The local validity deadline passed without a confirmed renewal: the
    /// store may already have expired the hold (renewal off, or the store
    /// slow or unreachable).
    DeadlinePassed,
    /// The store said the hold is gone: key deleted or taken by another
    /// owner, lease revoked, session expired. The text says which.
    Gone(String),
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossReason::DeadlinePassed => {
                f.write_str("the validity deadline passed without a confirmed renewal")
            }
            LossReason::Gone(why) => write!(f, "the store says the hold is gone: {why}"),
        }
    }
}

/// The kind of an [`Error`], for callers that only need to branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::InvalidKey`].
    InvalidKey,
    /// See [`Error::InvalidConfig`].
    InvalidConfig,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::NotHeld`].
    NotHeld,
    /// See [`Error::Lost`].
    Lost,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Backend`].
    Backend,
}

/// Every error of every backend. Match on the variant, or on [`Error::kind`].
///
/// `try_lock` on a key held by someone else is not an error: it returns
/// `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is not 1 to 255 bytes of UTF-8 without control characters.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A bad URL, option, ttl, owner, or a requirement the backend cannot
    /// meet. The message names what was wrong.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// `lock` waited its whole wait timeout without getting the lock.
    #[error("timed out after {waited:?} waiting for lock {key:?}")]
    Timeout {
        /// The key waited for.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// Release, renew or extend of a hold that is no longer held (expired,
    /// lost, or taken by another owner). The store was left untouched.
    #[error("lock {key:?} is not held by {owner:?}")]
    NotHeld {
        /// The key.
        key: String,
        /// The owner that no longer holds it.
        owner: String,
    },
    /// The hold was lost while the operation ran.
    #[error("lock {key:?} was lost: {reason}")]
    Lost {
        /// The key.
        key: String,
        /// Why the hold ended.
        reason: LossReason,
    },
    /// The store cannot be reached or a quorum is not met. Retrying may help.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What was tried (with the address where there is one).
        message: String,
        /// The client error behind it, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else the store or its client reported.
    #[error("backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The client error behind it, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKey(_) => ErrorKind::InvalidKey,
            Error::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::NotHeld { .. } => ErrorKind::NotHeld,
            Error::Lost { .. } => ErrorKind::Lost,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the same call may succeed if tried again later: true for
    /// [`Error::Unavailable`] and [`Error::Timeout`] (the holder may be gone
    /// by then), false for everything else, which needs a change of input or
    /// a new acquisition.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// An [`Error::Unavailable`] with a message and no source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Unavailable`] wrapping a client error.
    pub fn unavailable_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::Backend`] with a message and no source.
    pub fn backend(message: impl Into<String>) -> Self {
        Error::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] wrapping a client error.
    pub fn backend_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::InvalidConfig`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::InvalidConfig(message.into())
    }

    pub(crate) fn not_held(key: &crate::Key, owner: &crate::Owner) -> Self {
        Error::NotHeld {
            key: key.as_str().to_owned(),
            owner: owner.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_timeout_are_retryable() {
        assert!(Error::unavailable("x").is_retryable());
        assert!(
            Error::Timeout {
                key: "k".into(),
                waited: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!Error::backend("x").is_retryable());
        assert!(!Error::InvalidKey("x".into()).is_retryable());
        assert!(!Error::config("x").is_retryable());
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unavailable_from("connect 127.0.0.1:1", io);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
