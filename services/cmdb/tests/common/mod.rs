//! A CMDB server on port 0 with a fresh database, and a client that calls it as the gateway would.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use tonic::transport::Channel;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_runtime::testing::{RunningServer, TestBackend, TestDatabase, internal_channel, settings_for};

pub struct Cmdb {
    pub server: RunningServer,
    pub client: CmdbServiceClient<Channel>,
    _db: TestDatabase,
}

pub async fn start(backend: TestBackend) -> Cmdb {
    let db = TestDatabase::create(backend).await.unwrap();
    let settings = settings_for(&db.url);
    let server =
        RunningServer::start(move |listener, shutdown| itsm_cmdb::serve(settings, listener, shutdown.wait()))
            .await
            .unwrap();
    let client = CmdbServiceClient::new(internal_channel(&server.url()).await.unwrap());
    Cmdb { server, client, _db: db }
}

impl Cmdb {
    /// A second CMDB server on the same database, as another replica would run.
    pub async fn replica(&self) -> (RunningServer, CmdbServiceClient<Channel>) {
        let settings = settings_for(&self._db.url);
        let server = RunningServer::start(move |listener, shutdown| {
            itsm_cmdb::serve(settings, listener, shutdown.wait())
        })
        .await
        .unwrap();
        let client = CmdbServiceClient::new(internal_channel(&server.url()).await.unwrap());
        (server, client)
    }
}
