//! Backstage catalog entities → CI rows: Domains, Systems, Components, APIs, Resources and
//! Groups, with the relationships the catalog declares (ownership, part-of, dependencies,
//! provided and consumed APIs).
//!
//! Entities are checked the way Backstage checks them, so that what Backstage would refuse is
//! reported as a Problem instead of being half-imported. Every file is parsed before any
//! relationship is built, so that a ref to a Resource in another file gets the right class.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use itsm_proto::cmdb::{CiReference, ConfigurationItem, LifecycleStatus, RelationshipType};
use itsm_runtime::structs::json_to_struct;
use serde_json::{Map, Value};

use super::{ImportBatch, Problem, documents, item_row, reference, relationship_row};
use crate::domain::ci::{MAX_DESCRIPTION, MAX_LABELS, is_label_key};

const API_VERSIONS: &[&str] = &["backstage.io/v1alpha1", "backstage.io/v1beta1"];

/// Imported kinds: their CI class, and the spec fields Backstage requires as non-empty strings.
/// A Resource of type `database` becomes a `database` instead (see [`class_of`]).
const KINDS: &[(&str, &str, &[&str])] = &[
    ("Domain", "business_service", &["owner"]),
    ("System", "technical_service", &["owner"]),
    ("Component", "application", &["type", "lifecycle", "owner"]),
    ("API", "api", &["type", "lifecycle", "owner"]),
    ("Resource", "cloud_resource", &["type", "owner"]),
    ("Group", "team", &["type"]),
];

/// API types that list endpoints in `spec.remotes` instead of having a `spec.definition`
/// (Backstage's `API.v1alpha1.mcp-server` and `API.v1alpha1.ai-model-server` schemas).
const REMOTE_API_TYPES: &[&str] = &["mcp-server", "ai-model-server"];

/// Spec fields that name what an entity is part of: (kind, field, kind of the ref by default).
const PART_OF: &[(&str, &str, &str)] = &[
    ("Component", "system", "system"),
    ("API", "system", "system"),
    ("Resource", "system", "system"),
    ("System", "domain", "domain"),
    ("Domain", "subdomainOf", "domain"),
    ("Component", "subcomponentOf", "component"),
    ("Group", "parent", "group"),
];

/// Optional spec fields holding one ref, and lists of refs; checked for their type only.
const REF_FIELDS: &[&str] = &["system", "domain", "subdomainOf", "subcomponentOf", "parent"];
const REF_LISTS: &[&str] = &["dependsOn", "providesApis", "consumesApis"];

/// The KINDS entry of a kind, compared case-insensitively as Backstage does for refs.
fn find_kind(kind: &str) -> Option<&'static (&'static str, &'static str, &'static [&'static str])> {
    KINDS.iter().find(|(k, ..)| k.eq_ignore_ascii_case(kind))
}

/// CI class of an entity of `kind`; None for kinds that are not imported (User, Location...).
fn class_of(kind: &str, database: bool) -> Option<&'static str> {
    let &(canonical, class, _) = find_kind(kind)?;
    Some(if canonical == "Resource" && database { "database" } else { class })
}

/// Display name and natural key: the bare name in the default namespace, as Backstage shows it.
fn natural_key(namespace: &str, name: &str) -> String {
    if namespace == "default" { name.to_string() } else { format!("{namespace}/{name}") }
}

/// Backstage's rule for names and namespaces: `^[a-z0-9A-Z]([-_.a-z0-9A-Z]*[a-z0-9A-Z])?$`, at
/// most 63 characters.
fn is_entity_name(text: &str) -> bool {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.len() <= 63
        && alphanumeric(text.chars().next())
        && alphanumeric(text.chars().last())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Backstage's rule for tags: `^[a-z0-9:+#]+(\-[a-z0-9:+#]+)*$`, at most 63 characters.
fn is_tag(tag: &str) -> bool {
    tag.len() <= 63
        && tag.split('-').all(|word| {
            !word.is_empty()
                && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":+#".contains(c))
        })
}

/// An entity ref, `[kind:][namespace/]name`, with the kind lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntityRef {
    kind: String,
    namespace: String,
    name: String,
}

impl EntityRef {
    /// What the text leaves out comes from the defaults: Backstage resolves a ref without a
    /// namespace in the namespace of the entity that holds it.
    fn parse(text: &str, default_kind: &str, default_namespace: &str) -> Self {
        let (kind, rest) = text.split_once(':').unwrap_or((default_kind, text));
        let (namespace, name) = rest.split_once('/').unwrap_or((default_namespace, rest));
        Self { kind: kind.to_ascii_lowercase(), namespace: namespace.to_string(), name: name.to_string() }
    }

    fn key(&self) -> String {
        natural_key(&self.namespace, &self.name)
    }

    /// e.g. "Component/default/artist-lookup", for row ids.
    fn label(&self) -> String {
        let kind = find_kind(&self.kind).map_or(self.kind.as_str(), |&(k, ..)| k);
        format!("{kind}/{}/{}", self.namespace, self.name)
    }

    /// The CI the ref names, or None when its kind is not imported (a `user:` owner). Whether a
    /// Resource is a database is known only from the Resource itself, so `databases` lists the
    /// natural keys of those that are.
    fn reference(&self, databases: &HashSet<String>) -> Option<CiReference> {
        let key = self.key();
        Some(reference(class_of(&self.kind, databases.contains(&key))?, &key))
    }
}

/// An entity that passed validation, kept until every file is read.
#[derive(Debug)]
struct Entity {
    file: String,
    kind: &'static str,
    class: &'static str,
    namespace: String,
    name: String,
    doc: Value,
}

impl Entity {
    fn spec(&self, field: &str) -> Option<&str> {
        self.doc.get("spec")?.get(field)?.as_str()
    }

    fn spec_list(&self, field: &str) -> impl Iterator<Item = &str> {
        let list = self.doc.get("spec").and_then(|s| s.get(field)).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(Value::as_str)
    }

    fn me(&self) -> EntityRef {
        EntityRef {
            kind: self.kind.to_ascii_lowercase(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    fn key(&self) -> String {
        natural_key(&self.namespace, &self.name)
    }

    fn item(&self) -> ConfigurationItem {
        // Only attributes the class defines: the server refuses unknown ones.
        let fields: &[&str] = match self.kind {
            "Component" | "API" => &["type", "lifecycle"],
            "Resource" | "Group" => &["type"],
            _ => &[],
        };
        let mut attributes: Map<String, Value> =
            fields.iter().filter_map(|f| Some(((*f).to_string(), Value::from(self.spec(f)?)))).collect();
        if self.kind == "Group"
            && let Some(email) = self.doc.pointer("/spec/profile/email").and_then(Value::as_str)
        {
            attributes.insert("email".into(), email.into());
        }
        let lifecycle = match self.spec("lifecycle") {
            Some("experimental") => LifecycleStatus::InBuild,
            Some("deprecated") => LifecycleStatus::Maintenance,
            _ => LifecycleStatus::InUse,
        };
        let description =
            self.doc.pointer("/metadata/description").and_then(Value::as_str).unwrap_or_default();
        // Tags that cannot be label keys (`c++`, `tag.` + 63 characters) are left out.
        let tags = self.doc.pointer("/metadata/tags").and_then(Value::as_array).into_iter().flatten();
        let mut labels: HashMap<String, String> = tags
            .filter_map(Value::as_str)
            .map(|tag| format!("tag.{tag}"))
            .filter(|key| is_label_key(key))
            .take(MAX_LABELS - 1)
            .map(|key| (key, "true".to_string()))
            .collect();
        labels.insert("source".into(), "backstage".into());
        ConfigurationItem {
            display_name: self.key(),
            ci_class: self.class.to_string(),
            description: description.chars().take(MAX_DESCRIPTION).collect(),
            lifecycle_status: lifecycle as i32,
            owner: self.spec("owner").unwrap_or_default().to_string(),
            labels,
            attributes: Some(json_to_struct(&Value::Object(attributes))),
            ..ConfigurationItem::default()
        }
    }

    /// (source, type, target) of each relationship the entity declares, as refs.
    fn relationships(&self) -> Vec<(EntityRef, RelationshipType, EntityRef)> {
        use RelationshipType::{DependsOn, OwnedBy, PartOf};
        let me = self.me();
        let parse = |text: &str, kind: &str| EntityRef::parse(text, kind, &self.namespace);
        let mut out = Vec::new();
        // Users are not imported: a user owner stays in the owner field only.
        if let Some(owner) = self.spec("owner").map(|o| parse(o, "group")).filter(|o| o.kind == "group") {
            out.push((me.clone(), OwnedBy, owner));
        }
        for &(_, field, kind) in PART_OF.iter().filter(|(k, ..)| *k == self.kind) {
            if let Some(target) = self.spec(field) {
                out.push((me.clone(), PartOf, parse(target, kind)));
            }
        }
        for target in self.spec_list("dependsOn") {
            out.push((me.clone(), DependsOn, parse(target, "component")));
        }
        if self.kind == "Component" {
            // An API is down when the component that provides it is.
            for api in self.spec_list("providesApis") {
                out.push((parse(api, "api"), DependsOn, me.clone()));
            }
            for api in self.spec_list("consumesApis") {
                out.push((me.clone(), DependsOn, parse(api, "api")));
            }
        }
        out
    }
}

/// Reads catalog files; a file that cannot be read is a Problem and the others are still read.
pub fn read(files: &[PathBuf]) -> ImportBatch {
    super::read_files(files, parse, emit)
}

/// Reads the entities of one file into `batch`. A ref to a Resource that is neither in this
/// file nor already in `batch` is taken for a `cloud_resource` (use [`read`] for several files).
pub fn read_str(file: &str, text: &str, batch: &mut ImportBatch) {
    super::read_text(file, text, batch, parse, emit);
}

fn parse(file: &str, text: &str, batch: &mut ImportBatch) -> Vec<Entity> {
    let mut entities = Vec::new();
    for (document, doc) in documents(file, text, &mut batch.problems) {
        match entity(file, &document, doc) {
            Ok(Some(entity)) => entities.push(entity),
            Ok(None) => batch.skipped += 1,
            Err(problem) => batch.problems.push(problem),
        }
    }
    entities
}

/// The entity a document describes, if Backstage would accept it; None for kinds that are not
/// imported. Every wrong field is named in one Problem, so one pass fixes the file.
fn entity(file: &str, document: &str, doc: Value) -> Result<Option<Entity>, Problem> {
    let problem = |entity: String, reason: String| Problem { file: file.to_string(), entity, reason };
    let Some(kind_text) = doc.get("kind").and_then(Value::as_str) else {
        return Err(problem(document.to_string(), "kind is required (a string)".into()));
    };
    let Some(&(kind, _, required)) = find_kind(kind_text) else { return Ok(None) };
    // Backstage matches the kind of a document exactly (only refs ignore case).
    if kind != kind_text {
        return Err(problem(document.to_string(), format!("kind {kind_text:?} must be spelled {kind:?}")));
    }
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let label = if name.is_empty() { format!("{kind} in {document}") } else { format!("{kind}/{name}") };
    let mut errors: Vec<String> = Vec::new();

    if !doc.get("apiVersion").and_then(Value::as_str).is_some_and(|v| API_VERSIONS.contains(&v)) {
        errors.push(format!("apiVersion must be {}", API_VERSIONS.join(" or ")));
    }
    if !doc.get("metadata").is_some_and(Value::is_object) {
        errors.push("metadata is required (a mapping)".into());
    }
    match doc.pointer("/metadata/name") {
        Some(Value::String(valid)) if is_entity_name(valid) => {}
        None | Some(Value::Null) => errors.push("metadata.name is required".into()),
        Some(other) => errors.push(format!(
            "metadata.name {other} must be 1-63 letters, digits and `-_.`, starting and ending alphanumeric"
        )),
    }
    let namespace = match doc.pointer("/metadata/namespace") {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(ns)) if is_entity_name(ns) => ns.clone(),
        Some(other) => {
            errors.push(format!("metadata.namespace {other} must follow the rule of metadata.name"));
            String::new()
        }
    };
    if !matches!(doc.pointer("/metadata/description"), None | Some(Value::Null | Value::String(_))) {
        errors.push("metadata.description must be a string".into());
    }
    match doc.pointer("/metadata/tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            for (i, tag) in tags.iter().enumerate().filter(|(_, tag)| !tag.as_str().is_some_and(is_tag)) {
                errors.push(format!(
                    "metadata.tags[{i}] {tag} must be at most 63 of a-z, 0-9, `:+#`, in words joined by `-`"
                ));
            }
        }
        Some(_) => errors.push("metadata.tags must be a list".into()),
    }
    match doc.get("spec") {
        Some(Value::Object(spec)) => check_spec(kind, required, spec, &mut errors),
        _ => errors.push("spec is required (a mapping)".into()),
    }
    if !errors.is_empty() {
        return Err(problem(label, errors.join("; ")));
    }
    let database = doc.pointer("/spec/type").and_then(Value::as_str) == Some("database");
    let Some(class) = class_of(kind, database) else { return Ok(None) };
    Ok(Some(Entity { file: file.to_string(), kind, class, namespace, name, doc }))
}

/// The spec checks of Backstage's kind schemas.
fn check_spec(kind: &str, required: &[&str], spec: &Map<String, Value>, errors: &mut Vec<String>) {
    let text = |field: &str| spec.get(field).and_then(Value::as_str).filter(|s| !s.is_empty());
    for &field in required {
        if text(field).is_none() {
            errors.push(format!("spec.{field} is required (a non-empty string)"));
        }
    }
    if kind == "API" {
        if text("type").is_some_and(|t| REMOTE_API_TYPES.contains(&t)) {
            if spec.get("remotes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                errors.push("spec.remotes is required (a non-empty list)".into());
            }
        // A `$text`/`$json` placeholder (an object) is how catalogs point at a definition file.
        } else if text("definition").is_none() && !spec.get("definition").is_some_and(Value::is_object) {
            errors.push("spec.definition is required".into());
        }
    }
    if kind == "Group"
        && !spec.get("children").and_then(Value::as_array).is_some_and(|c| c.iter().all(Value::is_string))
    {
        errors.push("spec.children is required (a list of refs, may be empty)".into());
    }
    for &field in REF_FIELDS {
        if spec.get(field).is_some_and(|v| !v.is_null()) && text(field).is_none() {
            errors.push(format!("spec.{field} must be an entity ref (a string)"));
        }
    }
    for &field in REF_LISTS {
        let valid = match spec.get(field) {
            None | Some(Value::Null) => true,
            Some(Value::Array(refs)) => refs.iter().all(|r| r.as_str().is_some_and(|r| !r.is_empty())),
            Some(_) => false,
        };
        if !valid {
            errors.push(format!("spec.{field} must be a list of entity refs"));
        }
    }
}

/// Builds the rows: every entity, then every relationship (also those to entities not in the
/// files, which the server reports as dangling).
fn emit(entities: &[Entity], batch: &mut ImportBatch) {
    let databases: HashSet<String> = entities
        .iter()
        .filter(|e| e.class == "database")
        .map(Entity::key)
        .chain(batch.items().filter(|ci| ci.ci_class == "database").map(|ci| ci.display_name.clone()))
        .collect();
    for entity in entities {
        batch.rows.push(item_row(format!("{}#{}", entity.file, entity.me().label()), entity.item()));
    }
    for entity in entities {
        for (source, kind, target) in entity.relationships() {
            let (Some(from), Some(to)) = (source.reference(&databases), target.reference(&databases)) else {
                continue;
            };
            let type_name = kind.as_str_name().trim_start_matches("RELATIONSHIP_TYPE_");
            let row_id = format!("{}#{}->{type_name}->{}", entity.file, source.label(), to.natural_key);
            batch.rows.push(relationship_row(row_id, kind, from, to));
        }
    }
}

#[cfg(test)]
mod tests {
    use itsm_runtime::structs::struct_to_json;

    use super::*;
    use crate::import::{fixtures, yaml_files};

    fn count(batch: &ImportBatch, class: &str) -> usize {
        batch.items().filter(|ci| ci.ci_class == class).count()
    }

    fn item<'a>(batch: &'a ImportBatch, class: &str, name: &str) -> &'a ConfigurationItem {
        batch.items().find(|ci| ci.ci_class == class && ci.display_name == name).unwrap()
    }

    fn related(
        batch: &ImportBatch,
        kind: RelationshipType,
        source: (&str, &str),
        target: (&str, &str),
    ) -> bool {
        batch.relationships().any(|r| {
            r.r#type == kind as i32
                && r.source == Some(reference(source.0, source.1))
                && r.target == Some(reference(target.0, target.1))
        })
    }

    fn outgoing(batch: &ImportBatch, kind: RelationshipType, source: (&str, &str)) -> usize {
        batch
            .relationships()
            .filter(|r| r.r#type == kind as i32 && r.source == Some(reference(source.0, source.1)))
            .count()
    }

    fn read_text(text: &str) -> ImportBatch {
        let mut batch = ImportBatch::default();
        read_str("catalog.yaml", text, &mut batch);
        batch
    }

    #[test]
    fn example_catalog() {
        let batch = read(&yaml_files(&fixtures().join("backstage")).unwrap());
        assert_eq!(batch.problems.len(), 1, "{:?}", batch.problems);
        let problem = &batch.problems[0];
        assert!(problem.file.ends_with("invalid-component.yaml"));
        assert_eq!(problem.entity, "Component/invalid component");
        assert!(problem.reason.contains("metadata.name"), "{}", problem.reason);

        assert_eq!(count(&batch, "business_service"), 3, "domains");
        assert_eq!(count(&batch, "technical_service"), 3, "systems");
        assert_eq!(count(&batch, "application"), 14, "components");
        assert_eq!(count(&batch, "api"), 12, "APIs");
        assert_eq!(count(&batch, "database"), 1, "resources");
        assert_eq!(count(&batch, "cloud_resource"), 0);
        assert_eq!(count(&batch, "team"), 9, "acme-corp, infrastructure, backstage, boxoffice, team-a..e");
        assert_eq!(batch.skipped, 18, "17 Users and a Location");

        use RelationshipType::{DependsOn, OwnedBy, PartOf};
        assert!(related(&batch, OwnedBy, ("application", "playback-order"), ("team", "guest")));
        assert!(related(
            &batch,
            PartOf,
            ("application", "artist-lookup"),
            ("technical_service", "artist-engagement-portal")
        ));
        assert!(related(&batch, DependsOn, ("application", "wayback-search"), ("api", "wayback-archive")));
        assert!(related(&batch, DependsOn, ("api", "wayback-search"), ("application", "wayback-search")));
        assert!(related(&batch, PartOf, ("business_service", "artists"), ("business_service", "audio")));
        assert!(related(&batch, PartOf, ("technical_service", "podcast"), ("business_service", "playback")));
        assert!(related(
            &batch,
            PartOf,
            ("application", "wayback-archive-ingestion"),
            ("application", "wayback-archive")
        ));
        assert!(related(
            &batch,
            PartOf,
            ("database", "artists-db"),
            ("technical_service", "artist-engagement-portal")
        ));
        assert!(related(&batch, PartOf, ("team", "team-a"), ("team", "backstage")));
        assert!(related(&batch, OwnedBy, ("business_service", "audio"), ("team", "acme-corp")));

        let alternative = ("application", "alternative/different-namespace");
        assert_eq!(item(&batch, alternative.0, alternative.1).owner, "default/team-a");
        assert!(related(&batch, OwnedBy, alternative, ("team", "team-a")));
        // User owners stay in the owner field only.
        assert_eq!(item(&batch, "application", "searcher").owner, "user:guest");
        assert_eq!(outgoing(&batch, OwnedBy, ("application", "searcher")), 0);
        assert_eq!(outgoing(&batch, OwnedBy, ("business_service", "playback")), 0);

        let lookup = item(&batch, "application", "artist-lookup");
        assert_eq!(lookup.description, "Artist Lookup");
        assert_eq!(lookup.owner, "team-a");
        assert_eq!(lookup.lifecycle_status, LifecycleStatus::InBuild as i32);
        let attributes = struct_to_json(lookup.attributes.as_ref().unwrap());
        assert_eq!(attributes, serde_json::json!({"type": "service", "lifecycle": "experimental"}));
        let labels: std::collections::BTreeMap<_, _> = lookup.labels.iter().collect();
        assert_eq!(
            format!("{labels:?}"),
            r#"{"source": "backstage", "tag.data": "true", "tag.java": "true"}"#
        );
        assert_eq!(item(&batch, "api", "hello-world").lifecycle_status, LifecycleStatus::Maintenance as i32);
        let team = struct_to_json(item(&batch, "team", "team-a").attributes.as_ref().unwrap());
        assert_eq!(team, serde_json::json!({"type": "team", "email": "team-a@example.com"}));
        let system =
            struct_to_json(item(&batch, "technical_service", "audio-playback").attributes.as_ref().unwrap());
        assert_eq!(system, serde_json::json!({}), "technical_service has no attributes");

        for ci in batch.items() {
            assert_ne!(ci.lifecycle_status, 0);
            for (key, value) in &ci.labels {
                assert!(is_label_key(key) && value.len() <= 63, "{key}={value}");
            }
        }
    }

    #[test]
    fn a_broken_document_does_not_hide_the_others() {
        let batch = read_text(
            "apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: good}
spec: {owner: team-a}
---
kind: Component
metadata: {name: broken
---
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata: {name: later}
spec: {owner: team-a}
",
        );
        assert_eq!(batch.problems.len(), 1, "{:?}", batch.problems);
        assert_eq!(batch.problems[0].entity, "document 2");
        assert_eq!(item(&batch, "technical_service", "good").owner, "team-a");
        assert_eq!(item(&batch, "business_service", "later").owner, "team-a");
    }

    #[test]
    fn invalid_entities_are_problems() {
        let batch = read_text(
            "apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: ownerless}
spec: {type: service, lifecycle: production}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: tagged, tags: [java, Java]}
spec: {type: service, lifecycle: production, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: undefined}
spec: {type: openapi, lifecycle: production, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: childless}
spec: {type: team}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: fine}
spec: {type: service, lifecycle: production, owner: team-a}
",
        );
        let reason =
            |entity: &str| batch.problems.iter().find(|p| p.entity == entity).unwrap().reason.clone();
        assert_eq!(batch.problems.len(), 4, "{:?}", batch.problems);
        assert!(reason("Component/ownerless").contains("spec.owner"));
        assert!(reason("Component/tagged").contains("metadata.tags[1]"));
        assert!(!reason("Component/tagged").contains("metadata.tags[0]"));
        assert!(reason("API/undefined").contains("spec.definition"));
        assert!(reason("Group/childless").contains("spec.children"));
        assert_eq!(batch.items().map(|ci| ci.display_name.as_str()).collect::<Vec<_>>(), ["fine"]);
    }

    #[test]
    fn refs_resolve_in_the_entity_namespace() {
        let batch = read_text(
            "apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: orders-db, namespace: shop}
spec: {type: database, owner: \"group:default/dba\"}
---
apiVersion: backstage.io/v1beta1
kind: Component
metadata: {name: orders, namespace: shop}
spec:
  type: service
  lifecycle: production
  owner: payments
  dependsOn:
  - resource:orders-db
  - resource:default/bucket
  - Component:default/auth
  - users
  consumesApis: [pricing]
  providesApis: [default/orders-api]
---
apiVersion: backstage.io/v1alpha1
kind: component
metadata: {name: lower-case-kind}
spec: {type: service, lifecycle: production, owner: team-a}
",
        );
        assert_eq!(batch.problems.len(), 1, "{:?}", batch.problems);
        assert!(batch.problems[0].reason.contains("must be spelled \"Component\""));
        use RelationshipType::{DependsOn, OwnedBy};
        let orders = ("application", "shop/orders");
        assert!(related(&batch, OwnedBy, ("database", "shop/orders-db"), ("team", "dba")));
        assert!(related(&batch, OwnedBy, orders, ("team", "shop/payments")));
        assert!(related(&batch, DependsOn, orders, ("database", "shop/orders-db")));
        assert!(related(&batch, DependsOn, orders, ("cloud_resource", "bucket")));
        assert!(related(&batch, DependsOn, orders, ("application", "auth")));
        assert!(related(&batch, DependsOn, orders, ("application", "shop/users")));
        assert!(related(&batch, DependsOn, orders, ("api", "shop/pricing")));
        assert!(related(&batch, DependsOn, ("api", "orders-api"), orders));
        assert!(
            batch
                .rows
                .iter()
                .any(|r| r.row_id == "catalog.yaml#API/default/orders-api->DEPENDS_ON->shop/orders")
        );
        assert!(batch.rows.iter().any(|r| r.row_id == "catalog.yaml#Component/shop/orders"));
    }

    #[test]
    fn entity_refs() {
        let parse = |text| EntityRef::parse(text, "group", "shop");
        let expect = |kind: &str, namespace: &str, name: &str| EntityRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        assert_eq!(parse("team-a"), expect("group", "shop", "team-a"));
        assert_eq!(parse("default/team-a"), expect("group", "default", "team-a"));
        assert_eq!(parse("User:guest"), expect("user", "shop", "guest"));
        assert_eq!(parse("component:default/x"), expect("component", "default", "x"));
        assert!(is_entity_name("a.b_c-1") && !is_entity_name("invalid component") && !is_entity_name("-a"));
        assert!(
            is_tag("c++") && is_tag("go-1") && !is_tag("Java") && !is_tag("go 1.15.3") && !is_tag("a--b")
        );
    }
}
