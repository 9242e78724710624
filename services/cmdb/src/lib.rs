//! The CMDB service: configuration items, their history and (growing) relationships.
//!
//! `serve` runs it on a listener until `shutdown` completes; the `itsm` binary and the tests
//! call it the same way.

pub mod api;
pub mod change_feed;
pub mod convert;
pub mod domain;
pub mod entity;
pub mod import;
pub mod migration;
pub mod repo;

use std::future::Future;

use futures::FutureExt;
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
    // Changes implemented on CIs are recorded in their history (when the change service is known).
    let change_feed = itsm_runtime::upstream::channel(&settings.upstream.change, "upstream.change")?;
    let mut consumer_options = itsm_runtime::consumer::ConsumerOptions::new(change_feed::CONSUMER);
    consumer_options.types = change_feed::event_types();
    consumer_options.internal_token.clone_from(&settings.auth.internal_token);
    let shutdown = shutdown.shared();
    let consumer_stop = shutdown.clone();
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let repo = repo::Repository::new(state.db.clone(), state.feed.clone());
            if let Some(channel) = change_feed {
                let handler = change_feed::ChangeFeed { repo: repo.clone() };
                let consumer = itsm_runtime::consumer::EventConsumer::new(
                    consumer_options,
                    state.db.clone(),
                    channel,
                    handler,
                )
                .notifying(state.feed.clone());
                tokio::spawn(consumer.run(consumer_stop));
            }
            let api = api::CmdbApi { repo, page_tokens: state.page_tokens.clone() };
            server.add_service(
                CmdbServiceServer::new(api).max_decoding_message_size(max).max_encoding_message_size(max),
            )
        },
    )
    .await
}
