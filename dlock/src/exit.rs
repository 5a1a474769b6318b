//! The exit codes of `dlock`, after BSD `sysexits.h` where one fits.
//!
//! `dlock run` exits with its command's status when it ran the command to
//! its end, so a command that itself exits 64, 69, 75 or 76 looks like
//! dlock's own failure; dlock's own failures always print one line on
//! stderr starting with `dlock: `, the command's never do (unless it
//! prints that itself).

use lock_core::{Error, ErrorKind};

/// Success.
pub const OK: u8 = 0;
/// `check` found a failing check; `demo` found the lock did not protect
/// the stock; an unexpected internal error.
pub const FAILURE: u8 = 1;
/// Bad flags, durations, keys or URLs, a scheme not compiled in, no
/// backend given (`EX_USAGE`).
pub const USAGE: u8 = 64;
/// The store cannot be reached or used; the message names the address
/// tried (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// The lock is held by someone else: `--no-wait`, or the `--wait` ran out
/// (`EX_TEMPFAIL`, as `flock -n` and `flock -w` use 1 for).
pub const LOCK_BUSY: u8 = 75;
/// The lock was lost while the command ran (deleted, taken, or not renewed
/// in time): the command was stopped (SIGTERM, then SIGKILL after
/// `--grace`).
pub const LOCK_LOST: u8 = 76;
/// The command was found but could not be executed (as in `sh`).
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found (as in `sh`).
pub const NOT_FOUND: u8 = 127;
/// Added to a signal's number when the command (or dlock, while waiting)
/// was ended by that signal: 130 for SIGINT, 143 for SIGTERM.
pub const SIGNAL_BASE: u8 = 128;

/// The exit code for a library error: 64 for bad input, 69 when the store
/// cannot be reached or answers something unusable, 75 for a wait that ran
/// out, 76 for a hold that is gone.
///
/// # Examples
/// ```
/// let e = lock_core::Error::config("bad URL");
/// assert_eq!(dlock::exit::for_error(&e), dlock::exit::USAGE);
/// ```
pub fn for_error(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::InvalidConfig | ErrorKind::InvalidKey => USAGE,
        ErrorKind::Timeout => LOCK_BUSY,
        ErrorKind::Lost | ErrorKind::NotHeld => LOCK_LOST,
        _ => UNAVAILABLE,
    }
}

/// A failure of a subcommand: its exit code and its one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure to connect to `url`: an unreachable store's message names
    /// the URL tried (with any password hidden) besides the client's own.
    pub(crate) fn connect(url: &str, error: &Error) -> Self {
        let code = for_error(error);
        let message = match code {
            UNAVAILABLE => format!(
                "cannot use the store at {}: {}",
                lock_core::redact(url),
                one_line(&error.to_string())
            ),
            _ => one_line(&error.to_string()),
        };
        Failure { code, message }
    }

    /// A failure from a library error.
    pub(crate) fn from_error(error: &Error) -> Self {
        Failure::new(for_error(error), one_line(&error.to_string()))
    }
}

/// `text` on one line: line breaks become spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn codes_per_error_kind() {
        assert_eq!(for_error(&Error::InvalidKey("x".into())), USAGE);
        assert_eq!(for_error(&Error::unavailable("x")), UNAVAILABLE);
        assert_eq!(for_error(&Error::backend("x")), UNAVAILABLE);
        let timeout = Error::Timeout {
            key: "k".into(),
            waited: Duration::from_secs(1),
        };
        assert_eq!(for_error(&timeout), LOCK_BUSY);
    }

    #[test]
    fn connect_failures_name_the_url_without_its_password() {
        let f = Failure::connect("redis://u:secret@10.0.0.9:6379", &Error::unavailable("no"));
        assert_eq!(f.code, UNAVAILABLE);
        assert!(f.message.contains("10.0.0.9:6379"), "{}", f.message);
        assert!(!f.message.contains("secret"), "{}", f.message);
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
