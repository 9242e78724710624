//! Signing in and out. A user pastes a bearer token (from their identity provider, or `itsm
//! token`); the console checks it with one cheap authenticated call through the gateway, reads
//! who it names from its payload and keeps it in the encrypted session cookie. Under `itsm up`
//! the page also offers the dev admin's token.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use serde::Deserialize;
use tonic::Code;

use itsm_proto::servicedesk::ListTicketsRequest;

use crate::AppState;
use crate::calls::with_token;
use crate::pages::{Layout, PageError, Section, render};
use crate::session::{
    LOGIN_CSRF_COOKIE, SessionData, login_csrf_cookie, login_csrf_removal, now, random_token, safe_next,
    session_cookie, session_removal,
};
use crate::token::{clean_pasted, decode_claims};

/// Longest token kept in a session: the encrypted cookie must stay under the 4 KiB browsers keep.
const MAX_TOKEN: usize = 2800;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    /// The message next to the token field ("" = none).
    token_error: String,
    /// The message at the top of the form ("" = none).
    form_error: String,
    /// Offer "Sign in as the dev admin".
    dev_admin: bool,
}

impl LoginPage {
    pub fn has_token_error(&self) -> bool {
        !self.token_error.is_empty()
    }

    pub fn has_form_error(&self) -> bool {
        !self.form_error.is_empty()
    }
}

/// `/login?next=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    pub next: String,
}

/// The posted sign-in form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub next: String,
    pub token: String,
}

/// The jar with the sign-in form's CSRF cookie (kept when it is there, made otherwise) and its
/// value.
fn login_csrf(jar: PrivateCookieJar, secure: bool) -> (PrivateCookieJar, String) {
    if let Some(existing) = jar.get(LOGIN_CSRF_COOKIE).map(|cookie| cookie.value().to_string())
        && existing.len() == 64
    {
        return (jar, existing);
    }
    let value = random_token();
    (jar.add(login_csrf_cookie(value.clone(), secure)), value)
}

/// The sign-in page with `token_error` next to the token field and `form_error` on top.
fn login_page(
    state: &AppState,
    jar: PrivateCookieJar,
    next: &str,
    status: StatusCode,
    token_error: String,
    form_error: String,
) -> Response {
    let (jar, csrf) = login_csrf(jar, state.secure_cookies);
    let page = LoginPage {
        layout: Layout::new("Sign in", None, Section::None),
        csrf,
        next: safe_next(next),
        token_error,
        form_error,
        dev_admin: state.dev_token_file.is_some(),
    };
    (jar, render(status, &page)).into_response()
}

/// GET `/login`: the sign-in form.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let jar = PrivateCookieJar::from_headers(&headers, state.key.clone());
    login_page(&state, jar, &query.next, StatusCode::OK, String::new(), String::new())
}

/// POST `/login`: signs in with a pasted token.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let jar = PrivateCookieJar::from_headers(&headers, state.key.clone());
    sign_in(&state, jar, &form.token, &form.next).await
}

/// POST `/login/dev`: signs in with the dev admin's token `itsm up` wrote.
pub async fn dev_admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let jar = PrivateCookieJar::from_headers(&headers, state.key.clone());
    let Some(path) = state.dev_token_file.clone() else {
        return PageError::NotFound("There is no dev admin here.".into()).into_response();
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(token) => sign_in(&state, jar, &token, &form.next).await,
        Err(err) => {
            tracing::warn!(error = %err, path = %path.display(), "dev admin token not readable");
            let message = "The dev admin token is not there yet: `itsm up` writes it once every service \
                           is serving. Try again in a moment."
                .to_string();
            login_page(&state, jar, &form.next, StatusCode::SERVICE_UNAVAILABLE, String::new(), message)
        }
    }
}

/// Checks `pasted` with the gateway and, when it is accepted, starts a session and goes to `next`.
async fn sign_in(state: &AppState, jar: PrivateCookieJar, pasted: &str, next: &str) -> Response {
    let token = clean_pasted(pasted);
    let refuse = |jar, status, why: String| login_page(state, jar, next, status, why, String::new());
    if token.is_empty() {
        return refuse(jar, StatusCode::UNPROCESSABLE_ENTITY, "Paste your bearer token.".into());
    }
    if token.len() > MAX_TOKEN {
        return refuse(
            jar,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("This token is longer than {MAX_TOKEN} characters, too long for a browser session."),
        );
    }
    let claims = match decode_claims(token) {
        Ok(claims) => claims,
        Err(why) => return refuse(jar, StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    if claims.expires_at <= now() {
        return refuse(jar, StatusCode::UNAUTHORIZED, "This token has expired. Get a new one.".into());
    }
    // One cheap authenticated call: the gateway verifies the signature, issuer, audience and
    // expiry. A token whose roles may not list tickets (finance, say) is still a valid sign-in.
    let probe = ListTicketsRequest { page_size: 1, ..Default::default() };
    if let Err(status) = state.gateway.desk().list_tickets(with_token(token, probe)).await {
        match status.code() {
            Code::Unauthenticated => {
                let why = format!("The gateway did not accept this token: {}", status.message());
                return refuse(jar, StatusCode::UNAUTHORIZED, why);
            }
            Code::Unavailable | Code::DeadlineExceeded => {
                let message = "The gateway cannot be reached right now. Try again in a moment.".to_string();
                return login_page(state, jar, next, StatusCode::SERVICE_UNAVAILABLE, String::new(), message);
            }
            _ => {}
        }
    }
    let session = SessionData {
        token: token.to_string(),
        subject: claims.subject,
        tenant: claims.tenant,
        roles: claims.roles,
        exp: claims.expires_at,
        csrf: random_token(),
    };
    tracing::info!(subject = %session.subject, tenant = %session.tenant, "console sign-in");
    let jar = jar.add(session_cookie(&session, state.secure_cookies)).remove(login_csrf_removal());
    (jar, Redirect::to(&safe_next(next))).into_response()
}

/// POST `/logout`: drops the session cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let jar = PrivateCookieJar::from_headers(&headers, state.key.clone()).remove(session_removal());
    (jar, Redirect::to("/login")).into_response()
}
