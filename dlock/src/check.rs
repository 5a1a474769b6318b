//! `dlock check`: the conformance runner against the given store.

use crate::cli::CheckArgs;
use crate::exit::Failure;
use conformance::runner::{RunOptions, run_url};

/// Runs `dlock check` on `backend`: the same checks, table and exit codes
/// as the `conformance` runner.
pub(crate) async fn check(backend: &str, args: &CheckArgs) -> Result<u8, Failure> {
    crate::register_backends();
    let opts = RunOptions {
        jobs: usize::from(args.jobs),
        destructive: false,
    };
    match run_url(backend, &args.prefix, &opts).await {
        Ok(report) => {
            print!("{}", report.table());
            Ok(report.exit_code())
        }
        Err(e) => Err(Failure::new(
            e.exit_code(),
            crate::exit::one_line(&e.to_string()),
        )),
    }
}
