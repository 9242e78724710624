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
        max_items: usize,
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
        let names: HashMap<String, (String, String)> = Self::find_names(&self.db, &ctx.tenant, &ids).await?;
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let item = |reached: &crate::domain::impact::Reached, with_path: bool| {
            let (display_name, ci_class) = names.get(&reached.id).cloned().unwrap_or_default();
            ImpactedItem {
                configuration_item: resource_name(&reached.id),
                display_name,
                ci_class,
                depth: reached.depth as i32,
                path: if with_path {
                    result.path(&reached.id).iter().map(|id| resource_name(id)).collect()
                } else {
                    Vec::new()
                },
                reached_from: resource_name(&reached.from),
            }
        };
        let items: Vec<ImpactedItem> =
            result.reached.iter().take(max_items).map(|r| item(r, false)).collect();
        let business_services: Vec<ImpactedItem> = result
            .reached
            .iter()
            .filter(|r| names.get(&r.id).is_some_and(|(_, class)| registry.is_a(class, "business_service")))
            .take(max_items)
            .map(|r| item(r, true))
            .collect();
        let degraded = result
            .degraded
            .iter()
            .map(|d| DegradedItem {
                configuration_item: resource_name(&d.id),
                failed_providers: d.failed.iter().map(|id| resource_name(id)).collect(),
                remaining_providers: d.remaining.iter().map(|id| resource_name(id)).collect(),
            })
            .collect();
        Ok(AnalyzeImpactResponse {
            truncated: result.truncated
                || result.reached.len() > items.len()
                || business_services.len() == max_items,
            total_reached: result.reached.len() as i32,
            items,
            business_services,
            degraded,
        })
    }
}
