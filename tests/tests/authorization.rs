//! Every public RPC, called through the gateway by a token of each role, is allowed or denied
//! exactly as the gateway's table (`itsm_gateway::authz`) says — generated from the descriptor
//! set, so no RPC is forgotten. Plus record-level rules the services keep: a requester sees only
//! their own tickets; tenants never see each other.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tonic::Code;

use itsm_e2e::{Suite, authed};
use itsm_gateway::authz::{ROLES, allowed, public_methods};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{
    CreateTicketRequest, GetTicketRequest, ListTicketHistoryRequest, ListTicketsRequest, Ticket,
};
use itsm_runtime::testing::TestBackend;

/// An empty protobuf message: valid bytes for any request type.
#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_allowed_and_denied_per_the_table() {
    // Over a thousand calls from twelve principals: no rate limit in the way.
    let suite =
        Suite::start_with(TestBackend::Sqlite, |s| s.gateway.rate_limit_per_second = 0).await.unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    let methods = public_methods();
    assert!(methods.len() > 80);
    let mut checked = 0;
    for role in ROLES {
        let token = suite.token(&format!("user-{role}"), "acme", &[role]).unwrap();
        for (service, method) in &methods {
            let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
            client.ready().await.unwrap();
            let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
            let mut request = authed(Empty {}, &token);
            request.set_timeout(std::time::Duration::from_secs(10));
            let result = client.unary(request, path.clone(), codec).await;
            let expected = allowed(path.path(), &[(*role).to_string()]);
            match result {
                Err(status)
                    if status.code() == Code::PermissionDenied
                        && status.message().contains("not allowed for the roles") =>
                {
                    assert!(!expected, "{role} was denied {path}, which the table allows");
                }
                Err(status) if status.code() == Code::Unauthenticated => panic!("{role} {path}: {status:?}"),
                Err(status) if status.code() == Code::ResourceExhausted => {
                    panic!("{role} {path}: {status:?}")
                }
                other => assert!(expected, "{role} reached {path}, which the table denies: {other:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, methods.len() * ROLES.len());
}

async fn requesters_see_their_own_tickets_and_tenants_nothing_of_each_other(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let mut desk = ServiceDeskServiceClient::new(suite.gateway_channel().await.unwrap());
    let rita = suite.token("rita", "acme", &["requester"]).unwrap();
    let sam = suite.token("sam", "acme", &["requester"]).unwrap();
    let agent = suite.token("ann", "acme", &["agent"]).unwrap();
    let other_tenant = suite.token("ann", "globex", &["agent"]).unwrap();
    let create = |text: &str, requester: &str, token: &str| {
        authed(
            CreateTicketRequest {
                ticket: Some(Ticket {
                    short_description: text.into(),
                    requester: requester.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        )
    };
    // Rita cannot raise a ticket in Sam's name.
    let ritas = desk.create_ticket(create("Printer", "sam", &rita)).await.unwrap().into_inner();
    assert_eq!(ritas.requester, "rita");
    let sams = desk.create_ticket(create("Badge", "", &sam)).await.unwrap().into_inner();
    let list = |token: &str| authed(ListTicketsRequest::default(), token);
    let names = |r: tonic::Response<itsm_proto::servicedesk::ListTicketsResponse>| {
        r.into_inner().tickets.into_iter().map(|t| t.name).collect::<Vec<_>>()
    };
    assert_eq!(names(desk.list_tickets(list(&rita)).await.unwrap()), vec![ritas.name.clone()]);
    assert_eq!(names(desk.list_tickets(list(&agent)).await.unwrap()).len(), 2);
    let err = desk.get_ticket(authed(GetTicketRequest { name: sams.name.clone() }, &rita)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The timeline likewise: her own ticket's, not Sam's.
    let history = |name: &str, token: &str| {
        authed(ListTicketHistoryRequest { parent: name.into(), ..Default::default() }, token)
    };
    let own = desk.list_ticket_history(history(&ritas.name, &rita)).await.unwrap().into_inner();
    assert!(!own.entries.is_empty(), "her ticket's timeline has its creation");
    let err = desk.list_ticket_history(history(&sams.name, &rita)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another requester's timeline is not hers to read");
    // Another tenant sees none of it, even with the same principal name and role.
    assert!(names(desk.list_tickets(list(&other_tenant)).await.unwrap()).is_empty());
    let err = desk
        .get_ticket(authed(GetTicketRequest { name: ritas.name.clone() }, &other_tenant))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

itsm_runtime::db_tests!(requesters_see_their_own_tickets_and_tenants_nothing_of_each_other);

fn not_found<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}"),
        Ok(found) => panic!("{what} is visible to another tenant: {found:?}"),
    }
}

/// A record of one tenant does not exist for another — in every service that has records.
async fn every_service_keeps_tenants_apart(backend: TestBackend) {
    use itsm_proto::change::change_service_client::ChangeServiceClient;
    use itsm_proto::change::{Change, ChangeType, CreateChangeRequest, GetChangeRequest, ListChangesRequest};
    use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
    use itsm_proto::cmdb::{
        ConfigurationItem, CreateConfigurationItemRequest, GetConfigurationItemRequest,
        ListConfigurationItemsRequest,
    };
    use itsm_proto::incident::incident_service_client::IncidentServiceClient;
    use itsm_proto::incident::problem_service_client::ProblemServiceClient;
    use itsm_proto::incident::*;
    use itsm_proto::servicedesk::{
        Article, CreateArticleRequest, CreateSupportGroupRequest, GetArticleRequest, GetSupportGroupRequest,
        SupportGroup,
    };

    let suite = Suite::start(backend).await.unwrap();
    let acme = suite.token("alice", "acme", &["admin"]).unwrap();
    let globex = suite.token("alice", "globex", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let mut problems = ProblemServiceClient::new(channel.clone());
    let mut changes = ChangeServiceClient::new(channel.clone());
    let mut desk = ServiceDeskServiceClient::new(channel);

    let ci = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "db".into(),
                    ci_class: "server".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        cmdb.get_configuration_item(authed(
            GetConfigurationItemRequest { name: ci.name.clone(), read_time: None },
            &globex,
        ))
        .await,
        "CI",
    );
    assert!(
        cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &globex))
            .await
            .unwrap()
            .into_inner()
            .configuration_items
            .is_empty()
    );

    let incident = incidents
        .create_incident(authed(
            CreateIncidentRequest {
                incident: Some(Incident { short_description: "x".into(), ..Default::default() }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        incidents.get_incident(authed(GetIncidentRequest { name: incident.name.clone() }, &globex)).await,
        "incident",
    );
    let problem = problems
        .create_problem(authed(
            CreateProblemRequest {
                problem: Some(Problem { short_description: "p".into(), ..Default::default() }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        problems.get_problem(authed(GetProblemRequest { name: problem.name.clone() }, &globex)).await,
        "problem",
    );
    let known = problems
        .create_known_error(authed(
            CreateKnownErrorRequest {
                known_error: Some(KnownError {
                    short_description: "k".into(),
                    symptoms: "s".into(),
                    workaround: "w".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        problems.get_known_error(authed(GetKnownErrorRequest { name: known.name.clone() }, &globex)).await,
        "known error",
    );

    let change = changes
        .create_change(authed(
            CreateChangeRequest {
                change: Some(Change {
                    r#type: ChangeType::Normal as i32,
                    short_description: "c".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        changes.get_change(authed(GetChangeRequest { name: change.name.clone() }, &globex)).await,
        "change",
    );
    assert!(
        changes
            .list_changes(authed(ListChangesRequest::default(), &globex))
            .await
            .unwrap()
            .into_inner()
            .changes
            .is_empty()
    );

    let group = desk
        .create_support_group(authed(
            CreateSupportGroupRequest {
                support_group: Some(SupportGroup { display_name: "g".into(), tier: 1, ..Default::default() }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        desk.get_support_group(authed(GetSupportGroupRequest { name: group.name.clone() }, &globex)).await,
        "support group",
    );
    let article = desk
        .create_article(authed(
            CreateArticleRequest {
                article: Some(Article { title: "t".into(), body: "b".into(), ..Default::default() }),
                request_id: String::new(),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    not_found(
        desk.get_article(authed(GetArticleRequest { name: article.name.clone() }, &globex)).await,
        "article",
    );
    // Numbers are per tenant: globex's first incident is INC0000001 too, and a different record.
    let theirs = incidents
        .create_incident(authed(
            CreateIncidentRequest {
                incident: Some(Incident { short_description: "y".into(), ..Default::default() }),
                request_id: String::new(),
            },
            &globex,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.name, incident.name);
    let ours = incidents
        .get_incident(authed(GetIncidentRequest { name: incident.name.clone() }, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ours.short_description, "x");
}

itsm_runtime::db_tests!(every_service_keeps_tenants_apart);
