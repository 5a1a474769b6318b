//! The fencing token handed out with each hold (SPEC item 3).

use std::fmt;

/// A fencing token: strictly larger for each new hold of a key than for any
/// hold that ended before it began, and equal across re-entries of one hold.
///
/// Pass it to the storage system you protect, and have that system refuse
/// any write carrying a token smaller than the largest it has seen: a holder
/// paused past its ttl then cannot overwrite its successor's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
