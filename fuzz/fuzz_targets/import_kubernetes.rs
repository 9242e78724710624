#![no_main]
//! Kubernetes manifests → CI rows: `itsm_cmdb::import::kubernetes::read_str`, which reads one
//! YAML text into an `ImportBatch` (rows, problems, skipped count).
//!
//! Beyond "does not panic":
//! - configuration-item rows come before relationship rows (the server needs both ends first);
//! - every CI is of one of the four Kubernetes classes and carries labels the CMDB accepts
//!   (`source=kubernetes`, at most 64, keys by the label-key rule, values of at most 63
//!   characters);
//! - every relationship starts at a CI of the batch, and every PART_OF ends at a namespace row
//!   of the batch;
//! - every problem names the file it was read from.

use std::collections::HashSet;

use itsm_cmdb::domain::ci::{MAX_LABEL_VALUE, MAX_LABELS, is_label_key};
use itsm_cmdb::import::ImportBatch;
use itsm_cmdb::import::kubernetes;
use itsm_proto::cmdb::{RelationshipType, import_row};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";
const CLASSES: &[&str] = &["k8s_namespace", "k8s_workload", "k8s_service", "k8s_ingress"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut batch = ImportBatch::default();
    kubernetes::read_str(FILE, text, &mut batch);

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

    let mut items = HashSet::new();
    for ci in batch.items() {
        assert!(CLASSES.contains(&ci.ci_class.as_str()), "class {:?}", ci.ci_class);
        assert!(!ci.display_name.is_empty(), "a CI without a name");
        assert_eq!(ci.labels.get("source").map(String::as_str), Some("kubernetes"));
        assert!(ci.labels.len() <= MAX_LABELS, "{} labels", ci.labels.len());
        for (key, value) in &ci.labels {
            assert!(is_label_key(key), "label key {key:?}");
            assert!(value.chars().count() <= MAX_LABEL_VALUE, "label value {value:?}");
        }
        items.insert((ci.ci_class.clone(), ci.display_name.clone()));
    }

    for relationship in batch.relationships() {
        let source = relationship.source.as_ref().expect("a relationship without a source");
        let target = relationship.target.as_ref().expect("a relationship without a target");
        assert!(
            items.contains(&(source.ci_class.clone(), source.natural_key.clone())),
            "a relationship from {source:?}, which is not in the batch"
        );
        if relationship.r#type == RelationshipType::PartOf as i32 {
            assert_eq!(target.ci_class, "k8s_namespace");
            assert!(
                items.contains(&(target.ci_class.clone(), target.natural_key.clone())),
                "PART_OF namespace {:?} has no row",
                target.natural_key
            );
        }
    }

    for problem in &batch.problems {
        assert_eq!(problem.file, FILE);
        assert!(!problem.reason.is_empty(), "a problem without a reason");
    }
});
