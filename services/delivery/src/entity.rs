//! Service level tables. Times are microseconds since the epoch (0 = not set); lists are JSON.

pub mod calendar {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "business_calendars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub time_zone: String,
        /// JSON: seven lists of spans, Monday first.
        pub weekly: String,
        pub holidays: String,
        pub exceptions: String,
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

pub mod agreement {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "service_level_agreements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub agreement_type: i32,
        pub business_service: String,
        pub counterparty: String,
        /// JSON list of `rules::TargetDef`.
        pub targets: String,
        pub active: bool,
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

pub mod observation {
    use sea_orm::entity::prelude::*;

    /// One state of a measured record, from its service's event feed (one row per event).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "record_observations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub record: String,
        pub sequence: i64,
        pub observed_time: i64,
        pub state: String,
        pub priority: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod clock {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "sla_clocks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub agreement_id: String,
        pub target_index: i32,
        pub metric: i32,
        pub record: String,
        pub business_service: String,
        pub state: i32,
        pub priority: i32,
        pub start_time: i64,
        pub due_time: i64,
        pub stop_time: i64,
        pub breach_time: i64,
        pub elapsed_ms: i64,
        /// -1: no duration applies.
        pub target_ms: i64,
        /// JSON list of warning percents crossed.
        pub warnings: String,
        /// JSON list of warning percents whose event was emitted (each once).
        pub warned: String,
        pub breach_emitted: i32,
        /// When the sweeper must look again (0 = never).
        pub next_alert_time: i64,
        /// 1 when the definition changed and the clock waits to be recomputed.
        pub stale: i32,
        pub version: i64,
        pub create_time: i64,
        pub update_time: i64,
        /// The record's customer (ticket organisation or incident caller), for reports.
        pub customer: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod objective {
    use sea_orm::entity::prelude::*;

    /// An SLO imported from OpenSLO.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "service_level_objectives")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        /// OpenSLO `metadata.name`, unique per tenant.
        pub slo_name: String,
        pub display_name: String,
        pub service: String,
        pub business_service: String,
        pub target: f64,
        pub window_seconds: i64,
        pub budgeting_method: String,
        /// JSON: the alert windows, and the current (or last) alert episode.
        pub alert_windows: String,
        pub episodes: String,
        pub create_time: i64,
        pub update_time: i64,
        pub creator: String,
        pub updater: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sample {
    use sea_orm::entity::prelude::*;

    /// Good and total events of one period of an SLO's indicator.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sli_samples")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub slo_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub end_time: i64,
        pub good: i64,
        pub total: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "outages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub service: String,
        pub configuration_item: String,
        pub planned: bool,
        pub kind: i32,
        pub start_time: i64,
        /// 0 while ongoing.
        pub end_time: i64,
        pub description: String,
        pub cause: String,
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

pub mod offering {
    use sea_orm::entity::prelude::*;

    /// A service catalogue entry.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "service_offerings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub business_service: String,
        pub description: String,
        /// Calendar id of the hours of service ("" = around the clock).
        pub hours: String,
        pub owner: String,
        /// JSON list of customers.
        pub customers: String,
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

pub mod capacity_sample {
    use sea_orm::entity::prelude::*;

    /// Samples of a capacity resource aggregated per bucket (width 0 = one raw sample).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "capacity_samples")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub width_seconds: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub start_time: i64,
        pub tenant_id: String,
        pub count: i64,
        pub min_value: f64,
        pub max_value: f64,
        pub sum_value: f64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
