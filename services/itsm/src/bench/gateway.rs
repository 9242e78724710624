//! Gateway overhead: the same read (`GetConfigurationItem`) called straight on the CMDB and
//! through the gateway (token check, role table, rate limiter, routing), in the same run, so the
//! difference is the gateway's cost.

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest, GetConfigurationItemRequest};
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

use super::{Latency, measure};

#[derive(clap::Args, Clone, Debug)]
pub struct GatewayBenchArgs {
    /// Calls measured per path (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 5_000)]
    pub iterations: usize,
    /// Concurrent callers per path.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// A few calls only (what the test suite runs).
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct GatewayReport {
    pub iterations: usize,
    pub concurrency: usize,
    pub direct: Latency,
    pub gateway: Latency,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub p50_overhead_ms: f64,
}

impl GatewayReport {
    pub fn markdown(&self) -> String {
        format!(
            "| path | calls | concurrency | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n\
             | CMDB directly (baseline) | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n\
             | through the gateway | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n\n\
             gateway / direct: p50 {:.2}x, p99 {:.2}x; the gateway adds {:.3} ms at p50.",
            self.direct.count,
            self.concurrency,
            self.direct.p50_ms,
            self.direct.p90_ms,
            self.direct.p99_ms,
            self.direct.max_ms,
            self.gateway.count,
            self.concurrency,
            self.gateway.p50_ms,
            self.gateway.p90_ms,
            self.gateway.p99_ms,
            self.gateway.max_ms,
            self.p50_ratio,
            self.p99_ratio,
            self.p50_overhead_ms,
        )
    }
}

pub async fn run(args: &GatewayBenchArgs) -> Result<GatewayReport, String> {
    let (iterations, concurrency) = if args.smoke { (50, 2) } else { (args.iterations, args.concurrency) };
    let db = TestDatabase::create(TestBackend::Postgres).await.map_err(|e| e.to_string())?;
    let settings = settings_for(&db.url);
    let cmdb = RunningServer::start(move |l, s| itsm_cmdb::serve(settings, l, s.wait()))
        .await
        .map_err(|e| e.to_string())?;
    let mut gateway_settings = settings_for("sqlite::memory:");
    gateway_settings.upstream.cmdb = cmdb.url();
    gateway_settings.gateway.rate_limit_per_second = 0;
    let secret = gateway_settings.auth.jwt_secret.clone();
    let gateway = RunningServer::start(move |l, s| itsm_gateway::serve(gateway_settings, l, s.wait()))
        .await
        .map_err(|e| e.to_string())?;
    let token = itsm_gateway::auth::mint_token(
        &secret,
        "itsm",
        "itsm",
        "bench",
        "bench",
        &["admin".into()],
        chrono::Duration::hours(1),
    )
    .map_err(|e| e.to_string())?;

    let direct_channel = internal_channel(&cmdb.url()).await.map_err(|e| e.to_string())?;
    let gateway_channel = internal_channel(&gateway.url()).await.map_err(|e| e.to_string())?;
    let mut direct = CmdbServiceClient::new(direct_channel.clone());
    let created = direct
        .create_configuration_item(with_context(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "bench-01".into(),
                    ci_class: "server".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "bench",
            "bench",
        ))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let name = created.name;

    let direct_call = {
        let (channel, name) = (direct_channel.clone(), name.clone());
        move || {
            let (channel, name) = (channel.clone(), name.clone());
            async move {
                CmdbServiceClient::new(channel)
                    .get_configuration_item(with_context(
                        GetConfigurationItemRequest { name, read_time: None },
                        "bench",
                        "bench",
                    ))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    };
    let gateway_call = {
        let (channel, name, token) = (gateway_channel.clone(), name.clone(), token.clone());
        move || {
            let (channel, name, token) = (channel.clone(), name.clone(), token.clone());
            async move {
                let mut request = tonic::Request::new(GetConfigurationItemRequest { name, read_time: None });
                let value = format!("Bearer {token}").parse().map_err(|_| "token".to_string())?;
                request.metadata_mut().insert("authorization", value);
                CmdbServiceClient::new(channel)
                    .get_configuration_item(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    };
    // Warm up both paths (connections, statement caches), then alternate the measured runs.
    measure(iterations / 10 + 1, concurrency, direct_call.clone()).await?;
    measure(iterations / 10 + 1, concurrency, gateway_call.clone()).await?;
    let mut direct_samples = measure(iterations / 2, concurrency, direct_call.clone()).await?;
    let mut gateway_samples = measure(iterations / 2, concurrency, gateway_call.clone()).await?;
    direct_samples.extend(measure(iterations - iterations / 2, concurrency, direct_call).await?);
    gateway_samples.extend(measure(iterations - iterations / 2, concurrency, gateway_call).await?);
    let direct = Latency::of(&mut direct_samples);
    let gateway_latency = Latency::of(&mut gateway_samples);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(GatewayReport {
        iterations,
        concurrency,
        p50_ratio: ratio(gateway_latency.p50_ms, direct.p50_ms),
        p99_ratio: ratio(gateway_latency.p99_ms, direct.p99_ms),
        p50_overhead_ms: gateway_latency.p50_ms - direct.p50_ms,
        direct,
        gateway: gateway_latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gateway_benchmark_smoke() {
        let report = run(&GatewayBenchArgs { iterations: 0, concurrency: 0, smoke: true }).await.unwrap();
        assert_eq!((report.direct.count, report.gateway.count), (50, 50));
        assert!(report.p50_ratio > 0.0);
        assert!(report.markdown().contains("through the gateway"));
    }
}
