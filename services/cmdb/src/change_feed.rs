//! The CMDB follows the change service's feed: when a change has been implemented (or failed
//! in the attempt), each affected CI gets a history entry naming the change, so a CI's history
//! shows every change made to it, not only edits of its record.

use prost::Message;
use sea_orm::DatabaseTransaction;

use itsm_proto::change::{ChangeChanged, ChangeState};
use itsm_proto::events::Event;
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::{CallContext, Error};

use crate::convert::parse_name;
use crate::repo::{Repository, WriteSource};

/// Names the consumer's cursor.
pub const CONSUMER: &str = "cmdb/change-events";

pub struct ChangeFeed {
    pub repo: Repository,
}

/// The history action for a change event, when it records work done on the CIs.
fn action(changed: &ChangeChanged, state: i32) -> Option<&'static str> {
    if changed.previous_state != ChangeState::Implement as i32 {
        return None;
    }
    match ChangeState::try_from(state) {
        Ok(ChangeState::Review) => Some("change implemented"),
        Ok(ChangeState::Failed) => Some("change failed"),
        _ => None,
    }
}

#[tonic::async_trait]
impl EventHandler for ChangeFeed {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = ChangeChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(change) = &changed.change else { return Ok(()) };
        let Some(action) = action(&changed, change.state) else { return Ok(()) };
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        let source = WriteSource::change(&change.name);
        for name in &change.configuration_items {
            // A CI deleted since the change named it has nothing left to record on.
            if let Some(id) = parse_name(name) {
                self.repo.note_in(txn, &ctx, &id, action, &source).await?;
            }
        }
        Ok(())
    }
}
