//! CMDB at enterprise size, on PostgreSQL: streaming import rate, downstream impact (depth 5)
//! from a high-fan-out CI, and keyset paging deep into a large listing — each next to a baseline
//! measured in the same run on the same database.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Value};
use tonic::transport::Channel;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    AnalyzeImpactRequest, ConfigurationItem, CreateRelationshipRequest, GetConfigurationItemRequest,
    ImportConfigurationItemsRequest, ImportOptions, ImportRow, ListConfigurationItemsRequest, Relationship,
    RelationshipType, import_configuration_items_request::Message, import_row,
};
use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

use super::Latency;

#[derive(Debug, Clone, clap::Args)]
pub struct CmdbBenchArgs {
    /// CIs in the seeded graph.
    #[arg(long, default_value_t = 1_000_000)]
    pub cis: usize,
    /// CIs streamed through ImportConfigurationItems to measure the import rate.
    #[arg(long, default_value_t = 20_000)]
    pub import_rows: usize,
    /// Impact analyses (and baseline calls) timed after warm-up.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Page size for the paging measurement.
    #[arg(long, default_value_t = 100)]
    pub page_size: i32,
    /// The deep page compared with page 1.
    #[arg(long, default_value_t = 10_000)]
    pub deep_page: usize,
    /// Small sizes that finish in seconds (CI runs this so the benchmark never rots).
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

impl CmdbBenchArgs {
    pub fn smoke() -> Self {
        Self {
            cis: 3_000,
            import_rows: 300,
            iterations: 20,
            page_size: 10,
            deep_page: 50,
            smoke: true,
            json: None,
        }
    }

    fn effective(&self) -> Self {
        if self.smoke { Self { json: self.json.clone(), ..Self::smoke() } } else { self.clone() }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct CmdbReport {
    pub cis: usize,
    pub relationships: u64,
    pub seed_seconds: f64,
    pub import_rows: usize,
    pub import_rows_per_second: f64,
    pub baseline_insert_rows_per_second: f64,
    pub import_ratio: f64,
    pub impact_root_fan_out: u64,
    pub impact_items: usize,
    pub impact: Latency,
    /// The tenant's first analysis, which loads its graph into memory.
    pub impact_first_ms: f64,
    /// An analysis right after a relationship was created (the graph catches up first).
    pub impact_after_write: Latency,
    pub baseline_get: Latency,
    pub impact_p99_ratio: f64,
    pub page_first: Latency,
    pub page_deep: Latency,
    pub deep_page: usize,
    pub page_size: i32,
    pub paging_ratio: f64,
}

impl CmdbReport {
    pub fn markdown(&self) -> String {
        let met = |ok: bool| if ok { "met" } else { "missed" };
        format!(
            "| measure | figure | baseline (same run) | ratio | target |\n|---|---|---|---|---|\n\
             | streaming import | {:.0} CIs/s ({} rows) | {:.0} rows/s plain INSERT, one per transaction | {:.2} | ≥ 20,000 CIs/s: {} |\n\
             | impact downstream depth 5 from a CI with {} direct dependants ({} CIs reached) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | GetConfigurationItem p50 {:.2} ms, p99 {:.2} ms | p99 ×{:.1} | p99 < 100 ms: {} |\n\
             | first analysis (loads the tenant's graph into memory) | {:.0} ms | | | |\n\
             | impact as above, each right after a relationship is created | p50 {:.1} ms, p99 {:.1} ms | | | |\n\
             | page {} vs page 1 (page size {}) | p50 {:.2} ms, p99 {:.2} ms | page 1 p50 {:.2} ms, p99 {:.2} ms | {:.2} | ≤ 1.5: {} |\n\
             | seeded graph | {} CIs, {} relationships in {:.0} s | | | |\n",
            self.import_rows_per_second,
            self.import_rows,
            self.baseline_insert_rows_per_second,
            self.import_ratio,
            met(self.import_rows_per_second >= 20_000.0),
            self.impact_root_fan_out,
            self.impact_items,
            self.impact.p50_ms,
            self.impact.p99_ms,
            self.impact.max_ms,
            self.baseline_get.p50_ms,
            self.baseline_get.p99_ms,
            self.impact_p99_ratio,
            met(self.impact.p99_ms < 100.0),
            self.impact_first_ms,
            self.impact_after_write.p50_ms,
            self.impact_after_write.p99_ms,
            self.deep_page,
            self.page_size,
            self.page_deep.p50_ms,
            self.page_deep.p99_ms,
            self.page_first.p50_ms,
            self.page_first.p99_ms,
            self.paging_ratio,
            met(self.paging_ratio <= 1.5),
            self.cis,
            self.relationships,
            self.seed_seconds,
        )
    }
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// The tenant every seeded and created record belongs to (the console benchmark signs in to it).
pub(crate) const TENANT: &str = "bench";

fn ctx<T>(message: T) -> tonic::Request<T> {
    with_context(message, TENANT, "bench")
}

pub async fn run(args: &CmdbBenchArgs) -> Result<CmdbReport, String> {
    let args = args.effective();
    let db = TestDatabase::create(TestBackend::Postgres).await.map_err(|e| e.to_string())?;
    let mut settings = settings_for(&db.url);
    settings.database.max_connections = 16;
    let server =
        RunningServer::start(move |listener, shutdown| itsm_cmdb::serve(settings, listener, shutdown.wait()))
            .await
            .map_err(|e| e.to_string())?;
    let channel = internal_channel(&server.url()).await.map_err(|e| e.to_string())?;
    let mut client = CmdbServiceClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
    let raw = Database::connect(db.url.as_str()).await.map_err(|e| e.to_string())?;

    eprintln!("import: {} rows through ImportConfigurationItems", args.import_rows);
    let (import_rate, baseline_rate) = measure_import(&mut client, &raw, args.import_rows).await?;

    eprintln!("seed: {} CIs and their relationships (direct SQL)", args.cis);
    let started = Instant::now();
    let ids = seed_cis(&raw, args.cis).await?;
    let (relationships, core_fan_out) = seed_relationships(&raw, &ids).await?;
    raw.execute_unprepared("ANALYZE configuration_items; ANALYZE ci_relationships")
        .await
        .map_err(|e| e.to_string())?;
    let seed_seconds = started.elapsed().as_secs_f64();

    eprintln!("impact: {} analyses from the core CI", args.iterations);
    let core = format!("configurationItems/{}", ids[0]);
    let measured = measure_impact(&mut client, &core, &ids, args.iterations).await?;

    eprintln!("paging: walking to page {}", args.deep_page);
    let (page_first, page_deep) =
        measure_paging(&mut client, args.page_size, args.deep_page, args.iterations.min(50)).await?;

    drop(client);
    let _ = server.stop().await;
    let report = CmdbReport {
        cis: args.cis,
        relationships,
        seed_seconds,
        import_rows: args.import_rows,
        import_rows_per_second: import_rate,
        baseline_insert_rows_per_second: baseline_rate,
        import_ratio: import_rate / baseline_rate.max(f64::MIN_POSITIVE),
        impact_root_fan_out: core_fan_out,
        impact_items: measured.reached,
        impact_p99_ratio: measured.impact.p99_ms / measured.baseline_get.p99_ms.max(f64::MIN_POSITIVE),
        impact: measured.impact,
        impact_first_ms: measured.first.as_secs_f64() * 1000.0,
        impact_after_write: measured.after_write,
        baseline_get: measured.baseline_get,
        paging_ratio: page_deep.p50_ms / page_first.p50_ms.max(f64::MIN_POSITIVE),
        page_first,
        page_deep,
        deep_page: args.deep_page,
        page_size: args.page_size,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

async fn measure_import(
    client: &mut CmdbServiceClient<Channel>,
    raw: &DatabaseConnection,
    rows: usize,
) -> Result<(f64, f64), String> {
    let row = |i: usize| ImportRow {
        row_id: format!("row-{i}"),
        kind: Some(import_row::Kind::ConfigurationItem(ConfigurationItem {
            display_name: format!("import-{i:08}"),
            ci_class: "server".into(),
            environment: "production".into(),
            labels: [("source".to_string(), "bench".to_string())].into(),
            ..Default::default()
        })),
    };
    // Not timed: a first import opens the pool's connections and prepares the statements (three
    // batches in flight), so the figure is the import's steady rate.
    let warm_up = rows.min(3 * itsm_cmdb::api::IMPORT_BATCH);
    let warmed = import_range(client, rows..rows + warm_up, &row).await?;
    if warmed != warm_up {
        return Err(format!("warm-up import created {warmed} of {warm_up} rows"));
    }
    let started = Instant::now();
    let created = import_range(client, 0..rows, &row).await?;
    let import_rate = rows as f64 / started.elapsed().as_secs_f64();
    if created != rows {
        return Err(format!("import created {created} of {rows} rows"));
    }

    // Baseline: the same number of single-row INSERTs, each its own transaction, no checks.
    raw.execute_unprepared(
        "CREATE TABLE bench_raw (id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL)",
    )
    .await
    .map_err(|e| e.to_string())?;
    let backend = raw.get_database_backend();
    let started = Instant::now();
    for i in 0..rows {
        raw.execute_raw(stmt(
            backend,
            "INSERT INTO bench_raw (id, name, labels) VALUES ($1, $2, $3)",
            [
                uuid::Uuid::now_v7().to_string().into(),
                format!("raw-{i}").into(),
                "{\"source\":\"bench\"}".into(),
            ],
        ))
        .await
        .map_err(|e| e.to_string())?;
    }
    let baseline_rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((import_rate, baseline_rate))
}

/// Streams rows `range` through ImportConfigurationItems, as many per call as the API takes (a
/// bulk loader's calls, not a pause every few thousand rows while the service finishes a call);
/// returns how many were created.
async fn import_range(
    client: &mut CmdbServiceClient<Channel>,
    range: std::ops::Range<usize>,
    row: &dyn Fn(usize) -> ImportRow,
) -> Result<usize, String> {
    let mut created = 0;
    let mut next = range.start;
    while next < range.end {
        let end = (next + itsm_cmdb::api::MAX_IMPORT_ROWS).min(range.end);
        let mut messages = vec![ImportConfigurationItemsRequest {
            message: Some(Message::Options(ImportOptions {
                dry_run: false,
                source_reference: "bench".into(),
            })),
        }];
        messages.extend(
            (next..end).map(|i| ImportConfigurationItemsRequest { message: Some(Message::Row(row(i))) }),
        );
        let report = client
            .import_configuration_items(ctx(tokio_stream::iter(messages)))
            .await
            .map_err(|s| format!("import: {s}"))?
            .into_inner();
        created += report.created as usize;
        next = end;
    }
    Ok(created)
}

/// Layers of the seeded estate, as fractions of all CIs: shared infrastructure, hosts, virtual
/// machines, applications and business services.
fn layers(n: usize) -> [(usize, usize, &'static str); 5] {
    let cut = |f: f64| ((n as f64 * f).round() as usize).clamp(1, n);
    let (a, b, c, d) = (cut(0.01), cut(0.11), cut(0.51), cut(0.91));
    [
        (0, a, "network_device"),
        (a, b, "server"),
        (b, c, "virtual_machine"),
        (c, d, "application"),
        (d, n, "business_service"),
    ]
}

/// Inserts `n` CIs of [`TENANT`] with direct SQL, in the classes of `layers`, named
/// `{class}-{i:08}`; returns their ids in order (index `i` is CI `i`).
pub(crate) async fn seed_cis(db: &DatabaseConnection, n: usize) -> Result<Vec<String>, String> {
    let backend = db.get_database_backend();
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let now = now_micros();
    for (start, end, class) in layers(n) {
        let mut at = start;
        while at < end {
            let stop = (at + 1_000).min(end);
            let mut sql = String::from(
                "INSERT INTO configuration_items (id, tenant_id, display_name, ci_class, description, lifecycle_status, \
                 environment, criticality, owner, support_group, labels, attributes, natural_key, version, create_time, \
                 update_time, creator, updater) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity((stop - at) * 6);
            for (k, i) in (at..stop).enumerate() {
                let p = k * 6;
                if k > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, '', 3, 'production', 2, '', '', '{{}}', '{{}}', ${}, 1, ${}, ${}, 'seed', 'seed')",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 6
                ));
                let name = format!("{class}-{i:08}");
                values.extend([
                    ids[i].clone().into(),
                    TENANT.into(),
                    name.clone().into(),
                    class.into(),
                    name.into(),
                    (now + i as i64).into(),
                ]);
            }
            db.execute_raw(stmt(backend, &sql, values)).await.map_err(|e| format!("seed CIs: {e}"))?;
            at = stop;
        }
    }
    Ok(ids)
}

/// About three relationships per CI; CI 0 (the core switch) is a dependency of every 100th
/// host on top of the random ones: the high-fan-out CI the impact analysis starts from.
async fn seed_relationships(db: &DatabaseConnection, ids: &[String]) -> Result<(u64, u64), String> {
    let n = ids.len();
    let [infra, hosts, vms, apps, services] = layers(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pick = |rng: &mut Rng, (start, end, _): (usize, usize, &str)| start + rng.below(end - start);
    let mut edges: Vec<(usize, usize, i32)> = Vec::with_capacity(n * 3);
    let mut core_fan_out = 0;
    for h in hosts.0..hosts.1 {
        edges.push((h, pick(&mut rng, infra), 1));
        edges.push((h, pick(&mut rng, infra), 1));
        if (h - hosts.0) % 100 == 0 {
            edges.push((h, 0, 1));
            core_fan_out += 1;
        }
    }
    for v in vms.0..vms.1 {
        edges.push((v, pick(&mut rng, hosts), 2));
        edges.push((v, pick(&mut rng, infra), 1));
        edges.push((v, pick(&mut rng, infra), 1));
    }
    for a in apps.0..apps.1 {
        edges.push((a, pick(&mut rng, vms), 2));
        edges.push((a, pick(&mut rng, vms), 2));
        if a > apps.0 {
            edges.push((a, apps.0 + rng.below(a - apps.0), 1));
        }
    }
    for s in services.0..services.1 {
        for _ in 0..5 {
            edges.push((s, pick(&mut rng, apps), 1));
        }
    }
    edges.sort_unstable();
    edges.dedup_by(|x, y| x.0 == y.0 && x.1 == y.1 && x.2 == y.2);
    edges.retain(|(s, t, _)| s != t);

    let backend = db.get_database_backend();
    let now = now_micros();
    for chunk in edges.chunks(1_000) {
        let mut sql = String::from(
            "INSERT INTO ci_relationships (id, tenant_id, source_id, target_id, rel_type, redundant, properties, version, \
             create_time, update_time, creator, updater) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (k, (s, t, kind)) in chunk.iter().enumerate() {
            let p = k * 4;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, '{TENANT}', ${}, ${}, ${}, FALSE, '{{}}', 1, {now}, {now}, 'seed', 'seed')",
                p + 1,
                p + 2,
                p + 3,
                p + 4
            ));
            values.extend([
                uuid::Uuid::now_v7().to_string().into(),
                ids[*s].clone().into(),
                ids[*t].clone().into(),
                (*kind).into(),
            ]);
        }
        db.execute_raw(stmt(backend, &sql, values)).await.map_err(|e| format!("seed relationships: {e}"))?;
    }
    Ok((edges.len() as u64, core_fan_out))
}

struct ImpactFigures {
    first: Duration,
    reached: usize,
    impact: Latency,
    after_write: Latency,
    baseline_get: Latency,
}

async fn measure_impact(
    client: &mut CmdbServiceClient<Channel>,
    core: &str,
    ids: &[String],
    iterations: usize,
) -> Result<ImpactFigures, String> {
    let request = || {
        ctx(AnalyzeImpactRequest {
            configuration_item: core.to_string(),
            direction: 1,
            max_depth: 5,
            relationship_types: vec![],
            also_failed: vec![],
            max_items: 0,
        })
    };
    let started = Instant::now();
    let response = client.analyze_impact(request()).await.map_err(|s| format!("impact: {s}"))?.into_inner();
    let first = started.elapsed();
    let reached = response.total_reached as usize;
    for _ in 0..3 {
        client.analyze_impact(request()).await.map_err(|s| format!("impact: {s}"))?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        client.analyze_impact(request()).await.map_err(|s| format!("impact: {s}"))?;
        samples.push(started.elapsed());
    }
    // Writes between analyses: each analysis first applies the new relationship's event.
    let mut rng = Rng(0x5eed_cafe);
    let mut after_write = Vec::new();
    for _ in 0..iterations.min(50) {
        let (source, target) = (&ids[1 + rng.below(ids.len() - 1)], &ids[1 + rng.below(ids.len() - 1)]);
        if source == target {
            continue;
        }
        client
            .create_relationship(ctx(CreateRelationshipRequest {
                relationship: Some(Relationship {
                    source: format!("configurationItems/{source}"),
                    target: format!("configurationItems/{target}"),
                    r#type: RelationshipType::ConnectsTo as i32,
                    ..Default::default()
                }),
                request_id: uuid::Uuid::new_v4().to_string(),
            }))
            .await
            .map_err(|s| format!("create relationship: {s}"))?;
        let started = Instant::now();
        client.analyze_impact(request()).await.map_err(|s| format!("impact: {s}"))?;
        after_write.push(started.elapsed());
    }
    let mut baseline = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        client
            .get_configuration_item(ctx(GetConfigurationItemRequest {
                name: core.to_string(),
                read_time: None,
            }))
            .await
            .map_err(|s| format!("get: {s}"))?;
        baseline.push(started.elapsed());
    }
    Ok(ImpactFigures {
        first,
        reached,
        impact: Latency::of(&mut samples),
        after_write: Latency::of(&mut after_write),
        baseline_get: Latency::of(&mut baseline),
    })
}

async fn measure_paging(
    client: &mut CmdbServiceClient<Channel>,
    page_size: i32,
    deep_page: usize,
    repeats: usize,
) -> Result<(Latency, Latency), String> {
    let list = |token: &str| {
        ctx(ListConfigurationItemsRequest { page_size, page_token: token.to_string(), ..Default::default() })
    };
    let mut token = String::new();
    for page in 1..deep_page {
        token = client
            .list_configuration_items(list(&token))
            .await
            .map_err(|s| format!("list: {s}"))?
            .into_inner()
            .next_page_token;
        if token.is_empty() {
            return Err(format!(
                "the listing ended at page {page}; seed more CIs or pick a smaller --deep-page"
            ));
        }
    }
    let mut time = async |token: &str| -> Result<Latency, String> {
        let mut samples: Vec<Duration> = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let started = Instant::now();
            client.list_configuration_items(list(token)).await.map_err(|s| format!("list: {s}"))?;
            samples.push(started.elapsed());
        }
        Ok(Latency::of(&mut samples))
    };
    let first = time("").await?;
    let deep = time(&token).await?;
    Ok((first, deep))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cmdb_benchmark_smoke() {
        let report = run(&CmdbBenchArgs::smoke()).await.unwrap();
        assert_eq!(report.cis, 3_000);
        assert!(report.relationships > 6_000, "{report:?}");
        assert!(report.impact_items > 0, "{report:?}");
        assert!(report.import_rows_per_second > 0.0 && report.baseline_insert_rows_per_second > 0.0);
        assert_eq!(report.page_deep.count, 20);
        assert!(report.markdown().contains("| streaming import |"));
    }
}
