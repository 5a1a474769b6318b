//! End-to-end tests of `dlock run` and `dlock status`: the built binary
//! against real stores.

mod common;

use common::{Kind, code, dlock, finish, run, stderr, stdout, stores, wait_for_file};
use conformance::kit::resp::{self, Resp};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

/// The critical section of the counter test: read, sleep, write, with a
/// directory that only one process at a time can create to detect
/// overlap, and the token of each hold appended in order.
const COUNTER: &str = r#"
if ! mkdir "$DIR/inside" 2>/dev/null; then echo "$DLOCK_TOKEN" >> "$DIR/overlaps"; fi
n=$(cat "$DIR/count")
sleep 0.05
echo $((n + 1)) > "$DIR/count"
echo "$DLOCK_TOKEN" >> "$DIR/tokens"
rmdir "$DIR/inside"
"#;

fn tokens(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad token {l:?}"))
        })
        .collect()
}

fn assert_increasing(tokens: &[u64]) {
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_runs_count_exactly_without_overlap() {
    for store in stores().await {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("count"), "0\n").unwrap();
        let children: Vec<_> = (0..20)
            .map(|_| {
                let mut cmd = dlock([
                    "run",
                    "--backend",
                    &store.url,
                    "--key",
                    "e2e/counter",
                    "--ttl",
                    "10s",
                    "--wait",
                    "60s",
                    "--",
                    "sh",
                    "-c",
                    COUNTER,
                ]);
                cmd.env("DIR", dir.path());
                cmd.spawn().expect("spawning dlock")
            })
            .collect();
        for child in children {
            let out = finish(child).await;
            assert_eq!(code(&out), 0, "{:?}: {}", store.kind, stderr(&out));
            // Every run waited, with stderr not a terminal: no status line.
            assert_eq!(stderr(&out), "", "{:?}", store.kind);
        }
        let count = std::fs::read_to_string(dir.path().join("count")).unwrap();
        assert_eq!(count.trim(), "20", "{:?}", store.kind);
        assert!(
            !dir.path().join("overlaps").exists(),
            "{:?}: runs overlapped",
            store.kind
        );
        let tokens = tokens(&dir.path().join("tokens"));
        assert_eq!(tokens.len(), 20, "{:?}", store.kind);
        assert_increasing(&tokens);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_strictly_increase_across_runs_and_reach_the_command() {
    for store in stores().await {
        let mut seen = Vec::new();
        for i in 0..3 {
            let owner = format!("runner-{i}");
            let out = run([
                "run",
                "--backend",
                &store.url,
                "--key",
                "e2e/tokens",
                "--owner",
                &owner,
                "--",
                "sh",
                "-c",
                "echo \"$DLOCK_KEY $DLOCK_OWNER $DLOCK_TOKEN\"",
            ])
            .await;
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            let text = stdout(&out);
            let fields: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(fields[..2], ["e2e/tokens", owner.as_str()], "{text}");
            seen.push(fields[2].parse::<u64>().unwrap());
        }
        assert_increasing(&seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_exit_status_is_dlocks() {
    for store in stores().await {
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/status",
            "--",
            "sh",
            "-c",
            "exit 7",
        ])
        .await;
        assert_eq!(code(&out), 7, "{}", stderr(&out));
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/status",
            "--",
            "sh",
            "-c",
            "kill -KILL $$",
        ])
        .await;
        assert_eq!(code(&out), 128 + 9, "{}", stderr(&out));
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/status",
            "--",
            "/nonexistent/cmd",
        ])
        .await;
        assert_eq!(code(&out), 127, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("command not found"),
            "{}",
            stderr(&out)
        );
        // The lock was released after each of them.
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/status",
            "--no-wait",
            "--",
            "true",
        ])
        .await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_exits_75_at_once_naming_the_holder_and_status_shows_it() {
    for store in stores().await {
        let dir = tempfile::tempdir().unwrap();
        let started = dir.path().join("started");
        let mut holder = dlock([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/busy",
            "--owner",
            "holder-1",
            "--ttl",
            "20s",
            "--",
            "sh",
            "-c",
            "touch \"$DIR/started\"; sleep 60",
        ]);
        holder.env("DIR", dir.path());
        let holder = holder.spawn().unwrap();
        wait_for_file(&started).await;

        let t = Instant::now();
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/busy",
            "--no-wait",
            "--",
            "true",
        ])
        .await;
        let took = t.elapsed();
        assert_eq!(code(&out), 75, "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        // etcd's mutex layout (shared with etcdctl) keeps no owner id: the
        // holder is named by its key and lease there.
        let owner_known = store.kind != Kind::Etcd;
        if owner_known {
            assert!(err.contains("held by holder-1"), "{err}");
        } else {
            assert!(err.contains("held by key \"e2e/busy/"), "{err}");
        }
        assert!(err.contains("--no-wait"), "{err}");
        // "At once": far less than the holder's 60 s (or its 20 s ttl).
        assert!(took < Duration::from_secs(10), "took {took:?}");

        let out = run([
            "run", "-b", &store.url, "-k", "e2e/busy", "--wait", "300ms", "--", "true",
        ])
        .await;
        assert_eq!(code(&out), 75, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("gave up after waiting"),
            "{}",
            stderr(&out)
        );

        let out = run(["status", "-b", &store.url, "-k", "e2e/busy", "--json"]).await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["held"], true, "{v}");
        if owner_known {
            assert_eq!(v["owner"], "holder-1", "{v}");
        }
        let left = v["remaining_ms"].as_u64();
        assert!(left.is_none_or(|ms| ms <= 20_000), "{v}");
        let out = run(["status", "-b", &store.url, "-k", "e2e/busy"]).await;
        assert!(
            stdout(&out).contains("state       held"),
            "{}",
            stdout(&out)
        );

        kill(Pid::from_raw(holder.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let out = finish(holder).await;
        assert_eq!(code(&out), 128 + 15, "{}", stderr(&out));
        let out = run(["status", "-b", &store.url, "-k", "e2e/busy", "--json"]).await;
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["held"], false, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_the_command_and_the_lock_is_freed_at_once() {
    for store in stores().await {
        let dir = tempfile::tempdir().unwrap();
        // A ttl far longer than the test: only a release frees the lock.
        let mut holder = dlock([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/sigterm",
            "--ttl",
            "10m",
            "--",
            "sh",
            "-c",
            "trap 'touch \"$DIR/got-term\"; exit 3' TERM; touch \"$DIR/started\"; while :; do sleep 0.05; done",
        ]);
        holder.env("DIR", dir.path());
        let holder = holder.spawn().unwrap();
        wait_for_file(&dir.path().join("started")).await;
        kill(Pid::from_raw(holder.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let out = finish(holder).await;
        assert_eq!(code(&out), 3, "the command's own status: {}", stderr(&out));
        assert!(
            dir.path().join("got-term").exists(),
            "the command never saw SIGTERM"
        );
        let out = run([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/sigterm",
            "--no-wait",
            "--",
            "true",
        ])
        .await;
        assert_eq!(code(&out), 0, "lock not freed: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_waiting_cancels_the_wait_and_runs_nothing() {
    for store in stores().await {
        let dir = tempfile::tempdir().unwrap();
        let mut holder = dlock([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/cancel",
            "--",
            "sh",
            "-c",
            "touch \"$DIR/started\"; sleep 60",
        ]);
        holder.env("DIR", dir.path());
        let holder = holder.spawn().unwrap();
        wait_for_file(&dir.path().join("started")).await;
        let mut waiter = dlock([
            "run",
            "-b",
            &store.url,
            "-k",
            "e2e/cancel",
            "--",
            "sh",
            "-c",
            "touch \"$DIR/ran\"",
        ]);
        waiter.env("DIR", dir.path());
        let waiter = waiter.spawn().unwrap();
        let pid = waiter.id().unwrap() as i32;
        // Once dlock catches SIGINT, it is connecting or waiting.
        let deadline = Instant::now() + common::LIMIT;
        while !catches(pid, Signal::SIGINT) {
            assert!(Instant::now() < deadline, "dlock never caught SIGINT");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
        let out = finish(waiter).await;
        assert_eq!(code(&out), 128 + 2, "{}", stderr(&out));
        assert!(!dir.path().join("ran").exists());
        kill(Pid::from_raw(holder.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        finish(holder).await;
    }
}

/// Deletes the Redis key behind the holder's back; the holder's next
/// renewal finds it gone.
async fn delete_redis_key(addr: std::net::SocketAddr, key: &str) {
    let reply = resp::command(addr, &["DEL", key]).await.unwrap();
    assert_eq!(
        reply,
        Resp::Integer(1),
        "the lock's hash was not at {key:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_deleted_behind_its_back_stops_the_command_and_exits_76() {
    let store = Kind::Redis.start().await;
    let addr = store.redis.unwrap();

    // A command that stops on SIGTERM.
    let dir = tempfile::tempdir().unwrap();
    let mut holder = dlock([
        "run",
        "-b",
        &store.url,
        "-k",
        "e2e/lost",
        "--ttl",
        "3s",
        "--",
        "sh",
        "-c",
        "trap 'touch \"$DIR/got-term\"; exit 0' TERM; touch \"$DIR/started\"; while :; do sleep 0.05; done",
    ]);
    holder.env("DIR", dir.path());
    let holder = holder.spawn().unwrap();
    wait_for_file(&dir.path().join("started")).await;
    delete_redis_key(addr, "e2e/lost").await;
    let out = finish(holder).await;
    assert_eq!(code(&out), 76, "{}", stderr(&out));
    assert!(
        dir.path().join("got-term").exists(),
        "the command never saw SIGTERM"
    );
    assert!(stderr(&out).contains("lost"), "{}", stderr(&out));

    // A command that ignores SIGTERM is killed after --grace, with its
    // whole process group (the background sleep too).
    let dir = tempfile::tempdir().unwrap();
    let mut holder = dlock([
        "run",
        "-b",
        &store.url,
        "-k",
        "e2e/lost",
        "--ttl",
        "3s",
        "--grace",
        "300ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 60 & echo $! > \"$DIR/bg\"; touch \"$DIR/started\"; while :; do sleep 0.05; done",
    ]);
    holder.env("DIR", dir.path());
    let holder = holder.spawn().unwrap();
    wait_for_file(&dir.path().join("started")).await;
    delete_redis_key(addr, "e2e/lost").await;
    let out = finish(holder).await;
    assert_eq!(code(&out), 76, "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGKILL"), "{}", stderr(&out));
    let bg: i32 = std::fs::read_to_string(dir.path().join("bg"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(bg) {
        assert!(
            Instant::now() < deadline,
            "the command's background child survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` has a handler for `sig` (its `SigCgt` mask in /proc).
fn catches(pid: i32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_a_live_status_line_names_the_holder() {
    let store = stores().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut holder = dlock([
        "run",
        "-b",
        &store.url,
        "-k",
        "e2e/tty",
        "--owner",
        "holder-tty",
        "--",
        "sh",
        "-c",
        "touch \"$DIR/started\"; sleep 60",
    ]);
    holder.env("DIR", dir.path());
    let holder = holder.spawn().unwrap();
    wait_for_file(&dir.path().join("started")).await;
    // script(1) (util-linux) runs the waiter on a pseudo-terminal: stdin,
    // stdout and stderr are that terminal, and dlock is its foreground.
    let waiter = format!(
        "'{}' run -b '{}' -k e2e/tty -- sh -c 'exit 4'",
        env!("CARGO_BIN_EXE_dlock"),
        store.url
    );
    let mut script = tokio::process::Command::new("script")
        .args(["-qec", &waiter, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running script(1) from util-linux, which this test needs");
    // Read the terminal until the status line names the holder, then let
    // the holder go.
    let mut terminal = script.stdout.take().unwrap();
    let mut screen = Vec::new();
    let seen = tokio::time::timeout(common::LIMIT, async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&screen).contains("held by holder-tty") {
            let n = terminal.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the terminal closed early");
            screen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let shown = String::from_utf8_lossy(&screen).into_owned();
    assert!(seen.is_ok(), "no status line naming the holder: {shown:?}");
    assert!(shown.contains("waiting for lock \"e2e/tty\""), "{shown:?}");
    kill(Pid::from_raw(holder.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(code(&finish(holder).await), 128 + 15);
    terminal.read_to_end(&mut screen).await.unwrap();
    let status = tokio::time::timeout(common::LIMIT, script.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(4),
        "{:?}",
        String::from_utf8_lossy(&screen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_stops_the_command_and_exits_76() {
    let store = Kind::Redis.start().await;
    let proxy = conformance::kit::FaultProxy::start(store.redis.unwrap())
        .await
        .unwrap();
    let url = format!("redis://{}?timeout=300ms", proxy.addr());
    let dir = tempfile::tempdir().unwrap();
    let mut holder = dlock([
        "run",
        "-b",
        &url,
        "-k",
        "e2e/silent",
        "--ttl",
        "1s",
        "--",
        "sh",
        "-c",
        "trap 'touch \"$DIR/got-term\"; exit 0' TERM; touch \"$DIR/started\"; while :; do sleep 0.05; done",
    ]);
    holder.env("DIR", dir.path());
    let holder = holder.spawn().unwrap();
    wait_for_file(&dir.path().join("started")).await;
    // The store neither answers nor closes: renewals cannot be confirmed,
    // and the hold's validity runs out.
    proxy.blackhole();
    let out = finish(holder).await;
    assert_eq!(code(&out), 76, "{}", stderr(&out));
    assert!(
        dir.path().join("got-term").exists(),
        "the command never saw SIGTERM"
    );
}
