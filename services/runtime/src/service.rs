//! What every service needs before it serves: a migrated database, its event feed and its page
//! token signer.

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::config::Settings;
use crate::db;
use crate::error::Error;
use crate::outbox::EventFeed;
use crate::paging::PageTokens;

/// The shared parts of a running service.
#[derive(Clone)]
pub struct ServiceState {
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub feed: EventFeed,
    pub page_tokens: PageTokens,
}

impl ServiceState {
    /// Connects (retrying while the database is not reachable) and runs `M`'s migrations when
    /// `database.migrate_on_start` is set.
    pub async fn start<M: MigratorTrait>(settings: &Settings) -> Result<Self, Error> {
        let db = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            migrate::<M>(&db).await?;
        }
        Ok(Self {
            settings: settings.clone(),
            feed: EventFeed::new(db.clone()),
            page_tokens: PageTokens::new(&settings.paging.token_secret),
            db,
        })
    }
}

/// Runs pending migrations.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), Error> {
    M::up(db, None).await.map_err(|err| {
        if db::is_connection_error(&err) {
            Error::Unavailable(format!("database unavailable during migration: {err}"))
        } else {
            Error::Internal(format!("migration failed: {err}"))
        }
    })
}

/// Starts a service: connects and migrates its database, lets `build` add its gRPC services to
/// the server (which already has health, reflection and the service's own event feed), and
/// serves on `listener` until `shutdown` completes.
pub async fn run<M: MigratorTrait>(
    name: &'static str,
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    build: impl FnOnce(crate::server::GrpcServer, &ServiceState) -> crate::server::GrpcServer,
) -> Result<(), Error> {
    let state = ServiceState::start::<M>(&settings).await?;
    db::observe_pool(name, &state.db);
    let max = settings.server.max_message_bytes;
    let server = crate::server::GrpcServer::new(name, &settings)
        .add_service(state.feed.service().max_decoding_message_size(max).max_encoding_message_size(max));
    build(server, &state).serve(listener, shutdown).await
}
