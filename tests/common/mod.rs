//! Test helpers shared by both test binaries: a private `redis-server` per test, the service on
//! port 0 with request helpers (`TestApp`), one way to run a case on every backend
//! (`on_each_backend!`), and the store conformance macro.
#![allow(dead_code)]

pub mod cluster;
pub mod conformance;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use statekeeper::{
    Server,
    config::{ApiKeySettings, BackendMode, Scope, Settings},
    store::{Stores, memory::MemoryBackend, redis::RedisPool},
};

/// A `redis-server` of this test's own on a free port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// More `redis-server` arguments (e.g. a TLS port) kept across restarts.
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts one. Without a `redis-server` binary: panics under CI, else prints a loud warning
    /// and returns `None` so the caller can skip.
    pub fn start() -> Option<Self> {
        Self::start_with(Vec::new())
    }

    /// `start`, with more `redis-server` arguments; the plain port stays open for checks.
    pub fn start_with(extra_args: Vec<String>) -> Option<Self> {
        Self::start_with_args(move || extra_args.clone())
    }

    /// `start`, with more arguments made afresh for each attempt (a cluster node's bus port):
    /// a server that exits at once, because another test's server took its port between
    /// `free_port` and the start, is started again on other ports.
    pub fn start_with_args(make_args: impl Fn() -> Vec<String>) -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed, and CI is set: Redis tests must run");
            }
            eprintln!(
                "\n!!!!!! SKIPPING a Redis test: no redis-server binary on PATH \
                 (install redis-server to run it) !!!!!!\n"
            );
            return None;
        }
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                child: None,
                extra_args: make_args(),
            };
            if server.try_restart() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub fn restart(&mut self) {
        if !self.try_restart() {
            panic!("redis-server on port {} did not start", self.port);
        }
    }

    /// `restart`: false when the server exited, or did not answer within 10 s.
    fn try_restart(&mut self) -> bool {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited == Some(true) {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Restarts it with other extra arguments, kept for later restarts.
    pub fn restart_with(&mut self, extra_args: Vec<String>) {
        self.extra_args = extra_args;
        self.restart();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its socket but answers nothing (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// How many `EVALSHA` calls the server has run (`INFO commandstats`): what a test counts to
    /// show that a waiter does not poll.
    pub fn evalsha_calls(&self) -> u64 {
        self.calls("evalsha")
    }

    /// How many times Redis ran `command` (lowercase) since it started (`INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = self.query(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// One command on a plain connection, e.g. `query(&["CONFIG", "SET", "maxmemory", "1"])`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.connection()).unwrap()
    }

    /// A plain connection for looking at what the service stored.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
    }
}

impl RedisServer {
    fn resume_quietly(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings for a test: port 0, quiet, fast probe.
pub fn settings(mode: BackendMode, redis: Option<&RedisServer>) -> Settings {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.backend.mode = mode;
    settings.backend.probe_interval_ms = 100;
    if let Some(redis) = redis {
        settings.redis.port = redis.port;
    } else {
        // Nothing listens here: auto mode starts degraded, redis mode answers 503.
        settings.redis.port = free_port();
    }
    settings
}

/// `settings` on `redis` for a race of hundreds of calls across instances: on two cores
/// shared with the other tests, such a burst can hold a call past the default 250 ms command
/// deadline, which answers 503 (the call may or may not have happened) and spoils an exact
/// count; these tests are about the counts, so their deadline is 5 s.
pub fn racing_settings(redis: &RedisServer) -> Settings {
    let mut settings = settings(BackendMode::Redis, Some(redis));
    settings.redis.command_timeout_ms = 5_000;
    settings
}

/// Replaces the settings' API keys with these (secret, tenant, scopes), and validates them.
pub fn with_api_keys(settings: &mut Settings, keys: &[(&str, &str, &[Scope])]) {
    use sha2::Digest;
    settings.auth.keys = keys
        .iter()
        .map(|(secret, tenant, scopes)| ApiKeySettings {
            sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
            tenant: tenant.to_string(),
            scopes: scopes.to_vec(),
        })
        .collect();
    settings.validate().unwrap();
}

/// The service on `redis` in `mode`, with settings changed by `tweak`.
pub async fn spawn_on(
    redis: &RedisServer,
    mode: BackendMode,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings(mode, Some(redis));
    tweak(&mut settings);
    spawn_app(settings).await
}

/// Two service instances sharing one private Redis (with `racing_settings`); `None` (skip)
/// without a `redis-server` binary outside CI. Keep the server: dropping it stops Redis.
pub async fn two_instances() -> Option<(RedisServer, std::sync::Arc<[TestApp; 2]>)> {
    let redis = RedisServer::start()?;
    let apps = [
        spawn_app(racing_settings(&redis)).await,
        spawn_app(racing_settings(&redis)).await,
    ];
    Some((redis, std::sync::Arc::new(apps)))
}

/// A backend a case runs on: memory, or a private Redis in mode `redis` (a Redis failure then
/// shows instead of being served from memory) or `auto`.
pub struct Backend {
    pub mode: BackendMode,
    pub redis: Option<RedisServer>,
}

impl Backend {
    pub fn memory() -> Self {
        Self {
            mode: BackendMode::Memory,
            redis: None,
        }
    }

    /// A private Redis for `mode`; `None` (skip) without a `redis-server` binary outside CI.
    pub fn on_redis(mode: BackendMode) -> Option<Self> {
        Some(Self {
            mode,
            redis: Some(RedisServer::start()?),
        })
    }

    /// The test settings for this backend.
    pub fn settings(&self) -> Settings {
        settings(self.mode, self.redis.as_ref())
    }

    /// The service on this backend, with settings changed by `tweak`.
    pub async fn app(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings();
        tweak(&mut settings);
        spawn_app(settings).await
    }
}

/// Runs each case once per backend, each as its own test: memory, Redis (mode `redis`) and
/// Redis in mode `auto`.
///
/// - `on_each_backend!(a, b)`: cases are `async fn a(backend: Backend)`.
/// - `on_each_backend!(app => a, b)` or `(app with tweak => a, b)`: cases are
///   `async fn a(app: &TestApp)`, on a service whose settings `fn tweak(&mut Settings)` changed.
#[macro_export]
macro_rules! on_each_backend {
    (app $(with $tweak:ident)? => $($case:ident),* $(,)?) => {
        $crate::on_each_backend!(@modules [$($case),*] (backend, case) {
            let app = backend.app(|_settings| { $(super::$tweak(_settings);)? }).await;
            case(&app).await;
        });
        /// Every case on one Redis Cluster (mode `redis`), one after the other, each on a
        /// service with a key prefix of its own.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_redis_cluster() {
            let Some(cluster) = $crate::common::cluster::RedisCluster::start() else { return };
            let mut outcomes = Vec::new();
            let tweak = |_settings: &mut statekeeper::config::Settings| {
                $($tweak(_settings);)?
            };
            $(
                let mut settings = $crate::common::cluster_settings(&cluster, stringify!($case));
                tweak(&mut settings);
                let run = tokio::spawn(async move {
                    let app = $crate::common::spawn_app(settings).await;
                    $case(&app).await;
                });
                outcomes.push((stringify!($case), run.await.is_ok()));
            )*
            $crate::common::all_passed("on Redis Cluster", &outcomes);
        }
    };
    ($($case:ident),* $(,)?) => {
        $crate::on_each_backend!(@modules [$($case),*] (backend, case) { case(backend).await; });
    };
    (@modules [$($case:ident),*] ($backend:ident, $run:ident) $body:block) => {
        $crate::on_each_backend!(@module on_memory, Some($crate::common::Backend::memory()),
            [$($case),*] ($backend, $run) $body);
        $crate::on_each_backend!(@module on_redis,
            $crate::common::Backend::on_redis(statekeeper::config::BackendMode::Redis),
            [$($case),*] ($backend, $run) $body);
        $crate::on_each_backend!(@module on_auto,
            $crate::common::Backend::on_redis(statekeeper::config::BackendMode::Auto),
            [$($case),*] ($backend, $run) $body);
    };
    // One module with a test per case on one backend (`None`: skipped).
    (@module $module:ident, $make:expr, [$($case:ident),*] ($backend:ident, $run:ident)
        $body:block) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some($backend) = $make else { return };
                    let $run = super::$case;
                    $body
                }
            )*
        }
    };
}

/// The outcomes of one group of a race whose tasks answered `(group, outcome)`.
pub fn of_group<T>(results: &[(usize, T)], group: usize) -> Vec<&T> {
    let in_group = results.iter().filter(|(g, _)| *g == group);
    in_group.map(|(_, outcome)| outcome).collect()
}

/// Runs `waiting` in the background: its answer, and the moment it came.
pub fn spawn_timed<T: Send + 'static>(
    waiting: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<(T, Instant)> {
    tokio::spawn(async move { (waiting.await, Instant::now()) })
}

/// Asserts that a waiter woke within 250 ms of what should wake it (a release, an enqueue):
/// woken by the signal, not by a fallback poll.
pub fn assert_woken_promptly(cause_at: Instant, woken_at: Instant, cause: &str) {
    let delay = woken_at.duration_since(cause_at);
    assert!(
        delay < Duration::from_millis(250),
        "woken {delay:?} after the {cause}"
    );
}

/// The string field `field` of each object in the JSON array `array`.
pub fn strings<'a>(array: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    let items = array.as_array().expect("a JSON array");
    items
        .iter()
        .map(|item| item[field].as_str().unwrap())
        .collect()
}

/// A response, read whole: status, headers, the body's bytes and the body as JSON (`null`
/// when it is none or not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub body: serde_json::Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Self {
            status,
            headers,
            bytes,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Whether the body is declared a problem document.
    pub fn is_problem(&self) -> bool {
        self.header("content-type")
            .starts_with("application/problem+json")
    }

    /// Asserts a whole problem document with this status and code (its `type` ends with the code,
    /// its `detail` says something) carrying a request id.
    pub fn assert_problem(&self, status: u16, code: &str) {
        let body = &self.body;
        assert_eq!(self.status, status, "{body}");
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{body}"
        );
        assert!(!self.header("x-request-id").is_empty(), "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status, "{body}");
        let type_uri = body["type"].as_str().unwrap_or_default();
        assert!(type_uri.ends_with(code), "{body}");
        assert!(
            !body["detail"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
    }
}

/// The service, serving on a free port until the test ends.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to build on (headers, body), sent with `send`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.unwrap()).await
    }

    /// A request with a JSON body (or none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    /// `call` with extra headers.
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// `call` with a JSON body that must succeed (2xx); the answer's body.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let reply = self.call(method, path, Some(body)).await;
        assert!(
            (200..300).contains(&reply.status),
            "{path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn head(&self, path: &str) -> Reply {
        self.call(reqwest::Method::HEAD, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// A PUT of exact JSON text.
    pub async fn put_raw(&self, path: &str, body: &str) -> Reply {
        self.call_raw(reqwest::Method::PUT, path, body.as_bytes())
            .await
    }

    /// A request with a body of exact bytes, declared JSON.
    pub async fn call_raw(&self, method: reqwest::Method, path: &str, body: &[u8]) -> Reply {
        self.call_typed(method, path, Some("application/json"), body)
            .await
    }

    /// A request with a body of exact bytes, declared as `content_type` (or undeclared).
    pub async fn call_typed(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let mut request = self.request(method, path).body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    /// `PUT /v1/cache/ns/{key}` with `body` as the JSON value.
    pub async fn put_cache(&self, key: &str, body: &str) -> Reply {
        self.put_raw(&format!("/v1/cache/ns/{key}"), body).await
    }

    /// Follows a listing from `path` through each page's `next_cursor`: every page's `field`
    /// array, in order. Each page must answer 200.
    pub async fn pages(&self, path: &str, field: &str) -> Vec<Vec<serde_json::Value>> {
        let join = if path.contains('?') { '&' } else { '?' };
        let (mut pages, mut next) = (Vec::new(), path.to_string());
        loop {
            let page = self.get(&next).await;
            assert_eq!(page.status, 200, "{next}: {}", page.body);
            pages.push(page.body[field].as_array().expect("a page").clone());
            match page.body["next_cursor"].as_str() {
                Some(cursor) => next = format!("{path}{join}cursor={cursor}"),
                None => return pages,
            }
        }
    }

    /// `pages` of strings, one after another.
    pub async fn listed(&self, path: &str, field: &str) -> Vec<String> {
        let pages = self.pages(path, field).await;
        let all = pages.iter().flatten();
        all.map(|item| item.as_str().unwrap().to_string()).collect()
    }

    /// The status of a GET.
    pub async fn status(&self, path: &str) -> u16 {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.status().as_u16()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until `/health` satisfies `check`, for at most `within`.
    pub async fn wait_for_health(
        &self,
        within: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let (_, health) = self.get_json("/health").await;
            if check(&health) {
                return health;
            }
            assert!(
                started.elapsed() < within,
                "health never reached the expected state; last: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn spawn_app(settings: Settings) -> TestApp {
    let server = Server::bind(settings).await.expect("the service starts");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

/// The command deadline of the conformance suite's Redis adapters: its cases race 50 calls
/// at once to prove what is atomic, and on two cores shared with the other test binaries such
/// a burst can hold a checkout past the default 250 ms (a 503 "outcome unknown" that spoils an
/// exact count). The deadline itself is tested through the service (`tests/api/outages.rs`).
const CONFORMANCE_DEADLINE_MS: u64 = 5_000;

/// Stores of one adapter, with whatever must live as long as they do.
pub struct StoreHarness {
    pub stores: Stores,
    pub redis: Option<RedisServer>,
}

pub async fn memory_stores() -> Option<StoreHarness> {
    Some(StoreHarness {
        stores: MemoryBackend::default().stores(),
        redis: None,
    })
}

/// The Redis adapters themselves, with no failover around them, on a private server.
pub async fn redis_stores() -> Option<StoreHarness> {
    let redis = RedisServer::start()?;
    let mut settings = settings(BackendMode::Redis, Some(&redis));
    settings.redis.key_prefix = "conformance".into();
    settings.redis.command_timeout_ms = CONFORMANCE_DEADLINE_MS;
    let pool = RedisPool::new(&settings.redis).unwrap();
    Some(StoreHarness {
        stores: statekeeper::store::redis::stores(&pool),
        redis: Some(redis),
    })
}

/// Test settings for mode `redis` on a Redis Cluster, under a key prefix of their own
/// (`name`), so that several cases share one cluster.
pub fn cluster_settings(cluster: &cluster::RedisCluster, name: &str) -> Settings {
    let mut settings = settings(BackendMode::Redis, None);
    settings.redis.cluster_nodes = cluster.urls();
    settings.redis.key_prefix = format!("cf_{name}");
    settings.redis.command_timeout_ms = CONFORMANCE_DEADLINE_MS;
    settings
}

/// The Redis adapters on a Redis Cluster, as `cluster_settings`.
pub fn cluster_stores(cluster: &cluster::RedisCluster, name: &str) -> Stores {
    let settings = cluster_settings(cluster, name);
    let pool = RedisPool::new(&settings.redis).unwrap();
    statekeeper::store::redis::stores(&pool)
}

/// The Redis adapters on the master a Sentinel set-up names, as `cluster_stores`.
pub fn sentinel_stores(setup: &cluster::SentinelSetup, name: &str) -> Stores {
    let mut settings = settings(BackendMode::Redis, None);
    settings.redis.sentinel = Some(statekeeper::config::SentinelSettings {
        master_name: cluster::SENTINEL_MASTER.into(),
        nodes: setup.urls(),
    });
    settings.redis.key_prefix = format!("cf_{name}");
    settings.redis.command_timeout_ms = CONFORMANCE_DEADLINE_MS;
    let pool = RedisPool::new(&settings.redis).unwrap();
    statekeeper::store::redis::stores(&pool)
}

/// Fails, naming every case that panicked, if any did: cases run one after the other on one
/// shared deployment (`place`), each in a task of its own so that one failing does not hide
/// the others.
pub fn all_passed(place: &str, outcomes: &[(&'static str, bool)]) {
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
    assert!(failed.is_empty(), "cases that failed {place}: {failed:?}");
}

/// Runs `n` copies of a task at once and collects their results.
pub async fn race<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for handle in handles {
        out.push(handle.await.expect("racing task panicked"));
    }
    out
}
