//! Describing a lock's holder, and the live status line shown while
//! waiting on a terminal.

use lock_core::{LockStatus, Locker};
use std::cell::Cell;
use std::convert::Infallible;
use std::io::Write as _;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// How long a wait lasts before the status line appears (an uncontended or
/// briefly contended lock shows nothing).
const SHOW_AFTER: Duration = Duration::from_millis(500);
/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);
/// How often the holder is asked for.
const REQUERY: Duration = Duration::from_secs(1);

/// Seconds with one decimal: `12.3s`.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// "held by OWNER (token N, 12.3s left)", or `None` when the key is free.
pub(crate) fn describe(status: &LockStatus) -> Option<String> {
    let holder = status.holders.first()?;
    let who = match (&holder.owner, &holder.detail) {
        (Some(owner), _) => owner.clone(),
        (None, Some(detail)) => detail.clone(),
        (None, None) => "an unknown owner".to_owned(),
    };
    let mut facts = Vec::new();
    if let Some(token) = holder.token {
        facts.push(format!("token {token}"));
    }
    if let Some(count) = holder.count.filter(|&c| c > 1) {
        facts.push(format!("held {count} times"));
    }
    if let Some(left) = holder.remaining {
        facts.push(format!("{} left", seconds(left)));
    }
    if let Some(waiters) = status.waiters.filter(|&w| w > 0) {
        facts.push(format!("{waiters} waiting"));
    }
    let more = if status.holders.len() > 1 {
        format!(" and {} more", status.holders.len() - 1)
    } else {
        String::new()
    };
    Some(if facts.is_empty() {
        format!("held by {who}{more}")
    } else {
        format!("held by {who}{more} ({})", facts.join(", "))
    })
}

/// The status line's text.
pub(crate) fn line(key: &str, waited: Duration, holder: Option<&str>) -> String {
    match holder {
        Some(h) => format!("dlock: waiting for lock {key:?} ({}), {h}", seconds(waited)),
        None => format!("dlock: waiting for lock {key:?} ({})", seconds(waited)),
    }
}

/// The live status line: drawn on stderr only when it is a terminal.
pub(crate) struct WaitLine {
    tty: bool,
    drawn: Cell<bool>,
}

impl WaitLine {
    pub(crate) fn new(tty: bool) -> Self {
        WaitLine {
            tty,
            drawn: Cell::new(false),
        }
    }

    /// Redraws the line until dropped (never returns). Does nothing when
    /// stderr is not a terminal.
    pub(crate) async fn run(&self, locker: &Locker, key: &str, started: Instant) -> Infallible {
        if !self.tty {
            return std::future::pending().await;
        }
        // The last status and when it was asked for: the time left counts
        // down between queries.
        let mut last: Option<(LockStatus, Instant)> = None;
        let mut next_query = started + SHOW_AFTER;
        loop {
            sleep(REDRAW).await;
            let now = Instant::now();
            if now < started + SHOW_AFTER {
                continue;
            }
            if now >= next_query {
                let asked = Instant::now();
                if let Ok(Ok(status)) = timeout(REQUERY, locker.status(key)).await {
                    last = Some((status, asked));
                }
                next_query = Instant::now() + REQUERY;
            }
            let holder = last.as_ref().and_then(|(status, asked)| {
                let mut status = status.clone();
                for h in &mut status.holders {
                    h.remaining = h.remaining.map(|r| r.saturating_sub(asked.elapsed()));
                }
                describe(&status)
            });
            let text = line(key, started.elapsed(), holder.as_deref());
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
            self.drawn.set(true);
        }
    }

    /// Erases the line if it was drawn.
    pub(crate) fn clear(&self) {
        if self.drawn.replace(false) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_core::{FencingToken, HolderStatus, Key};

    #[test]
    fn holders_are_described_with_what_the_store_knows() {
        let key = Key::new("k").unwrap();
        assert_eq!(describe(&LockStatus::free(key.clone())), None);
        let mut status = LockStatus::free(key);
        let mut holder = HolderStatus::new(Some("web-3:42:abc".into()));
        holder.token = Some(FencingToken(7));
        holder.remaining = Some(Duration::from_millis(12_340));
        status.holders.push(holder);
        assert_eq!(
            describe(&status).unwrap(),
            "held by web-3:42:abc (token 7, 12.3s left)"
        );
        assert_eq!(
            line(
                "k",
                Duration::from_millis(3_210),
                describe(&status).as_deref()
            ),
            "dlock: waiting for lock \"k\" (3.2s), held by web-3:42:abc (token 7, 12.3s left)"
        );
    }
}
