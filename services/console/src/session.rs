//! Sessions: an encrypted, signed cookie (`itsm_session`) holding the user's bearer token, who it
//! names, when it expires and the CSRF token of the session's forms; the pre-session CSRF cookie
//! of the sign-in form; and the `next` address a sign-in returns to.
//!
//! Nothing is kept on the server: any replica with the same key reads the cookie, and signing out
//! is dropping it. The token never reaches a page or a log.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::AppState;
use crate::pages::PageError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "itsm_session";
/// Name of the sign-in form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_CSRF_COOKIE: &str = "itsm_login_csrf";
/// Longest `next` address kept; longer ones go to the start page.
const MAX_NEXT: usize = 2048;

/// What the session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// The bearer token every call to the gateway carries.
    pub token: String,
    pub subject: String,
    pub tenant: String,
    pub roles: Vec<String>,
    /// Unix seconds when the token, and with it the session, expires.
    pub exp: i64,
    /// The value every form of this session must send back (`csrf`).
    pub csrf: String,
}

impl SessionData {
    /// Whether the session has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.exp <= now
    }

    /// Whether the token carries any of `roles`.
    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        self.roles.iter().any(|held| roles.contains(&held.as_str()))
    }
}

/// The cookie key: 64 bytes (signing + encryption) from SHA-512 over a fixed label and `secret`,
/// so a configured secret of any length gives a full-strength key, and the console's key differs
/// from the gateway's token key even when both come from `auth.jwt_secret`.
pub fn cookie_key(secret: &str) -> Key {
    let mut hasher = Sha512::new();
    hasher.update(b"itsm-console-session-cookie-v1\0");
    hasher.update(secret.as_bytes());
    let digest = hasher.finalize();
    let bytes: [u8; 64] = digest.into();
    Key::from(&bytes)
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// 32 random bytes, hex: a CSRF token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session in `jar`: `None` when there is none, it does not decrypt or parse (another key, a
/// tampered cookie), or it expired at `now`.
pub fn read_session(jar: &PrivateCookieJar, now: i64) -> Option<SessionData> {
    let cookie = jar.get(SESSION_COOKIE)?;
    let data: SessionData = serde_json::from_str(cookie.value()).ok()?;
    (!data.is_expired(now)).then_some(data)
}

/// The session cookie for `data`: HttpOnly, SameSite=Lax, Path=/, Secure when `secure`, expiring
/// with the token.
pub fn session_cookie(data: &SessionData, secure: bool) -> Cookie<'static> {
    // A struct of strings and numbers always serialises.
    let value = serde_json::to_string(data).unwrap_or_default();
    let mut cookie = Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure);
    if let Ok(expires) = time::OffsetDateTime::from_unix_timestamp(data.exp) {
        cookie = cookie.expires(expires);
    }
    cookie.build()
}

/// What removes the session cookie (same name and path).
pub fn session_removal() -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE).path("/").build()
}

/// The sign-in form's CSRF cookie (only sent to `/login…`).
pub fn login_csrf_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((LOGIN_CSRF_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/login")
        .secure(secure)
        .build()
}

/// What removes the sign-in CSRF cookie.
pub fn login_csrf_removal() -> Cookie<'static> {
    Cookie::build(LOGIN_CSRF_COOKIE).path("/login").build()
}

/// Whether a submitted CSRF value matches the expected one. Both must be present and non-empty;
/// compared in constant time.
pub fn csrf_matches(expected: Option<&str>, submitted: Option<&str>) -> bool {
    let (Some(expected), Some(submitted)) = (expected, submitted) else { return false };
    if expected.is_empty() || expected.len() != submitted.len() {
        return false;
    }
    expected.bytes().zip(submitted.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The value of `key` in an `application/x-www-form-urlencoded` body, as sent (CSRF tokens are
/// hex, so they need no decoding; anything encoded differently does not match).
pub fn form_value(body: &[u8], key: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        (name == key.as_bytes()).then(|| String::from_utf8_lossy(value).into_owned())
    })
}

/// `next` when it is a path on this site (one leading `/`, not `//` or `/\`, no control
/// characters), else `/`: a sign-in never redirects to another site.
pub fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= MAX_NEXT;
    if local { next.to_string() } else { "/".to_string() }
}

/// Where a user goes back to after signing in again: the page itself for GET (path and query);
/// for a form post the page the form was on (its same-origin `Referer`), else the start page.
pub fn return_path(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    if method == Method::GET || method == Method::HEAD {
        return safe_next(uri.path_and_query().map_or("/", axum::http::uri::PathAndQuery::as_str));
    }
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let path = referer.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]));
    safe_next(path.unwrap_or("/"))
}

/// A signed-in user, extracted from the session cookie. Without a valid session the request is
/// answered with a redirect to `/login?next=<this page>`.
pub struct Session {
    pub data: SessionData,
    /// Where to come back to after signing in again (this page).
    pub here: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let here = return_path(&parts.method, &parts.uri, &parts.headers);
        let jar = PrivateCookieJar::from_headers(&parts.headers, state.key.clone());
        match read_session(&jar, now()) {
            Some(data) => Ok(Session { data, here }),
            None => Err(PageError::SignIn { next: here }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(exp: i64) -> SessionData {
        SessionData {
            token: "header.payload.signature".into(),
            subject: "rita".into(),
            tenant: "acme".into(),
            roles: vec!["requester".into()],
            exp,
            csrf: random_token(),
        }
    }

    /// The `Cookie` header a browser sends back after `cookie` was set through a jar with `key`.
    fn browser_sends(cookie: &Cookie<'static>, key: &Key) -> HeaderMap {
        let set = PrivateCookieJar::new(key.clone()).add(cookie.clone());
        let response = axum::response::IntoResponse::into_response(set);
        let mut headers = HeaderMap::new();
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            assert!(!text.contains("rita"), "the cookie on the wire is encrypted: {text}");
            let pair = text.split(';').next().unwrap();
            headers.append(header::COOKIE, pair.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_session_round_trips_through_an_encrypted_cookie() {
        let key = cookie_key("a-secret-of-some-length");
        let session = data(now() + 3600);
        let cookie = session_cookie(&session, true);
        let jar = PrivateCookieJar::from_headers(&browser_sends(&cookie, &key), key);
        assert_eq!(read_session(&jar, now()), Some(session));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert!(cookie.expires().is_some());
        assert_eq!(session_cookie(&data(now() + 60), false).secure(), Some(false));
    }

    #[test]
    fn an_expired_garbled_or_foreign_session_reads_as_none() {
        let key = cookie_key("a-secret-of-some-length");
        let expired = data(now() - 1);
        let headers = browser_sends(&session_cookie(&expired, false), &key);
        assert_eq!(read_session(&PrivateCookieJar::from_headers(&headers, key.clone()), now()), None);

        let live = data(now() + 60);
        assert!(live.is_expired(live.exp) && !live.is_expired(live.exp - 1));
        let foreign = browser_sends(&session_cookie(&live, false), &cookie_key("another-secret-entirely"));
        assert_eq!(read_session(&PrivateCookieJar::from_headers(&foreign, key.clone()), now()), None);

        let mut garbled = HeaderMap::new();
        garbled.insert(header::COOKIE, format!("{SESSION_COOKIE}=AAAAbm90LWVuY3J5cHRlZA").parse().unwrap());
        assert_eq!(read_session(&PrivateCookieJar::from_headers(&garbled, key.clone()), now()), None);
        assert_eq!(read_session(&PrivateCookieJar::from_headers(&HeaderMap::new(), key), now()), None);
    }

    #[test]
    fn keys_differ_by_secret_and_are_stable() {
        assert_eq!(cookie_key("one-secret").signing(), cookie_key("one-secret").signing());
        assert_ne!(cookie_key("one-secret").signing(), cookie_key("two-secret").signing());
    }

    #[test]
    fn csrf_values_must_match_exactly() {
        let token = random_token();
        assert_eq!(token.len(), 64);
        assert!(csrf_matches(Some(&token), Some(&token)));
        assert!(!csrf_matches(Some(&token), Some(&random_token())));
        assert!(!csrf_matches(Some(&token), None));
        assert!(!csrf_matches(None, Some(&token)));
        assert!(!csrf_matches(Some(""), Some("")));
        assert!(!csrf_matches(Some(&token), Some(&token[..10])));
    }

    #[test]
    fn form_values_are_found_by_exact_name() {
        let body = b"summary=Printer+jam&csrf=abc123&csrfx=no&empty";
        assert_eq!(form_value(body, "csrf").as_deref(), Some("abc123"));
        assert_eq!(form_value(body, "empty").as_deref(), Some(""));
        assert_eq!(form_value(body, "missing"), None);
        assert_eq!(form_value(b"", "csrf"), None);
    }

    #[test]
    fn next_only_goes_to_a_path_on_this_site() {
        assert_eq!(safe_next("/agent/tickets/REQ0000001?done=x"), "/agent/tickets/REQ0000001?done=x");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "",
            "/a\nb",
            "javascript:x",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT))), "/");
    }

    #[test]
    fn a_form_post_returns_to_the_page_it_was_posted_from() {
        let uri: axum::http::Uri = "/agent/tickets/REQ1/escalate".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(return_path(&Method::POST, &uri, &headers), "/");
        headers.insert(header::REFERER, "http://127.0.0.1:8080/agent/tickets/REQ1?x=1".parse().unwrap());
        assert_eq!(return_path(&Method::POST, &uri, &headers), "/agent/tickets/REQ1?x=1");
        let get: axum::http::Uri = "/portal?page=abc".parse().unwrap();
        assert_eq!(return_path(&Method::GET, &get, &headers), "/portal?page=abc");
        headers.insert(header::REFERER, "http://127.0.0.1:8080//evil.example/".parse().unwrap());
        assert_eq!(return_path(&Method::POST, &uri, &headers), "/");
    }
}
