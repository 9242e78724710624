#![no_main]
//! Backstage catalog entities → CI rows: `itsm_cmdb::import::backstage::read_str`, which reads one
//! YAML text into an `ImportBatch` (rows, problems, skipped count).
//!
//! Beyond "does not panic":
//! - configuration-item rows come before relationship rows;
//! - every CI is of a class the reader maps to and carries what the CMDB accepts
//!   (`source=backstage`, at most 64 labels with valid keys, a description of at most 4,000
//!   characters, a non-empty name);
//! - both ends of every relationship are of those classes;
//! - every problem names the file and says why.

use itsm_cmdb::domain::ci::{MAX_DESCRIPTION, MAX_LABELS, is_label_key};
use itsm_cmdb::import::ImportBatch;
use itsm_cmdb::import::backstage;
use itsm_proto::cmdb::import_row;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "catalog-info.yaml";
const CLASSES: &[&str] =
    &["business_service", "technical_service", "application", "api", "cloud_resource", "database", "team"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut batch = ImportBatch::default();
    backstage::read_str(FILE, text, &mut batch);

    let first_relationship = batch
        .rows
        .iter()
        .position(|row| matches!(row.kind, Some(import_row::Kind::Relationship(_))))
        .unwrap_or(batch.rows.len());
    assert!(
        batch.rows[first_relationship..]
            .iter()
            .all(|row| matches!(row.kind, Some(import_row::Kind::Relationship(_)))),
        "a CI row after a relationship row"
    );

    for ci in batch.items() {
        assert!(CLASSES.contains(&ci.ci_class.as_str()), "class {:?}", ci.ci_class);
        assert!(!ci.display_name.is_empty(), "a CI without a name");
        assert_eq!(ci.labels.get("source").map(String::as_str), Some("backstage"));
        assert!(ci.labels.len() <= MAX_LABELS, "{} labels", ci.labels.len());
        for key in ci.labels.keys() {
            assert!(is_label_key(key), "label key {key:?}");
        }
        assert!(ci.description.chars().count() <= MAX_DESCRIPTION, "description too long");
    }

    for relationship in batch.relationships() {
        for end in [&relationship.source, &relationship.target] {
            let end = end.as_ref().expect("a relationship end is missing");
            assert!(CLASSES.contains(&end.ci_class.as_str()), "relationship end {end:?}");
        }
    }

    for problem in &batch.problems {
        assert_eq!(problem.file, FILE);
        assert!(!problem.reason.is_empty(), "a problem without a reason");
    }
});
