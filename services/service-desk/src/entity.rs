//! sea-orm entities of the service desk's tables. Times are microseconds since the epoch
//! (0 = not yet); lists are JSON.

pub mod ticket {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "tickets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub number: String,
        pub channel: i32,
        pub requester: String,
        pub organisation: String,
        pub category: String,
        pub short_description: String,
        pub description: String,
        pub ticket_type: i32,
        pub state: i32,
        pub support_group: String,
        pub tier: i32,
        pub assignee: String,
        pub incident: String,
        pub business_service: String,
        pub configuration_items: String,
        pub impact: i32,
        pub urgency: i32,
        pub priority: i32,
        pub resolution_notes: String,
        pub open_time: i64,
        pub first_response_time: i64,
        pub resolve_time: i64,
        pub close_time: i64,
        pub escalation_count: i32,
        /// When the ticket reached its current group (time boxes count from here).
        pub tier_time: i64,
        pub max_tier: i32,
        pub survey_score: i32,
        pub survey_comment: String,
        pub catalog_item: String,
        /// JSON object of answers by variable id.
        pub variables: String,
        pub request_state: i32,
        pub approver: String,
        /// Earliest running SLA clock's due time (0 = none).
        pub sla_due_time: i64,
        /// JSON object: due time of each running SLA clock, by clock name.
        pub sla_clocks: String,
        /// An automatic escalation waiting to be carried out, and why ("" = none).
        pub escalation_reason: String,
        /// Queue order: priority rank then open time, as sortable text.
        pub queue_key: String,
        pub version: i64,
        pub create_time: i64,
        pub update_time: i64,
        pub creator: String,
        pub updater: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod support_group {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "support_groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub description: String,
        pub tier: i32,
        pub members: String,
        pub manager: String,
        pub assignment_method: i32,
        pub shifts: String,
        pub escalation_group: String,
        pub time_box_seconds: i32,
        /// The member the group gave its last ticket (round robin).
        pub last_assigned: String,
        pub version: i64,
        pub create_time: i64,
        pub update_time: i64,
        pub creator: String,
        pub updater: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod assignment_rule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "assignment_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub rule_order: i32,
        pub category: String,
        pub business_service: String,
        pub configuration_item: String,
        pub support_group: String,
        pub allow_tier_skip: bool,
        pub create_time: i64,
        pub creator: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub url: String,
        pub secret: String,
        pub kinds: String,
        pub create_time: i64,
        pub creator: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub kind: String,
        pub recipient: String,
        pub subject: String,
        pub body: String,
        pub ticket: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    /// One notification to one webhook.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub notification_id: String,
        pub webhook_id: String,
        pub state: i32,
        pub attempts: i32,
        pub next_attempt_time: i64,
        pub last_error: String,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod article {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "articles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub number: String,
        pub title: String,
        pub body: String,
        pub category: String,
        pub keywords: String,
        pub state: i32,
        pub revision: i32,
        pub solved_count: i32,
        pub link_count: i32,
        pub version: i64,
        pub create_time: i64,
        pub update_time: i64,
        pub creator: String,
        pub updater: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod catalog_item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub description: String,
        pub category: String,
        /// JSON list of `domain::catalog::Variable`.
        pub variables: String,
        pub approval_policy: i32,
        /// JSON `domain::catalog::Amount`.
        pub cost: String,
        pub cost_threshold: String,
        /// JSON list of (title, support group).
        pub tasks: String,
        pub create_time: i64,
        pub creator: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod fulfilment_task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fulfilment_tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub ticket_id: String,
        pub position: i32,
        pub title: String,
        pub support_group: String,
        pub done: bool,
        pub completed_by: String,
        pub complete_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ticket_note {
    use sea_orm::entity::prelude::*;

    /// A work note or comment on a ticket (`visibility` as `TicketNoteVisibility`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ticket_notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub ticket_id: String,
        pub visibility: i32,
        pub text: String,
        pub author: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
