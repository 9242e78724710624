//! Clocks are driven by the records' own feeds: the incident service's `IncidentChanged` and the
//! service desk's `TicketChanged` events become observations of each record's state. A sweeper
//! wakes clocks whose warning or breach falls due between events, and recomputes clocks whose
//! agreement or calendar changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::DatabaseTransaction;

use itsm_proto::events::Event;
use itsm_proto::incident::{IncidentChanged, IncidentState};
use itsm_proto::servicedesk::{TicketChanged, TicketState};
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::{Error, db};

use super::rules::RecordFacts;
use super::store::{Alerts, Observed, ServiceLevel};
use crate::domain::clock::Observation;

pub const INCIDENT_CONSUMER: &str = "delivery/incident-events";
pub const TICKET_CONSUMER: &str = "delivery/ticket-events";

fn event_time(event: &Event) -> DateTime<Utc> {
    event
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp_micros(db::micros(t)))
        .unwrap_or_else(Utc::now)
}

/// Follows incidents.
pub struct IncidentFeed {
    pub store: ServiceLevel,
    /// Alerts of the event being applied, counted once the consumer commits it.
    pub pending: PendingAlerts,
}

/// Alerts raised inside a consumer's transaction, by event sequence, recorded only once the
/// event's transaction commits. A consumer applies several events per transaction, and an event
/// applied again after a rollback replaces what its first attempt raised.
#[derive(Default)]
pub struct PendingAlerts(std::sync::Mutex<std::collections::BTreeMap<i64, Alerts>>);

impl PendingAlerts {
    fn set(&self, event: &Event, alerts: Alerts) {
        if let Ok(mut pending) = self.0.lock() {
            pending.insert(event.sequence, alerts);
        }
    }

    /// Records `event`'s alerts; drops those of earlier events that never committed (parked).
    fn commit(&self, event: &Event) {
        if let Ok(mut pending) = self.0.lock() {
            let later = pending.split_off(&(event.sequence + 1));
            if let Some(alerts) = std::mem::replace(&mut *pending, later).remove(&event.sequence) {
                alerts.record();
            }
        }
    }
}

#[tonic::async_trait]
impl EventHandler for IncidentFeed {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = IncidentChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(incident) = changed.incident else { return Ok(()) };
        let state = if changed.action == "delete" {
            "CANCELLED".to_string()
        } else {
            IncidentState::try_from(incident.state)
                .map(|s| s.as_str_name().trim_start_matches("INCIDENT_STATE_").to_string())
                .unwrap_or_default()
        };
        let observed = Observed {
            record: &incident.name,
            business_service: &incident.business_service,
            facts: RecordFacts {
                record_type: "incident".into(),
                priority: incident.priority,
                category: incident.category.clone(),
                customer: incident.caller.clone(),
                support_group: incident.assignment_group.clone(),
                tier: 0,
            },
            observation: Observation {
                time: event_time(event),
                sequence: event.sequence,
                state,
                priority: incident.priority,
                event_id: event.id.clone(),
            },
        };
        self.pending.set(event, self.store.observe(txn, &event.tenant, observed, &event.actor).await?);
        Ok(())
    }

    fn committed(&self, event: &Event) {
        self.pending.commit(event);
    }
}

/// Follows service desk tickets.
pub struct TicketFeed {
    pub store: ServiceLevel,
    pub pending: PendingAlerts,
}

#[tonic::async_trait]
impl EventHandler for TicketFeed {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = TicketChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(ticket) = changed.ticket else { return Ok(()) };
        let state = if changed.action == "delete" {
            "CANCELLED".to_string()
        } else {
            TicketState::try_from(ticket.state)
                .map(|s| s.as_str_name().trim_start_matches("TICKET_STATE_").to_string())
                .unwrap_or_default()
        };
        let observed = Observed {
            record: &ticket.name,
            business_service: &ticket.business_service,
            facts: RecordFacts {
                record_type: "ticket".into(),
                priority: ticket.priority,
                category: ticket.category.clone(),
                customer: ticket.organisation.clone(),
                support_group: ticket.support_group.clone(),
                tier: ticket.tier,
            },
            observation: Observation {
                time: event_time(event),
                sequence: event.sequence,
                state,
                priority: ticket.priority,
                event_id: event.id.clone(),
            },
        };
        self.pending.set(event, self.store.observe(txn, &event.tenant, observed, &event.actor).await?);
        Ok(())
    }

    fn committed(&self, event: &Event) {
        self.pending.commit(event);
    }
}

/// Recomputes due and stale clocks every `interval` until `stop` completes.
pub async fn sweep(store: ServiceLevel, interval: Duration, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {
                // Keep going while a pass is full: a backlog drains without waiting for ticks.
                loop {
                    match store.sweep(Utc::now()).await {
                        Ok(pass) if pass.clocks >= 500 => continue,
                        Ok(_) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "SLA sweep failed; retrying on the next tick");
                            break;
                        }
                    }
                }
            }
        }
    }
}
