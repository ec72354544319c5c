//! `FailoverStore`: one capability's store with failover, and the routing of each port method.

use super::*;

/// Serves a call while degraded: from memory when the capability allows, else `Unavailable`.
pub(crate) async fn degraded<T, M, MF>(on_memory: Option<M>, why: String) -> StoreResult<T>
where
    M: FnOnce() -> MF,
    MF: Future<Output = StoreResult<T>>,
{
    match on_memory {
        Some(on_memory) => on_memory().await,
        None => Err(StoreError::Unavailable(why)),
    }
}

/// One capability's store with failover: a Redis adapter, the memory adapter when the
/// capability is served from memory while degraded, and the shared state.
pub struct FailoverStore<S: ?Sized> {
    pub(crate) redis: Arc<S>,
    pub(crate) memory: Option<Arc<S>>,
    pub(crate) failover: Arc<Failover>,
}

impl<S: ?Sized> FailoverStore<S> {
    pub(crate) fn new(failover: &Arc<Failover>, redis: Arc<S>, memory: Option<Arc<S>>) -> Self {
        Self {
            redis,
            memory,
            failover: failover.clone(),
        }
    }
}

/// Implements a store trait for `FailoverStore` by routing each method through
/// `Failover::route`. `#[repeat(expr)]` says whether a call is safe to make twice (same effect,
/// same answer); it may look at the arguments. `#[memory(false)]` keeps a method on Redis even
/// where the capability has a memory store. The arguments are references and `Copy` values:
/// a second call or the memory call copies nothing. `#[note(when => notes)]` names what a call
/// served by memory wrote, for the hand-back: `when` looks at the call's answer, `notes` are
/// [`Note`]s built from the arguments.
macro_rules! route_each_method {
    ($store:ident {
        $(
            #[repeat($repeat:expr)]
            $(#[memory($serves:expr)])?
            $(#[note($when:expr => $notes:expr)])?
            async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
        )*
    } $(also { $($also:tt)* })?) => {
        #[::async_trait::async_trait]
        impl $store for $crate::store::failover::FailoverStore<dyn $store> {
            $($($also)*)?

            $(
                #[allow(clippy::clone_on_copy, clippy::redundant_closure_call)]
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let repeatable: bool = $repeat;
                    self.failover
                        .route(
                            repeatable,
                            || self.redis.$name($(Clone::clone(&$arg)),*),
                            self.memory.as_ref()$(.filter(|_| $serves))?.map(|memory| {
                                move || async move {
                                    let answer = memory.$name($($arg),*).await;
                                    $(
                                        if let Ok(out) = &answer
                                            && ($when)(out)
                                        {
                                            self.failover.note($notes);
                                        }
                                    )?
                                    answer
                                }
                            }),
                        )
                        .await
                }
            )*
        }
    };
}

pub(crate) use route_each_method;

/// Rate limits with failover: while degraded, a check is decided by this instance's memory
/// (`local`) and says `degraded`, or allowed without counting (`allow`), or refused.
pub(crate) struct RateLimitFailover {
    pub(crate) fail_open: bool,
    pub(crate) store: FailoverStore<dyn RateLimitStore>,
}

#[async_trait]
impl RateLimitStore for RateLimitFailover {
    async fn check(
        &self,
        tenant: &Tenant,
        key: &RateLimitKey,
        check: &Check,
    ) -> StoreResult<Decision> {
        let store = &self.store;
        let local = store.memory.as_ref().map(|memory| {
            move || async move {
                let mut decision = memory.check(tenant, key, check).await?;
                decision.degraded = true;
                Ok(decision)
            }
        });
        let open = self
            .fail_open
            .then_some(|| async { Ok(Decision::fail_open(check)) });
        // A consuming check is not safe to repeat: a second script run would count twice.
        let repeatable = !check.consumes();
        let on_redis = || store.redis.check(tenant, key, check);
        match (local, open) {
            (Some(local), _) => {
                store
                    .failover
                    .route(repeatable, on_redis, Some(local))
                    .await
            }
            (None, open) => store.failover.route(repeatable, on_redis, open).await,
        }
    }

    async fn reset(&self, tenant: &Tenant, key: &RateLimitKey) -> StoreResult<()> {
        let store = &self.store;
        let local = store
            .memory
            .as_ref()
            .map(|memory| move || memory.reset(tenant, key));
        store
            .failover
            .route(true, || store.redis.reset(tenant, key), local)
            .await
    }
}
