//! The client for people: `itsm cmdb ci list|get|create|delete`, talking to the gateway with a
//! bearer token (by default the dev admin token that `itsm up` writes). Tables for people,
//! `-o json` for scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{
    Changeset, ChangesetAuthorization, ListChangesetsRequest, ListUnauthorizedChangesetsRequest,
    RecordChangesetRequest,
};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, Criticality, DeleteConfigurationItemRequest,
    GetConfigurationItemRequest, LifecycleStatus, ListConfigurationItemsRequest,
};
use itsm_runtime::structs::{json_to_struct, struct_to_json};

use crate::suite::{DEV_KEY_FILE, DEV_TOKEN_FILE};

#[derive(Clone, Copy, Debug, ValueEnum, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Clone)]
pub struct Connection {
    /// Gateway address.
    #[arg(long, global = true, env = "ITSM_GATEWAY", default_value = "http://127.0.0.1:50051")]
    gateway: String,
    /// Bearer token; by default the dev admin token written by `itsm up`.
    #[arg(long, global = true, env = "ITSM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true, default_value = "data/dev-admin.token")]
    token_file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Subcommand)]
pub enum CmdbCommand {
    /// Configuration items.
    Ci {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Box<CiCommand>,
    },
    /// Relationships between CIs.
    Rel {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: RelCommand,
    },
    /// What breaks if a CI fails (or, with --upstream, what it needs).
    Impact {
        #[command(flatten)]
        connection: Connection,
        /// The CI (`configurationItems/<id>` or the bare id).
        ci: String,
        /// Walk towards what the CI needs (possible causes) instead of what needs it.
        #[arg(long)]
        upstream: bool,
        /// Levels to walk (1-10).
        #[arg(long, default_value_t = 5)]
        depth: i32,
        /// Other CIs down at the same time (repeatable).
        #[arg(long = "also-failed")]
        also_failed: Vec<String>,
        /// Most CIs listed.
        #[arg(long, default_value_t = 200)]
        max_items: i32,
    },
    /// Import CIs and relationships from other tools' files.
    Import {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(Subcommand)]
pub enum RelCommand {
    /// Relate two CIs: `itsm cmdb rel create <source> depends_on <target>`.
    Create {
        source: String,
        /// depends_on, runs_on, part_of, connects_to or owned_by.
        kind: String,
        target: String,
        /// One of several providers that back each other up.
        #[arg(long)]
        redundant: bool,
    },
    /// List relationships, optionally of one CI.
    List {
        /// Only relationships with this CI at either end.
        #[arg(long)]
        ci: Option<String>,
        #[arg(long, default_value_t = 100)]
        page_size: i32,
    },
    /// Remove a relationship.
    Delete { name: String },
}

fn ci_name(name: &str) -> String {
    if name.contains('/') { name.to_string() } else { format!("configurationItems/{name}") }
}

#[derive(Subcommand)]
pub enum ImportSource {
    /// Kubernetes manifests (Namespace, Deployment, StatefulSet, DaemonSet, Service, Ingress).
    K8s(ImportArgs),
    /// Backstage catalog entities (Domain, System, Component, API, Resource, Group).
    Backstage(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// A YAML file, or a directory read recursively.
    path: PathBuf,
    /// Report what would change without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Rows per call (each call's report must fit in one message).
    #[arg(long, default_value_t = 5_000)]
    chunk: usize,
}

#[derive(Subcommand)]
pub enum CiCommand {
    /// List configuration items.
    List {
        /// AIP-160 filter, e.g. `ci_class = server AND labels.team = payments`.
        #[arg(long, default_value = "")]
        filter: String,
        /// `display_name`, `create_time` or `update_time`, optionally followed by ` desc`.
        #[arg(long, default_value = "")]
        order_by: String,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one configuration item.
    Get { name: String },
    /// Create a configuration item.
    Create {
        display_name: String,
        /// CI class, e.g. server, application, database, business_service.
        #[arg(long = "class")]
        ci_class: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        environment: String,
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long, default_value = "")]
        support_group: String,
        /// low, medium, high or critical.
        #[arg(long)]
        criticality: Option<String>,
        /// planned, in_build, in_use, maintenance or retired (default planned).
        #[arg(long)]
        status: Option<String>,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// key=JSON value (or a plain string), repeatable.
        #[arg(long = "attr")]
        attributes: Vec<String>,
        /// Idempotency key; a retry with the same id returns the first result.
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Delete a configuration item.
    Delete {
        name: String,
        #[arg(long, default_value = "")]
        etag: String,
        /// Also delete its relationships.
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(Args)]
pub struct TokenArgs {
    #[arg(long, default_value = "dev-admin")]
    subject: String,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Comma-separated roles.
    #[arg(long, default_value = "admin")]
    roles: String,
    #[arg(long, default_value_t = 24)]
    ttl_hours: i64,
    /// Data directory of `itsm up`, whose dev key signs the token.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "itsm")]
    issuer: String,
    #[arg(long, default_value = "itsm")]
    audience: String,
}

pub fn token(args: &TokenArgs) -> Result<(), String> {
    let key_path = args.data_dir.join(DEV_KEY_FILE);
    let secret = std::env::var("ITSM__AUTH__JWT_SECRET").ok().filter(|s| !s.is_empty()).map_or_else(
        || {
            std::fs::read_to_string(&key_path).map(|s| s.trim().to_string()).map_err(|e| {
                format!(
                    "cannot read {}: {e} (run `itsm up` first or set ITSM__AUTH__JWT_SECRET)",
                    key_path.display()
                )
            })
        },
        Ok,
    )?;
    let roles: Vec<String> =
        args.roles.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
    let token = itsm_gateway::auth::mint_token(
        &secret,
        &args.issuer,
        &args.audience,
        &args.subject,
        &args.tenant,
        &roles,
        chrono::Duration::hours(args.ttl_hours),
    )
    .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

struct Client {
    cmdb: CmdbServiceClient<Channel>,
    change: ChangeServiceClient<Channel>,
    token: String,
    output: Output,
}

impl Client {
    async fn connect(connection: &Connection) -> Result<Self, String> {
        let token = match &connection.token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string(&connection.token_file).map(|s| s.trim().to_string()).map_err(|e| {
                format!(
                    "no token: {e} reading {} (run `itsm up`, or pass --token / ITSM_TOKEN); the default file is data/{DEV_TOKEN_FILE}",
                    connection.token_file.display()
                )
            })?,
        };
        let channel = tonic::transport::Endpoint::from_shared(connection.gateway.clone())
            .map_err(|e| format!("bad gateway address: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("cannot reach the gateway at {}: {e}", connection.gateway))?;
        Ok(Self {
            cmdb: CmdbServiceClient::new(channel.clone()),
            change: ChangeServiceClient::new(channel),
            token,
            output: connection.output,
        })
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| "the token has invalid characters".to_string())?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

fn status_text(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(bad) = status.get_error_details().bad_request() {
        for v in &bad.field_violations {
            text.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    text
}

fn enum_arg(text: &str, parse: impl Fn(&str) -> Option<i32>, what: &str) -> Result<i32, String> {
    parse(&text.to_ascii_uppercase()).ok_or_else(|| format!("unknown {what} `{text}`"))
}

fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{what} `{item}` is not key=value"))
        })
        .collect()
}

pub async fn cmdb(command: CmdbCommand) -> Result<(), String> {
    let (connection, command) = match command {
        CmdbCommand::Ci { connection, command } => (connection, *command),
        CmdbCommand::Import { connection, source } => return import(&connection, source).await,
        CmdbCommand::Rel { connection, command } => return relationships(&connection, command).await,
        CmdbCommand::Impact { connection, ci, upstream, depth, also_failed, max_items } => {
            return impact(&connection, &ci, upstream, depth, &also_failed, max_items).await;
        }
    };
    let mut client = Client::connect(&connection).await?;
    match command {
        CiCommand::List { filter, order_by, page_size, page_token } => {
            let request =
                client.request(ListConfigurationItemsRequest { page_size, page_token, filter, order_by })?;
            let response = client
                .cmdb
                .list_configuration_items(request)
                .await
                .map_err(|s| status_text(&s))?
                .into_inner();
            match client.output {
                Output::Json => {
                    let items: Vec<serde_json::Value> =
                        response.configuration_items.iter().map(ci_json).collect();
                    print_json(
                        &serde_json::json!({"configurationItems": items, "nextPageToken": response.next_page_token}),
                    );
                }
                Output::Table => {
                    print_table(&response.configuration_items);
                    if !response.next_page_token.is_empty() {
                        println!("\nmore: --page-token {}", response.next_page_token);
                    }
                }
            }
        }
        CiCommand::Get { name } => {
            let name = if name.contains('/') { name } else { format!("configurationItems/{name}") };
            let request = client.request(GetConfigurationItemRequest { name, read_time: None })?;
            let item =
                client.cmdb.get_configuration_item(request).await.map_err(|s| status_text(&s))?.into_inner();
            show(&item, client.output);
        }
        CiCommand::Create {
            display_name,
            ci_class,
            description,
            environment,
            owner,
            support_group,
            criticality,
            status,
            labels,
            attributes,
            request_id,
        } => {
            let criticality = match criticality {
                Some(c) => enum_arg(
                    &c,
                    |s| Criticality::from_str_name(&format!("CRITICALITY_{s}")).map(|v| v as i32),
                    "criticality",
                )?,
                None => 0,
            };
            let lifecycle_status = match status {
                Some(s) => enum_arg(
                    &s,
                    |s| LifecycleStatus::from_str_name(&format!("LIFECYCLE_STATUS_{s}")).map(|v| v as i32),
                    "status",
                )?,
                None => 0,
            };
            let labels: BTreeMap<String, String> = key_values(&labels, "label")?.into_iter().collect();
            let mut attrs = serde_json::Map::new();
            for (key, value) in key_values(&attributes, "attribute")? {
                let parsed = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
                attrs.insert(key, parsed);
            }
            let item = ConfigurationItem {
                display_name,
                ci_class,
                description,
                environment,
                owner,
                support_group,
                criticality,
                lifecycle_status,
                labels: labels.into_iter().collect(),
                attributes: Some(json_to_struct(&serde_json::Value::Object(attrs))),
                ..ConfigurationItem::default()
            };
            let request = client
                .request(CreateConfigurationItemRequest { configuration_item: Some(item), request_id })?;
            let item = client
                .cmdb
                .create_configuration_item(request)
                .await
                .map_err(|s| status_text(&s))?
                .into_inner();
            show(&item, client.output);
        }
        CiCommand::Delete { name, etag, cascade } => {
            let name = if name.contains('/') { name } else { format!("configurationItems/{name}") };
            let request =
                client.request(DeleteConfigurationItemRequest { name: name.clone(), etag, cascade })?;
            client.cmdb.delete_configuration_item(request).await.map_err(|s| status_text(&s))?;
            match client.output {
                Output::Json => print_json(&serde_json::json!({"deleted": name})),
                Output::Table => println!("deleted {name}"),
            }
        }
    }
    Ok(())
}

fn lifecycle(value: i32) -> String {
    LifecycleStatus::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("LIFECYCLE_STATUS_").to_string())
        .unwrap_or_else(|_| value.to_string())
}

fn criticality(value: i32) -> String {
    Criticality::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("CRITICALITY_").to_string())
        .unwrap_or_else(|_| value.to_string())
}

fn ci_json(item: &ConfigurationItem) -> serde_json::Value {
    let audit = item.audit.clone().unwrap_or_default();
    let time = |t: Option<prost_types::Timestamp>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    serde_json::json!({
        "name": item.name,
        "displayName": item.display_name,
        "ciClass": item.ci_class,
        "description": item.description,
        "lifecycleStatus": lifecycle(item.lifecycle_status),
        "environment": item.environment,
        "criticality": criticality(item.criticality),
        "owner": item.owner,
        "supportGroup": item.support_group,
        "labels": item.labels,
        "attributes": item.attributes.as_ref().map(struct_to_json).unwrap_or_default(),
        "etag": item.etag,
        "createTime": time(audit.create_time),
        "updateTime": time(audit.update_time),
        "creator": audit.creator,
        "updater": audit.updater,
    })
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn show(item: &ConfigurationItem, output: Output) {
    match output {
        Output::Json => print_json(&ci_json(item)),
        Output::Table => {
            if let serde_json::Value::Object(map) = ci_json(item) {
                for (key, value) in map {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    println!("{key:<16} {text}");
                }
            }
        }
    }
}

fn print_table(items: &[ConfigurationItem]) {
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.display_name.clone(),
                i.ci_class.clone(),
                lifecycle(i.lifecycle_status),
                i.environment.clone(),
                i.owner.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "DISPLAY NAME", "CLASS", "STATUS", "ENVIRONMENT", "OWNER"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.is_empty() {
        println!("(no configuration items)");
    }
}

async fn import(connection: &Connection, source: ImportSource) -> Result<(), String> {
    use itsm_cmdb::import;
    use itsm_proto::cmdb::{
        ImportConfigurationItemsRequest, ImportOptions, ImportOutcome,
        import_configuration_items_request::Message,
    };

    let (kind, args) = match &source {
        ImportSource::K8s(args) => ("k8s", args),
        ImportSource::Backstage(args) => ("backstage", args),
    };
    let files =
        import::yaml_files(&args.path).map_err(|e| format!("cannot read {}: {e}", args.path.display()))?;
    if files.is_empty() {
        return Err(format!("no .yaml or .yml files in {}", args.path.display()));
    }
    let batch = match source {
        ImportSource::K8s(_) => import::kubernetes::read(&files),
        ImportSource::Backstage(_) => import::backstage::read(&files),
    };
    let mut client = Client::connect(connection).await?;
    let bar = indicatif::ProgressBar::new(batch.rows.len() as u64);
    if client.output == Output::Json || batch.rows.len() < 1_000 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let source_reference = format!("{kind}:{}", args.path.display());
    let mut totals = [0i64; 5];
    let mut rejected = Vec::new();
    for chunk in batch.rows.chunks(args.chunk.max(1)) {
        let mut messages = vec![ImportConfigurationItemsRequest {
            message: Some(Message::Options(ImportOptions {
                dry_run: args.dry_run,
                source_reference: source_reference.clone(),
            })),
        }];
        messages.extend(
            chunk
                .iter()
                .cloned()
                .map(|row| ImportConfigurationItemsRequest { message: Some(Message::Row(row)) }),
        );
        let request = client.request(tokio_stream::iter(messages))?;
        let report =
            client.cmdb.import_configuration_items(request).await.map_err(|s| status_text(&s))?.into_inner();
        for result in report.results {
            let outcome = ImportOutcome::try_from(result.outcome).unwrap_or(ImportOutcome::Unspecified);
            totals[outcome as usize] += 1;
            if outcome == ImportOutcome::Rejected {
                rejected.push((result.row_id, result.reason));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let [_, created, updated, unchanged, rejected_count] = totals;
    match client.output {
        Output::Json => print_json(&serde_json::json!({
            "dryRun": args.dry_run,
            "created": created, "updated": updated, "unchanged": unchanged, "rejected": rejected_count,
            "skippedDocuments": batch.skipped,
            "rejectedRows": rejected.iter().map(|(row, reason)| serde_json::json!({"row": row, "reason": reason})).collect::<Vec<_>>(),
            "invalidEntities": batch.problems.iter().map(|p| serde_json::json!({"file": p.file, "entity": p.entity, "reason": p.reason})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let mode = if args.dry_run { " (dry run: nothing written)" } else { "" };
            println!(
                "{created} created, {updated} updated, {unchanged} unchanged, {rejected_count} rejected{mode}"
            );
            println!("{} documents of other kinds skipped", batch.skipped);
            for p in &batch.problems {
                println!("invalid: {} {}: {}", p.file, p.entity, p.reason);
            }
            for (row, reason) in &rejected {
                println!("rejected: {row}: {reason}");
            }
        }
    }
    Ok(())
}

async fn relationships(connection: &Connection, command: RelCommand) -> Result<(), String> {
    use itsm_proto::cmdb::{
        CreateRelationshipRequest, DeleteRelationshipRequest, ListRelationshipsRequest, Relationship,
        RelationshipType,
    };
    let mut client = Client::connect(connection).await?;
    let kind_name = |value: i32| {
        RelationshipType::try_from(value)
            .map(|k| k.as_str_name().trim_start_matches("RELATIONSHIP_TYPE_").to_string())
            .unwrap_or_else(|_| value.to_string())
    };
    match command {
        RelCommand::Create { source, kind, target, redundant } => {
            let kind =
                RelationshipType::from_str_name(&format!("RELATIONSHIP_TYPE_{}", kind.to_ascii_uppercase()))
                    .ok_or_else(|| format!("unknown relationship type `{kind}`"))?;
            let relationship = Relationship {
                source: ci_name(&source),
                target: ci_name(&target),
                r#type: kind as i32,
                properties: Some(json_to_struct(&serde_json::json!({ "redundant": redundant }))),
                ..Relationship::default()
            };
            let request = client.request(CreateRelationshipRequest {
                relationship: Some(relationship),
                request_id: String::new(),
            })?;
            let created =
                client.cmdb.create_relationship(request).await.map_err(|s| status_text(&s))?.into_inner();
            match client.output {
                Output::Json => {
                    print_json(&serde_json::json!({"name": created.name, "source": created.source,
                    "type": kind_name(created.r#type), "target": created.target}));
                }
                Output::Table => println!(
                    "{}  {} {} {}",
                    created.name,
                    created.source,
                    kind_name(created.r#type),
                    created.target
                ),
            }
        }
        RelCommand::List { ci, page_size } => {
            let filter = ci.map(|c| format!("ci = \"{}\"", ci_name(&c))).unwrap_or_default();
            let request =
                client.request(ListRelationshipsRequest { page_size, page_token: String::new(), filter })?;
            let list =
                client.cmdb.list_relationships(request).await.map_err(|s| status_text(&s))?.into_inner();
            match client.output {
                Output::Json => {
                    let items: Vec<serde_json::Value> = list
                        .relationships
                        .iter()
                        .map(|r| serde_json::json!({"name": r.name, "source": r.source, "type": kind_name(r.r#type), "target": r.target}))
                        .collect();
                    print_json(
                        &serde_json::json!({"relationships": items, "nextPageToken": list.next_page_token}),
                    );
                }
                Output::Table => {
                    for r in &list.relationships {
                        println!("{}  {} {} {}", r.name, r.source, kind_name(r.r#type), r.target);
                    }
                    if list.relationships.is_empty() {
                        println!("(no relationships)");
                    }
                }
            }
        }
        RelCommand::Delete { name } => {
            let name = if name.contains('/') { name } else { format!("relationships/{name}") };
            let request =
                client.request(DeleteRelationshipRequest { name: name.clone(), etag: String::new() })?;
            client.cmdb.delete_relationship(request).await.map_err(|s| status_text(&s))?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

async fn impact(
    connection: &Connection,
    ci: &str,
    upstream: bool,
    depth: i32,
    also_failed: &[String],
    max_items: i32,
) -> Result<(), String> {
    use itsm_proto::cmdb::{AnalyzeImpactRequest, ImpactDirection};
    let mut client = Client::connect(connection).await?;
    let direction = if upstream { ImpactDirection::Upstream } else { ImpactDirection::Downstream };
    let request = client.request(AnalyzeImpactRequest {
        configuration_item: ci_name(ci),
        direction: direction as i32,
        max_depth: depth,
        relationship_types: vec![],
        also_failed: also_failed.iter().map(|c| ci_name(c)).collect(),
        max_items,
    })?;
    let result = client.cmdb.analyze_impact(request).await.map_err(|s| status_text(&s))?.into_inner();
    match client.output {
        Output::Json => print_json(&serde_json::json!({
            "totalReached": result.total_reached,
            "truncated": result.truncated,
            "items": result.items.iter().map(|i| serde_json::json!({"name": i.configuration_item, "displayName": i.display_name,
                "class": i.ci_class, "depth": i.depth, "reachedFrom": i.reached_from})).collect::<Vec<_>>(),
            "businessServices": result.business_services.iter().map(|i| serde_json::json!({"name": i.configuration_item,
                "displayName": i.display_name, "path": i.path})).collect::<Vec<_>>(),
            "degraded": result.degraded.iter().map(|d| serde_json::json!({"name": d.configuration_item,
                "failedProviders": d.failed_providers, "remainingProviders": d.remaining_providers})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            println!(
                "{} CIs reached{}",
                result.total_reached,
                if result.truncated { " (list truncated)" } else { "" }
            );
            for item in &result.items {
                println!(
                    "{:>5}  {:<40} {:<18} {}",
                    item.depth, item.display_name, item.ci_class, item.configuration_item
                );
            }
            for service in &result.business_services {
                println!("business service impacted: {} (depth {})", service.display_name, service.depth);
            }
            for d in &result.degraded {
                println!(
                    "degraded: {} ({} of {} redundant providers down)",
                    d.configuration_item,
                    d.failed_providers.len(),
                    d.failed_providers.len() + d.remaining_providers.len()
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ChangeCommand {
    /// Record VCS changesets and link them to the changes their messages name (CHG0001234).
    ImportChangesets {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        source: ChangesetSource,
    },
    /// List changesets (newest first): all, of a change, of an author, or the unauthorised ones.
    Changesets {
        #[command(flatten)]
        connection: Connection,
        /// Only those linked to this change (`changes/CHG0000123` or `CHG0000123`).
        #[arg(long)]
        change: Option<String>,
        /// Only this author (as recorded, e.g. "Ann Lee <ann@example.com>").
        #[arg(long)]
        author: Option<String>,
        /// Only changesets that no authorised change covers (the audit report).
        #[arg(long)]
        unauthorized: bool,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
    },
}

#[derive(Subcommand)]
pub enum ChangesetSource {
    /// A git repository's history (the checked-out branch unless --branch).
    Git {
        /// Path of the repository (its working tree or .git directory).
        path: PathBuf,
        #[arg(long)]
        branch: Option<String>,
        /// Only the newest N commits.
        #[arg(long)]
        max_count: Option<usize>,
    },
    /// A TFVC / Azure DevOps changeset export in JSON (the REST API's `value` list).
    Tfvc {
        file: PathBuf,
        /// Repository the changesets belong to, e.g. `$/Shop`.
        #[arg(long)]
        repository: String,
    },
}

pub async fn change(command: ChangeCommand) -> Result<(), String> {
    match command {
        ChangeCommand::ImportChangesets { connection, source } => {
            import_changesets(&connection, source).await
        }
        ChangeCommand::Changesets { connection, change, author, unauthorized, page_size } => {
            let mut client = Client::connect(&connection).await?;
            let changesets = if unauthorized {
                let request =
                    client.request(ListUnauthorizedChangesetsRequest { page_size, ..Default::default() })?;
                client
                    .change
                    .list_unauthorized_changesets(request)
                    .await
                    .map_err(|s| status_text(&s))?
                    .into_inner()
                    .changesets
            } else {
                let mut filters = Vec::new();
                if let Some(change) = change {
                    let name =
                        if change.starts_with("changes/") { change } else { format!("changes/{change}") };
                    filters.push(format!("changes = {}", quoted(&name)));
                }
                if let Some(author) = author {
                    filters.push(format!("author = {}", quoted(&author)));
                }
                let request = client.request(ListChangesetsRequest {
                    page_size,
                    filter: filters.join(" AND "),
                    ..Default::default()
                })?;
                client
                    .change
                    .list_changesets(request)
                    .await
                    .map_err(|s| status_text(&s))?
                    .into_inner()
                    .changesets
            };
            print_changesets(client.output, &changesets);
            Ok(())
        }
    }
}

/// A filter string literal.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn authorization_text(value: i32) -> &'static str {
    match ChangesetAuthorization::try_from(value) {
        Ok(ChangesetAuthorization::Authorized) => "authorized",
        Ok(ChangesetAuthorization::Unauthorized) => "UNAUTHORIZED",
        Ok(ChangesetAuthorization::Unlinked) => "UNLINKED",
        _ => "?",
    }
}

fn print_changesets(output: Output, changesets: &[Changeset]) {
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = changesets
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name, "repository": c.repository, "revision": c.revision,
                        "author": c.author, "message": c.message, "changes": c.changes,
                        "unknownChanges": c.unknown_changes,
                        "authorization": authorization_text(c.authorization),
                        "authorizationReason": c.authorization_reason,
                    })
                })
                .collect();
            print_json(&serde_json::json!({ "changesets": items }));
        }
        Output::Table => {
            println!("{:<12} {:<14} {:<28} WHY", "REVISION", "AUTHORIZATION", "AUTHOR");
            for c in changesets {
                let revision: String = c.revision.chars().take(12).collect();
                let author: String = c.author.chars().take(28).collect();
                println!(
                    "{revision:<12} {:<14} {author:<28} {}",
                    authorization_text(c.authorization),
                    c.authorization_reason
                );
            }
        }
    }
}

async fn import_changesets(connection: &Connection, source: ChangesetSource) -> Result<(), String> {
    let changesets = match &source {
        ChangesetSource::Git { path, branch, max_count } => {
            itsm_change::import::git_history(path, branch.as_deref(), *max_count)
                .map_err(|e| e.to_string())?
        }
        ChangesetSource::Tfvc { file, repository } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            itsm_change::import::tfvc_export(&text, repository).map_err(|e| e.to_string())?
        }
    };
    let mut client = Client::connect(connection).await?;
    let mut recorded = Vec::with_capacity(changesets.len());
    for changeset in changesets {
        let revision = changeset.revision.clone();
        let request =
            client.request(RecordChangesetRequest { changeset: Some(changeset), changes: Vec::new() })?;
        let stored = client
            .change
            .record_changeset(request)
            .await
            .map_err(|s| format!("changeset {revision}: {}", status_text(&s)))?
            .into_inner();
        recorded.push(stored);
    }
    let count = |a: ChangesetAuthorization| recorded.iter().filter(|c| c.authorization == a as i32).count();
    let flagged: Vec<Changeset> = recorded
        .iter()
        .filter(|c| c.authorization != ChangesetAuthorization::Authorized as i32)
        .cloned()
        .collect();
    match client.output {
        Output::Json => print_json(&serde_json::json!({
            "recorded": recorded.len(),
            "authorized": count(ChangesetAuthorization::Authorized),
            "unauthorized": count(ChangesetAuthorization::Unauthorized),
            "unlinked": count(ChangesetAuthorization::Unlinked),
        })),
        Output::Table => {
            println!(
                "recorded {} changesets: {} authorized, {} unauthorized, {} unlinked",
                recorded.len(),
                count(ChangesetAuthorization::Authorized),
                count(ChangesetAuthorization::Unauthorized),
                count(ChangesetAuthorization::Unlinked)
            );
            if !flagged.is_empty() {
                print_changesets(Output::Table, &flagged);
            }
        }
    }
    Ok(())
}
