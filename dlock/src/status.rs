//! `dlock status`: what the store says of one lock.

use crate::cli::StatusArgs;
use crate::exit::{self, Failure};
use crate::waitline::seconds;
use lock_core::LockStatus;
use serde_json::{Value, json};

/// Runs `dlock status` on `backend`; returns the exit code.
pub(crate) async fn status(backend: &str, args: &StatusArgs) -> Result<u8, Failure> {
    let locker = crate::connect(backend)
        .await
        .map_err(|e| Failure::connect(backend, &e))?;
    let status = locker
        .status(&args.key)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    let backend = locker.capabilities().name;
    if args.json {
        println!("{}", to_json(&status, backend));
    } else {
        print!("{}", to_text(&status, backend));
    }
    Ok(exit::OK)
}

fn ms(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

/// The status as one JSON object; the first holder's fields are repeated
/// at the top for scripts (`jq -r .owner`).
pub(crate) fn to_json(status: &LockStatus, backend: &str) -> Value {
    let holders: Vec<Value> = status
        .holders
        .iter()
        .map(|h| {
            json!({
                "owner": h.owner,
                "token": h.token.map(|t| t.get()),
                "count": h.count,
                "remaining_ms": ms(h.remaining),
                "detail": h.detail,
            })
        })
        .collect();
    let first = status.holders.first();
    json!({
        "key": status.key.as_str(),
        "backend": backend,
        "held": !status.is_free(),
        "owner": first.and_then(|h| h.owner.clone()),
        "token": first.and_then(|h| h.token).map(|t| t.get()),
        "remaining_ms": ms(first.and_then(|h| h.remaining)),
        "waiters": status.waiters,
        "last_token": status.last_token.map(|t| t.get()),
        "holders": holders,
    })
}

/// The status as aligned text, one fact a line.
pub(crate) fn to_text(status: &LockStatus, backend: &str) -> String {
    let unknown = || format!("unknown ({backend} cannot tell)");
    let mut lines = vec![("key", status.key.as_str().to_owned())];
    lines.push((
        "state",
        if status.is_free() { "free" } else { "held" }.to_owned(),
    ));
    for h in &status.holders {
        lines.push(("owner", h.owner.clone().unwrap_or_else(unknown)));
        lines.push(("token", h.token.map_or_else(unknown, |t| t.to_string())));
        if let Some(count) = h.count {
            lines.push(("hold count", count.to_string()));
        }
        lines.push(("remaining", h.remaining.map_or_else(unknown, seconds)));
        if let Some(detail) = &h.detail {
            lines.push(("detail", detail.clone()));
        }
    }
    lines.push((
        "waiters",
        status.waiters.map_or_else(unknown, |w| w.to_string()),
    ));
    if let Some(t) = status.last_token {
        lines.push(("last token", t.to_string()));
    }
    lines.push(("backend", backend.to_owned()));
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<11} {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_core::{FencingToken, HolderStatus, Key};
    use std::time::Duration;

    #[test]
    fn free_and_held_locks_print_and_serialise() {
        let free = LockStatus::free(Key::new("k").unwrap());
        let v = to_json(&free, "memory");
        assert_eq!(v["held"], false);
        assert_eq!(v["owner"], Value::Null);
        assert!(to_text(&free, "memory").contains("state       free"));

        let mut held = free.clone();
        let mut h = HolderStatus::new(Some("me".into()));
        h.token = Some(FencingToken(9));
        h.remaining = Some(Duration::from_millis(1500));
        held.holders.push(h);
        held.last_token = Some(FencingToken(9));
        let v = to_json(&held, "redis");
        assert_eq!(v["held"], true);
        assert_eq!(v["owner"], "me");
        assert_eq!(v["token"], 9);
        assert_eq!(v["remaining_ms"], 1500);
        let text = to_text(&held, "redis");
        assert!(text.contains("owner       me\n"), "{text}");
        assert!(text.contains("remaining   1.5s\n"), "{text}");
        assert!(
            text.contains("waiters     unknown (redis cannot tell)"),
            "{text}"
        );
    }
}
