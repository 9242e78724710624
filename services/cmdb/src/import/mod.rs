//! Readers that turn other tools' files into rows for `ImportConfigurationItems`: Kubernetes
//! manifests and Backstage catalog entities. Plain Rust over YAML; the client streams the rows,
//! the service reconciles them by natural key.

pub mod backstage;
pub mod kubernetes;

use std::path::{Path, PathBuf};

use itsm_proto::cmdb::{CiReference, ImportRelationship, ImportRow, RelationshipType, import_row};

/// Rows ready to stream, plus what could not be read.
#[derive(Debug, Default)]
pub struct ImportBatch {
    /// CI rows first, then relationship rows (so both ends exist when a relationship arrives).
    pub rows: Vec<ImportRow>,
    pub problems: Vec<Problem>,
    /// Documents of kinds this reader does not import (e.g. ServiceAccount, Location).
    pub skipped: usize,
}

/// A document or entity that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// e.g. "Component/invalid component" or "document 3".
    pub entity: String,
    pub reason: String,
}

impl ImportBatch {
    /// Sorts CI rows before relationship rows, keeping the order within each.
    pub fn order_rows(&mut self) {
        self.rows.sort_by_key(|row| matches!(row.kind, Some(import_row::Kind::Relationship(_))));
    }

    pub fn items(&self) -> impl Iterator<Item = &itsm_proto::cmdb::ConfigurationItem> {
        self.rows.iter().filter_map(|row| match &row.kind {
            Some(import_row::Kind::ConfigurationItem(ci)) => Some(ci),
            _ => None,
        })
    }

    pub fn relationships(&self) -> impl Iterator<Item = &ImportRelationship> {
        self.rows.iter().filter_map(|row| match &row.kind {
            Some(import_row::Kind::Relationship(rel)) => Some(rel),
            _ => None,
        })
    }
}

/// A reference to a CI by class and natural key (its display name for the built-in classes).
pub fn reference(ci_class: &str, natural_key: &str) -> CiReference {
    CiReference { ci_class: ci_class.to_string(), natural_key: natural_key.to_string() }
}

/// A relationship row.
pub fn relationship_row(
    row_id: String,
    kind: RelationshipType,
    source: CiReference,
    target: CiReference,
) -> ImportRow {
    ImportRow {
        row_id,
        kind: Some(import_row::Kind::Relationship(ImportRelationship {
            r#type: kind as i32,
            source: Some(source),
            target: Some(target),
            properties: None,
        })),
    }
}

/// A CI row.
pub fn item_row(row_id: String, item: itsm_proto::cmdb::ConfigurationItem) -> ImportRow {
    ImportRow { row_id, kind: Some(import_row::Kind::ConfigurationItem(item)) }
}

/// `path` itself when it is a file, else every `*.yaml` / `*.yml` below it, sorted.
pub fn yaml_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The fixtures directory shared with the project (`../shared/fixtures` beside the repository),
/// or `ITSM_FIXTURES`.
#[cfg(test)]
pub(crate) fn fixtures() -> PathBuf {
    std::env::var("ITSM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"))
}
