//! `itsm.cmdb.v1.CmdbService`: validates requests and translates; the rules live in `domain`,
//! persistence in `repo`.

use tonic::{Request, Response, Status};

use itsm_proto::cmdb::cmdb_service_server::CmdbService;
use itsm_proto::cmdb::{
    AnalyzeImpactRequest, AnalyzeImpactResponse, Baseline, BatchGetConfigurationItemsRequest,
    BatchGetConfigurationItemsResponse, CiClass, CompareBaselineRequest, CompareBaselineResponse,
    ConfigurationItem, CreateBaselineRequest, CreateCiClassRequest, CreateConfigurationItemRequest,
    CreateRelationshipRequest, DeleteCiClassRequest, DeleteCiClassResponse, DeleteConfigurationItemRequest,
    DeleteConfigurationItemResponse, DeleteRelationshipRequest, DeleteRelationshipResponse,
    GetBaselineRequest, GetCiClassRequest, GetConfigurationItemRequest, GetRelationshipRequest,
    ImpactDirection, ImportConfigurationItemsRequest, ImportConfigurationItemsResponse, ImportOutcome,
    ImportRow, ImportRowResult, ListBaselinesRequest, ListBaselinesResponse, ListCiClassesRequest,
    ListCiClassesResponse, ListConfigurationItemHistoryRequest, ListConfigurationItemHistoryResponse,
    ListConfigurationItemsRequest, ListConfigurationItemsResponse, ListRelationshipHistoryRequest,
    ListRelationshipHistoryResponse, ListRelationshipsRequest, ListRelationshipsResponse, Relationship,
    UpdateConfigurationItemRequest, import_configuration_items_request,
};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::{CallContext, Error, db, filter, idempotency};

use crate::convert::more::{
    BASELINE_PREFIX, CLASS_PREFIX, RELATIONSHIP_PREFIX, attr_from_proto, parse_uuid_name,
};
use crate::convert::{fields_from_proto, parse_name, to_proto};
use crate::domain::ci::UPDATABLE;
use crate::domain::classes::ClassDef;
use crate::domain::impact::{Direction, ImpactQuery};
use crate::domain::relationships::{RelKind, check_properties};
use crate::repo::Repository;
use crate::repo::WriteSource;
use crate::repo::impact::MAX_IMPACT_NODES;
use crate::repo::import::{ImportPipeline, ImportSession};
use crate::repo::items::ORDER_FIELDS;
use crate::repo::relationships::{NewRelationship, check_relationship_filter};

/// Most names in one BatchGet.
const MAX_BATCH: usize = 1000;

pub struct CmdbApi {
    pub repo: Repository,
    pub page_tokens: PageTokens,
}

fn id_from_name(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    parse_name(name).ok_or_else(|| Error::invalid(field, "must be `configurationItems/{uuid}`"))
}

fn uuid_name(name: &str, prefix: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    parse_uuid_name(name, prefix).ok_or_else(|| Error::invalid(field, format!("must be `{prefix}{{uuid}}`")))
}

/// Most rows one import call takes; larger imports are split by the client.
pub const MAX_IMPORT_ROWS: usize = 50_000;
/// Rows applied per transaction (each in its own savepoint). Bounded because the outbox lock is
/// held from a batch's first event to its commit.
pub const IMPORT_BATCH: usize = 500;

#[tonic::async_trait]
impl CmdbService for CmdbApi {
    async fn create_configuration_item(
        &self,
        request: Request<CreateConfigurationItemRequest>,
    ) -> Result<Response<ConfigurationItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(item) = request.configuration_item.as_ref() else {
            return Err(Error::invalid("configuration_item", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut fields = fields_from_proto(item);
        if fields.lifecycle_status == 0 {
            fields.lifecycle_status = 1; // PLANNED
        }
        let hash = idempotency::request_hash(&request);
        let created =
            self.repo.create(&ctx, fields, &request.request_id, &hash, &WriteSource::user()).await?;
        Ok(Response::new(created))
    }

    async fn get_configuration_item(
        &self,
        request: Request<GetConfigurationItemRequest>,
    ) -> Result<Response<ConfigurationItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let id = id_from_name(&request.name, "name")?;
        let item = match request.read_time {
            Some(at) => self.repo.get_at(&ctx, &id, db::micros(&at)).await?,
            None => self.repo.get(&ctx, &id).await?,
        };
        Ok(Response::new(item))
    }

    async fn list_configuration_items(
        &self,
        request: Request<ListConfigurationItemsRequest>,
    ) -> Result<Response<ListConfigurationItemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size, "page_size")?;
        let filter = filter::parse(&request.filter)?;
        let order =
            filter::parse_order_by(&request.order_by, ORDER_FIELDS)?.unwrap_or(("display_name", false));
        let fingerprint =
            PageTokens::fingerprint(&[&ctx.tenant, "configurationItems", &request.filter, &request.order_by]);
        let after = self.page_tokens.decode(&request.page_token, &fingerprint)?;
        let page = self.repo.list(&ctx, filter.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListConfigurationItemsResponse { configuration_items: page.items, next_page_token }))
    }

    async fn update_configuration_item(
        &self,
        request: Request<UpdateConfigurationItemRequest>,
    ) -> Result<Response<ConfigurationItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(item) = request.configuration_item else {
            return Err(Error::invalid("configuration_item", "is required").into());
        };
        let id = id_from_name(&item.name, "configuration_item.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let incoming = fields_from_proto(&item);
        let updated = self
            .repo
            .update(
                &ctx,
                &id,
                &item.etag,
                |fields| {
                    for path in mask.paths() {
                        match path.as_str() {
                            "display_name" => fields.display_name.clone_from(&incoming.display_name),
                            "ci_class" => fields.ci_class.clone_from(&incoming.ci_class),
                            "description" => fields.description.clone_from(&incoming.description),
                            "lifecycle_status" => fields.lifecycle_status = incoming.lifecycle_status,
                            "environment" => fields.environment.clone_from(&incoming.environment),
                            "criticality" => fields.criticality = incoming.criticality,
                            "owner" => fields.owner.clone_from(&incoming.owner),
                            "support_group" => fields.support_group.clone_from(&incoming.support_group),
                            "labels" => fields.labels.clone_from(&incoming.labels),
                            "attributes" => fields.attributes.clone_from(&incoming.attributes),
                            _ => {}
                        }
                    }
                },
                &WriteSource::user(),
            )
            .await?;
        Ok(Response::new(updated))
    }

    async fn delete_configuration_item(
        &self,
        request: Request<DeleteConfigurationItemRequest>,
    ) -> Result<Response<DeleteConfigurationItemResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let id = id_from_name(&request.name, "name")?;
        self.repo.delete(&ctx, &id, &request.etag, request.cascade, &WriteSource::user()).await?;
        Ok(Response::new(DeleteConfigurationItemResponse {}))
    }

    async fn list_configuration_item_history(
        &self,
        request: Request<ListConfigurationItemHistoryRequest>,
    ) -> Result<Response<ListConfigurationItemHistoryResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let id = id_from_name(&request.name, "name")?;
        let size = page_size(request.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "history", &id]);
        let after = self.page_tokens.decode_number(&request.page_token, &fingerprint)?;
        let page = self.repo.history(&ctx, &id, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListConfigurationItemHistoryResponse { entries: page.items, next_page_token }))
    }

    async fn batch_get_configuration_items(
        &self,
        request: Request<BatchGetConfigurationItemsRequest>,
    ) -> Result<Response<BatchGetConfigurationItemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        if request.names.len() > MAX_BATCH {
            return Err(Error::invalid("names", format!("at most {MAX_BATCH} names")).into());
        }
        let mut violations = Violations::new();
        let mut ids = Vec::with_capacity(request.names.len());
        for (i, name) in request.names.iter().enumerate() {
            match parse_name(name) {
                Some(id) => ids.push(id),
                None => violations.add(format!("names[{i}]"), "must be `configurationItems/{uuid}`"),
            }
        }
        violations.into_result()?;
        let found = self.repo.batch_get(&ctx, &ids).await?;
        let mut configuration_items = Vec::new();
        let mut missing_names = Vec::new();
        for (name, id) in request.names.iter().zip(&ids) {
            match found.iter().find(|m| &m.id == id) {
                Some(model) => configuration_items.push(to_proto(model)),
                None => missing_names.push(name.clone()),
            }
        }
        Ok(Response::new(BatchGetConfigurationItemsResponse { configuration_items, missing_names }))
    }

    async fn create_ci_class(
        &self,
        request: Request<CreateCiClassRequest>,
    ) -> Result<Response<CiClass>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(class) = request.ci_class else {
            return Err(Error::invalid("ci_class", "is required").into());
        };
        let mut violations = Violations::new();
        let mut attributes = Vec::new();
        for (i, a) in class.attributes.iter().enumerate() {
            match attr_from_proto(a) {
                Some(def) => attributes.push(def),
                None => violations.add(format!("ci_class.attributes[{i}].type"), "is required"),
            }
        }
        violations.into_result()?;
        let def = ClassDef {
            id: request.ci_class_id,
            display_name: class.display_name,
            parent: (!class.parent.is_empty()).then_some(class.parent),
            description: class.description,
            attributes,
            natural_key: class.natural_key,
            builtin: false,
        };
        Ok(Response::new(self.repo.create_class(&ctx, def).await?))
    }

    async fn get_ci_class(&self, request: Request<GetCiClassRequest>) -> Result<Response<CiClass>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = request.into_inner().name;
        let id = name
            .strip_prefix(CLASS_PREFIX)
            .ok_or_else(|| Error::invalid("name", "must be `ciClasses/{class_id}`"))?;
        Ok(Response::new(self.repo.get_class(&ctx, id).await?))
    }

    async fn list_ci_classes(
        &self,
        request: Request<ListCiClassesRequest>,
    ) -> Result<Response<ListCiClassesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size, "page_size")? as usize;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "ciClasses"]);
        let after = self.page_tokens.decode_text(&request.page_token, &fingerprint)?;
        let all = self.repo.list_classes(&ctx).await?;
        let mut rest: Vec<CiClass> =
            all.into_iter().filter(|c| after.as_ref().is_none_or(|a| &c.name > a)).collect();
        let more = rest.len() > size;
        rest.truncate(size);
        let next_page_token = match (more, rest.last()) {
            (true, Some(last)) => {
                self.page_tokens.encode(&fingerprint, vec![serde_json::json!(last.name)])?
            }
            _ => String::new(),
        };
        Ok(Response::new(ListCiClassesResponse { ci_classes: rest, next_page_token }))
    }

    async fn delete_ci_class(
        &self,
        request: Request<DeleteCiClassRequest>,
    ) -> Result<Response<DeleteCiClassResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = request.into_inner().name;
        let id = name
            .strip_prefix(CLASS_PREFIX)
            .ok_or_else(|| Error::invalid("name", "must be `ciClasses/{class_id}`"))?;
        self.repo.delete_class(&ctx, id).await?;
        Ok(Response::new(DeleteCiClassResponse {}))
    }

    async fn create_relationship(
        &self,
        request: Request<CreateRelationshipRequest>,
    ) -> Result<Response<Relationship>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(rel) = request.relationship.as_ref() else {
            return Err(Error::invalid("relationship", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut violations = Violations::new();
        let source = parse_name(&rel.source);
        let target = parse_name(&rel.target);
        violations.check(source.is_some(), "relationship.source", "must be `configurationItems/{uuid}`");
        violations.check(target.is_some(), "relationship.target", "must be `configurationItems/{uuid}`");
        let kind = RelKind::from_proto(rel.r#type);
        violations.check(
            kind.is_some(),
            "relationship.type",
            "must be DEPENDS_ON, RUNS_ON, PART_OF, CONNECTS_TO or OWNED_BY",
        );
        let properties = rel
            .properties
            .as_ref()
            .map_or_else(|| serde_json::json!({}), itsm_runtime::structs::struct_to_json);
        if let Err((field, reason)) = check_properties(&properties) {
            violations.add(format!("relationship.{field}"), reason);
        }
        violations.into_result()?;
        let (Some(source_id), Some(target_id), Some(kind)) = (source, target, kind) else {
            return Err(Error::invalid("relationship", "is invalid").into());
        };
        let hash = idempotency::request_hash(&request);
        let new = NewRelationship { source_id, target_id, kind, properties };
        Ok(Response::new(self.repo.create_relationship(&ctx, new, &request.request_id, &hash).await?))
    }

    async fn get_relationship(
        &self,
        request: Request<GetRelationshipRequest>,
    ) -> Result<Response<Relationship>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_name(&request.get_ref().name, RELATIONSHIP_PREFIX, "name")?;
        Ok(Response::new(self.repo.get_relationship(&ctx, &id).await?))
    }

    async fn list_relationships(
        &self,
        request: Request<ListRelationshipsRequest>,
    ) -> Result<Response<ListRelationshipsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size, "page_size")?;
        let filter = filter::parse(&request.filter)?;
        if let Some(expr) = &filter {
            check_relationship_filter(expr)?;
        }
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "relationships", &request.filter]);
        let after = self.page_tokens.decode_text(&request.page_token, &fingerprint)?;
        let page = self.repo.list_relationships(&ctx, filter.as_ref(), after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListRelationshipsResponse { relationships: page.items, next_page_token }))
    }

    async fn delete_relationship(
        &self,
        request: Request<DeleteRelationshipRequest>,
    ) -> Result<Response<DeleteRelationshipResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let id = uuid_name(&request.name, RELATIONSHIP_PREFIX, "name")?;
        self.repo.delete_relationship(&ctx, &id, &request.etag).await?;
        Ok(Response::new(DeleteRelationshipResponse {}))
    }

    async fn list_relationship_history(
        &self,
        request: Request<ListRelationshipHistoryRequest>,
    ) -> Result<Response<ListRelationshipHistoryResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let id = id_from_name(&request.configuration_item, "configuration_item")?;
        let size = page_size(request.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "relationshipHistory", &id]);
        let after = self.page_tokens.decode_number(&request.page_token, &fingerprint)?;
        let page = self.repo.relationship_history(&ctx, &id, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListRelationshipHistoryResponse { entries: page.items, next_page_token }))
    }

    async fn analyze_impact(
        &self,
        request: Request<AnalyzeImpactRequest>,
    ) -> Result<Response<AnalyzeImpactResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let root = parse_name(&request.configuration_item);
        violations.check(root.is_some(), "configuration_item", "must be `configurationItems/{uuid}`");
        let direction = match ImpactDirection::try_from(request.direction) {
            Ok(ImpactDirection::Downstream) => Some(Direction::Downstream),
            Ok(ImpactDirection::Upstream) => Some(Direction::Upstream),
            _ => None,
        };
        violations.check(direction.is_some(), "direction", "must be DOWNSTREAM or UPSTREAM");
        violations.check(
            (0..=10).contains(&request.max_depth),
            "max_depth",
            "must be between 1 and 10 (0 = 5)",
        );
        let mut kinds = Vec::new();
        for (i, kind) in request.relationship_types.iter().enumerate() {
            match RelKind::from_proto(*kind) {
                Some(k) if !kinds.contains(&k) => kinds.push(k),
                Some(_) => {}
                None => violations.add(format!("relationship_types[{i}]"), "unknown relationship type"),
            }
        }
        let mut also_failed = Vec::new();
        for (i, name) in request.also_failed.iter().enumerate() {
            match parse_name(name) {
                Some(id) => also_failed.push(id),
                None => violations.add(format!("also_failed[{i}]"), "must be `configurationItems/{uuid}`"),
            }
        }
        violations.check(also_failed.len() <= 100, "also_failed", "at most 100 CIs");
        violations.check(
            (0..=10_000).contains(&request.max_items),
            "max_items",
            "must be between 1 and 10000 (0 = 1000)",
        );
        violations.into_result()?;
        let (Some(root), Some(direction)) = (root, direction) else {
            return Err(Error::invalid("configuration_item", "is invalid").into());
        };
        let query = ImpactQuery {
            root,
            direction,
            max_depth: if request.max_depth == 0 { 5 } else { request.max_depth as u32 },
            kinds: if kinds.is_empty() { RelKind::default_impact() } else { kinds },
            also_failed,
            max_nodes: MAX_IMPACT_NODES,
        };
        let max_items = if request.max_items == 0 { 1_000 } else { request.max_items as usize };
        Ok(Response::new(self.repo.analyze_impact(&ctx, query, max_items).await?))
    }

    async fn create_baseline(
        &self,
        request: Request<CreateBaselineRequest>,
    ) -> Result<Response<Baseline>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(baseline) = request.baseline else {
            return Err(Error::invalid("baseline", "is required").into());
        };
        let mut violations = Violations::new();
        violations.check(
            !baseline.display_name.trim().is_empty() && baseline.display_name.len() <= 200,
            "baseline.display_name",
            "is required, at most 200 characters",
        );
        violations.into_result()?;
        // Filter errors name the request field they come from.
        let in_baseline = |e: Error| match e {
            Error::InvalidArgument(v) => Error::InvalidArgument(
                v.into_iter()
                    .map(|x| {
                        let field = if x.field == "filter" { "baseline.filter".to_string() } else { x.field };
                        itsm_runtime::error::FieldViolation::new(field, x.description)
                    })
                    .collect(),
            ),
            other => other,
        };
        let filter = filter::parse(&baseline.filter).map_err(in_baseline)?;
        let created = self
            .repo
            .create_baseline(&ctx, &baseline.display_name, &baseline.filter, filter.as_ref())
            .await
            .map_err(in_baseline)?;
        Ok(Response::new(created))
    }

    async fn get_baseline(&self, request: Request<GetBaselineRequest>) -> Result<Response<Baseline>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_name(&request.get_ref().name, BASELINE_PREFIX, "name")?;
        Ok(Response::new(self.repo.get_baseline(&ctx, &id).await?))
    }

    async fn list_baselines(
        &self,
        request: Request<ListBaselinesRequest>,
    ) -> Result<Response<ListBaselinesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "baselines"]);
        let after = self.page_tokens.decode_text(&request.page_token, &fingerprint)?;
        let page = self.repo.list_baselines(&ctx, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListBaselinesResponse { baselines: page.items, next_page_token }))
    }

    async fn compare_baseline(
        &self,
        request: Request<CompareBaselineRequest>,
    ) -> Result<Response<CompareBaselineResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_name(&request.get_ref().name, BASELINE_PREFIX, "name")?;
        Ok(Response::new(self.repo.compare_baseline(&ctx, &id).await?))
    }

    async fn import_configuration_items(
        &self,
        request: Request<tonic::Streaming<ImportConfigurationItemsRequest>>,
    ) -> Result<Response<ImportConfigurationItemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let mut stream = request.into_inner();
        let registry = Repository::registry(&self.repo.db, &ctx.tenant).await?;
        let mut session: Option<ImportSession> = None;
        let mut response = ImportConfigurationItemsResponse::default();
        let mut rows = 0usize;
        let mut pending: Vec<ImportRow> = Vec::with_capacity(IMPORT_BATCH);
        let mut pipeline = ImportPipeline::new(self.repo.clone(), ctx.clone());
        loop {
            let message = stream.message().await?;
            let done = message.is_none();
            match message.map(|m| m.message) {
                None => {}
                Some(None) => return Err(Error::invalid("message", "is empty").into()),
                Some(Some(import_configuration_items_request::Message::Options(options))) => {
                    if session.is_some() || rows > 0 {
                        return Err(
                            Error::invalid("options", "options come once, in the first message").into()
                        );
                    }
                    if options.source_reference.len() > 500 {
                        return Err(
                            Error::invalid("options.source_reference", "at most 500 characters").into()
                        );
                    }
                    response.dry_run = options.dry_run;
                    session = Some(ImportSession::new(
                        registry.clone(),
                        options.dry_run,
                        WriteSource::import(&options.source_reference),
                    ));
                }
                Some(Some(import_configuration_items_request::Message::Row(row))) => {
                    rows += 1;
                    if rows > MAX_IMPORT_ROWS {
                        return Err(Error::invalid(
                            "row",
                            format!("at most {MAX_IMPORT_ROWS} rows per call; split the import"),
                        )
                        .into());
                    }
                    pending.push(row);
                }
            }
            if pending.len() >= IMPORT_BATCH || (done && !pending.is_empty()) {
                let session = session.get_or_insert_with(|| {
                    ImportSession::new(registry.clone(), false, WriteSource::import(""))
                });
                let finished = pipeline.push(session, std::mem::take(&mut pending)).await?;
                tally(&mut response, finished);
            }
            if done {
                break;
            }
        }
        tally(&mut response, pipeline.finish().await?);
        Ok(Response::new(response))
    }
}

/// Adds finished rows to the import's response and its counts.
fn tally(response: &mut ImportConfigurationItemsResponse, results: Vec<ImportRowResult>) {
    for result in results {
        match ImportOutcome::try_from(result.outcome) {
            Ok(ImportOutcome::Created) => response.created += 1,
            Ok(ImportOutcome::Updated) => response.updated += 1,
            Ok(ImportOutcome::Unchanged) => response.unchanged += 1,
            _ => response.rejected += 1,
        }
        response.results.push(result);
    }
}
