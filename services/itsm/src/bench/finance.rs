//! Financial management at scale: (1) one month's costs allocated through a 100,000-CI
//! dependency graph (exact decimal money, largest-remainder rounding at every hop, traceable
//! lines) against a baseline walk of the same graph pushing `f64` amounts with nothing else;
//! (2) FOCUS billing rows read, validated and matched per second against the csv crate reading the
//! same bytes, and stored as cost items on PostgreSQL against plain multi-row INSERTs of the
//! same number of rows.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, TransactionTrait};

use itsm_delivery::domain::allocation::{self, AllocationInput, AllocationMethod, CostSource, Edge};
use itsm_delivery::domain::focus::{self, CiMatcher};
use itsm_delivery::finance::{COST_ITEMS, cost_columns, money_of};
use itsm_proto::delivery::{CostItem, CostPool, CostType};
use itsm_runtime::CallContext;
use itsm_runtime::documents::Documents;
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};

#[derive(Debug, Clone, clap::Args)]
pub struct FinanceBenchArgs {
    /// CIs in the allocation graph (each serving one to three CIs above it; one cost item each).
    #[arg(long, default_value_t = 100_000)]
    pub cis: usize,
    /// FOCUS rows imported (the sample file's rows repeated).
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// The FOCUS sample file (from the shared fixtures).
    #[arg(long, default_value = "../shared/fixtures/focus/focus_sample_head300.csv")]
    pub focus_file: PathBuf,
    /// Small sizes that finish in seconds (the test suite runs this).
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl FinanceBenchArgs {
    pub fn smoke() -> Self {
        Self {
            cis: 2_000,
            rows: 2_000,
            focus_file: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures/focus/focus_sample_head300.csv"
            )
            .into(),
            smoke: true,
            json: None,
        }
    }

    fn effective(&self) -> Self {
        if self.smoke {
            Self { json: self.json.clone(), focus_file: self.focus_file.clone(), ..Self::smoke() }
        } else {
            self.clone()
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct FinanceReport {
    pub cis: usize,
    pub edges: usize,
    pub business_services: usize,
    pub allocation_seconds: f64,
    pub allocation_lines: usize,
    pub baseline_walk_seconds: f64,
    pub allocation_ratio: f64,
    pub conserved: bool,
    pub rows: usize,
    pub parse_rows_per_second: f64,
    pub csv_rows_per_second: f64,
    pub parse_ratio: f64,
    pub import_rows_per_second: f64,
    pub insert_rows_per_second: f64,
    pub import_ratio: f64,
}

impl FinanceReport {
    pub fn markdown(&self) -> String {
        format!(
            "Finance: allocation over {} CIs / {} dependencies / {} business services; FOCUS import of {} rows\n\n\
             | what | figure | baseline | ratio |\n|---|---|---|---|\n\
             | allocate one month ({} cost items, {} lines, exact to the cent: {}) | {:.3} s | walk with f64, no rounding or lines: {:.3} s | {:.1}× the baseline's time |\n\
             | FOCUS rows read, validated, matched | {:.0} rows/s | csv crate records only: {:.0} rows/s | {:.2} |\n\
             | FOCUS rows stored as cost items (PostgreSQL, one transaction) | {:.0} rows/s | plain multi-row INSERT: {:.0} rows/s | {:.2} |\n",
            self.cis,
            self.edges,
            self.business_services,
            self.rows,
            self.cis,
            self.allocation_lines,
            if self.conserved { "yes" } else { "NO" },
            self.allocation_seconds,
            self.baseline_walk_seconds,
            self.allocation_ratio,
            self.parse_rows_per_second,
            self.csv_rows_per_second,
            self.parse_ratio,
            self.import_rows_per_second,
            self.insert_rows_per_second,
            self.import_ratio,
        )
    }
}

/// A deterministic pseudo-random sequence (no dependency, same graph every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

/// Layers: 1 % business services, 9 % applications, 40 % platforms, 50 % infrastructure; each CI
/// below the services serves one to three CIs of the layer above (shared CIs, diamonds).
fn graph(cis: usize) -> AllocationInput {
    let mut rng = Lcg(42);
    let bounds = [0, cis / 100, cis / 10, cis / 2, cis];
    let name = |i: usize| format!("ci-{i}");
    let mut edges = Vec::new();
    for layer in 0..3 {
        let (consumers, providers) = (bounds[layer]..bounds[layer + 1], bounds[layer + 1]..bounds[layer + 2]);
        // Every provider serves one to three consumers of the layer above (shared CIs).
        for provider in providers {
            let mut chosen = HashSet::new();
            for _ in 0..1 + rng.next(3) {
                chosen.insert(consumers.start + rng.next(consumers.len()));
            }
            for consumer in chosen {
                edges.push(Edge {
                    consumer: name(consumer),
                    provider: name(provider),
                    weight: Some(Decimal::from(1 + rng.next(5))),
                    usage: None,
                });
            }
        }
    }
    let sources = (0..cis)
        .map(|i| CostSource {
            id: format!("costItems/{i}"),
            configuration_item: name(i),
            amount: Decimal::new(10_000 + rng.next(1_000_000) as i64, 2),
        })
        .collect();
    AllocationInput {
        edges,
        business_services: (0..bounds[1]).map(name).collect(),
        sources,
        method: AllocationMethod::Weight,
        minor_units: 2,
    }
}

/// The baseline: the same graph walked consumer-ward from every source with `f64` shares.
fn baseline_walk(input: &AllocationInput) -> f64 {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for e in &input.edges {
        let n = index.len();
        index.entry(e.consumer.as_str()).or_insert(n);
        let n = index.len();
        index.entry(e.provider.as_str()).or_insert(n);
    }
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); index.len()];
    for e in &input.edges {
        consumers[index[e.provider.as_str()]].push(index[e.consumer.as_str()]);
    }
    let mut reached = 0.0;
    for source in &input.sources {
        let Some(&start) = index.get(source.configuration_item.as_str()) else { continue };
        let mut stack = vec![(start, 1.0_f64)];
        while let Some((node, share)) = stack.pop() {
            let next = &consumers[node];
            if next.is_empty() {
                reached += share;
                continue;
            }
            let part = share / next.len() as f64;
            stack.extend(next.iter().map(|c| (*c, part)));
        }
    }
    reached
}

fn ctx() -> CallContext {
    CallContext { tenant: "bench".into(), principal: "bench".into(), roles: Vec::new() }
}

pub async fn run(args: &FinanceBenchArgs) -> Result<FinanceReport, String> {
    let args = args.effective();
    let err = |e: &dyn std::fmt::Display| e.to_string();

    eprintln!("allocation: generating {} CIs", args.cis);
    let input = graph(args.cis);
    let started = Instant::now();
    let result = allocation::allocate(&input).map_err(|e| err(&e))?;
    let allocation_seconds = started.elapsed().as_secs_f64();
    let conserved = result.total_in == result.total_allocated + result.total_idle;
    let started = Instant::now();
    let walked = baseline_walk(&input);
    let baseline_walk_seconds = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "allocation: {allocation_seconds:.3} s, baseline walk {baseline_walk_seconds:.3} s ({walked:.0} shares)"
    );

    eprintln!("FOCUS: {} rows from {}", args.rows, args.focus_file.display());
    let sample = std::fs::read_to_string(&args.focus_file).map_err(|e| {
        format!("{}: {e} (run from the repository root, or pass --focus-file)", args.focus_file.display())
    })?;
    let mut lines = sample.lines();
    let header = lines.next().ok_or("the FOCUS file is empty")?;
    let body: Vec<&str> = lines.collect();
    let mut csv_text = String::with_capacity(sample.len() * (args.rows / body.len().max(1) + 1));
    csv_text.push_str(header);
    csv_text.push('\n');
    for i in 0..args.rows {
        csv_text.push_str(body[i % body.len()]);
        csv_text.push('\n');
    }
    let started = Instant::now();
    let file = focus::parse(csv_text.as_bytes(), None).map_err(|e| err(&e))?;
    let matcher = CiMatcher::new(
        file.rows
            .iter()
            .filter_map(|r| r.resource_id.clone())
            .take(50)
            .map(|id| (id.to_lowercase(), "ci".to_string())),
        ["itsm-ci".to_string()],
        Vec::<(String, String)>::new(),
    );
    let matched = file.rows.iter().filter(|r| matcher.match_row(r).is_some()).count();
    let parse_seconds = started.elapsed().as_secs_f64();
    if file.rows.len() + file.rejected.len() != args.rows {
        return Err(format!("{} rows read of {}", file.rows.len() + file.rejected.len(), args.rows));
    }
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let mut records = 0usize;
    for record in reader.records() {
        record.map_err(|e| err(&e))?;
        records += 1;
    }
    let csv_seconds = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!("FOCUS: {matched} rows matched; csv read {records} records");

    let database = TestDatabase::create(TestBackend::Postgres).await.map_err(|e| err(&e))?;
    let settings = settings_for(&database.url);
    let db = itsm_runtime::db::connect(&settings.database).await.map_err(|e| err(&e))?;
    itsm_runtime::service::migrate::<itsm_delivery::migration::Migrator>(&db).await.map_err(|e| err(&e))?;
    let started = Instant::now();
    let items: Vec<_> = file
        .rows
        .iter()
        .map(|row| {
            let item = CostItem {
                display_name: row.service_name.clone(),
                amount: Some(money_of(row.billed_cost, &row.currency)),
                period: row.billing_period_start.format("%Y-%m").to_string(),
                cost_type: CostType::Opex as i32,
                pool: CostPool::Cloud as i32,
                source: format!("billingImports/bench:{}", row.line),
                resource_id: row.resource_id.clone().unwrap_or_default(),
                ..Default::default()
            };
            (cost_columns(&item), item)
        })
        .collect();
    let txn = db.begin().await.map_err(|e| err(&e))?;
    Documents::insert_many(&txn, &COST_ITEMS, &ctx(), items).await.map_err(|e| err(&e))?;
    txn.commit().await.map_err(|e| err(&e))?;
    let store_seconds = started.elapsed().as_secs_f64();
    let import_seconds = parse_seconds + store_seconds;

    db.execute_unprepared("CREATE TABLE bench_rows (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .await
        .map_err(|e| err(&e))?;
    let started = Instant::now();
    let txn = db.begin().await.map_err(|e| err(&e))?;
    for (n, chunk) in body.iter().cycle().take(args.rows).collect::<Vec<_>>().chunks(500).enumerate() {
        let mut sql = String::from("INSERT INTO bench_rows (id, body) VALUES ");
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for (i, line) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            values.push(format!("{n}-{i}").into());
            values.push((**line).to_string().into());
        }
        txn.execute_raw(itsm_runtime::db::stmt(txn.get_database_backend(), &sql, values))
            .await
            .map_err(|e| err(&e))?;
    }
    txn.commit().await.map_err(|e| err(&e))?;
    let insert_seconds = started.elapsed().as_secs_f64().max(1e-9);

    let rows = args.rows as f64;
    let report = FinanceReport {
        cis: args.cis,
        edges: input.edges.len(),
        business_services: input.business_services.len(),
        allocation_seconds,
        allocation_lines: result.lines.len(),
        baseline_walk_seconds,
        allocation_ratio: allocation_seconds / baseline_walk_seconds,
        conserved,
        rows: args.rows,
        parse_rows_per_second: rows / parse_seconds,
        csv_rows_per_second: rows / csv_seconds,
        parse_ratio: csv_seconds / parse_seconds,
        import_rows_per_second: rows / import_seconds,
        insert_rows_per_second: rows / insert_seconds,
        import_ratio: insert_seconds / import_seconds,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report).map_err(|e| err(&e))?)
            .map_err(|e| err(&e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finance_benchmark_smoke() {
        let report = run(&FinanceBenchArgs::smoke()).await.unwrap();
        assert!(report.conserved, "{report:?}");
        assert_eq!((report.cis, report.rows), (2_000, 2_000));
        assert!(report.allocation_lines > 0 && report.edges > 2_000);
        assert!(report.parse_rows_per_second > 0.0 && report.insert_rows_per_second > 0.0);
        assert!(report.markdown().contains("allocate one month"));
    }
}
