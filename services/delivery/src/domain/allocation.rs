//! Allocation of costs through the CMDB graph to business services, plus the finance figures
//! built on it (budget variance, chargeback prices, showback per owner).
//!
//! Costs are booked on configuration items (a SAN, a database host, a cloud account, …). An edge
//! says a consumer depends on / runs on a provider, so a provider's cost flows on to its
//! consumers, hop by hop, until it reaches business services, which keep it. Every hop splits
//! whole minor units with the largest-remainder method, so rounding neither loses nor creates a
//! cent: the sources' total (each source rounded once) equals what the business services
//! received plus what stayed idle, exactly.
//!
//! The rules:
//! - Cost booked on a business service stays there (direct cost); cost that reaches a business
//!   service stops there, even when the CMDB lists consumers of that service.
//! - Any other CI splits what reaches it among its consumers by the method: `Even` (equal
//!   parts), `Weight` (`edge.weight`, missing = 1) or `Usage` (`edge.usage`, missing = 0).
//!   Consumers with weight or usage 0 get nothing, unless all of a CI's consumers have 0: then
//!   the CI splits evenly instead, with a note (only for CIs with several consumers, where it
//!   makes a difference).
//! - A CI that is no business service and has no consumers keeps what reaches it as idle
//!   (unallocated) cost, reported per CI and source with reason "no consumers".
//! - Cycles: for each source the CIs are explored depth first from the source's CI, consumers in
//!   input order. An edge back into a CI on the current exploration path would send cost round
//!   the cycle, so it is ignored for that source (with a note, once per edge). A CI whose only
//!   consumers are such edges keeps what reaches it as idle with reason "cycle". So every source
//!   flows through a DAG and allocation always ends.
//! - An edge that repeats a consumer/provider pair counts once (the first); a CI listed as its
//!   own consumer is ignored; both are noted.
//!
//! Cost flows per source in topological order of the CIs it reaches: a CI reached along several
//! paths (a diamond) adds up what it receives and splits it once. The work per source is linear
//! in the part of the graph it reaches, never in the number of paths, and the hot loop runs on
//! node indices and integer minor units.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use rust_decimal::Decimal;

use super::money::{self, MoneyError, ROUNDING};

/// Marks a CI that has not received anything yet from the current source.
const NO_PREDECESSOR: usize = usize::MAX;

/// How a CI's cost is divided among its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocationMethod {
    /// Equal parts.
    Even,
    /// In proportion to `Edge::weight` (missing = 1).
    Weight,
    /// In proportion to `Edge::usage` (missing = 0; all zero = even split).
    Usage,
}

/// `consumer` depends on / runs on `provider`: the provider's cost flows to its consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub consumer: String,
    pub provider: String,
    pub weight: Option<Decimal>,
    pub usage: Option<Decimal>,
}

/// A cost booked on a CI: a cost item or a billing row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostSource {
    /// Not required to be unique: every entry is allocated (and reported) on its own.
    pub id: String,
    pub configuration_item: String,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationInput {
    pub edges: Vec<Edge>,
    pub business_services: HashSet<String>,
    pub sources: Vec<CostSource>,
    pub method: AllocationMethod,
    /// Decimal places of the currency's minor unit (`Currency::minor_units`), at most 28.
    pub minor_units: u32,
}

/// Where a business service's cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CostKind {
    /// Booked on the business service itself.
    Direct,
    /// From a CI whose cost reaches only this business service.
    Dedicated,
    /// From a CI whose cost reaches more than one business service (a SAN, a shared database):
    /// the CI serves several services, whichever got how much of it.
    Shared,
}

/// What one source gave one business service. Lines are merged per (source, business
/// service) to keep the output bounded however many routes there are: `paths` counts the
/// routes along which a non-zero amount flowed (saturating), `path` is one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationLine {
    pub source: String,
    pub business_service: String,
    pub amount: Decimal,
    pub kind: CostKind,
    /// CI ids from the source's CI to the business service, both included.
    pub path: Vec<String>,
    pub paths: usize,
}

/// A business service's allocated cost: `total = direct + dedicated + shared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceCost {
    pub direct: Decimal,
    pub dedicated: Decimal,
    pub shared: Decimal,
    pub total: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdleReason {
    /// The CI is no business service and nothing consumes it.
    NoConsumers,
    /// All the CI's consumers lead back along the path the cost came (see the module docs).
    Cycle,
}

impl fmt::Display for IdleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdleReason::NoConsumers => "no consumers",
            IdleReason::Cycle => "cycle",
        })
    }
}

/// Cost from `source` that stopped at `configuration_item` without reaching a business service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleCost {
    pub configuration_item: String,
    pub source: String,
    pub amount: Decimal,
    pub reason: IdleReason,
}

/// All amounts are whole minor units; `total_in == total_allocated + total_idle` exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationResult {
    /// In source order, then by business service.
    pub lines: Vec<AllocationLine>,
    /// Every business service of the input, with zeros where nothing reached it.
    pub per_service: BTreeMap<String, ServiceCost>,
    /// In source order, then in the order the cost flowed.
    pub idle: Vec<IdleCost>,
    /// Data-quality remarks (fallbacks, ignored edges), each once.
    pub notes: Vec<String>,
    /// The sum of the sources, each rounded to the minor unit.
    pub total_in: Decimal,
    pub total_allocated: Decimal,
    pub total_idle: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("edge where {consumer} consumes {provider}: {field} must not be negative")]
    NegativeEdgeValue { consumer: String, provider: String, field: &'static str },
    #[error("cost source {cost_source}: amount is out of range")]
    AmountOutOfRange { cost_source: String },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Allocates every source through the graph to business services; see the module docs for the
/// rules.
pub fn allocate(input: &AllocationInput) -> Result<AllocationResult, AllocationError> {
    let minor_units = input.minor_units;
    // Fails early, with the precise error, for minor units a decimal cannot hold.
    money::from_minor_units(0, minor_units)?;
    let mut notes = Vec::new();
    let graph = Graph::build(input, &mut notes)?;

    let mut source_units = Vec::with_capacity(input.sources.len());
    let mut total_in: i128 = 0;
    for source in &input.sources {
        let out_of_range = || AllocationError::AmountOutOfRange { cost_source: source.id.clone() };
        let rounded = money::round_to_minor_units(source.amount, minor_units);
        let units = rounded.map_err(|_| out_of_range())?;
        // Every amount derived from this one is smaller, so all of them convert back.
        money::from_minor_units(units, minor_units).map_err(|_| out_of_range())?;
        total_in = checked_sum(total_in, units)?;
        source_units.push(units);
    }

    let mut service_units = vec![ServiceUnits::default(); graph.names.len()];
    let mut lines: Vec<AllocationLine> = Vec::new();
    let mut idle: Vec<IdleCost> = Vec::new();
    let mut total_allocated: i128 = 0;
    let mut total_idle: i128 = 0;
    let mut walk = Walk::new(&graph);
    let mut explored_root = None;
    // In source order, so the output needs no sort (it can run to millions of lines).
    let booked = input.sources.iter().zip(&graph.source_node).zip(&source_units);
    for ((source, &root), &units) in booked {
        if units == 0 {
            continue;
        }
        if graph.is_service[root] {
            let service = &mut service_units[root];
            service.direct = checked_sum(service.direct, units)?;
            total_allocated = checked_sum(total_allocated, units)?;
            let line = AllocationLine {
                source: source.id.clone(),
                business_service: graph.names[root].to_owned(),
                amount: money::from_minor_units(units, minor_units)?,
                kind: CostKind::Direct,
                path: vec![graph.names[root].to_owned()],
                paths: 1,
            };
            lines.push(line);
            continue;
        }
        // Consecutive sources on one CI (billing rows usually come grouped by resource) share
        // one exploration of the graph.
        if explored_root != Some(root) {
            walk.explore(root);
            explored_root = Some(root);
        }
        walk.flow(units, &mut notes)?;
        let kind = if walk.services_reached > 1 { CostKind::Shared } else { CostKind::Dedicated };
        walk.received.sort_by_key(|&(service, _)| graph.names[service]);
        for &(service, amount) in &walk.received {
            let totals = &mut service_units[service];
            match kind {
                CostKind::Shared => totals.shared = checked_sum(totals.shared, amount)?,
                _ => totals.dedicated = checked_sum(totals.dedicated, amount)?,
            }
            total_allocated = checked_sum(total_allocated, amount)?;
            let line = AllocationLine {
                source: source.id.clone(),
                business_service: graph.names[service].to_owned(),
                amount: money::from_minor_units(amount, minor_units)?,
                kind,
                path: walk.path_to(service),
                paths: usize::try_from(walk.nodes[service].routes).unwrap_or(usize::MAX),
            };
            lines.push(line);
        }
        for &(node, amount, reason) in &walk.idle {
            total_idle = checked_sum(total_idle, amount)?;
            let cost = IdleCost {
                configuration_item: graph.names[node].to_owned(),
                source: source.id.clone(),
                amount: money::from_minor_units(amount, minor_units)?,
                reason,
            };
            idle.push(cost);
        }
    }

    let mut per_service = BTreeMap::new();
    for (node, units) in service_units.iter().enumerate() {
        if graph.is_service[node] {
            per_service.insert(graph.names[node].to_owned(), units.to_cost(minor_units)?);
        }
    }
    Ok(AllocationResult {
        lines,
        per_service,
        idle,
        notes,
        total_in: money::from_minor_units(total_in, minor_units)?,
        total_allocated: money::from_minor_units(total_allocated, minor_units)?,
        total_idle: money::from_minor_units(total_idle, minor_units)?,
    })
}

fn checked_sum(sum: i128, units: i128) -> Result<i128, AllocationError> {
    sum.checked_add(units).ok_or(AllocationError::Money(MoneyError::Overflow))
}

/// A business service's received cost in minor units.
#[derive(Debug, Clone, Copy, Default)]
struct ServiceUnits {
    direct: i128,
    dedicated: i128,
    shared: i128,
}

impl ServiceUnits {
    fn to_cost(self, minor_units: u32) -> Result<ServiceCost, AllocationError> {
        let total = checked_sum(checked_sum(self.direct, self.dedicated)?, self.shared)?;
        Ok(ServiceCost {
            direct: money::from_minor_units(self.direct, minor_units)?,
            dedicated: money::from_minor_units(self.dedicated, minor_units)?,
            shared: money::from_minor_units(self.shared, minor_units)?,
            total: money::from_minor_units(total, minor_units)?,
        })
    }
}

/// The CMDB graph with CIs as indices and, per provider, its consumer edges in one flat array
/// (`first_edge[n]..first_edge[n + 1]`), each with its integer weight.
struct Graph<'a> {
    names: Vec<&'a str>,
    is_service: Vec<bool>,
    first_edge: Vec<usize>,
    edge_consumer: Vec<usize>,
    edge_weight: Vec<u128>,
    /// Split evenly because every consumer had weight or usage 0 (noted on first use).
    split_evenly_instead: Vec<bool>,
    source_node: Vec<usize>,
    method: AllocationMethod,
}

impl<'a> Graph<'a> {
    fn build(input: &'a AllocationInput, notes: &mut Vec<String>) -> Result<Self, AllocationError> {
        // Indices in a fixed order (edges, sources, sorted services), so output never depends
        // on hash order.
        let mut interner = Interner::default();
        let edge_nodes: Vec<(usize, usize)> = input
            .edges
            .iter()
            .map(|edge| (interner.id(&edge.consumer), interner.id(&edge.provider)))
            .collect();
        let source_node: Vec<usize> =
            input.sources.iter().map(|source| interner.id(&source.configuration_item)).collect();
        let business_services = &input.business_services;
        let mut services: Vec<&str> = business_services.iter().map(String::as_str).collect();
        services.sort_unstable();
        let mut service_nodes = Vec::with_capacity(services.len());
        for name in services {
            service_nodes.push(interner.id(name));
        }
        let names = interner.names;
        let mut is_service = vec![false; names.len()];
        for node in service_nodes {
            is_service[node] = true;
        }

        let mut seen: HashSet<(usize, usize)> = HashSet::with_capacity(input.edges.len());
        let mut consumers_of: Vec<Vec<(usize, Decimal)>> = vec![Vec::new(); names.len()];
        for (edge, &(consumer, provider)) in input.edges.iter().zip(&edge_nodes) {
            let weight = method_weight(input.method, edge)?;
            if consumer == provider {
                notes.push(format!("edge ignored: {} is its own consumer", edge.consumer));
                continue;
            }
            if !seen.insert((consumer, provider)) {
                notes.push(format!(
                    "duplicate edge ignored: {} consumes {} more than once; the first edge counts",
                    edge.consumer, edge.provider
                ));
                continue;
            }
            // A business service keeps its cost, so its consumers never receive any.
            if !is_service[provider] {
                consumers_of[provider].push((consumer, weight));
            }
        }

        let mut first_edge = Vec::with_capacity(names.len() + 1);
        let mut edge_consumer = Vec::with_capacity(input.edges.len());
        let mut edge_weight = Vec::with_capacity(input.edges.len());
        let mut split_evenly_instead = vec![false; names.len()];
        for (provider, consumers) in consumers_of.iter().enumerate() {
            first_edge.push(edge_consumer.len());
            if consumers.is_empty() {
                continue;
            }
            let mut weights: Vec<Decimal> = consumers.iter().map(|&(_, weight)| weight).collect();
            if weights.iter().all(Decimal::is_zero) {
                weights.fill(Decimal::ONE);
                split_evenly_instead[provider] = consumers.len() > 1;
            }
            let scaled = money::integer_weights(&weights)?;
            // Zero-weight consumers receive nothing, so they are not part of the flow at all.
            for (&(consumer, _), weight) in consumers.iter().zip(scaled) {
                if weight > 0 {
                    edge_consumer.push(consumer);
                    edge_weight.push(weight);
                }
            }
        }
        first_edge.push(edge_consumer.len());

        Ok(Graph {
            names,
            is_service,
            first_edge,
            edge_consumer,
            edge_weight,
            split_evenly_instead,
            source_node,
            method: input.method,
        })
    }

    fn consumer_edges(&self, node: usize) -> std::ops::Range<usize> {
        self.first_edge[node]..self.first_edge[node + 1]
    }
}

/// Gives every CI id a dense index, in order of first appearance.
#[derive(Default)]
struct Interner<'a> {
    index: HashMap<&'a str, usize>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, name: &'a str) -> usize {
        if let Some(&node) = self.index.get(name) {
            return node;
        }
        let node = self.names.len();
        self.index.insert(name, node);
        self.names.push(name);
        node
    }
}

/// The edge's weight under `method`, before the all-zero fallback.
fn method_weight(method: AllocationMethod, edge: &Edge) -> Result<Decimal, AllocationError> {
    let (value, field) = match method {
        AllocationMethod::Even => return Ok(Decimal::ONE),
        AllocationMethod::Weight => (edge.weight.unwrap_or(Decimal::ONE), "weight"),
        AllocationMethod::Usage => (edge.usage.unwrap_or(Decimal::ZERO), "usage"),
    };
    if value < Decimal::ZERO {
        return Err(AllocationError::NegativeEdgeValue {
            consumer: edge.consumer.clone(),
            provider: edge.provider.clone(),
            field,
        });
    }
    Ok(value)
}

/// What the walk knows about one CI, kept together so that visiting a CI touches one cache
/// line, not one per array (the graph is visited in no particular memory order).
#[derive(Debug, Clone, Copy)]
struct NodeState {
    /// The epoch of the last exploration that reached the CI.
    visited_in: usize,
    /// On the current depth-first path.
    on_path: bool,
    /// Minor units received from the current source.
    amount: i128,
    /// The first CI that passed the current source's cost on to this one.
    predecessor: usize,
    /// Routes along which the current source's cost reached the CI (saturating).
    routes: u64,
}

/// Scratch state for following sources through the graph, sized once and reused for every
/// source: `epoch` stamps tell this exploration's marks from older ones without clearing.
struct Walk<'g, 'a> {
    graph: &'g Graph<'a>,
    /// The CI explored last, where the sources being flowed are booked.
    root: usize,
    epoch: usize,
    nodes: Vec<NodeState>,
    /// Per edge: the epoch in which it was found to close a cycle.
    back_edge_in: Vec<usize>,
    cycle_noted: Vec<bool>,
    fallback_noted: Vec<bool>,
    stack: Vec<(usize, usize)>,
    postorder: Vec<usize>,
    services_reached: usize,
    live_consumers: Vec<usize>,
    live_weights: Vec<u128>,
    ranking: Vec<(u128, usize)>,
    shares: Vec<i128>,
    received: Vec<(usize, i128)>,
    idle: Vec<(usize, i128, IdleReason)>,
}

impl<'g, 'a> Walk<'g, 'a> {
    fn new(graph: &'g Graph<'a>) -> Walk<'g, 'a> {
        let nodes = graph.names.len();
        let edges = graph.edge_consumer.len();
        Walk {
            graph,
            root: 0,
            epoch: 0,
            nodes: vec![
                NodeState {
                    visited_in: 0,
                    on_path: false,
                    amount: 0,
                    predecessor: NO_PREDECESSOR,
                    routes: 0,
                };
                nodes
            ],
            back_edge_in: vec![0; edges],
            cycle_noted: vec![false; edges],
            fallback_noted: vec![false; nodes],
            stack: Vec::new(),
            postorder: Vec::new(),
            services_reached: 0,
            live_consumers: Vec::new(),
            live_weights: Vec::new(),
            ranking: Vec::new(),
            shares: Vec::new(),
            received: Vec::new(),
            idle: Vec::new(),
        }
    }

    /// Depth-first exploration from `root` (iterative, so deep graphs cannot overflow the
    /// stack): the reachable CIs in postorder, the edges that close a cycle, and how many
    /// business services are reachable.
    fn explore(&mut self, root: usize) {
        self.root = root;
        self.epoch += 1;
        self.postorder.clear();
        self.stack.clear();
        self.services_reached = 0;
        self.enter(root);
        while let Some(&(node, next_edge)) = self.stack.last() {
            if next_edge < self.graph.first_edge[node + 1] {
                if let Some(top) = self.stack.last_mut() {
                    top.1 += 1;
                }
                let consumer = self.graph.edge_consumer[next_edge];
                let state = self.nodes[consumer];
                if state.on_path {
                    self.back_edge_in[next_edge] = self.epoch;
                } else if state.visited_in != self.epoch {
                    self.enter(consumer);
                }
            } else {
                self.stack.pop();
                self.nodes[node].on_path = false;
                self.postorder.push(node);
            }
        }
    }

    fn enter(&mut self, node: usize) {
        let state = &mut self.nodes[node];
        state.visited_in = self.epoch;
        state.on_path = true;
        if self.graph.is_service[node] {
            self.services_reached += 1;
        }
        self.stack.push((node, self.graph.first_edge[node]));
    }

    /// Flows `total` minor units from the root in topological order (reverse
    /// postorder), each CI splitting the sum of what it received once. Fills `received` (per
    /// business service) and `idle`.
    fn flow(&mut self, total: i128, notes: &mut Vec<String>) -> Result<(), MoneyError> {
        for &node in &self.postorder {
            let state = &mut self.nodes[node];
            state.amount = 0;
            state.predecessor = NO_PREDECESSOR;
            state.routes = 0;
        }
        self.received.clear();
        self.idle.clear();
        let root = &mut self.nodes[self.root];
        root.amount = total;
        root.routes = 1;
        for position in (0..self.postorder.len()).rev() {
            let node = self.postorder[position];
            let NodeState { amount: here, routes: routes_here, .. } = self.nodes[node];
            if here == 0 {
                continue;
            }
            if self.graph.is_service[node] {
                self.received.push((node, here));
                continue;
            }
            let edges = self.graph.consumer_edges(node);
            if edges.is_empty() {
                self.idle.push((node, here, IdleReason::NoConsumers));
                continue;
            }
            self.live_consumers.clear();
            self.live_weights.clear();
            for edge in edges {
                let consumer = self.graph.edge_consumer[edge];
                if self.back_edge_in[edge] == self.epoch {
                    if !self.cycle_noted[edge] {
                        self.cycle_noted[edge] = true;
                        notes.push(format!(
                            "cycle: cost that came through {consumer_name} is not passed from \
                             {provider_name} back to it",
                            consumer_name = self.graph.names[consumer],
                            provider_name = self.graph.names[node],
                        ));
                    }
                    continue;
                }
                self.live_consumers.push(consumer);
                self.live_weights.push(self.graph.edge_weight[edge]);
            }
            if self.live_consumers.is_empty() {
                self.idle.push((node, here, IdleReason::Cycle));
                continue;
            }
            if self.graph.split_evenly_instead[node] && !self.fallback_noted[node] {
                self.fallback_noted[node] = true;
                notes.push(fallback_note(self.graph.method, self.graph.names[node]));
            }
            money::split_units(here, &self.live_weights, &mut self.ranking, &mut self.shares)?;
            for (&consumer, &share) in self.live_consumers.iter().zip(&self.shares) {
                if share == 0 {
                    continue;
                }
                let target = &mut self.nodes[consumer];
                // No overflow: within one source every amount is at most the source's.
                target.amount += share;
                if target.predecessor == NO_PREDECESSOR {
                    target.predecessor = node;
                }
                target.routes = target.routes.saturating_add(routes_here);
            }
        }
        Ok(())
    }

    /// One route from the root to `service` along which cost flowed: each CI's first
    /// predecessor, which comes earlier in topological order, so the walk back ends at the root.
    fn path_to(&self, service: usize) -> Vec<String> {
        let mut route = vec![service];
        let mut node = service;
        while node != self.root {
            node = self.nodes[node].predecessor;
            if node == NO_PREDECESSOR {
                break;
            }
            route.push(node);
        }
        route.iter().rev().map(|&node| self.graph.names[node].to_owned()).collect()
    }
}

fn fallback_note(method: AllocationMethod, configuration_item: &str) -> String {
    let missing = match method {
        AllocationMethod::Usage => "usage is missing or zero",
        AllocationMethod::Weight | AllocationMethod::Even => "weight is zero",
    };
    format!("{missing} on every consumer of {configuration_item}: its cost is split evenly")
}

/// Actual against budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variance {
    /// actual − budget: positive means overspent.
    pub amount: Decimal,
    /// `amount` as a percentage of |budget|, rounded to 2 decimals; None for a zero budget,
    /// against which no percentage means anything.
    pub percent: Option<Decimal>,
    pub over_budget: bool,
}

/// The variance of `actual` against `budget`. The percentage is taken against the budget's
/// absolute value so that its sign always matches `amount`'s, even for a (negative) credit
/// budget. Amounts near the decimal limit (±7.9 × 10^28) saturate rather than panic.
pub fn variance(budget: Decimal, actual: Decimal) -> Variance {
    let amount = actual.saturating_sub(budget);
    let percent = if budget.is_zero() {
        None
    } else {
        amount
            .checked_div(budget.abs())
            .and_then(|ratio| ratio.checked_mul(Decimal::ONE_HUNDRED))
            .map(|percent| percent.round_dp_with_strategy(2, ROUNDING))
    };
    Variance { amount, percent, over_budget: actual > budget }
}

/// How a consumer is charged for a service (chargeback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceModel {
    /// A fixed price per user and period; the quantity is a whole number of users.
    FixedPerUser { price: Decimal },
    /// A price per unit consumed (GB-month, CPU-hour, ticket, …); fractional quantities allowed.
    PerUsageUnit { price: Decimal },
}

/// price × quantity, rounded to the minor unit with [`ROUNDING`]. Errors: a negative quantity
/// (credits are booked as negative costs, not as negative consumption), a fractional user count
/// for `FixedPerUser` (usually usage passed to the wrong model), or an overflow. Any integer
/// converts into a quantity: `charge(model, 25, 2)`.
pub fn charge(
    model: PriceModel,
    quantity: impl Into<Decimal>,
    minor_units: u32,
) -> Result<Decimal, MoneyError> {
    let quantity = quantity.into();
    if quantity < Decimal::ZERO {
        return Err(MoneyError::NegativeQuantity(quantity));
    }
    let price = match model {
        PriceModel::FixedPerUser { price } => {
            if !quantity.is_integer() {
                return Err(MoneyError::FractionalUserCount(quantity));
            }
            price
        }
        PriceModel::PerUsageUnit { price } => price,
    };
    let amount = price.checked_mul(quantity).ok_or(MoneyError::Overflow)?;
    let units = money::round_to_minor_units(amount, minor_units)?;
    money::from_minor_units(units, minor_units)
}

/// Allocated cost per owner (customer or cost centre) of the business services, for showback.
/// Lines of a business service without an owner are summed under the key "" so that the
/// owners' amounts still add up to the allocated total. Sums saturate at the decimal limit.
pub fn showback(
    lines: &[AllocationLine],
    owner_of_service: &HashMap<String, String>,
) -> BTreeMap<String, Decimal> {
    let mut per_owner: BTreeMap<String, Decimal> = BTreeMap::new();
    for line in lines {
        let owner = owner_of_service.get(&line.business_service).map_or("", String::as_str);
        let sum = per_owner.entry(owner.to_owned()).or_insert(Decimal::ZERO);
        *sum = sum.saturating_add(line.amount);
    }
    per_owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn edge(consumer: &str, provider: &str) -> Edge {
        Edge { consumer: consumer.into(), provider: provider.into(), weight: None, usage: None }
    }

    fn weighted(consumer: &str, provider: &str, weight: &str) -> Edge {
        Edge { weight: Some(dec(weight)), ..edge(consumer, provider) }
    }

    fn used(consumer: &str, provider: &str, usage: Option<&str>) -> Edge {
        Edge { usage: usage.map(dec), ..edge(consumer, provider) }
    }

    fn source(id: &str, ci: &str, amount: &str) -> CostSource {
        CostSource { id: id.into(), configuration_item: ci.into(), amount: dec(amount) }
    }

    fn input(
        edges: Vec<Edge>,
        services: &[&str],
        sources: Vec<CostSource>,
        method: AllocationMethod,
    ) -> AllocationInput {
        AllocationInput {
            edges,
            business_services: services.iter().map(|service| (*service).to_owned()).collect(),
            sources,
            method,
            minor_units: 2,
        }
    }

    fn line<'r>(result: &'r AllocationResult, source: &str, service: &str) -> &'r AllocationLine {
        let wanted = |l: &&AllocationLine| l.source == source && l.business_service == service;
        let mut found = result.lines.iter().filter(wanted);
        let line = found.next().unwrap_or_else(|| panic!("no line {source} -> {service}"));
        assert!(found.next().is_none(), "lines are merged per (source, service)");
        line
    }

    /// direct, dedicated, shared, total.
    fn service(result: &AllocationResult, name: &str) -> [String; 4] {
        let cost = result.per_service[name];
        [cost.direct, cost.dedicated, cost.shared, cost.total].map(|amount| amount.to_string())
    }

    fn idle_rows(result: &AllocationResult) -> Vec<(&str, &str, Decimal, IdleReason)> {
        result
            .idle
            .iter()
            .map(|i| (i.configuration_item.as_str(), i.source.as_str(), i.amount, i.reason))
            .collect()
    }

    /// The invariants every allocation must keep, checked independently of the code under test.
    fn assert_conserved(input: &AllocationInput, result: &AllocationResult) {
        let unit = Decimal::from_i128_with_scale(1, input.minor_units);
        let is_whole_units = |amount: Decimal| (amount / unit).is_integer();
        let rounded = |amount: Decimal| amount.round_dp_with_strategy(input.minor_units, ROUNDING);
        assert_eq!(result.total_in, result.total_allocated + result.total_idle);
        let rounded_in: Decimal = input.sources.iter().map(|s| rounded(s.amount)).sum();
        assert_eq!(result.total_in, rounded_in);
        let line_sum: Decimal = result.lines.iter().map(|l| l.amount).sum();
        assert_eq!(line_sum, result.total_allocated);
        let idle_sum: Decimal = result.idle.iter().map(|i| i.amount).sum();
        assert_eq!(idle_sum, result.total_idle);
        let service_sum: Decimal = result.per_service.values().map(|c| c.total).sum();
        assert_eq!(service_sum, result.total_allocated);
        for (name, cost) in &result.per_service {
            assert_eq!(cost.total, cost.direct + cost.dedicated + cost.shared, "{name}");
            let of_service = |l: &&AllocationLine| &l.business_service == name;
            let amounts = result.lines.iter().filter(of_service).map(|l| l.amount);
            assert_eq!(cost.total, amounts.sum::<Decimal>(), "{name}");
        }
        // Per source: what reached services plus what stayed idle is the rounded source.
        let mut per_source: HashMap<&str, Decimal> = HashMap::new();
        for l in &result.lines {
            assert!(is_whole_units(l.amount) && !l.amount.is_zero(), "{l:?}");
            *per_source.entry(&l.source).or_default() += l.amount;
        }
        for i in &result.idle {
            assert!(is_whole_units(i.amount) && !i.amount.is_zero(), "{i:?}");
            *per_source.entry(&i.source).or_default() += i.amount;
        }
        for s in &input.sources {
            let got = per_source.get(s.id.as_str()).copied().unwrap_or_default();
            assert_eq!(got, rounded(s.amount), "source {}", s.id);
        }
        // Traceability: every example path is a real route from the source's CI to the service.
        let edges: HashSet<(&str, &str)> =
            input.edges.iter().map(|e| (e.consumer.as_str(), e.provider.as_str())).collect();
        let ci_of: HashMap<&str, &str> =
            input.sources.iter().map(|s| (s.id.as_str(), s.configuration_item.as_str())).collect();
        for l in &result.lines {
            assert!(input.business_services.contains(&l.business_service));
            assert_eq!(l.path.first().map(String::as_str), Some(ci_of[l.source.as_str()]));
            assert_eq!(l.path.last(), Some(&l.business_service));
            for hop in l.path.windows(2) {
                assert!(edges.contains(&(hop[1].as_str(), hop[0].as_str())), "{:?}", l.path);
            }
            assert!(l.paths >= 1);
            assert_eq!(l.kind == CostKind::Direct, l.path.len() == 1);
        }
    }

    /// A SAN shared by two databases; db1 serves app_a and app_b, db2 serves app_b and app_c
    /// (app_b is a diamond under the SAN); app_a and app_b run bs_sales, app_c runs bs_hr.
    fn san_graph() -> Vec<Edge> {
        vec![
            edge("db1", "san"),
            edge("db2", "san"),
            edge("app_a", "db1"),
            edge("app_b", "db1"),
            edge("app_b", "db2"),
            edge("app_c", "db2"),
            edge("bs_sales", "app_a"),
            edge("bs_sales", "app_b"),
            edge("bs_hr", "app_c"),
        ]
    }

    #[test]
    fn shared_san_flows_through_the_diamond_and_conserves_every_cent() {
        let input = input(
            san_graph(),
            &["bs_sales", "bs_hr"],
            vec![
                source("san-bill", "san", "100.01"),
                source("app-c", "app_c", "10.00"),
                source("saas", "bs_sales", "5.00"),
                source("db1-host", "db1", "20.00"),
                source("db2-host", "db2", "7.00"),
            ],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);

        // 100.01 → db1 50.01 + db2 50.00; db1 → app_a 25.01 + app_b 25.00; db2 → app_b 25.00
        // + app_c 25.00; app_b adds up its 50.00 and passes it on once.
        let san_sales = line(&result, "san-bill", "bs_sales");
        assert_eq!(san_sales.amount, dec("75.01"));
        assert_eq!(san_sales.kind, CostKind::Shared);
        assert_eq!(san_sales.paths, 3);
        // The example is built from each CI's first predecessor in topological order: db2's
        // branch, explored last, comes first in reverse postorder.
        assert_eq!(san_sales.path, ["san", "db2", "app_b", "bs_sales"]);
        let san_hr = line(&result, "san-bill", "bs_hr");
        assert_eq!(san_hr.amount, dec("25.00"));
        assert_eq!(san_hr.path, ["san", "db2", "app_c", "bs_hr"]);
        assert_eq!(san_hr.paths, 1);

        // db1 reaches only bs_sales (through two apps): dedicated, not shared.
        let db1 = line(&result, "db1-host", "bs_sales");
        assert_eq!((db1.amount, db1.kind, db1.paths), (dec("20.00"), CostKind::Dedicated, 2));
        assert_eq!(line(&result, "db2-host", "bs_sales").amount, dec("3.50"));
        assert_eq!(line(&result, "db2-host", "bs_hr").kind, CostKind::Shared);
        let direct = line(&result, "saas", "bs_sales");
        assert_eq!(direct.kind, CostKind::Direct);
        assert_eq!(direct.path, ["bs_sales"]);
        assert_eq!(line(&result, "app-c", "bs_hr").path, ["app_c", "bs_hr"]);

        assert_eq!(service(&result, "bs_sales"), ["5.00", "20.00", "78.51", "103.51"]);
        assert_eq!(service(&result, "bs_hr"), ["0.00", "10.00", "28.50", "38.50"]);
        assert_eq!(result.total_in, dec("142.01"));
        assert_eq!(result.total_allocated, dec("142.01"));
        assert_eq!(result.total_idle, dec("0.00"));
        assert!(result.idle.is_empty());
        assert!(result.notes.is_empty(), "{:?}", result.notes);
        // Lines come in source order, then by business service.
        let order: Vec<(&str, &str)> =
            result.lines.iter().map(|l| (l.source.as_str(), l.business_service.as_str())).collect();
        assert_eq!(
            order,
            [
                ("san-bill", "bs_hr"),
                ("san-bill", "bs_sales"),
                ("app-c", "bs_hr"),
                ("saas", "bs_sales"),
                ("db1-host", "bs_sales"),
                ("db2-host", "bs_hr"),
                ("db2-host", "bs_sales"),
            ]
        );
    }

    #[test]
    fn a_ci_serving_several_services_is_shared_even_if_rounding_leaves_one_nothing() {
        let input = input(
            san_graph(),
            &["bs_sales", "bs_hr"],
            vec![source("cent", "san", "0.01")],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        assert_eq!(result.lines.len(), 1);
        let cent = line(&result, "cent", "bs_sales");
        assert_eq!((cent.amount, cent.kind, cent.paths), (dec("0.01"), CostKind::Shared, 1));
        assert_eq!(cent.path, ["san", "db1", "app_a", "bs_sales"]);
    }

    #[test]
    fn credits_flow_like_costs_with_their_sign() {
        let input = input(
            san_graph(),
            &["bs_sales", "bs_hr"],
            vec![source("san-credit", "san", "-100.01")],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        assert_eq!(line(&result, "san-credit", "bs_sales").amount, dec("-75.01"));
        assert_eq!(line(&result, "san-credit", "bs_hr").amount, dec("-25.00"));
        assert_eq!(service(&result, "bs_sales"), ["0.00", "0.00", "-75.01", "-75.01"]);
    }

    #[test]
    fn weight_method_uses_edge_weights_with_missing_as_one_and_zero_as_nothing() {
        let input = input(
            vec![
                weighted("app", "db", "3"),
                weighted("report", "db", "1"),
                edge("batch", "db"),
                weighted("audit", "db", "0"),
                edge("bs1", "app"),
                edge("bs2", "report"),
                edge("bs3", "batch"),
                edge("bs4", "audit"),
                weighted("x", "legacy", "0"),
                weighted("y", "legacy", "0.00"),
                edge("bs1", "x"),
                edge("bs2", "y"),
            ],
            &["bs1", "bs2", "bs3", "bs4"],
            vec![source("db-cost", "db", "10.00"), source("legacy-cost", "legacy", "1.01")],
            AllocationMethod::Weight,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        // 3 : 1 : 1 (missing) : 0.
        assert_eq!(line(&result, "db-cost", "bs1").amount, dec("6.00"));
        assert_eq!(line(&result, "db-cost", "bs2").amount, dec("2.00"));
        assert_eq!(line(&result, "db-cost", "bs3").amount, dec("2.00"));
        assert!(result.lines.iter().all(|l| l.business_service != "bs4"));
        assert_eq!(service(&result, "bs4"), ["0.00", "0.00", "0.00", "0.00"]);
        // All weights of legacy's consumers are zero: split evenly, and said so.
        assert_eq!(line(&result, "legacy-cost", "bs1").amount, dec("0.51"));
        assert_eq!(line(&result, "legacy-cost", "bs2").amount, dec("0.50"));
        assert_eq!(result.notes.len(), 1, "{:?}", result.notes);
        assert!(result.notes[0].contains("legacy") && result.notes[0].contains("evenly"));
    }

    #[test]
    fn usage_method_splits_by_usage_and_falls_back_to_even_with_one_note() {
        let input = input(
            vec![
                used("app", "db", Some("30")),
                used("report", "db", Some("10")),
                used("web", "cache", None),
                used("api", "cache", Some("0")),
                used("bs1", "app", None),
                used("bs2", "report", None),
                used("bs1", "web", None),
                used("bs2", "api", None),
            ],
            &["bs1", "bs2"],
            vec![
                source("db-cost", "db", "10.00"),
                source("cache-cost", "cache", "0.03"),
                source("cache-support", "cache", "1.00"),
            ],
            AllocationMethod::Usage,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        assert_eq!(line(&result, "db-cost", "bs1").amount, dec("7.50"));
        assert_eq!(line(&result, "db-cost", "bs2").amount, dec("2.50"));
        assert_eq!(line(&result, "cache-cost", "bs1").amount, dec("0.02"));
        assert_eq!(line(&result, "cache-cost", "bs2").amount, dec("0.01"));
        assert_eq!(line(&result, "cache-support", "bs2").amount, dec("0.50"));
        // Single-consumer CIs (app, report, web, api) have no usage either, but a split one way
        // is the same whatever the weights: only cache is noted, once for its two sources.
        assert_eq!(result.notes.len(), 1, "{:?}", result.notes);
        assert!(result.notes[0].contains("usage") && result.notes[0].contains("cache"));
        assert_eq!(service(&result, "bs1"), ["0.00", "0.00", "8.02", "8.02"]);
    }

    #[test]
    fn cost_that_reaches_no_business_service_is_idle_per_ci_and_source() {
        let input = input(
            vec![edge("db", "san"), edge("backup", "san"), edge("bs", "db")],
            &["bs"],
            vec![
                source("san-bill", "san", "9.99"),
                source("vm-bill", "orphan_vm", "3.33"),
                source("backup-licence", "backup", "1.00"),
                source("nothing", "san", "0.004"),
            ],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        let san = line(&result, "san-bill", "bs");
        assert_eq!((san.amount, san.kind), (dec("5.00"), CostKind::Dedicated));
        assert_eq!(
            idle_rows(&result),
            [
                ("backup", "san-bill", dec("4.99"), IdleReason::NoConsumers),
                ("orphan_vm", "vm-bill", dec("3.33"), IdleReason::NoConsumers),
                ("backup", "backup-licence", dec("1.00"), IdleReason::NoConsumers),
            ]
        );
        assert_eq!(result.total_in, dec("14.32"));
        assert_eq!(result.total_idle, dec("9.32"));
        assert_eq!(IdleReason::NoConsumers.to_string(), "no consumers");
    }

    #[test]
    fn cycles_terminate_and_keep_what_cannot_move_on_as_idle() {
        let input = input(
            vec![
                edge("a", "b"),
                edge("b", "a"),
                edge("bs", "a"),
                edge("loop_y", "loop_x"),
                edge("loop_x", "loop_y"),
                edge("self", "self"),
                edge("bs", "self"),
            ],
            &["bs"],
            vec![
                source("on-b", "b", "10.00"),
                source("on-a", "a", "6.00"),
                source("on-loop", "loop_x", "2.00"),
                source("on-self", "self", "1.00"),
            ],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        // From b, a does not send cost back to b: all of it reaches bs.
        let from_b = line(&result, "on-b", "bs");
        assert_eq!(from_b.amount, dec("10.00"));
        assert_eq!(from_b.path, ["b", "a", "bs"]);
        // From a, half goes to b, which may not send it back to a: idle, reason cycle.
        assert_eq!(line(&result, "on-a", "bs").amount, dec("3.00"));
        assert_eq!(line(&result, "on-self", "bs").amount, dec("1.00"));
        assert_eq!(
            idle_rows(&result),
            [
                ("b", "on-a", dec("3.00"), IdleReason::Cycle),
                ("loop_y", "on-loop", dec("2.00"), IdleReason::Cycle),
            ]
        );
        assert!(result.notes.iter().any(|n| n.contains("self") && n.contains("own consumer")));
        // a -> b (from a), b -> a (from b) and loop_y -> loop_x.
        assert_eq!(result.notes.iter().filter(|n| n.starts_with("cycle")).count(), 3);
        assert_eq!(IdleReason::Cycle.to_string(), "cycle");
    }

    #[test]
    fn business_services_keep_their_cost_even_when_something_consumes_them() {
        let input = input(
            vec![edge("bs_identity", "idp_server"), edge("bs_portal", "bs_identity")],
            &["bs_identity", "bs_portal"],
            vec![source("idp", "idp_server", "6.00"), source("sso", "bs_identity", "4.00")],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        assert_eq!(service(&result, "bs_identity"), ["4.00", "6.00", "0.00", "10.00"]);
        assert_eq!(service(&result, "bs_portal"), ["0.00", "0.00", "0.00", "0.00"]);
    }

    #[test]
    fn duplicate_edges_count_once() {
        let input = input(
            vec![edge("db", "san"), edge("db", "san"), edge("app", "san")],
            &["db", "app"],
            vec![source("san-bill", "san", "3.00")],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        assert_eq!(line(&result, "san-bill", "db").amount, dec("1.50"));
        assert_eq!(line(&result, "san-bill", "app").amount, dec("1.50"));
        assert_eq!(result.notes.len(), 1);
        assert!(result.notes[0].starts_with("duplicate edge"));
    }

    #[test]
    fn whole_unit_currencies_split_whole_units() {
        let mut input = input(
            vec![edge("a", "hub"), edge("b", "hub"), edge("c", "hub")],
            &["a", "b", "c"],
            vec![source("hub-bill", "hub", "100.4")],
            AllocationMethod::Even,
        );
        input.minor_units = 0;
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        let amounts: Vec<String> = result.lines.iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(amounts, ["34", "33", "33"]);
    }

    #[test]
    fn invalid_input_is_rejected() {
        let edges = vec![weighted("app", "db", "-1")];
        let negative = input(edges, &["app"], vec![], AllocationMethod::Weight);
        let expected = AllocationError::NegativeEdgeValue {
            consumer: "app".into(),
            provider: "db".into(),
            field: "weight",
        };
        assert_eq!(allocate(&negative), Err(expected));
        // The usage field is not used by the weight method, so it is not checked either.
        let mut other_field = negative.clone();
        other_field.edges = vec![Edge { usage: Some(dec("-5")), ..edge("app", "db") }];
        assert!(allocate(&other_field).is_ok());

        let mut huge = input(vec![], &[], vec![source("huge", "x", "0")], AllocationMethod::Even);
        huge.sources[0].amount = Decimal::MAX;
        let out_of_range = AllocationError::AmountOutOfRange { cost_source: "huge".into() };
        assert_eq!(allocate(&huge), Err(out_of_range));
        huge.minor_units = 29;
        let unsupported = AllocationError::Money(MoneyError::UnsupportedMinorUnits(29));
        assert_eq!(allocate(&huge), Err(unsupported));
    }

    /// A small deterministic generator (xorshift), so the big tests need no extra crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }

        fn pick(&mut self, len: usize) -> usize {
            usize::try_from(self.below(u64::try_from(len).unwrap())).unwrap()
        }
    }

    /// CIs in layers, the last layer being business services; each CI has 0 (1 in 20) to
    /// `fan_out` consumers in the next layer, now and then a duplicate, and 1 in 50 of those
    /// consumers also provides to the CI (a cycle); one source per CI with 3 decimals (so
    /// sources get rounded), some negative. With `locality`, consumers are picked within that
    /// many places of the provider's relative position (clustered, like a real CMDB, where a
    /// VM serves a few services); without it, anywhere in the next layer.
    fn layered_input(
        layers: &[usize],
        fan_out: u64,
        locality: Option<usize>,
        method: AllocationMethod,
    ) -> AllocationInput {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let name = |layer: usize, index: usize| format!("ci-{layer}-{index}");
        let mut edges = Vec::new();
        for (layer, &size) in layers.iter().enumerate().take(layers.len() - 1) {
            for index in 0..size {
                let provider = name(layer, index);
                let consumers = if rng.below(20) == 0 { 0 } else { 1 + rng.below(fan_out) };
                for _ in 0..consumers {
                    let next_size = layers[layer + 1];
                    let consumer_index = match locality {
                        None => rng.pick(next_size),
                        Some(window) => {
                            let centre = index * next_size / size;
                            let offset = rng.pick(2 * window + 1);
                            (centre + offset).saturating_sub(window).min(next_size - 1)
                        }
                    };
                    let consumer = name(layer + 1, consumer_index);
                    let weight = Some(Decimal::from(rng.below(4)));
                    let thousandths = i64::try_from(rng.below(10_000)).unwrap();
                    let usage = (rng.below(5) > 0).then(|| Decimal::new(thousandths, 3));
                    if rng.below(50) == 0 {
                        // The consumer also provides to its provider: a two-CI cycle.
                        edges.push(edge(&provider, &consumer));
                    }
                    edges.push(Edge { consumer, provider: provider.clone(), weight, usage });
                }
            }
        }
        let last = layers.len() - 1;
        let business_services = (0..layers[last]).map(|index| name(last, index)).collect();
        let mut sources = Vec::new();
        for (layer, &size) in layers.iter().enumerate() {
            for index in 0..size {
                let thousandths = i64::try_from(rng.below(2_000_000)).unwrap() - 300_000;
                sources.push(CostSource {
                    id: format!("src-{layer}-{index}"),
                    configuration_item: name(layer, index),
                    amount: Decimal::new(thousandths, 3),
                });
            }
        }
        AllocationInput { edges, business_services, sources, method, minor_units: 2 }
    }

    #[test]
    fn generated_twenty_thousand_ci_graph_conserves_every_cent() {
        for method in [AllocationMethod::Even, AllocationMethod::Weight, AllocationMethod::Usage] {
            let input = layered_input(&[8_000, 6_000, 4_000, 1_800, 200], 2, None, method);
            let result = allocate(&input).unwrap();
            assert_conserved(&input, &result);
            assert!(result.lines.iter().any(|l| l.kind == CostKind::Shared));
            assert!(result.idle.iter().any(|i| i.reason == IdleReason::NoConsumers));
            // Back edges into the previous layer closed cycles, which were cut.
            assert!(result.notes.iter().any(|note| note.starts_with("cycle")));
            assert!(result.total_allocated > Decimal::ZERO);
        }
    }

    /// A chain of diamonds has 2^depth paths: following them one by one would never end, while
    /// accumulating per CI in topological order is linear. Also far deeper than any call stack.
    #[test]
    fn deep_diamonds_and_long_chains_are_linear() {
        let mut edges = Vec::new();
        for level in 0..70 {
            let (from, to) = (format!("n{level}"), format!("n{}", level + 1));
            for side in ["a", "b"] {
                let middle = format!("{from}{side}");
                edges.push(edge(&middle, &from));
                edges.push(edge(&to, &middle));
            }
        }
        edges.push(edge("bs", "n70"));
        for link in 0..50_000 {
            edges.push(edge(&format!("c{}", link + 1), &format!("c{link}")));
        }
        edges.push(edge("bs", "c50000"));
        let sources = vec![source("diamonds", "n0", "1.00"), source("chain", "c0", "2.00")];
        let input = input(edges, &["bs"], sources, AllocationMethod::Even);
        let result = allocate(&input).unwrap();
        assert_conserved(&input, &result);
        let diamonds = line(&result, "diamonds", "bs");
        assert_eq!(diamonds.amount, dec("1.00"));
        // 2^70 routes: the count saturates.
        assert_eq!(diamonds.paths, usize::MAX);
        assert_eq!(diamonds.path.len(), 2 * 70 + 2);
        let chain = line(&result, "chain", "bs");
        assert_eq!((chain.amount, chain.paths, chain.path.len()), (dec("2.00"), 1, 50_002));
    }

    #[test]
    fn variance_against_budget() {
        let over = variance(dec("100"), dec("120"));
        assert_eq!(over.amount, dec("20"));
        assert_eq!(over.percent, Some(dec("20")));
        assert!(over.over_budget);
        let under = variance(dec("100.00"), dec("80.00"));
        assert_eq!(under.amount, dec("-20"));
        assert_eq!(under.percent, Some(dec("-20")));
        assert!(!under.over_budget);
        assert_eq!(variance(dec("3"), dec("4")).percent, Some(dec("33.33")));
        assert_eq!(variance(dec("3"), dec("5")).percent, Some(dec("66.67")));
        let no_budget = variance(Decimal::ZERO, dec("5"));
        assert_eq!((no_budget.percent, no_budget.over_budget), (None, true));
        let on_budget = variance(dec("10"), dec("10.00"));
        assert_eq!((on_budget.amount, on_budget.over_budget), (Decimal::ZERO, false));
        // A credit budget: the percentage's sign follows the amount's.
        assert_eq!(variance(dec("-50"), dec("-40")).percent, Some(dec("20")));
    }

    #[test]
    fn charges_are_rounded_price_times_quantity() {
        let per_user = PriceModel::FixedPerUser { price: dec("12.50") };
        assert_eq!(charge(per_user, 7, 2).unwrap().to_string(), "87.50");
        let half_user = charge(per_user, dec("7.5"), 2);
        assert_eq!(half_user, Err(MoneyError::FractionalUserCount(dec("7.5"))));
        let per_unit = PriceModel::PerUsageUnit { price: dec("0.0000123") };
        // 0.0000123 × 123456.789 = 1.5185185047
        assert_eq!(charge(per_unit, dec("123456.789"), 2).unwrap(), dec("1.52"));
        assert_eq!(charge(per_unit, -1, 2), Err(MoneyError::NegativeQuantity(dec("-1"))));
        let yen = PriceModel::PerUsageUnit { price: dec("0.5") };
        assert_eq!(charge(yen, 3, 0).unwrap().to_string(), "2");
        let huge = PriceModel::PerUsageUnit { price: Decimal::MAX };
        assert_eq!(charge(huge, 2, 2), Err(MoneyError::Overflow));
    }

    #[test]
    fn showback_sums_per_owner_with_unknown_owners_under_the_empty_key() {
        let input = input(
            san_graph(),
            &["bs_sales", "bs_hr"],
            vec![source("san-bill", "san", "100.01"), source("hr-tool", "bs_hr", "1.00")],
            AllocationMethod::Even,
        );
        let result = allocate(&input).unwrap();
        let owners = HashMap::from([("bs_sales".to_owned(), "retail".to_owned())]);
        let per_owner = showback(&result.lines, &owners);
        let unknown_owner = (String::new(), dec("26.00"));
        let retail = ("retail".to_owned(), dec("75.01"));
        assert_eq!(per_owner, BTreeMap::from([unknown_owner, retail]));
        assert_eq!(per_owner.values().copied().sum::<Decimal>(), result.total_allocated);
    }
}
