//! The flash sale: many buyers race for a few items of stock.
//!
//! The stock is a small store that behaves like a database table read and
//! written in two round trips: a buyer reads the count (`SELECT`), and if it
//! is above zero writes the sale (`UPDATE ... SET count = count - 1`). Each
//! round trip takes a little time, so two buyers can both read "1 left" and
//! both sell it: check-then-act without a lock oversells, and the stock goes
//! negative.
//!
//! [`run`] sells the same stock twice, to the same number of buyers, each
//! buyer a Tokio task:
//!
//! 1. **without a lock**: every buyer reads and writes as it likes;
//! 2. **with the lock**: every buyer first [`lock`](lock_core::LockRequest::lock)s
//!    the item's key (with a wait timeout), reads, writes, then releases.
//!    The stock is also *fenced*: each write carries the buyer's
//!    [fencing token](lock_core::FencingToken), and the store refuses a
//!    write whose token is not larger than the last one it accepted, so a
//!    holder that lost its lock (paused past its ttl) could not sell
//!    behind its successor's back. The report counts those refusals.
//!
//! Every number in the [`Report`] is measured in the run.
//!
//! # Examples
//! ```
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! use dlock_examples::flash_sale::{Options, run};
//! let opts = Options { buyers: 20, stock: 5, ..Options::default() };
//! let report = run(&opts).await?;
//! assert_eq!(report.with_lock.sold, 5);
//! println!("{report}");
//! # Ok(()) }
//! ```

use lock_core::{Error, ErrorKind, FencingToken, Locker, Result};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// The key every buyer locks in the run with the lock.
pub const DEFAULT_KEY: &str = "inventory:flash-sale-item";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The backend URL (`memory://`, `redis://host:6379`, ...).
    pub backend: String,
    /// How many buyers race (each a Tokio task).
    pub buyers: u32,
    /// How many items are for sale.
    pub stock: u32,
    /// The key buyers lock.
    pub key: String,
    /// How long a buyer waits for the lock before giving up.
    pub wait: Duration,
    /// How long one round trip to the stock takes (a read and a write are
    /// one each). Tokio's timer counts whole milliseconds, so 1 ms sleeps
    /// 1 to 2 ms; zero only yields to the other tasks.
    pub round_trip: Duration,
}

impl Default for Options {
    /// 1,000 buyers, 100 items, `memory://`, a 60 s wait, 1 ms round trips.
    fn default() -> Self {
        Options {
            backend: "memory://".to_owned(),
            buyers: 1000,
            stock: 100,
            key: DEFAULT_KEY.to_owned(),
            wait: Duration::from_secs(60),
            round_trip: Duration::from_millis(1),
        }
    }
}

/// What one sale (one run of all the buyers) did.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// Items for sale at the start.
    pub stock: u32,
    /// Sales the stock recorded.
    pub sold: u32,
    /// The count left in the stock at the end (negative when oversold).
    pub stock_left: i64,
    /// Buyers who read a count of zero and bought nothing.
    pub sold_out: u32,
    /// Buyers whose wait for the lock timed out.
    pub gave_up: u32,
    /// Locks granted (0 in the run without a lock).
    pub holds: u32,
    /// The smallest and largest fencing token of those locks.
    pub hold_tokens: Option<(FencingToken, FencingToken)>,
    /// The fencing token of each sale, in the order the stock accepted
    /// them (empty in the run without a lock).
    pub sale_tokens: Vec<FencingToken>,
    /// Writes the fenced stock refused because their token was not larger
    /// than the last one it accepted.
    pub refused: u32,
    /// From the moment the sale opened until the last buyer was done.
    pub elapsed: Duration,
}

impl Phase {
    /// Items sold beyond the stock.
    pub fn oversold(&self) -> u32 {
        self.sold.saturating_sub(self.stock)
    }

    /// Whether each sale's token was larger than the previous sale's.
    pub fn tokens_increasing(&self) -> bool {
        self.sale_tokens.windows(2).all(|w| w[0] < w[1])
    }

    /// The smallest and largest token the sales carried.
    pub fn sale_token_range(&self) -> Option<(FencingToken, FencingToken)> {
        Some((*self.sale_tokens.first()?, *self.sale_tokens.last()?))
    }
}

/// The outcome of [`run`]: the same sale without and with the lock.
#[derive(Clone, Debug)]
pub struct Report {
    /// The backend URL, with any password hidden.
    pub backend: String,
    /// How many buyers raced.
    pub buyers: u32,
    /// The run without a lock.
    pub without_lock: Phase,
    /// The run with the lock.
    pub with_lock: Phase,
}

impl Report {
    /// Whether the lock did its job: nothing oversold, the stock never
    /// below zero, no fenced write refused, tokens increasing from sale to
    /// sale.
    pub fn lock_held(&self) -> bool {
        let p = &self.with_lock;
        p.oversold() == 0 && p.stock_left >= 0 && p.refused == 0 && p.tokens_increasing()
    }
}

/// The stock: a count and a log of sales, read and written in round trips
/// that take time, and fenced by token for the writes that carry one.
struct Inventory {
    round_trip: Duration,
    shelf: Mutex<Shelf>,
}

struct Shelf {
    count: i64,
    sold: u32,
    last_token: Option<FencingToken>,
    sale_tokens: Vec<FencingToken>,
    refused: u32,
}

impl Inventory {
    fn new(stock: u32, round_trip: Duration) -> Self {
        Inventory {
            round_trip,
            shelf: Mutex::new(Shelf {
                count: i64::from(stock),
                sold: 0,
                last_token: None,
                sale_tokens: Vec::new(),
                refused: 0,
            }),
        }
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        // Each update below is complete before the mutex is let go.
        self.shelf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One round trip; with none set, the task still yields, as any call
    /// to a store would.
    async fn travel(&self) {
        if self.round_trip.is_zero() {
            tokio::task::yield_now().await;
        } else {
            sleep(self.round_trip).await;
        }
    }

    /// `SELECT count`: one round trip.
    async fn count(&self) -> i64 {
        self.travel().await;
        self.shelf().count
    }

    /// `UPDATE ... SET count = count - 1` and record the sale: one round
    /// trip. With a token, the write is refused (and `false` returned)
    /// unless the token is larger than the last one accepted.
    async fn sell(&self, token: Option<FencingToken>) -> bool {
        self.travel().await;
        let mut shelf = self.shelf();
        if let Some(token) = token {
            if shelf.last_token.is_some_and(|last| token <= last) {
                shelf.refused += 1;
                return false;
            }
            shelf.last_token = Some(token);
            shelf.sale_tokens.push(token);
        }
        shelf.count -= 1;
        shelf.sold += 1;
        true
    }
}

/// What one buyer did.
enum Outcome {
    Bought(Option<FencingToken>),
    SoldOut(Option<FencingToken>),
    Refused(FencingToken),
    GaveUp,
}

/// Connects to `opts.backend` and runs the sale without and with the lock.
///
/// A bad URL, option or key fails with [`Error::InvalidConfig`] or
/// [`Error::InvalidKey`] and an unreachable store with
/// [`Error::Unavailable`], before any buyer runs.
pub async fn run(opts: &Options) -> Result<Report> {
    let locker = lock_core::connect(&opts.backend).await?;
    run_on(&locker, opts).await
}

/// As [`run`], over a locker the caller built (`opts.backend` is only
/// reported).
pub async fn run_on(locker: &Locker, opts: &Options) -> Result<Report> {
    if opts.buyers == 0 {
        return Err(Error::config("buyers: at least one buyer is needed"));
    }
    // Check the key and that the store answers before selling anything.
    locker.status(&opts.key).await?;

    let without_lock = race(opts, |inventory| async move {
        Ok(if inventory.count().await > 0 {
            inventory.sell(None).await;
            Outcome::Bought(None)
        } else {
            Outcome::SoldOut(None)
        })
    })
    .await?;

    let with_lock = race(opts, |inventory| {
        let locker = locker.clone();
        let key = opts.key.clone();
        let wait = opts.wait;
        async move {
            let guard = match locker.request(&key).wait(wait).lock().await {
                Ok(guard) => guard,
                Err(e) if e.kind() == ErrorKind::Timeout => return Ok(Outcome::GaveUp),
                Err(e) => return Err(e),
            };
            let token = guard.token();
            let outcome = if inventory.count().await > 0 {
                if inventory.sell(Some(token)).await {
                    Outcome::Bought(Some(token))
                } else {
                    Outcome::Refused(token)
                }
            } else {
                Outcome::SoldOut(Some(token))
            };
            guard.release().await?;
            Ok(outcome)
        }
    })
    .await?;

    Ok(Report {
        backend: lock_core::redact(&opts.backend),
        buyers: opts.buyers,
        without_lock,
        with_lock,
    })
}

/// Opens the sale to `opts.buyers` tasks at once, each running `buyer`
/// on a fresh stock, and tallies what they did.
async fn race<F, Fut>(opts: &Options, buyer: F) -> Result<Phase>
where
    F: Fn(Arc<Inventory>) -> Fut,
    Fut: Future<Output = Result<Outcome>> + Send + 'static,
{
    let inventory = Arc::new(Inventory::new(opts.stock, opts.round_trip));
    // Every buyer waits at the gate, so the sale opens for all at once.
    let gate = Arc::new(Barrier::new(opts.buyers as usize + 1));
    let mut buyers = JoinSet::new();
    for _ in 0..opts.buyers {
        let gate = gate.clone();
        let purchase = buyer(inventory.clone());
        buyers.spawn(async move {
            gate.wait().await;
            purchase.await
        });
    }
    gate.wait().await;
    let opened = Instant::now();

    let mut phase = Phase {
        stock: opts.stock,
        ..Phase::default()
    };
    let mut tokens: Option<(FencingToken, FencingToken)> = None;
    while let Some(joined) = buyers.join_next().await {
        // An error ends the run; dropping the JoinSet stops the others.
        let outcome = joined.map_err(|e| Error::backend_from("a buyer task failed", e))??;
        let token = match outcome {
            Outcome::Bought(token) | Outcome::SoldOut(token) => token,
            Outcome::Refused(token) => Some(token),
            Outcome::GaveUp => None,
        };
        match outcome {
            Outcome::SoldOut(_) => phase.sold_out += 1,
            Outcome::GaveUp => phase.gave_up += 1,
            Outcome::Bought(_) | Outcome::Refused(_) => {}
        }
        if let Some(t) = token {
            phase.holds += 1;
            tokens = Some(match tokens {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
    }
    phase.elapsed = opened.elapsed();
    phase.hold_tokens = tokens;

    let shelf = inventory.shelf();
    phase.sold = shelf.sold;
    phase.stock_left = shelf.count;
    phase.refused = shelf.refused;
    phase.sale_tokens = shelf.sale_tokens.clone();
    Ok(phase)
}

/// `1.23 s` or `45 ms`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn range(r: Option<(FencingToken, FencingToken)>) -> String {
    match r {
        Some((lo, hi)) => format!("{lo}..{hi}"),
        None => "none".to_owned(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (off, on) = (&self.without_lock, &self.with_lock);
        writeln!(
            f,
            "Flash sale: {} buyers race for {} items (backend {}).",
            self.buyers, on.stock, self.backend
        )?;
        writeln!(f)?;
        for (name, p) in [("without a lock:", off), ("with the lock: ", on)] {
            writeln!(
                f,
                "  {name} sold {:>w$}, oversold {:>w$}, stock left {:>w$}   ({})",
                p.sold,
                p.oversold(),
                p.stock_left,
                seconds(p.elapsed),
                w = off.sold.max(on.sold).to_string().len() + 1,
            )?;
        }
        writeln!(f)?;
        write!(f, "With the lock: {} buyers found it sold out", on.sold_out)?;
        if on.gave_up > 0 {
            write!(f, ", {} gave up waiting for the lock", on.gave_up)?;
        }
        writeln!(f, ".")?;
        writeln!(
            f,
            "Fencing tokens: {} over {} holds; the {} sales carried {}, {}.",
            range(on.hold_tokens),
            on.holds,
            on.sold,
            range(on.sale_token_range()),
            if on.tokens_increasing() {
                "each larger than the sale before"
            } else {
                "NOT always larger than the sale before"
            }
        )?;
        writeln!(f, "Writes refused by the fenced stock: {}.", on.refused)?;
        if off.oversold() == 0 {
            writeln!(
                f,
                "(The run without a lock happened not to oversell this time; \
                 try more buyers than items.)"
            )?;
        }
        if !self.lock_held() {
            writeln!(
                f,
                "THE LOCK DID NOT PROTECT THE STOCK: see the numbers above."
            )?;
        }
        Ok(())
    }
}
