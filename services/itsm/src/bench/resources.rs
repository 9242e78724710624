//! Resources of `itsm up` as users run it (scenario 7): time from start to all six services
//! SERVING, resident memory idle, and resident memory under a CreateIncident load through the
//! gateway. The targets are absolute (the issue's), so each figure is shown against its target.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Latency;
use super::up::{UpProcess, itsm_binary};

#[derive(clap::Args, Clone, Debug)]
pub struct ResourcesBenchArgs {
    /// CreateIncident calls of the load phase.
    #[arg(long, default_value_t = 3_000)]
    pub iterations: usize,
    /// Concurrent callers of the load phase.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long to let the suite settle before reading its idle memory.
    #[arg(long, default_value_t = 3_000)]
    pub idle_ms: u64,
    /// The itsm binary to start (default: this one).
    #[arg(long)]
    pub itsm: Option<PathBuf>,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
    /// A few calls only (what CI runs).
    #[arg(long)]
    pub smoke: bool,
}

/// Start to all-SERVING must be under this, from a built binary.
pub const START_TARGET_MS: f64 = 2_000.0;
/// Idle resident memory of all six services must be under this.
pub const IDLE_RSS_TARGET_MIB: f64 = 150.0;

#[derive(Debug, serde::Serialize)]
pub struct ResourcesReport {
    pub start_ms: f64,
    pub idle_rss_mib: f64,
    pub load_peak_rss_mib: f64,
    pub after_load_rss_mib: f64,
    pub load_calls: usize,
    pub load_concurrency: usize,
    pub load_calls_per_second: f64,
    pub load_latency: Latency,
    pub start_target_met: bool,
    pub idle_rss_target_met: bool,
}

impl ResourcesReport {
    pub fn markdown(&self) -> String {
        let met = |ok: bool| if ok { "met" } else { "missed" };
        format!(
            "| figure | value | target |\n|---|---|---|\n\
             | start to all six SERVING | {:.0} ms | < {START_TARGET_MS:.0} ms ({}) |\n\
             | idle RSS, all six services | {:.1} MiB | < {IDLE_RSS_TARGET_MIB:.0} MiB ({}) |\n\
             | peak RSS under load ({} CreateIncident calls, concurrency {}, {:.1} calls/s, p99 {:.1} ms) | {:.1} MiB | — |\n\
             | RSS after the load | {:.1} MiB | — |",
            self.start_ms,
            met(self.start_target_met),
            self.idle_rss_mib,
            met(self.idle_rss_target_met),
            self.load_calls,
            self.load_concurrency,
            self.load_calls_per_second,
            self.load_latency.p99_ms,
            self.load_peak_rss_mib,
            self.after_load_rss_mib,
        )
    }
}

pub async fn run(args: &ResourcesBenchArgs) -> Result<ResourcesReport, String> {
    let (iterations, concurrency, idle) = if args.smoke {
        (20, 2, Duration::from_millis(200))
    } else {
        (args.iterations.max(1), args.concurrency.max(1), Duration::from_millis(args.idle_ms))
    };
    let binary = itsm_binary(args.itsm.as_ref())?;
    let data_dir = std::env::temp_dir().join(format!("itsm-bench-resources-{}", uuid::Uuid::now_v7()));
    let env = [
        ("ITSM__TELEMETRY__OTLP_ENDPOINT", String::new()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
        ("ITSM__GATEWAY__RATE_LIMIT_PER_SECOND", "0".to_string()),
    ];
    let up = Arc::new(UpProcess::start(&binary, &data_dir, &env).await?);
    let result = measure_resources(&up, idle, iterations, concurrency).await;
    let stopped = match Arc::try_unwrap(up) {
        Ok(up) => up.stop().await,
        Err(_) => Err("the memory sampler still holds the process".into()),
    };
    let _ = std::fs::remove_dir_all(&data_dir);
    let report = result?;
    stopped?;
    Ok(report)
}

async fn measure_resources(
    up: &Arc<UpProcess>,
    idle: Duration,
    iterations: usize,
    concurrency: usize,
) -> Result<ResourcesReport, String> {
    tokio::time::sleep(idle).await;
    let idle_rss = up.rss_mib().ok_or("cannot read the resident memory of itsm up")?;
    // Sample memory every 50 ms while the load runs.
    let loading = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (up, loading) = (up.clone(), loading.clone());
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while loading.load(Ordering::Relaxed) {
                peak = peak.max(up.rss_mib().unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let load = super::tracing::load(up, iterations, concurrency).await;
    loading.store(false, Ordering::Relaxed);
    let peak = sampler.await.map_err(|e| e.to_string())?;
    let mut load = load?;
    let after = up.rss_mib().unwrap_or(0.0);
    let start_ms = up.started_in.as_secs_f64() * 1000.0;
    Ok(ResourcesReport {
        start_ms,
        idle_rss_mib: idle_rss,
        load_peak_rss_mib: peak.max(after),
        after_load_rss_mib: after,
        load_calls: load.samples.len(),
        load_concurrency: concurrency,
        load_calls_per_second: if load.seconds > 0.0 {
            load.samples.len() as f64 / load.seconds
        } else {
            0.0
        },
        load_latency: Latency::of(&mut load.samples),
        start_target_met: start_ms < START_TARGET_MS,
        idle_rss_target_met: idle_rss < IDLE_RSS_TARGET_MIB,
    })
}
