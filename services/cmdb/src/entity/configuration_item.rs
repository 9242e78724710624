use sea_orm::entity::prelude::*;

/// One configuration item. Timestamps are microseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "configuration_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub ci_class: String,
    pub description: String,
    pub lifecycle_status: i32,
    pub environment: String,
    pub criticality: i32,
    pub owner: String,
    pub support_group: String,
    /// JSON object of label key → value.
    pub labels: String,
    /// JSON object of class attributes.
    pub attributes: String,
    /// The class's natural-key values joined by `/`; unique per tenant and class.
    pub natural_key: String,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
