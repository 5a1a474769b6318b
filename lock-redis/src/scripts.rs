//! The Lua scripts that do every lock operation in one atomic round trip,
//! and the parsing of their replies.
//!
//! Layout (Redisson's `RLock`/`RFencedLock`, SPEC "Backends"): the lock is a
//! hash `LOCK` whose field is the owner and whose value is the hold count;
//! the fencing counter is the string `redisson_lock_token:{LOCK}` (never
//! deleted); a final release publishes `0` on
//! `redisson_lock__channel:{LOCK}`.
//!
//! Every script checks what it finds first (the acquire script: whether
//! the lock's key exists, then its TYPE if it does): a key of another
//! type, or a hash field that is not a count, is someone else's data and is
//! left as it was (no WRONGTYPE error can reach the caller). One exception
//! in form only: the acquire script with a proposed token sets the counter
//! and reads the old value in one call, and puts back an old value that is
//! not a number, within the same atomic script.

use lock_core::{Error, FencingToken};
use redis::{Script, Value};
use std::sync::LazyLock;

/// Helpers (`ours`, `extend`) put in front of the scripts that act on a
/// hold this client has.
pub const OURS: &str = include_str!("lua/ours.lua");
/// Acquire: a new hold, a re-entry, or the holder's remaining PTTL; with a
/// proposed token (Redlock), a new hold whose counter refused it.
pub const ACQUIRE: &str = include_str!("lua/acquire.lua");
/// Redlock's second round: raise the counter of a hold to a proposal.
pub const RAISE: &str = include_str!("lua/raise.lua");
/// Re-entry of a hold this client has (after [`OURS`]).
pub const REENTER: &str = include_str!("lua/reenter.lua");
/// Renewal of many holds in one call (after [`OURS`]).
pub const RENEW: &str = include_str!("lua/renew.lua");
/// Release with the count-before rule (after [`OURS`]).
pub const RELEASE: &str = include_str!("lua/release.lua");
/// Undo of an acquire whose answer was lost.
pub const UNDO: &str = include_str!("lua/undo.lua");
/// Status (read-only).
pub const STATUS: &str = include_str!("lua/status.lua");

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{OURS}{body}"))
}

/// The acquire script.
pub(crate) static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
/// The re-entry script.
pub(crate) static REENTER_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(REENTER));
/// The batched renewal script.
pub(crate) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(RENEW));
/// The release script.
pub(crate) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(RELEASE));
/// Redlock's second round.
pub(crate) static RAISE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RAISE));
/// The undo of an acquire whose answer was lost.
pub(crate) static UNDO_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNDO));
/// The status script (read-only).
pub(crate) static STATUS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STATUS));

/// The store's names for one lock (Redisson's layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The hash: prefix + key.
    pub lock: String,
    /// The fencing counter, `redisson_lock_token:{LOCK}`.
    pub counter: String,
    /// The release channel, `redisson_lock__channel:{LOCK}`.
    pub channel: String,
}

impl Names {
    /// The names of the lock whose hash is `lock` (prefix + key).
    pub fn new(lock: String) -> Self {
        Names {
            counter: format!("redisson_lock_token:{{{lock}}}"),
            channel: format!("redisson_lock__channel:{{{lock}}}"),
            lock,
        }
    }
}

/// What the acquire script answered on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquired {
    /// A new hold with this token (the counter's new value).
    New(FencingToken),
    /// The owner already held it in the store: one more count, same token.
    Reentered(FencingToken),
    /// Held by someone else; the lock's remaining PTTL (-1: no expiry).
    Held(i64),
    /// Only with a proposed token: a new hold was taken, but the counter
    /// was already at least the proposal and was left at this value. The
    /// hold has no valid token on this server until the counter is raised
    /// ([`Node::raise`](crate::node::Node::raise)).
    Refused(FencingToken),
}

/// What the raise script answered on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Raised {
    /// The counter was below the proposal and now equals it.
    To(FencingToken),
    /// The counter was already at least the proposal: left at this value.
    Refused(u64),
    /// The owner does not hold the lock on this server.
    NotHeld,
}

fn unexpected(what: &str, v: &Value) -> Error {
    Error::backend(format!("unexpected reply from the {what} script: {v:?}"))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn token(n: i64) -> Option<FencingToken> {
    u64::try_from(n).ok().filter(|&t| t > 0).map(FencingToken)
}

/// Parses the acquire script's reply. Anything unexpected is an error,
/// never a grant.
pub(crate) fn parse_acquire(v: &Value) -> Result<Acquired, Error> {
    let Value::Array(items) = v else {
        return Err(unexpected("acquire", v));
    };
    let (Some(status), Some(value)) = (items.first().and_then(int), items.get(1)) else {
        return Err(unexpected("acquire", v));
    };
    match status {
        1 => int(value)
            .and_then(token)
            .map(Acquired::New)
            .ok_or_else(|| unexpected("acquire", v)),
        2 => int(value)
            .and_then(token)
            .map(Acquired::Reentered)
            .ok_or_else(|| unexpected("acquire", v)),
        3 => int(value)
            .and_then(token)
            .map(Acquired::Refused)
            .ok_or_else(|| unexpected("acquire", v)),
        0 => int(value)
            .map(Acquired::Held)
            .ok_or_else(|| unexpected("acquire", v)),
        -1 => Err(Error::backend(
            text(value).unwrap_or_else(|| format!("{value:?}")),
        )),
        _ => Err(unexpected("acquire", v)),
    }
}

/// Parses the raise script's reply.
pub(crate) fn parse_raise(v: &Value) -> Result<Raised, Error> {
    let Value::Array(items) = v else {
        return Err(unexpected("raise", v));
    };
    match (items.first().and_then(int), items.get(1).and_then(int)) {
        (Some(1), Some(t)) => token(t)
            .map(Raised::To)
            .ok_or_else(|| unexpected("raise", v)),
        (Some(0), Some(c)) => u64::try_from(c)
            .map(Raised::Refused)
            .map_err(|_| unexpected("raise", v)),
        (Some(-1), Some(_)) => Ok(Raised::NotHeld),
        _ => Err(unexpected("raise", v)),
    }
}

/// Parses an integer reply (reenter, release, undo).
pub(crate) fn parse_int(what: &str, v: &Value) -> Result<i64, Error> {
    int(v).ok_or_else(|| unexpected(what, v))
}

/// Parses the renew script's reply: one bool per hold.
pub(crate) fn parse_renew(v: &Value, n: usize) -> Result<Vec<bool>, Error> {
    let Value::Array(items) = v else {
        return Err(unexpected("renew", v));
    };
    if items.len() != n {
        return Err(unexpected("renew", v));
    }
    items
        .iter()
        .map(|i| match int(i) {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(unexpected("renew", v)),
        })
        .collect()
}

/// What the status script found at a lock's key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// `TYPE` of the lock's key (`none`, `hash`, `string`, ...).
    pub(crate) kind: String,
    /// `PTTL` of the lock's key.
    pub(crate) pttl: i64,
    /// The fencing counter's value, if it is a number.
    pub(crate) counter: Option<u64>,
    /// The hash's fields and values, or a string's first bytes.
    pub(crate) body: Vec<String>,
}

/// Parses the status script's reply.
pub(crate) fn parse_status(v: &Value) -> Result<Found, Error> {
    let Value::Array(items) = v else {
        return Err(unexpected("status", v));
    };
    let (Some(kind), Some(pttl), Some(counter), Some(Value::Array(body))) = (
        items.first().and_then(text),
        items.get(1).and_then(int),
        items.get(2).and_then(text),
        items.get(3),
    ) else {
        return Err(unexpected("status", v));
    };
    Ok(Found {
        kind,
        pttl,
        counter: counter.parse().ok(),
        body: body.iter().map(|b| text(b).unwrap_or_default()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_redisson() {
        let n = Names::new("orders:1".into());
        assert_eq!(n.lock, "orders:1");
        assert_eq!(n.counter, "redisson_lock_token:{orders:1}");
        assert_eq!(n.channel, "redisson_lock__channel:{orders:1}");
    }

    #[test]
    fn odd_replies_are_errors_never_grants() {
        let arr = |v: Vec<Value>| Value::Array(v);
        assert_eq!(
            parse_acquire(&arr(vec![Value::Int(1), Value::Int(7)])).unwrap(),
            Acquired::New(FencingToken(7))
        );
        assert_eq!(
            parse_acquire(&arr(vec![Value::Int(0), Value::Int(-1)])).unwrap(),
            Acquired::Held(-1)
        );
        for bad in [
            Value::Nil,
            Value::Int(1),
            arr(vec![]),
            arr(vec![Value::Int(1)]),
            arr(vec![Value::Int(1), Value::Int(0)]),
            arr(vec![Value::Int(1), Value::Int(-3)]),
            arr(vec![Value::Int(1), Value::Nil]),
            arr(vec![Value::Int(9), Value::Int(1)]),
        ] {
            assert!(parse_acquire(&bad).is_err(), "{bad:?}");
        }
        assert!(parse_renew(&arr(vec![Value::Int(1)]), 2).is_err());
        assert_eq!(
            parse_renew(&arr(vec![Value::Int(1), Value::Int(0)]), 2).unwrap(),
            vec![true, false]
        );
    }
}
