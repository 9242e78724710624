//! A CMDB and an incident service on port 0, each with a fresh database, and clients that call
//! them as the gateway would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::problem_service_client::ProblemServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, Incident};
use itsm_runtime::Settings;
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

pub const TENANT: &str = "acme";

pub struct Suite {
    /// Set when started with the change service.
    pub changes: Option<ChangeServiceClient<Channel>>,
    pub incidents: IncidentServiceClient<Channel>,
    pub problems: ProblemServiceClient<Channel>,
    pub cmdb: CmdbServiceClient<Channel>,
    pub incident_server: RunningServer,
    pub cmdb_server: Option<RunningServer>,
    pub incident_db: TestDatabase,
    _cmdb_db: TestDatabase,
    _change: Option<(RunningServer, TestDatabase)>,
}

pub async fn start(backend: TestBackend) -> Suite {
    start_with(backend, |_| {}).await
}

/// Starts the CMDB, the change service and the incident service.
pub async fn start_with_changes(backend: TestBackend) -> Suite {
    start_all(backend, true, |_| {}).await
}

/// Starts the CMDB and the incident service; `tune` adjusts the incident service's settings.
pub async fn start_with(backend: TestBackend, tune: impl FnOnce(&mut Settings)) -> Suite {
    start_all(backend, false, tune).await
}

async fn start_all(backend: TestBackend, with_changes: bool, tune: impl FnOnce(&mut Settings)) -> Suite {
    let cmdb_db = TestDatabase::create(backend).await.unwrap();
    let cmdb_settings = settings_for(&cmdb_db.url);
    let cmdb_server =
        RunningServer::start(move |l, s| itsm_cmdb::serve(cmdb_settings, l, s.wait())).await.unwrap();
    let change = if with_changes {
        let db = TestDatabase::create(backend).await.unwrap();
        let mut settings = settings_for(&db.url);
        settings.upstream.cmdb = cmdb_server.url();
        let server =
            RunningServer::start(move |l, s| itsm_change::serve(settings, l, s.wait())).await.unwrap();
        Some((server, db))
    } else {
        None
    };
    let incident_db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&incident_db.url);
    settings.upstream.cmdb = cmdb_server.url();
    if let Some((server, _)) = &change {
        settings.upstream.change = server.url();
    }
    tune(&mut settings);
    let incident_server =
        RunningServer::start(move |l, s| itsm_incident::serve(settings, l, s.wait())).await.unwrap();
    let channel = internal_channel(&incident_server.url()).await.unwrap();
    let changes = match &change {
        Some((server, _)) => Some(ChangeServiceClient::new(internal_channel(&server.url()).await.unwrap())),
        None => None,
    };
    Suite {
        changes,
        _change: change,
        incidents: IncidentServiceClient::new(channel.clone()),
        problems: ProblemServiceClient::new(channel),
        cmdb: CmdbServiceClient::new(internal_channel(&cmdb_server.url()).await.unwrap()),
        incident_server,
        cmdb_server: Some(cmdb_server),
        incident_db,
        _cmdb_db: cmdb_db,
    }
}

/// A request as the gateway would send it for `alice` of tenant `acme`.
pub fn req<T>(message: T) -> tonic::Request<T> {
    with_context(message, TENANT, "alice")
}

pub fn as_user<T>(message: T, principal: &str) -> tonic::Request<T> {
    with_context(message, TENANT, principal)
}

impl Suite {
    /// Creates a CI in the CMDB and returns its name.
    pub async fn ci(&mut self, name: &str, class: &str) -> String {
        let ci =
            ConfigurationItem { display_name: name.into(), ci_class: class.into(), ..Default::default() };
        self.cmdb
            .create_configuration_item(req(CreateConfigurationItemRequest {
                configuration_item: Some(ci),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    pub async fn create(&mut self, incident: Incident) -> Incident {
        self.incidents
            .create_incident(req(CreateIncidentRequest {
                incident: Some(incident),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

pub fn incident(text: &str, cis: &[&str]) -> Incident {
    Incident {
        short_description: text.into(),
        configuration_items: cis.iter().map(|c| (*c).to_string()).collect(),
        impact: 2,
        urgency: 2,
        category: "software".into(),
        ..Default::default()
    }
}

/// The fields of an INVALID_ARGUMENT's violations, sorted.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}
