//! CMDB pages: search with the API's filter language, a configuration item with its
//! attributes, history and a picture of what depends on it.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
