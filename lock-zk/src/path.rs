//! Where a key's lock lives in the ZooKeeper tree, and which children of
//! that place are contenders (Curator's `InterProcessMutex` layout).
//!
//! A key is ONE path component under the base path (chroot + prefix):
//! percent-encoding escapes `%`, `/`, the characters ZooKeeper refuses in
//! paths (U+007F to U+009F, U+D800 to U+F8FF, U+FFF0 to U+FFFF; keys have no
//! other control characters) and a leading `.` (so that `.` and `..` stay
//! plain names). The mapping is injective (`%` itself is escaped) and
//! reversible ([`decode_key`]).

use lock_core::{Error, Key, Result};
use std::fmt::Write as _;

/// What Curator's `InterProcessMutex` puts between the protection prefix
/// and the sequence number.
pub(crate) const LOCK_NAME: &str = "lock-";

/// How many digits ZooKeeper appends to a sequential node's name.
pub(crate) const SEQUENCE_DIGITS: usize = 10;

/// Whether ZooKeeper refuses `c` in a path (its `PathUtils.validatePath`).
fn forbidden(c: char) -> bool {
    let u = u32::from(c);
    u <= 0x1f || (0x7f..=0x9f).contains(&u) || (0xd800..=0xf8ff).contains(&u) || u >= 0xfff0
}

/// The path component of `key`: the name of its lock node under the base
/// path (chroot + prefix).
///
/// # Examples
/// ```
/// use lock_zk::{decode_key, encode_key};
/// assert_eq!(encode_key("order/123"), "order%2F123");
/// assert_eq!(encode_key(".."), "%2E.");
/// assert_eq!(decode_key("order%2F123").as_deref(), Some("order/123"));
/// ```
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, c) in key.char_indices() {
        let escape = c == '%' || c == '/' || forbidden(c) || (i == 0 && c == '.');
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The key whose path component is `component`, if it is one
/// [`encode_key`] makes (so a lock node's name can be read back as its
/// key).
pub fn decode_key(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(out).ok()?;
    (encode_key(&key) == component).then_some(key)
}

/// Checks and normalises a base path (chroot joined with prefix): empty
/// for the root, else `/a/b` with no empty, `.` or `..` component and no
/// character ZooKeeper refuses.
pub(crate) fn normalize_base(what: &str, path: &str) -> Result<String> {
    let mut out = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(Error::config(format!(
                "{what} {path:?}: `.` and `..` are not allowed as path components"
            )));
        }
        if let Some(c) = part.chars().find(|&c| forbidden(c)) {
            return Err(Error::config(format!(
                "{what} {path:?}: ZooKeeper does not allow U+{:04X} in paths",
                u32::from(c)
            )));
        }
        out.push('/');
        out.push_str(part);
    }
    Ok(out)
}

/// The lock node (the parent of the contenders) of `key` under `base`.
pub(crate) fn lock_dir(base: &str, key: &Key) -> String {
    format!("{base}/{}", encode_key(key.as_str()))
}

/// The name prefix of one attempt's node: `_c_<uuid>-lock-`. ZooKeeper
/// appends the sequence number.
pub(crate) fn node_prefix(attempt: &uuid::Uuid) -> String {
    format!("_c_{attempt}-{LOCK_NAME}")
}

/// The sequence number of a contender: any child whose name ends in
/// [`SEQUENCE_DIGITS`] digits, whoever created it.
pub(crate) fn sequence(child: &str) -> Option<u64> {
    if child.len() < SEQUENCE_DIGITS {
        return None;
    }
    let digits = child.get(child.len() - SEQUENCE_DIGITS..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The contenders among `children`, in queue order (by sequence number).
pub(crate) fn contenders(children: Vec<String>) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = children
        .into_iter()
        .filter_map(|c| sequence(&c).map(|s| (s, c)))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_one_component_and_back() {
        for key in [
            "inventory:1001",
            "order/123",
            "a%2Fb",
            ".",
            "..",
            "..x",
            "x/..",
            "cron.clean-expired",
            "ünïcödé/🔒",
            "\u{80}\u{9f}\u{e000}\u{fff0}\u{ffff}",
            "{tag}:x",
            "lock-0000000001",
        ] {
            let c = encode_key(key);
            assert!(!c.contains('/'), "{key:?} -> {c:?}");
            assert!(
                c != "." && c != ".." && !c.starts_with('.'),
                "{key:?} -> {c:?}"
            );
            assert!(!c.chars().any(forbidden), "{key:?} -> {c:?}");
            assert_eq!(decode_key(&c).as_deref(), Some(key), "{c:?}");
        }
        assert_ne!(encode_key("a/b"), encode_key("a%2Fb"));
        assert_eq!(decode_key("%2"), None);
        assert_eq!(decode_key("%2f"), None, "only the canonical form decodes");
    }

    #[test]
    fn contenders_are_children_with_ten_digits() {
        let got = contenders(vec![
            "_c_b-lock-0000000002".into(),
            "foreign".into(),
            "x-0000000001".into(),
            "lock-00001".into(),
            "_c_a-lock-0000000010".into(),
        ]);
        let names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-0000000001",
                "_c_b-lock-0000000002",
                "_c_a-lock-0000000010"
            ]
        );
    }

    #[test]
    fn bases_are_checked() {
        assert_eq!(normalize_base("prefix", "").unwrap(), "");
        assert_eq!(normalize_base("prefix", "/").unwrap(), "");
        assert_eq!(normalize_base("prefix", "a//b/").unwrap(), "/a/b");
        assert!(normalize_base("prefix", "/a/../b").is_err());
        assert!(normalize_base("prefix", "/a\u{fff0}").is_err());
    }
}
