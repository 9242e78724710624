//! Authentication at the front door: bearer JWTs (HS256 with the configured secret). The
//! authenticated principal, tenant and roles replace whatever `x-itsm-*` metadata the client
//! sent, together with the internal token that services require.
//!
//! After authentication the caller's roles are checked against the table in `authz`; a call no
//! role allows is `PERMISSION_DENIED`.

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use itsm_runtime::context::{INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, ROLES_HEADER, TENANT_HEADER};
use itsm_runtime::server::{CallGuard, is_open_path};

/// Claims of an ITSM bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The principal (user or machine).
    pub sub: String,
    pub tenant: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default)]
    pub nbf: i64,
    #[serde(default)]
    pub iat: i64,
}

/// Mints an HS256 token (`itsm up` writes one for the dev admin; `itsm token` makes others).
pub fn mint_token(
    secret: &str,
    issuer: &str,
    audience: &str,
    subject: &str,
    tenant: &str,
    roles: &[String],
    valid_for: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: subject.to_string(),
        tenant: tenant.to_string(),
        roles: roles.to_vec(),
        iss: issuer.to_string(),
        aud: audience.to_string(),
        exp: now + valid_for.num_seconds(),
        nbf: now - 60,
        iat: now,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Checks bearer tokens and writes the trusted call context.
pub struct BearerGuard {
    key: DecodingKey,
    validation: Validation,
    internal_token: String,
    configured: bool,
    limits: Option<std::sync::Arc<crate::limits::PrincipalLimits>>,
}

impl BearerGuard {
    pub fn new(secret: &str, issuer: &str, audience: &str, internal_token: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            internal_token: internal_token.to_string(),
            configured: !secret.is_empty(),
            limits: None,
        }
    }

    /// Rate-limits authenticated callers per tenant and principal.
    pub fn with_limits(mut self, limits: std::sync::Arc<crate::limits::PrincipalLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Verifies a token; the error text is safe to return to the caller.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        if !self.configured {
            return Err("the gateway has no token key configured (auth.jwt_secret)".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_string(),
                ErrorKind::ImmatureSignature => "token not valid yet".to_string(),
                ErrorKind::InvalidIssuer => "token has the wrong issuer".to_string(),
                ErrorKind::InvalidAudience => "token has the wrong audience".to_string(),
                ErrorKind::InvalidSignature => "token signature is invalid".to_string(),
                _ => "token is malformed".to_string(),
            }
        })?;
        let claims = data.claims;
        if claims.tenant.trim().is_empty() || claims.sub.trim().is_empty() {
            return Err("token names no tenant or subject".into());
        }
        Ok(claims)
    }
}

/// Removes every header a client must not set itself.
fn strip_context(headers: &mut HeaderMap) {
    for key in [TENANT_HEADER, PRINCIPAL_HEADER, ROLES_HEADER, INTERNAL_TOKEN_HEADER] {
        headers.remove(key);
    }
}

fn set(headers: &mut HeaderMap, key: &'static str, value: &str) -> Result<(), tonic::Status> {
    let value = http::HeaderValue::from_str(value).map_err(|_| {
        tonic::Status::unauthenticated("token claims contain characters not allowed in metadata")
    })?;
    headers.insert(key, value);
    Ok(())
}

impl CallGuard for BearerGuard {
    fn admit(&self, path: &str, headers: &mut HeaderMap) -> Result<(), tonic::Status> {
        strip_context(headers);
        if is_open_path(path) {
            return Ok(());
        }
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                tonic::Status::unauthenticated("missing bearer token (authorization: Bearer <token>)")
            })?;
        let claims = self.verify(token).map_err(tonic::Status::unauthenticated)?;
        if let Some(limits) = &self.limits {
            limits.admit(&claims.tenant, &claims.sub)?;
        }
        if !crate::authz::allowed(path, &claims.roles) {
            return Err(tonic::Status::permission_denied(format!(
                "{path} is not allowed for the roles [{}]",
                claims.roles.join(", ")
            )));
        }
        // Backends get the verified context, never the caller's token.
        headers.remove(http::header::AUTHORIZATION);
        set(headers, TENANT_HEADER, &claims.tenant)?;
        set(headers, PRINCIPAL_HEADER, &claims.sub)?;
        set(headers, ROLES_HEADER, &claims.roles.join(","))?;
        if !self.internal_token.is_empty() {
            set(headers, INTERNAL_TOKEN_HEADER, &self.internal_token)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough";

    fn guard() -> BearerGuard {
        BearerGuard::new(SECRET, "itsm", "itsm", "internal")
    }

    fn headers_with(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers.insert(TENANT_HEADER, "forged-tenant".parse().unwrap());
        headers
    }

    fn token(issuer: &str, audience: &str, valid_for: chrono::Duration, secret: &str) -> String {
        mint_token(secret, issuer, audience, "alice", "acme", &["admin".into()], valid_for).unwrap()
    }

    #[test]
    fn valid_token_sets_trusted_context_and_drops_forged_headers() {
        let mut headers = headers_with(&token("itsm", "itsm", chrono::Duration::hours(1), SECRET));
        guard().admit("/itsm.cmdb.v1.CmdbService/GetConfigurationItem", &mut headers).unwrap();
        assert_eq!(headers.get(TENANT_HEADER).unwrap(), "acme");
        assert_eq!(headers.get(PRINCIPAL_HEADER).unwrap(), "alice");
        assert_eq!(headers.get(ROLES_HEADER).unwrap(), "admin");
        assert_eq!(headers.get(INTERNAL_TOKEN_HEADER).unwrap(), "internal");
        assert!(headers.get(http::header::AUTHORIZATION).is_none());
    }

    #[test]
    fn bad_tokens_are_unauthenticated() {
        let path = "/itsm.cmdb.v1.CmdbService/GetConfigurationItem";
        let cases = [
            ("expired", token("itsm", "itsm", chrono::Duration::hours(-2), SECRET)),
            ("wrong issuer", token("evil", "itsm", chrono::Duration::hours(1), SECRET)),
            ("wrong audience", token("itsm", "other", chrono::Duration::hours(1), SECRET)),
            ("wrong key", token("itsm", "itsm", chrono::Duration::hours(1), "another-secret-of-good-length")),
            ("garbage", "not.a.jwt".to_string()),
        ];
        for (what, token) in cases {
            let mut headers = headers_with(&token);
            let status = guard().admit(path, &mut headers).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{what}");
            assert!(headers.get(TENANT_HEADER).is_none(), "{what}: forged tenant must be gone");
        }
        // Tampered payload: flip a character of the claims part.
        let good = token("itsm", "itsm", chrono::Duration::hours(1), SECRET);
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut claims = parts[1].clone().into_bytes();
        claims[5] = if claims[5] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(claims).unwrap();
        let mut headers = headers_with(&parts.join("."));
        assert_eq!(guard().admit(path, &mut headers).unwrap_err().code(), tonic::Code::Unauthenticated);
        // No token at all.
        let mut headers = HeaderMap::new();
        assert_eq!(guard().admit(path, &mut headers).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn probes_and_reflection_need_no_token() {
        let mut headers = HeaderMap::new();
        guard().admit("/grpc.health.v1.Health/Check", &mut headers).unwrap();
        guard().admit("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &mut headers).unwrap();
    }
}
