//! `zk-hold URL KEY`: locks KEY on the `zk://` URL, prints
//! `held <token> <node>` on one line, and holds the lock until killed or
//! until its standard input closes (then releases it and exits).
//!
//! A holder process to kill: the fault tests use it to show that a killed
//! holder's node goes with its session; operators can use it to see how
//! other services react to a held lock.

use std::io::Write as _;
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(key), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: zk-hold zk://HOST:PORT[,...][/CHROOT][?OPTIONS] KEY");
        std::process::exit(2);
    };
    lock_zk::register();
    let locker = lock_core::connect(&url).await?;
    let guard = locker.lock(&key).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "held {} {}", guard.token(), guard.info().handle)?;
    out.flush()?;
    drop(out);
    let mut sink = Vec::new();
    let mut stdin = tokio::io::stdin();
    tokio::select! {
        _ = stdin.read_to_end(&mut sink) => {}
        why = guard.lost() => {
            eprintln!("lost: {why}");
            std::process::exit(1);
        }
    }
    guard.release().await?;
    Ok(())
}
