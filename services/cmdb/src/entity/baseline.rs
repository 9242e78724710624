use sea_orm::entity::prelude::*;

/// A snapshot of the CIs a filter matched.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "baselines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub filter: String,
    pub item_count: i32,
    /// JSON object: CI id → the CI's fields at snapshot time.
    pub snapshot: String,
    pub create_time: i64,
    pub creator: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
