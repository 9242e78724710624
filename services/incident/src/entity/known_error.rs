use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "known_errors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub problem: String,
    pub short_description: String,
    pub symptoms: String,
    pub workaround: String,
    pub configuration_items: String,
    pub status: i32,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
