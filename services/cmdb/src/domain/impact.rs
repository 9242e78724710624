//! Impact analysis as a bounded, level-by-level walk of the relationship graph (not a recursive
//! CTE that explodes on dense graphs). Cycles end because every CI is visited once. Downstream,
//! a CI with redundant providers is only down when all of them are.
//!
//! The walk is generic over how a CI is named (`N`): the service walks its in-memory
//! [`RelationshipGraph`](super::graph::RelationshipGraph) by node number; tests use strings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use super::relationships::RelKind;

/// How the walk names a CI.
pub trait Node: Clone + Eq + Hash + Ord {}

impl<T: Clone + Eq + Hash + Ord> Node for T {}

/// One stored relationship: `source` —kind→ `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge<N> {
    pub source: N,
    pub target: N,
    pub kind: RelKind,
    pub redundant: bool,
}

/// Which end of an edge a lookup matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Target,
}

/// Where the walk reads edges from (the in-memory graph, or a list in tests).
pub trait Graph {
    type Node: Node;
    /// Every edge of one of `kinds` whose `end` is one of `ids`.
    fn edges(&self, ids: &[Self::Node], end: End, kinds: &[RelKind]) -> Vec<Edge<Self::Node>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What breaks when the root fails.
    Downstream,
    /// What the root needs: possible causes.
    Upstream,
}

#[derive(Debug, Clone)]
pub struct ImpactQuery<N = String> {
    pub root: N,
    pub direction: Direction,
    pub max_depth: u32,
    pub kinds: Vec<RelKind>,
    /// Other CIs down at the same time (downstream).
    pub also_failed: Vec<N>,
    /// Stop (and say so) after this many CIs.
    pub max_nodes: usize,
}

impl<N> ImpactQuery<N> {
    /// The same query with CIs named another way; `None` when the root has no other name (CIs
    /// that also failed and have none are left out: a CI the graph does not know reaches nothing).
    pub fn map<M>(&self, mut rename: impl FnMut(&N) -> Option<M>) -> Option<ImpactQuery<M>> {
        Some(ImpactQuery {
            root: rename(&self.root)?,
            direction: self.direction,
            max_depth: self.max_depth,
            kinds: self.kinds.clone(),
            also_failed: self.also_failed.iter().filter_map(&mut rename).collect(),
            max_nodes: self.max_nodes,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached<N = String> {
    pub id: N,
    pub depth: u32,
    /// The CI this one was reached from (the previous step of one shortest path).
    pub from: N,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded<N = String> {
    pub id: N,
    pub failed: Vec<N>,
    pub remaining: Vec<N>,
}

#[derive(Debug, Clone)]
pub struct ImpactResult<N = String> {
    pub reached: Vec<Reached<N>>,
    /// CI → the CI it was reached from (`None` for where the walk started); see [`Self::path`].
    parents: HashMap<N, Option<N>>,
    pub degraded: Vec<Degraded<N>>,
    pub truncated: bool,
}

/// How failure travels along an edge kind, for a direction: the end the known CI is on.
/// Downstream: a dependant fails with what it depends on / runs on / is owned by; a whole
/// fails with its part. Upstream is the reverse. CONNECTS_TO goes both ways.
fn known_ends(kind: RelKind, direction: Direction) -> &'static [End] {
    match (kind, direction) {
        (RelKind::ConnectsTo, _) => &[End::Source, End::Target],
        (RelKind::PartOf, Direction::Downstream) => &[End::Source],
        (RelKind::PartOf, Direction::Upstream) => &[End::Target],
        (_, Direction::Downstream) => &[End::Target],
        (_, Direction::Upstream) => &[End::Source],
    }
}

fn other<N>(edge: &Edge<N>, known: End) -> &N {
    match known {
        End::Source => &edge.target,
        End::Target => &edge.source,
    }
}

/// The end a candidate is on in the edges to its redundant providers (they are on the other).
fn candidate_end(kind: RelKind) -> End {
    match kind {
        RelKind::PartOf => End::Target,
        _ => End::Source,
    }
}

struct Walk<N> {
    parent: HashMap<N, Option<N>>,
    depth: HashMap<N, u32>,
    order: Vec<N>,
}

impl<N: Node> Walk<N> {
    fn mark(&mut self, id: &N, parent: Option<&N>, depth: u32) {
        self.parent.insert(id.clone(), parent.cloned());
        self.depth.insert(id.clone(), depth);
        self.order.push(id.clone());
    }
}

pub fn analyze<G: Graph>(graph: &G, query: &ImpactQuery<G::Node>) -> ImpactResult<G::Node> {
    let mut walk = Walk { parent: HashMap::new(), depth: HashMap::new(), order: Vec::new() };
    let mut starts = vec![query.root.clone()];
    if query.direction == Direction::Downstream {
        for id in &query.also_failed {
            if !starts.contains(id) {
                starts.push(id.clone());
            }
        }
    }
    for id in &starts {
        walk.mark(id, None, 0);
    }
    let mut frontier = starts.clone();
    let mut degraded: BTreeMap<G::Node, (RelKind, Vec<G::Node>)> = BTreeMap::new();
    let mut truncated = false;

    'levels: for depth in 1..=query.max_depth {
        // Candidates of this level: (candidate, reached from, edge kind, redundant).
        let mut candidates: Vec<(G::Node, G::Node, RelKind, bool)> = Vec::new();
        // One query per end: kinds that travel the same way share it.
        for end in [End::Source, End::Target] {
            let kinds: Vec<RelKind> = query
                .kinds
                .iter()
                .copied()
                .filter(|k| known_ends(*k, query.direction).contains(&end))
                .collect();
            if kinds.is_empty() {
                continue;
            }
            for edge in graph.edges(&frontier, end, &kinds) {
                let known = match end {
                    End::Source => &edge.source,
                    End::Target => &edge.target,
                };
                let candidate = other(&edge, end).clone();
                candidates.push((candidate, known.clone(), edge.kind, edge.redundant));
            }
        }
        candidates.sort();
        candidates.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);

        // Redundant providers of candidates reached over a redundant edge (downstream only).
        let mut providers: HashMap<(G::Node, RelKind), Vec<G::Node>> = HashMap::new();
        if query.direction == Direction::Downstream {
            let mut by_kind: BTreeMap<RelKind, Vec<G::Node>> = BTreeMap::new();
            for (candidate, _, kind, redundant) in &candidates {
                if *redundant && !walk.depth.contains_key(candidate) {
                    by_kind.entry(*kind).or_default().push(candidate.clone());
                }
            }
            for (kind, ids) in by_kind {
                let end = candidate_end(kind);
                for edge in graph.edges(&ids, end, &[kind]) {
                    if edge.redundant {
                        let (candidate, provider) = match end {
                            End::Source => (edge.source, edge.target),
                            End::Target => (edge.target, edge.source),
                        };
                        providers.entry((candidate, kind)).or_default().push(provider);
                    }
                }
            }
        }

        let mut next = Vec::new();
        for (candidate, from, kind, redundant) in candidates {
            if walk.depth.contains_key(&candidate) {
                continue;
            }
            if redundant && query.direction == Direction::Downstream {
                let all = providers.get(&(candidate.clone(), kind)).cloned().unwrap_or_default();
                if all.iter().any(|p| !walk.depth.contains_key(p)) {
                    degraded.insert(candidate, (kind, all));
                    continue;
                }
            }
            degraded.remove(&candidate);
            walk.mark(&candidate, Some(&from), depth);
            next.push(candidate);
            if walk.order.len() >= query.max_nodes {
                truncated = true;
                break 'levels;
            }
        }
        // A degraded CI whose last redundant provider went down on this level is down too.
        loop {
            let promote: Vec<(G::Node, G::Node)> = degraded
                .iter()
                .filter(|(_, (_, all))| all.iter().all(|p| walk.depth.contains_key(p)))
                .filter_map(|(id, (_, all))| all.first().map(|p| (id.clone(), p.clone())))
                .collect();
            if promote.is_empty() {
                break;
            }
            for (id, via) in promote {
                degraded.remove(&id);
                walk.mark(&id, Some(&via), depth);
                next.push(id);
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }

    let starts: HashSet<&G::Node> = starts.iter().collect();
    let reached = walk
        .order
        .iter()
        .filter(|id| !starts.contains(id))
        .filter_map(|id| {
            // Every CI past the starts was marked with the CI it came from.
            Some(Reached {
                id: id.clone(),
                depth: walk.depth.get(id).copied().unwrap_or_default(),
                from: walk.parent.get(id).cloned().flatten()?,
            })
        })
        .collect();
    let degraded = degraded
        .into_iter()
        .map(|(id, (_, all))| {
            let (failed, remaining): (Vec<G::Node>, Vec<G::Node>) =
                all.into_iter().partition(|p| walk.depth.contains_key(p));
            Degraded { id, failed, remaining }
        })
        .collect();
    ImpactResult { reached, parents: walk.parent, degraded, truncated }
}

impl<N: Node> ImpactResult<N> {
    /// One shortest path from where the walk started to `id`, both ends included. Built on
    /// demand: most callers need it for a few CIs (business services), not for every one reached.
    pub fn path(&self, id: &N) -> Vec<N> {
        let mut path = vec![id.clone()];
        let mut at = id;
        while let Some(Some(parent)) = self.parents.get(at) {
            path.push(parent.clone());
            at = parent;
            if path.len() > self.parents.len() {
                break; // a corrupt parent map must not loop
            }
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct MapGraph(Vec<Edge<String>>);

    impl Graph for MapGraph {
        type Node = String;
        fn edges(&self, ids: &[String], end: End, kinds: &[RelKind]) -> Vec<Edge<String>> {
            self.0
                .iter()
                .filter(|e| kinds.contains(&e.kind))
                .filter(|e| {
                    ids.contains(match end {
                        End::Source => &e.source,
                        End::Target => &e.target,
                    })
                })
                .cloned()
                .collect()
        }
    }

    fn edge(source: &str, kind: RelKind, target: &str) -> Edge<String> {
        Edge { source: source.into(), target: target.into(), kind, redundant: false }
    }

    fn redundant(source: &str, kind: RelKind, target: &str) -> Edge<String> {
        Edge { redundant: true, ..edge(source, kind, target) }
    }

    fn query(root: &str, direction: Direction) -> ImpactQuery {
        ImpactQuery {
            root: root.into(),
            direction,
            max_depth: 5,
            kinds: RelKind::default_impact(),
            also_failed: vec![],
            max_nodes: 10_000,
        }
    }

    fn ids(result: &ImpactResult) -> Vec<(&str, u32)> {
        result.reached.iter().map(|r| (r.id.as_str(), r.depth)).collect()
    }

    fn run(graph: &MapGraph, q: &ImpactQuery) -> ImpactResult {
        analyze(graph, q)
    }

    #[test]
    fn downstream_follows_dependants_hosts_and_wholes() {
        use RelKind::*;
        let g = MapGraph(vec![
            edge("app", RunsOn, "vm"),
            edge("vm", RunsOn, "host"),
            edge("shop", DependsOn, "app"),
            edge("app", PartOf, "platform"),
            edge("unrelated", DependsOn, "other"),
            edge("host", OwnedBy, "team"),
        ]);
        let r = run(&g, &query("host", Direction::Downstream));
        assert_eq!(ids(&r), [("vm", 1), ("app", 2), ("platform", 3), ("shop", 3)]);
        let shop = r.reached.iter().find(|x| x.id == "shop").unwrap();
        assert_eq!(shop.from, "app");
        assert_eq!(r.path(&"shop".to_string()), ["host", "vm", "app", "shop"]);
        let up = run(&g, &query("shop", Direction::Upstream));
        assert_eq!(ids(&up), [("app", 1), ("vm", 2), ("host", 3)]);
    }

    #[test]
    fn cycles_terminate_and_depth_is_bounded() {
        use RelKind::*;
        let g =
            MapGraph(vec![edge("a", DependsOn, "b"), edge("b", DependsOn, "c"), edge("c", DependsOn, "a")]);
        let r = run(&g, &query("a", Direction::Downstream));
        assert_eq!(ids(&r), [("c", 1), ("b", 2)]);
        let chain: Vec<Edge<String>> =
            (0..20).map(|i| edge(&format!("n{}", i + 1), DependsOn, &format!("n{i}"))).collect();
        let r = run(&MapGraph(chain), &query("n0", Direction::Downstream));
        assert_eq!(r.reached.len(), 5);
        assert!(!r.truncated);
    }

    #[test]
    fn redundancy_degrades_until_every_provider_is_down() {
        use RelKind::*;
        let g = MapGraph(vec![
            redundant("app", DependsOn, "db-primary"),
            redundant("app", DependsOn, "db-replica"),
            edge("shop", DependsOn, "app"),
        ]);
        let r = run(&g, &query("db-primary", Direction::Downstream));
        assert!(r.reached.is_empty(), "one redundant provider down: app is degraded, not down");
        assert_eq!(
            r.degraded,
            [Degraded {
                id: "app".into(),
                failed: vec!["db-primary".into()],
                remaining: vec!["db-replica".into()]
            }]
        );
        let mut both = query("db-primary", Direction::Downstream);
        both.also_failed = vec!["db-replica".into()];
        let r = run(&g, &both);
        assert_eq!(ids(&r), [("app", 1), ("shop", 2)]);
        assert!(r.degraded.is_empty());
    }

    #[test]
    fn redundant_parts_of_a_cluster() {
        use RelKind::*;
        let g = MapGraph(vec![
            redundant("node1", PartOf, "cluster"),
            redundant("node2", PartOf, "cluster"),
            edge("svc", RunsOn, "cluster"),
        ]);
        let r = run(&g, &query("node1", Direction::Downstream));
        assert!(r.reached.is_empty());
        assert_eq!(r.degraded.len(), 1);
    }

    #[test]
    fn node_limit_truncates() {
        use RelKind::*;
        let fan: Vec<Edge<String>> = (0..50).map(|i| edge(&format!("d{i}"), DependsOn, "root")).collect();
        let mut q = query("root", Direction::Downstream);
        q.max_nodes = 10;
        let r = run(&MapGraph(fan), &q);
        assert!(r.truncated);
        assert_eq!(r.reached.len(), 9);
    }
}
