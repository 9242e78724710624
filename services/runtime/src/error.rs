//! One error type for every service, mapped to `tonic::Status` in one place.

use std::fmt;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field of a request (becomes a `google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects field violations while a handler validates a request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Adds a violation when `condition` is false.
    pub fn check(&mut self, condition: bool, field: &str, description: &str) {
        if !condition {
            self.add(field, description);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was found, the `InvalidArgument` error otherwise.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(self.0)) }
    }
}

/// Every failure a service can report. Handlers return it; `From<Error> for Status` is the one
/// place where it becomes a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// An illegal state change; the message says which changes are legal.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A stale etag or a lost race.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (the database, another service) cannot be reached now; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state on our side; never something the caller did.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(violations: &[FieldViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

/// Most bytes of a status message, of one field or description in the details, and of all the
/// details: they travel in HTTP/2 trailers, and an answer that echoes a huge input (an unknown
/// 200 KiB class name) must not grow past the peer's header limit and turn into a broken stream.
const MAX_MESSAGE: usize = 1024;
const MAX_DETAIL_TEXT: usize = 256;
const MAX_DETAILS: usize = 4096;

/// `text` cut to at most `max` bytes on a character boundary, saying how long it was.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(violations) => {
                let message = bounded(&format!("invalid argument: {}", join(&violations)), MAX_MESSAGE);
                let mut kept = Vec::new();
                let mut size = 0;
                for (i, v) in violations.iter().enumerate() {
                    let (field, description) =
                        (bounded(&v.field, MAX_DETAIL_TEXT), bounded(&v.description, MAX_DETAIL_TEXT));
                    size += field.len() + description.len();
                    if size > MAX_DETAILS {
                        kept.push(tonic_types::FieldViolation::new(
                            "…",
                            format!("{} more violations left out", violations.len() - i),
                        ));
                        break;
                    }
                    kept.push(tonic_types::FieldViolation::new(field, description));
                }
                let details = ErrorDetails::with_bad_request(kept);
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::Internal(detail) => {
                // The detail can hold SQL or internal state: log it, do not send it.
                tracing::error!(error = %detail, "internal error");
                tonic::Status::internal("internal error")
            }
            other => tonic::Status::new(other.code(), bounded(&other.to_string(), MAX_MESSAGE)),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        crate::db::classify_db_error(err)
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

/// Result alias used by handlers and repositories.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status: tonic::Status = Error::invalid("configuration_item.display_name", "is required").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), 1);
        assert_eq!(bad_request.field_violations[0].field, "configuration_item.display_name");
    }

    #[test]
    fn statuses_stay_small_whatever_they_echo() {
        let huge = "é".repeat(100_000);
        let mut violations: Vec<FieldViolation> =
            (0..100).map(|i| FieldViolation::new(format!("f{i}"), format!("unknown class {huge}"))).collect();
        violations.push(FieldViolation::new(huge.clone(), "x"));
        let status: tonic::Status = Error::InvalidArgument(violations).into();
        assert!(status.message().len() < MAX_MESSAGE + 64, "{}", status.message().len());
        assert!(status.message().ends_with("bytes)"));
        let details = status.get_error_details();
        let list = &details.bad_request().expect("bad request").field_violations;
        let size: usize = list.iter().map(|v| v.field.len() + v.description.len()).sum();
        assert!(size < MAX_DETAILS + 2 * MAX_DETAIL_TEXT, "{size}");
        assert_eq!(list[0].field, "f0", "the first violations are kept");
        assert!(list.last().expect("some").description.ends_with("more violations left out"));
        let status: tonic::Status = Error::NotFound(huge).into();
        assert!(status.message().len() < MAX_MESSAGE + 64);
        let short: tonic::Status = Error::invalid("a", "is required").into();
        assert_eq!(short.message(), "invalid argument: a: is required");
    }

    #[test]
    fn internal_detail_is_not_sent_to_the_caller() {
        let status: tonic::Status = Error::Internal("SELECT secret FROM x".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn violations_collect_and_fail_once() {
        let mut v = Violations::new();
        v.check(true, "a", "fine");
        v.check(false, "b", "bad");
        v.add("c", "also bad");
        match v.into_result() {
            Err(Error::InvalidArgument(list)) => assert_eq!(list.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
    }
}
