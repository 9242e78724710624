use sea_orm::entity::prelude::*;

/// One change of a configuration item, with the full record after the change (`snapshot`), so
/// a CI can be read as it was at any time.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ci_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub ci_id: String,
    pub version: i64,
    pub change_time: i64,
    pub actor: String,
    pub source: i32,
    pub source_reference: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// JSON array of `{field, old_value, new_value}`.
    pub changes: String,
    /// JSON of the record after the change; empty after a delete.
    pub snapshot: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
