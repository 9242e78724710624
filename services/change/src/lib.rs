//! Change and release management (`itsm.change.v1`).
//!
//! Changes (state machine, risk that explains itself, approval policy with separation of duties,
//! schedule conflicts on shared CIs, blackout windows, CanDeploy), VCS changesets, and releases
//! deployed stage by stage through gates.

pub mod api;
pub mod changesets;
pub mod convert;
pub mod domain;
pub mod entity;
pub mod governance;
pub mod import;
pub mod migration;
pub mod records;
pub mod releases;
pub mod repo;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::change::change_service_server::ChangeServiceServer;
use itsm_proto::change::release_service_server::ReleaseServiceServer;
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "change";

/// Runs the change service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let cmdb = itsm_cmdb_client::CmdbDirectory::from_settings(&settings)?;
    let max = settings.server.max_message_bytes;
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let api = std::sync::Arc::new(api::ChangeApi {
                repo: repo::Repository { db: state.db.clone(), feed: state.feed.clone() },
                cmdb,
                page_tokens: state.page_tokens.clone(),
            });
            let releases = releases::ReleaseApi {
                releases: releases::Releases { db: state.db.clone(), feed: state.feed.clone() },
                changes: api.clone(),
                page_tokens: state.page_tokens.clone(),
            };
            server
                .add_service(
                    ChangeServiceServer::from_arc(api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
                .add_service(
                    ReleaseServiceServer::new(releases)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
        },
    )
    .await
}
