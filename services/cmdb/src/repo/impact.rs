//! Impact analysis over the tenant's relationship graph, walked in memory
//! ([`GraphCache`](super::graph_cache::GraphCache)); names are read only for the CIs returned.

use std::collections::{HashMap, HashSet};

use itsm_proto::cmdb::{AnalyzeImpactResponse, DegradedItem, ImpactedItem};
use itsm_runtime::{CallContext, Error};

use super::Repository;
use crate::convert::resource_name;
use crate::domain::classes::ClassRegistry;
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
        // Business services by class (a tenant's own classes may extend the shipped one).
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let Some(walked) = self.walk(ctx, &query, max_items, &registry).await? else {
            // A CI the graph does not know has no relationships: it reaches nothing.
            return Ok(AnalyzeImpactResponse::default());
        };
        let ids: Vec<String> = walked
            .items
            .iter()
            .chain(&walked.services)
            .map(|(r, _)| r.id.clone())
            .collect::<HashSet<String>>()
            .into_iter()
            .collect();
        let names = Self::find_names(&self.db, &ctx.tenant, &ids).await?;
        let item = |(reached, path): (Reached, Vec<String>)| {
            let (display_name, ci_class) = names.get(&reached.id).cloned().unwrap_or_default();
            ImpactedItem {
                configuration_item: resource_name(&reached.id),
                display_name,
                ci_class,
                depth: reached.depth as i32,
                path,
                reached_from: resource_name(&reached.from),
            }
        };
        let items: Vec<ImpactedItem> = walked.items.into_iter().map(item).collect();
        let business_services: Vec<ImpactedItem> = walked.services.into_iter().map(item).collect();
        Ok(AnalyzeImpactResponse {
            truncated: walked.truncated || walked.total > items.len() || business_services.len() == max_items,
            total_reached: walked.total as i32,
            items,
            business_services,
            degraded: walked.degraded,
        })
    }

    /// Walks the tenant's in-memory graph and copies out what the answer needs, so the graph's
    /// read lock is not held across the name lookups. `None` when the root is not in the graph.
    async fn walk(
        &self,
        ctx: &CallContext,
        query: &ImpactQuery,
        max_items: usize,
        registry: &ClassRegistry,
    ) -> Result<Option<Walked>, Error> {
        let indexed = self.graphs.current(&self.db, &ctx.tenant).await?;
        let Some(graph) = indexed.as_ref().map(|i| &i.graph) else {
            return Err(Error::Internal("relationship graph not loaded".into()));
        };
        let Some(query) = query.map(|id| key_of(id).and_then(|key| graph.number(key))) else {
            return Ok(None);
        };
        let result = analyze(graph, &query);
        let id = |node: u32| graph.key(node).map(id_of).unwrap_or_default();
        let named = |r: &Reached<u32>| Reached { id: id(r.id), depth: r.depth, from: id(r.from) };
        let mut is_service: HashMap<&str, bool> = HashMap::new();
        let mut business = |node: u32| match graph.class(node) {
            Some(class) => {
                *is_service.entry(class).or_insert_with(|| registry.is_a(class, "business_service"))
            }
            None => false,
        };
        let items = result.reached.iter().take(max_items).map(|r| (named(r), Vec::new())).collect();
        let services = result
            .reached
            .iter()
            .filter(|r| business(r.id))
            .take(max_items)
            .map(|r| (named(r), path(graph, &result, r.id)))
            .collect();
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
        Ok(Some(Walked {
            items,
            services,
            degraded,
            total: result.reached.len(),
            truncated: result.truncated,
        }))
    }
}

/// What an analysis returns, copied out of the graph: CIs reached (with a path for business
/// services), degraded CIs, how many were reached in all.
struct Walked {
    items: Vec<(Reached, Vec<String>)>,
    services: Vec<(Reached, Vec<String>)>,
    degraded: Vec<DegradedItem>,
    total: usize,
    truncated: bool,
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
