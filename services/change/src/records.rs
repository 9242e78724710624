//! The change service's whole-message records (`itsm_runtime::documents`): maintenance windows,
//! the tenant's risk questionnaire and CAB meetings.

use sea_orm::ConnectionTrait;

use itsm_proto::change::{MaintenanceWindow, RiskQuestionnaire};
use itsm_runtime::Error;
use itsm_runtime::db::micros;
use itsm_runtime::documents::{Column, Documents, Kind};

use crate::domain::maintenance::Window;
use crate::domain::risk::Question;

pub const MAINTENANCE_WINDOWS: Kind =
    Kind { prefix: "maintenanceWindows/", create_method: "CreateMaintenanceWindow", filters: &[] };
pub const QUESTIONNAIRES: Kind =
    Kind { prefix: "riskQuestionnaires/", create_method: "UpdateRiskQuestionnaire", filters: &[] };
pub const CAB_MEETINGS: Kind = Kind {
    prefix: "cabMeetings/",
    create_method: "CreateCabMeeting",
    filters: &[("state", Column::State), ("emergency", Column::Subject)],
};
/// The one questionnaire record of a tenant.
pub const QUESTIONNAIRE_KEY: &str = "questionnaire";

/// The tenant's maintenance windows as the rules see them.
pub async fn windows(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<Window>, Error> {
    Ok(Documents::all::<MaintenanceWindow>(db, &MAINTENANCE_WINDOWS, tenant)
        .await?
        .into_iter()
        .map(|d| Window {
            targets: d.body.configuration_items,
            start: d.body.start_time.as_ref().map_or(0, micros),
            end: d.body.end_time.as_ref().map_or(0, micros),
        })
        .collect())
}

/// The tenant's saved questionnaire (empty: none saved, the built-in questions apply).
pub async fn questions(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<Question>, Error> {
    let saved = Documents::all_where::<RiskQuestionnaire>(
        db,
        &QUESTIONNAIRES,
        tenant,
        Column::Subject,
        QUESTIONNAIRE_KEY,
    )
    .await?;
    Ok(saved
        .into_iter()
        .next()
        .map(|d| {
            d.body
                .questions
                .into_iter()
                .map(|q| Question {
                    id: q.id,
                    question: q.question,
                    risky_answer: q.risky_answer,
                    points: q.points,
                })
                .collect()
        })
        .unwrap_or_default())
}
