//! One tenant's relationship graph in memory, for impact analysis: a walk that reaches tens of
//! thousands of CIs touches memory only, where a walk over the database needed hundreds of
//! queries. CIs are numbered densely and keyed by their UUID as a `u128` (16 bytes, not a
//! 36-byte string); each node keeps its edges in both directions and its class.

use std::collections::HashMap;

use super::impact::{Edge, End, Graph};
use super::relationships::RelKind;

/// One edge as seen from one of its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    other: u32,
    kind: RelKind,
    redundant: bool,
}

/// The class number of a node whose CI is unknown (deleted, or only seen as an edge's end).
const NO_CLASS: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct RelationshipGraph {
    keys: Vec<u128>,
    numbers: HashMap<u128, u32>,
    classes: Vec<u32>,
    class_names: Vec<String>,
    class_numbers: HashMap<String, u32>,
    /// Edges whose source is the node.
    outgoing: Vec<Vec<Link>>,
    /// Edges whose target is the node.
    incoming: Vec<Vec<Link>>,
    edges: usize,
}

/// A CI id (a hyphenated UUID) as a graph key.
pub fn key_of(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

/// A graph key as the CI id it came from.
pub fn id_of(key: u128) -> String {
    uuid::Uuid::from_u128(key).hyphenated().to_string()
}

impl RelationshipGraph {
    fn node(&mut self, key: u128) -> u32 {
        if let Some(number) = self.numbers.get(&key) {
            return *number;
        }
        let number = self.keys.len() as u32;
        self.keys.push(key);
        self.numbers.insert(key, number);
        self.classes.push(NO_CLASS);
        self.outgoing.push(Vec::new());
        self.incoming.push(Vec::new());
        number
    }

    /// The node of a CI, when the graph knows it.
    pub fn number(&self, key: u128) -> Option<u32> {
        self.numbers.get(&key).copied()
    }

    /// The CI key of a node.
    pub fn key(&self, node: u32) -> Option<u128> {
        self.keys.get(node as usize).copied()
    }

    /// The class of a node's CI, when known.
    pub fn class(&self, node: u32) -> Option<&str> {
        let class = *self.classes.get(node as usize)?;
        self.class_names.get(class as usize).map(String::as_str)
    }

    /// Records a CI (created, or its class read or changed).
    pub fn set_class(&mut self, key: u128, class: &str) {
        let node = self.node(key) as usize;
        let class = match self.class_numbers.get(class) {
            Some(number) => *number,
            None => {
                let number = self.class_names.len() as u32;
                self.class_names.push(class.to_string());
                self.class_numbers.insert(class.to_string(), number);
                number
            }
        };
        self.classes[node] = class;
    }

    /// Forgets a deleted CI and any edge still touching it.
    pub fn remove_ci(&mut self, key: u128) {
        let Some(node) = self.number(key) else { return };
        let outgoing = std::mem::take(&mut self.outgoing[node as usize]);
        for link in &outgoing {
            self.incoming[link.other as usize].retain(|l| l.other != node);
        }
        let incoming = std::mem::take(&mut self.incoming[node as usize]);
        for link in &incoming {
            self.outgoing[link.other as usize].retain(|l| l.other != node);
        }
        self.edges -= outgoing.len() + incoming.len();
        self.classes[node as usize] = NO_CLASS;
    }

    /// Adds `source —kind→ target`; an edge already there keeps one copy with the new flag.
    pub fn add_edge(&mut self, source: u128, target: u128, kind: RelKind, redundant: bool) {
        let (s, t) = (self.node(source), self.node(target));
        let forward = Link { other: t, kind, redundant };
        let out = &mut self.outgoing[s as usize];
        if let Some(existing) = out.iter_mut().find(|l| l.other == t && l.kind == kind) {
            existing.redundant = redundant;
            if let Some(back) = self.incoming[t as usize].iter_mut().find(|l| l.other == s && l.kind == kind)
            {
                back.redundant = redundant;
            }
            return;
        }
        out.push(forward);
        self.incoming[t as usize].push(Link { other: s, kind, redundant });
        self.edges += 1;
    }

    /// Adds an edge known not to be there yet (a load from the table, whose unique key rules
    /// out duplicates): no search of the source's edges, so a CI with a huge fan-out loads in
    /// linear time.
    pub fn add_loaded_edge(&mut self, source: u128, target: u128, kind: RelKind, redundant: bool) {
        let (s, t) = (self.node(source), self.node(target));
        self.outgoing[s as usize].push(Link { other: t, kind, redundant });
        self.incoming[t as usize].push(Link { other: s, kind, redundant });
        self.edges += 1;
    }

    /// Removes `source —kind→ target` when present.
    pub fn remove_edge(&mut self, source: u128, target: u128, kind: RelKind) {
        let (Some(s), Some(t)) = (self.number(source), self.number(target)) else { return };
        let out = &mut self.outgoing[s as usize];
        let before = out.len();
        out.retain(|l| !(l.other == t && l.kind == kind));
        if out.len() < before {
            self.incoming[t as usize].retain(|l| !(l.other == s && l.kind == kind));
            self.edges -= 1;
        }
    }

    pub fn edge_count(&self) -> usize {
        self.edges
    }

    pub fn node_count(&self) -> usize {
        self.keys.len()
    }

    /// Gives back the spare capacity a bulk load leaves behind.
    pub fn shrink(&mut self) {
        for links in self.outgoing.iter_mut().chain(self.incoming.iter_mut()) {
            links.shrink_to_fit();
        }
    }
}

impl Graph for RelationshipGraph {
    type Node = u32;

    fn edges(&self, ids: &[u32], end: End, kinds: &[RelKind]) -> Vec<Edge<u32>> {
        let mut edges = Vec::new();
        for &node in ids {
            let links = match end {
                End::Source => self.outgoing.get(node as usize),
                End::Target => self.incoming.get(node as usize),
            };
            for link in links.into_iter().flatten().filter(|l| kinds.contains(&l.kind)) {
                let (source, target) = match end {
                    End::Source => (node, link.other),
                    End::Target => (link.other, node),
                };
                edges.push(Edge { source, target, kind: link.kind, redundant: link.redundant });
            }
        }
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::impact::{Direction, ImpactQuery, analyze};

    fn key(n: u128) -> u128 {
        n
    }

    fn walk(graph: &RelationshipGraph, root: u128, direction: Direction) -> Vec<(u128, u32)> {
        let query = ImpactQuery {
            root,
            direction,
            max_depth: 5,
            kinds: RelKind::default_impact(),
            also_failed: vec![],
            max_nodes: 1000,
        };
        let Some(query) = query.map(|k| graph.number(*k)) else { return Vec::new() };
        let mut reached: Vec<(u128, u32)> =
            analyze(graph, &query).reached.iter().map(|r| (graph.key(r.id).unwrap(), r.depth)).collect();
        reached.sort();
        reached
    }

    #[test]
    fn edges_are_found_from_both_ends_and_removed_once() {
        let mut g = RelationshipGraph::default();
        g.set_class(key(1), "server");
        g.set_class(key(2), "virtual_machine");
        g.set_class(key(3), "application");
        g.add_edge(key(2), key(1), RelKind::RunsOn, false);
        g.add_edge(key(3), key(2), RelKind::RunsOn, false);
        g.add_edge(key(3), key(2), RelKind::RunsOn, true); // same edge again: kept once
        assert_eq!(g.edge_count(), 2);
        assert_eq!(walk(&g, key(1), Direction::Downstream), [(key(2), 1), (key(3), 2)]);
        assert_eq!(walk(&g, key(3), Direction::Upstream), [(key(1), 2), (key(2), 1)]);
        assert_eq!(g.class(g.number(key(3)).unwrap()), Some("application"));

        g.remove_edge(key(3), key(2), RelKind::RunsOn);
        g.remove_edge(key(3), key(2), RelKind::RunsOn);
        assert_eq!(g.edge_count(), 1);
        assert_eq!(walk(&g, key(1), Direction::Downstream), [(key(2), 1)]);
    }

    #[test]
    fn deleting_a_ci_drops_its_edges_and_class() {
        let mut g = RelationshipGraph::default();
        g.add_edge(key(10), key(11), RelKind::DependsOn, false);
        g.add_edge(key(12), key(10), RelKind::DependsOn, false);
        g.set_class(key(10), "application");
        g.remove_ci(key(10));
        assert_eq!(g.edge_count(), 0);
        assert_eq!(g.class(g.number(key(10)).unwrap()), None);
        assert!(walk(&g, key(11), Direction::Downstream).is_empty());
        assert!(walk(&g, key(99), Direction::Downstream).is_empty(), "unknown CI reaches nothing");
    }

    #[test]
    fn redundancy_flag_is_kept_per_edge() {
        let mut g = RelationshipGraph::default();
        g.add_edge(key(1), key(2), RelKind::DependsOn, true);
        g.add_edge(key(1), key(3), RelKind::DependsOn, true);
        assert!(walk(&g, key(2), Direction::Downstream).is_empty(), "one of two redundant providers down");
        // Re-adding an edge with another flag updates it on both ends: `2` is now the only
        // redundant provider left, so its failure takes `1` down.
        g.add_edge(key(1), key(3), RelKind::DependsOn, false);
        assert_eq!(g.edge_count(), 2);
        assert_eq!(walk(&g, key(2), Direction::Downstream), [(key(1), 1)]);
        assert_eq!(walk(&g, key(3), Direction::Downstream), [(key(1), 1)]);
    }

    #[test]
    fn ids_round_trip_through_keys() {
        let id = "0190b5a4-7c3e-7d2a-9f00-123456789abc";
        assert_eq!(id_of(key_of(id).unwrap()), id);
        assert_eq!(key_of("not-a-uuid"), None);
    }
}
