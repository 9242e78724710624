//! Incident, problem and known-error pages of the agent workspace.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
