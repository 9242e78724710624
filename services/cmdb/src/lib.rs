//! The CMDB service: configuration items, their history and (growing) relationships.
//!
//! `serve` runs it on a listener until `shutdown` completes; the `itsm` binary and the tests
//! call it the same way.

pub mod api;
pub mod convert;
pub mod domain;
pub mod entity;
pub mod import;
pub mod migration;
pub mod repo;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::cmdb::cmdb_service_server::CmdbServiceServer;
use itsm_runtime::{Error, Settings};

/// Process name, used in logs and telemetry.
pub const SERVICE: &str = "cmdb";

/// Runs the CMDB on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let max = settings.server.max_message_bytes;
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let api = api::CmdbApi {
                repo: repo::Repository { db: state.db.clone(), feed: state.feed.clone() },
                page_tokens: state.page_tokens.clone(),
            };
            server.add_service(
                CmdbServiceServer::new(api).max_decoding_message_size(max).max_encoding_message_size(max),
            )
        },
    )
    .await
}
