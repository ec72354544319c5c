//! One model per guarantee the README makes: clients that exercise a capability with random
//! operations across the instances, and the checker that decides the recorded history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use rand::RngExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::capabilities::topic::model::{Log, Order};

use super::checker::{self, Operation};
use super::record::{Call, Ctx, Verdict};

/// The models, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Model {
    Cache,
    Lock,
    Queue,
    Budget,
    RateLimit,
    PendingAction,
    Session,
    Topic,
}

impl Model {
    pub const ALL: [Model; 8] = [
        Model::Cache,
        Model::Lock,
        Model::Queue,
        Model::Budget,
        Model::RateLimit,
        Model::PendingAction,
        Model::Session,
        Model::Topic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Cache => "cache",
            Model::Lock => "lock",
            Model::Queue => "queue",
            Model::Budget => "budget",
            Model::RateLimit => "rate-limit",
            Model::PendingAction => "pending-action",
            Model::Session => "session",
            Model::Topic => "topic",
        }
    }

    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the degradation table lets this capability diverge while `auto` serves it from
    /// memory (README, "Degradation"): the cache and sessions are served from each instance's
    /// memory, and rate limits count per instance (`rate_limits.degraded = "local"`).
    pub fn may_diverge_when_degraded(self) -> bool {
        matches!(self, Model::Cache | Model::Session | Model::RateLimit)
    }

    pub async fn exercise(self, ctx: Arc<Ctx>) -> Verdict {
        match self {
            Model::Cache => cache(ctx).await,
            Model::Lock => lock(ctx).await,
            Model::Queue => queue(ctx).await,
            Model::Budget => budget(ctx).await,
            Model::RateLimit => rate_limit(ctx).await,
            Model::PendingAction => pending_action(ctx).await,
            Model::Session => session(ctx).await,
            Model::Topic => topic(ctx).await,
        }
    }
}

/// Runs `clients` copies of `client` until the deadline and gathers what they recorded.
async fn clients<T, F, Fut>(ctx: &Arc<Ctx>, clients: u64, client: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Ctx>, u64) -> Fut,
    Fut: std::future::Future<Output = Vec<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(Arc::clone(ctx), i)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a client panicked"));
    }
    all
}

fn pace(rng: &mut impl rand::Rng) -> Duration {
    Duration::from_millis(rng.random_range(0..15))
}

// ---------------------------------------------------------------------------------------------
// Cache: each key a linearizable register.

#[derive(Clone, Debug)]
enum CacheIn {
    Get,
    Put(i64),
    Cas(Option<i64>, i64),
    GetAndSet(i64),
    GetAndDelete,
    Incr(i64),
}

#[derive(Clone, Debug, PartialEq)]
enum CacheOut {
    Written,
    Value(Option<i64>),
    Swapped(bool, Option<i64>),
}

struct Register;

impl checker::Model for Register {
    type State = Option<i64>;
    type Input = CacheIn;
    type Output = CacheOut;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &CacheIn,
        output: Option<&CacheOut>,
    ) -> Option<Option<i64>> {
        use CacheIn as I;
        use CacheOut as O;
        match (input, output) {
            (I::Get, None) => Some(*state),
            (I::Get, Some(O::Value(v))) => (v == state).then_some(*state),
            (I::Put(v), None | Some(O::Written)) => Some(Some(*v)),
            (I::Cas(expected, v), None) => Some(if state == expected { Some(*v) } else { *state }),
            (I::Cas(expected, v), Some(O::Swapped(true, _))) => {
                (state == expected).then_some(Some(*v))
            }
            (I::Cas(expected, _), Some(O::Swapped(false, current))) => {
                (state != expected && current == state).then_some(*state)
            }
            (I::GetAndSet(v), None) => Some(Some(*v)),
            (I::GetAndSet(v), Some(O::Value(previous))) => (previous == state).then_some(Some(*v)),
            (I::GetAndDelete, None) => Some(None),
            (I::GetAndDelete, Some(O::Value(previous))) => (previous == state).then_some(None),
            (I::Incr(by), None) => Some(Some(state.unwrap_or(0) + by)),
            (I::Incr(by), Some(O::Value(Some(n)))) => {
                (state.unwrap_or(0) + by == *n).then_some(Some(*n))
            }
            _ => None,
        }
    }
}

const CACHE_KEYS: u64 = 3;

async fn cache(ctx: Arc<Ctx>) -> Verdict {
    let ops = clients(&ctx, 4, |ctx, client| async move {
        let mut rng = ctx.rng(100 + client);
        let mut recorded = Vec::new();
        let mut seen: Option<i64> = None;
        let mut next = (client as i64 + 1) * 1_000_000_000;
        while ctx.running() {
            // A fresh set of keys every 2 s keeps each history short enough to search.
            let key = (ctx.now() / 2_000_000) * CACHE_KEYS + rng.random_range(0..CACHE_KEYS);
            let path = format!("/v1/cache/{}/k{key}", ctx.run);
            let instance = rng.random_range(0..2);
            next += 1;
            let input = match rng.random_range(0..10) {
                0..=2 => CacheIn::Get,
                3..=4 => CacheIn::Put(next),
                // Mostly the value last seen; sometimes absence, or a value never written
                // (that one must always fail).
                5..=6 => {
                    let expected = match rng.random_range(0..10) {
                        0..=6 => seen,
                        7..=8 => None,
                        _ => Some(-1),
                    };
                    CacheIn::Cas(expected, next)
                }
                7 => CacheIn::GetAndSet(next),
                8 => CacheIn::GetAndDelete,
                _ => CacheIn::Incr(rng.random_range(1..4)),
            };
            let call = match &input {
                CacheIn::Get => ctx.get(instance, &path).await,
                CacheIn::Put(v) => {
                    ctx.call(instance, Method::PUT, &path, Some(json!(v)), &[])
                        .await
                }
                CacheIn::Cas(expected, v) => {
                    let body = json!({"expected": expected, "value": v});
                    ctx.post(instance, &format!("{path}/cas"), body).await
                }
                CacheIn::GetAndSet(v) => {
                    ctx.post(
                        instance,
                        &format!("{path}/get-and-set"),
                        json!({"value": v}),
                    )
                    .await
                }
                CacheIn::GetAndDelete => {
                    ctx.call(
                        instance,
                        Method::POST,
                        &format!("{path}/get-and-delete"),
                        None,
                        &[],
                    )
                    .await
                }
                CacheIn::Incr(by) => {
                    ctx.post(instance, &format!("{path}/incr"), json!({"by": by}))
                        .await
                }
            };
            let output = call.known().map(|(status, body)| {
                let int = |v: &Value| v.as_i64();
                match (&input, status) {
                    (CacheIn::Get | CacheIn::GetAndDelete, 404) => CacheOut::Value(None),
                    (CacheIn::Get | CacheIn::GetAndDelete, 200) => CacheOut::Value(int(body)),
                    (CacheIn::Put(_), 204) => CacheOut::Written,
                    (CacheIn::Cas(..), 200) => CacheOut::Swapped(true, None),
                    (CacheIn::Cas(..), 409) => CacheOut::Swapped(false, int(&body["current"])),
                    (CacheIn::GetAndSet(_), 200) => CacheOut::Value(int(&body["previous"])),
                    (CacheIn::Incr(_), 200) => CacheOut::Value(int(&body["value"])),
                    _ => panic!("cache {input:?}: unexpected {status} {body}"),
                }
            });
            if let Some(CacheOut::Value(v) | CacheOut::Swapped(false, v)) = &output {
                seen = *v;
            }
            if let (CacheIn::Put(v) | CacheIn::GetAndSet(v), Some(_)) = (&input, &output) {
                seen = Some(*v);
            }
            recorded.push((
                key,
                call.clone(),
                Operation {
                    invoked: call.invoked,
                    returned: call.returned,
                    input,
                    output,
                },
            ));
            tokio::time::sleep(pace(&mut rng)).await;
        }
        recorded
    })
    .await;
    let mut verdict = Verdict::default();
    let mut by_key: BTreeMap<u64, Vec<Operation<CacheIn, CacheOut>>> = BTreeMap::new();
    for (key, call, op) in ops {
        verdict.count(&call);
        // A read whose outcome is unknown changed nothing: it has no place in the history.
        if !(matches!(op.input, CacheIn::Get) && op.output.is_none()) {
            by_key.entry(key).or_default().push(op);
        }
    }
    for (key, history) in by_key {
        match checker::linearizable(&Register, &history, 20_000_000) {
            Some(true) => {}
            Some(false) => verdict.anomaly(format!(
                "key k{key}: its {} operations are not linearizable",
                history.len()
            )),
            None => verdict.undecided += 1,
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Locks: fencing tokens strictly increase; no two live grants; a fence check refuses a token
// older than one already checked, or than a later grant.

#[derive(Clone, Debug)]
struct Grant {
    name: u64,
    fence: u64,
    token: String,
    ttl_ms: u64,
    invoked: u64,
    returned: u64,
    /// When its release was invoked, if it was.
    released: Option<u64>,
}

#[derive(Clone, Debug)]
struct FenceCheck {
    name: u64,
    fence: u64,
    invoked: u64,
    returned: u64,
    accepted: bool,
}

enum LockEvent {
    Grant(Grant),
    Check(FenceCheck),
    Call(Call),
}

async fn lock(ctx: Arc<Ctx>) -> Verdict {
    let events = clients(&ctx, 4, |ctx, client| async move {
        let mut rng = ctx.rng(200 + client);
        let mut events = Vec::new();
        let mut old: Option<(u64, u64)> = None;
        while ctx.running() {
            let name = rng.random_range(0..2u64);
            let path = format!("/v1/locks/{}-{name}", ctx.run);
            let fences = format!("/v1/fences/{}-{name}/check", ctx.run);
            let ttl_ms = rng.random_range(300..1_500u64);
            let body = json!({"ttl_ms": ttl_ms, "wait_ms": rng.random_range(0..400)});
            let call = ctx.post(rng.random_range(0..2), &path, body).await;
            events.push(LockEvent::Call(call.clone()));
            let Some(granted) = call.ok() else {
                // An old token of this client's, checked now: it must be refused when a later
                // grant or check exists.
                if let Some((name, fence)) = old.filter(|_| rng.random_bool(0.3)) {
                    let path = format!("/v1/fences/{}-{name}/check", ctx.run);
                    let check = ctx
                        .post(
                            rng.random_range(0..2),
                            &path,
                            json!({"fencing_token": fence}),
                        )
                        .await;
                    events.push(LockEvent::Call(check.clone()));
                    if let Some(status) = check.status() {
                        events.push(LockEvent::Check(FenceCheck {
                            name,
                            fence,
                            invoked: check.invoked,
                            returned: check.returned,
                            accepted: status == 200,
                        }));
                    }
                }
                tokio::time::sleep(pace(&mut rng)).await;
                continue;
            };
            let mut grant = Grant {
                name,
                fence: granted["fencing_token"].as_u64().unwrap(),
                token: granted["lock_token"].as_str().unwrap().to_string(),
                ttl_ms,
                invoked: call.invoked,
                returned: call.returned,
                released: None,
            };
            for _ in 0..rng.random_range(1..4) {
                let body = json!({"fencing_token": grant.fence});
                let check = ctx.post(rng.random_range(0..2), &fences, body).await;
                events.push(LockEvent::Call(check.clone()));
                if let Some(status) = check.status() {
                    events.push(LockEvent::Check(FenceCheck {
                        name,
                        fence: grant.fence,
                        invoked: check.invoked,
                        returned: check.returned,
                        accepted: status == 200,
                    }));
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
            }
            if rng.random_bool(0.8) {
                grant.released = Some(ctx.now());
                let release = ctx
                    .call(
                        rng.random_range(0..2),
                        Method::DELETE,
                        &path,
                        None,
                        &[("Lock-Token", grant.token.as_str())],
                    )
                    .await;
                events.push(LockEvent::Call(release));
            }
            old = Some((name, grant.fence));
            events.push(LockEvent::Grant(grant));
        }
        events
    })
    .await;
    let mut verdict = Verdict::default();
    let mut grants: Vec<Grant> = Vec::new();
    let mut checks: Vec<FenceCheck> = Vec::new();
    for event in events {
        match event {
            LockEvent::Call(call) => verdict.count(&call),
            LockEvent::Grant(g) => grants.push(g),
            LockEvent::Check(c) => checks.push(c),
        }
    }
    let mut fences = HashSet::new();
    for g in &grants {
        if !fences.insert((g.name, g.fence)) {
            verdict.anomaly(format!(
                "lock {}: fencing token {} granted twice",
                g.name, g.fence
            ));
        }
    }
    for a in &grants {
        for b in grants.iter().filter(|b| b.name == a.name) {
            if a.returned < b.invoked && a.fence >= b.fence {
                verdict.anomaly(format!(
                    "lock {}: grant {} returned before grant {} was asked for",
                    a.name, a.fence, b.fence
                ));
            }
            // `a` is live from its grant until at least invoked + ttl, unless released first.
            let a_live_until = a.invoked + a.ttl_ms * 1_000;
            let released_before = a.released.is_some_and(|r| r < b.returned);
            if b.fence > a.fence && b.returned + 2_000 < a_live_until && !released_before {
                verdict.anomaly(format!(
                    "lock {}: grant {} while grant {} was live ({} µs before its expiry)",
                    a.name,
                    b.fence,
                    a.fence,
                    a_live_until - b.returned
                ));
            }
        }
    }
    for late in checks.iter().filter(|c| c.accepted) {
        for early in checks.iter().filter(|c| c.accepted && c.name == late.name) {
            if early.returned < late.invoked && early.fence > late.fence {
                verdict.anomaly(format!(
                    "fence {}: {} accepted after {} was",
                    late.name, late.fence, early.fence
                ));
            }
        }
        for g in grants.iter().filter(|g| g.name == late.name) {
            if g.returned < late.invoked && g.fence > late.fence {
                verdict.anomaly(format!(
                    "fence {}: {} accepted after grant {} returned",
                    late.name, late.fence, g.fence
                ));
            }
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Queues: every acknowledged enqueue is acked exactly once or dead; never two live leases on
// a job; an acked job is never leased again.

#[derive(Clone, Debug)]
struct Lease {
    job: String,
    attempt: u64,
    visibility_ms: u64,
    invoked: u64,
    returned: u64,
    /// When its ack or nack was invoked, if it was.
    settled: Option<u64>,
}

#[derive(Default)]
struct QueueHistory {
    enqueued: Vec<String>,
    leases: Vec<Lease>,
    /// Per job: acks that succeeded (with when they returned), and acks of unknown outcome.
    acked: HashMap<String, Vec<u64>>,
    maybe_acked: HashSet<String>,
    calls: Vec<Call>,
}

async fn queue(ctx: Arc<Ctx>) -> Verdict {
    let path = format!("/v1/queues/{}", ctx.run);
    let history = Arc::new(Mutex::new(QueueHistory::default()));
    let shared = Arc::clone(&history);
    clients(&ctx, 4, move |ctx, client| {
        let history = Arc::clone(&shared);
        let path = format!("/v1/queues/{}", ctx.run);
        async move {
            let mut rng = ctx.rng(300 + client);
            let mut n = 0u64;
            while ctx.running() {
                let instance = rng.random_range(0..2);
                if client % 2 == 0 {
                    n += 1;
                    let body = json!({"payload": {"client": client, "n": n}, "max_attempts": 3,
                        "backoff": {"kind": "fixed", "base_ms": 100}});
                    let call = ctx.post(instance, &format!("{path}/jobs"), body).await;
                    {
                        let mut h = history.lock().unwrap();
                        if let Some(body) = call.ok() {
                            h.enqueued
                                .push(body["job_id"].as_str().unwrap().to_string());
                        }
                        h.calls.push(call);
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
                    continue;
                }
                work(&ctx, &history, &path, &mut rng, instance, 1_000).await;
            }
            Vec::<()>::new()
        }
    })
    .await;
    ctx.healed().await;
    // Drain: lease what is left with a long visibility and ack it all, until nothing is left.
    let mut rng = ctx.rng(399);
    let mut quiet = 0;
    for _ in 0..200 {
        let counts = ctx.settled(0, Method::GET, &path, None).await;
        let Some(counts) = counts.ok() else { continue };
        let left: u64 = ["ready", "delayed", "leased"]
            .iter()
            .map(|k| counts[k].as_u64().unwrap())
            .sum();
        if left == 0 {
            quiet += 1;
            if quiet == 2 {
                break;
            }
            continue;
        }
        quiet = 0;
        work(&ctx, &history, &path, &mut rng, 0, 30_000).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = ctx
        .settled(0, Method::GET, &format!("{path}/dead?limit=1000"), None)
        .await;
    let dead: HashSet<String> = dead.ok().map_or_else(HashSet::new, |body| {
        body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_string())
            .collect()
    });
    let h = history.lock().unwrap();
    let mut verdict = Verdict::default();
    for call in &h.calls {
        verdict.count(call);
    }
    for (job, acks) in &h.acked {
        if acks.len() > 1 {
            verdict.anomaly(format!("job {job}: acked {} times", acks.len()));
        }
    }
    for job in &h.enqueued {
        if !h.acked.contains_key(job) && !h.maybe_acked.contains(job) && !dead.contains(job) {
            verdict.anomaly(format!("job {job}: enqueued, never acked, not dead: lost"));
        }
    }
    let mut by_job: HashMap<&str, Vec<&Lease>> = HashMap::new();
    for lease in &h.leases {
        by_job.entry(&lease.job).or_default().push(lease);
        if let Some(acks) = h.acked.get(&lease.job)
            && acks.iter().any(|&acked| acked < lease.invoked)
        {
            verdict.anomaly(format!(
                "job {}: leased again after its ack returned",
                lease.job
            ));
        }
    }
    for leases in by_job.values() {
        for a in leases {
            for b in leases.iter().filter(|b| b.attempt > a.attempt) {
                let a_live_until = a.invoked + a.visibility_ms * 1_000;
                let settled_before = a.settled.is_some_and(|s| s < b.returned);
                if b.returned + 2_000 < a_live_until && !settled_before {
                    verdict.anomaly(format!(
                        "job {}: attempt {} leased while attempt {} was live",
                        a.job, b.attempt, a.attempt
                    ));
                }
            }
        }
    }
    verdict
}

/// One worker step: lease up to 2 jobs, then ack most, nack some, abandon a few.
async fn work(
    ctx: &Ctx,
    history: &Mutex<QueueHistory>,
    path: &str,
    rng: &mut rand::rngs::StdRng,
    instance: usize,
    visibility_ms: u64,
) {
    let draining = visibility_ms > 1_000;
    let body = json!({"visibility_ms": visibility_ms, "count": 2, "wait_ms": 200});
    let call = ctx.post(instance, &format!("{path}/lease"), body).await;
    let jobs: Vec<Value> = call
        .ok()
        .map(|b| b["jobs"].as_array().unwrap().clone())
        .unwrap_or_default();
    history.lock().unwrap().calls.push(call.clone());
    for job in jobs {
        let id = job["job_id"].as_str().unwrap().to_string();
        let mut lease = Lease {
            job: id.clone(),
            attempt: job["attempt"].as_u64().unwrap(),
            visibility_ms,
            invoked: call.invoked,
            returned: call.returned,
            settled: None,
        };
        if !draining {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        }
        let choice = if draining { 0 } else { rng.random_range(0..10) };
        if choice < 9 {
            let op = if choice < 8 { "ack" } else { "nack" };
            lease.settled = Some(ctx.now());
            let body = json!({"lease_token": job["lease_token"]});
            let settle = ctx
                .post(
                    rng.random_range(0..2),
                    &format!("{path}/jobs/{id}/{op}"),
                    body,
                )
                .await;
            let mut h = history.lock().unwrap();
            let h = &mut *h;
            if op == "ack" {
                match settle.status() {
                    Some(200) => h.acked.entry(id.clone()).or_default().push(settle.returned),
                    None => {
                        h.maybe_acked.insert(id.clone());
                    }
                    _ => {}
                }
            }
            h.calls.push(settle);
        }
        history.lock().unwrap().leases.push(lease);
    }
}

// ---------------------------------------------------------------------------------------------
// Budgets: committed + reserved never exceeds the limit.

const BUDGET_LIMIT: u64 = 400;

#[derive(Clone, Debug)]
enum BudgetEvent {
    /// A reservation of `amount`, live from `from` until `until` (its commit or release was
    /// invoked), certainly.
    Held {
        amount: u64,
        from: u64,
        until: u64,
    },
    /// `amount` committed, certainly, from `from`.
    Committed {
        amount: u64,
        from: u64,
    },
    /// A commit of unknown outcome.
    MaybeCommitted {
        amount: u64,
    },
    Call(Call),
}

async fn budget(ctx: Arc<Ctx>) -> Verdict {
    let path = format!("/v1/budgets/{}/tokens", ctx.run);
    let set = ctx
        .settled(
            0,
            Method::PUT,
            &path,
            Some(json!({"limit": BUDGET_LIMIT, "period": "month"})),
        )
        .await;
    assert_eq!(set.status(), Some(200), "the budget is set: {set:?}");
    let events = clients(&ctx, 4, |ctx, client| async move {
        let mut rng = ctx.rng(400 + client);
        let path = format!("/v1/budgets/{}/tokens", ctx.run);
        let mut events = Vec::new();
        while ctx.running() {
            let amount = rng.random_range(1..40u64);
            let body = json!({"amount": amount, "ttl_ms": 600_000});
            let call = ctx
                .post(rng.random_range(0..2), &format!("{path}/reserve"), body)
                .await;
            events.push(BudgetEvent::Call(call.clone()));
            let Some(reservation) = call.ok() else {
                tokio::time::sleep(pace(&mut rng)).await;
                continue;
            };
            let id = reservation["reservation_id"].as_str().unwrap().to_string();
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
            let until = ctx.now();
            let instance = rng.random_range(0..2);
            if rng.random_bool(0.7) {
                let used = rng.random_range(0..=amount);
                let commit = ctx
                    .post(
                        instance,
                        &format!("{path}/reservations/{id}/commit"),
                        json!({"amount": used}),
                    )
                    .await;
                match commit.status() {
                    Some(200) => events.push(BudgetEvent::Committed {
                        amount: used,
                        from: commit.returned,
                    }),
                    None => events.push(BudgetEvent::MaybeCommitted { amount: used }),
                    _ => {}
                }
                events.push(BudgetEvent::Call(commit));
            } else {
                let release = ctx
                    .call(
                        instance,
                        Method::POST,
                        &format!("{path}/reservations/{id}/release"),
                        None,
                        &[],
                    )
                    .await;
                events.push(BudgetEvent::Call(release));
            }
            events.push(BudgetEvent::Held {
                amount,
                from: call.returned,
                until,
            });
        }
        events
    })
    .await;
    ctx.healed().await;
    let mut verdict = Verdict::default();
    let mut committed = 0;
    let mut maybe = 0;
    let mut moments = Vec::new();
    for event in &events {
        match event {
            BudgetEvent::Call(call) => verdict.count(call),
            BudgetEvent::Committed { amount, from } => {
                committed += amount;
                moments.push(*from);
            }
            BudgetEvent::MaybeCommitted { amount } => maybe += amount,
            BudgetEvent::Held { from, .. } => moments.push(*from),
        }
    }
    for at in moments {
        let held: u64 = events
            .iter()
            .map(|e| match e {
                BudgetEvent::Held {
                    amount,
                    from,
                    until,
                } if *from <= at && at < *until => *amount,
                BudgetEvent::Committed { amount, from } if *from <= at => *amount,
                _ => 0,
            })
            .sum();
        if held > BUDGET_LIMIT {
            verdict.anomaly(format!(
                "{held} reserved and committed at once, over the limit {BUDGET_LIMIT}"
            ));
            break;
        }
    }
    let last = ctx.settled(0, Method::GET, &path, None).await;
    if let Some(body) = last.ok() {
        let used = body["used"].as_u64().unwrap();
        let reserved = body["reserved"].as_u64().unwrap();
        if used + reserved > BUDGET_LIMIT {
            verdict.anomaly(format!(
                "final: used {used} + reserved {reserved} > {BUDGET_LIMIT}"
            ));
        }
        if used < committed || used > committed + maybe {
            verdict.anomaly(format!(
                "final: used {used}, but commits that succeeded sum to {committed} (+{maybe} unknown)"
            ));
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Rate limits: admitted ≤ limit per window, for each algorithm.

const RATE_LIMIT: u64 = 5;
const RATE_WINDOW_MS: u64 = 1_000;

async fn rate_limit(ctx: Arc<Ctx>) -> Verdict {
    let algorithms = ["fixed_window", "sliding_window", "token_bucket"];
    let admits = clients(&ctx, 4, |ctx, client| async move {
        let mut rng = ctx.rng(500 + client);
        let mut recorded = Vec::new();
        while ctx.running() {
            let algorithm =
                ["fixed_window", "sliding_window", "token_bucket"][rng.random_range(0..3)];
            let path = format!("/v1/rate-limits/{}-{algorithm}/check", ctx.run);
            let rule =
                json!({"algorithm": algorithm, "limit": RATE_LIMIT, "window_ms": RATE_WINDOW_MS});
            let call = ctx
                .post(rng.random_range(0..2), &path, json!({"rules": [rule]}))
                .await;
            recorded.push((algorithm, call));
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        }
        recorded
    })
    .await;
    let mut verdict = Verdict::default();
    let window = RATE_WINDOW_MS * 1_000;
    for algorithm in algorithms {
        // Admissions decided with Redis (a degraded one is per instance, by design).
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (_, call) in admits.iter().filter(|(a, _)| *a == algorithm) {
            verdict.count(call);
            if let Some(body) = call.ok()
                && body["allowed"] == json!(true)
                && body["degraded"] != json!(true)
            {
                admitted.push((ctx.epoch_us(call.invoked), ctx.epoch_us(call.returned)));
            }
        }
        admitted.sort_unstable();
        let over = match algorithm {
            "fixed_window" => {
                let mut per_window: HashMap<u64, u64> = HashMap::new();
                for (invoked, returned) in &admitted {
                    if invoked / window == returned / window {
                        *per_window.entry(invoked / window).or_default() += 1;
                    }
                }
                per_window
                    .values()
                    .copied()
                    .max()
                    .filter(|&n| n > RATE_LIMIT)
            }
            _ => {
                // From each admission on: those certainly inside [its start, start + t) number
                // at most limit (sliding), or burst + limit × t / window (token bucket).
                let mut worst = None;
                for (i, (start, _)) in admitted.iter().enumerate() {
                    let mut inside: Vec<u64> = admitted[i..]
                        .iter()
                        .filter(|(invoked, _)| invoked >= start)
                        .map(|(_, returned)| returned - start)
                        .collect();
                    inside.sort_unstable();
                    for (count, span) in inside.iter().enumerate() {
                        let allowed = if algorithm == "sliding_window" {
                            if *span + 1_000 >= window {
                                break;
                            }
                            RATE_LIMIT
                        } else {
                            RATE_LIMIT + (RATE_LIMIT * span).div_ceil(window)
                        };
                        if count as u64 + 1 > allowed {
                            worst = Some(count as u64 + 1);
                        }
                    }
                }
                worst
            }
        };
        if let Some(n) = over {
            verdict.anomaly(format!(
                "{algorithm}: {n} admitted where at most the limit may be"
            ));
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Pending actions: of racing confirms and cancels, one outcome wins (one confirm, or cancels),
// and the state shows it.

async fn pending_action(ctx: Arc<Ctx>) -> Verdict {
    let rounds = clients(&ctx, 2, |ctx, client| async move {
        let mut rng = ctx.rng(600 + client);
        let mut rounds = Vec::new();
        while ctx.running() {
            let create = ctx
                .post(
                    rng.random_range(0..2),
                    "/v1/pending-actions",
                    json!({"intent_name": "chaos"}),
                )
                .await;
            let Some(token) = create
                .ok()
                .map(|b| b["token"].as_str().unwrap().to_string())
            else {
                rounds.push((None, vec![create]));
                continue;
            };
            let racers: Vec<_> = (0..4)
                .map(|i| {
                    let ctx = Arc::clone(&ctx);
                    let op = if (i + client) % 3 == 0 {
                        "cancel"
                    } else {
                        "confirm"
                    };
                    let path = format!("/v1/pending-actions/{token}/{op}");
                    tokio::spawn(async move {
                        (
                            op,
                            ctx.call(i as usize, Method::POST, &path, None, &[]).await,
                        )
                    })
                })
                .collect();
            let mut calls = vec![create];
            let mut outcomes = Vec::new();
            for racer in racers {
                let (op, call) = racer.await.unwrap();
                outcomes.push((op, call.status()));
                calls.push(call);
            }
            rounds.push((Some((token, outcomes)), calls));
        }
        rounds
    })
    .await;
    ctx.healed().await;
    let mut verdict = Verdict::default();
    let tokens: Vec<Option<String>> = rounds
        .iter()
        .map(|(round, _)| round.as_ref().map(|(t, _)| t.clone()))
        .collect();
    let states: Vec<Option<String>> = futures::stream::iter(tokens)
        .map(|token| {
            let ctx = Arc::clone(&ctx);
            async move {
                let path = format!("/v1/pending-actions/{}", token?);
                let state = ctx.settled(0, Method::GET, &path, None).await;
                state
                    .ok()
                    .map(|b| b["status"].as_str().unwrap_or("").to_string())
            }
        })
        .buffered(16)
        .collect()
        .await;
    for ((round, calls), status) in rounds.into_iter().zip(states) {
        calls.iter().for_each(|c| verdict.count(c));
        let Some((token, outcomes)) = round else {
            continue;
        };
        let won = |op: &str| {
            outcomes
                .iter()
                .filter(|(o, s)| *o == op && matches!(s, Some(200 | 204)))
                .count()
        };
        let (confirmed, cancelled) = (won("confirm"), won("cancel"));
        // Cancel is idempotent (a repeated cancel is 204); a confirm is not, and excludes it.
        if confirmed > 1 || (confirmed == 1 && cancelled > 0) {
            verdict.anomaly(format!(
                "{token}: {confirmed} confirms and {cancelled} cancels won"
            ));
        }
        let expected = if confirmed > 0 {
            Some("confirmed")
        } else if cancelled > 0 {
            Some("cancelled")
        } else {
            None
        };
        if let (Some(expected), Some(status)) = (expected, status.as_deref())
            && status != expected
        {
            verdict.anomaly(format!(
                "{token}: a {expected} won, yet its status is {status}"
            ));
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Sessions: once a session is seen gone (deleted, rotated away, or a 404), it never comes back.

async fn session(ctx: Arc<Ctx>) -> Verdict {
    let records = clients(&ctx, 2, |ctx, client| async move {
        let mut rng = ctx.rng(700 + client);
        let mut records = Vec::new();
        while ctx.running() {
            let body = json!({"user_id": format!("{}-u{client}", ctx.run), "ttl_seconds": 600});
            let create = ctx.post(rng.random_range(0..2), "/v1/sessions", body).await;
            let Some(id) = create
                .ok()
                .map(|b| b["session_id"].as_str().unwrap().to_string())
            else {
                records.push((String::new(), "create", create));
                continue;
            };
            records.push((id.clone(), "create", create));
            let racers: Vec<_> = (0..3)
                .map(|i| {
                    let ctx = Arc::clone(&ctx);
                    let id = id.clone();
                    let mut rng = ctx.rng(7_000 + client * 100 + i);
                    tokio::spawn(async move {
                        let mut calls = Vec::new();
                        for _ in 0..4 {
                            let instance = rng.random_range(0..2);
                            let path = format!("/v1/sessions/{id}");
                            let (op, call) = match rng.random_range(0..10) {
                                0 => (
                                    "delete",
                                    ctx.call(instance, Method::DELETE, &path, None, &[]).await,
                                ),
                                1 => (
                                    "rotate",
                                    ctx.call(
                                        instance,
                                        Method::POST,
                                        &format!("{path}/rotate"),
                                        None,
                                        &[],
                                    )
                                    .await,
                                ),
                                _ => ("get", ctx.get(instance, &path).await),
                            };
                            calls.push((id.clone(), op, call));
                            tokio::time::sleep(Duration::from_millis(rng.random_range(0..50)))
                                .await;
                        }
                        calls
                    })
                })
                .collect();
            for racer in racers {
                records.extend(racer.await.unwrap());
            }
        }
        records
    })
    .await;
    let mut verdict = Verdict::default();
    let mut gone_at: HashMap<&str, u64> = HashMap::new();
    for (id, op, call) in &records {
        verdict.count(call);
        let gone = matches!(
            (*op, call.status()),
            ("delete", Some(204 | 404)) | ("get", Some(404)) | ("rotate", Some(200 | 404))
        );
        if gone {
            let at = gone_at.entry(id).or_insert(u64::MAX);
            *at = (*at).min(call.returned);
        }
    }
    for (id, op, call) in &records {
        if *op == "get"
            && call.status() == Some(200)
            && gone_at
                .get(id.as_str())
                .is_some_and(|&gone| gone < call.invoked)
        {
            verdict.anomaly(format!("session {id}: read back after it was gone"));
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Topics: each subscriber sees, between resets, an ordered, duplicate-free, gapless part of
// the published log.

#[derive(Clone, Debug)]
enum Seen {
    Message(String),
    Reset,
    /// The stream ended (or failed) and the subscriber connects again: for the record only.
    Reconnect,
}

async fn topic(ctx: Arc<Ctx>) -> Verdict {
    let path = format!("/v1/topics/{}/", ctx.run);
    let subscribers: Vec<_> = (0..2)
        .map(|i| tokio::spawn(subscribe(Arc::clone(&ctx), i, format!("{path}events"))))
        .collect();
    // Let the subscriptions open before the first publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = clients(&ctx, 2, |ctx, client| async move {
        let mut rng = ctx.rng(800 + client);
        let mut calls = Vec::new();
        let mut n = 0;
        while ctx.running() {
            n += 1;
            let body = json!({"data": {"client": client, "n": n}});
            let call = ctx
                .post(
                    rng.random_range(0..2),
                    &format!("/v1/topics/{}/messages", ctx.run),
                    body,
                )
                .await;
            calls.push(call);
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..80))).await;
        }
        calls
    })
    .await;
    ctx.healed().await;
    // What was published in the last moments reaches the subscribers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut verdict = Verdict::default();
    let mut log: Vec<(Log, Order)> = Vec::new();
    for call in &published {
        verdict.count(call);
        if let Some(body) = call.ok() {
            log.push(Order::parse(body["id"].as_str().unwrap()).expect("an id the service made"));
        }
    }
    for (i, subscriber) in subscribers.into_iter().enumerate() {
        subscriber.abort();
        let seen = match subscriber.await {
            Err(e) if e.is_cancelled() => SEEN
                .lock()
                .unwrap()
                .remove(&(ctx.run.clone(), i))
                .unwrap_or_default(),
            _ => unreachable!(),
        };
        let mut previous: Option<(Log, Order)> = None;
        if std::env::var_os("CHAOS_DEBUG").is_some() {
            eprintln!("subscriber {i}: {seen:?}");
            let log: Vec<String> = published
                .iter()
                .map(|c| match c.ok() {
                    Some(b) => format!("{}@{}", b["id"].as_str().unwrap(), c.returned / 1000),
                    None => format!("?@{}", c.invoked / 1000),
                })
                .collect();
            eprintln!("published: {log:?}");
        }
        for item in seen {
            match item {
                Seen::Reconnect => {}
                Seen::Reset => previous = None,
                Seen::Message(id) => {
                    let Some(current) = Order::parse(&id) else {
                        verdict.anomaly(format!("subscriber {i}: an id no backend made: {id}"));
                        continue;
                    };
                    if let Some(before) = previous {
                        if before.0 != current.0 {
                            verdict.anomaly(format!(
                                "subscriber {i}: {id} from another log, with no reset"
                            ));
                        } else if current.1 <= before.1 {
                            verdict.anomaly(format!("subscriber {i}: {id} again or out of order"));
                        } else if let Some(missed) = log
                            .iter()
                            .find(|p| p.0 == current.0 && before.1 < p.1 && p.1 < current.1)
                        {
                            // Whether the log still holds it: a resume from just before.
                            let kept = resumed_after(&ctx, &before.1.id(before.0)).await;
                            verdict.anomaly(format!(
                                "subscriber {i}: {} published, but the stream went from {} to \
                                 {id} with no reset (a resume from {} now reads {kept:?})",
                                missed.1.id(missed.0),
                                before.1.id(before.0),
                                before.1.id(before.0),
                            ));
                        }
                    }
                    previous = Some(current);
                }
            }
        }
    }
    verdict
}

/// The first ids a subscription resuming after `id` reads now (instance 0, at most 3).
async fn resumed_after(ctx: &Ctx, id: &str) -> Vec<String> {
    use eventsource_stream::Eventsource as _;
    let url = format!("{}/v1/topics/{}/events", ctx.bases[0], ctx.run);
    let Ok(response) = ctx
        .streaming
        .get(url)
        .header("Last-Event-ID", id)
        .send()
        .await
    else {
        return Vec::new();
    };
    let mut events = response.bytes_stream().eventsource();
    let mut ids = Vec::new();
    while ids.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(2), events.next()).await {
            Ok(Some(Ok(event))) if event.event == "reset" => ids.push("reset".into()),
            Ok(Some(Ok(event))) => ids.push(event.id),
            _ => break,
        }
    }
    ids
}

/// What subscribers saw, by (run, subscriber): a subscriber runs until aborted, so it keeps its
/// record here as it goes.
static SEEN: Mutex<BTreeMap<(String, usize), Vec<Seen>>> = Mutex::new(BTreeMap::new());

/// Reads the stream from instance `i`, resuming with `Last-Event-ID` whenever it ends.
async fn subscribe(ctx: Arc<Ctx>, i: usize, path: String) {
    use eventsource_stream::Eventsource as _;
    let key = (ctx.run.clone(), i);
    SEEN.lock().unwrap().insert(key.clone(), Vec::new());
    let mut last: Option<String> = None;
    loop {
        let url = format!("{}{}", ctx.bases[i], path);
        let mut request = ctx.streaming.get(url);
        if let Some(last) = &last {
            request = request.header("Last-Event-ID", last);
        }
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            let mut events = response.bytes_stream().eventsource();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(20), events.next()).await;
                let Ok(Some(Ok(event))) = next else { break };
                let item = if event.event == "reset" {
                    Seen::Reset
                } else {
                    last = Some(event.id.clone());
                    Seen::Message(event.id)
                };
                SEEN.lock().unwrap().get_mut(&key).unwrap().push(item);
            }
        }
        SEEN.lock()
            .unwrap()
            .get_mut(&key)
            .unwrap()
            .push(Seen::Reconnect);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
