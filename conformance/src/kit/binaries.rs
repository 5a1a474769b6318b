//! Finding the installed servers, and scratch directories for their data.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::KitError;

/// Finds `program` on `PATH`, or says how to install the Debian package that
/// ships it.
pub(crate) fn find_program(program: &str, package: &str) -> Result<PathBuf, KitError> {
    find_in(
        &std::env::var_os("PATH").unwrap_or_default(),
        program,
        package,
    )
}

fn find_in(path: &OsStr, program: &str, package: &str) -> Result<PathBuf, KitError> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| missing(program, package))
}

/// Checks that a file installed by a package (a jar) exists.
pub(crate) fn require_file(path: &str, package: &str) -> Result<PathBuf, KitError> {
    let path = Path::new(path);
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(missing(&path.display().to_string(), package))
    }
}

fn missing(what: &str, package: &str) -> KitError {
    KitError::MissingBinary {
        binary: what.to_string(),
        install: format!("sudo apt-get install -y {package}"),
    }
}

/// A fresh directory for one server's data and log, on tmpfs (`/dev/shm`)
/// where there is one: servers that fsync (etcd, Redis with
/// `appendfsync always`) are then as fast as the CPU allows.
pub(crate) fn scratch_dir(prefix: &str) -> Result<TempDir, KitError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Ok(dir);
        }
    }
    builder
        .tempdir()
        .map_err(|e| KitError::io("cannot create a scratch directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_names_its_install_command() {
        let err = find_in(OsStr::new("/nonexistent"), "redis-server", "redis-server").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("scripts/install-servers"), "{message}");
        assert!(
            message.contains("sudo apt-get install -y redis-server"),
            "{message}"
        );
        let err = require_file("/nonexistent/zookeeper.jar", "zookeeper").unwrap_err();
        assert!(
            err.to_string()
                .contains("sudo apt-get install -y zookeeper"),
            "{err}"
        );
    }

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(find_in(OsStr::new("/nonexistent:/bin:/usr/bin"), "sh", "dash").is_ok());
    }
}
