//! Tenancy and authorisation under load, through the gateway on SQLite and PostgreSQL (issue 14):
//! a second tenant's load never sees or changes the first's data.
//!
//! Two tenants, acme and globex, run the same load at the same time: per tenant four tasks, each
//! iteration creating a CI and an incident on it (with the same request_ids in both tenants, as
//! idempotency keys are the tenant's own), finding both again by filter and by name, and updating
//! the incident with the etag it read — half the tasks as an agent, half as an admin. In every
//! iteration each task also aims at the other tenant's records: reading or updating the other's CI
//! by name is NOT_FOUND (never OK, never PERMISSION_DENIED, also with a smuggled `x-itsm-tenant`
//! header), listing by its display name or by its CI finds none of the other's records, and an
//! incident in the task's own tenant on the other's CI is INVALID_ARGUMENT (that CI does not exist
//! there). Incident names are numbers counted per tenant — `incidents/INC0000001` exists in both
//! tenants, each meaning its own — so reading the other tenant's incident name answers NOT_FOUND or
//! the caller's own incident of that number, and an update aimed at it (with an etag no record has)
//! is NOT_FOUND or ABORTED: never the other tenant's record, read or changed.
//!
//! After the load each tenant holds exactly the CIs and incidents it was acknowledged (paged
//! through in full), each incident as that tenant last wrote it, none carrying the other tenant's
//! name; every record of the other tenant is looked up by name once more, and a page token of one
//! tenant's listing is refused to the other.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tonic::Code;
use tonic::transport::Channel;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, GetConfigurationItemRequest,
    ListConfigurationItemsRequest, UpdateConfigurationItemRequest,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, GetIncidentRequest, Incident, ListIncidentsRequest, UpdateIncidentRequest,
};
use itsm_runtime::testing::TestBackend;

const TENANTS: [&str; 2] = ["acme", "globex"];
/// Tasks per tenant and iterations per task: 80 CIs and 80 incidents per tenant and about 2,500
/// calls in all, sized to stay under 20 s on SQLite in a debug build.
const TASKS: usize = 4;
const ITERATIONS: usize = 20;
/// An etag no record has (versions count up from 1): an update carrying it can never apply.
const NO_SUCH_ETAG: &str = "W/\"999999999\"";
/// Page size of the final listings: small, so they page.
const PAGE: i32 = 25;

/// One tenant's acknowledged CI with the incident on it, as the other tenant's tasks aim at them.
#[derive(Clone, Debug)]
struct Target {
    ci: String,
    ci_etag: String,
    ci_display_name: String,
    incident: String,
}

/// What a tenant's tasks have had acknowledged so far, shared with the other tenant's tasks.
type Acknowledged = Arc<Mutex<Vec<Target>>>;

/// An acknowledged CI and incident, with the incident's short description as last written.
#[derive(Debug)]
struct Written {
    ci: String,
    incident: String,
    short_description: String,
}

/// One tenant's side of the load.
#[derive(Clone)]
struct Tenant {
    name: &'static str,
    other: &'static str,
    admin: String,
    agent: String,
    mine: Acknowledged,
    theirs: Acknowledged,
}

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: vec![path.into()] })
}

/// The same request_id in both tenants for the same kind, task and iteration.
fn request_id(kind: u128, task: usize, iteration: usize) -> String {
    uuid::Uuid::from_u128((kind << 96) | ((task as u128) << 32) | iteration as u128).to_string()
}

fn new_ci(tenant: &str, display_name: &str, request_id: String) -> CreateConfigurationItemRequest {
    CreateConfigurationItemRequest {
        configuration_item: Some(ConfigurationItem {
            display_name: display_name.into(),
            ci_class: "server".into(),
            description: format!("owned by {tenant}"),
            ..Default::default()
        }),
        request_id,
    }
}

fn new_incident(short_description: String, ci: &str, request_id: String) -> CreateIncidentRequest {
    CreateIncidentRequest {
        incident: Some(Incident {
            short_description,
            configuration_items: vec![ci.to_string()],
            impact: 2,
            urgency: 2,
            ..Default::default()
        }),
        request_id,
    }
}

/// NOT_FOUND, and nothing else: another tenant's record does not exist for the caller.
fn expect_not_found<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) {
    match result {
        Err(status) if status.code() == Code::NotFound => {}
        other => panic!("{what}: expected NOT_FOUND, got {other:?}"),
    }
}

/// Every CI of the caller's tenant, page by page.
async fn all_cis(cmdb: &mut CmdbServiceClient<Channel>, token: &str) -> Vec<ConfigurationItem> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListConfigurationItemsRequest {
            page_size: PAGE,
            page_token: std::mem::take(&mut page_token),
            ..Default::default()
        };
        let page = cmdb.list_configuration_items(authed(request, token)).await.unwrap().into_inner();
        items.extend(page.configuration_items);
        if page.next_page_token.is_empty() {
            return items;
        }
        page_token = page.next_page_token;
    }
}

/// Every incident of the caller's tenant, page by page.
async fn all_incidents(incidents: &mut IncidentServiceClient<Channel>, token: &str) -> Vec<Incident> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListIncidentsRequest {
            page_size: PAGE,
            page_token: std::mem::take(&mut page_token),
            ..Default::default()
        };
        let page = incidents.list_incidents(authed(request, token)).await.unwrap().into_inner();
        items.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return items;
        }
        page_token = page.next_page_token;
    }
}

/// One task of one tenant: its own records, and an attempt on the other tenant's every iteration.
async fn load(tenant: Tenant, task: usize, channel: Channel) -> Vec<Written> {
    let Tenant { name, other, admin, agent, mine, theirs } = tenant;
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);
    // Even tasks work their incidents as an agent, odd ones as an admin. CIs are created by the
    // admin: the role table lets agents only read the CMDB.
    let worker = if task.is_multiple_of(2) { &agent } else { &admin };
    let mut written = Vec::with_capacity(ITERATIONS);
    for iteration in 0..ITERATIONS {
        let display_name = format!("{name}-t{task}-i{iteration}");
        let ci = cmdb
            .create_configuration_item(authed(
                new_ci(name, &display_name, request_id(1, task, iteration)),
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ci.display_name, display_name, "{name}: the create answered with another CI");
        assert_eq!(ci.description, format!("owned by {name}"));
        let incident = incidents
            .create_incident(authed(
                new_incident(
                    format!("{name}: {display_name} is down"),
                    &ci.name,
                    request_id(2, task, iteration),
                ),
                worker,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(incident.configuration_items, std::slice::from_ref(&ci.name), "{name}: {incident:?}");

        // Found again by filter and by name.
        let listed = cmdb
            .list_configuration_items(authed(
                ListConfigurationItemsRequest {
                    filter: format!("display_name = \"{display_name}\""),
                    ..Default::default()
                },
                worker,
            ))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = listed.configuration_items.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [ci.name.as_str()], "{name}: listing {display_name}");
        let listed = incidents
            .list_incidents(authed(
                ListIncidentsRequest {
                    filter: format!("configuration_items = \"{}\"", ci.name),
                    ..Default::default()
                },
                worker,
            ))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = listed.incidents.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, [incident.name.as_str()], "{name}: listing the incidents on {}", ci.name);
        let got = cmdb
            .get_configuration_item(authed(
                GetConfigurationItemRequest { name: ci.name.clone(), read_time: None },
                worker,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.display_name, display_name);
        let got = incidents
            .get_incident(authed(GetIncidentRequest { name: incident.name.clone() }, worker))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.short_description, incident.short_description);

        // Updated with the etag it was read with.
        let short_description = format!("{name}: {display_name} updated by task {task}");
        let updated = incidents
            .update_incident(authed(
                UpdateIncidentRequest {
                    incident: Some(Incident {
                        name: incident.name.clone(),
                        short_description: short_description.clone(),
                        etag: got.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask("short_description"),
                },
                worker,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.short_description, short_description);
        assert_ne!(updated.etag, got.etag);
        mine.lock().unwrap().push(Target {
            ci: ci.name.clone(),
            ci_etag: ci.etag.clone(),
            ci_display_name: display_name.clone(),
            incident: incident.name.clone(),
        });
        written.push(Written { ci: ci.name, incident: incident.name, short_description });

        // The other tenant's records, by turns the newest acknowledged and an older one, and by
        // turns as the admin and as the agent.
        let target = {
            let theirs = theirs.lock().unwrap();
            let at =
                if iteration % 2 == 0 { theirs.len() - 1 } else { (iteration * 7 + task) % theirs.len() };
            theirs[at].clone()
        };
        let prober = if iteration % 2 == 0 { &admin } else { &agent };
        let what = |action: &str| format!("{name} task {task} iteration {iteration}: {action} {target:?}");

        let mut request =
            authed(GetConfigurationItemRequest { name: target.ci.clone(), read_time: None }, prober);
        if iteration % 3 == 0 {
            // The gateway sets the tenant from the token: a smuggled header changes nothing.
            request.metadata_mut().insert("x-itsm-tenant", other.parse().unwrap());
        }
        expect_not_found(cmdb.get_configuration_item(request).await, &what("get their CI"));
        // As the admin, whom the role table lets change CIs: the answer is about the tenant, not
        // the role.
        let update = UpdateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                name: target.ci.clone(),
                description: format!("{name} was here"),
                etag: target.ci_etag.clone(),
                ..Default::default()
            }),
            update_mask: mask("description"),
        };
        expect_not_found(
            cmdb.update_configuration_item(authed(update, &admin)).await,
            &what("update their CI"),
        );
        // Listing by their display name finds only ours (both tenants have a "db-01").
        let listed = cmdb
            .list_configuration_items(authed(
                ListConfigurationItemsRequest {
                    filter: format!("display_name = \"{}\"", target.ci_display_name),
                    ..Default::default()
                },
                prober,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(
            listed
                .configuration_items
                .iter()
                .all(|c| c.name != target.ci && c.description == format!("owned by {name}")),
            "{}: {listed:?}",
            what("list by their display name")
        );
        // No incident of ours is on their CI, and none can be.
        let listed = incidents
            .list_incidents(authed(
                ListIncidentsRequest {
                    filter: format!("configuration_items = \"{}\"", target.ci),
                    ..Default::default()
                },
                prober,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.incidents.is_empty(), "{}: {listed:?}", what("list incidents on their CI"));
        let err = incidents
            .create_incident(authed(
                new_incident(format!("{name}: on {other}'s CI"), &target.ci, String::new()),
                prober,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}: {err:?}", what("an incident on their CI"));

        // Their incident's name: the same number may be one of ours, and then ours answers.
        match incidents
            .get_incident(authed(GetIncidentRequest { name: target.incident.clone() }, prober))
            .await
        {
            Ok(found) => {
                let found = found.into_inner();
                assert!(
                    found.short_description.starts_with(&format!("{name}: "))
                        && !found.short_description.contains(other)
                        && !found.configuration_items.contains(&target.ci),
                    "{}: {found:?}",
                    what("get their incident")
                );
            }
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{}: {status:?}", what("get their incident"));
            }
        }
        let update = UpdateIncidentRequest {
            incident: Some(Incident {
                name: target.incident.clone(),
                short_description: format!("{name} was here"),
                etag: NO_SUCH_ETAG.into(),
                ..Default::default()
            }),
            update_mask: mask("short_description"),
        };
        match incidents.update_incident(authed(update, prober)).await {
            Err(status) if matches!(status.code(), Code::NotFound | Code::Aborted) => {}
            other => {
                panic!("{}: expected NOT_FOUND or ABORTED, got {other:?}", what("update their incident"));
            }
        }
    }
    written
}

async fn a_second_tenants_load_never_sees_or_changes_the_first(backend: TestBackend) {
    // Thousands of calls from four principals in a few seconds: the rate limit is not what is tested.
    let suite = Suite::start_with(backend, |g| g.gateway.rate_limit_per_second = 0).await.unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let acknowledged: [Acknowledged; 2] = Default::default();
    let mut written: [Vec<Written>; 2] = [Vec::new(), Vec::new()];

    // Before the load, each tenant has a CI named "db-01" (display names are unique per tenant,
    // not across tenants) with an incident on it, so there is something to aim at from the start.
    let mut tenants = Vec::new();
    for (i, name) in TENANTS.into_iter().enumerate() {
        let admin = suite.token(&format!("ada-{name}"), name, &["admin"]).unwrap();
        let agent = suite.token(&format!("ann-{name}"), name, &["agent"]).unwrap();
        let ci = cmdb
            .create_configuration_item(authed(new_ci(name, "db-01", String::new()), &admin))
            .await
            .unwrap()
            .into_inner();
        let short_description = format!("{name}: db-01 is down");
        let incident = incidents
            .create_incident(authed(new_incident(short_description.clone(), &ci.name, String::new()), &agent))
            .await
            .unwrap()
            .into_inner();
        acknowledged[i].lock().unwrap().push(Target {
            ci: ci.name.clone(),
            ci_etag: ci.etag.clone(),
            ci_display_name: ci.display_name.clone(),
            incident: incident.name.clone(),
        });
        written[i].push(Written { ci: ci.name, incident: incident.name, short_description });
        tenants.push(Tenant {
            name,
            other: TENANTS[1 - i],
            admin,
            agent,
            mine: Arc::clone(&acknowledged[i]),
            theirs: Arc::clone(&acknowledged[1 - i]),
        });
    }

    let mut handles = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        for task in 0..TASKS {
            handles.push((i, tokio::spawn(load(tenant.clone(), task, channel.clone()))));
        }
    }
    for (i, handle) in handles {
        match handle.await {
            Ok(records) => written[i].extend(records),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    for (i, tenant) in tenants.iter().enumerate() {
        let (name, other) = (tenant.name, tenant.other);
        let (ours, theirs) = (&written[i], &written[1 - i]);
        assert_eq!(ours.len(), 1 + TASKS * ITERATIONS);

        // Exactly the acknowledged CIs, none of theirs, none touched by them.
        let cis = all_cis(&mut cmdb, &tenant.admin).await;
        let stored: HashSet<&str> = cis.iter().map(|c| c.name.as_str()).collect();
        let expected: HashSet<&str> = ours.iter().map(|w| w.ci.as_str()).collect();
        let foreign: HashSet<&str> = theirs.iter().map(|w| w.ci.as_str()).collect();
        assert_eq!(stored.len(), cis.len(), "{name}: a CI was listed twice");
        assert_eq!(cis.len(), ours.len(), "{name}: stored CIs against acknowledged creates");
        assert_eq!(stored, expected, "{name}: the stored CIs are the acknowledged ones");
        assert!(stored.is_disjoint(&foreign), "{name} lists {other}'s CIs");
        for ci in &cis {
            assert_eq!(ci.description, format!("owned by {name}"), "{name}: {ci:?}");
            assert!(!ci.display_name.contains(other), "{name}: {ci:?}");
        }

        // Exactly the acknowledged incidents, each as this tenant last wrote it.
        let listed = all_incidents(&mut incidents, &tenant.admin).await;
        let expected: BTreeMap<&str, &Written> = ours.iter().map(|w| (w.incident.as_str(), w)).collect();
        let unique: HashSet<&str> = listed.iter().map(|incident| incident.name.as_str()).collect();
        assert_eq!(unique.len(), listed.len(), "{name}: an incident was listed twice");
        assert_eq!(expected.len(), ours.len(), "{name}: two acknowledged creates answered one incident");
        assert_eq!(listed.len(), ours.len(), "{name}: stored incidents against acknowledged creates");
        for incident in &listed {
            let Some(w) = expected.get(incident.name.as_str()) else {
                panic!("{name}: {} is stored but was never acknowledged", incident.name);
            };
            assert_eq!(
                incident.short_description, w.short_description,
                "{name}: {} is not as {name} last wrote it",
                incident.name
            );
            assert_eq!(incident.configuration_items, std::slice::from_ref(&w.ci), "{name}: {incident:?}");
            assert!(
                !incident.short_description.contains(other) && !incident.description.contains(other),
                "{name}: {incident:?} carries {other}'s text"
            );
        }

        // Every record of theirs once more by name, now that nothing moves.
        for w in theirs {
            expect_not_found(
                cmdb.get_configuration_item(authed(
                    GetConfigurationItemRequest { name: w.ci.clone(), read_time: None },
                    &tenant.agent,
                ))
                .await,
                &format!("{name} gets {other}'s {}", w.ci),
            );
            match incidents
                .get_incident(authed(GetIncidentRequest { name: w.incident.clone() }, &tenant.agent))
                .await
            {
                Ok(found) => {
                    let found = found.into_inner();
                    let own = expected.get(found.name.as_str());
                    assert!(
                        own.is_some_and(|own| own.short_description == found.short_description),
                        "{name} got {found:?} for {other}'s {}",
                        w.incident
                    );
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::NotFound, "{name}: {}: {status:?}", w.incident);
                }
            }
        }

        // A page token of this tenant's listing does not page through it for the other tenant.
        let other_admin = &tenants[1 - i].admin;
        let first = cmdb
            .list_configuration_items(authed(
                ListConfigurationItemsRequest { page_size: PAGE, ..Default::default() },
                &tenant.admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!first.next_page_token.is_empty());
        let err = cmdb
            .list_configuration_items(authed(
                ListConfigurationItemsRequest {
                    page_size: PAGE,
                    page_token: first.next_page_token,
                    ..Default::default()
                },
                other_admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{other} replays {name}'s CI page token: {err:?}");
        let first = incidents
            .list_incidents(authed(
                ListIncidentsRequest { page_size: PAGE, ..Default::default() },
                &tenant.admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!first.next_page_token.is_empty());
        let err = incidents
            .list_incidents(authed(
                ListIncidentsRequest {
                    page_size: PAGE,
                    page_token: first.next_page_token,
                    ..Default::default()
                },
                other_admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{other} replays {name}'s incident page token: {err:?}"
        );
    }
}

itsm_runtime::db_tests!(a_second_tenants_load_never_sees_or_changes_the_first);
