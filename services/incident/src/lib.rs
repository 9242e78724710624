//! The incident service: incidents, problems and known errors (`itsm.incident.v1`).
//!
//! `serve` runs it on a listener until `shutdown` completes; besides the gRPC services it runs
//! the sweeper that closes resolved incidents after `incident.auto_close_days`, and follows the
//! change service's feed to resolve problems whose fix has been implemented.

pub mod api;
pub mod change_desk;
pub mod convert;
pub mod domain;
pub mod entity;
pub mod migration;
pub mod repo;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::TcpListener;

use itsm_proto::incident::incident_service_server::IncidentServiceServer;
use itsm_proto::incident::problem_service_server::ProblemServiceServer;
use itsm_runtime::{Error, Settings};

use crate::domain::priority::PriorityMatrix;
use crate::repo::{Repository, Rules};

pub const SERVICE: &str = "incident";

/// The organisation's rules from `[incident]` settings; a bad matrix stops start-up.
pub fn rules(settings: &Settings) -> Result<Rules, Error> {
    let incident = &settings.incident;
    let priority = PriorityMatrix::parse(&incident.priority_matrix)
        .map_err(|e| Error::invalid("incident.priority_matrix", e.to_string()))?;
    Ok(Rules {
        priority,
        duplicate_window_micros: i64::from(incident.duplicate_window_hours) * 3_600_000_000,
        candidate_window_days: incident.candidate_window_days,
        candidate_min_incidents: incident.candidate_min_incidents,
    })
}

/// Runs the incident service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let rules = Arc::new(rules(&settings)?);
    let cmdb = itsm_cmdb_client::CmdbDirectory::from_settings(&settings)?;
    let max = settings.server.max_message_bytes;
    let auto_close_days = settings.incident.auto_close_days;
    let interval = Duration::from_millis(settings.incident.auto_close_interval_ms);
    let change_desk = change_desk::ChangeDesk::from_settings(&settings)?;
    let mut consumer_options = itsm_runtime::consumer::ConsumerOptions::new(change_desk::CONSUMER);
    consumer_options.types = vec![<itsm_proto::change::ChangeChanged as prost::Name>::full_name()];
    consumer_options.internal_token.clone_from(&settings.auth.internal_token);
    let shutdown = shutdown.shared();
    let sweeper_stop = shutdown.clone();
    let consumer_stop = shutdown.clone();
    let gauge_stop = shutdown.clone();
    let metrics_interval = Duration::from_millis(settings.telemetry.metrics_interval_ms);
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let repo = Repository { db: state.db.clone(), feed: state.feed.clone(), rules };
            if itsm_runtime::telemetry::exporting() {
                tokio::spawn(report_open_incidents(state.db.clone(), metrics_interval, gauge_stop));
            }
            if auto_close_days > 0 {
                tokio::spawn(sweep_resolved(repo.clone(), auto_close_days, interval, sweeper_stop));
            }
            // Problems follow the changes raised to fix them.
            if let Some(channel) = change_desk.channel() {
                let handler = change_desk::ImplementedChanges { repo: repo.clone() };
                let consumer = itsm_runtime::consumer::EventConsumer::new(
                    consumer_options,
                    state.db.clone(),
                    channel,
                    handler,
                )
                .notifying(state.feed.clone());
                tokio::spawn(consumer.run(consumer_stop));
            }
            let shared =
                api::Shared { repo, cmdb, changes: change_desk, page_tokens: state.page_tokens.clone() };
            server
                .add_service(
                    IncidentServiceServer::new(api::incidents::IncidentApi(shared.clone()))
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
                .add_service(
                    ProblemServiceServer::new(api::problems::ProblemApi(shared))
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
        },
    )
    .await
}

/// Reports `itsm.incidents.open` (NEW, ASSIGNED, IN_PROGRESS or ON_HOLD) by priority every
/// `interval`, until `stop`: one grouped count, so the cost does not grow with the metric's
/// readers.
async fn report_open_incidents(
    db: sea_orm::DatabaseConnection,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    use sea_orm::ConnectionTrait;
    let gauge = itsm_runtime::telemetry::meter(SERVICE)
        .i64_gauge("itsm.incidents.open")
        .with_unit("{incident}")
        .with_description("Incidents not yet resolved, by priority")
        .build();
    tokio::pin!(stop);
    loop {
        let rows = db
            .query_all_raw(itsm_runtime::db::stmt(
                db.get_database_backend(),
                "SELECT priority, COUNT(*) AS open FROM incidents WHERE state IN (1, 2, 3, 4) GROUP BY priority",
                [],
            ))
            .await;
        match rows {
            Ok(rows) => {
                let mut open = [0i64; 5];
                for row in rows {
                    let (Ok(priority), Ok(count)) =
                        (row.try_get::<i32>("", "priority"), row.try_get::<i64>("", "open"))
                    else {
                        continue;
                    };
                    if let Some(slot) = usize::try_from(priority - 1).ok().and_then(|i| open.get_mut(i)) {
                        *slot = count;
                    }
                }
                for (index, count) in open.iter().enumerate() {
                    let priority = format!("P{}", index + 1);
                    gauge.record(*count, &[opentelemetry::KeyValue::new("itsm.priority", priority)]);
                }
            }
            Err(err) => tracing::warn!(error = %err, "counting open incidents failed"),
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Closes incidents resolved more than `days` ago, every `interval`, until `stop`.
async fn sweep_resolved(repo: Repository, days: u32, interval: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let cutoff = itsm_runtime::db::now_micros() - i64::from(days) * 86_400_000_000;
        loop {
            match repo.close_resolved_before(cutoff, 200, days).await {
                Ok(200) => continue,
                Ok(closed) => {
                    if closed > 0 {
                        tracing::info!(closed, "closed resolved incidents");
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "auto-close sweep failed; retrying next round");
                    break;
                }
            }
        }
    }
}
