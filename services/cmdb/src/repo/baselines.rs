//! Baselines: a snapshot of the CIs a filter matched, compared later with what is there now.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, QuerySelect,
};

use itsm_proto::cmdb::{Baseline, BaselineChange, CompareBaselineResponse};
use itsm_proto::common::{AuditInfo, FieldChange};
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::{CallContext, Error};

use super::{Page, Repository};
use crate::convert::more::BASELINE_PREFIX;
use crate::convert::{fields_from_model, resource_name};
use crate::domain::ci::CiFields;
use crate::entity::baseline;

/// Most CIs one baseline holds.
pub const MAX_BASELINE_ITEMS: u64 = 100_000;

type Snapshot = BTreeMap<String, serde_json::Value>;

fn snapshot_of(fields: &CiFields) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for field in crate::domain::ci::UPDATABLE {
        map.insert((*field).to_string(), fields.field_json(field));
    }
    serde_json::Value::Object(map)
}

fn to_proto(model: &baseline::Model) -> Baseline {
    Baseline {
        name: format!("{BASELINE_PREFIX}{}", model.id),
        display_name: model.display_name.clone(),
        filter: model.filter.clone(),
        item_count: model.item_count,
        audit: Some(AuditInfo {
            create_time: Some(timestamp(model.create_time)),
            update_time: Some(timestamp(model.create_time)),
            creator: model.creator.clone(),
            updater: model.creator.clone(),
        }),
    }
}

impl Repository {
    pub async fn create_baseline(
        &self,
        ctx: &CallContext,
        display_name: &str,
        filter_text: &str,
        filter: Option<&Filter>,
    ) -> Result<Baseline, Error> {
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let models = Self::all_matching(&self.db, ctx, &registry, filter, MAX_BASELINE_ITEMS + 1).await?;
        if models.len() as u64 > MAX_BASELINE_ITEMS {
            return Err(Error::FailedPrecondition(format!(
                "the filter matches more than {MAX_BASELINE_ITEMS} CIs; narrow it"
            )));
        }
        let snapshot: Snapshot =
            models.iter().map(|m| (m.id.clone(), snapshot_of(&fields_from_model(m)))).collect();
        let model = baseline::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ctx.tenant.clone(),
            display_name: display_name.to_string(),
            filter: filter_text.to_string(),
            item_count: snapshot.len() as i32,
            snapshot: serde_json::to_string(&snapshot).map_err(|e| Error::Internal(e.to_string()))?,
            create_time: now_micros(),
            creator: ctx.principal.clone(),
        };
        model.clone().into_active_model().reset_all().insert(&self.db).await?;
        Ok(to_proto(&model))
    }

    async fn find_baseline(&self, ctx: &CallContext, id: &str) -> Result<baseline::Model, Error> {
        baseline::Entity::find()
            .filter(baseline::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(baseline::Column::Id.eq(id))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{BASELINE_PREFIX}{id}")))
    }

    pub async fn get_baseline(&self, ctx: &CallContext, id: &str) -> Result<Baseline, Error> {
        Ok(to_proto(&self.find_baseline(ctx, id).await?))
    }

    pub async fn list_baselines(
        &self,
        ctx: &CallContext,
        after: Option<String>,
        limit: u64,
    ) -> Result<Page<Baseline>, Error> {
        let mut query = baseline::Entity::find().filter(baseline::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(after) = after {
            query = query.filter(baseline::Column::Id.lt(after));
        }
        let rows = query.order_by(baseline::Column::Id, Order::Desc).limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<baseline::Model> = rows.into_iter().take(limit as usize).collect();
        let next_key = if more { rows.last().map(|r| vec![serde_json::json!(r.id)]) } else { None };
        Ok(Page { items: rows.iter().map(to_proto).collect(), next_key })
    }

    pub async fn compare_baseline(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<CompareBaselineResponse, Error> {
        let stored = self.find_baseline(ctx, id).await?;
        let then: Snapshot =
            serde_json::from_str(&stored.snapshot).map_err(|e| Error::Internal(e.to_string()))?;
        let filter = itsm_runtime::filter::parse(&stored.filter)?;
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let now_models =
            Self::all_matching(&self.db, ctx, &registry, filter.as_ref(), MAX_BASELINE_ITEMS + 1).await?;
        let now: Snapshot =
            now_models.iter().map(|m| (m.id.clone(), snapshot_of(&fields_from_model(m)))).collect();
        let mut response = CompareBaselineResponse::default();
        for (ci, before) in &then {
            match now.get(ci) {
                None => response.removed.push(resource_name(ci)),
                Some(after) if after == before => response.unchanged_count += 1,
                Some(after) => {
                    let changes = crate::domain::ci::UPDATABLE
                        .iter()
                        .filter(|f| before.get(**f) != after.get(**f))
                        .map(|f| FieldChange {
                            field: (*f).to_string(),
                            old_value: before.get(*f).map(ToString::to_string).unwrap_or_default(),
                            new_value: after.get(*f).map(ToString::to_string).unwrap_or_default(),
                        })
                        .collect();
                    response.changed.push(BaselineChange { configuration_item: resource_name(ci), changes });
                }
            }
        }
        response.added =
            now.keys().filter(|ci| !then.contains_key(*ci)).map(|ci| resource_name(ci)).collect();
        Ok(response)
    }
}
