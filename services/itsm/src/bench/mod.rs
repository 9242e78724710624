//! `itsm bench <scenario>`: load generators that print their figures next to a baseline measured
//! in the same run, so every number is also a ratio. Loopback only; every loop is bounded.

pub mod clocks;
pub mod cmdb;
pub mod console;
pub mod finance;
pub mod gateway;
pub mod load;
pub mod resources;
pub mod tracing;
pub mod up;

use std::time::{Duration, Instant};

/// Times `calls` calls of `call` spread over `concurrency` tasks.
pub async fn measure<F, Fut>(calls: usize, concurrency: usize, call: F) -> Result<Vec<Duration>, String>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let workers = concurrency.max(1);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let per_task = calls / workers + usize::from(worker < calls % workers);
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let started = Instant::now();
                call().await?;
                samples.push(started.elapsed());
            }
            Ok::<_, String>(samples)
        }));
    }
    let mut all = Vec::with_capacity(calls);
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Self { count: samples.len(), p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(&mut []).count, 0);
    }
}

/// The scenarios of `itsm bench`.
#[derive(clap::Subcommand)]
pub enum Scenario {
    /// CMDB on PostgreSQL: import rate, impact depth 5 on a large graph, deep paging.
    Cmdb(cmdb::CmdbBenchArgs),
    /// The web console on PostgreSQL: the CMDB search and the agent queue, page 1 and a deep page
    /// reached by following "Next", over HTTP as a signed-in browser loads them.
    Console(console::ConsoleBenchArgs),
    /// The gateway's overhead: one read straight on the CMDB and through the gateway.
    Gateway(gateway::GatewayBenchArgs),
    /// SLA clocks on PostgreSQL: events applied per second with many open clocks, full breach sweep.
    Clocks(clocks::ClockBenchArgs),
    /// Finance: allocation over a 100,000-CI graph, FOCUS import rows per second.
    Finance(finance::FinanceBenchArgs),
    /// Tracing overhead: the same CreateIncident load on `itsm up` with OTLP export off and on.
    Tracing(tracing::TracingBenchArgs),
    /// `itsm up`: start to all-SERVING time, idle memory, memory under load.
    Resources(resources::ResourcesBenchArgs),
    /// Scenarios 1-6 under load on PostgreSQL next to tonic echo and tonic + insert baselines.
    Load(load::LoadBenchArgs),
}

pub async fn run(scenario: Scenario) -> Result<(), String> {
    match scenario {
        Scenario::Cmdb(args) => {
            let report = cmdb::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Console(args) => {
            let report = console::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Gateway(args) => {
            let report = gateway::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Clocks(args) => {
            let report = clocks::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Finance(args) => {
            let report = finance::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Load(args) => {
            let report = load::run(&args).await?;
            println!("{}", report.markdown());
            Ok(())
        }
        Scenario::Resources(args) => {
            let report = resources::run(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                println!("{}", report.markdown());
            }
            Ok(())
        }
        Scenario::Tracing(args) => {
            let report = tracing::run(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                println!("{}", report.markdown());
            }
            Ok(())
        }
    }
}
