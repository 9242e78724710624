//! The baselines every figure is compared with, measured in the same run on the same machine: a
//! raw tonic service that answers at once (echo), and a raw tonic service that does one
//! PostgreSQL insert per call. Both implement the small `EventService.GetFeedInfo` unary call, so
//! the client side is the same generated code as everywhere else.

use std::pin::Pin;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::events::event_service_server::{EventService, EventServiceServer};
use itsm_proto::events::{GetFeedInfoRequest, GetFeedInfoResponse, WatchEventsRequest, WatchEventsResponse};
use itsm_runtime::testing::{RunningServer, TestBackend, TestDatabase};

use super::{LoadOptions, LoadResult, run_load};

/// Echo, or one INSERT per call.
#[derive(Clone)]
struct Baseline {
    db: Option<DatabaseConnection>,
}

type NoStream = Pin<Box<dyn futures::Stream<Item = Result<WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Baseline {
    async fn watch_events(
        &self,
        _request: Request<WatchEventsRequest>,
    ) -> Result<Response<NoStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn get_feed_info(
        &self,
        _request: Request<GetFeedInfoRequest>,
    ) -> Result<Response<GetFeedInfoResponse>, Status> {
        let Some(db) = &self.db else { return Ok(Response::new(GetFeedInfoResponse { last_sequence: 0 })) };
        let id = uuid::Uuid::now_v7().to_string();
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO baseline_rows (id, body, create_time) VALUES ($1, $2, $3)",
            [id.into(), "a short description of about the size of an incident's".into(), 0i64.into()],
        ))
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(GetFeedInfoResponse { last_sequence: 1 }))
    }
}

/// A running baseline server and its database (the insert baseline).
pub struct BaselineServer {
    server: RunningServer,
    _db: Option<TestDatabase>,
}

impl BaselineServer {
    /// The echo baseline.
    pub async fn echo() -> Result<Self, String> {
        Self::start(None, None).await
    }

    /// The insert baseline, on a fresh PostgreSQL database.
    pub async fn insert() -> Result<Self, String> {
        let database = TestDatabase::create(TestBackend::Postgres).await.map_err(|e| e.to_string())?;
        let db = itsm_runtime::db::connect(&itsm_runtime::testing::settings_for(&database.url).database)
            .await
            .map_err(|e| e.to_string())?;
        db.execute_unprepared("CREATE TABLE baseline_rows (id TEXT PRIMARY KEY, body TEXT NOT NULL, create_time BIGINT NOT NULL)")
            .await
            .map_err(|e| e.to_string())?;
        Self::start(Some(db), Some(database)).await
    }

    async fn start(db: Option<DatabaseConnection>, database: Option<TestDatabase>) -> Result<Self, String> {
        let service = Baseline { db };
        let server = RunningServer::start(move |listener, shutdown| async move {
            // Health only so the harness can see it is up; the load never calls it.
            let (_reporter, health) = tonic_health::server::health_reporter();
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(EventServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    shutdown.wait(),
                )
                .await
                .map_err(|e| itsm_runtime::Error::Internal(e.to_string()))
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(Self { server, _db: database })
    }

    /// Loads the baseline with `options` on `options.connections` connections.
    pub async fn measure(&self, scenario: &str, options: &LoadOptions) -> Result<LoadResult, String> {
        let channels = super::scenarios::connect(&self.server.url(), options.connections).await?;
        run_load(scenario, options, move |connection| {
            let channel: Channel = channels[connection % channels.len()].clone();
            async move {
                EventServiceClient::new(channel)
                    .get_feed_info(Request::new(GetFeedInfoRequest {}))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }
}
