//! Readers that turn other tools' files into rows for `ImportConfigurationItems`: Kubernetes
//! manifests and Backstage catalog entities. Plain Rust over YAML; the client streams the rows,
//! the service reconciles them by natural key.

pub mod backstage;
pub mod kubernetes;

use std::path::{Path, PathBuf};

use serde_json::Value;

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

/// Reads one text into `batch`: relationships only see what this text defines.
fn read_text<T>(
    file: &str,
    text: &str,
    batch: &mut ImportBatch,
    parse: impl FnOnce(&str, &str, &mut ImportBatch) -> Vec<T>,
    emit: impl FnOnce(&[T], &mut ImportBatch),
) {
    let parsed = parse(file, text, batch);
    emit(&parsed, batch);
    batch.order_rows();
}

/// Reads every file (a file that cannot be read is a Problem; the others are still read), then
/// builds the rows from everything read, so relationships can cross files.
fn read_files<T>(
    files: &[PathBuf],
    mut parse: impl FnMut(&str, &str, &mut ImportBatch) -> Vec<T>,
    emit: impl FnOnce(&[T], &mut ImportBatch),
) -> ImportBatch {
    let mut batch = ImportBatch::default();
    let mut parsed = Vec::new();
    for path in files {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => parsed.extend(parse(&file, &text, &mut batch)),
            Err(err) => {
                batch.problems.push(Problem {
                    file,
                    entity: "file".into(),
                    reason: format!("cannot read: {err}"),
                });
            }
        }
    }
    emit(&parsed, &mut batch);
    batch.order_rows();
    batch
}

/// Parses a YAML file into its objects as JSON, each named for problems: "document N" for the
/// N-th document of a `---` stream, "document N, item M" for the items of a top-level list.
/// Null documents are ignored; a document that is not valid YAML, or not a mapping, is a Problem.
///
/// The text is split at document markers and each document parsed on its own, because the YAML
/// parser behind serde_yaml cannot continue a stream after a syntax error, and one broken
/// manifest must not hide the ones after it.
pub(crate) fn documents(file: &str, text: &str, problems: &mut Vec<Problem>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut number = 0;
    for (start, chunk) in split_documents(text) {
        if is_blank(&chunk) {
            continue;
        }
        number += 1;
        let document = format!("document {number}");
        let mut problem = |entity: &str, reason: String| {
            problems.push(Problem { file: file.to_string(), entity: entity.to_string(), reason });
        };
        let items: Vec<(String, serde_yaml::Value)> = match serde_yaml::from_str(&chunk) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(serde_yaml::Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (format!("{document}, item {}", i + 1), item))
                .collect(),
            Ok(value) => vec![(document, value)],
            Err(first) => {
                // Parse again behind the lines that precede the document, so that the error
                // names a line of the file rather than of the document.
                let padded = format!("{}{chunk}", "\n".repeat(start));
                let err = serde_yaml::from_str::<serde_yaml::Value>(&padded).err().unwrap_or(first);
                problem(&document, format!("invalid YAML: {err}"));
                continue;
            }
        };
        for (entity, item) in items {
            match item {
                serde_yaml::Value::Null => {}
                serde_yaml::Value::Mapping(_) => match serde_json::to_value(&item) {
                    Ok(json) => out.push((entity, json)),
                    Err(err) => problem(&entity, format!("cannot be read as JSON: {err}")),
                },
                _ => problem(&entity, "expected a mapping (an object with `kind`)".into()),
            }
        }
    }
    out
}

/// Splits a YAML stream at its document markers (`---` and `...` at the start of a line, which
/// YAML forbids inside any content), with the 0-based line where each part starts. A `---` line
/// stays at the start of its document, since it may carry content (`--- |`).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = vec![(0, String::new())];
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let marker = |m: &str| {
            line.strip_prefix(m).is_some_and(|rest| rest.trim().is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") {
            chunks.push((number, line.to_string()));
        } else if marker("...") {
            chunks.push((number + 1, String::new()));
        } else if let Some((_, chunk)) = chunks.last_mut() {
            chunk.push_str(line);
        }
    }
    chunks
}

/// Only markers, comments, directives and blank lines: not a document (e.g. a license header).
fn is_blank(chunk: &str) -> bool {
    chunk.lines().all(|line| {
        let line = line.strip_prefix("---").unwrap_or(line).trim();
        line.is_empty() || line.starts_with('#') || line.starts_with('%')
    })
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
