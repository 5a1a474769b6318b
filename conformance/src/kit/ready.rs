//! Waiting until a freshly started server answers.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::KitError;
use super::process::ServerProcess;

/// How often readiness is probed: often enough that a test never waits much
/// longer than the server needs.
const POLL: Duration = Duration::from_millis(20);

/// The longest one probe may take: a server that accepts connections but
/// does not answer yet must not stall the loop.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes `process` until `probe` succeeds, the process exits, or `limit`
/// passes; the errors quote the end of the server's log.
pub(crate) async fn wait_ready<F, Fut>(
    process: &ServerProcess,
    limit: Duration,
    mut probe: F,
) -> Result<(), KitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last_error;
    loop {
        if let Some(status) = process.exit_status() {
            return Err(KitError::Exited {
                server: process.name().to_string(),
                status,
                log_tail: process.log_tail(),
            });
        }
        if process.pid().is_none() {
            return Err(KitError::Exited {
                server: process.name().to_string(),
                status: "it was killed".into(),
                log_tail: process.log_tail(),
            });
        }
        let left = limit.saturating_sub(started.elapsed());
        match timeout(PROBE_TIMEOUT.min(left), probe()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = format!("no answer within {:?}", PROBE_TIMEOUT.min(left)),
        }
        if started.elapsed() >= limit {
            return Err(KitError::NotReady {
                server: process.name().to_string(),
                waited: started.elapsed(),
                last_error,
                log_tail: process.log_tail(),
            });
        }
        sleep(POLL).await;
    }
}
