//! Impact analysis over the tenant's relationship graph, walked in memory
//! ([`GraphCache`](super::graph_cache::GraphCache)); names are read only for the CIs returned.

use std::collections::{HashMap, HashSet};

use itsm_proto::cmdb::{AnalyzeImpactResponse, DegradedItem, ImpactedItem};
use itsm_runtime::{CallContext, Error};

use super::Repository;
use crate::convert::resource_name;
use crate::domain::graph::{RelationshipGraph, id_of, key_of};
use crate::domain::impact::{ImpactQuery, ImpactResult, Reached, analyze};

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
        let indexed = self.graphs.current(&self.db, &ctx.tenant).await?;
        let Some(graph) = indexed.as_ref().map(|i| &i.graph) else {
            return Err(Error::Internal("relationship graph not loaded".into()));
        };
        // A CI the graph does not know has no relationships: it reaches nothing.
        let Some(query) = query.map(|id| key_of(id).and_then(|key| graph.number(key))) else {
            return Ok(AnalyzeImpactResponse::default());
        };
        let result = analyze(graph, &query);

        // Business services by class (a tenant's own classes may extend the shipped one).
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let mut is_service: HashMap<&str, bool> = HashMap::new();
        let mut business = |node: u32| match graph.class(node) {
            Some(class) => {
                *is_service.entry(class).or_insert_with(|| registry.is_a(class, "business_service"))
            }
            None => false,
        };
        let items: Vec<&Reached<u32>> = result.reached.iter().take(max_items).collect();
        let services: Vec<&Reached<u32>> =
            result.reached.iter().filter(|r| business(r.id)).take(max_items).collect();

        let id = |node: u32| graph.key(node).map(id_of).unwrap_or_default();
        let returned: HashSet<u32> = items.iter().chain(&services).map(|r| r.id).collect();
        let ids: Vec<String> = returned.into_iter().map(id).collect();
        let names = Self::find_names(&self.db, &ctx.tenant, &ids).await?;
        let item = |reached: &Reached<u32>, with_path: bool| {
            let ci = id(reached.id);
            let (display_name, ci_class) = names.get(&ci).cloned().unwrap_or_default();
            ImpactedItem {
                configuration_item: resource_name(&ci),
                display_name,
                ci_class,
                depth: reached.depth as i32,
                path: if with_path { path(graph, &result, reached.id) } else { Vec::new() },
                reached_from: resource_name(&id(reached.from)),
            }
        };
        let items: Vec<ImpactedItem> = items.into_iter().map(|r| item(r, false)).collect();
        let business_services: Vec<ImpactedItem> = services.into_iter().map(|r| item(r, true)).collect();
        let names_of = |nodes: &[u32]| nodes.iter().map(|n| resource_name(&id(*n))).collect();
        let degraded = result
            .degraded
            .iter()
            .map(|d| DegradedItem {
                configuration_item: resource_name(&id(d.id)),
                failed_providers: names_of(&d.failed),
                remaining_providers: names_of(&d.remaining),
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

/// One shortest path to `node`, as resource names.
fn path(graph: &RelationshipGraph, result: &ImpactResult<u32>, node: u32) -> Vec<String> {
    result
        .path(&node)
        .into_iter()
        .filter_map(|n| graph.key(n))
        .map(|key| resource_name(&id_of(key)))
        .collect()
}
