//! What a checked run stands on: a private Redis that keeps every acknowledged write across a
//! kill (`appendonly yes`, `appendfsync always`), a TCP proxy between each statekeeper instance
//! and Redis (latency, a partition of that one instance), the instances — one in this process
//! (it can carry an injected bug) and one the real binary (it can be SIGKILLed) — and the
//! faults, applied and healed while the clients run.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt as _;
use statekeeper::config::{BackendMode, InjectedBug};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::cluster::{RedisCluster, SENTINEL_MASTER, SentinelSetup};
use crate::common::{RedisServer, TestApp, free_port, settings, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_statekeeper");

/// The faults a run can inject, one kind per run so the table says which fault did what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// No fault: the baseline.
    None,
    /// Redis SIGKILLed and restarted on its append-only file.
    Kill,
    /// Redis SIGSTOPped, then continued.
    Pause,
    /// `CLIENT KILL TYPE normal`: every connection of the instances dropped at once.
    ClientKill,
    /// `maxmemory` just above what Redis holds, `noeviction`: writes fail with OOM.
    Oom,
    /// 20–120 ms added to every packet between one instance and Redis.
    Latency,
    /// One instance cut off from Redis: its connections hang, new ones are not answered.
    Partition,
    /// The statekeeper binary SIGKILLed and started again on its port.
    InstanceKill,
    /// On a Sentinel set-up (a master and a replica, writes confirmed by `WAIT 1`): the master
    /// stopped until the Sentinels promote the replica, then continued (it becomes a replica).
    SentinelFailover,
    /// On a Redis Cluster of three masters with a replica each (`WAIT 1`): a master stopped
    /// until its replica takes over its slots, then continued.
    ClusterFailover,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::None,
        Fault::Kill,
        Fault::Pause,
        Fault::ClientKill,
        Fault::Oom,
        Fault::Latency,
        Fault::Partition,
        Fault::InstanceKill,
        Fault::SentinelFailover,
        Fault::ClusterFailover,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::ClientKill => "client-kill",
            Fault::Oom => "oom",
            Fault::Latency => "latency",
            Fault::Partition => "partition",
            Fault::InstanceKill => "instance-kill",
            Fault::SentinelFailover => "sentinel-failover",
            Fault::ClusterFailover => "cluster-failover",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    Slow(u64),
    Cut,
}

/// A TCP proxy from a local port to Redis, whose link can be slowed or cut.
pub struct Proxy {
    pub port: u16,
    link: watch::Sender<Link>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, watching) = watch::channel(Link::Open);
        tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                tokio::spawn(carry(downstream, upstream, watching.clone()));
            }
        });
        Proxy { port, link }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// One proxied connection. While the link is cut nothing moves (as a partition drops
/// packets); when it heals the connection is closed, as TCP would have given up on it.
async fn carry(mut downstream: TcpStream, upstream: u16, mut link: watch::Receiver<Link>) {
    let cut = |l: &Link| *l == Link::Cut;
    let now_cut = cut(&link.borrow());
    if now_cut {
        let _ = link.wait_for(|l| !cut(l)).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut down_read, mut down_write) = downstream.split();
    let (mut up_read, mut up_write) = upstream.split();
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut up_buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = down_read.read(&mut down_buf) => {
                let Ok(n @ 1..) = read else { return };
                let slow = *link.borrow();
                if let Link::Slow(ms) = slow {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if up_write.write_all(&down_buf[..n]).await.is_err() { return; }
            }
            read = up_read.read(&mut up_buf) => {
                let Ok(n @ 1..) = read else { return };
                if down_write.write_all(&up_buf[..n]).await.is_err() { return; }
            }
            changed = link.changed() => {
                if changed.is_err() { return; }
                let now_cut = cut(&link.borrow());
                if now_cut {
                    let _ = link.wait_for(|l| !cut(l)).await;
                    return;
                }
            }
        }
    }
}

/// The instance that runs the real binary: SIGKILLed and started again on its port.
pub struct Process {
    child: Child,
    port: u16,
    env: Vec<(String, String)>,
}

impl Process {
    fn spawn(port: u16, env: Vec<(String, String)>) -> Process {
        let child = Command::new(BIN)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("STATEKEEPER__SERVER__PORT", port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the statekeeper binary starts");
        Process { child, port, env }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Process::spawn(self.port, std::mem::take(&mut self.env));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the instances store in.
enum Backing {
    /// One server with an append-only file, reached through one proxy per instance.
    Single {
        redis: Mutex<RedisServer>,
        _dir: tempfile::TempDir,
        proxies: Vec<Proxy>,
    },
    Sentinel(SentinelSetup),
    Cluster(RedisCluster),
}

/// Redis (in one of its deployments) and the instances.
pub struct Rig {
    backing: Backing,
    _local: TestApp,
    process: Mutex<Process>,
    bases: Vec<String>,
    /// Faults applied so far.
    pub injected: AtomicU64,
}

/// How long a Redis command may take before the instance answers 503 (outcome unknown).
const COMMAND_TIMEOUT_MS: u64 = 1_000;

impl Rig {
    /// The deployment `fault` needs. `None` (skip) without a `redis-server` binary outside CI.
    pub async fn start(mode: BackendMode, bug: Option<InjectedBug>, fault: Fault) -> Option<Rig> {
        let mode_name = match mode {
            BackendMode::Redis => "redis",
            BackendMode::Auto => "auto",
            BackendMode::Memory => "memory",
        };
        let mut env: Vec<(String, String)> = vec![
            ("STATEKEEPER__BACKEND__MODE".into(), mode_name.into()),
            (
                "STATEKEEPER__BACKEND__PROBE_INTERVAL_MS".into(),
                "100".into(),
            ),
            (
                "STATEKEEPER__REDIS__COMMAND_TIMEOUT_MS".into(),
                COMMAND_TIMEOUT_MS.to_string(),
            ),
            ("STATEKEEPER__LOG__LEVEL".into(), "error".into()),
        ];
        let mut local = settings(mode, None);
        local.redis.command_timeout_ms = COMMAND_TIMEOUT_MS;
        local.inject_bug = bug;
        let backing = match fault {
            Fault::SentinelFailover | Fault::ClusterFailover => {
                // Every write confirmed by one replica, so a promoted replica holds it.
                local.redis.wait_replicas = 1;
                local.redis.wait_timeout_ms = 500;
                env.push(("STATEKEEPER__REDIS__WAIT_REPLICAS".into(), "1".into()));
                env.push(("STATEKEEPER__REDIS__WAIT_TIMEOUT_MS".into(), "500".into()));
                if fault == Fault::SentinelFailover {
                    let setup = tokio::task::spawn_blocking(|| {
                        let setup = SentinelSetup::start()?;
                        setup.wait_replica_in_sync();
                        Some(setup)
                    })
                    .await
                    .unwrap()?;
                    local.redis.sentinel = Some(statekeeper::config::SentinelSettings {
                        master_name: SENTINEL_MASTER.into(),
                        nodes: setup.urls(),
                    });
                    env.push(("REDIS_SENTINEL_MASTER".into(), SENTINEL_MASTER.into()));
                    env.push(("REDIS_SENTINEL_NODES".into(), setup.urls().join(",")));
                    Backing::Sentinel(setup)
                } else {
                    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start_with(3, 1))
                        .await
                        .unwrap()?;
                    local.redis.cluster_nodes = cluster.urls();
                    env.push(("REDIS_CLUSTER_NODES".into(), cluster.urls().join(",")));
                    Backing::Cluster(cluster)
                }
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let redis = RedisServer::start_with(vec![
                    "--dir".into(),
                    dir.path().display().to_string(),
                    "--appendonly".into(),
                    "yes".into(),
                    "--appendfsync".into(),
                    "always".into(),
                ])?;
                let proxies = vec![
                    Proxy::start(redis.port).await,
                    Proxy::start(redis.port).await,
                ];
                local.redis.port = proxies[0].port;
                env.push((
                    "STATEKEEPER__REDIS__PORT".into(),
                    proxies[1].port.to_string(),
                ));
                Backing::Single {
                    redis: Mutex::new(redis),
                    _dir: dir,
                    proxies,
                }
            }
        };
        let local = spawn_app(local).await;
        let port = free_port();
        let process = Process::spawn(port, env);
        let rig = Rig {
            backing,
            bases: vec![local.url(""), format!("http://127.0.0.1:{port}")],
            _local: local,
            process: Mutex::new(process),
            injected: AtomicU64::new(0),
        };
        rig.wait_ready(1).await;
        Some(rig)
    }

    /// The instances' base URLs: 0 is in this process, 1 the binary.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Waits (at most 30 s) until instance `i` answers its liveness probe.
    async fn wait_ready(&self, i: usize) {
        let url = format!("{}/health/live", self.bases[i]);
        let client = reqwest::Client::new();
        for _ in 0..1_500 {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("instance {i} did not come up");
    }

    /// Applies `fault` for a while, heals it, rests, and again, until `stop` turns true; then
    /// waits until both instances answer again.
    pub async fn inject(self: Arc<Self>, fault: Fault, seed: u64, mut stop: watch::Receiver<bool>) {
        let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed ^ 0xfa17);
        if fault != Fault::None {
            let mut first = true;
            loop {
                let rest = Duration::from_millis(rng.random_range(800..2_000));
                // A stall or a partition long enough for a command deadline (1 s) to pass twice
                // and the instance to take Redis for down, some of the time; the first is 5 s,
                // so every run sees an instance switch at least once. A failover holds until
                // the replica has taken over.
                let hold = match fault {
                    Fault::Pause | Fault::Partition if first => 5_000,
                    Fault::Pause | Fault::Partition => rng.random_range(1_500..4_500),
                    _ => rng.random_range(500..2_500),
                };
                first = false;
                let hold = Duration::from_millis(hold);
                let slow = rng.random_range(20..120);
                tokio::select! {
                    _ = tokio::time::sleep(rest) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                self.injected.fetch_add(1, Ordering::Relaxed);
                let rig = Arc::clone(&self);
                let applied = tokio::task::spawn_blocking(move || rig.apply(fault, slow))
                    .await
                    .unwrap();
                tokio::time::sleep(hold).await;
                let rig = Arc::clone(&self);
                tokio::task::spawn_blocking(move || rig.heal(fault, applied))
                    .await
                    .unwrap();
            }
        } else {
            let _ = stop.wait_for(|s| *s).await;
        }
        self.wait_ready(1).await;
    }

    fn single(&self) -> (&Mutex<RedisServer>, &[Proxy]) {
        match &self.backing {
            Backing::Single { redis, proxies, .. } => (redis, proxies),
            _ => unreachable!("a single-server fault on a replicated deployment"),
        }
    }

    /// Applies `fault`; returns the node it stopped, for a failover.
    fn apply(&self, fault: Fault, slow_ms: u64) -> usize {
        match fault {
            Fault::None => {}
            Fault::Kill => self.single().0.lock().unwrap().kill(),
            Fault::Pause => self.single().0.lock().unwrap().pause(),
            Fault::ClientKill => {
                let _: redis::Value = self
                    .single()
                    .0
                    .lock()
                    .unwrap()
                    .query(&["CLIENT", "KILL", "TYPE", "normal"]);
            }
            Fault::Oom => {
                let redis = self.single().0.lock().unwrap();
                let info: String = redis.query(&["INFO", "memory"]);
                let used: u64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let limit = (used + 64 * 1024).to_string();
                let _: () = redis.query(&["CONFIG", "SET", "maxmemory", &limit]);
            }
            Fault::Latency => self.single().1[1].set(Link::Slow(slow_ms)),
            Fault::Partition => self.single().1[1].set(Link::Cut),
            Fault::InstanceKill => self.process.lock().unwrap().kill(),
            Fault::SentinelFailover => {
                let Backing::Sentinel(setup) = &self.backing else {
                    unreachable!()
                };
                let master = setup.current_master();
                let (stopped, other) = if master == setup.master.port {
                    (&setup.master, &setup.replica)
                } else {
                    (&setup.replica, &setup.master)
                };
                stopped.pause();
                setup.wait_master(other.port);
                return stopped.port as usize;
            }
            Fault::ClusterFailover => {
                let Backing::Cluster(cluster) = &self.backing else {
                    unreachable!()
                };
                let (victim, _) = cluster.masters()[0].clone();
                cluster.nodes[victim].pause();
                cluster.wait_failover_of(victim);
                return victim;
            }
        }
        0
    }

    fn heal(&self, fault: Fault, applied: usize) {
        match fault {
            Fault::None | Fault::ClientKill => {}
            Fault::Kill => self.single().0.lock().unwrap().restart(),
            Fault::Pause => self.single().0.lock().unwrap().resume(),
            Fault::Oom => {
                let _: () =
                    self.single()
                        .0
                        .lock()
                        .unwrap()
                        .query(&["CONFIG", "SET", "maxmemory", "0"]);
            }
            Fault::Latency | Fault::Partition => self.single().1[1].set(Link::Open),
            Fault::InstanceKill => self.process.lock().unwrap().restart(),
            Fault::SentinelFailover => {
                let Backing::Sentinel(setup) = &self.backing else {
                    unreachable!()
                };
                let stopped = if applied == setup.master.port as usize {
                    &setup.master
                } else {
                    &setup.replica
                };
                stopped.resume();
                wait_replica_linked(stopped);
            }
            Fault::ClusterFailover => {
                let Backing::Cluster(cluster) = &self.backing else {
                    unreachable!()
                };
                cluster.nodes[applied].resume();
                wait_replica_linked(&cluster.nodes[applied]);
                cluster.wait_ok();
            }
        }
    }
}

/// Waits (at most 20 s) until a continued former master serves as a replica, in sync.
fn wait_replica_linked(node: &RedisServer) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let info: Option<String> = redis::cmd("INFO")
            .arg("replication")
            .query(&mut node.connection())
            .ok();
        if info.is_some_and(|i| i.contains("role:slave") && i.contains("master_link_status:up")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the former master on port {} did not rejoin as a replica",
        node.port
    );
}
