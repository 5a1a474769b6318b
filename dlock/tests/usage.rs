//! End-to-end tests of dlock's usage errors, unreachable stores, help,
//! and the `check`, `bench` and `demo` subcommands.

mod common;

use common::{Kind, code, dead_addr, run, stderr, stdout, stores};

fn assert_one_line_error(out: &std::process::Output, expected: i32, args: &[&str]) {
    let err = stderr(out);
    assert_eq!(code(out), expected, "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("dlock: "), "{args:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_durations_keys_and_urls_exit_64_with_one_line() {
    let m = "memory://";
    let cases: &[&[&str]] = &[
        &["run", "-b", m, "--kye", "k", "--", "true"],
        &["run", "-b", m, "--key", "k"],
        &["run", "-b", m, "--key", "k", "--ttl", "30", "--", "true"],
        &["run", "-b", m, "--key", "k", "--ttl", "50ms", "--", "true"],
        &["run", "-b", m, "--key", "k", "--ttl", "25h", "--", "true"],
        &["run", "-b", m, "--key", "k", "--wait", "1.5s", "--", "true"],
        &["run", "-b", m, "--key", "k", "--grace", "-1s", "--", "true"],
        &[
            "run",
            "-b",
            m,
            "--key",
            "k",
            "--wait",
            "1s",
            "--no-wait",
            "--",
            "true",
        ],
        &["run", "-b", m, "--key", "", "--", "true"],
        &["run", "-b", m, "--key", "a\tb", "--", "true"],
        &["run", "-b", m, "--key", "k", "--owner", "", "--", "true"],
        &["run", "--key", "k", "--", "true"],
        &["run", "-b", "redis//127.0.0.1", "--key", "k", "--", "true"],
        &[
            "run",
            "-b",
            "mongodb://127.0.0.1:1",
            "--key",
            "k",
            "--",
            "true",
        ],
        &["run", "-b", "memory://?tll=1s", "--key", "k", "--", "true"],
        &["status", "-b", m],
        &["status", "--key", "k"],
        &["check"],
        &["check", "-b", "nope"],
        &["bench", "-b", m, "--iterations", "0"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = run(*args).await;
        assert_one_line_error(&out, 64, args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_not_compiled_in_are_usage_errors_naming_their_crate() {
    for kind in Kind::ALL.into_iter().filter(|k| !k.enabled()) {
        let url = format!("{}://127.0.0.1:1", kind.scheme());
        let out = run(["status", "-b", &url, "-k", "k"]).await;
        assert_one_line_error(&out, 64, &[&url]);
        assert!(stderr(&out).contains(kind.krate()), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_exits_69_naming_the_address() {
    let addr = dead_addr().to_string();
    let url = format!("redis://{addr}?timeout=500ms");
    for args in [
        &["run", "-b", &url, "-k", "k", "--", "true"][..],
        &["status", "-b", &url, "-k", "k"],
        &["check", "-b", &url],
        &["bench", "-b", &url],
        &["demo", "flash-sale", "-b", &url],
    ] {
        let out = run(args).await;
        assert_one_line_error(&out, 69, args);
        assert!(stderr(&out).contains(&addr), "{args:?}: {}", stderr(&out));
    }
    // The same through the environment.
    let mut cmd = common::dlock(["run", "-k", "k", "--", "true"]);
    cmd.env("DLOCK_BACKEND", &url);
    let out = common::finish(cmd.spawn().unwrap()).await;
    assert_one_line_error(&out, 69, &["DLOCK_BACKEND"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_reads_well_for_flock_users() {
    let out = run(["--help"]).await;
    assert_eq!(code(&out), 0);
    let top = stdout(&out);
    for needle in [
        "flock -n",
        "flock -w",
        "DLOCK_BACKEND",
        "75",
        "76",
        "redis://",
    ] {
        assert!(
            top.contains(needle),
            "dlock --help lacks {needle:?}:\n{top}"
        );
    }
    for sub in ["run", "status", "check", "bench"] {
        let out = run([sub, "--help"]).await;
        assert_eq!(code(&out), 0, "{sub}");
        assert!(
            stdout(&out).contains("Examples:"),
            "dlock {sub} --help:\n{}",
            stdout(&out)
        );
    }
    let run_help = stdout(&run(["run", "--help"]).await);
    for needle in [
        "flock -n",
        "flock -w",
        "DLOCK_TOKEN",
        "SIGTERM",
        "--grace",
        "exit 75",
    ] {
        assert!(
            run_help.contains(needle),
            "dlock run --help lacks {needle:?}"
        );
    }
    // The small built-in bench points to the full comparison.
    assert!(stdout(&run(["bench", "--help"]).await).contains("dlock-bench"));
    let out = run(["demo", "flash-sale", "--help"]).await;
    assert!(stdout(&out).contains("Examples:"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_runs_the_conformance_table_on_every_store() {
    let stores = stores().await;
    let urls = std::iter::once("memory://".to_owned()).chain(stores.iter().map(|s| s.url.clone()));
    for url in urls {
        let out = run(["check", "-b", &url]).await;
        let table = stdout(&out);
        assert_eq!(code(&out), 0, "{table}{}", stderr(&out));
        assert!(
            table.contains(&format!("dlock conformance: {url}")),
            "{table}"
        );
        assert!(table.contains("mutual_exclusion"), "{table}");
        assert!(
            table.contains("summary:") && table.contains(" 0 failed"),
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_prints_its_table_on_every_store() {
    for store in stores().await {
        let out = run([
            "bench",
            "-b",
            &store.url,
            "--iterations",
            "20",
            "--tasks",
            "8",
            "--duration",
            "500ms",
        ])
        .await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let table = stdout(&out);
        assert!(table.contains("uncontended lock+release"), "{table}");
        assert!(table.contains("hot key, 8 tasks: hand-off"), "{table}");
        assert!(table.contains("grants/s"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_flash_sale_defaults_to_memory() {
    let out = run(["demo", "flash-sale", "--buyers", "50", "--stock", "10"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("memory://"), "{}", stdout(&out));
}
