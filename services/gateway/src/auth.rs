//! Authentication at the front door: bearer JWTs — HS256 with the configured secret, or RS256 /
//! ES256 verified against a JSON Web Key Set file that is re-read when it changes. The
//! authenticated principal, tenant and roles replace whatever `x-itsm-*` metadata the client
//! sent, together with the internal token that services require.
//!
//! After authentication the caller's roles are checked against the table in `authz`; a call no
//! role allows is `PERMISSION_DENIED`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
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

/// How often at most the JWKS file's modification time is looked at.
const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A JWKS file and the key set last read from it.
pub struct Jwks {
    path: PathBuf,
    state: RwLock<JwksState>,
}

struct JwksState {
    modified: Option<SystemTime>,
    checked: Instant,
    set: JwkSet,
}

fn read_jwks(path: &Path) -> Result<(Option<SystemTime>, JwkSet), String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a JWK set: {e}", path.display()))?;
    Ok((modified, set))
}

impl Jwks {
    /// Reads the file now: a missing or malformed file stops start-up.
    pub fn load(path: &Path) -> Result<Self, String> {
        let (modified, set) = read_jwks(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: RwLock::new(JwksState { modified, checked: Instant::now(), set }),
        })
    }

    /// Re-reads the file when it changed; a file that became unreadable or malformed keeps the
    /// previous keys (and says so in the log) rather than locking everyone out.
    fn refresh(&self) {
        let due = self.state.read().map(|s| s.checked.elapsed() >= JWKS_CHECK_INTERVAL).unwrap_or(true);
        if !due {
            return;
        }
        let Ok(mut state) = self.state.write() else { return };
        state.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == state.modified {
            return;
        }
        match read_jwks(&self.path) {
            Ok((modified, set)) => {
                tracing::info!(file = %self.path.display(), keys = set.keys.len(), "JWKS reloaded");
                state.modified = modified;
                state.set = set;
            }
            Err(error) => {
                tracing::warn!(%error, "JWKS file changed but cannot be used; keeping the previous keys");
            }
        }
    }

    fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        self.refresh();
        let state = self.state.read().map_err(|_| "key set unavailable".to_string())?;
        let jwk = state.set.find(kid).ok_or_else(|| format!("no key {kid:?} in the key set"))?;
        DecodingKey::from_jwk(jwk).map_err(|_| format!("key {kid:?} cannot verify tokens"))
    }
}

/// Checks bearer tokens and writes the trusted call context.
pub struct BearerGuard {
    key: DecodingKey,
    validation: Validation,
    internal_token: String,
    configured: bool,
    jwks: Option<Jwks>,
    audit: Option<crate::audit::AuditLog>,
    api_keys: Option<crate::api_keys::KeyStore>,
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
            jwks: None,
            audit: None,
            api_keys: None,
            limits: None,
        }
    }

    /// Accepts API keys (`Bearer itsm_…`) of this store.
    pub fn with_api_keys(mut self, keys: crate::api_keys::KeyStore) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Records refused calls (roles, rate) in the audit log.
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Also accepts RS256 / ES256 tokens signed by a key of this set.
    pub fn with_jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// Rate-limits authenticated callers per tenant and principal.
    pub fn with_limits(mut self, limits: std::sync::Arc<crate::limits::PrincipalLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Verifies a token; the error text is safe to return to the caller.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "token is malformed".to_string())?;
        let jwks_key;
        let mut validation;
        let key = match header.alg {
            Algorithm::HS256 if self.configured => {
                validation = self.validation.clone();
                &self.key
            }
            Algorithm::HS256 => return Err("HS256 tokens are not accepted here (no auth.jwt_secret)".into()),
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or("RS256/ES256 tokens need a key set (auth.jwks_file)")?;
                let kid = header.kid.as_deref().ok_or("the token names no key (kid)")?;
                jwks_key = jwks.key(kid)?;
                validation = self.validation.clone();
                validation.algorithms = vec![header.alg];
                &jwks_key
            }
            other => return Err(format!("tokens signed with {other:?} are not accepted")),
        };
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
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
        let claims = match &self.api_keys {
            Some(keys) if token.starts_with(crate::api_keys::PREFIX) => {
                let id = keys.verify(token).map_err(tonic::Status::unauthenticated)?;
                Claims {
                    sub: id.principal,
                    tenant: id.tenant,
                    roles: id.roles,
                    iss: String::new(),
                    aud: String::new(),
                    exp: 0,
                    nbf: 0,
                    iat: 0,
                }
            }
            _ => self.verify(token).map_err(tonic::Status::unauthenticated)?,
        };
        let refused = |status: tonic::Status| {
            if let Some(audit) = &self.audit {
                let roles = claims.roles.join(",");
                audit.record_now(crate::audit::Call {
                    tenant: &claims.tenant,
                    principal: &claims.sub,
                    roles: &roles,
                    method: path,
                    resource: "",
                    code: status.code() as i32,
                    message: status.message(),
                });
            }
            status
        };
        if let Some(limits) = &self.limits {
            limits.admit(&claims.tenant, &claims.sub).map_err(refused)?;
        }
        if !crate::authz::allowed(path, &claims.roles) {
            return Err(refused(tonic::Status::permission_denied(format!(
                "{path} is not allowed for the roles [{}]",
                claims.roles.join(", ")
            ))));
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
    fn rs256_and_es256_tokens_from_a_key_set_that_is_reloaded() {
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::copy(keys.join("jwks.json"), &file).unwrap();
        let guard = BearerGuard::new("", "itsm", "itsm", "").with_jwks(Jwks::load(&file).unwrap());
        let claims = |sub: &str| Claims {
            sub: sub.into(),
            tenant: "acme".into(),
            roles: vec!["agent".into()],
            iss: "itsm".into(),
            aud: "itsm".into(),
            exp: chrono::Utc::now().timestamp() + 600,
            nbf: 0,
            iat: 0,
        };
        let sign = |alg: Algorithm, kid: &str, pem: &str, sub: &str| {
            let mut header = Header::new(alg);
            header.kid = Some(kid.into());
            let bytes = std::fs::read(keys.join(pem)).unwrap();
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&bytes).unwrap(),
                _ => EncodingKey::from_ec_pem(&bytes).unwrap(),
            };
            jsonwebtoken::encode(&header, &claims(sub), &key).unwrap()
        };
        assert_eq!(guard.verify(&sign(Algorithm::RS256, "rsa-1", "rsa.pem", "ann")).unwrap().sub, "ann");
        assert_eq!(guard.verify(&sign(Algorithm::ES256, "ec-1", "ec.pem", "ben")).unwrap().sub, "ben");
        // A key the set does not have, or a key of the wrong type for its kid.
        assert!(
            guard.verify(&sign(Algorithm::RS256, "rsa-2", "rsa.pem", "x")).unwrap_err().contains("no key")
        );
        assert!(guard.verify(&sign(Algorithm::RS256, "ec-1", "rsa.pem", "x")).is_err());
        // HS256 is refused when no secret is configured.
        let hs = mint_token(SECRET, "itsm", "itsm", "eve", "acme", &[], chrono::Duration::hours(1)).unwrap();
        assert!(guard.verify(&hs).unwrap_err().contains("HS256"));
        // Rotation: the provider drops the RSA key; within the check interval it is gone.
        let mut set: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        set["keys"].as_array_mut().unwrap().retain(|k| k["kid"] != "rsa-1");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, set.to_string()).unwrap();
        std::thread::sleep(JWKS_CHECK_INTERVAL + Duration::from_millis(100));
        assert!(
            guard.verify(&sign(Algorithm::RS256, "rsa-1", "rsa.pem", "ann")).is_err(),
            "the retired key no longer verifies"
        );
        assert!(guard.verify(&sign(Algorithm::ES256, "ec-1", "ec.pem", "ben")).is_ok());
        // A broken file keeps the last good keys.
        std::fs::write(&file, "not json").unwrap();
        std::thread::sleep(JWKS_CHECK_INTERVAL + Duration::from_millis(100));
        assert!(guard.verify(&sign(Algorithm::ES256, "ec-1", "ec.pem", "ben")).is_ok());
        assert!(Jwks::load(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn probes_and_reflection_need_no_token() {
        let mut headers = HeaderMap::new();
        guard().admit("/grpc.health.v1.Health/Check", &mut headers).unwrap();
        guard().admit("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &mut headers).unwrap();
    }
}
