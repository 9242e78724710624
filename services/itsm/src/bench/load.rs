//! `itsm bench load`: the platform's scenarios under load on PostgreSQL, each next to the
//! baselines measured in the same run (a raw tonic echo service, and a raw tonic service doing
//! one PostgreSQL insert per call), with the targets checked.

use std::path::PathBuf;
use std::time::Duration;

use itsm_e2e::Suite;
use itsm_e2e::load::baselines::BaselineServer;
use itsm_e2e::load::scenarios::Fixture;
use itsm_e2e::load::{LoadOptions, LoadResult, propagation};
use itsm_runtime::testing::TestBackend;

/// The baseline every scenario is compared with.
const INSERT_BASELINE: &str = "baseline: tonic + 1 PostgreSQL insert";

#[derive(clap::Args, Clone, Debug)]
pub struct LoadBenchArgs {
    /// Measured calls per scenario (each also stops at --duration-secs).
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Longest a scenario's measured phase may run.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Calls in flight at once (closed loop).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Calls made before measuring.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Offered rate of the event propagation scenario, state changes per second.
    #[arg(long, default_value_t = 1_000.0)]
    pub event_rate: f64,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// A few calls per scenario (what CI runs).
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct Target {
    pub target: String,
    pub reached: String,
    pub met: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct LoadReport {
    pub results: Vec<LoadResult>,
    pub targets: Vec<Target>,
}

impl LoadReport {
    pub fn markdown(&self) -> String {
        // Every row is compared with the "tonic + 1 PostgreSQL insert" baseline of this run.
        let baseline = self.results.iter().find(|r| r.scenario.starts_with(INSERT_BASELINE));
        let mut out = String::from(LoadResult::MARKDOWN_HEADER);
        out.push('\n');
        for result in &self.results {
            out.push_str(&result.markdown_row(baseline));
            out.push('\n');
        }
        out.push_str("\nRatios are to the tonic + 1 PostgreSQL insert baseline of the same run.\n");
        out.push_str("\n| target | reached | met |\n|---|---|---|\n");
        for t in &self.targets {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                t.target,
                t.reached,
                if t.met { "yes" } else { "no" }
            ));
        }
        let failed: Vec<&LoadResult> = self.results.iter().filter(|r| r.errors > 0).collect();
        for r in failed {
            out.push_str(&format!("\n{}: {} errors, first: {}", r.scenario, r.errors, r.first_error));
        }
        out
    }
}

fn options(args: &LoadBenchArgs) -> LoadOptions {
    if args.smoke {
        return LoadOptions::smoke();
    }
    LoadOptions {
        requests: args.requests.max(1),
        duration: Duration::from_secs(args.duration_secs.max(1)),
        concurrency: args.concurrency.max(1),
        connections: args.connections.max(1),
        warmup: args.warmup,
        rate: None,
        progress: !args.quiet,
    }
}

pub async fn run(args: &LoadBenchArgs) -> Result<LoadReport, String> {
    let options = options(args);
    let mut results = Vec::new();

    let echo = BaselineServer::echo().await?;
    results.push(echo.measure("baseline: tonic echo", &options).await?);
    drop(echo);
    let insert = BaselineServer::insert().await?;
    results.push(insert.measure(INSERT_BASELINE, &options).await?);
    drop(insert);

    let suite = Suite::start_tuned(
        TestBackend::Postgres,
        |_, settings| settings.delivery.sla_sweep_interval_ms = 1_000,
        |gateway| gateway.gateway.rate_limit_per_second = 0,
    )
    .await
    .map_err(|e| format!("start the suite: {e}"))?;
    let fixture = Fixture::new(&suite, options.connections).await?;
    results.push(fixture.create_incident_through_gateway(&options).await?);
    results.push(fixture.create_incident_directly(&options).await?);
    // The gateway's overhead "at moderate load": one caller, one connection.
    let moderate = LoadOptions { concurrency: 1, connections: 1, ..options.clone() };
    let mut via_gateway = fixture.create_incident_through_gateway(&moderate).await?;
    via_gateway.scenario = "1. CreateIncident via gateway, 1 caller".into();
    let mut direct = fixture.create_incident_directly(&moderate).await?;
    direct.scenario = "2. CreateIncident direct, 1 caller".into();
    results.push(fixture.incident_overview(&options).await?);
    let paced =
        LoadOptions { rate: Some(if args.smoke { 50.0 } else { args.event_rate }), ..options.clone() };
    results.push(propagation::event_propagation(&suite, &paced).await?);
    let (round_trip, resolved_to_ticket) = propagation::ticket_round_trip(&suite, &options).await?;
    results.push(round_trip);
    results.push(resolved_to_ticket);

    let targets = targets(&results, &via_gateway, &direct, args.smoke);
    results.insert(4, direct);
    results.insert(4, via_gateway);
    let report = LoadReport { results, targets };
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report)
}

fn find<'a>(results: &'a [LoadResult], prefix: &str) -> Option<&'a LoadResult> {
    results.iter().find(|r| r.scenario.starts_with(prefix))
}

/// The targets, each with the figure reached.
fn targets(
    results: &[LoadResult],
    via_gateway: &LoadResult,
    direct: &LoadResult,
    smoke: bool,
) -> Vec<Target> {
    let mut targets = Vec::new();
    if let (Some(s1), Some(insert)) = (find(results, "1. "), find(results, INSERT_BASELINE)) {
        let ratio = if insert.throughput > 0.0 { s1.throughput / insert.throughput } else { 0.0 };
        targets.push(Target {
            target: "scenario 1 >= 50 % of the tonic + 1 insert baseline's throughput".into(),
            reached: format!(
                "{:.0} %  ({:.1} vs {:.1} calls/s)",
                ratio * 100.0,
                s1.throughput,
                insert.throughput
            ),
            met: ratio >= 0.5,
        });
    }
    let p50 = via_gateway.p50_ms - direct.p50_ms;
    let p99 = via_gateway.p99_ms - direct.p99_ms;
    targets.push(Target {
        target: "gateway adds < 1 ms at p50 and < 3 ms at p99 (1 caller)".into(),
        reached: format!("+{p50:.2} ms p50, +{p99:.2} ms p99"),
        met: p50 < 1.0 && p99 < 3.0,
    });
    if let Some(events) = find(results, "event propagation") {
        let rate = events.rate.unwrap_or_default();
        targets.push(Target {
            target: "event propagation p99 < 100 ms at 1,000 events/s".into(),
            reached: format!(
                "p99 {:.1} ms at {:.0}/s offered, {:.0}/s reached, {} not seen",
                events.p99_ms, rate, events.throughput, events.errors
            ),
            met: !smoke && events.p99_ms < 100.0 && rate >= 1_000.0 && events.errors == 0,
        });
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_benchmark_smoke() {
        let args = LoadBenchArgs {
            requests: 0,
            duration_secs: 0,
            concurrency: 0,
            connections: 0,
            warmup: 0,
            event_rate: 0.0,
            json: None,
            quiet: true,
            smoke: true,
        };
        let report = run(&args).await.unwrap();
        let markdown = report.markdown();
        for result in &report.results {
            assert!(result.requests > 0, "{markdown}");
            assert_eq!(result.errors, 0, "{markdown}");
        }
        assert_eq!(report.results.len(), 10, "{markdown}");
        assert_eq!(report.targets.len(), 3, "{markdown}");
    }
}
