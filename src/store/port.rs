//! `port!`: a capability's port declared once. Each method is written one time, with its
//! routing facts beside it; the macro makes the trait, and the failover routing
//! ([`route_each_method`](crate::store::failover)) from the same declaration, so no signature
//! is restated outside the adapters' `impl`s.
//!
//! ```text
//! crate::store::port::port! {
//!     /// What the port is.
//!     pub trait ThingStore {
//!         /// What the method does.
//!         #[repeat(true)]                       // safe to make twice (may read the arguments)
//!         #[memory(false)]                      // optional: stays on Redis while degraded
//!         #[note(|out: &bool| *out => [notes])] // optional: what memory wrote, for the hand-back
//!         async fn get(&self, tenant: &Tenant, id: &ThingId) -> StoreResult<Option<Thing>>;
//!     }
//!     also { /* trait items routed by hand: sync fns, methods with a default body */ }
//!     routed { /* the failover routing of the `also` items that need one */ }
//! }
//! ```
//!
//! `for_each_method` replays the declaration to another macro (the near cache's
//! pass-through is one), so a decorator need not restate the signatures either.

/// Declares a port: see the module documentation.
macro_rules! port {
    (
        $(#[$trait_meta:meta])*
        pub trait $trait:ident {
            $(
                $(#[doc = $doc:expr])*
                #[repeat($repeat:expr)]
                $(#[memory($serves:expr)])?
                $(#[note($when:expr => $notes:expr)])?
                $(#[near($($near:tt)*)])?
                async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
        $(also { $($also:tt)* })?
        $(routed { $($routed:tt)* })?
        $(for_each_method: $for_each:ident)?
    ) => {
        $(#[$trait_meta])*
        #[::async_trait::async_trait]
        pub trait $trait: Send + Sync {
            $(
                $(#[doc = $doc])*
                async fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
            $($($also)*)?
        }

        $crate::store::failover::route_each_method!($trait {
            $(
                #[repeat($repeat)]
                $(#[memory($serves)])?
                $(#[note($when => $notes)])?
                async fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
        } also { $($($routed)*)? });

        $crate::store::port::port!(@for_each ($) [$($for_each)?] {
            $(
                $(#[near($($near)*)])?
                async fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
        });
    };
    (@for_each ($d:tt) [] { $($methods:tt)* }) => {};
    (@for_each ($d:tt) [$for_each:ident] { $($methods:tt)* }) => {
        /// Replays this port's methods (with their `#[near(..)]` attributes) to `$callback`.
        macro_rules! $for_each {
            ($d callback:path, $d ($d head:tt)*) => {
                $d callback! { $d ($d head)* ; $($methods)* }
            };
        }
        pub(crate) use $for_each;
    };
}

pub(crate) use port;
