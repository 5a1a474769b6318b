//! Validated names: [`Key`] (what is locked) and [`Owner`] (who holds it).

use crate::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// The longest key or owner, in bytes (SPEC "Words").
pub const MAX_LEN: usize = 255;

fn is_control(c: char) -> bool {
    // SPEC: U+0000 to U+001F and U+007F. Other Unicode is allowed.
    c <= '\u{1f}' || c == '\u{7f}'
}

/// Checks the SPEC rules shared by keys and owners; `what` names the thing
/// in the message.
fn check(what: &str, s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty (1 to {MAX_LEN} bytes allowed)"));
    }
    if s.len() > MAX_LEN {
        return Err(format!(
            "{what} is {} bytes long (1 to {MAX_LEN} bytes allowed)",
            s.len()
        ));
    }
    if let Some((at, c)) = s.char_indices().find(|&(_, c)| is_control(c)) {
        return Err(format!(
            "{what} has control character U+{:04X} at byte {at}",
            c as u32
        ));
    }
    Ok(())
}

/// The name of a lock: 1 to 255 bytes of UTF-8 with no control characters
/// (U+0000 to U+001F, U+007F). Every valid key works on every backend.
///
/// Cheap to clone.
///
/// # Examples
/// ```
/// use lock_core::{ErrorKind, Key};
/// assert_eq!(Key::new("inventory:1001").unwrap().as_str(), "inventory:1001");
/// assert_eq!(Key::new("").unwrap_err().kind(), ErrorKind::InvalidKey);
/// assert_eq!(Key::new("a\nb").unwrap_err().kind(), ErrorKind::InvalidKey);
/// assert_eq!(Key::new("x".repeat(256)).unwrap_err().kind(), ErrorKind::InvalidKey);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// Validates `key`, or fails with [`Error::InvalidKey`] naming the problem.
    pub fn new(key: impl AsRef<str>) -> Result<Self> {
        let key = key.as_ref();
        check("key", key).map_err(Error::InvalidKey)?;
        Ok(Key(Arc::from(key)))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Key::new(s)
    }
}

/// Who holds a lock: an explicit, printable id (1 to 255 bytes, no control
/// characters), never a thread id. Two acquisitions with the same owner in
/// one locker re-enter; an acquisition that names no owner gets
/// [`Owner::random`], so two tasks of one process exclude each other exactly
/// as two processes do.
///
/// # Examples
/// ```
/// use lock_core::Owner;
/// let a = Owner::random();
/// assert_ne!(a, Owner::random());
/// assert_eq!(Owner::new("worker-7").unwrap().as_str(), "worker-7");
/// assert!(Owner::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(Arc<str>);

impl Owner {
    /// Validates `owner`, or fails with [`Error::InvalidConfig`] naming the
    /// problem.
    pub fn new(owner: impl AsRef<str>) -> Result<Self> {
        let owner = owner.as_ref();
        check("owner", owner).map_err(Error::InvalidConfig)?;
        Ok(Owner(Arc::from(owner)))
    }

    /// A fresh owner id, unique across processes and machines (a random
    /// UUID, like the client id Redisson and Curator put in theirs).
    pub fn random() -> Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Owner(Arc::from(
            &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text),
        ))
    }

    /// The owner id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        assert!(Key::new("k").is_ok());
        assert!(Key::new("x".repeat(255)).is_ok());
        let long = Key::new("x".repeat(256)).unwrap_err();
        assert!(long.to_string().contains("256 bytes"), "{long}");
        // 255 bytes made of 2-byte characters is fine; one more byte is not.
        assert!(Key::new("é".repeat(127)).is_ok());
        assert!(Key::new(format!("{}x", "é".repeat(127))).is_ok());
        assert!(Key::new(format!("{}xx", "é".repeat(127))).is_err());
        let del = Key::new("a\u{7f}").unwrap_err();
        assert!(del.to_string().contains("U+007F"), "{del}");
        assert!(Key::new("order/123 with spaces {tag} ü 🦀").is_ok());
    }

    proptest! {
        #[test]
        fn key_valid_iff_spec_rules(s in any::<String>()) {
            let valid = !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}');
            match Key::new(&s) {
                Ok(k) => { prop_assert!(valid); prop_assert_eq!(k.as_str(), s.as_str()); }
                Err(e) => { prop_assert!(!valid); prop_assert_eq!(e.kind(), ErrorKind::InvalidKey); }
            }
        }

        #[test]
        fn long_or_controlled_keys_are_refused(len in 256usize..600, c in 0u32..0x20) {
            prop_assert!(Key::new("a".repeat(len)).is_err());
            let ctl = char::from_u32(c).unwrap();
            let with_control = format!("ab{ctl}cd");
            prop_assert!(Key::new(with_control).is_err());
        }
    }
}
