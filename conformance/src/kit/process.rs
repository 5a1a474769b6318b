//! One server process: spawn it with a watchdog, signal it, kill and reap it.
//!
//! The server is a direct child of the test process, so every signal goes to
//! the server itself and the kit reaps it. Beside it runs a watchdog, a tiny
//! `sh` whose stdin is a pipe whose only write end the test process holds. The
//! watchdog blocks reading that pipe; when the test process dies in any way,
//! even by SIGKILL, the kernel closes the write end, the read returns, and the
//! watchdog kills the server and removes its scratch directory. The workspace
//! forbids `unsafe`, so `prctl(PR_SET_PDEATHSIG)` in a `pre_exec` hook is not
//! an option.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

use super::KitError;

/// Kills the server and cleans up once the test process is gone. Signals that
/// reach the whole process group (Ctrl-C, a runner's SIGTERM) are ignored, so
/// that the watchdog outlives the test process and still does its job.
const WATCHDOG: &str = r#"trap '' INT TERM HUP; read _; kill -9 "$1" 2>/dev/null; rm -rf "$2""#;

/// How long a server may take to stop all its threads after SIGSTOP.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many lines of the log an error quotes.
const LOG_TAIL_LINES: usize = 40;

/// A server process that can be killed, paused, resumed and started again
/// with the same command line, data and log.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    log_path: PathBuf,
    running: Mutex<Option<Running>>,
    // Declared last: the Drop impl kills the server before the directory
    // holding its data is removed.
    dir: TempDir,
}

#[derive(Debug)]
struct Running {
    server: Child,
    watchdog: Child,
}

impl ServerProcess {
    /// Describes a server run as `program args...` in `dir`, with its output
    /// appended to `dir/server.log`. Nothing is started yet.
    pub(crate) fn new(name: String, program: PathBuf, args: Vec<OsString>, dir: TempDir) -> Self {
        let log_path = dir.path().join("server.log");
        ServerProcess {
            name,
            program,
            args,
            log_path,
            running: Mutex::new(None),
            dir,
        }
    }

    /// A description for messages, such as `redis-server on 127.0.0.1:1234`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The scratch directory that holds the server's data and log.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts the server, first killing the previous run if there is one.
    pub(crate) fn start(&self) -> Result<(), KitError> {
        let mut running = self.lock();
        if let Some(old) = running.take() {
            stop(old);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| KitError::io(format!("cannot open {}", self.log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| KitError::io("cannot duplicate the log file", e))?;
        let server = Command::new(&self.program)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| KitError::io(format!("cannot start {}", self.program.display()), e))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("dlock-kit-watchdog")
            .arg(server.id().to_string())
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match watchdog {
            Ok(watchdog) => {
                *running = Some(Running { server, watchdog });
                Ok(())
            }
            Err(e) => {
                stop_child(server);
                Err(KitError::io("cannot start the watchdog (`sh`)", e))
            }
        }
    }

    /// Kills the server with SIGKILL and reaps it. Does nothing if it is not
    /// running.
    pub(crate) fn kill(&self) {
        if let Some(old) = self.lock().take() {
            stop(old);
        }
    }

    /// Sends `signal` (SIGCONT, ...) to the server.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), KitError> {
        let running = self.lock();
        let pid = running
            .as_ref()
            .filter(|r| exit_status(&r.server).is_none())
            .map(|r| r.server.id())
            .ok_or_else(|| KitError::Signal {
                server: self.name.clone(),
                reason: "it is not running".into(),
            })?;
        kill(as_pid(pid), signal).map_err(|e| KitError::Signal {
            server: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// Freezes the server with SIGSTOP and waits until all its threads have
    /// stopped: `kill` returns before that, and on a busy machine a request
    /// can still be answered in between.
    pub(crate) async fn pause(&self) -> Result<(), KitError> {
        self.signal(Signal::SIGSTOP)?;
        let started = Instant::now();
        loop {
            if self.is_stopped() {
                return Ok(());
            }
            if !self.is_running() || started.elapsed() > STOP_TIMEOUT {
                return Err(KitError::Signal {
                    server: self.name.clone(),
                    reason: format!("it did not stop within {STOP_TIMEOUT:?} of SIGSTOP"),
                });
            }
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether the whole server process is stopped (by SIGSTOP).
    fn is_stopped(&self) -> bool {
        let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        self.lock().as_ref().is_some_and(|r| {
            matches!(
                waitid(Id::Pid(as_pid(r.server.id())), flags),
                Ok(WaitStatus::Stopped(..))
            )
        })
    }

    /// The server's process id, while it has one (running, paused, or exited
    /// but not yet reaped).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.server.id())
    }

    /// Whether the server process exists and has not exited. A paused server
    /// is running.
    pub(crate) fn is_running(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|r| exit_status(&r.server).is_none())
    }

    /// How the server exited, if it was started and has exited on its own.
    pub(crate) fn exit_status(&self) -> Option<String> {
        self.lock().as_ref().and_then(|r| exit_status(&r.server))
    }

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        // A panic elsewhere while holding the lock leaves the state usable.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills and reaps a run. The watchdog goes first: once the server is reaped
/// its pid may be reused, and the watchdog must not kill a stranger.
fn stop(run: Running) {
    stop_child(run.watchdog);
    stop_child(run.server);
}

/// SIGKILL, then reap. The wait is short: a killed process only has to be
/// torn down by the kernel (the servers keep their data on tmpfs).
fn stop_child(mut child: Child) {
    let _ = kill(as_pid(child.id()), Signal::SIGKILL);
    let _ = child.wait();
}

/// How `child` exited, without reaping it: an exited server stays a zombie
/// until the kit reaps it on purpose, so its pid cannot be reused while the
/// watchdog still holds it.
fn exit_status(child: &Child) -> Option<String> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(as_pid(child.id())), flags) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exit code {code}")),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("killed by {signal}")),
        Ok(other) => Some(format!("{other:?}")),
        // Only happens if the child was already reaped.
        Err(e) => Some(format!("gone ({e})")),
    }
}

fn as_pid(pid: u32) -> Pid {
    // Linux pids fit in an i32 (pid_max is at most 2^22).
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// The last [`LOG_TAIL_LINES`] lines of a log, read from at most its last
/// 64 KiB.
fn log_tail(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    Ok(if tail.is_empty() {
        "(log is empty)".to_string()
    } else {
        tail.join("\n")
    })
}
