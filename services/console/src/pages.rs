//! What every page shares: the layout (header, navigation by role, who is signed in), rendering a
//! template into a response, and the error pages every failure ends in.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::listing::query_escape;
use crate::session::SessionData;

/// Roles that work tickets (the agent workspace).
pub const AGENT_ROLES: &[&str] = &["agent", "tier1", "tier2", "tier3", "admin"];
/// Roles that plan changes (the change calendar).
pub const CHANGE_ROLES: &[&str] = &["change-manager", "cab-member", "admin"];
/// Roles that read the CMDB: everyone who works in IT (not requesters).
pub const CMDB_ROLES: &[&str] = &[
    "agent",
    "tier1",
    "tier2",
    "tier3",
    "problem-manager",
    "change-manager",
    "cab-member",
    "release-manager",
    "service-owner",
    "finance",
    "admin",
];
/// Roles that read service health (the gateway's overview).
pub const HEALTH_ROLES: &[&str] = &[
    "agent",
    "tier1",
    "tier2",
    "tier3",
    "service-owner",
    "change-manager",
    "release-manager",
    "problem-manager",
    "admin",
];

/// Which part of the console a page belongs to (marks its navigation entry as current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Portal,
    Agent,
    Changes,
    Cmdb,
    Health,
    None,
}

/// One navigation entry.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The signed-in user as the header shows them.
pub struct UserNav {
    pub subject: String,
    pub tenant: String,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: String,
    pub nav: Vec<NavLink>,
}

/// What the base template needs.
pub struct Layout {
    pub title: String,
    pub user: Option<UserNav>,
}

impl Layout {
    /// The layout of a page titled `title`, for `session` (none: signed out).
    pub fn new(title: impl Into<String>, session: Option<&SessionData>, section: Section) -> Self {
        let user = session.map(|s| UserNav {
            subject: s.subject.clone(),
            tenant: s.tenant.clone(),
            csrf: s.csrf.clone(),
            nav: navigation(s, section),
        });
        Self { title: title.into(), user }
    }
}

/// The navigation entries `session`'s roles may use. CMDB, change calendar and service health
/// are pages of their own areas; the entries point there.
fn navigation(session: &SessionData, section: Section) -> Vec<NavLink> {
    let mut links = vec![NavLink { href: "/portal", label: "Portal", current: section == Section::Portal }];
    if session.has_any_role(AGENT_ROLES) {
        links.push(NavLink {
            href: "/agent/queue",
            label: "Agent workspace",
            current: section == Section::Agent,
        });
    }
    // Problem managers work problems without working queues.
    if session.has_any_role(&["problem-manager"]) && !session.has_any_role(AGENT_ROLES) {
        links.push(NavLink { href: "/problems", label: "Problems", current: section == Section::Agent });
    }
    if session.has_any_role(CHANGE_ROLES) {
        links.push(NavLink {
            href: "/changes/calendar",
            label: "Changes",
            current: section == Section::Changes,
        });
    }
    if session.has_any_role(CMDB_ROLES) {
        links.push(NavLink { href: "/cmdb", label: "CMDB", current: section == Section::Cmdb });
    }
    if session.has_any_role(HEALTH_ROLES) {
        links.push(NavLink { href: "/health", label: "Service health", current: section == Section::Health });
    }
    links
}

/// `template` rendered as an HTML response with `status`. A template that fails to render (a
/// bug, never user input) is logged and answered with a plain 500.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "console template did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// Why a page cannot be shown. Each becomes a page (or, for `SignIn`, a redirect to sign in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// No valid session, or the gateway refused the token: sign in, then come back to `next`.
    SignIn { next: String },
    /// 404: the record does not exist (or is not the user's to see).
    NotFound(String),
    /// 403: the user's roles do not allow it.
    Forbidden(String),
    /// 403: a form without the session's CSRF token; nothing was written.
    Csrf,
    /// 400: a request the console or the service could not take (a bad page token).
    BadRequest(String),
    /// 409: the record is not in a state that allows it.
    Conflict(String),
    /// 413: a form larger than the console accepts.
    TooLarge,
    /// 503: the gateway or a service behind it cannot answer now.
    Unavailable(String),
    /// 500: a fault on our side; the detail is logged, not shown.
    Internal,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: &'static str,
    message: String,
    try_again: bool,
}

impl PageError {
    fn page(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::SignIn { .. } => (StatusCode::UNAUTHORIZED, "Please sign in", String::new()),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, "Page not found", what.clone()),
            Self::Forbidden(why) => {
                (StatusCode::FORBIDDEN, "You do not have access to this page", why.clone())
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Nothing was changed. Go back, reload the page and send the form again.".into(),
            ),
            Self::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, "The request could not be understood", why.clone())
            }
            Self::Conflict(why) => (StatusCode::CONFLICT, "That cannot be done now", why.clone()),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "That form is too large",
                "Shorten what you entered and send it again.".into(),
            ),
            Self::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", why.clone()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The problem was logged. Try again later.".into(),
            ),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Self::SignIn { next } = &self {
            return Redirect::to(&format!("/login?next={}", query_escape(next))).into_response();
        }
        let (status, heading, message) = self.page();
        let page = ErrorPage {
            layout: Layout::new(heading, None, Section::None),
            status: status.as_u16(),
            heading,
            message,
            try_again: matches!(self, Self::Unavailable(_)),
        };
        render(status, &page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roles: &[&str]) -> SessionData {
        SessionData {
            token: String::new(),
            subject: "s".into(),
            tenant: "t".into(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            exp: 0,
            csrf: String::new(),
        }
    }

    #[test]
    fn navigation_follows_the_roles() {
        let labels = |roles: &[&str]| -> Vec<&'static str> {
            navigation(&session(roles), Section::Portal).iter().map(|l| l.label).collect()
        };
        assert_eq!(labels(&["requester"]), ["Portal"]);
        assert_eq!(labels(&["tier1"]), ["Portal", "Agent workspace", "CMDB", "Service health"]);
        assert_eq!(labels(&["cab-member"]), ["Portal", "Changes", "CMDB"]);
        assert_eq!(labels(&["problem-manager"]), ["Portal", "Problems", "CMDB", "Service health"]);
        assert_eq!(labels(&["admin"]), ["Portal", "Agent workspace", "Changes", "CMDB", "Service health"]);
        let current: Vec<bool> =
            navigation(&session(&["agent"]), Section::Agent).iter().map(|l| l.current).collect();
        assert_eq!(current, [false, true, false, false]);
    }

    #[test]
    fn sign_in_is_a_redirect_carrying_the_page() {
        let response = PageError::SignIn { next: "/portal/tickets/REQ1?done=x".into() }.into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers().get(axum::http::header::LOCATION).unwrap(),
            "/login?next=%2Fportal%2Ftickets%2FREQ1%3Fdone%3Dx"
        );
        assert_eq!(PageError::Csrf.into_response().status(), StatusCode::FORBIDDEN);
        assert_eq!(PageError::NotFound("x".into()).into_response().status(), StatusCode::NOT_FOUND);
        assert_eq!(
            PageError::Unavailable("down".into()).into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
