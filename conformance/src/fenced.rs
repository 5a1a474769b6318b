//! [`FencedResource`]: the storage side of fencing (SPEC item 3).

use lock_core::FencingToken;
use std::sync::Mutex;

/// A resource that remembers the largest fencing token it has accepted and
/// refuses writes carrying a smaller one, as a database does with
/// `UPDATE ... WHERE last_token <= $token`. A writer whose lock passed to
/// someone else (and so carries an older token) can never write.
///
/// # Examples
/// ```
/// use conformance::FencedResource;
/// use lock_core::FencingToken;
/// let r = FencedResource::new();
/// assert!(r.write(FencingToken(7), "a").is_ok());
/// assert!(r.write(FencingToken(7), "b").is_ok()); // the same hold again
/// assert!(r.write(FencingToken(6), "stale").is_err());
/// assert_eq!(r.value().as_deref(), Some("b"));
/// ```
#[derive(Debug, Default)]
pub struct FencedResource {
    state: Mutex<(Option<FencingToken>, Option<String>)>,
}

/// A write refused because a larger token was accepted before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The token the write carried.
    pub token: FencingToken,
    /// The largest token accepted so far.
    pub largest: FencingToken,
}

impl FencedResource {
    /// An empty resource that has accepted nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` if `token` is at least every token accepted before.
    pub fn write(&self, token: FencingToken, value: impl Into<String>) -> Result<(), Refused> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(largest) = state.0
            && token < largest
        {
            return Err(Refused { token, largest });
        }
        *state = (Some(token), Some(value.into()));
        Ok(())
    }

    /// The last value written.
    pub fn value(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}
