//! The one error type of the kit.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong while running servers for a test.
///
/// Every message says what failed and, where it helps, what to do about it:
/// a missing server names the command that installs it, and a server that
/// did not come up quotes the last lines of its log.
#[derive(Debug)]
pub enum KitError {
    /// A server binary or jar is not installed.
    MissingBinary {
        /// What was looked for (`redis-server`, `/usr/share/java/zookeeper.jar`, ...).
        binary: String,
        /// The shell command that installs it.
        install: String,
    },
    /// An operating-system call failed.
    Io {
        /// What the kit was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A server process exited on its own while the kit waited for it.
    Exited {
        /// Which server (`redis-server on 127.0.0.1:1234`, ...).
        server: String,
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A server did not become ready within its start-up timeout.
    NotReady {
        /// Which server.
        server: String,
        /// How long the kit waited.
        waited: Duration,
        /// Why the last readiness probe failed.
        last_error: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A signal could not be delivered, or the server is not running.
    Signal {
        /// Which server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The kit was asked for something it cannot do (an empty cluster, ...).
    Invalid {
        /// What was wrong with the request.
        reason: String,
    },
    /// A server answered something the kit did not understand.
    Protocol {
        /// What was asked, and what came back.
        context: String,
    },
}

impl KitError {
    /// Wraps an I/O error with what the kit was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        KitError::Io {
            context: context.into(),
            source,
        }
    }

    /// A protocol error with the given description.
    pub(crate) fn protocol(context: impl Into<String>) -> Self {
        KitError::Protocol {
            context: context.into(),
        }
    }
}

impl fmt::Display for KitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KitError::MissingBinary { binary, install } => write!(
                f,
                "{binary} is not installed; install the test servers with `scripts/install-servers` \
                 (or `{install}`)"
            ),
            KitError::Io { context, source } => write!(f, "{context}: {source}"),
            KitError::Exited {
                server,
                status,
                log_tail,
            } => {
                write!(
                    f,
                    "{server} exited ({status}) before it was ready; last log lines:\n{log_tail}"
                )
            }
            KitError::NotReady {
                server,
                waited,
                last_error,
                log_tail,
            } => write!(
                f,
                "{server} was not ready after {waited:?} (last probe: {last_error}); last log lines:\n{log_tail}"
            ),
            KitError::Signal { server, reason } => write!(f, "cannot signal {server}: {reason}"),
            KitError::Invalid { reason } => write!(f, "invalid kit request: {reason}"),
            KitError::Protocol { context } => write!(f, "unexpected answer: {context}"),
        }
    }
}

impl std::error::Error for KitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
