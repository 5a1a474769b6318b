//! The `conformance` binary end to end, and the runner's exit codes.

use conformance::runner::{EXIT_UNAVAILABLE, RunError, probe};
use conformance::{Fixture, all_checks};
use lock_core::{Error, Locker, async_trait};
use std::process::{Command, Output};
use std::time::Duration;

fn conformance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conformance"))
        .args(args)
        .output()
        .expect("running the conformance binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn memory_url_passes_with_a_table() {
    let out = conformance(&["--prefix", "ci-run", "memory://"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("{stdout}");
    assert!(stdout.contains("CHECK") && stdout.contains("RESULT") && stdout.contains("TIME"));
    for check in all_checks() {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(check.name))
            .unwrap_or_else(|| panic!("no line for {} in:\n{stdout}", check.name));
        let expected = if check.destructive() {
            "not applicable"
        } else {
            "passed"
        };
        assert!(
            line.contains(expected),
            "{}: expected {expected}: {line}",
            check.name
        );
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn backend_not_in_this_build_is_a_usage_error() {
    let out = conformance(&["redis://127.0.0.1:1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("not enabled") && stderr.contains("lock-redis"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_scheme_and_bad_urls_are_usage_errors() {
    for url in ["mongodb://127.0.0.1:1", "not a url", "memory://?tll=1s"] {
        let out = conformance(&[url]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: {stderr}");
        assert!(stderr.starts_with("conformance: "), "{url}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{url}: one line: {stderr}"
        );
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &[][..],
        &["--jobs", "0", "memory://"],
        &["--frobnicate", "memory://"],
        &["a://", "b://"],
    ] {
        let out = conformance(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("usage: conformance"));
    }
    let help = conformance(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("usage: conformance"));
}

/// A deployment that cannot be reached (what a registered network backend
/// reports when nothing listens at its address).
struct Unreachable;

#[async_trait]
impl Fixture for Unreachable {
    fn name(&self) -> String {
        "redis://127.0.0.1:1".to_owned()
    }
    async fn locker(&self, _ttl: Duration) -> lock_core::Result<Locker> {
        Err(Error::unavailable(
            "connect 127.0.0.1:1: connection refused",
        ))
    }
}

#[test]
fn unreachable_store_exits_69() {
    let err = conformance::harness::runtime()
        .block_on(probe(&Unreachable))
        .expect_err("an unreachable store must not probe fine");
    assert!(matches!(err, RunError::Unavailable(_)), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_UNAVAILABLE);
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
