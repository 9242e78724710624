//! SLA clocks on PostgreSQL at scale: N open clocks seeded with SQL, then (1) record events
//! applied per second through the same code the incident feed drives (observation stored, the
//! record's clocks recomputed, events written to the outbox), against a baseline of one plain
//! single-row UPDATE per event on the same table; (2) the time of a full breach sweep, when every
//! clock falls due at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

use itsm_delivery::domain::clock::Observation;
use itsm_delivery::entity::{agreement, calendar};
use itsm_delivery::service_level::rules::{RESOLUTION_TIME, RecordFacts, TargetDef};
use itsm_delivery::service_level::store::{Observed, ServiceLevel};
use itsm_runtime::CallContext;
use itsm_runtime::outbox::EventFeed;
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};

use super::Latency;

#[derive(Debug, Clone, clap::Args)]
pub struct ClockBenchArgs {
    /// Open clocks seeded.
    #[arg(long, default_value_t = 1_000_000)]
    pub clocks: usize,
    /// Record events applied (each recomputes its record's clock).
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Events applied at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Small sizes that finish in seconds (the test suite runs this).
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

impl ClockBenchArgs {
    pub fn smoke() -> Self {
        Self { clocks: 2_000, events: 200, concurrency: 4, smoke: true, json: None }
    }

    fn effective(&self) -> Self {
        if self.smoke { Self { json: self.json.clone(), ..Self::smoke() } } else { self.clone() }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ClockReport {
    pub clocks: usize,
    pub seed_seconds: f64,
    pub events: usize,
    pub concurrency: usize,
    pub events_per_second: f64,
    pub event_latency: Latency,
    pub baseline_updates_per_second: f64,
    pub baseline_latency: Latency,
    pub ratio: f64,
    pub sweep_seconds: f64,
    pub swept: usize,
    pub swept_per_second: f64,
}

impl ClockReport {
    pub fn markdown(&self) -> String {
        let row = |name: &str, rate: f64, l: &Latency| {
            format!("| {name} | {rate:.0}/s | {:.2} | {:.2} | {:.2} |\n", l.p50_ms, l.p99_ms, l.max_ms)
        };
        let mut out = format!(
            "SLA clocks on PostgreSQL: {} open clocks (seeded in {:.1} s), {} events at concurrency {}\n\n",
            self.clocks, self.seed_seconds, self.events, self.concurrency
        );
        out.push_str("| what | throughput | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
        out.push_str(&row(
            "record event applied (observe + recompute + outbox)",
            self.events_per_second,
            &self.event_latency,
        ));
        out.push_str(&row(
            "baseline: one single-row UPDATE",
            self.baseline_updates_per_second,
            &self.baseline_latency,
        ));
        out.push_str(&format!("\nratio events/baseline: {:.2}\n", self.ratio));
        out.push_str(&format!(
            "full breach sweep: {} clocks recomputed in {:.1} s ({:.0} clocks/s)\n",
            self.swept, self.sweep_seconds, self.swept_per_second
        ));
        out
    }
}

fn ctx() -> CallContext {
    CallContext { tenant: "bench".into(), principal: "bench".into(), roles: Vec::new() }
}

const SERVICE: &str = "configurationItems/01a213c4-59ab-7505-ab02-99b2e4021c8f";

pub async fn run(args: &ClockBenchArgs) -> Result<ClockReport, String> {
    let args = args.effective();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let database = TestDatabase::create(TestBackend::Postgres).await.map_err(|e| err(&e))?;
    let mut settings = settings_for(&database.url);
    settings.database.max_connections = (args.concurrency as u32 + 2).max(4);
    let db = itsm_runtime::db::connect(&settings.database).await.map_err(|e| err(&e))?;
    itsm_runtime::service::migrate::<itsm_delivery::migration::Migrator>(&db).await.map_err(|e| err(&e))?;
    let store = ServiceLevel { feed: EventFeed::new(db.clone()), db: db.clone() };
    let agreement = seed_definitions(&store).await?;

    eprintln!("seed: {} open clocks (direct SQL)", args.clocks);
    let started = Instant::now();
    seed_clocks(&db, &agreement.id, args.clocks).await?;
    let seed_seconds = started.elapsed().as_secs_f64();

    eprintln!("events: {} record events at concurrency {}", args.events, args.concurrency);
    let (events_per_second, event_latency) =
        apply_events(&store, args.clocks, args.events, args.concurrency).await?;
    eprintln!("baseline: {} single-row UPDATEs", args.events);
    let raw = Database::connect(database.url.as_str()).await.map_err(|e| err(&e))?;
    let (baseline_updates_per_second, baseline_latency) =
        baseline(&raw, args.clocks, args.events, args.concurrency).await?;

    eprintln!("sweep: every clock due now");
    raw.execute_unprepared("UPDATE sla_clocks SET next_alert_time = 1").await.map_err(|e| err(&e))?;
    let started = Instant::now();
    let mut swept = 0;
    loop {
        let n = store.sweep(Utc::now()).await.map_err(|e| err(&e))?.clocks;
        swept += n;
        if n == 0 {
            break;
        }
    }
    let sweep_seconds = started.elapsed().as_secs_f64();
    let report = ClockReport {
        clocks: args.clocks,
        seed_seconds,
        events: args.events,
        concurrency: args.concurrency,
        events_per_second,
        event_latency,
        baseline_updates_per_second,
        baseline_latency,
        ratio: events_per_second / baseline_updates_per_second.max(f64::MIN_POSITIVE),
        sweep_seconds,
        swept,
        swept_per_second: swept as f64 / sweep_seconds.max(f64::MIN_POSITIVE),
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| err(&e))?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

/// A 24×7 calendar and one agreement with a 4-hour resolution target (warnings at 50/75/90 %).
async fn seed_definitions(store: &ServiceLevel) -> Result<agreement::Model, String> {
    let whole_day = r#"[{"start_minute":0,"end_minute":1440}]"#;
    let cal = store
        .create_calendar(
            &ctx(),
            calendar::Model {
                id: String::new(),
                tenant_id: String::new(),
                display_name: "Always".into(),
                time_zone: "UTC".into(),
                weekly: format!("[{}]", [whole_day; 7].join(",")),
                holidays: "[]".into(),
                exceptions: "[]".into(),
                version: 0,
                create_time: 0,
                update_time: 0,
                creator: String::new(),
                updater: String::new(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let target = TargetDef {
        metric: RESOLUTION_TIME,
        condition: String::new(),
        duration_seconds: Some(4 * 3600),
        availability_basis_points: 0,
        warning_percents: vec![50, 75, 90],
        calendar: cal.id,
        priority_durations: Default::default(),
        start_states: vec![],
        pause_states: vec![],
        stop_states: vec![],
        cancel_states: vec![],
    };
    store
        .create_agreement(
            &ctx(),
            agreement::Model {
                id: String::new(),
                tenant_id: String::new(),
                display_name: "Bench".into(),
                agreement_type: 1,
                business_service: SERVICE.into(),
                counterparty: String::new(),
                targets: serde_json::to_string(&vec![target]).map_err(|e| e.to_string())?,
                active: true,
                version: 0,
                create_time: 0,
                update_time: 0,
                creator: String::new(),
                updater: String::new(),
            },
            "",
            "",
        )
        .await
        .map_err(|e| e.to_string())
}

/// Records INC0000001..INCn opened an hour ago, each with its NEW observation and running clock.
async fn seed_clocks(db: &DatabaseConnection, agreement: &str, n: usize) -> Result<(), String> {
    let opened = (Utc::now() - TimeDelta::hours(1)).timestamp_micros();
    let due = opened + 4 * 3_600_000_000;
    let sql = format!(
        "INSERT INTO record_observations (tenant_id, event_id, record, sequence, observed_time, state, priority) \
         SELECT 'bench', 'seed-' || g, 'incidents/INC' || lpad(g::text, 7, '0'), g, {opened}, 'NEW', 3 \
         FROM generate_series(1, {n}) g;
         INSERT INTO sla_clocks (id, tenant_id, agreement_id, target_index, metric, record, business_service, state, \
         priority, start_time, due_time, stop_time, breach_time, elapsed_ms, target_ms, warnings, warned, \
         breach_emitted, next_alert_time, stale, version, create_time, update_time, customer) \
         SELECT gen_random_uuid()::text, 'bench', '{agreement}', 0, 2, 'incidents/INC' || lpad(g::text, 7, '0'), \
         '{SERVICE}', 1, 3, {opened}, {due}, 0, 0, 3600000, 14400000, '[]', '[]', 0, {warn}, 0, 1, {opened}, \
         {opened}, '' FROM generate_series(1, {n}) g;
         ANALYZE record_observations; ANALYZE sla_clocks",
        warn = opened + 2 * 3_600_000_000,
    );
    db.execute_unprepared(&sql).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn record_of(i: usize) -> String {
    format!("incidents/INC{i:07}")
}

async fn apply_events(
    store: &ServiceLevel,
    clocks: usize,
    events: usize,
    concurrency: usize,
) -> Result<(f64, Latency), String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return Ok::<_, String>(latencies);
                }
                // Spread over the records; alternate hold and resume so each event changes a clock.
                let record = record_of(1 + (i * 7919) % clocks);
                let state = if (i / clocks).is_multiple_of(2) { "ON_HOLD" } else { "IN_PROGRESS" };
                let one = Instant::now();
                let txn = store.db.begin().await.map_err(|e| e.to_string())?;
                let observed = Observed {
                    record: &record,
                    business_service: SERVICE,
                    facts: RecordFacts { record_type: "incident".into(), priority: 3, ..Default::default() },
                    observation: Observation {
                        time: Utc::now(),
                        sequence: 1_000_000_000 + i as i64,
                        state: state.into(),
                        priority: 3,
                        event_id: format!("bench-{i}"),
                    },
                };
                store.observe(&txn, "bench", observed, "bench").await.map_err(|e| e.to_string())?;
                txn.commit().await.map_err(|e| e.to_string())?;
                latencies.push(one.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    Ok((rate, Latency::of(&mut all)))
}

async fn baseline(
    db: &DatabaseConnection,
    clocks: usize,
    events: usize,
    concurrency: usize,
) -> Result<(f64, Latency), String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (db, next) = (db.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<Duration> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return Ok::<_, String>(latencies);
                }
                let record = record_of(1 + (i * 7919) % clocks);
                let one = Instant::now();
                db.execute_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "UPDATE sla_clocks SET version = version + 1 WHERE tenant_id = 'bench' AND record = $1",
                    [record.into()],
                ))
                .await
                .map_err(|e| e.to_string())?;
                latencies.push(one.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    Ok((rate, Latency::of(&mut all)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clock_benchmark_smoke() {
        let report = run(&ClockBenchArgs::smoke()).await.unwrap();
        assert_eq!((report.clocks, report.events), (2_000, 200));
        assert!(report.events_per_second > 0.0 && report.baseline_updates_per_second > 0.0);
        assert_eq!(report.swept, 2_000, "every clock was due and recomputed: {report:?}");
        assert!(report.markdown().contains("full breach sweep"));
    }
}
