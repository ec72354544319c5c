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
        mod memory_adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let harness = $crate::common::memory_stores().await.expect("memory stores");
                    super::$case(&harness.stores).await;
                }
            )*
        }
        mod redis_adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(harness) = $crate::common::redis_stores().await else { return };
                    super::$case(&harness.stores).await;
                }
            )*
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn redis_cluster_adapter() {
            let Some(cluster) = $crate::common::cluster::RedisCluster::start() else { return };
            let mut outcomes = Vec::new();
            $(
                let stores = $crate::common::cluster_stores(&cluster, stringify!($case));
                let run = tokio::spawn(async move { $case(&stores).await });
                outcomes.push((stringify!($case), run.await.is_ok()));
            )*
            $crate::common::all_passed("on Redis Cluster", &outcomes);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn redis_sentinel_adapter() {
            let Some(setup) = $crate::common::cluster::SentinelSetup::start() else { return };
            let mut outcomes = Vec::new();
            $(
                let stores = $crate::common::sentinel_stores(&setup, stringify!($case));
                let run = tokio::spawn(async move { $case(&stores).await });
                outcomes.push((stringify!($case), run.await.is_ok()));
            )*
            $crate::common::all_passed("behind Sentinel", &outcomes);
        }
    };
}
