//! Why a target of the backend issues can be missed, as found by profiling
//! (issue 9: "any ratio that misses the targets ... is listed with its
//! cause found by profiling, or fixed"). The run prints a cause under the
//! ratio table only when its own figures miss the target.

use crate::backends::Backend;
use crate::subject::Kind;

/// The profiled cause for `backend` missing its target against a subject
/// of `kind`, if one is known.
pub fn of_missed_target(backend: Backend, kind: Kind) -> Option<&'static str> {
    match (backend, kind) {
        (Backend::Redlock, Kind::Peer) => Some(
            "lock-redlock vs rslock, profiled (perf, /proc schedstat per process, INFO \
             commandstats): both send 5 requests to acquire and 5 to release, in parallel, \
             returning at a quorum; the client side is cheaper than rslock's (fewer syscalls \
             and context switches per pair). The gap is the acquire on the servers: rslock \
             sends `SET NX PX`, we send a Lua script that keeps the fencing-token counter, \
             the re-entry count and the Redisson layout (4 `redis.call`s), which costs the \
             masters about 1.3–1.5× the server CPU of `SET NX PX`; with 5 masters sharing 2 \
             cores, server CPU is the latency. Releases are on par.",
        ),
        (Backend::Redlock, Kind::Baseline) => Some(
            "lock-redlock vs lock-redis on one master, profiled: a pair costs about 100 µs \
             of CPU on lock-redis (client + one server) and 550–700 µs on Redlock (10 \
             requests to 5 servers, each server also paying for switching with the 4 \
             others on 2 cores); with both cores busy the wall time is at least half the \
             CPU, about 2.7× lock-redis. 1.5× needs a core per master.",
        ),
        (Backend::Etcd, Kind::Peer) => Some(
            "lock-etcd vs LockClient, profiled (etcd /metrics call counts, perf, probes in \
             lock-core): lock-etcd makes exactly 2 gRPC calls per pair (a Txn to acquire on \
             a reused lease; a Txn guarded by the key's create revision to release, \
             etcd#22082), as LockClient does 2 (Lock, Unlock). The same two Txns sent raw \
             through etcd-client take 0.96–0.98 of LockClient's time; the backend called \
             directly 1.00–1.03 (key and owner building, the lease pool, the loss signal's \
             timer); through the Locker another 6–7 µs per pair (about 1%). perf puts our \
             code at about 1% of client CPU; the rest is tokio, hyper/h2 and kernel \
             wake-ups, so the remaining few percent are not in one hot spot.",
        ),
        _ => None,
    }
}
