use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "problems")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub short_description: String,
    pub description: String,
    pub state: i32,
    pub priority: i32,
    pub root_cause: String,
    pub workaround: String,
    pub configuration_items: String,
    pub incidents: String,
    pub assignment_group: String,
    pub assignee: String,
    pub known_error: String,
    pub changes: String,
    pub resolution_notes: String,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
