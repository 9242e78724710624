//! Change pages: the change calendar (week and month), a change with its risk, approvals,
//! conflicts and changesets, and whether a service may deploy now.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
