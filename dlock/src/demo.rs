//! `dlock demo ...`: the examples crate's demos.

use crate::cli::FlashSaleArgs;
use crate::exit::{self, Failure};
use dlock_examples::flash_sale::{self, Options};

/// Runs the flash-sale demo on `backend`; exit 0 when the lock protected
/// the stock, 1 when it did not.
pub(crate) async fn flash_sale(backend: &str, args: &FlashSaleArgs) -> Result<u8, Failure> {
    crate::register_backends();
    let opts = Options {
        backend: backend.to_owned(),
        buyers: args.buyers,
        stock: args.stock,
        key: args.key.clone(),
        wait: args.wait,
        round_trip: args.round_trip,
    };
    match flash_sale::run(&opts).await {
        Ok(report) => {
            print!("{report}");
            Ok(if report.lock_held() {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
        Err(e) => Err(Failure::connect(backend, &e)),
    }
}
