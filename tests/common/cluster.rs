//! Private Redis deployments beyond one server: a local Redis Cluster (`redis-server
//! --cluster-enabled yes` on free ports, joined by `redis-cli --cluster create`) and a
//! Sentinel set-up (a master, a replica and Sentinels on free ports). Each is killed on drop.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{RedisServer, free_port};

/// A Redis Cluster of `masters` masters with `replicas` replicas each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Replicas per master.
    replicas: usize,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Three masters, no replicas; `None` (skip) as `RedisServer::start`.
    pub fn start() -> Option<Self> {
        Self::start_with(3, 0)
    }

    pub fn start_with(masters: usize, replicas: usize) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let dir_path = dir.path().to_path_buf();
            let node = RedisServer::start_with_args(move || {
                let bus = free_port();
                let conf = dir_path.join(format!("nodes-{bus}.conf"));
                vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.display().to_string(),
                    "--cluster-port".into(),
                    bus.to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // A replica takes over however long its link was quiet (an idle test
                    // cluster otherwise counts as too stale to fail over).
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                    // Replicas sync at once, not after the default 5 s wait for more of them.
                    "--repl-diskless-sync-delay".into(),
                    "0".into(),
                    "--dir".into(),
                    dir_path.display().to_string(),
                ]
            })?;
            nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self {
            nodes,
            replicas,
            _dir: dir,
        };
        cluster.wait_ok();
        Some(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every slot, and
    /// every replica is in sync with its master.
    pub fn wait_ok(&self) {
        let started = Instant::now();
        'wait: while started.elapsed() < Duration::from_secs(30) {
            for node in &self.nodes {
                let Ok(mut conn) = redis::Client::open(node.url()).and_then(|c| c.get_connection())
                else {
                    continue;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            return;
        }
        panic!("the cluster did not become ready within 30 s");
    }

    /// The seed URLs for `redis.cluster_nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The index in `nodes` of the master holding `key`'s slot.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].connection())
            .unwrap();
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(i, _)| i)
            .expect("every slot has a master")
    }

    /// Each master's index in `nodes` and its slot ranges.
    pub fn masters(&self) -> Vec<(usize, Vec<(u16, u16)>)> {
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.live_node().connection())
            .unwrap();
        let mut masters: Vec<(usize, Vec<(u16, u16)>)> = Vec::new();
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let start: u16 = redis::from_redis_value(parts[0].clone()).unwrap();
            let end: u16 = redis::from_redis_value(parts[1].clone()).unwrap();
            let node: Vec<redis::Value> = redis::from_redis_value(parts[2].clone()).unwrap();
            let port: u16 = redis::from_redis_value(node[1].clone()).unwrap();
            let index = self.nodes.iter().position(|n| n.port == port).unwrap();
            match masters.iter_mut().find(|(i, _)| *i == index) {
                Some((_, ranges)) => ranges.push((start, end)),
                None => masters.push((index, vec![(start, end)])),
            }
        }
        masters
    }

    /// Waits (at most 30 s) until the other nodes no longer name node `victim` (stopped) as
    /// the master of any slot: its replica has taken over.
    pub fn wait_failover_of(&self, victim: usize) {
        let port = self.nodes[victim].port;
        let witness = (victim + 1) % self.nodes.len();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut self.nodes[witness].connection())
                .unwrap_or_default();
            let named = slots.iter().any(|range| {
                let redis::Value::Array(parts) = range else {
                    return false;
                };
                let node: Vec<redis::Value> =
                    redis::from_redis_value(parts[2].clone()).unwrap_or_default();
                node.get(1)
                    .and_then(|p| redis::from_redis_value::<u16>(p.clone()).ok())
                    == Some(port)
            });
            if !slots.is_empty() && !named {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no replica took over from the master on port {port} within 30 s");
    }

    fn live_node(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs")
    }

    /// How many keys each master holds, in `masters()` order.
    pub fn keys_per_master(&self) -> Vec<u64> {
        self.masters()
            .into_iter()
            .map(|(i, _)| {
                redis::cmd("DBSIZE")
                    .query(&mut self.nodes[i].connection())
                    .unwrap()
            })
            .collect()
    }
}

/// A Sentinel-managed master: a master, one replica and three Sentinels watching it as
/// `mymaster` (quorum 2, down after 1 s).
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl SentinelSetup {
    pub fn start() -> Option<Self> {
        // Their own directory: a replica's sync writes an RDB file there, which any later
        // redis-server started in the same directory would load.
        let dir = tempfile::tempdir().expect("temp dir");
        let in_dir = |name: &str| {
            let own = dir.path().join(name);
            std::fs::create_dir(&own).unwrap();
            vec!["--dir".to_string(), own.display().to_string()]
        };
        let master = RedisServer::start_with(in_dir("master"))?;
        let mut replica_args = in_dir("replica");
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let replica = RedisServer::start_with(replica_args)?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                    master.port
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel starts");
            sentinels.push((port, child));
        }
        let setup = Self {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        setup.wait_master(setup.master.port);
        Some(setup)
    }

    /// Waits until the replica has everything the master wrote (equal replication offsets).
    pub fn wait_replica_in_sync(&self) {
        let offset = |server: &RedisServer, field: &str| -> Option<u64> {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut server.connection())
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let master = offset(&self.master, "master_repl_offset:");
            let replica = offset(&self.replica, "slave_repl_offset:");
            if master.is_some() && master == replica {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the replica did not catch up with the master within 10 s");
    }

    /// The port of the master the first Sentinel names.
    pub fn current_master(&self) -> u16 {
        let (_, port) = named_master(self.sentinels[0].0).expect("a Sentinel names the master");
        port.parse().unwrap()
    }

    /// The Sentinel URLs for `redis.sentinel.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Waits until every Sentinel names `port` as the master (and the replica is in sync).
    pub fn wait_master(&self, port: u16) {
        let started = Instant::now();
        'wait: while started.elapsed() < Duration::from_secs(30) {
            for (sentinel, _) in &self.sentinels {
                let named = named_master(*sentinel);
                if named.is_none_or(|(_, p)| p != port.to_string()) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            return;
        }
        panic!("the Sentinels did not name port {port} as master within 30 s");
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The (host, port) of the master the Sentinel on `sentinel` names, if it answers.
fn named_master(sentinel: u16) -> Option<(String, String)> {
    redis::Client::open(format!("redis://127.0.0.1:{sentinel}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut c| {
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(SENTINEL_MASTER)
                .query(&mut c)
        })
        .ok()
}
