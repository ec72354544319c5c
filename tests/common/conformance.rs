//! The store conformance macro: every case runs once against the memory adapters and once
//! against the Redis adapters (on a private `redis-server`), so the two can never disagree.
//!
//! A case is an `async fn case(stores: &Stores)` in the invoking test file:
//! `store_conformance!(case_a, case_b);`. Cases run on a multi-threaded runtime, so races
//! inside a case are real. On a Redis Cluster, one test per file starts a 3-master cluster and
//! runs every case of the file on it, one after the other (at once, timing-sensitive cases
//! starved each other on two cores), each under a key prefix of its own; and likewise
//! on a Sentinel-managed master.

#[macro_export]
macro_rules! store_conformance {
    ($($case:ident),* $(,)?) => {
        $crate::store_conformance!(@each memory_adapter,
            Some($crate::common::memory_stores().await.expect("memory stores")), [$($case),*]);
        $crate::store_conformance!(@each redis_adapter, $crate::common::redis_stores().await,
            [$($case),*]);
        $crate::store_conformance!(@one redis_cluster_adapter, "on Redis Cluster",
            $crate::common::cluster::RedisCluster::start(), $crate::common::cluster_stores,
            [$($case),*]);
        $crate::store_conformance!(@one redis_sentinel_adapter, "behind Sentinel",
            $crate::common::cluster::SentinelSetup::start(), $crate::common::sentinel_stores,
            [$($case),*]);
    };
    // A module with one test per case, each on stores of its own (`None`: skipped).
    (@each $module:ident, $harness:expr, [$($case:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(harness) = $harness else { return };
                    super::$case(&harness.stores).await;
                }
            )*
        }
    };
    // One test that runs every case on one shared setup (`None`: skipped), one after the
    // other, each under a key prefix of its own.
    (@one $test:ident, $label:literal, $setup:expr, $stores:path, [$($case:ident),*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            let Some(setup) = $setup else { return };
            let mut outcomes = Vec::new();
            $(
                let stores = $stores(&setup, stringify!($case));
                let run = tokio::spawn(async move { $case(&stores).await });
                outcomes.push((stringify!($case), run.await.is_ok()));
            )*
            $crate::common::all_passed($label, &outcomes);
        }
    };
}
