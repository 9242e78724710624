//! Impact analysis over the stored graph.

use std::collections::HashMap;

use itsm_proto::cmdb::{AnalyzeImpactResponse, DegradedItem, ImpactedItem};
use itsm_runtime::{CallContext, Error};

use super::Repository;
use super::relationships::TenantGraph;
use crate::convert::resource_name;
use crate::domain::impact::{ImpactQuery, analyze};

/// Largest number of CIs one analysis returns.
pub const MAX_IMPACT_NODES: usize = 50_000;

impl Repository {
    pub async fn analyze_impact(
        &self,
        ctx: &CallContext,
        query: ImpactQuery,
    ) -> Result<AnalyzeImpactResponse, Error> {
        let mut wanted = vec![query.root.clone()];
        wanted.extend(query.also_failed.iter().cloned());
        let found = Self::find_many(&self.db, &ctx.tenant, &wanted).await?;
        if let Some(missing) = wanted.iter().find(|id| !found.iter().any(|m| &m.id == *id)) {
            return Err(Error::NotFound(resource_name(missing)));
        }
        let graph = TenantGraph { db: &self.db, tenant: &ctx.tenant };
        let result = analyze(&graph, &query).await?;

        let ids: Vec<String> = result.reached.iter().map(|r| r.id.clone()).collect();
        let models: HashMap<String, _> = Self::find_many(&self.db, &ctx.tenant, &ids)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let mut items = Vec::with_capacity(result.reached.len());
        let mut business_services = Vec::new();
        for reached in &result.reached {
            let Some(model) = models.get(&reached.id) else { continue };
            let item = ImpactedItem {
                configuration_item: resource_name(&reached.id),
                display_name: model.display_name.clone(),
                ci_class: model.ci_class.clone(),
                depth: reached.depth as i32,
                path: reached.path.iter().map(|id| resource_name(id)).collect(),
            };
            if registry.is_a(&model.ci_class, "business_service") {
                business_services.push(item.clone());
            }
            items.push(item);
        }
        let degraded = result
            .degraded
            .iter()
            .map(|d| DegradedItem {
                configuration_item: resource_name(&d.id),
                failed_providers: d.failed.iter().map(|id| resource_name(id)).collect(),
                remaining_providers: d.remaining.iter().map(|id| resource_name(id)).collect(),
            })
            .collect();
        Ok(AnalyzeImpactResponse { items, business_services, degraded, truncated: result.truncated })
    }
}
