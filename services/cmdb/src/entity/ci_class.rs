use sea_orm::entity::prelude::*;

/// A tenant's own CI class (the built-in tree lives in code).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ci_classes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub class_id: String,
    pub display_name: String,
    /// Parent class id, "" for a root.
    pub parent: String,
    pub description: String,
    /// JSON array of attribute definitions.
    pub attributes: String,
    /// JSON array of attribute names.
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
