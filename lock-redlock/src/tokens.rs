//! The largest fencing counter this client has seen per key: the token it
//! proposes next is one more, so that in the common case (this client saw
//! the last hold's token, or the nodes agree with what it saw) one round
//! settles the token.

use lock_core::Key;
use std::collections::HashMap;
use std::sync::Mutex;

/// Past this many keys the memory is forgotten (a proposal that is too
/// small costs one more round, never a wrong token).
const MAX_KEYS: usize = 65_536;

/// Per-key memory of the largest counter seen.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    counters: Mutex<HashMap<String, u64>>,
}

impl Seen {
    /// The token to propose for `key`: one more than the largest counter
    /// seen (1 for a key never seen).
    pub(crate) fn proposal(&self, key: &Key) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key.as_str())
            .copied()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Remembers that a node's counter for `key` is at least `value`.
    pub(crate) fn observe(&self, key: &Key, value: u64) {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key.as_str()) {
            map.clear();
        }
        let entry = map.entry(key.as_str().to_owned()).or_insert(0);
        *entry = (*entry).max(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_one_more_than_seen() {
        let seen = Seen::default();
        let k = Key::new("k").unwrap();
        assert_eq!(seen.proposal(&k), 1);
        seen.observe(&k, 7);
        seen.observe(&k, 3);
        assert_eq!(seen.proposal(&k), 8);
    }
}
