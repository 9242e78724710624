use sea_orm::entity::prelude::*;

/// A directed, typed relationship `source —rel_type→ target`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "ci_relationships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub source_id: String,
    pub target_id: String,
    pub rel_type: i32,
    /// Copied from `properties.redundant` so impact analysis need not parse JSON.
    pub redundant: bool,
    pub properties: String,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
