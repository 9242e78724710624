//! The service desk: tickets, support groups and tiers, routing, escalation, notifications
//! (`itsm.servicedesk.v1`).
//!
//! `serve` runs it on a listener until `shutdown` completes; besides the gRPC service it follows
//! the incident service's feed (tickets follow their incidents) and delivers notifications to
//! webhooks.

pub mod api;
pub mod convert;
pub mod deliverer;
pub mod domain;
pub mod entity;
pub mod incident_desk;
pub mod migration;
pub mod repo;
pub mod sla_feed;

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use tokio::net::TcpListener;

use itsm_proto::servicedesk::service_desk_service_server::ServiceDeskServiceServer;
use itsm_runtime::consumer::{ConsumerOptions, EventConsumer};
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "service-desk";

/// Runs the service desk on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let incidents = incident_desk::IncidentDesk::from_settings(&settings)?;
    let max = settings.server.max_message_bytes;
    let desk_settings = settings.service_desk.clone();
    let http = deliverer::http_client(&desk_settings)?;
    let mut consumer_options = ConsumerOptions::new(incident_desk::CONSUMER);
    consumer_options.types = vec![<itsm_proto::incident::IncidentChanged as prost::Name>::full_name()];
    consumer_options.internal_token.clone_from(&settings.auth.internal_token);
    let shutdown = shutdown.shared();
    let consumer_stop = shutdown.clone();
    let deliverer_stop = shutdown.clone();
    let time_box_stop = shutdown.clone();
    let sla_stop = shutdown.clone();
    let mut sla_options = ConsumerOptions::new(sla_feed::CONSUMER);
    sla_options.types = vec![<itsm_proto::delivery::SlaClockChanged as prost::Name>::full_name()];
    sla_options.internal_token.clone_from(&settings.auth.internal_token);
    let sla_channel = itsm_runtime::upstream::channel(&settings.upstream.delivery, "upstream.delivery")?;
    let time_box_interval = std::time::Duration::from_millis(settings.service_desk.time_box_interval_ms);
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let repo = repo::Repository {
                db: state.db.clone(),
                feed: state.feed.clone(),
                deliveries: Arc::new(tokio::sync::Notify::new()),
            };
            // Tickets follow their incidents.
            if let Some(channel) = incidents.channel() {
                let handler = incident_desk::LinkedIncidents { repo: repo.clone() };
                tokio::spawn(
                    EventConsumer::new(consumer_options, state.db.clone(), channel, handler)
                        .notifying(state.feed.clone())
                        .run(consumer_stop),
                );
            }
            tokio::spawn(deliverer::Deliverer::new(repo.clone(), desk_settings, http).run(deliverer_stop));
            // Tickets follow their SLA clocks.
            if let Some(channel) = sla_channel {
                let handler = sla_feed::SlaClocks { repo: repo.clone() };
                tokio::spawn(
                    EventConsumer::new(sla_options, state.db.clone(), channel, handler)
                        .notifying(state.feed.clone())
                        .run(sla_stop),
                );
            }
            tokio::spawn(escalate_time_boxed(
                repo.clone(),
                incidents.clone(),
                time_box_interval,
                time_box_stop,
            ));
            let api = api::ServiceDeskApi { repo, incidents, page_tokens: state.page_tokens.clone() };
            server.add_service(
                ServiceDeskServiceServer::new(api)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
        },
    )
    .await
}

/// Escalates tickets whose group's time box ran out, and tickets marked for escalation (an SLA
/// warning), every `interval`, until `stop`.
async fn escalate_time_boxed(
    repo: repo::Repository,
    incidents: incident_desk::IncidentDesk,
    interval: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let due = match repo.time_boxed_out(itsm_runtime::db::now_micros(), 100).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "time-box sweep failed; retrying next round");
                continue;
            }
        };
        match repo.pending_escalations(100).await {
            Ok(pending) => {
                for (tenant, number, reason) in pending {
                    let ctx = itsm_runtime::CallContext::system(tenant.clone());
                    if let Err(err) =
                        api::escalate(&repo, &incidents, &ctx, &number, "", "", &reason, true).await
                    {
                        // Nowhere higher to go: the mark is dropped, the reason kept in the history.
                        tracing::info!(ticket = %number, error = %err, "automatic escalation not possible");
                        let dropped = repo
                            .change_ticket(
                                &ctx,
                                &number,
                                "",
                                "escalate_skipped",
                                &format!("{reason} ({err})"),
                                |m, _| {
                                    m.escalation_reason.clear();
                                    Ok(())
                                },
                            )
                            .await;
                        if let Err(err) = dropped {
                            tracing::warn!(ticket = %number, error = %err, "could not clear the escalation mark");
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "pending escalations could not be read"),
        }
        for (tenant, number, group, seconds) in due {
            let ctx = itsm_runtime::CallContext::system(tenant);
            let reason = format!("time box of {seconds} s in {group} expired");
            match api::escalate(&repo, &incidents, &ctx, &number, "", "", &reason, false).await {
                Ok(_) => tracing::info!(ticket = %number, "escalated: time box expired"),
                // Nowhere higher to go, or moved meanwhile: look again next round.
                Err(err) => {
                    tracing::debug!(ticket = %number, error = %err, "time-boxed ticket not escalated");
                }
            }
        }
    }
}
