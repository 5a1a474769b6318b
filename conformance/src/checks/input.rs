//! Bad input is refused the same way on every backend (SPEC "Words",
//! "Errors", "URLs"), and every valid key works, each its own lock.

use super::util::{Keys, expect_err, locker, must_get, ok};
use crate::timing::LONG_TTL;
use crate::url_fixture::with_option;
use crate::{Fixture, Verdict};
use lock_core::{ErrorKind, MAX_LEN};
use std::time::Duration;

pub(crate) async fn bad_keys_and_ttls(fx: &dyn Fixture) -> Verdict {
    let client = locker(fx, LONG_TTL).await;
    let bad_keys = [
        String::new(),
        "x".repeat(MAX_LEN + 1),
        "line\nbreak".to_owned(),
        "nul\0byte".to_owned(),
        "tab\tkey".to_owned(),
        "del\u{7f}key".to_owned(),
    ];
    for k in &bad_keys {
        let what = |op: &str| format!("{op} with key {k:?}");
        expect_err(client.lock(k).await, ErrorKind::InvalidKey, what("lock"));
        expect_err(
            client.try_lock(k).await,
            ErrorKind::InvalidKey,
            what("try_lock"),
        );
        expect_err(
            client
                .request(k)
                .owner("o")
                .wait(Duration::from_secs(1))
                .lock()
                .await,
            ErrorKind::InvalidKey,
            what("lock with owner and wait"),
        );
        expect_err(
            client.status(k).await,
            ErrorKind::InvalidKey,
            what("status"),
        );
    }

    let keys = Keys::new(fx, "bad_keys_and_ttls");
    let valid = keys.key("k");
    let bad_ttls = [
        Duration::ZERO,
        Duration::from_millis(99),
        Duration::from_secs(25 * 3600),
    ];
    for ttl in bad_ttls {
        let what = |op: &str| format!("{op} with ttl {ttl:?}");
        expect_err(
            fx.locker(ttl).await,
            ErrorKind::InvalidConfig,
            what("a locker"),
        );
        expect_err(
            client.request(&valid).ttl(ttl).lock().await,
            ErrorKind::InvalidConfig,
            what("lock"),
        );
        expect_err(
            client.request(&valid).ttl(ttl).try_lock().await,
            ErrorKind::InvalidConfig,
            what("try_lock"),
        );
    }
    for owner in ["", "new\nline"] {
        expect_err(
            client.request(&valid).owner(owner).lock().await,
            ErrorKind::InvalidConfig,
            format!("lock with owner {owner:?}"),
        );
    }
    // Nothing of the refused requests reached the store.
    let g = must_get(&client, &valid, "the key all refused requests named").await;
    ok(g.release().await, "release");
    Verdict::Passed
}

pub(crate) async fn valid_keys_are_distinct_locks(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "valid_keys_are_distinct_locks");
    let client = locker(fx, LONG_TTL).await;
    let other = locker(fx, LONG_TTL).await;
    let base = keys.base();
    // Exactly MAX_LEN bytes, most of them two-byte characters.
    let room = MAX_LEN - base.len() - 1;
    let longest = format!("{base}/{}{}", "é".repeat(room / 2), "x".repeat(room % 2));
    // Names that a careless mapping into a store's namespace would make
    // collide: separators, case, escapes, hash tags, wildcards, Unicode.
    let names = [
        "a/b",
        "a_b",
        "a:b",
        "a.b",
        "a-b",
        "A/B",
        "a%2Fb",
        "a//b",
        "a/b/",
        "/a/b",
        "{a}b",
        "{a}/b",
        "a*",
        "a?",
        "a b",
        "ü",
        "u\u{308}",
        "🦀",
        "a\u{80}",
        "lock-0000000001",
        "_c_x-lock-",
    ];
    let mut all: Vec<String> = names.iter().map(|n| format!("{base}/{n}")).collect();
    all.push(longest);
    assert_eq!(all.last().map(String::len), Some(MAX_LEN));
    let mut held = Vec::new();
    for k in &all {
        held.push(must_get(&client, k, format!("key {k:?} (others of the set held)")).await);
        let status = ok(client.status(k).await, format!("status of {k:?}"));
        assert!(
            !status.is_free(),
            "status of held key {k:?} says it is free: {status:?}"
        );
    }
    for k in &all {
        super::util::must_be_held(&other, k, "each key of the set, all held").await;
    }
    for g in held {
        ok(g.release().await, "release");
    }
    Verdict::Passed
}

pub(crate) async fn bad_urls(fx: &dyn Fixture) -> Verdict {
    let url = fx
        .url()
        .expect("a check needing a URL runs only on a fixture with one");
    let cases = [
        (with_option(&url, "no_such_option", "1"), "no_such_option"),
        (with_option(&url, "ttl", "0s"), "ttl"),
        (with_option(&url, "ttl", "25h"), "ttl"),
        (with_option(&url, "ttl", "10"), "ttl"),
        (with_option(&url, "wait", "soon"), "wait"),
        (with_option(&url, "renew", "sometimes"), "renew"),
        (with_option(&url, "require", "telepathy"), "telepathy"),
        ("nosuchscheme://127.0.0.1:1".to_owned(), "known schemes"),
        ("not a url".to_owned(), "not a url"),
    ];
    for (bad, named) in cases {
        match lock_core::connect(&bad).await {
            Ok(_) => panic!("connect({bad:?}): expected InvalidConfig, got a locker"),
            Err(e) if e.kind() == ErrorKind::InvalidConfig => assert!(
                e.to_string().contains(named),
                "connect({bad:?}): the error does not name {named:?}: {e}"
            ),
            Err(e) => panic!(
                "connect({bad:?}): expected InvalidConfig, got {:?}: {e}",
                e.kind()
            ),
        }
    }
    Verdict::Passed
}
