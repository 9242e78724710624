//! The `changes` table. Times are microseconds since the epoch (0 = not set); lists and maps are JSON.

pub mod change {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "changes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub number: String,
        pub change_type: i32,
        pub state: i32,
        pub short_description: String,
        pub description: String,
        pub justification: String,
        pub implementation_plan: String,
        pub backout_plan: String,
        pub test_plan: String,
        pub configuration_items: String,
        pub planned_start_time: i64,
        pub planned_end_time: i64,
        pub risk: i32,
        pub risk_score: i32,
        pub risk_factors: String,
        pub risk_answers: String,
        /// CMDB facts behind the risk, kept so it can be recomputed without the CMDB.
        pub max_criticality: i32,
        pub business_services: i32,
        pub assignment_group: String,
        pub assignee: String,
        pub approvals: String,
        pub required_approvals: i32,
        pub problem: String,
        pub conflicts: String,
        pub actual_start_time: i64,
        pub actual_end_time: i64,
        pub outcome: i32,
        /// JSON list of the business services behind the affected CIs.
        pub business_service_names: String,
        /// JSON list of the CIs downstream of the affected CIs (their impact graph).
        pub impacted_cis: String,
        /// The approval policy rule deciding it (ApprovalRule number) and its groups (JSON).
        pub approval_rule: i32,
        pub approver_groups: String,
        /// The standard change template it was made from ("" for others).
        pub template: String,
        pub outside_maintenance_window: bool,
        /// JSON post-implementation review ("" = none).
        pub review: String,
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

pub mod blackout_window {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blackout_windows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub reason: String,
        pub start_time: i64,
        pub end_time: i64,
        pub create_time: i64,
        pub creator: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod changeset {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "changesets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub repository: String,
        pub revision: String,
        pub author: String,
        pub committer: String,
        pub commit_time: i64,
        pub message: String,
        pub branch: String,
        /// JSON list of paths.
        pub files: String,
        pub create_time: i64,
        pub creator: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod release {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "releases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub number: String,
        pub release_type: i32,
        pub state: i32,
        /// The release's version label ("2026.3.1"); `version` is the row's.
        pub version_label: String,
        pub short_description: String,
        pub description: String,
        /// JSON lists: change names, CI names, environments in order.
        pub changes: String,
        pub configuration_items: String,
        pub environments: String,
        /// JSON lists of records (see `releases::ArtefactRecord` and the others).
        pub artefacts: String,
        pub evidence: String,
        pub rollouts: String,
        pub planned_release_time: i64,
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
