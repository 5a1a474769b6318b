//! `dlock run`: acquire, run the command, renew, release; stop the command
//! if the lock is lost.

use crate::cli::RunArgs;
use crate::exit::{self, Failure};
use crate::waitline::{self, WaitLine};
use futures::FutureExt as _;
use lock_core::{ErrorKind, LockGuard, Locker, Owner};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, timeout};

/// How long `status` may take when explaining why the lock is busy.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the final release may take before dlock leaves it to the
/// store's expiry.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The signals dlock catches (and passes on to the command).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        let listen = |kind| {
            signal(kind)
                .map_err(|e| Failure::new(exit::FAILURE, format!("cannot listen for signals: {e}")))
        };
        Ok(Signals {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            Some(()) = self.int.recv() => Signal::SIGINT,
            Some(()) = self.term.recv() => Signal::SIGTERM,
            Some(()) = self.hup.recv() => Signal::SIGHUP,
            else => std::future::pending().await,
        }
    }
}

/// Where signals for the command go: its process group (when it has one
/// of its own), or its process only.
#[derive(Clone, Copy, Debug)]
struct Target {
    pid: Pid,
    group: bool,
}

impl Target {
    fn send(self, sig: Signal) {
        // ESRCH (already gone) is fine: there is nothing left to signal.
        let _ = if self.group {
            killpg(self.pid, sig)
        } else {
            kill(self.pid, sig)
        };
    }
}

/// Whether dlock runs in the foreground of a terminal. Then the command
/// stays in dlock's process group, so the terminal's Ctrl-C and Ctrl-Z
/// reach it directly (and must not be passed on a second time).
fn in_terminal_foreground() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal() && nix::unistd::tcgetpgrp(&stdin) == Ok(nix::unistd::getpgrp())
}

/// The default owner: `HOSTNAME:PID:UUID`, unique per run and telling
/// `dlock status` readers where the holder runs.
fn default_owner() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host: String = host.chars().filter(|c| !c.is_control()).collect();
    let host = if host.is_empty() { "dlock" } else { &host };
    let owner = format!("{host}:{}:{}", std::process::id(), Owner::random().as_str());
    match Owner::new(&owner) {
        Ok(_) => owner,
        Err(_) => Owner::random().as_str().to_owned(),
    }
}

/// The exit code for a finished command: its code, or 128 + the signal
/// that ended it.
pub(crate) fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => exit::SIGNAL_BASE.saturating_add((sig & 0x7f) as u8),
        (None, None) => exit::FAILURE,
    }
}

fn signal_code(sig: Signal) -> u8 {
    exit::SIGNAL_BASE.saturating_add(sig as i32 as u8)
}

/// Runs `dlock run` on `backend`; returns the exit code.
pub(crate) async fn run(backend: &str, args: RunArgs) -> Result<u8, Failure> {
    // Listen before anything is held, so a signal while waiting cancels
    // the wait (leaving nothing in the store) rather than killing dlock.
    let mut signals = Signals::new()?;
    let locker = crate::connect(backend)
        .await
        .map_err(|e| Failure::connect(backend, &e))?;
    let owner = args.owner.clone().unwrap_or_else(default_owner);
    let guard = acquire(&locker, &args, &owner, &mut signals).await?;
    supervise(guard, &args, &mut signals).await
}

/// "lock KEY is held by ...; WHY", asking the store who holds it.
async fn busy(locker: &Locker, key: &str, why: &str) -> Failure {
    let holder = match timeout(STATUS_TIMEOUT, locker.status(key)).await {
        Ok(Ok(status)) => waitline::describe(&status)
            .unwrap_or_else(|| "held by someone else (free again now)".to_owned()),
        _ => "held by someone else".to_owned(),
    };
    Failure::new(exit::LOCK_BUSY, format!("lock {key:?} is {holder}; {why}"))
}

async fn acquire(
    locker: &Locker,
    args: &RunArgs,
    owner: &str,
    signals: &mut Signals,
) -> Result<LockGuard, Failure> {
    let key = args.key.as_str();
    let mut request = locker.request(key).owner(owner);
    if let Some(ttl) = args.ttl {
        request = request.ttl(ttl);
    }
    let wait = match args.no_wait {
        true => Some(Duration::ZERO),
        false => args.wait.or(locker.wait()),
    };
    let started = Instant::now();
    let got = match wait {
        Some(w) if w.is_zero() => request.try_lock().await,
        _ => {
            let request = match wait {
                Some(w) => request.wait(w),
                None => request.wait_forever(),
            };
            let status_line = WaitLine::new(std::io::stderr().is_terminal());
            let result = tokio::select! {
                r = request.lock() => r.map(Some),
                sig = signals.recv() => {
                    status_line.clear();
                    return Err(Failure::new(
                        signal_code(sig),
                        format!("{sig} while waiting for lock {key:?}; nothing was run"),
                    ));
                }
                never = status_line.run(locker, key, started) => match never {},
            };
            status_line.clear();
            result
        }
    };
    match got {
        Ok(Some(guard)) => Ok(guard),
        Ok(None) => {
            let why = match args.no_wait {
                true => "not waiting (--no-wait)",
                false => "not waiting (a wait of 0s)",
            };
            Err(busy(locker, key, why).await)
        }
        Err(e) if e.kind() == ErrorKind::Timeout => Err(busy(
            locker,
            key,
            &format!(
                "gave up after waiting {}",
                waitline::seconds(started.elapsed())
            ),
        )
        .await),
        Err(e) => Err(Failure::from_error(&e)),
    }
}

fn spawn_failure(program: &OsStr, e: &std::io::Error) -> Failure {
    let program = program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            Failure::new(exit::NOT_FOUND, format!("{program}: command not found"))
        }
        _ => Failure::new(exit::CANNOT_EXECUTE, format!("{program}: cannot run: {e}")),
    }
}

/// Releases the lock, warning (not failing) when the store does not
/// confirm: it frees the lock by expiry then.
async fn release(guard: LockGuard) {
    let key = guard.key().as_str().to_owned();
    let ttl = waitline::seconds(guard.ttl());
    match timeout(RELEASE_TIMEOUT, guard.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!(
            "dlock: warning: releasing lock {key:?}: {}; the store frees it within its ttl ({ttl})",
            exit::one_line(&e.to_string())
        ),
        Err(_) => eprintln!(
            "dlock: warning: releasing lock {key:?}: no answer within {}; the store frees it within its ttl ({ttl})",
            waitline::seconds(RELEASE_TIMEOUT)
        ),
    }
}

/// Stops the command after a loss: SIGTERM, SIGKILL after `grace`, and
/// SIGKILL to whatever is left of its process group. Returns how it ended.
async fn terminate(child: &mut Child, target: Target, grace: Duration) -> String {
    target.send(Signal::SIGTERM);
    let ended = match timeout(grace, child.wait()).await {
        Ok(Ok(status)) => format!("the command ended ({})", describe_status(status)),
        Ok(Err(e)) => format!("waiting for the command failed: {e}"),
        Err(_) => {
            target.send(Signal::SIGKILL);
            match child.wait().await {
                Ok(_) => format!(
                    "the command did not stop within {} of SIGTERM and was killed (SIGKILL)",
                    waitline::seconds(grace)
                ),
                Err(e) => format!("waiting for the command failed: {e}"),
            }
        }
    };
    if target.group {
        target.send(Signal::SIGKILL);
    }
    ended
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        (None, None) => "unknown status".to_owned(),
    }
}

async fn supervise(guard: LockGuard, args: &RunArgs, signals: &mut Signals) -> Result<u8, Failure> {
    let key = args.key.as_str();
    let interactive = in_terminal_foreground();
    let Some((program, rest)) = args.command.split_first() else {
        release(guard).await;
        return Err(Failure::new(exit::USAGE, "no command given"));
    };
    if !guard.is_held() {
        return Err(Failure::new(
            exit::LOCK_LOST,
            format!("lock {key:?} was lost before the command could start; nothing was run"),
        ));
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env("DLOCK_KEY", key)
        .env("DLOCK_TOKEN", guard.token().to_string())
        .env("DLOCK_OWNER", guard.owner().as_str());
    if !interactive {
        command.process_group(0);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            release(guard).await;
            return Err(spawn_failure(program, &e));
        }
    };
    let target = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(|pid| Target {
            pid: Pid::from_raw(pid),
            group: !interactive,
        });

    let lost = guard.lost();
    tokio::pin!(lost);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            reason = &mut lost => {
                let grace = waitline::seconds(args.grace);
                eprintln!(
                    "dlock: lock {key:?} lost while the command ran ({reason}); \
                     stopping it: SIGTERM, SIGKILL after {grace}"
                );
                let ended = match target {
                    Some(target) => terminate(&mut child, target, args.grace).await,
                    None => "the command had ended".to_owned(),
                };
                return Err(Failure::new(exit::LOCK_LOST, format!("{ended}; exit 76 (lock lost)")));
            }
            sig = signals.recv() => {
                // In a terminal's foreground, SIGINT and SIGHUP come from the
                // terminal, which sent them to the command as well.
                let from_terminal = interactive && sig != Signal::SIGTERM;
                if let (Some(target), false) = (target, from_terminal) {
                    target.send(sig);
                }
            }
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            release(guard).await;
            return Err(Failure::new(
                exit::FAILURE,
                format!("waiting for the command failed: {e}"),
            ));
        }
    };
    if !guard.is_held() {
        let reason = (&mut lost)
            .now_or_never()
            .map_or_else(|| "its validity ran out".to_owned(), |r| r.to_string());
        return Err(Failure::new(
            exit::LOCK_LOST,
            format!(
                "lock {key:?} was lost before the command ended ({reason}); the command's \
                 last steps may not have run alone ({})",
                describe_status(status)
            ),
        ));
    }
    release(guard).await;
    Ok(status_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_to_codes() {
        assert_eq!(status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(signal_code(Signal::SIGINT), 130);
    }

    #[test]
    fn the_default_owner_is_valid_and_unique() {
        let a = default_owner();
        assert!(Owner::new(&a).is_ok(), "{a}");
        assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
        assert_ne!(a, default_owner());
    }
}
