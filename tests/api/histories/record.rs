//! Recording: every call a client makes, with when it was invoked and when it returned, and
//! whether its outcome is known. A 2xx or 4xx answer is known (a 4xx changes nothing, as the
//! contract says); a 5xx, a 408, a timeout or a broken connection is *unknown*: the operation
//! may or may not have taken effect, and the checkers allow both.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::Value;
use tokio::sync::watch;

/// What a run's clients share: the instances, the clock, the end of the faulty phase.
pub struct Ctx {
    pub bases: Vec<String>,
    pub http: reqwest::Client,
    /// For streams: no overall timeout.
    pub streaming: reqwest::Client,
    start: Instant,
    epoch_us_at_start: u64,
    /// Names this run's keys, so runs never share state.
    pub run: String,
    pub deadline: Instant,
    healed: watch::Receiver<bool>,
    pub seed: u64,
}

/// One call's record.
#[derive(Clone, Debug)]
pub struct Call {
    /// µs since the run started.
    pub invoked: u64,
    pub returned: u64,
    pub reply: Reply,
}

#[derive(Clone, Debug)]
pub enum Reply {
    /// A known outcome: the status and the JSON body (`Null` when there is none).
    Done(u16, Value),
    /// The effect is unknown.
    Unknown,
}

impl Call {
    pub fn known(&self) -> Option<(u16, &Value)> {
        match &self.reply {
            Reply::Done(status, body) => Some((*status, body)),
            Reply::Unknown => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.known().map(|(s, _)| s)
    }

    pub fn ok(&self) -> Option<&Value> {
        self.known()
            .filter(|(s, _)| (200..300).contains(s))
            .map(|(_, b)| b)
    }
}

impl Ctx {
    pub fn new(
        bases: Vec<String>,
        seconds: u64,
        seed: u64,
        healed: watch::Receiver<bool>,
    ) -> Arc<Ctx> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(16)
            .build()
            .unwrap();
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let epoch_us_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        Arc::new(Ctx {
            bases,
            http,
            streaming,
            start: Instant::now(),
            epoch_us_at_start,
            run: format!("h{:x}", seed & 0xffff_ffff),
            deadline: Instant::now() + Duration::from_secs(seconds),
            healed,
            seed,
        })
    }

    /// µs since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A run time as µs since the Unix epoch (the clock Redis and the service decide by).
    pub fn epoch_us(&self, at: u64) -> u64 {
        self.epoch_us_at_start + at
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// A generator for one client, replayable from the run's seed.
    pub fn rng(&self, client: u64) -> rand::rngs::StdRng {
        rand::SeedableRng::seed_from_u64(self.seed.wrapping_mul(31).wrapping_add(client))
    }

    /// Resolves once the faults have stopped and been healed.
    pub async fn healed(&self) {
        let _ = self.healed.clone().wait_for(|h| *h).await;
    }

    pub async fn call(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Call {
        let url = format!("{}{}", self.bases[instance % self.bases.len()], path);
        let mut request = self.http.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let invoked = self.now();
        let reply = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) if status < 500 && status != 408 => {
                        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        Reply::Done(status, body)
                    }
                    answer => {
                        if std::env::var_os("CHAOS_DEBUG").is_some() {
                            eprintln!("unknown: {status} {answer:?}");
                        }
                        Reply::Unknown
                    }
                }
            }
            Err(error) => {
                if std::env::var_os("CHAOS_DEBUG").is_some() {
                    eprintln!("unknown: {error}");
                }
                Reply::Unknown
            }
        };
        let call = Call {
            invoked,
            returned: self.now(),
            reply,
        };
        if call.known().is_none() {
            // As a client honouring `Retry-After` would, and as Jepsen's crashed process is
            // replaced: a pause before the next call, so a dead Redis does not turn a client
            // into a stream of unknown operations, each of which the checker must place.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        call
    }

    pub async fn post(&self, instance: usize, path: &str, body: Value) -> Call {
        self.call(instance, Method::POST, path, Some(body), &[])
            .await
    }

    pub async fn get(&self, instance: usize, path: &str) -> Call {
        self.call(instance, Method::GET, path, None, &[]).await
    }

    /// After the faults: repeats a call until its outcome is known (at most 30 s).
    pub async fn settled(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Call {
        let mut last = None;
        for attempt in 0..60 {
            let call = self
                .call(instance + attempt, method.clone(), path, body.clone(), &[])
                .await;
            if call.known().is_some() {
                return call;
            }
            last = Some(call);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last.unwrap()
    }
}

/// What a checker found in one history.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub operations: u64,
    pub unknown: u64,
    pub anomalies: u64,
    /// The first few anomalies, described.
    pub examples: Vec<String>,
    /// Histories the linearizability search gave up on (reported, never counted as passes).
    pub undecided: u64,
}

impl Verdict {
    pub fn count(&mut self, call: &Call) {
        self.operations += 1;
        if call.known().is_none() {
            self.unknown += 1;
        }
    }

    pub fn anomaly(&mut self, what: String) {
        self.anomalies += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}
