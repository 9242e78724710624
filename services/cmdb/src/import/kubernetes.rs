//! Kubernetes manifests → CI rows: namespaces, workloads (Deployment, StatefulSet, DaemonSet),
//! Services and Ingresses, with the relationships the manifests themselves reveal (label
//! selectors, ingress backends, and service addresses in container environment variables).
//!
//! Every file is parsed before any row is built, so a Service in one file selects the
//! Deployment of another, and a namespace referenced by many files becomes one row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use itsm_proto::cmdb::{CiReference, ConfigurationItem, LifecycleStatus, RelationshipType};
use itsm_runtime::structs::json_to_struct;
use serde_json::{Value, json};

use super::{ImportBatch, Problem, documents, item_row, reference, relationship_row};
use crate::domain::ci::{MAX_LABEL_VALUE, MAX_LABELS, is_label_key};

/// What an imported manifest becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Namespace,
    Workload,
    Service,
    Ingress,
}

impl Class {
    fn id(self) -> &'static str {
        match self {
            Self::Namespace => "k8s_namespace",
            Self::Workload => "k8s_workload",
            Self::Service => "k8s_service",
            Self::Ingress => "k8s_ingress",
        }
    }
}

/// Imported kinds with their API groups ("" is the core group). The group is checked so that a
/// custom resource that reuses a name (Knative's `serving.knative.dev/v1` Service) is skipped
/// rather than imported as a Kubernetes Service.
const KINDS: &[(&str, &[&str], Class)] = &[
    ("Namespace", &[""], Class::Namespace),
    ("Deployment", &["apps", "extensions"], Class::Workload),
    ("StatefulSet", &["apps"], Class::Workload),
    ("DaemonSet", &["apps", "extensions"], Class::Workload),
    ("Service", &[""], Class::Service),
    ("Ingress", &["networking.k8s.io", "extensions"], Class::Ingress),
];

/// One imported manifest, kept until every file is read.
#[derive(Debug)]
struct Object {
    file: String,
    kind: &'static str,
    class: Class,
    /// The object's namespace ("default" when not given); for a Namespace, its own name.
    namespace: String,
    name: String,
    doc: Value,
}

impl Object {
    fn display_name(&self) -> String {
        match self.class {
            Class::Namespace => self.name.clone(),
            _ => format!("{}/{}", self.namespace, self.name),
        }
    }

    fn row_id(&self) -> String {
        match self.class {
            Class::Namespace => namespace_row_id(&self.file, &self.name),
            _ => format!("{}#{}/{}/{}", self.file, self.kind, self.namespace, self.name),
        }
    }

    fn reference(&self) -> CiReference {
        reference(self.class.id(), &self.display_name())
    }

    /// The value at a JSON pointer, null when absent (manifests omit most fields).
    fn at(&self, pointer: &str) -> &Value {
        self.doc.pointer(pointer).unwrap_or(&Value::Null)
    }

    fn attributes(&self) -> Value {
        let ns = self.namespace.as_str();
        let each = |pointer: &str, field: &str| -> Vec<Value> {
            self.at(pointer).as_array().into_iter().flatten().filter_map(|v| v.get(field).cloned()).collect()
        };
        // Kubernetes runs one replica when none is given; a DaemonSet runs one per node.
        let replicas = (self.kind != "DaemonSet").then(|| self.at("/spec/replicas").as_i64().unwrap_or(1));
        let attributes = match self.class {
            Class::Namespace => json!({}),
            Class::Workload => json!({
                "kind": self.kind,
                "namespace": ns,
                "replicas": replicas,
                "images": each("/spec/template/spec/containers", "image"),
                "service_account": self.at("/spec/template/spec/serviceAccountName"),
            }),
            Class::Service => json!({
                "namespace": ns,
                "type": self.at("/spec/type").as_str().unwrap_or("ClusterIP"),
                "ports": each("/spec/ports", "port"),
                "selector": self.at("/spec/selector").as_object().cloned().unwrap_or_default(),
            }),
            Class::Ingress => {
                let mut hosts = each("/spec/rules", "host");
                dedup(&mut hosts);
                json!({"namespace": ns, "hosts": hosts})
            }
        };
        without_nulls(attributes)
    }

    fn item(&self) -> ConfigurationItem {
        ConfigurationItem {
            display_name: self.display_name(),
            ci_class: self.class.id().to_string(),
            // A manifest describes something deployed, so it is in use.
            lifecycle_status: LifecycleStatus::InUse as i32,
            labels: labels(self.at("/metadata/labels")),
            attributes: Some(json_to_struct(&self.attributes())),
            ..ConfigurationItem::default()
        }
    }

    /// A Service selects a workload when its pod template carries every selector pair; a
    /// Service without a selector (endpoints managed by hand) selects nothing.
    fn selects(&self, workload: &Object) -> bool {
        let pod_labels = workload.at("/spec/template/metadata/labels");
        self.namespace == workload.namespace
            && self.at("/spec/selector").as_object().is_some_and(|selector| {
                !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
            })
    }

    /// Values of the containers' environment variables (not `valueFrom`).
    fn env_values(&self) -> impl Iterator<Item = &str> {
        self.at("/spec/template/spec/containers")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("env").and_then(Value::as_array))
            .flatten()
            .filter_map(|e| e.get("value").and_then(Value::as_str))
    }

    /// Names of the Services an Ingress routes to (v1 `service.name`, v1beta1 `serviceName`).
    fn backends(&self) -> Vec<String> {
        let rules = self.at("/spec/rules").as_array().into_iter().flatten();
        let paths = rules.filter_map(|r| r.pointer("/http/paths").and_then(Value::as_array)).flatten();
        let backends = [self.at("/spec/defaultBackend"), self.at("/spec/backend")]
            .into_iter()
            .chain(paths.filter_map(|p| p.get("backend")));
        let mut names: Vec<String> = backends
            .filter_map(|b| {
                b.pointer("/service/name").or_else(|| b.get("serviceName")).and_then(Value::as_str)
            })
            .map(String::from)
            .collect();
        dedup(&mut names);
        names
    }
}

fn namespace_row_id(file: &str, namespace: &str) -> String {
    format!("{file}#Namespace/{namespace}")
}

/// Removes repeats, keeping the first of each.
fn dedup<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen = Vec::new();
    items.retain(|item| {
        let new = !seen.contains(item);
        if new {
            seen.push(item.clone());
        }
        new
    });
}

/// Drops null fields: an absent attribute is omitted rather than sent as null.
fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// Kubernetes labels that can be CI labels: keys lower-cased with other characters replaced by
/// `_` (`app.kubernetes.io/name` stays as it is); what still does not fit is dropped rather
/// than failing the whole CI. Always `source=kubernetes`, so imported CIs can be found.
fn labels(source: &Value) -> HashMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in source.as_object().into_iter().flatten() {
        let key: String = key
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || "_-./".contains(c) { c } else { '_' })
            .collect();
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => continue,
        };
        let fits = value.chars().count() <= MAX_LABEL_VALUE && !value.chars().any(char::is_control);
        if is_label_key(&key) && fits && key != "source" && out.len() < MAX_LABELS - 1 {
            out.insert(key, value);
        }
    }
    out.insert("source".to_string(), "kubernetes".to_string());
    out.into_iter().collect()
}

/// True when an environment value is the address of Service `name` in `namespace`: `name`,
/// `name:port`, `name.namespace[.svc...][:port]`, optionally behind a URL scheme. This is how
/// most manifests wire services together (e.g. `PRODUCT_CATALOG_SERVICE_ADDR =
/// "productcatalogservice:3550"` in Google's microservices-demo).
fn addresses(value: &str, name: &str, namespace: &str) -> bool {
    let address = match value.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
        None => value,
    };
    let Some(rest) = address.strip_prefix(name) else { return false };
    let is_port = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    rest.is_empty()
        || rest.strip_prefix(':').is_some_and(is_port)
        || rest
            .strip_prefix('.')
            .and_then(|r| r.strip_prefix(namespace))
            .is_some_and(|r| r.is_empty() || r.starts_with(['.', ':']))
}

/// Reads manifest files; a file that cannot be read is a Problem and the others are still read.
pub fn read(files: &[PathBuf]) -> ImportBatch {
    super::read_files(files, parse, emit)
}

/// Reads the manifests of one file into `batch`. Relationships only see the objects of this
/// file (use [`read`] for several files); namespace rows already in `batch` are not repeated.
pub fn read_str(file: &str, text: &str, batch: &mut ImportBatch) {
    super::read_text(file, text, batch, parse, emit);
}

fn parse(file: &str, text: &str, batch: &mut ImportBatch) -> Vec<Object> {
    let mut objects = Vec::new();
    for (entity, doc) in documents(file, text, &mut batch.problems) {
        collect(file, &entity, doc, batch, &mut objects);
    }
    objects
}

/// Adds one document to `objects`, or counts it as skipped, or records why it is unusable.
fn collect(file: &str, entity: &str, mut doc: Value, batch: &mut ImportBatch, objects: &mut Vec<Object>) {
    // `kubectl get -o yaml` wraps objects in a List.
    if doc.get("kind").and_then(Value::as_str) == Some("List") {
        if let Some(Value::Array(items)) = doc.get_mut("items").map(Value::take) {
            for (i, item) in items.into_iter().enumerate() {
                collect(file, &format!("{entity}, item {}", i + 1), item, batch, objects);
            }
        }
        return;
    }
    match object(file, doc) {
        Ok(Some(object)) => objects.push(object),
        Ok(None) => batch.skipped += 1,
        Err(reason) => {
            batch.problems.push(Problem { file: file.to_string(), entity: entity.to_string(), reason });
        }
    }
}

/// The object a manifest describes, or None when its kind is not imported.
fn object(file: &str, doc: Value) -> Result<Option<Object>, String> {
    let Some(kind) = doc.get("kind").and_then(Value::as_str) else {
        return Err("no `kind` (or it is not a string)".into());
    };
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let Some(&(kind, _, class)) =
        KINDS.iter().find(|(k, groups, _)| *k == kind && (api_version.is_empty() || groups.contains(&group)))
    else {
        return Ok(None);
    };
    let name = match doc.pointer("/metadata/name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        None | Some(Value::Null | Value::String(_)) => return Err(format!("{kind} without metadata.name")),
        Some(other) => return Err(format!("{kind} with a metadata.name that is not a string: {other}")),
    };
    let namespace = match doc.pointer("/metadata/namespace") {
        _ if class == Class::Namespace => name.clone(),
        Some(Value::String(ns)) if !ns.is_empty() => ns.clone(),
        None | Some(Value::Null | Value::String(_)) => "default".to_string(),
        Some(other) => return Err(format!("{kind}/{name}: metadata.namespace is not a string: {other}")),
    };
    Ok(Some(Object { file: file.to_string(), kind, class, namespace, name, doc }))
}

/// Builds the rows: namespaces first (each once, from its Namespace document when there is
/// one, else implied by the first object in it), then each object with its relationships.
fn emit(objects: &[Object], batch: &mut ImportBatch) {
    let mut namespaces: HashSet<String> = batch
        .items()
        .filter(|ci| ci.ci_class == Class::Namespace.id())
        .map(|ci| ci.display_name.clone())
        .collect();
    for object in objects.iter().filter(|o| o.class == Class::Namespace) {
        if namespaces.insert(object.name.clone()) {
            batch.rows.push(item_row(object.row_id(), object.item()));
        }
    }
    let others: Vec<&Object> = objects.iter().filter(|o| o.class != Class::Namespace).collect();
    let others = others.as_slice();
    for object in others {
        if namespaces.insert(object.namespace.clone()) {
            let implied = Object {
                file: object.file.clone(),
                kind: "Namespace",
                class: Class::Namespace,
                namespace: object.namespace.clone(),
                name: object.namespace.clone(),
                doc: Value::Null,
            };
            batch.rows.push(item_row(implied.row_id(), implied.item()));
        }
    }
    let of_class = move |class: Class| others.iter().copied().filter(move |o| o.class == class);
    for &object in others {
        batch.rows.push(item_row(object.row_id(), object.item()));
        relate(batch, object, RelationshipType::PartOf, reference(Class::Namespace.id(), &object.namespace));
        match object.class {
            Class::Service => {
                for workload in of_class(Class::Workload).filter(|w| object.selects(w)) {
                    relate(batch, object, RelationshipType::DependsOn, workload.reference());
                }
            }
            // Emitted even when the Service is not in the files: the server reports it as dangling.
            Class::Ingress => {
                for service in object.backends() {
                    let target = format!("{}/{service}", object.namespace);
                    relate(
                        batch,
                        object,
                        RelationshipType::DependsOn,
                        reference(Class::Service.id(), &target),
                    );
                }
            }
            // A workload's address of its own Service (selected by it) would only make a cycle.
            Class::Workload => {
                for service in of_class(Class::Service).filter(|s| {
                    s.namespace == object.namespace
                        && !s.selects(object)
                        && object.env_values().any(|v| addresses(v, &s.name, &s.namespace))
                }) {
                    relate(batch, object, RelationshipType::DependsOn, service.reference());
                }
            }
            Class::Namespace => {}
        }
    }
}

fn relate(batch: &mut ImportBatch, source: &Object, kind: RelationshipType, target: CiReference) {
    let type_name = kind.as_str_name().trim_start_matches("RELATIONSHIP_TYPE_");
    let row_id = format!("{}->{type_name}->{}", source.row_id(), target.natural_key);
    batch.rows.push(relationship_row(row_id, kind, source.reference(), target));
}

#[cfg(test)]
mod tests {
    use itsm_runtime::structs::struct_to_json;

    use super::*;
    use crate::import::fixtures;

    fn count(batch: &ImportBatch, class: &str) -> usize {
        batch.items().filter(|ci| ci.ci_class == class).count()
    }

    fn item<'a>(batch: &'a ImportBatch, class: &str, name: &str) -> &'a ConfigurationItem {
        batch.items().find(|ci| ci.ci_class == class && ci.display_name == name).unwrap()
    }

    fn attributes(ci: &ConfigurationItem) -> Value {
        struct_to_json(ci.attributes.as_ref().unwrap())
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

    fn read_text(text: &str) -> ImportBatch {
        let mut batch = ImportBatch::default();
        read_str("test.yaml", text, &mut batch);
        batch
    }

    #[test]
    fn microservices_demo() {
        let batch = read(&[fixtures().join("kubernetes/kubernetes-manifests.yaml")]);
        assert_eq!(batch.problems, vec![]);
        assert_eq!(count(&batch, "k8s_workload"), 12);
        assert_eq!(count(&batch, "k8s_service"), 12);
        assert_eq!(count(&batch, "k8s_namespace"), 1);
        assert_eq!(batch.skipped, 11, "ServiceAccounts");

        let workload = ("k8s_workload", "default/frontend");
        assert!(related(
            &batch,
            RelationshipType::DependsOn,
            workload,
            ("k8s_service", "default/productcatalogservice")
        ));
        assert!(related(&batch, RelationshipType::DependsOn, ("k8s_service", "default/frontend"), workload));
        assert!(related(
            &batch,
            RelationshipType::DependsOn,
            ("k8s_service", "default/frontend-external"),
            workload
        ));
        assert!(related(&batch, RelationshipType::PartOf, workload, ("k8s_namespace", "default")));
        // Its own Service is not a dependency of the frontend (that would be a cycle).
        assert!(!related(&batch, RelationshipType::DependsOn, workload, ("k8s_service", "default/frontend")));
        let loadgenerator = ("k8s_workload", "default/loadgenerator");
        assert!(related(
            &batch,
            RelationshipType::DependsOn,
            loadgenerator,
            ("k8s_service", "default/frontend")
        ));
        assert!(!related(
            &batch,
            RelationshipType::DependsOn,
            loadgenerator,
            ("k8s_service", "default/frontend-external")
        ));
        let cart = ("k8s_workload", "default/cartservice");
        assert!(related(&batch, RelationshipType::DependsOn, cart, ("k8s_service", "default/redis-cart")));

        let frontend = attributes(item(&batch, "k8s_workload", "default/frontend"));
        assert_eq!(frontend["kind"], "Deployment");
        assert_eq!(frontend["replicas"].as_f64(), Some(1.0));
        assert_eq!(frontend["service_account"], "frontend");
        assert!(frontend["images"][0].as_str().unwrap().ends_with("/frontend:v0.10.6"));
        assert!(
            attributes(item(&batch, "k8s_workload", "default/redis-cart")).get("service_account").is_none()
        );
        let external = attributes(item(&batch, "k8s_service", "default/frontend-external"));
        assert_eq!(external["type"], "LoadBalancer");
        assert_eq!(external["ports"][0].as_f64(), Some(80.0));
        assert_eq!(external["selector"], json!({"app": "frontend"}));

        for ci in batch.items() {
            assert_eq!(ci.lifecycle_status, LifecycleStatus::InUse as i32);
            assert_eq!(ci.labels.get("source").map(String::as_str), Some("kubernetes"));
            for (key, value) in &ci.labels {
                assert!(is_label_key(key) && value.len() <= MAX_LABEL_VALUE, "{key}={value}");
            }
        }
        let first_relationship = batch
            .rows
            .iter()
            .position(|r| matches!(r.kind, Some(itsm_proto::cmdb::import_row::Kind::Relationship(_))));
        assert_eq!(first_relationship, Some(batch.items().count()), "CI rows come first");
        assert!(batch.rows.iter().any(|r| r.row_id.ends_with(
            "kubernetes-manifests.yaml#Deployment/default/frontend->DEPENDS_ON->default/productcatalogservice"
        )));
    }

    #[test]
    fn network_policies_are_skipped() {
        let batch = read(&[fixtures().join("kubernetes/microservices-netpols.yaml")]);
        assert!(batch.rows.is_empty());
        assert!(batch.problems.is_empty());
        assert_eq!(batch.skipped, 12);
    }

    #[test]
    fn a_broken_document_does_not_hide_the_others() {
        let batch = read_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n\
             ---\nkind: Service\nmetadata: [unclosed\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
        );
        assert_eq!(batch.problems.len(), 1, "{:?}", batch.problems);
        assert_eq!(batch.problems[0].entity, "document 2");
        assert!(batch.problems[0].reason.contains("invalid YAML"));
        assert_eq!(item(&batch, "k8s_workload", "default/a").ci_class, "k8s_workload");
        assert_eq!(item(&batch, "k8s_service", "default/b").ci_class, "k8s_service");
    }

    #[test]
    fn documents_without_kind_or_name_are_problems() {
        let batch = read_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels: {app: x}\nspec: {}\n\
             ---\nmetadata: {name: nameless-kind}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {name: [not, a, string]}\n\
             ---\n- just a string\n",
        );
        assert!(batch.rows.is_empty());
        assert_eq!(batch.problems.len(), 4, "{:?}", batch.problems);
        let reason =
            |entity: &str| batch.problems.iter().find(|p| p.entity == entity).unwrap().reason.as_str();
        assert!(reason("document 1").contains("metadata.name"));
        assert!(reason("document 2").contains("kind"));
        assert!(reason("document 3").contains("not a string"));
        assert!(reason("document 4, item 1").contains("mapping"));
    }

    #[test]
    fn ingress_backends_are_emitted_even_when_unknown() {
        let batch = read_text(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: storefront, port: {number: 8080}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: storefront, port: {number: 8080}}}}
",
        );
        assert!(batch.problems.is_empty());
        let ingress = ("k8s_ingress", "shop/web");
        assert!(related(&batch, RelationshipType::DependsOn, ingress, ("k8s_service", "shop/fallback")));
        assert!(related(&batch, RelationshipType::DependsOn, ingress, ("k8s_service", "shop/storefront")));
        assert!(related(&batch, RelationshipType::PartOf, ingress, ("k8s_namespace", "shop")));
        assert_eq!(batch.relationships().count(), 3);
        assert_eq!(count(&batch, "k8s_namespace"), 1);
        assert_eq!(attributes(item(&batch, "k8s_ingress", "shop/web"))["hosts"], json!(["shop.example.com"]));
    }

    #[test]
    fn top_level_list() {
        let batch = read_text(
            "- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
    labels:
      Team: payments
      \"weird key!\": x
      toolong: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db, namespace: shop}
  spec:
    replicas: 3
    template:
      metadata: {labels: {app: db}}
      spec: {containers: [{name: pg, image: \"postgres:16\"}]}
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: agent, namespace: shop}
  spec:
    template:
      spec:
        containers:
        - name: a
          image: agent
          env: [{name: DB, value: \"db.shop.svc.cluster.local:5432\"}]
- apiVersion: v1
  kind: Service
  metadata: {name: db, namespace: shop}
  spec: {selector: {app: db}, ports: [{port: 5432}]}
- apiVersion: serving.knative.dev/v1
  kind: Service
  metadata: {name: knative}
",
        );
        assert!(batch.problems.is_empty(), "{:?}", batch.problems);
        assert_eq!(batch.skipped, 1, "the Knative Service");
        assert_eq!(count(&batch, "k8s_namespace"), 1);
        let shop = item(&batch, "k8s_namespace", "shop");
        let labels: BTreeMap<_, _> = shop.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            labels,
            BTreeMap::from([("source", "kubernetes"), ("team", "payments"), ("weird_key_", "x")])
        );
        assert_eq!(attributes(item(&batch, "k8s_workload", "shop/db"))["replicas"].as_f64(), Some(3.0));
        assert!(attributes(item(&batch, "k8s_workload", "shop/agent")).get("replicas").is_none());
        let service = ("k8s_service", "shop/db");
        assert!(related(&batch, RelationshipType::DependsOn, service, ("k8s_workload", "shop/db")));
        assert!(!related(&batch, RelationshipType::DependsOn, service, ("k8s_workload", "shop/agent")));
        assert!(related(&batch, RelationshipType::DependsOn, ("k8s_workload", "shop/agent"), service));
    }

    #[test]
    fn service_addresses() {
        assert!(addresses("cart:7070", "cart", "shop"));
        assert!(addresses("cart", "cart", "shop"));
        assert!(addresses("cart.shop.svc.cluster.local:7070", "cart", "shop"));
        assert!(addresses("http://cart.shop:80/api", "cart", "shop"));
        assert!(!addresses("cartservice:7070", "cart", "shop"));
        assert!(!addresses("cart.other:7070", "cart", "shop"));
        assert!(!addresses("cart:abc", "cart", "shop"));
    }
}
