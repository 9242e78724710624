//! `itsm.cmdb.v1.CmdbService`: validates requests and translates; the rules live in `domain`,
//! persistence in `repo`.

use tonic::{Request, Response, Status};

use itsm_proto::cmdb::cmdb_service_server::CmdbService;
use itsm_proto::cmdb::{
    BatchGetConfigurationItemsRequest, BatchGetConfigurationItemsResponse, ConfigurationItem,
    CreateConfigurationItemRequest, DeleteConfigurationItemRequest, DeleteConfigurationItemResponse,
    GetConfigurationItemRequest, ListConfigurationItemHistoryRequest, ListConfigurationItemHistoryResponse,
    ListConfigurationItemsRequest, ListConfigurationItemsResponse, UpdateConfigurationItemRequest,
};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::{CallContext, Error, db, filter, idempotency};

use crate::convert::{fields_from_proto, parse_name, to_proto};
use crate::domain::ci::{CiFields, UPDATABLE};
use crate::repo::{ORDER_FIELDS, Repository, WriteSource, parse_filter};

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

fn validated(fields: &CiFields) -> Result<(), Error> {
    let mut violations = Violations::new();
    fields.validate("configuration_item", &mut violations);
    violations.into_result()
}

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
        validated(&fields)?;
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
        let filter = parse_filter(&request.filter, &ctx.tenant)?;
        let order =
            filter::parse_order_by(&request.order_by, ORDER_FIELDS)?.unwrap_or(("display_name", false));
        let fingerprint =
            PageTokens::fingerprint(&[&ctx.tenant, "configurationItems", &request.filter, &request.order_by]);
        let after = self.page_tokens.decode(&request.page_token, &fingerprint)?;
        let page = self.repo.list(&ctx, filter.as_ref(), order, after, size).await?;
        let next_page_token = match page.next_key {
            Some(key) => self.page_tokens.encode(&fingerprint, key)?,
            None => String::new(),
        };
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
                validated,
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
        self.repo.delete(&ctx, &id, &request.etag, &WriteSource::user()).await?;
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
        let after = match self.page_tokens.decode(&request.page_token, &fingerprint)? {
            Some(key) => key
                .first()
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| Error::invalid("page_token", "invalid page token"))?,
            None => 0,
        };
        let page = self.repo.history(&ctx, &id, after, size).await?;
        let next_page_token = match page.next_key {
            Some(key) => self.page_tokens.encode(&fingerprint, key)?,
            None => String::new(),
        };
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
}
