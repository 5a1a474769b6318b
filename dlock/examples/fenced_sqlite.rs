//! Inventory deduction in a real SQLite transaction, guarded by a dlock
//! lock and fenced by its token: a stale holder's write is refused.
//!
//! ```text
//! cargo run -p dlock --example fenced_sqlite                          # memory://
//! cargo run -p dlock --example fenced_sqlite -- redis://127.0.0.1:6379
//! ```
//!
//! Holder A takes the lock on `inventory:sku-1001` with a short ttl and
//! then stalls (a GC pause, a VM migration) past it. The store frees the
//! lock, holder B takes it with a larger token and deducts one item. A
//! wakes up still believing it holds the lock and sends its deduction, with
//! its old token. The row remembers the largest token it accepted
//! (`fence`), and the update only applies `WHERE fence < $token`, so A's
//! write changes nothing: the database, not A's belief, has the last word.

use rusqlite::{Connection, params};
use std::path::Path;
use std::time::Duration;

/// The item sold.
pub(crate) const SKU: &str = "sku-1001";

/// What happened.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// A's token (its lock expired while it stalled).
    pub(crate) token_a: u64,
    /// B's token.
    pub(crate) token_b: u64,
    /// Rows B's deduction changed (1: accepted).
    pub(crate) rows_b: usize,
    /// Rows A's late deduction changed (0: refused).
    pub(crate) rows_a: usize,
    /// Stock left at the end.
    pub(crate) stock: i64,
    /// The largest token the row accepted.
    pub(crate) fence: i64,
}

/// Creates the table with `stock` items of [`SKU`].
pub(crate) fn setup(db: &Path, stock: i64) -> rusqlite::Result<()> {
    let conn = Connection::open(db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS inventory (
             sku   TEXT PRIMARY KEY,
             stock INTEGER NOT NULL,
             fence INTEGER NOT NULL DEFAULT 0
         )",
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO inventory (sku, stock, fence) VALUES (?1, ?2, 0)",
        params![SKU, stock],
    )?;
    Ok(())
}

/// Deducts one item in a transaction, fenced by `token`: returns the rows
/// changed (0 when the row has seen a token at least as large, or the
/// stock is gone).
pub(crate) fn deduct(db: &Path, token: u64) -> rusqlite::Result<usize> {
    let mut conn = Connection::open(db)?;
    let tx = conn.transaction()?;
    let token = i64::try_from(token).unwrap_or(i64::MAX);
    let rows = tx.execute(
        "UPDATE inventory SET stock = stock - 1, fence = ?1
         WHERE sku = ?2 AND fence < ?1 AND stock > 0",
        params![token, SKU],
    )?;
    tx.commit()?;
    Ok(rows)
}

/// Stock and fence of [`SKU`].
pub(crate) fn read(db: &Path) -> rusqlite::Result<(i64, i64)> {
    let conn = Connection::open(db)?;
    conn.query_row(
        "SELECT stock, fence FROM inventory WHERE sku = ?1",
        params![SKU],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Runs the scenario on the store at `url` and the database at `db`.
pub(crate) async fn run(url: &str, db: &Path) -> Result<Outcome, Box<dyn std::error::Error>> {
    let key = format!("inventory:{SKU}");
    setup(db, 10)?;
    let locker = dlock::connect(url).await?;

    // A: a short ttl and no renewal, so that its stall outlasts the lock.
    let a = locker
        .request(&key)
        .owner("holder-a")
        .ttl(Duration::from_millis(300))
        .renewal(false)
        .lock()
        .await?;
    let token_a = a.token().get();
    println!("A holds {key} with token {token_a}, then stalls");
    tokio::time::sleep(Duration::from_millis(600)).await; // A's "GC pause"

    // B: the store freed A's lock; B gets a larger token and deducts.
    let b = locker
        .request(&key)
        .owner("holder-b")
        .wait(Duration::from_secs(10))
        .lock()
        .await?;
    let token_b = b.token().get();
    let rows_b = deduct(db, token_b)?;
    println!("B holds {key} with token {token_b}: deduction changed {rows_b} row");
    b.release().await?;

    // A wakes up and writes as if nothing had happened.
    println!(
        "A wakes (is_held() = {}) and deducts with token {token_a}",
        a.is_held()
    );
    let rows_a = deduct(db, token_a)?;
    println!(
        "A's deduction changed {rows_a} rows: {}",
        if rows_a == 0 {
            "refused by the fence"
        } else {
            "ACCEPTED (stale write!)"
        }
    );
    drop(a);

    let (stock, fence) = read(db)?;
    println!("stock {stock}, fence {fence}");
    Ok(Outcome {
        token_a,
        token_b,
        rows_b,
        rows_a,
        stock,
        fence,
    })
}

#[allow(dead_code)] // the tests call `run` directly
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".to_owned());
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("fenced_sqlite: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(&url, &dir.path().join("shop.db")).await {
        Ok(o) => {
            println!(
                "tokens: A {} < B {}; B changed {} row, A {}; stock {}, fence {}",
                o.token_a, o.token_b, o.rows_b, o.rows_a, o.stock, o.fence
            );
            if o.rows_a == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("fenced_sqlite: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
