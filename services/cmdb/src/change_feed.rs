//! The CMDB follows the change service's feed: when a change has been implemented (or failed
//! in the attempt), each affected CI gets a history entry naming the change, so a CI's history
//! shows every change made to it, not only edits of its record. When a release is deployed to an
//! environment, its CIs there take the release's version (history names the release); a
//! rollback restores the version they had before.

use prost::Message;
use sea_orm::DatabaseTransaction;

use itsm_proto::change::{ChangeChanged, ChangeState, ReleaseChanged};
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

/// Event types the CMDB follows.
pub fn event_types() -> Vec<String> {
    use prost::Name;
    vec![ChangeChanged::full_name(), ReleaseChanged::full_name()]
}

#[tonic::async_trait]
impl EventHandler for ChangeFeed {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        if payload.type_url.ends_with("ReleaseChanged") {
            let Ok(changed) = ReleaseChanged::decode(payload.value.as_slice()) else { return Ok(()) };
            return self.release(txn, &ctx, &changed).await;
        }
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

impl ChangeFeed {
    async fn release(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CallContext,
        changed: &ReleaseChanged,
    ) -> Result<(), Error> {
        let Some(release) = &changed.release else { return Ok(()) };
        let deploy = match changed.action.as_str() {
            "deploy" => true,
            "rollback" => false,
            _ => return Ok(()),
        };
        let source = WriteSource::release(&release.name);
        for name in &release.configuration_items {
            let Some(id) = parse_name(name) else { continue };
            // Only the release's CIs in the environment deployed (a CI with none is in every one).
            let Some(ci) = Repository::find(txn, &ctx.tenant, &id).await? else { continue };
            if !ci.environment.is_empty() && ci.environment != changed.environment {
                continue;
            }
            let versioned = if deploy {
                self.repo.set_version_in(txn, ctx, &id, Some(&release.version), &source).await?
            } else {
                match Repository::version_before(txn, &ctx.tenant, &id, &release.name).await? {
                    Some(previous) => {
                        self.repo.set_version_in(txn, ctx, &id, previous.as_deref(), &source).await?
                    }
                    None => false,
                }
            };
            if !versioned {
                let action = if deploy { "release deployed" } else { "release rolled back" };
                self.repo.note_in(txn, ctx, &id, action, &source).await?;
            }
        }
        Ok(())
    }
}
