//! `itsm bench <scenario>`: load generators that print their figures next to a baseline measured
//! in the same run, so every number is also a ratio. Loopback only; every loop is bounded.

pub mod clocks;
pub mod cmdb;
pub mod finance;
pub mod gateway;

use std::time::Duration;

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
    /// The gateway's overhead: one read straight on the CMDB and through the gateway.
    Gateway(gateway::GatewayBenchArgs),
    /// SLA clocks on PostgreSQL: events applied per second with many open clocks, full breach sweep.
    Clocks(clocks::ClockBenchArgs),
    /// Finance: allocation over a 100,000-CI graph, FOCUS import rows per second.
    Finance(finance::FinanceBenchArgs),
}

pub async fn run(scenario: Scenario) -> Result<(), String> {
    match scenario {
        Scenario::Cmdb(args) => {
            let report = cmdb::run(&args).await?;
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
    }
}
