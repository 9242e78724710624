//! Follows service level management's feed: a ticket (or the incident behind it) with a running
//! SLA clock takes its due time (for the "breaching soon" queue), and a warning marks the ticket
//! for an automatic escalation, which the escalation sweeper carries out. The mark is written in
//! the consumer's transaction, so a warning is acted on once even across restarts.

use prost::Message;
use sea_orm::DatabaseTransaction;

use itsm_proto::delivery::{SlaClockChanged, SlaClockState, TargetMetric};
use itsm_proto::events::Event;
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::db::micros;
use itsm_runtime::{CallContext, Error};

use crate::domain::lifecycle::TicketState;
use crate::repo::Repository;

/// The consumer's name, which keys its cursor.
pub const CONSUMER: &str = "service-desk/sla-events";

pub struct SlaClocks {
    pub repo: Repository,
}

#[tonic::async_trait]
impl EventHandler for SlaClocks {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = SlaClockChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(clock) = changed.clock else { return Ok(()) };
        let current = if let Some(number) = clock.record.strip_prefix(crate::convert::TICKET_PREFIX) {
            Repository::find_ticket(txn, &event.tenant, number).await?
        } else if clock.record.starts_with("incidents/") {
            Repository::ticket_of_incident(txn, &event.tenant, &clock.record).await?
        } else {
            None
        };
        let Some(current) = current else { return Ok(()) };
        if !TicketState::from_i32(current.state).is_some_and(TicketState::is_open) {
            return Ok(());
        }
        let running = matches!(
            SlaClockState::try_from(clock.state),
            Ok(SlaClockState::Running | SlaClockState::Paused)
        );
        let due = if running { clock.due_time.as_ref().map_or(0, micros) } else { 0 };
        let mut after = current.clone();
        // Every running clock's due time by clock; the ticket shows the earliest.
        let mut clocks: std::collections::BTreeMap<String, i64> =
            serde_json::from_str(&current.sla_clocks).unwrap_or_default();
        if running && due > 0 {
            clocks.insert(clock.name.clone(), due);
        } else {
            clocks.remove(&clock.name);
        }
        after.sla_due_time = clocks.values().copied().min().unwrap_or(0);
        after.sla_clocks = serde_json::to_string(&clocks).unwrap_or_else(|_| "{}".into());
        let mut reason = String::new();
        if changed.action == "warning" || changed.action == "breach" {
            let metric = match TargetMetric::try_from(clock.metric) {
                Ok(TargetMetric::ResponseTime) => "response",
                _ => "resolution",
            };
            reason = if changed.action == "breach" {
                format!("SLA breached: the {metric} target of {} passed", clock.service_level_agreement)
            } else {
                format!(
                    "SLA warning: {}% of the {metric} time of {} used",
                    changed.warning_percent, clock.service_level_agreement
                )
            };
            after.escalation_reason.clone_from(&reason);
        }
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        let now = itsm_runtime::history::change_time(current.update_time);
        self.repo.store_ticket(txn, &ctx, &current, after, "sla", &reason, now).await?;
        Ok(())
    }
}
