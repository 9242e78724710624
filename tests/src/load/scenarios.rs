//! Scenarios 1 to 3: CreateIncident with two CIs through the gateway (the CMDB validates them),
//! the same call straight to the incident service (the gateway's overhead is the difference),
//! and GetIncidentOverview (the gateway's composite view fanning out to four services).

use tonic::transport::{Channel, Endpoint};

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::gateway::GetIncidentOverviewRequest;
use itsm_proto::gateway::overview_service_client::OverviewServiceClient;
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, Incident};

use super::{LoadOptions, LoadResult, run_load};
use crate::{Suite, authed};

/// Tenant the benchmark's records live in.
pub const TENANT: &str = "bench";

/// `count` separate HTTP/2 connections to `url`.
pub async fn connect(url: &str, count: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Creates one server CI per name through `gateway`; their names.
pub async fn create_servers(gateway: &Channel, token: &str, names: &[&str]) -> Result<Vec<String>, String> {
    let mut cis = Vec::new();
    for name in names {
        let request = CreateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                display_name: (*name).into(),
                ci_class: "server".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        };
        let created = CmdbServiceClient::new(gateway.clone())
            .create_configuration_item(authed(request, token))
            .await
            .map_err(|e| format!("create CI: {e}"))?;
        cis.push(created.into_inner().name);
    }
    Ok(cis)
}

/// The incident every CreateIncident scenario creates: medium impact and urgency, on `cis`.
pub fn incident_on(cis: &[String]) -> CreateIncidentRequest {
    CreateIncidentRequest {
        incident: Some(Incident {
            short_description: "Checkout is slow for some customers".into(),
            configuration_items: cis.to_vec(),
            impact: 2,
            urgency: 2,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// What scenarios 1 to 3 share: connections, a token and two CIs.
pub struct Fixture {
    pub token: String,
    pub gateway: Vec<Channel>,
    pub incident_service: Vec<Channel>,
    pub cis: Vec<String>,
}

impl Fixture {
    pub async fn new(suite: &Suite, connections: usize) -> Result<Self, String> {
        let token = suite.token("bench", TENANT, &["admin"]).map_err(|e| e.to_string())?;
        let gateway = connect(&suite.gateway.url(), connections).await?;
        let incident_url = suite.service("incident").ok_or("the suite has no incident service")?.url();
        let incident_service = connect(&incident_url, connections).await?;
        let cis = create_servers(&gateway[0], &token, &["bench-web-01", "bench-db-01"]).await?;
        Ok(Self { token, gateway, incident_service, cis })
    }

    fn incident(&self) -> CreateIncidentRequest {
        incident_on(&self.cis)
    }

    /// Scenario 1: CreateIncident with two CIs through the gateway.
    pub async fn create_incident_through_gateway(&self, options: &LoadOptions) -> Result<LoadResult, String> {
        let (channels, token, request) = (self.gateway.clone(), self.token.clone(), self.incident());
        run_load("1. CreateIncident via gateway", options, move |connection| {
            let channel = channels[connection % channels.len()].clone();
            let request = authed(request.clone(), &token);
            async move {
                IncidentServiceClient::new(channel)
                    .create_incident(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }

    /// Scenario 2: the same call straight to the incident service (as the gateway makes it).
    pub async fn create_incident_directly(&self, options: &LoadOptions) -> Result<LoadResult, String> {
        let (channels, request) = (self.incident_service.clone(), self.incident());
        run_load("2. CreateIncident direct", options, move |connection| {
            let channel = channels[connection % channels.len()].clone();
            let request = itsm_runtime::testing::with_context(request.clone(), TENANT, "bench");
            async move {
                IncidentServiceClient::new(channel)
                    .create_incident(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }

    /// Scenario 3: GetIncidentOverview of one incident (incident, CIs, SLA clocks, tickets, changes).
    pub async fn incident_overview(&self, options: &LoadOptions) -> Result<LoadResult, String> {
        let created = IncidentServiceClient::new(self.gateway[0].clone())
            .create_incident(authed(self.incident(), &self.token))
            .await
            .map_err(|e| format!("create incident: {e}"))?
            .into_inner();
        let (channels, token, name) = (self.gateway.clone(), self.token.clone(), created.name);
        run_load("3. GetIncidentOverview", options, move |connection| {
            let channel = channels[connection % channels.len()].clone();
            let request = authed(GetIncidentOverviewRequest { name: name.clone() }, &token);
            async move {
                OverviewServiceClient::new(channel)
                    .get_incident_overview(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }
}
