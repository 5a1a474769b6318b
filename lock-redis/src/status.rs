//! What `status` reports of a lock's place in Redis, foreign data included.

use crate::scripts::{Found, Names};
use lock_core::{FencingToken, HolderStatus, Key, LockStatus};
use std::time::Duration;

fn remaining(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

/// Builds the status of `key` from what the status script `found`.
pub(crate) fn lock_status(key: &Key, names: &Names, found: Found) -> LockStatus {
    let mut status = LockStatus::free(key.clone());
    status.last_token = found.counter.filter(|&c| c > 0).map(FencingToken);
    match found.kind.as_str() {
        "none" => {}
        "hash" => {
            for pair in found.body.chunks(2) {
                let [owner, count] = pair else { continue };
                let mut holder = HolderStatus::new(Some(owner.clone()));
                holder.remaining = remaining(found.pttl);
                match count.parse::<u32>() {
                    Ok(n) if n >= 1 => {
                        holder.count = Some(n);
                        holder.token = status.last_token;
                    }
                    _ => {
                        holder.detail = Some(format!(
                            "foreign data: field {owner:?} of hash {:?} is {count:?}, not a hold count",
                            names.lock
                        ));
                    }
                }
                status.holders.push(holder);
            }
            if status.holders.is_empty() {
                let mut holder = HolderStatus::new(None);
                holder.detail = Some(format!("an empty hash at {:?}", names.lock));
                status.holders.push(holder);
            }
        }
        kind => {
            let mut holder = HolderStatus::new(None);
            holder.remaining = remaining(found.pttl);
            let sample = found
                .body
                .first()
                .map(|s| format!(" starting {s:?}"))
                .unwrap_or_default();
            holder.detail = Some(format!(
                "foreign data: a Redis {kind} at {:?}{sample}; it counts as held by someone else",
                names.lock
            ));
            status.holders.push(holder);
        }
    }
    status
}
