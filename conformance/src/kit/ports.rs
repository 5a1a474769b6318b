//! Free loopback ports, handed out at most once at a time per process.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::sync::Mutex;

use super::KitError;

/// Ports the kit picks from. It lies below Linux's ephemeral range
/// (32768-60999 by default), so that no outgoing connection (a client, the
/// proxy) can be given a port a server is about to bind, or re-bind after a
/// restart.
const RANGE: Range<u16> = 15_000..32_000;

/// Ports reserved by live servers of this process. Checking that a port is
/// bindable is not enough on its own: two servers starting at once in one
/// process could both see the same port free before either binds it.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A set of ports reserved for one server until dropped.
#[derive(Debug)]
pub(crate) struct Ports(Vec<u16>);

impl Ports {
    /// Reserves `n` distinct ports that are free on 127.0.0.1 right now.
    pub(crate) fn reserve(n: usize) -> Result<Ports, KitError> {
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut ports = Vec::with_capacity(n);
        let mut tries = 0;
        while ports.len() < n {
            tries += 1;
            if tries > 10_000 {
                // Give back what this call took before failing.
                for port in &ports {
                    taken.remove(port);
                }
                return Err(KitError::io(
                    format!("no free loopback port in {RANGE:?}"),
                    std::io::Error::from(std::io::ErrorKind::AddrInUse),
                ));
            }
            // Random rather than sequential: test binaries run side by side
            // (nextest runs each test in its own process) and must not all
            // try the same ports in the same order.
            let port = rand::random_range(RANGE);
            if taken.contains(&port) || TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                continue;
            }
            taken.insert(port);
            ports.push(port);
        }
        Ok(Ports(ports))
    }

    /// The `i`-th reserved port.
    pub(crate) fn get(&self, i: usize) -> u16 {
        self.0[i]
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for port in &self.0 {
            taken.remove(port);
        }
    }
}
