//! The web console: server-rendered HTML pages for people, served by the gateway on its own HTTP
//! port. It calls the services over the same gRPC contracts as any client — through the
//! gateway's public endpoint, with the signed-in user's bearer token — and never a database.
//!
//! No JavaScript build: askama templates compiled into the binary, one stylesheet and one small
//! script (live SLA countdowns) served from it. Every form carries a CSRF token; every response
//! carries a strict Content-Security-Policy (no inline script or style).

pub mod agent;
pub mod calls;
pub mod changes;
pub mod cmdb;
pub mod forms;
pub mod health;
pub mod incidents;
pub mod listing;
pub mod login;
pub mod pages;
pub mod portal;
pub mod session;
pub mod token;
pub mod views;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Key, PrivateCookieJar};
use tokio::net::TcpListener;

use itsm_runtime::Error;

use crate::calls::Gateway;
use crate::pages::{AGENT_ROLES, PageError};
use crate::session::{LOGIN_CSRF_COOKIE, csrf_matches, form_value, now, read_session, return_path};

/// The stylesheet and the script, compiled in.
/// One stylesheet: the base, then each area's own rules.
const STYLESHEET: &str = concat!(
    include_str!("../static/console.css"),
    include_str!("../static/changes.css"),
    include_str!("../static/cmdb.css"),
    include_str!("../static/health.css"),
    include_str!("../static/incidents.css"),
);
const SCRIPT: &str = include_str!("../static/console.js");
/// Largest form body the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Shortest session key the console accepts.
const MIN_SESSION_KEY: usize = 16;
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// How the console is set up.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// The gateway's gRPC endpoint the pages call, e.g. `http://127.0.0.1:50051`.
    pub gateway_url: String,
    /// Secret the session cookies are encrypted and signed with (at least 16 characters);
    /// replicas must share it.
    pub session_key: String,
    /// Mark cookies `Secure` (the console is served over HTTPS).
    pub secure_cookies: bool,
    /// A file holding a development admin token (`itsm up`): the sign-in page then offers
    /// "Sign in as the dev admin". `None` everywhere else.
    pub dev_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("gateway_url", &self.gateway_url)
            .field("session_key", &"<redacted>")
            .field("secure_cookies", &self.secure_cookies)
            .field("dev_token_file", &self.dev_token_file)
            .finish()
    }
}

/// What every handler shares (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// The console's channel to the gateway, its cookie key and cookie settings.
pub struct Shared {
    pub(crate) gateway: Gateway,
    pub(crate) key: Key,
    pub(crate) secure_cookies: bool,
    pub(crate) dev_token_file: Option<PathBuf>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The console's routes. Fails when the gateway URL does not parse or the session key is shorter
/// than 16 characters. The channel to the gateway connects on first use (call it inside a Tokio
/// runtime: the channel's worker is spawned on it).
pub fn router(options: ConsoleOptions) -> Result<Router, Error> {
    if options.session_key.len() < MIN_SESSION_KEY {
        return Err(Error::invalid(
            "console.session_key",
            "must be at least 16 characters (or set auth.jwt_secret to derive it from)",
        ));
    }
    let channel = tonic::transport::Endpoint::from_shared(options.gateway_url.clone())
        .map_err(|e| Error::invalid("console.gateway_url", format!("`{}`: {e}", options.gateway_url)))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let state = AppState {
        shared: Arc::new(Shared {
            gateway: Gateway::new(channel),
            key: session::cookie_key(&options.session_key),
            secure_cookies: options.secure_cookies,
            dev_token_file: options.dev_token_file,
        }),
    };
    Ok(Router::new()
        .route("/", get(start_page))
        .route("/login", get(login::show).post(login::submit))
        .route("/login/dev", post(login::dev_admin))
        .route("/logout", post(login::logout))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .route("/portal", get(portal::home))
        .route("/portal/tickets/new", get(portal::new_ticket).post(portal::create_ticket))
        .route("/portal/tickets/{number}", get(portal::ticket))
        .route("/portal/tickets/{number}/survey", post(portal::answer_survey))
        .route("/portal/tickets/{number}/comments", post(portal::add_comment))
        .route("/portal/catalog", get(portal::catalog))
        .route("/portal/catalog/{id}", get(portal::catalog_item).post(portal::submit_request))
        .route("/portal/knowledge", get(portal::knowledge))
        .route("/portal/knowledge/{number}", get(portal::article))
        .route("/agent/queue", get(agent::queue))
        .route("/agent/tickets/{number}", get(agent::ticket))
        .route("/agent/tickets/{number}/notes", post(agent::add_note))
        .route("/agent/tickets/{number}/escalate", post(agent::escalate))
        .route("/agent/tickets/{number}/resolve", post(agent::resolve))
        .route("/agent/tickets/{number}/articles", post(agent::link_article))
        .merge(changes::routes())
        .merge(cmdb::routes())
        .merge(health::routes())
        .merge(incidents::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard_forms))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state))
}

/// Serves `router(options)` on `listener` until `shutdown` completes.
pub async fn serve(
    options: ConsoleOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_router(router(options)?, listener, shutdown).await
}

/// Serves an already built console `app` on `listener` until `shutdown` completes; in-flight
/// requests finish first.
pub async fn serve_router(
    app: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a response written in more than one piece waits for the client's
    // delayed ACK (tens of milliseconds a page).
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "console connection: cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Unavailable(format!("console server: {e}")))
}

/// `/`: the agent workspace for those who work tickets, the portal for everyone else.
async fn start_page(State(state): State<AppState>, request: Request) -> Response {
    let jar = PrivateCookieJar::from_headers(request.headers(), state.key.clone());
    match read_session(&jar, now()) {
        Some(session) if session.has_any_role(AGENT_ROLES) => Redirect::to("/agent/queue").into_response(),
        Some(_) => Redirect::to("/portal").into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

async fn not_found() -> PageError {
    PageError::NotFound("There is no page at this address.".into())
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// Every POST must carry the CSRF token of its session (of the sign-in form's cookie for
/// `/login…`); a POST without it, or with another, is refused with 403 before any handler runs,
/// so nothing is written. A POST without a session goes to sign in, then back to its page.
async fn guard_forms(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let jar = PrivateCookieJar::from_headers(&parts.headers, state.key.clone());
    let expected = if matches!(parts.uri.path(), "/login" | "/login/dev") {
        jar.get(LOGIN_CSRF_COOKIE).map(|cookie| cookie.value().to_string())
    } else {
        match read_session(&jar, now()) {
            Some(session) => Some(session.csrf),
            None => {
                let next = return_path(&parts.method, &parts.uri, &parts.headers);
                return PageError::SignIn { next }.into_response();
            }
        }
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return PageError::TooLarge.into_response();
    };
    if !csrf_matches(expected.as_deref(), form_value(&bytes, "csrf").as_deref()) {
        tracing::warn!(path = parts.uri.path(), "form refused: missing or wrong csrf token");
        return PageError::Csrf.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The headers every response carries: a strict Content-Security-Policy (no inline script or
/// style, no framing), no MIME sniffing, referrers only to this site, and no caching of pages.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A 422 page for a form the console re-shows with errors, 200 otherwise.
pub(crate) fn form_status(has_errors: bool) -> StatusCode {
    if has_errors { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK }
}

#[cfg(test)]
mod tests {
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;
    use crate::session::{SessionData, session_cookie};

    fn app() -> Router {
        router(ConsoleOptions {
            // Nothing listens there; these tests never reach a call.
            gateway_url: "http://127.0.0.1:9".into(),
            session_key: "a-session-key-for-tests".into(),
            secure_cookies: false,
            dev_token_file: None,
        })
        .unwrap()
    }

    /// The `Cookie` header of a browser holding `session`.
    fn cookie_header(session: &SessionData) -> String {
        let key = session::cookie_key("a-session-key-for-tests");
        let jar = PrivateCookieJar::new(key).add(session_cookie(session, false));
        let response = jar.into_response();
        let set = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        set.split(';').next().unwrap().to_string()
    }

    fn session() -> SessionData {
        SessionData {
            token: "a.b.c".into(),
            subject: "ann".into(),
            tenant: "acme".into(),
            roles: vec!["tier1".into()],
            exp: now() + 600,
            csrf: "f".repeat(64),
        }
    }

    fn post(path: &str, cookie: Option<&str>, body: &str) -> HttpRequest<Body> {
        let mut request = HttpRequest::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::REFERER, "http://console.test/agent/tickets/REQ0000001");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn a_post_without_the_sessions_csrf_token_is_refused_before_any_handler() {
        let cookie = cookie_header(&session());
        let wrong = format!("reason=up&csrf={}", "0".repeat(64));
        for body in ["reason=up", "reason=up&csrf=", wrong.as_str()] {
            let response =
                app().oneshot(post("/agent/tickets/REQ0000001/escalate", Some(&cookie), body)).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{body}");
        }
        let response =
            app().oneshot(post("/logout", Some(&cookie), &format!("csrf={}", "f".repeat(64)))).await;
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "the right token passes the guard");
    }

    #[tokio::test]
    async fn a_post_without_a_session_goes_to_sign_in_and_back_to_its_page() {
        let response =
            app().oneshot(post("/agent/tickets/REQ0000001/escalate", None, "csrf=x")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers().get(header::LOCATION).unwrap(),
            "/login?next=%2Fagent%2Ftickets%2FREQ0000001"
        );
        let response = app().oneshot(post("/login", None, "csrf=abc&token=x")).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "sign-in is guarded by its own cookie");
    }

    #[tokio::test]
    async fn pages_need_a_session_and_every_response_carries_the_security_headers() {
        let response =
            app().oneshot(HttpRequest::get("/portal?page=x").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers().get(header::LOCATION).unwrap(), "/login?next=%2Fportal%3Fpage%3Dx");
        let headers = response.headers();
        assert_eq!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap(), CONTENT_SECURITY_POLICY);
        assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(headers.get(header::REFERRER_POLICY).unwrap(), "same-origin");

        let response =
            app().oneshot(HttpRequest::get("/nowhere").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));

        let response = app()
            .oneshot(HttpRequest::get("/static/console.css").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().get(header::CACHE_CONTROL).unwrap(), "public, max-age=3600");
    }

    #[tokio::test]
    async fn the_sign_in_page_sets_its_csrf_cookie_and_a_short_key_is_refused() {
        let response = app().oneshot(HttpRequest::get("/login").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap();
        assert!(set.starts_with(LOGIN_CSRF_COOKIE) && set.contains("HttpOnly"), "{set}");
        let short = ConsoleOptions {
            gateway_url: "http://127.0.0.1:9".into(),
            session_key: "short".into(),
            secure_cookies: false,
            dev_token_file: None,
        };
        assert!(router(short).is_err());
    }
}
