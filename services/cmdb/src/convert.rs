//! Between the stored record, the domain fields and the protobuf message.

use std::collections::BTreeMap;

use itsm_proto::cmdb::ConfigurationItem;
use itsm_proto::common::AuditInfo;
use itsm_runtime::db::timestamp;
use itsm_runtime::structs::{json_to_struct, struct_to_json};

use crate::domain::ci::CiFields;
use crate::entity::configuration_item;

pub const NAME_PREFIX: &str = "configurationItems/";

pub fn resource_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// `configurationItems/{uuid}` → the id, or `None` when the name is not of that form.
pub fn parse_name(name: &str) -> Option<String> {
    let id = name.strip_prefix(NAME_PREFIX)?;
    uuid::Uuid::parse_str(id).ok().filter(|u| u.hyphenated().to_string() == id).map(|_| id.to_string())
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

pub fn fields_from_proto(ci: &ConfigurationItem) -> CiFields {
    CiFields {
        display_name: ci.display_name.clone(),
        ci_class: ci.ci_class.clone(),
        description: ci.description.clone(),
        lifecycle_status: ci.lifecycle_status,
        environment: ci.environment.clone(),
        criticality: ci.criticality,
        owner: ci.owner.clone(),
        support_group: ci.support_group.clone(),
        labels: ci.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        attributes: ci.attributes.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json),
    }
}

pub fn fields_from_model(model: &configuration_item::Model) -> CiFields {
    CiFields {
        display_name: model.display_name.clone(),
        ci_class: model.ci_class.clone(),
        description: model.description.clone(),
        lifecycle_status: model.lifecycle_status,
        environment: model.environment.clone(),
        criticality: model.criticality,
        owner: model.owner.clone(),
        support_group: model.support_group.clone(),
        labels: serde_json::from_str::<BTreeMap<String, String>>(&model.labels).unwrap_or_default(),
        attributes: serde_json::from_str(&model.attributes).unwrap_or_else(|_| serde_json::json!({})),
    }
}

/// Writes the fields into a model (id, tenant, audit and version stay as they are).
pub fn apply_fields(model: &mut configuration_item::Model, fields: &CiFields) {
    model.display_name.clone_from(&fields.display_name);
    model.ci_class.clone_from(&fields.ci_class);
    model.description.clone_from(&fields.description);
    model.lifecycle_status = fields.lifecycle_status;
    model.environment.clone_from(&fields.environment);
    model.criticality = fields.criticality;
    model.owner.clone_from(&fields.owner);
    model.support_group.clone_from(&fields.support_group);
    model.labels = serde_json::to_string(&fields.labels).unwrap_or_else(|_| "{}".into());
    model.attributes = fields.attributes.to_string();
}

pub fn to_proto(model: &configuration_item::Model) -> ConfigurationItem {
    proto_from_fields(model, fields_from_model(model))
}

/// The CI as the API shows it, from its record and its fields already parsed (a write has them
/// at hand; reading them back from the record's JSON columns would parse what it just wrote).
pub fn proto_from_fields(model: &configuration_item::Model, fields: CiFields) -> ConfigurationItem {
    ConfigurationItem {
        name: resource_name(&model.id),
        display_name: fields.display_name,
        ci_class: fields.ci_class,
        description: fields.description,
        lifecycle_status: fields.lifecycle_status,
        environment: fields.environment,
        criticality: fields.criticality,
        owner: fields.owner,
        support_group: fields.support_group,
        labels: fields.labels.into_iter().collect(),
        attributes: Some(json_to_struct(&fields.attributes)),
        etag: etag(model.version),
        audit: Some(AuditInfo {
            create_time: Some(timestamp(model.create_time)),
            update_time: Some(timestamp(model.update_time)),
            creator: model.creator.clone(),
            updater: model.updater.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(parse_name(&resource_name(&id)), Some(id.clone()));
        assert_eq!(parse_name(&id), None);
        assert_eq!(parse_name("configurationItems/not-a-uuid"), None);
        assert_eq!(parse_name(&format!("configurationItems/{}", id.to_uppercase())), None);
    }
}

/// CI classes, relationships and baselines.
pub mod more {
    use itsm_proto::cmdb::{AttributeDefinition, CiClass, Relationship};
    use itsm_proto::common::AuditInfo;
    use itsm_runtime::db::timestamp;
    use itsm_runtime::structs::json_to_struct;

    use crate::domain::classes::{AttrDef, AttrType, ClassDef, ClassRegistry};
    use crate::entity::relationship;

    pub const CLASS_PREFIX: &str = "ciClasses/";
    pub const RELATIONSHIP_PREFIX: &str = "relationships/";
    pub const BASELINE_PREFIX: &str = "baselines/";

    pub fn attr_to_proto(a: &AttrDef) -> AttributeDefinition {
        AttributeDefinition {
            name: a.name.clone(),
            r#type: a.kind.to_proto(),
            required: a.required,
            enum_values: a.enum_values.clone(),
            reference_class: a.reference_class.clone(),
            description: a.description.clone(),
        }
    }

    /// `None` when the type is unset or unknown.
    pub fn attr_from_proto(a: &AttributeDefinition) -> Option<AttrDef> {
        Some(AttrDef {
            name: a.name.clone(),
            kind: AttrType::from_proto(a.r#type)?,
            required: a.required,
            enum_values: a.enum_values.clone(),
            reference_class: a.reference_class.clone(),
            description: a.description.clone(),
        })
    }

    pub fn class_to_proto(
        class: &ClassDef,
        registry: &ClassRegistry,
        audit: Option<AuditInfo>,
        version: i64,
    ) -> CiClass {
        CiClass {
            name: format!("{CLASS_PREFIX}{}", class.id),
            display_name: class.display_name.clone(),
            parent: class.parent.clone().unwrap_or_default(),
            description: class.description.clone(),
            attributes: class.attributes.iter().map(attr_to_proto).collect(),
            effective_attributes: registry
                .effective_attributes(&class.id)
                .into_iter()
                .map(attr_to_proto)
                .collect(),
            natural_key: registry.natural_key(&class.id),
            builtin: class.builtin,
            etag: super::etag(version),
            audit,
        }
    }

    pub fn relationship_to_proto(model: &relationship::Model) -> Relationship {
        let properties: serde_json::Value =
            serde_json::from_str(&model.properties).unwrap_or_else(|_| serde_json::json!({}));
        Relationship {
            name: format!("{RELATIONSHIP_PREFIX}{}", model.id),
            source: super::resource_name(&model.source_id),
            target: super::resource_name(&model.target_id),
            r#type: model.rel_type,
            properties: Some(json_to_struct(&properties)),
            etag: super::etag(model.version),
            audit: Some(AuditInfo {
                create_time: Some(timestamp(model.create_time)),
                update_time: Some(timestamp(model.update_time)),
                creator: model.creator.clone(),
                updater: model.updater.clone(),
            }),
        }
    }

    /// `{prefix}{uuid}` → the id.
    pub fn parse_uuid_name(name: &str, prefix: &str) -> Option<String> {
        let id = name.strip_prefix(prefix)?;
        uuid::Uuid::parse_str(id).ok().filter(|u| u.hyphenated().to_string() == id).map(|_| id.to_string())
    }
}
