//! # dlock-bench
//!
//! One benchmark run of every dlock backend, next to its store's raw round
//! trips and next to the lock clients people would pick instead (the
//! "peers"), on the same servers, in the same process, interleaved, so
//! that the ratios hold on a noisy machine. The `dlock-bench` binary starts
//! its own servers with [`conformance::kit`] (or takes URLs), runs the
//! scenarios of issue 9 and writes `docs/BENCHMARKS.md` and
//! `docs/benchmarks.csv`.
//!
//! The scenarios, one module each under [`scenarios`]:
//! 1. uncontended lock + release latency, and its ratio to the raw round
//!    trips and to the peers;
//! 2. the peers, in every table where they apply;
//! 3. a hot key: 32 tasks on one key;
//! 4. many keys: 64 tasks on distinct keys, against `redis-benchmark`;
//! 5. many holds: 10,000 locks held with renewal for a minute;
//! 6. how cost grows with concurrency, and with Redlock's node count.

pub mod backends;
pub mod causes;
pub mod cli;
pub mod hold;
pub mod machine;
pub mod peers;
pub mod procstat;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod servers;
pub mod stats;
pub mod store_stats;
pub mod subject;
