//! CI classes, relationships, impact analysis, baselines and bulk import against a real server
//! with a fresh database, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tonic::Code;
use tonic_types::StatusExt;

use itsm_cmdb::import;
use itsm_proto::cmdb::*;
use itsm_runtime::structs::json_to_struct;
use itsm_runtime::testing::{TestBackend, with_context};

mod common;

use common::{Cmdb, start};

fn req<T>(message: T) -> tonic::Request<T> {
    with_context(message, "acme", "alice")
}

fn violations(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

impl Cmdb {
    async fn ci(
        &mut self,
        name: &str,
        class: &str,
        attributes: serde_json::Value,
    ) -> Result<ConfigurationItem, tonic::Status> {
        let item = ConfigurationItem {
            display_name: name.into(),
            ci_class: class.into(),
            attributes: Some(json_to_struct(&attributes)),
            ..Default::default()
        };
        self.client
            .create_configuration_item(req(CreateConfigurationItemRequest {
                configuration_item: Some(item),
                request_id: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn relate(
        &mut self,
        source: &str,
        kind: RelationshipType,
        target: &str,
        properties: serde_json::Value,
    ) -> Result<Relationship, tonic::Status> {
        let relationship = Relationship {
            source: source.into(),
            target: target.into(),
            r#type: kind as i32,
            properties: Some(json_to_struct(&properties)),
            ..Default::default()
        };
        self.client
            .create_relationship(req(CreateRelationshipRequest {
                relationship: Some(relationship),
                request_id: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn impact(
        &mut self,
        root: &str,
        direction: ImpactDirection,
        also_failed: &[&str],
    ) -> AnalyzeImpactResponse {
        self.client
            .analyze_impact(req(AnalyzeImpactRequest {
                configuration_item: root.into(),
                direction: direction as i32,
                max_depth: 0,
                relationship_types: vec![],
                also_failed: also_failed.iter().map(|s| (*s).to_string()).collect(),
                max_items: 0,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn count(&mut self, filter: &str) -> usize {
        self.client
            .list_configuration_items(req(ListConfigurationItemsRequest {
                filter: filter.into(),
                page_size: 1000,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .configuration_items
            .len()
    }

    async fn import(&mut self, rows: Vec<ImportRow>, dry_run: bool) -> ImportConfigurationItemsResponse {
        let mut messages = vec![ImportConfigurationItemsRequest {
            message: Some(import_configuration_items_request::Message::Options(ImportOptions {
                dry_run,
                source_reference: "test".into(),
            })),
        }];
        messages.extend(rows.into_iter().map(|row| ImportConfigurationItemsRequest {
            message: Some(import_configuration_items_request::Message::Row(row)),
        }));
        self.client.import_configuration_items(req(tokio_stream::iter(messages))).await.unwrap().into_inner()
    }
}

use RelationshipType::{DependsOn, PartOf, RunsOn};

async fn classes_and_typed_attributes(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let attr = |name: &str, kind: AttributeType| AttributeDefinition {
        name: name.into(),
        r#type: kind as i32,
        ..Default::default()
    };
    let class = CiClass {
        display_name: "Rack server".into(),
        parent: "server".into(),
        attributes: vec![
            AttributeDefinition { required: true, ..attr("serial", AttributeType::String) },
            AttributeDefinition {
                enum_values: vec!["gold".into(), "silver".into()],
                ..attr("tier", AttributeType::Enum)
            },
            AttributeDefinition {
                reference_class: "location".into(),
                ..attr("site", AttributeType::Reference)
            },
        ],
        natural_key: vec!["serial".into()],
        ..Default::default()
    };
    let created = cmdb
        .client
        .create_ci_class(req(CreateCiClassRequest {
            ci_class: Some(class.clone()),
            ci_class_id: "rack_server".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "ciClasses/rack_server");
    let effective: Vec<&str> = created.effective_attributes.iter().map(|a| a.name.as_str()).collect();
    assert!(effective.contains(&"serial") && effective.contains(&"os"), "{effective:?}");
    let err = cmdb
        .client
        .create_ci_class(req(CreateCiClassRequest {
            ci_class: Some(class),
            ci_class_id: "rack_server".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["ci_class_id"]);

    let dc = cmdb.ci("dc-1", "location", serde_json::json!({})).await.unwrap();
    let other = cmdb.ci("web-1", "server", serde_json::json!({})).await.unwrap();
    let cases = [
        (serde_json::json!({}), "configuration_item.attributes.serial"),
        (
            serde_json::json!({"serial": "S1", "cpu_count": "eight"}),
            "configuration_item.attributes.cpu_count",
        ),
        (serde_json::json!({"serial": "S1", "cpu_count": 2.5}), "configuration_item.attributes.cpu_count"),
        (serde_json::json!({"serial": "S1", "tier": "bronze"}), "configuration_item.attributes.tier"),
        (serde_json::json!({"serial": "S1", "colour": "red"}), "configuration_item.attributes.colour"),
        (
            serde_json::json!({"serial": "S1", "site": format!("configurationItems/{}", uuid::Uuid::now_v7())}),
            "configuration_item.attributes.site",
        ),
        (serde_json::json!({"serial": "S1", "site": other.name}), "configuration_item.attributes.site"),
    ];
    for (attributes, field) in cases {
        let err = cmdb.ci("rack-1", "rack_server", attributes.clone()).await.unwrap_err();
        assert_eq!(violations(&err), [field], "{attributes}");
    }
    assert_eq!(cmdb.count("ci_class = rack_server").await, 0, "rejected CIs leave nothing behind");
    let ok = serde_json::json!({"serial": "S1", "cpu_count": 8, "tier": "gold", "site": dc.name});
    cmdb.ci("rack-1", "rack_server", ok).await.unwrap();
    // The natural key is the serial: another name with the same serial is the same CI.
    let err =
        cmdb.ci("rack-1-renamed", "rack_server", serde_json::json!({"serial": "S1"})).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(cmdb.count("ci_class = server").await, 2, "a class includes its custom subclasses");

    let err = cmdb
        .client
        .delete_ci_class(req(DeleteCiClassRequest { name: "ciClasses/rack_server".into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = cmdb
        .client
        .delete_ci_class(req(DeleteCiClassRequest { name: "ciClasses/server".into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let list = cmdb.client.list_ci_classes(req(ListCiClassesRequest::default())).await.unwrap().into_inner();
    assert!(list.ci_classes.iter().any(|c| c.name == "ciClasses/rack_server" && !c.builtin));
    assert!(list.ci_classes.iter().any(|c| c.name == "ciClasses/business_service" && c.builtin));
    // Another tenant does not see the custom class.
    let err = cmdb
        .client
        .get_ci_class(with_context(
            GetCiClassRequest { name: "ciClasses/rack_server".into() },
            "other",
            "eve",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn relationship_rules(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let a = cmdb.ci("a", "application", serde_json::json!({})).await.unwrap();
    let b = cmdb.ci("b", "application", serde_json::json!({})).await.unwrap();
    let c = cmdb.ci("c", "application", serde_json::json!({})).await.unwrap();
    let err = cmdb.relate(&a.name, DependsOn, &a.name, serde_json::json!({})).await.unwrap_err();
    assert_eq!(violations(&err), ["relationship.target"]);
    let ghost = format!("configurationItems/{}", uuid::Uuid::now_v7());
    let err = cmdb.relate(&a.name, DependsOn, &ghost, serde_json::json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "dangling: {err:?}");
    let err = cmdb
        .relate(&a.name, RelationshipType::Unspecified, &b.name, serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["relationship.type"]);
    let err = cmdb
        .relate(&a.name, DependsOn, &b.name, serde_json::json!({"redundant": "maybe"}))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["relationship.properties.redundant"]);

    // Cross-tenant: a CI of another tenant is not there for this one.
    let foreign = cmdb
        .client
        .create_configuration_item(with_context(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "x".into(),
                    ci_class: "application".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "other",
            "eve",
        ))
        .await
        .unwrap()
        .into_inner();
    let err = cmdb.relate(&a.name, DependsOn, &foreign.name, serde_json::json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    cmdb.relate(&a.name, PartOf, &b.name, serde_json::json!({})).await.unwrap();
    cmdb.relate(&b.name, PartOf, &c.name, serde_json::json!({})).await.unwrap();
    let err = cmdb.relate(&c.name, PartOf, &a.name, serde_json::json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "PART_OF cycle: {err:?}");
    let err = cmdb.relate(&a.name, PartOf, &b.name, serde_json::json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    // A DEPENDS_ON cycle is allowed (impact analysis terminates on it).
    cmdb.relate(&c.name, DependsOn, &a.name, serde_json::json!({})).await.unwrap();

    let of_b = cmdb
        .client
        .list_relationships(req(ListRelationshipsRequest {
            filter: format!("ci = \"{}\"", b.name),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_b.relationships.len(), 2);
    let part_of = cmdb
        .client
        .list_relationships(req(ListRelationshipsRequest {
            filter: "type = PART_OF".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(part_of.relationships.len(), 2);

    let delete = |name: &str, cascade: bool| {
        req(DeleteConfigurationItemRequest { name: name.into(), etag: String::new(), cascade })
    };
    let err = cmdb.client.delete_configuration_item(delete(&b.name, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    cmdb.client.delete_configuration_item(delete(&b.name, true)).await.unwrap();
    let left =
        cmdb.client.list_relationships(req(ListRelationshipsRequest::default())).await.unwrap().into_inner();
    assert_eq!(left.relationships.len(), 1, "only c DEPENDS_ON a is left");

    // b's relationships: two created, then both removed with it; each with who and what.
    let history = |page_token: String| {
        req(ListRelationshipHistoryRequest { configuration_item: b.name.clone(), page_size: 3, page_token })
    };
    let first = cmdb.client.list_relationship_history(history(String::new())).await.unwrap().into_inner();
    let actions: Vec<&str> = first.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "create", "delete"]);
    assert!(first.entries.iter().all(|e| e.actor == "alice"));
    let rest =
        cmdb.client.list_relationship_history(history(first.next_page_token)).await.unwrap().into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.entries[0].action, "delete");
    assert!(rest.next_page_token.is_empty());
}

async fn impact_analysis(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let shop = cmdb.ci("shop", "business_service", serde_json::json!({})).await.unwrap().name;
    let app = cmdb.ci("shop-app", "application", serde_json::json!({})).await.unwrap().name;
    let vm = cmdb.ci("vm-1", "virtual_machine", serde_json::json!({})).await.unwrap().name;
    let primary = cmdb.ci("db-primary", "database", serde_json::json!({})).await.unwrap().name;
    let replica = cmdb.ci("db-replica", "database", serde_json::json!({})).await.unwrap().name;
    cmdb.relate(&shop, DependsOn, &app, serde_json::json!({})).await.unwrap();
    cmdb.relate(&app, RunsOn, &vm, serde_json::json!({})).await.unwrap();
    cmdb.relate(&app, DependsOn, &primary, serde_json::json!({"redundant": true})).await.unwrap();
    cmdb.relate(&app, DependsOn, &replica, serde_json::json!({"redundant": true})).await.unwrap();
    // A cycle that must not hang the walk.
    cmdb.relate(&vm, DependsOn, &shop, serde_json::json!({})).await.unwrap();

    let down = cmdb.impact(&vm, ImpactDirection::Downstream, &[]).await;
    let names: Vec<(&str, i32)> = down.items.iter().map(|i| (i.display_name.as_str(), i.depth)).collect();
    assert_eq!(names, [("shop-app", 1), ("shop", 2)]);
    assert_eq!(down.business_services.len(), 1);
    assert_eq!(down.business_services[0].path, [vm.clone(), app.clone(), shop.clone()]);

    let one_db = cmdb.impact(&primary, ImpactDirection::Downstream, &[]).await;
    assert!(one_db.items.is_empty(), "a redundant provider alone does not take the app down");
    assert_eq!(one_db.degraded.len(), 1);
    assert_eq!(one_db.degraded[0].remaining_providers, std::slice::from_ref(&replica));
    let both = cmdb.impact(&primary, ImpactDirection::Downstream, &[&replica]).await;
    let names: Vec<&str> = both.items.iter().map(|i| i.display_name.as_str()).collect();
    assert_eq!(names, ["shop-app", "shop", "vm-1"], "shop depends on the app; vm-1 depends on shop");

    let up = cmdb.impact(&shop, ImpactDirection::Upstream, &[]).await;
    let mut names: Vec<&str> = up.items.iter().map(|i| i.display_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["db-primary", "db-replica", "shop-app", "vm-1"]);

    let err = cmdb
        .client
        .analyze_impact(req(AnalyzeImpactRequest {
            configuration_item: vm.clone(),
            direction: 1,
            max_depth: 11,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["max_depth"]);
    let err = cmdb
        .client
        .analyze_impact(req(AnalyzeImpactRequest {
            configuration_item: vm.clone(),
            direction: 0,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["direction"]);
    let ghost = format!("configurationItems/{}", uuid::Uuid::now_v7());
    let err = cmdb
        .client
        .analyze_impact(req(AnalyzeImpactRequest {
            configuration_item: ghost,
            direction: 1,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// Impact analysis walks a graph each server keeps in memory: it must answer with every write
/// committed before the call, whichever replica made it, and keep tenants apart.
async fn impact_follows_writes_from_every_replica(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let (_replica, mut reader) = cmdb.replica().await;
    let analyze = |root: &str| AnalyzeImpactRequest {
        configuration_item: root.to_string(),
        direction: ImpactDirection::Downstream as i32,
        ..Default::default()
    };
    async fn reached(
        reader: &mut cmdb_service_client::CmdbServiceClient<tonic::transport::Channel>,
        request: AnalyzeImpactRequest,
    ) -> Vec<String> {
        let response = reader.analyze_impact(req(request)).await.unwrap().into_inner();
        let mut names: Vec<String> = response.items.into_iter().map(|i| i.display_name).collect();
        names.sort();
        names
    }
    let host = cmdb.ci("host-1", "server", serde_json::json!({})).await.unwrap().name;
    let vm = cmdb.ci("vm-1", "virtual_machine", serde_json::json!({})).await.unwrap().name;
    let app = cmdb.ci("app-1", "application", serde_json::json!({})).await.unwrap().name;
    let shop = cmdb.ci("shop", "business_service", serde_json::json!({})).await.unwrap().name;
    cmdb.relate(&vm, RunsOn, &host, serde_json::json!({})).await.unwrap();
    // The replica loads its graph now.
    assert_eq!(reached(&mut reader, analyze(&host)).await, ["vm-1"]);

    // Written through the first server after the replica loaded: seen on the next call.
    let app_on_vm = cmdb.relate(&app, RunsOn, &vm, serde_json::json!({})).await.unwrap().name;
    cmdb.relate(&shop, DependsOn, &app, serde_json::json!({})).await.unwrap();
    let response = reader.analyze_impact(req(analyze(&host))).await.unwrap().into_inner();
    let names: Vec<&str> = response.items.iter().map(|i| i.display_name.as_str()).collect();
    assert_eq!(names, ["vm-1", "app-1", "shop"]);
    assert_eq!(response.business_services.len(), 1, "a CI created after the load keeps its class");
    assert_eq!(response.business_services[0].path, [host.clone(), vm.clone(), app.clone(), shop.clone()]);

    // Redundancy read from the events: one of two redundant databases down only degrades.
    let primary = cmdb.ci("db-primary", "database", serde_json::json!({})).await.unwrap().name;
    let replica_db = cmdb.ci("db-replica", "database", serde_json::json!({})).await.unwrap().name;
    cmdb.relate(&app, DependsOn, &primary, serde_json::json!({"redundant": true})).await.unwrap();
    cmdb.relate(&app, DependsOn, &replica_db, serde_json::json!({"redundant": true})).await.unwrap();
    let one = reader.analyze_impact(req(analyze(&primary))).await.unwrap().into_inner();
    assert!(one.items.is_empty(), "{one:?}");
    assert_eq!(one.degraded.len(), 1);

    // A deleted relationship, then a CI deleted with its relationships, leave the graph.
    cmdb.client
        .delete_relationship(req(DeleteRelationshipRequest { name: app_on_vm, etag: String::new() }))
        .await
        .unwrap();
    assert_eq!(reached(&mut reader, analyze(&host)).await, ["vm-1"]);
    cmdb.client
        .delete_configuration_item(req(DeleteConfigurationItemRequest {
            name: vm.clone(),
            etag: String::new(),
            cascade: true,
        }))
        .await
        .unwrap();
    assert!(reached(&mut reader, analyze(&host)).await.is_empty());

    // Another tenant's graph is its own, and it cannot analyse this tenant's CIs.
    fn other<T>(message: T) -> tonic::Request<T> {
        with_context(message, "globex", "bob")
    }
    let their_host = cmdb
        .client
        .create_configuration_item(other(CreateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                display_name: "host-1".into(),
                ci_class: "server".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .name;
    let err = reader.analyze_impact(other(analyze(&host))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let theirs = reader.analyze_impact(other(analyze(&their_host))).await.unwrap().into_inner();
    assert!(theirs.items.is_empty());
    assert_eq!(reached(&mut reader, analyze(&primary)).await, Vec::<String>::new());
}

async fn baselines(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let mut names = Vec::new();
    for n in ["a", "b", "c"] {
        let item = ConfigurationItem {
            display_name: n.into(),
            ci_class: "server".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        };
        let ci = cmdb
            .client
            .create_configuration_item(req(CreateConfigurationItemRequest {
                configuration_item: Some(item),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        names.push(ci);
    }
    let baseline = cmdb
        .client
        .create_baseline(req(CreateBaselineRequest {
            baseline: Some(Baseline {
                display_name: "before release".into(),
                filter: "labels.env = prod".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(baseline.item_count, 3);
    let mut changed = names[0].clone();
    changed.owner = "bob".into();
    cmdb.client
        .update_configuration_item(req(UpdateConfigurationItemRequest {
            configuration_item: Some(changed),
            update_mask: Some(prost_types::FieldMask { paths: vec!["owner".into()] }),
        }))
        .await
        .unwrap();
    cmdb.client
        .delete_configuration_item(req(DeleteConfigurationItemRequest {
            name: names[1].name.clone(),
            etag: String::new(),
            cascade: false,
        }))
        .await
        .unwrap();
    let item = ConfigurationItem {
        display_name: "d".into(),
        ci_class: "server".into(),
        labels: [("env".to_string(), "prod".to_string())].into(),
        ..Default::default()
    };
    let added = cmdb
        .client
        .create_configuration_item(req(CreateConfigurationItemRequest {
            configuration_item: Some(item),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let diff = cmdb
        .client
        .compare_baseline(req(CompareBaselineRequest { name: baseline.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(diff.added, [added.name]);
    assert_eq!(diff.removed, [names[1].name.clone()]);
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].configuration_item, names[0].name);
    assert_eq!(diff.changed[0].changes[0].field, "owner");
    assert_eq!(diff.unchanged_count, 1);
    let err = cmdb
        .client
        .create_baseline(req(CreateBaselineRequest {
            baseline: Some(Baseline {
                display_name: "x".into(),
                filter: "nonsense = 1".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["baseline.filter"]);
}

async fn import_kubernetes_fixture(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/kubernetes");
    let files = import::yaml_files(&dir).unwrap();
    let batch = import::kubernetes::read(&files);
    assert!(batch.problems.is_empty(), "{:?}", batch.problems);
    let items = batch.items().count();
    let relationships = batch.relationships().count();

    // A dry run reports what would happen and writes nothing.
    let dry = cmdb.import(batch.rows.clone(), true).await;
    assert!(dry.dry_run);
    assert_eq!(
        (dry.created as usize, dry.rejected),
        (items + relationships, 0),
        "{:?}",
        dry.results.iter().find(|r| r.outcome == 4)
    );
    assert_eq!(cmdb.count("").await, 0);

    let report = cmdb.import(batch.rows.clone(), false).await;
    assert_eq!(
        report.rejected,
        0,
        "{:?}",
        report.results.iter().filter(|r| r.outcome == 4).collect::<Vec<_>>()
    );
    assert_eq!(report.created as usize, items + relationships);
    assert_eq!(cmdb.count("ci_class = k8s_workload").await, 12);
    assert_eq!(cmdb.count("ci_class = k8s_service").await, 12);
    assert_eq!(cmdb.count("labels.source = kubernetes").await, items);

    // Importing the same files again changes nothing.
    let again = cmdb.import(batch.rows.clone(), false).await;
    assert_eq!((again.unchanged as usize, again.created, again.updated), (items + relationships, 0, 0));

    // The imported graph answers impact questions: the product catalog takes the frontend down.
    let catalog = cmdb
        .client
        .list_configuration_items(req(ListConfigurationItemsRequest {
            filter: "display_name = \"default/productcatalogservice\" AND ci_class = k8s_workload".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .configuration_items
        .remove(0);
    let impact = cmdb.impact(&catalog.name, ImpactDirection::Downstream, &[]).await;
    let names: Vec<&str> = impact.items.iter().map(|i| i.display_name.as_str()).collect();
    assert!(names.contains(&"default/frontend"), "{names:?}");
}

async fn import_rejects_bad_rows_without_half_applying(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let item = |name: &str, class: &str, attributes: serde_json::Value| {
        import::item_row(
            format!("row {name}"),
            ConfigurationItem {
                display_name: name.into(),
                ci_class: class.into(),
                attributes: Some(json_to_struct(&attributes)),
                ..Default::default()
            },
        )
    };
    let rows = vec![
        item("good-1", "server", serde_json::json!({"cpu_count": 4})),
        item("bad-class", "spaceship", serde_json::json!({})),
        item("bad-type", "server", serde_json::json!({"cpu_count": "four"})),
        item("good-2", "application", serde_json::json!({})),
        import::relationship_row(
            "rel ok".into(),
            DependsOn,
            import::reference("application", "good-2"),
            import::reference("server", "good-1"),
        ),
        import::relationship_row(
            "rel dangling".into(),
            DependsOn,
            import::reference("application", "good-2"),
            import::reference("server", "nope"),
        ),
        ImportRow { row_id: "empty".into(), kind: None },
    ];
    let report = cmdb.import(rows, false).await;
    let outcomes: Vec<(String, i32)> = report.results.iter().map(|r| (r.row_id.clone(), r.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            ("row good-1".to_string(), 1),
            ("row bad-class".to_string(), 4),
            ("row bad-type".to_string(), 4),
            ("row good-2".to_string(), 1),
            ("rel ok".to_string(), 1),
            ("rel dangling".to_string(), 4),
            ("empty".to_string(), 4),
        ]
    );
    assert!(report.results[2].reason.contains("cpu_count"), "{}", report.results[2].reason);
    assert!(report.results[5].reason.contains("dangling"), "{}", report.results[5].reason);
    assert_eq!((report.created, report.rejected), (3, 4));
    assert_eq!(cmdb.count("").await, 2);

    // An update through import is recorded with the import as its source.
    let report =
        cmdb.import(vec![item("good-1", "server", serde_json::json!({"cpu_count": 8}))], false).await;
    assert_eq!(report.updated, 1);
    let name = report.results[0].resource.clone();
    let history = cmdb
        .client
        .list_configuration_item_history(req(ListConfigurationItemHistoryRequest {
            name,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 2);
    assert_eq!(history.entries[1].source, itsm_proto::common::ChangeSource::Import as i32);
    assert_eq!(history.entries[1].source_reference, "test");
}

async fn import_backstage_fixture(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/backstage");
    let batch = import::backstage::read(&import::yaml_files(&dir).unwrap());
    // The intentionally invalid component is reported with its file, and not imported.
    assert_eq!(batch.problems.len(), 1, "{:?}", batch.problems);
    assert!(batch.problems[0].file.ends_with("invalid-component.yaml"));
    let report = cmdb.import(batch.rows.clone(), false).await;
    // The only rejected row is the dangling owner `guest` of playback-order.
    let rejected: Vec<&ImportRowResult> =
        report.results.iter().filter(|r| r.outcome == ImportOutcome::Rejected as i32).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].row_id.contains("playback-order") && rejected[0].reason.contains("guest"),
        "{rejected:?}"
    );
    assert_eq!(report.created as usize, batch.rows.len() - 1);
    // 14 valid components, plus the artists-db resource: a database, which is an application.
    assert_eq!(cmdb.count("ci_class = application AND labels.source = backstage").await, 15);
    assert_eq!(cmdb.count("ci_class = database").await, 1);
    assert_eq!(cmdb.count("ci_class = business_service").await, 3);
    // A failing component takes down the API it provides and the system it is part of.
    let search = cmdb
        .client
        .list_configuration_items(req(ListConfigurationItemsRequest {
            filter: "display_name = \"wayback-archive\" AND ci_class = application".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .configuration_items
        .remove(0);
    let impact = cmdb.impact(&search.name, ImpactDirection::Downstream, &[]).await;
    let names: Vec<(&str, &str)> =
        impact.items.iter().map(|i| (i.ci_class.as_str(), i.display_name.as_str())).collect();
    assert!(names.contains(&("api", "wayback-archive")), "{names:?}");
}

/// Batches of one import may be applied several at a time; the result must be what applying them
/// one after the other gives: later rows update CIs created a batch earlier, relationships find
/// CIs of earlier batches, results come back in row order, one history entry per change.
async fn import_batches_in_flight_together_keep_row_order_and_meaning(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let batch = itsm_cmdb::api::IMPORT_BATCH;
    let server = |i: usize, cpus: i64| {
        import::item_row(
            format!("s{i}"),
            ConfigurationItem {
                display_name: format!("server-{i:05}"),
                ci_class: "server".into(),
                attributes: Some(json_to_struct(&serde_json::json!({ "cpu_count": cpus }))),
                ..Default::default()
            },
        )
    };
    // Batches 1-3 only create (independent of each other); batch 4 repeats keys of batch 3
    // (updates) and batch 5 relates CIs of batches 1 and 3.
    let mut rows: Vec<ImportRow> = (0..3 * batch).map(|i| server(i, 2)).collect();
    rows.extend((2 * batch..3 * batch).map(|i| server(i, 4)));
    rows.extend((0..batch).map(|i| {
        import::relationship_row(
            format!("r{i}"),
            DependsOn,
            import::reference("server", &format!("server-{:05}", 2 * batch + i)),
            import::reference("server", &format!("server-{i:05}")),
        )
    }));
    let total = rows.len();
    let expected_ids: Vec<String> = rows.iter().map(|r| r.row_id.clone()).collect();
    let report = cmdb.import(rows, false).await;
    let ids: Vec<String> = report.results.iter().map(|r| r.row_id.clone()).collect();
    assert_eq!(ids, expected_ids, "results in row order");
    assert_eq!(report.results.len(), total);
    assert_eq!(
        (report.created as usize, report.updated as usize, report.rejected),
        (3 * batch + batch, batch, 0),
        "{:?}",
        report.results.iter().find(|r| r.outcome == ImportOutcome::Rejected as i32)
    );
    // Every update names the CI its create made.
    for i in 0..batch {
        assert_eq!(report.results[2 * batch + i].resource, report.results[3 * batch + i].resource);
    }
    // One CI per key: the keys of batch 3, created there and updated by batch 4, once each.
    let batch_three = format!(
        "display_name = \"server-{:05}\" OR display_name = \"server-{:05}\"",
        2 * batch,
        3 * batch - 1
    );
    assert_eq!(cmdb.count(&batch_three).await, 2);
    let distinct: std::collections::HashSet<&str> =
        report.results[..3 * batch].iter().map(|r| r.resource.as_str()).collect();
    assert_eq!(distinct.len(), 3 * batch, "every created row names its own CI");
    let updated = &report.results[3 * batch].resource;
    let item = cmdb
        .client
        .get_configuration_item(req(GetConfigurationItemRequest { name: updated.clone(), read_time: None }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        item.attributes.unwrap().fields["cpu_count"].kind,
        Some(prost_types::value::Kind::NumberValue(4.0))
    );
    let history = cmdb
        .client
        .list_configuration_item_history(req(ListConfigurationItemHistoryRequest {
            name: updated.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 2);
    // The relationships landed: the first server of batch 3 depends on the first of batch 1.
    let impact = cmdb.impact(&report.results[0].resource, ImpactDirection::Downstream, &[]).await;
    assert!(impact.items.iter().any(|i| i.configuration_item == *updated), "{}", impact.items.len());
}

itsm_runtime::db_tests!(
    import_backstage_fixture,
    import_batches_in_flight_together_keep_row_order_and_meaning,
    classes_and_typed_attributes,
    relationship_rules,
    impact_analysis,
    impact_follows_writes_from_every_replica,
    baselines,
    import_kubernetes_fixture,
    import_rejects_bad_rows_without_half_applying,
);
