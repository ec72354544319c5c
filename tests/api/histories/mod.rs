//! Checked histories, as Jepsen does it: clients issue random operations through HTTP to two
//! instances on one Redis while faults are injected, every call is recorded (invoked, returned,
//! result or *unknown*), and a checker decides each history against the model of the
//! capability's guarantee (`docs/consistency.md` has the table).
//!
//! - `a_short_run_of_every_model_under_faults_finds_no_anomaly` is the CI run: every model, a
//!   fixed set of faults, in `redis` and `auto` mode.
//! - `the_checker_catches_each_injected_bug` is the self-test: three deliberate bugs
//!   (`InjectedBug`), each caught by its model in a short run.
//! - `chaos` (ignored) is the long run behind `scripts/chaos`, steered by `CHAOS_*` variables.

mod checker;
mod models;
mod record;
mod rig;

use std::sync::Arc;
use std::time::Instant;

use statekeeper::config::{BackendMode, InjectedBug};
use tokio::sync::watch;

use self::models::Model;
use self::record::{Ctx, Verdict};
use self::rig::{Fault, Rig};

/// One run's result: per model, what the checker found.
struct Row {
    mode: BackendMode,
    fault: Fault,
    model: Model,
    verdict: Verdict,
    faults: u64,
    seed: u64,
}

/// Runs `models` for `seconds` on a fresh rig in `mode` while `fault` is injected, then
/// checks each history. `None` (skip) without a `redis-server` outside CI.
async fn run(
    mode: BackendMode,
    fault: Fault,
    models: &[Model],
    seconds: u64,
    seed: u64,
    bug: Option<InjectedBug>,
) -> Option<Vec<Row>> {
    let rig = Arc::new(Rig::start(mode, bug, fault).await?);
    let (stop, stopping) = watch::channel(false);
    let (healed, healing) = watch::channel(false);
    let ctx = Ctx::new(rig.bases().to_vec(), seconds, seed, healing);
    let injector = tokio::spawn(Arc::clone(&rig).inject(fault, seed, stopping));
    let exercised: Vec<_> = models
        .iter()
        .map(|&model| tokio::spawn(model.exercise(Arc::clone(&ctx))))
        .collect();
    tokio::time::sleep_until(ctx.deadline.into()).await;
    stop.send_replace(true);
    injector.await.unwrap();
    healed.send_replace(true);
    let mut rows = Vec::new();
    for (model, verdict) in models.iter().zip(exercised) {
        rows.push(Row {
            mode,
            fault,
            model: *model,
            verdict: verdict.await.unwrap(),
            faults: rig.injected.load(std::sync::atomic::Ordering::Relaxed),
            seed,
        });
    }
    Some(rows)
}

fn mode_name(mode: BackendMode) -> &'static str {
    match mode {
        BackendMode::Redis => "redis",
        BackendMode::Auto => "auto",
        BackendMode::Memory => "memory",
    }
}

/// The anomalies a row may show: none, except where `auto`'s degradation table lets the
/// capability diverge while it is served from memory.
fn allowed(row: &Row) -> bool {
    row.verdict.anomalies == 0
        || (row.mode == BackendMode::Auto && row.model.may_diverge_when_degraded())
}

/// The table `scripts/chaos` prints and `docs/consistency.md` shows.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| mode | fault | model | operations | unknown | anomalies | allowed | faults | seed |\n\
         |---|---|---|---:|---:|---:|---|---:|---|\n",
    );
    for row in rows {
        let v = &row.verdict;
        let undecided = if v.undecided > 0 {
            format!(" ({} undecided)", v.undecided)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} ({:.1}%) | {}{} | {} | {} | {} |\n",
            mode_name(row.mode),
            row.fault.name(),
            row.model.name(),
            v.operations,
            v.unknown,
            100.0 * v.unknown as f64 / v.operations.max(1) as f64,
            v.anomalies,
            undecided,
            if allowed(row) { "yes" } else { "**no**" },
            row.faults,
            row.seed,
        ));
    }
    for row in rows {
        for example in &row.verdict.examples {
            out.push_str(&format!(
                "\n- {} / {} / {}: {example}",
                mode_name(row.mode),
                row.fault.name(),
                row.model.name()
            ));
        }
    }
    out
}

fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Runs every (mode, fault) in turn with every model and asserts each row is allowed.
async fn check_all(plan: &[(BackendMode, Fault)], models: &[Model], seconds: u64, seed: u64) {
    let started = Instant::now();
    let mut rows = Vec::new();
    for (i, &(mode, fault)) in plan.iter().enumerate() {
        let Some(found) = run(
            mode,
            fault,
            models,
            seconds,
            seed.wrapping_add(i as u64),
            None,
        )
        .await
        else {
            return;
        };
        rows.extend(found);
    }
    let table = table(&rows);
    eprintln!("\n{table}\n\n({} s)", started.elapsed().as_secs());
    for row in &rows {
        assert!(
            row.verdict.operations > 0,
            "{}: no operation ran\n{table}",
            row.model.name()
        );
        assert_eq!(
            row.verdict.undecided,
            0,
            "{}: undecided\n{table}",
            row.model.name()
        );
        assert!(
            allowed(row),
            "anomalies where the README promises none:\n{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_run_of_every_model_under_faults_finds_no_anomaly() {
    let plan = [
        (BackendMode::Redis, Fault::Kill),
        (BackendMode::Redis, Fault::Partition),
        (BackendMode::Redis, Fault::InstanceKill),
        (BackendMode::Auto, Fault::Pause),
    ];
    check_all(&plan, &Model::ALL, 12, fresh_seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_each_injected_bug() {
    let cases = [
        (
            InjectedBug::CasSkipsCompare,
            Model::Cache,
            BackendMode::Redis,
            Fault::None,
        ),
        (
            InjectedBug::FenceIgnoresToken,
            Model::Lock,
            BackendMode::Redis,
            Fault::None,
        ),
        (
            InjectedBug::TopicDropsReset,
            Model::Topic,
            BackendMode::Auto,
            Fault::Pause,
        ),
    ];
    for (bug, model, mode, fault) in cases {
        let seed = fresh_seed();
        let Some(rows) = run(mode, fault, &[model], 10, seed, Some(bug)).await else {
            return;
        };
        let table = table(&rows);
        eprintln!("\n{bug:?}:\n{table}");
        assert!(
            rows[0].verdict.anomalies > 0,
            "{bug:?} went unnoticed:\n{table}"
        );
    }
}

/// The long run: `CHAOS_SECONDS` per (mode, fault) (default 60), `CHAOS_MODEL` / `CHAOS_FAULT`
/// / `CHAOS_MODE` to pick one, `CHAOS_SEED` to replay. Run through `scripts/chaos`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run with scripts/chaos"]
async fn chaos() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seconds = var("CHAOS_SECONDS").map_or(60, |s| s.parse().expect("CHAOS_SECONDS"));
    let seed = var("CHAOS_SEED").map_or_else(fresh_seed, |s| s.parse().expect("CHAOS_SEED"));
    let models: Vec<Model> = match var("CHAOS_MODEL") {
        Some(name) => vec![Model::parse(&name).expect("CHAOS_MODEL names a model")],
        None => Model::ALL.to_vec(),
    };
    let faults: Vec<Fault> = match var("CHAOS_FAULT") {
        Some(name) => vec![Fault::parse(&name).expect("CHAOS_FAULT names a fault")],
        None => Fault::ALL.to_vec(),
    };
    let modes = match var("CHAOS_MODE").as_deref() {
        Some("redis") => vec![BackendMode::Redis],
        Some("auto") => vec![BackendMode::Auto],
        None => vec![BackendMode::Redis, BackendMode::Auto],
        Some(other) => panic!("CHAOS_MODE is redis or auto, not {other}"),
    };
    let plan: Vec<_> = modes
        .iter()
        .flat_map(|&mode| faults.iter().map(move |&fault| (mode, fault)))
        .collect();
    check_all(&plan, &models, seconds, seed).await;
}
