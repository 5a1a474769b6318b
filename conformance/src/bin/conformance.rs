//! `conformance URL`: the dlock conformance checks that do not hurt the
//! store, against a live deployment, for users' CI. See
//! [`conformance::runner`].

fn main() -> std::process::ExitCode {
    conformance::runner::main_with_args(std::env::args().skip(1))
}
