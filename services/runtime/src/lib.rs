//! Shared runtime of the ITSM services. No domain logic lives here.
//!
//! - [`config`]: layered, typed configuration;
//! - [`telemetry`]: logs, OTLP traces and metrics;
//! - [`otlp_receiver`]: an in-process OTLP collector for tests and benchmarks;
//! - [`server`]: gRPC server bootstrap with health, reflection and graceful shutdown;
//! - [`db`]: database connection and error classification;
//! - [`error`]: the one error type and its mapping to `tonic::Status`;
//! - [`paging`]: signed page tokens and page sizes;
//! - [`history`]: what changed in a record, who, when and why;
//! - [`search`]: full-text search documents (SQLite FTS5, PostgreSQL tsvector);
//! - [`sql_filter`]: AIP-160 filters as SQL conditions;
//! - [`idempotency`]: `request_id` handling for creates;
//! - [`numbers`]: human numbers per tenant (`INC0001234`);
//! - [`outbox`]: transactional outbox and the `EventService` feed;
//! - [`consumer`]: exactly-once-in-effect event consumers with a lease;
//! - [`context`]: tenant and principal of a call;
//! - [`upstream`]: channels to the other services;
//! - [`testing`]: fresh databases and servers on port 0 for tests.

pub mod bulk;
pub mod config;
pub mod consumer;
pub mod context;
pub mod db;
pub mod documents;
pub mod error;
pub mod fieldmask;
pub mod filter;
pub mod history;
pub mod idempotency;
pub mod keyset;
pub mod numbers;
pub mod otlp_receiver;
pub mod outbox;
pub mod paging;
pub mod rpc_table;
pub mod schema;
pub mod search;
pub mod server;
pub mod service;
pub mod sql_filter;
pub mod structs;
pub mod telemetry;
pub mod testing;
pub mod upstream;
pub mod validate;

pub use config::Settings;
pub use context::CallContext;
pub use error::{Error, Result};
