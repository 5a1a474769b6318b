//! Every time bound the checks assert, in one place.
//!
//! The SPEC states bounds (expiry within one ttl, loss within one ttl); the
//! checks allow [`SLACK`] on top, because CI runs on a 2-core machine with
//! other tests in parallel, where a timer can fire late and a task can wait
//! for a core. No check asserts that something happens *late*, only
//! within a bound, except where the SPEC forbids "early" (another owner
//! granted before a holder's deadline), which needs no slack.

use std::time::Duration;

/// Allowed on top of any bound the SPEC states: scheduling and timer delays
/// on a loaded 2-core machine, and a few store round trips.
pub const SLACK: Duration = Duration::from_millis(1000);

/// A wait that a passing run never reaches: it only turns a hang into a
/// clear failure.
pub const LONG_WAIT: Duration = Duration::from_secs(30);

/// The ttl of checks that must not see a hold expire by accident.
pub const LONG_TTL: Duration = Duration::from_secs(10);

/// How long a check may run in all before it is failed as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// A waiter must be granted within this many store round trips of the
/// release (release, notification, acquire, answer) ...
pub const HANDOFF_ROUND_TRIPS: u32 = 4;

/// ... plus this much for scheduling. The check releases 30 to 70 ms after
/// the waiter started waiting, so a waiter polling every 100 ms is granted
/// 30 ms or more after the release, every time: it fails this bound, while
/// a waiter woken by the store passes with room for scheduling delays.
pub const HANDOFF_SLACK: Duration = Duration::from_millis(25);

/// How long the store may take to forget what a cancelled `lock` created,
/// on a backend that says it cleans up: a cleanup sent in the background
/// needs a round trip or two, far less than any ttl the checks use.
pub const CLEANUP_GRACE: Duration = Duration::from_millis(150);

/// How long a client whose connection was healed may take to work again
/// (reconnecting with backoff).
pub const RECONNECT: Duration = Duration::from_secs(10);
