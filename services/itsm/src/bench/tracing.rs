//! Tracing overhead: the same CreateIncident load (two CIs, so the CMDB is called) through the
//! gateway of `itsm up`, run as a child process with OTLP export off and with export on to an
//! in-process receiver, alternating, in the same run. Sampling is 1.0: every request is traced.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use itsm_e2e::authed;
use itsm_e2e::load::scenarios::{create_servers, incident_on};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_runtime::otlp_receiver::OtlpReceiver;
use tonic::transport::Channel;

use super::up::{UpProcess, itsm_binary};
use super::{Latency, measure};

#[derive(clap::Args, Clone, Debug)]
pub struct TracingBenchArgs {
    /// Measured CreateIncident calls per run (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 2_000)]
    pub iterations: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Runs per mode, alternating off and on.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
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

/// One mode's figures over all its rounds.
#[derive(Debug, serde::Serialize)]
pub struct ModeFigures {
    pub calls: usize,
    pub seconds: f64,
    pub calls_per_second: f64,
    pub latency: Latency,
}

#[derive(Debug, serde::Serialize)]
pub struct TracingReport {
    pub iterations: usize,
    pub concurrency: usize,
    pub rounds: usize,
    pub export_off: ModeFigures,
    pub export_on: ModeFigures,
    /// Throughput with export on / off.
    pub throughput_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    /// Spans the receiver got per call made (setup and warm-up included).
    pub spans_per_call: f64,
    /// `itsm.telemetry.spans.dropped` as exported at the end of the runs with export on.
    pub spans_dropped: f64,
}

impl TracingReport {
    pub fn markdown(&self) -> String {
        let row = |label: &str, m: &ModeFigures| {
            format!(
                "| {label} | {} | {} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                m.calls,
                self.concurrency,
                m.calls_per_second,
                m.latency.p50_ms,
                m.latency.p90_ms,
                m.latency.p99_ms,
                m.latency.max_ms
            )
        };
        format!(
            "| export | calls | concurrency | calls/s | p50 ms | p90 ms | p99 ms | max ms |\n\
             |---|---|---|---|---|---|---|---|\n{}{}\n\
             export on / off: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x; {:.1} spans exported per call, \
             {} dropped ({} rounds per mode, alternating).",
            row("off (baseline)", &self.export_off),
            row("on, sampling 1.0", &self.export_on),
            self.throughput_ratio,
            self.p50_ratio,
            self.p99_ratio,
            self.spans_per_call,
            self.spans_dropped,
            self.rounds,
        )
    }
}

pub(super) struct RunFigures {
    pub samples: Vec<Duration>,
    pub seconds: f64,
    pub calls_made: usize,
}

pub async fn run(args: &TracingBenchArgs) -> Result<TracingReport, String> {
    let (iterations, concurrency, rounds) = if args.smoke {
        (20, 2, 1)
    } else {
        (args.iterations.max(1), args.concurrency.max(1), args.rounds.max(1))
    };
    let binary = itsm_binary(args.itsm.as_ref())?;
    let mut off = Vec::new();
    let mut on = Vec::new();
    let (mut spans, mut calls_on, mut dropped) = (0u64, 0usize, 0.0);
    for _ in 0..rounds {
        off.push(one_run(&binary, None, iterations, concurrency).await?);
        let receiver = OtlpReceiver::start(false).map_err(|e| format!("OTLP receiver: {e}"))?;
        let figures = one_run(&binary, Some(&receiver), iterations, concurrency).await?;
        spans += receiver.span_count();
        calls_on += figures.calls_made;
        for reason in ["queue_full", "export_failed"] {
            dropped += receiver
                .value("itsm", "itsm.telemetry.spans.dropped", &format!("reason={reason}"))
                .unwrap_or(0.0);
        }
        on.push(figures);
    }
    let export_off = figures_of(off);
    let export_on = figures_of(on);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(TracingReport {
        iterations,
        concurrency,
        rounds,
        throughput_ratio: ratio(export_on.calls_per_second, export_off.calls_per_second),
        p50_ratio: ratio(export_on.latency.p50_ms, export_off.latency.p50_ms),
        p99_ratio: ratio(export_on.latency.p99_ms, export_off.latency.p99_ms),
        spans_per_call: ratio(spans as f64, calls_on as f64),
        spans_dropped: dropped,
        export_off,
        export_on,
    })
}

fn figures_of(runs: Vec<RunFigures>) -> ModeFigures {
    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    let mut samples: Vec<Duration> = runs.into_iter().flat_map(|r| r.samples).collect();
    let calls = samples.len();
    ModeFigures {
        calls,
        seconds,
        calls_per_second: if seconds > 0.0 { calls as f64 / seconds } else { 0.0 },
        latency: Latency::of(&mut samples),
    }
}

/// One `itsm up` on a fresh data directory, loaded, then stopped (which flushes its telemetry).
async fn one_run(
    binary: &std::path::Path,
    receiver: Option<&OtlpReceiver>,
    iterations: usize,
    concurrency: usize,
) -> Result<RunFigures, String> {
    let data_dir = std::env::temp_dir().join(format!("itsm-bench-tracing-{}", uuid::Uuid::now_v7()));
    let endpoint = receiver.map(|r| r.endpoint().to_string()).unwrap_or_default();
    let env = [
        ("ITSM__TELEMETRY__OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
        ("ITSM__TELEMETRY__SAMPLING_RATIO", "1.0".to_string()),
        ("ITSM__TELEMETRY__METRICS_INTERVAL_MS", "1000".to_string()),
        ("ITSM__GATEWAY__RATE_LIMIT_PER_SECOND", "0".to_string()),
    ];
    let up = UpProcess::start(binary, &data_dir, &env).await?;
    let result = load(&up, iterations, concurrency).await;
    let stopped = up.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let figures = result?;
    stopped?;
    Ok(figures)
}

pub(super) async fn load(
    up: &UpProcess,
    iterations: usize,
    concurrency: usize,
) -> Result<RunFigures, String> {
    let channel = Channel::from_shared(up.url("gateway")?)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect gateway: {e}"))?;
    let token = up.token.clone();
    let cis = create_servers(&channel, &token, &["bench-web", "bench-db"]).await?;
    let request = incident_on(&cis);
    let call = move || {
        let (channel, request) = (channel.clone(), authed(request.clone(), &token));
        async move {
            IncidentServiceClient::new(channel)
                .create_incident(request)
                .await
                .map(|_| ())
                .map_err(|e| format!("create incident: {e}"))
        }
    };
    let warm_up = iterations / 10 + 1;
    measure(warm_up, concurrency, call.clone()).await?;
    let started = Instant::now();
    let samples = measure(iterations, concurrency, call).await?;
    Ok(RunFigures { samples, seconds: started.elapsed().as_secs_f64(), calls_made: 2 + warm_up + iterations })
}
