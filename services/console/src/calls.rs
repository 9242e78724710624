//! Calls to the gateway: every request carries the user's bearer token, the trace context and a
//! deadline, exactly as any other client's would; every failure becomes a page or a form error.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;

use crate::forms::FormErrors;
use crate::pages::PageError;
use crate::session::SessionData;

/// How long one call may take before the page gives up (the gateway's own limit is longer).
const CALL_DEADLINE: Duration = Duration::from_secs(15);

/// The gateway's public gRPC endpoint, as the console reaches it.
#[derive(Clone)]
pub struct Gateway {
    channel: Channel,
}

impl Gateway {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    pub fn desk(&self) -> ServiceDeskServiceClient<Channel> {
        ServiceDeskServiceClient::new(self.channel.clone())
    }

    pub fn incidents(&self) -> IncidentServiceClient<Channel> {
        IncidentServiceClient::new(self.channel.clone())
    }

    pub fn problems(&self) -> itsm_proto::incident::problem_service_client::ProblemServiceClient<Channel> {
        itsm_proto::incident::problem_service_client::ProblemServiceClient::new(self.channel.clone())
    }

    pub fn changes(&self) -> itsm_proto::change::change_service_client::ChangeServiceClient<Channel> {
        itsm_proto::change::change_service_client::ChangeServiceClient::new(self.channel.clone())
    }

    pub fn cmdb(&self) -> itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient<Channel> {
        itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient::new(self.channel.clone())
    }

    pub fn overview(&self) -> itsm_proto::gateway::overview_service_client::OverviewServiceClient<Channel> {
        itsm_proto::gateway::overview_service_client::OverviewServiceClient::new(self.channel.clone())
    }

    /// The gateway channel, for the delivery services' clients
    /// (`itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient::new(..)`, …).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Service level management: SLOs with their error budget now and over time
    /// (`GetSloBudgetHistory`), agreements and their reports.
    pub fn service_levels(
        &self,
    ) -> itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient<Channel> {
        itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient::new(self.channel())
    }
}

/// `message` as a request with `token` as its bearer token, the current trace context and the
/// console's deadline. A token metadata cannot carry goes without (the call is then
/// UNAUTHENTICATED).
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    itsm_runtime::telemetry::inject_into_metadata(request.metadata_mut());
    request
}

/// `message` as a request of the signed-in user.
pub fn authed<T>(session: &SessionData, message: T) -> tonic::Request<T> {
    with_token(&session.token, message)
}

/// The page a failed call ends in; UNAUTHENTICATED (the token expired or was revoked) sends the
/// user to sign in and back to `next`.
pub fn page_error(status: &Status, next: &str) -> PageError {
    match status.code() {
        Code::Unauthenticated => PageError::SignIn { next: next.to_string() },
        Code::NotFound => PageError::NotFound(status.message().to_string()),
        Code::PermissionDenied => PageError::Forbidden(status.message().to_string()),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            PageError::Unavailable(status.message().to_string())
        }
        Code::InvalidArgument | Code::OutOfRange => PageError::BadRequest(status.message().to_string()),
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => {
            PageError::Conflict(status.message().to_string())
        }
        _ => {
            tracing::error!(code = ?status.code(), message = status.message(), "console call failed");
            PageError::Internal
        }
    }
}

/// What a form shows for a failed call: INVALID_ARGUMENT's field violations next to their fields
/// (mapped by `field_for`), FAILED_PRECONDITION, ABORTED (a stale etag) and ALREADY_EXISTS at the
/// top of the form. Anything else is a page ([`page_error`]).
pub fn form_errors(
    status: &Status,
    next: &str,
    field_for: &dyn Fn(&str) -> Option<String>,
) -> Result<FormErrors, PageError> {
    match status.code() {
        Code::InvalidArgument => {
            let violations = status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
            if violations.is_empty() {
                let mut errors = FormErrors::default();
                errors.add_form(status.message());
                return Ok(errors);
            }
            let pairs = violations.iter().map(|v| (v.field.as_str(), v.description.as_str()));
            Ok(FormErrors::from_violations(pairs, field_for))
        }
        Code::FailedPrecondition | Code::AlreadyExists => {
            let mut errors = FormErrors::default();
            errors.add_form(status.message());
            Ok(errors)
        }
        Code::Aborted => {
            let mut errors = FormErrors::default();
            errors.add_form("The record changed while you were looking at it. Check it and try again.");
            Ok(errors)
        }
        _ => Err(page_error(status, next)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_maps_violations_to_fields() {
        let details = tonic_types::ErrorDetails::with_bad_request(vec![
            tonic_types::FieldViolation::new("ticket.short_description", "is required"),
            tonic_types::FieldViolation::new("request_id", "must be a UUID"),
        ]);
        let status = Status::with_error_details(Code::InvalidArgument, "invalid argument", details);
        let errors = form_errors(&status, "/x", &|path| {
            (path == "ticket.short_description").then_some("short_description".to_string())
        })
        .unwrap();
        assert_eq!(errors.fields.get("short_description").map(String::as_str), Some("is required"));
        assert_eq!(errors.form, ["request_id: must be a UUID"]);
    }

    #[test]
    fn states_and_stale_etags_go_on_top_and_the_rest_to_pages() {
        let none = |_: &str| -> Option<String> { None };
        let errors = form_errors(&Status::failed_precondition("tier 3 is the top"), "/x", &none).unwrap();
        assert_eq!(errors.form, ["tier 3 is the top"]);
        let errors = form_errors(&Status::aborted("stale etag"), "/x", &none).unwrap();
        assert!(errors.form[0].contains("changed"));
        let errors = form_errors(&Status::invalid_argument("bad"), "/x", &none).unwrap();
        assert_eq!(errors.form, ["bad"]);
        assert_eq!(
            form_errors(&Status::unauthenticated("expired"), "/portal", &none).unwrap_err(),
            PageError::SignIn { next: "/portal".into() }
        );
        assert_eq!(page_error(&Status::not_found("x"), "/"), PageError::NotFound("x".into()));
        assert_eq!(page_error(&Status::permission_denied("no"), "/"), PageError::Forbidden("no".into()));
        assert_eq!(page_error(&Status::unavailable("down"), "/"), PageError::Unavailable("down".into()));
        assert_eq!(page_error(&Status::internal("boom"), "/"), PageError::Internal);
    }

    #[test]
    fn requests_carry_the_bearer_token_and_a_deadline() {
        let request = with_token("abc.def.ghi", ());
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer abc.def.ghi");
        assert!(request.metadata().get("grpc-timeout").is_some());
    }
}
