//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client) rather than the
//! `metrics` facade: its registry is a value, so every instance of the service (several run in
//! one test process) counts for itself, with no process-wide recorder; and each label set is a
//! Rust type, so what a label can hold is fixed where it is declared.
//!
//! Labels never carry what a caller chooses (keys, queue names, tenants): a route is its
//! *template* (`/v1/cache/{namespace}/{key}`, or `unmatched` for a path no route matches), a
//! Redis operation is a script name or a command from a fixed list (else `other`), outcomes are
//! fixed words. So the number of series is bounded by the code, not by the traffic.
//!
//! Counters and histograms move as requests run; the gauges that describe the backend (active
//! backend, degraded, pool, memory) are read from the backend when `/metrics` is scraped.

use std::{collections::HashMap, sync::Arc};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Every metric of one instance, and the registry that encodes them. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub http: HttpMetrics,
    pub redis: RedisMetrics,
    pub backend: BackendMetrics,
    pub outcomes: Outcomes,
    registry: Arc<Registry>,
}

/// A route's template as the router matched it, or `unmatched`. Holds the router's own shared
/// string: labelling a request allocates nothing.
#[derive(Clone, Debug)]
pub struct Route(pub Option<axum::extract::MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", |path| path.as_str())
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Route,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub route: Route,
    pub method: &'static str,
    pub status: u16,
}

/// A label set of one label, whose values are fixed words of the code.
macro_rules! one_label {
    ($($name:ident { $label:ident }),* $(,)?) => {$(
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name {
            pub $label: &'static str,
        }
    )*};
}

one_label!(
    OperationLabels { operation },
    OutcomeLabels { outcome },
    BackendLabels { backend },
    ModeLabels { mode },
    SwitchLabels { to },
    StateLabels { state },
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub operation: &'static str,
    /// `connection`, `timeout`, `refused` (a Redis that answers but will not serve: OOM,
    /// READONLY, ...) or `unexpected`.
    pub kind: &'static str,
}

/// Request counts, durations and requests in flight.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<ResponseLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub in_flight: Gauge,
}

impl HttpMetrics {
    /// One answered request: its status, and its time since `started`.
    pub fn record(&self, labels: RouteLabels, status: u16, started: std::time::Instant) {
        self.in_flight.dec();
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let RouteLabels { route, method } = labels;
        self.requests
            .get_or_create(&ResponseLabels {
                route,
                method,
                status,
            })
            .inc();
    }
}

/// Every Redis round trip: its duration and its errors, by operation.
#[derive(Clone)]
pub struct RedisMetrics {
    pub duration: Family<OperationLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(redis_histogram),
            errors: Family::default(),
        }
    }
}

/// The backend state machine: switches, probes, and the gauges read at scrape time.
#[derive(Clone, Default)]
pub struct BackendMetrics {
    /// `to`: `memory` (Redis found down in auto mode) or `redis` (back).
    pub switches: Family<SwitchLabels, Counter>,
    /// `outcome`: `up` or `down`.
    pub probes: Tally,
    /// Items handed from memory to Redis on recovery, by `outcome`: `written`, `deleted`,
    /// `conflict` (Redis held a later write, which was kept), `failed` (refused for a reason of
    /// the item's own; logged and dropped).
    pub handback: Tally,
    /// 1 for the backend serving now (`redis` or `memory`), 0 for the other.
    pub active: Family<BackendLabels, Gauge>,
    /// 1 for `backend.mode` (`auto`, `redis` or `memory`).
    pub mode: Family<ModeLabels, Gauge>,
    pub degraded: Gauge,
    /// Seconds spent degraded since the start, including the current stretch.
    pub degraded_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `state`: `max`, `open`, `available`, `waiting` (callers waiting for a connection).
    pub pool: Family<StateLabels, Gauge>,
    /// Redis's `used_memory`, `maxmemory` (0: no limit) and `evicted_keys`, read by `INFO`
    /// at each scrape while Redis answers.
    pub redis_used_bytes: Gauge,
    pub redis_max_bytes: Gauge,
    pub redis_evicted_keys: Gauge,
    pub memory_bytes: Gauge,
    pub memory_max_bytes: Gauge,
    pub memory_entries: Gauge,
}

/// A counter by outcome: `count("hit")`.
#[derive(Clone, Default)]
pub struct Tally(Family<OutcomeLabels, Counter>);

impl Tally {
    pub fn count(&self, outcome: &'static str) {
        self.0.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn count_by(&self, outcome: &'static str, n: u64) {
        self.0.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
    }

    /// Exposes each outcome at 0 before it first happens, so that a rate over it is 0 rather
    /// than no data.
    fn start_at_zero(&self, outcomes: &[&'static str]) {
        for &outcome in outcomes {
            let _ = self.0.get_or_create(&OutcomeLabels { outcome });
        }
    }
}

/// A counter family by outcome that a capability declares (`Declaration::outcomes`).
pub struct OutcomeFamily {
    /// Its metric name, after `statekeeper_`.
    pub name: &'static str,
    pub help: &'static str,
    /// The outcomes it starts with at zero.
    pub outcomes: &'static [&'static str],
}

/// A gauge a capability declares (`Declaration::gauges`).
pub struct GaugeFamily {
    pub name: &'static str,
    pub help: &'static str,
}

/// What the capabilities decided, by outcome: the families every capability declares.
#[derive(Clone, Default)]
pub struct Outcomes {
    tallies: HashMap<&'static str, Tally>,
    gauges: HashMap<&'static str, Gauge>,
    /// Counts what no declared family would: never registered.
    detached: Tally,
    detached_gauge: Gauge,
}

impl Outcomes {
    /// Every family `capabilities::ALL` declares, registered in `registry`.
    fn declared(registry: &mut Registry) -> Self {
        let mut outcomes = Self::default();
        for declaration in crate::capabilities::ALL {
            for family in declaration.outcomes {
                let tally = Tally::default();
                tally.start_at_zero(family.outcomes);
                registry.register(family.name, family.help, tally.0.clone());
                outcomes.tallies.insert(family.name, tally);
            }
            for family in declaration.gauges {
                let gauge = Gauge::default();
                registry.register(family.name, family.help, gauge.clone());
                outcomes.gauges.insert(family.name, gauge);
            }
        }
        outcomes
    }

    /// The counters of `family`.
    pub fn of(&self, family: &OutcomeFamily) -> &Tally {
        self.tallies.get(family.name).unwrap_or(&self.detached)
    }

    /// The gauge of `family`.
    pub fn gauge(&self, family: &GaugeFamily) -> &Gauge {
        self.gauges.get(family.name).unwrap_or(&self.detached_gauge)
    }
}

/// Explicit buckets for request durations, in seconds: 250 µs to 10 s.
const HTTP_BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Explicit buckets for Redis round trips, in seconds: 100 µs to 5 s.
const REDIS_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn redis_histogram() -> Histogram {
    Histogram::new(REDIS_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under `statekeeper_`.
    pub fn new() -> Self {
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
            in_flight: Gauge::default(),
        };
        let redis = RedisMetrics::default();
        let backend = BackendMetrics::default();
        backend.probes.start_at_zero(&["up", "down"]);
        backend
            .handback
            .start_at_zero(&["written", "deleted", "conflict", "failed"]);
        for to in ["memory", "redis"] {
            let _ = backend.switches.get_or_create(&SwitchLabels { to });
        }
        let mut registry = Registry::with_prefix("statekeeper");
        let r = &mut registry;
        r.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head)",
            Unit::Seconds,
            http.duration.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being answered now",
            http.in_flight.clone(),
        );
        r.register(
            "backend_switches",
            "Switches of the serving backend in auto mode, by the backend switched to",
            backend.switches.clone(),
        );
        r.register(
            "backend_probes",
            "Redis health probes, by outcome (up, down)",
            backend.probes.0.clone(),
        );
        r.register(
            "backend_handback_items",
            "Items written while degraded and handed to Redis on recovery, by outcome (written, \
             deleted, conflict, failed)",
            backend.handback.0.clone(),
        );
        r.register(
            "backend_active",
            "1 for the backend serving requests now",
            backend.active.clone(),
        );
        r.register("backend_mode", "1 for backend.mode", backend.mode.clone());
        r.register(
            "backend_degraded",
            "1 while Redis is down (auto mode serves from memory or refuses, by capability)",
            backend.degraded.clone(),
        );
        r.register_with_unit(
            "backend_degraded",
            "Time spent degraded since the start",
            Unit::Seconds,
            backend.degraded_seconds.clone(),
        );
        let outcomes = Outcomes::declared(r);
        Self {
            http,
            redis,
            backend,
            outcomes,
            registry: Arc::new(registry),
        }
    }

    /// Adds the series of Redis calls, the pool and Redis's memory (not in `memory` mode).
    pub fn register_redis(&mut self) {
        let (redis, backend) = (self.redis.clone(), self.backend.clone());
        let r = self.registry_mut();
        r.register_with_unit(
            "redis_call_duration",
            "Redis round trips, by script or command",
            Unit::Seconds,
            redis.duration.clone(),
        );
        r.register(
            "redis_errors",
            "Redis calls that failed, by operation and kind (connection, timeout, refused, \
             unexpected)",
            redis.errors.clone(),
        );
        r.register(
            "redis_pool_connections",
            "The Redis pool: max, open, available connections, and callers waiting",
            backend.pool.clone(),
        );
        r.register_with_unit(
            "redis_memory_used",
            "Redis's used_memory (all of its data, not only statekeeper's)",
            Unit::Bytes,
            backend.redis_used_bytes.clone(),
        );
        r.register_with_unit(
            "redis_memory_max",
            "Redis's maxmemory; 0 means no limit",
            Unit::Bytes,
            backend.redis_max_bytes.clone(),
        );
        r.register(
            "redis_evicted_keys",
            "Keys Redis has evicted since it started (its evicted_keys)",
            backend.redis_evicted_keys.clone(),
        );
    }

    /// Adds the series of the memory backend (when one is built).
    pub fn register_memory(&mut self) {
        let backend = self.backend.clone();
        let r = self.registry_mut();
        r.register_with_unit(
            "memory_used",
            "What the memory backend holds (an estimate per entry)",
            Unit::Bytes,
            backend.memory_bytes.clone(),
        );
        r.register_with_unit(
            "memory_max",
            "The memory backend's bound, memory.max_bytes",
            Unit::Bytes,
            backend.memory_max_bytes.clone(),
        );
        r.register(
            "memory_entries",
            "Entries the memory backend holds",
            backend.memory_entries.clone(),
        );
    }

    fn registry_mut(&mut self) -> &mut Registry {
        Arc::get_mut(&mut self.registry).expect("series are added before the metrics are shared")
    }

    /// The exposition, in the Prometheus text format (OpenMetrics' text, which Prometheus
    /// reads, ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The label of a Redis command: its name when it is one statekeeper sends, else `other`.
pub fn command_label(name: &[u8]) -> &'static str {
    const COMMANDS: [&str; 15] = [
        "DBSIZE", "EXISTS", "EXPIRE", "GET", "GETDEL", "HGETALL", "HMGET", "INFO", "MGET", "PING",
        "PTTL", "SCAN", "SET", "UNLINK", "PUBLISH",
    ];
    COMMANDS
        .iter()
        .find(|command| command.as_bytes().eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_command_is_other() {
        assert_eq!(command_label(b"get"), "GET");
        assert_eq!(command_label(b"FLUSHALL"), "other");
    }

    #[test]
    fn a_counted_outcome_is_in_the_exposition() {
        let metrics = Metrics::new();
        metrics
            .outcomes
            .of(&crate::capabilities::cache::LOOKUPS)
            .count("hit");
        let text = metrics.render();
        assert!(text.contains("# TYPE statekeeper_cache_lookups counter"));
        assert!(text.contains("statekeeper_cache_lookups_total{outcome=\"hit\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
