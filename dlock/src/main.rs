//! The `dlock` command: see `dlock --help`, and the [`dlock`] library.

fn main() -> std::process::ExitCode {
    dlock::main_with_args(std::env::args_os())
}
