use sea_orm::entity::prelude::*;

/// Labels in their own table so `labels.key = value` filters use an index.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ci_labels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub ci_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub tenant_id: String,
    pub value: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
