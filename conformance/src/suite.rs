//! [`suite!`]: the whole suite as ordinary tests of a backend crate.

/// Generates, in a module `conformance_suite`, one test per check of the
/// suite on the fixture `$fixture` (an expression of a future whose output
/// converts to `Arc<dyn Fixture>`, e.g. `fixture()` for an
/// `async fn fixture() -> Arc<dyn Fixture>` of the calling file), plus
/// `capabilities_report` and `suite_covers_every_check`.
///
/// Every test runs on one shared multi-threaded runtime with 2 workers
/// ([`harness::runtime`](crate::harness::runtime)) rather than a
/// `#[tokio::test]` runtime of its own, so that a fixture started once and
/// kept in a static (servers, fault proxies, connection tasks) serves every
/// test. The calling crate needs no tokio macros.
///
/// ```no_run
/// async fn fixture() -> std::sync::Arc<dyn conformance::Fixture> {
///     std::sync::Arc::new(conformance::MemoryFixture::new())
/// }
/// conformance::suite!(fixture());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! suite {
    ($fixture:expr) => {
        $crate::__suite_tests! {
            ($fixture)
            mutual_exclusion
            tasks_without_owner_exclude
            reentrancy_with_owner
            fencing_tokens_increase
            fencing_refuses_stale_holder
            crashed_holder_expires
            renewal_keeps_lock
            manual_extend
            extend_of_deleted_hold
            loss_when_deleted
            loss_when_unreachable
            release_after_expiry_frees_nothing
            release_of_expired_hold_frees_nothing
            double_release
            wait_timeout
            waiter_woken_promptly
            fifo_order
            cancelled_lock_expires
            cancelled_lock_cleans_up
            bad_keys_and_ttls
            valid_keys_are_distinct_locks
            bad_urls
            model
        }
    };
}

/// The body of [`suite!`]; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    (($fixture:expr) $($name:ident)*) => {
        mod conformance_suite {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $name() {
                    $crate::harness::run_test(::core::stringify!($name), async {
                        let fixture: ::std::sync::Arc<dyn $crate::Fixture> = $fixture.await;
                        fixture
                    });
                }
            )*

            #[test]
            fn capabilities_report() {
                $crate::harness::report_test(async {
                    let fixture: ::std::sync::Arc<dyn $crate::Fixture> = $fixture.await;
                    fixture
                });
            }

            #[test]
            fn suite_covers_every_check() {
                $crate::harness::assert_covers(&[$(::core::stringify!($name)),*]);
            }
        }
    };
}
