//! A bounded load generator for `itsm bench load`: a fixed number of calls or a time limit,
//! whichever comes first, after a warm-up; closed-loop (each worker calls again as soon as its
//! call returns) or paced at a fixed rate; spread over several connections; latencies in an HDR
//! histogram. Loopback only: the suite it loads is started in the same process.

pub mod baselines;
pub mod propagation;
pub mod scenarios;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How hard and how long to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Measured calls (the run stops at this count or at `duration`, whichever is first).
    pub requests: usize,
    /// Longest the measured phase may take.
    pub duration: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// gRPC connections (HTTP/2 channels) the calls are spread over.
    pub connections: usize,
    /// Calls made and thrown away before measuring (connections, caches, statement plans).
    pub warmup: usize,
    /// Calls per second to start, evenly paced (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl LoadOptions {
    /// A few calls, for CI.
    pub fn smoke() -> Self {
        Self {
            requests: 20,
            duration: Duration::from_secs(20),
            concurrency: 2,
            connections: 1,
            warmup: 2,
            rate: None,
            progress: false,
        }
    }
}

/// Latencies in microseconds, 1 µs to 60 s at three significant digits.
pub struct Recorder(Option<Histogram<u64>>);

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        // These bounds are valid, so this is never `None`; an empty recorder would be harmless.
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).ok())
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(h) = &mut self.0 {
            let _ = h.record(micros);
        }
    }

    pub fn add(&mut self, other: &Recorder) {
        if let (Some(h), Some(o)) = (&mut self.0, &other.0) {
            let _ = h.add(o);
        }
    }

    pub fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, Histogram::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ms_at(&self, quantile: f64) -> f64 {
        match &self.0 {
            Some(h) if !h.is_empty() => h.value_at_quantile(quantile) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    fn max_ms(&self) -> f64 {
        match &self.0 {
            Some(h) if !h.is_empty() => h.max() as f64 / 1000.0,
            _ => 0.0,
        }
    }
}

/// What one scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadResult {
    pub scenario: String,
    /// Successful measured calls.
    pub requests: u64,
    /// Failed measured calls (not in the latencies).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: String,
    pub seconds: f64,
    pub throughput: f64,
    pub concurrency: usize,
    pub connections: usize,
    /// Target rate for a paced run.
    pub rate: Option<f64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LoadResult {
    /// Figures of a measurement made elsewhere (scenarios that time something other than one call).
    pub fn from_recorder(
        scenario: &str,
        options: &LoadOptions,
        recorder: &Recorder,
        errors: u64,
        first_error: String,
        seconds: f64,
    ) -> Self {
        let requests = recorder.len();
        Self {
            scenario: scenario.to_string(),
            requests,
            errors,
            first_error,
            seconds,
            throughput: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            concurrency: options.concurrency,
            connections: options.connections,
            rate: options.rate,
            p50_ms: recorder.ms_at(0.50),
            p90_ms: recorder.ms_at(0.90),
            p99_ms: recorder.ms_at(0.99),
            max_ms: recorder.max_ms(),
        }
    }

    /// One Markdown table row: scenario, calls, errors, concurrency, pacing, calls/s, p50, p90,
    /// p99, max, and throughput and p50 as ratios to `baseline` (measured in the same run).
    pub fn markdown_row(&self, baseline: Option<&LoadResult>) -> String {
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.3}", a / b) } else { "—".to_string() };
        let (throughput, p50) = baseline.map_or_else(
            || ("—".to_string(), "—".to_string()),
            |b| (ratio(self.throughput, b.throughput), ratio(self.p50_ms, b.p50_ms)),
        );
        format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {throughput} | {p50} |",
            self.scenario,
            self.requests,
            self.errors,
            self.concurrency,
            self.rate.map_or_else(|| "closed loop".to_string(), |r| format!("{r:.0}/s")),
            self.throughput,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }

    pub const MARKDOWN_HEADER: &'static str = "| scenario | calls | errors | concurrency | pacing | calls/s | p50 ms | p90 ms | p99 ms | max ms | calls/s ÷ baseline | p50 ÷ baseline |\n|---|---|---|---|---|---|---|---|---|---|---|---|";
}

/// Runs `call(connection index)` under `options` and measures each call.
pub async fn run_load<F, Fut>(scenario: &str, options: &LoadOptions, call: F) -> Result<LoadResult, String>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let concurrency = options.concurrency.max(1);
    let connections = options.connections.max(1);
    // Warm-up: its failures are reported, its latencies are not kept.
    for i in 0..options.warmup {
        call(i % connections).await.map_err(|e| format!("{scenario}: warm-up call failed: {e}"))?;
    }
    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(options.requests as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>28} {bar:30} {pos}/{len} {per_sec} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(scenario.to_string());
        bar
    });
    let issued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + options.duration;
    // Paced runs: call k starts at started + k / rate, whatever happened to the ones before.
    let interval = options.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let (call, issued, stop, progress) = (call.clone(), issued.clone(), stop.clone(), progress.clone());
        let requests = options.requests;
        workers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let (mut errors, mut first_error) = (0u64, String::new());
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let k = issued.fetch_add(1, Ordering::Relaxed);
                if k >= requests {
                    break;
                }
                let scheduled = match interval {
                    Some(every) => {
                        let at = started + every.mul_f64(k as f64);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                // Latency counts from the scheduled start: a paced run that falls behind shows it.
                match call((k + worker) % connections).await {
                    Ok(()) => recorder.record(scheduled.elapsed()),
                    Err(err) => {
                        errors += 1;
                        if first_error.is_empty() {
                            first_error = err;
                        }
                    }
                }
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
            }
            (recorder, errors, first_error)
        }));
    }
    let mut recorder = Recorder::new();
    let (mut errors, mut first_error) = (0u64, String::new());
    for worker in workers {
        let (r, e, f) = worker.await.map_err(|e| format!("{scenario}: worker failed: {e}"))?;
        recorder.add(&r);
        errors += e;
        if first_error.is_empty() {
            first_error = f;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadResult::from_recorder(scenario, options, &recorder, errors, first_error, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_and_time_both_bound_a_run() {
        let options = LoadOptions { requests: 50, ..LoadOptions::smoke() };
        let result = run_load("noop", &options, |_| async { Ok(()) }).await.unwrap();
        assert_eq!((result.requests, result.errors), (50, 0));
        let slow =
            LoadOptions { requests: 1_000_000, duration: Duration::from_millis(200), ..LoadOptions::smoke() };
        let result = run_load("sleepy", &slow, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .await
        .unwrap();
        assert!(result.requests < 100, "stopped by the time limit: {}", result.requests);
        assert!(result.p50_ms >= 19.0, "{}", result.p50_ms);
    }

    #[tokio::test]
    async fn errors_are_counted_not_timed() {
        let options = LoadOptions { requests: 10, warmup: 0, connections: 2, ..LoadOptions::smoke() };
        let result =
            run_load("half", &options, |i| async move { if i == 0 { Ok(()) } else { Err("no".into()) } })
                .await
                .unwrap();
        assert_eq!(result.requests + result.errors, 10);
        assert_eq!(result.first_error, "no");
    }

    #[tokio::test]
    async fn a_paced_run_keeps_its_rate() {
        let options = LoadOptions { requests: 40, rate: Some(200.0), warmup: 0, ..LoadOptions::smoke() };
        let result = run_load("paced", &options, |_| async { Ok(()) }).await.unwrap();
        // 40 calls at 200/s take about 0.2 s.
        assert!(result.seconds >= 0.18, "{}", result.seconds);
        assert_eq!(result.requests, 40);
    }
}
