use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub caller: String,
    pub service_desk_ticket: String,
    pub short_description: String,
    pub description: String,
    pub category: String,
    pub subcategory: String,
    pub business_service: String,
    pub configuration_items: String,
    pub impact: i32,
    pub urgency: i32,
    pub priority: i32,
    pub state: i32,
    pub on_hold_reason: i32,
    pub assignment_group: String,
    pub assignee: String,
    pub support_tier: i32,
    pub manager_escalated: bool,
    pub resolution_code: i32,
    pub resolution_notes: String,
    pub major: bool,
    pub parent_incident: String,
    pub possible_duplicates: String,
    pub known_errors: String,
    pub suggested_workaround: String,
    pub reassignment_count: i32,
    pub open_time: i64,
    pub first_response_time: i64,
    pub resolve_time: i64,
    pub close_time: i64,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
