//! The incident service's side of change management: raising a change for a problem in the
//! change service, and resolving the problem when that change has been implemented (from the
//! change service's event feed).

use std::time::Duration;

use prost::Message;
use sea_orm::DatabaseTransaction;
use tonic::transport::Channel;

use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{Change, ChangeChanged, ChangeState, ChangeType, CreateChangeRequest};
use itsm_proto::events::Event;
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::{CallContext, Error, Settings};

use crate::domain::problem::ProblemState;
use crate::repo::Repository;
use crate::repo::problems::transition;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The consumer's name, which keys its cursor.
pub const CONSUMER: &str = "incident/change-events";

/// Calls the change service.
#[derive(Clone)]
pub struct ChangeDesk {
    channel: Option<Channel>,
    internal_token: String,
}

impl ChangeDesk {
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let channel = itsm_runtime::upstream::channel(&settings.upstream.change, "upstream.change")?;
        Ok(Self { channel, internal_token: settings.auth.internal_token.clone() })
    }

    pub fn channel(&self) -> Option<Channel> {
        self.channel.clone()
    }

    /// Creates the change (idempotent by `request_id`) as the caller and returns its name.
    pub async fn create(&self, ctx: &CallContext, change: Change, request_id: &str) -> Result<String, Error> {
        let Some(channel) = &self.channel else {
            return Err(Error::Unavailable("the change service is not configured (upstream.change)".into()));
        };
        let mut request = tonic::Request::new(CreateChangeRequest {
            change: Some(change),
            request_id: request_id.to_string(),
        });
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        let created =
            ChangeServiceClient::new(channel.clone()).create_change(request).await.map_err(|status| {
                let message = format!("the change service refused the change: {}", status.message());
                match status.code() {
                    tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                        Error::FailedPrecondition(message)
                    }
                    tonic::Code::AlreadyExists => Error::AlreadyExists(message),
                    tonic::Code::PermissionDenied => Error::PermissionDenied(message),
                    code => Error::Unavailable(format!(
                        "the change service could not answer ({code:?}): {}",
                        status.message()
                    )),
                }
            })?;
        Ok(created.into_inner().name)
    }
}

/// The change a problem's RaiseChange asks for.
pub fn change_for(problem: &crate::entity::problem::Model, short: &str, description: &str) -> Change {
    let name = format!("{}{}", crate::convert::PROBLEM_PREFIX, problem.number);
    let short = if short.trim().is_empty() {
        format!("Fix {}: {}", problem.number, problem.short_description)
    } else {
        short.trim().to_string()
    };
    let mut text = description.trim().to_string();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(&format!("Root cause ({name}): {}", problem.root_cause));
    Change {
        r#type: ChangeType::Normal as i32,
        short_description: short.chars().take(300).collect(),
        description: text,
        justification: format!("Removes the root cause of {name}"),
        configuration_items: crate::convert::list_from(&problem.configuration_items),
        problem: name,
        ..Default::default()
    }
}

/// Resolves the problem behind a change once the change is implemented (IMPLEMENT -> REVIEW).
pub struct ImplementedChanges {
    pub repo: Repository,
}

#[tonic::async_trait]
impl EventHandler for ImplementedChanges {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = ChangeChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(change) = changed.change else { return Ok(()) };
        let implemented = changed.previous_state == ChangeState::Implement as i32
            && change.state == ChangeState::Review as i32;
        if !implemented {
            return Ok(());
        }
        let Some(problem) = Repository::problem_for_change(txn, &event.tenant, &change.name).await? else {
            return Ok(());
        };
        if ProblemState::from_i32(problem.state) != Some(ProblemState::FixInProgress) {
            return Ok(());
        }
        let note = format!("Fixed by {} ({}), implemented", change.name, change.short_description);
        let mut after = problem.clone();
        transition(&mut after, ProblemState::Resolved)?;
        if after.resolution_notes.is_empty() {
            after.resolution_notes.clone_from(&note);
        }
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        self.repo.store_problem(txn, &ctx, &problem, after, "resolve", &note).await?;
        Ok(())
    }
}
