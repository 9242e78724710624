//! Service health: per business service, open incidents, SLA attainment, SLO error budget,
//! availability, capacity forecast and cost.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
