//! `dlock-bench`: see the crate's docs, or `dlock-bench --help`.

use clap::Parser as _;
use dlock_bench::cli::{Cli, Command};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    if let Some(Command::Hold(args)) = &cli.command {
        return match runtime.block_on(dlock_bench::hold::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        };
    }
    if let Err(e) = cli.run.validate() {
        return fail(&e);
    }
    let started = Instant::now();
    let log = |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    let mut report = match runtime.block_on(dlock_bench::run::run(&cli.run, &log)) {
        Ok(report) => report,
        Err(e) => return fail(&format!("{e:#}")),
    };
    let wall = started.elapsed();
    report.command = command_line();
    report.footer.push(format!(
        "The run took {:.0} s of wall time (servers started, every scenario, this file written).",
        wall.as_secs_f64()
    ));
    let csv_path = cli.run.csv_path();
    for (path, text) in [(&cli.run.out, report.markdown()), (&csv_path, report.csv())] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(&format!("cannot create {}: {e}", dir.display()));
            }
        }
        if let Err(e) = std::fs::write(path, text) {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
    log(&format!(
        "wrote {} and {}",
        cli.run.out.display(),
        csv_path.display()
    ));
    ExitCode::SUCCESS
}

/// The command as a user would type it from the workspace root.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p dlock-bench -- {}", args.join(" "))
        .trim_end()
        .to_owned()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("dlock-bench: {message}");
    ExitCode::from(2)
}
