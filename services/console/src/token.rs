//! Who a bearer token names. The console does not verify tokens: the gateway does, on every call
//! (sign-in makes one). It only reads the JWT payload to show the user's name and tenant, pick the
//! navigation by role and end the session when the token expires.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The claims of a token the console uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `sub`: the principal.
    pub subject: String,
    /// `tenant`.
    pub tenant: String,
    /// `roles` (absent = none).
    pub roles: Vec<String>,
    /// `exp`: Unix seconds.
    pub expires_at: i64,
}

/// Strips what people paste around a token: whitespace and an `Authorization` style prefix.
pub fn clean_pasted(token: &str) -> &str {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer ")).unwrap_or(token);
    token.trim()
}

/// Reads the payload (the middle part) of a JWT. Fails with a sentence for the sign-in form when
/// the text is not a JWT or lacks `sub`, `tenant` or `exp`.
pub fn decode_claims(token: &str) -> Result<TokenClaims, String> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("This is not a JSON Web Token (three parts separated by dots).".into());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "The token's payload is not base64url.".to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "The token's payload is not JSON.".to_string())?;
    let text =
        |name: &str| claims.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    let subject = text("sub");
    let tenant = text("tenant");
    if subject.is_empty() {
        return Err("The token names no user (no `sub` claim).".into());
    }
    if tenant.is_empty() {
        return Err("The token names no tenant (no `tenant` claim).".into());
    }
    let Some(expires_at) = claims.get("exp").and_then(serde_json::Value::as_i64) else {
        return Err("The token has no expiry (no `exp` claim).".into());
    };
    let roles = match claims.get("roles") {
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(serde_json::Value::as_str).map(str::to_string).collect()
        }
        // Some identity providers send one role as a space-separated string.
        Some(serde_json::Value::String(list)) => list.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(TokenClaims { subject, tenant, roles, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with(payload: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.c2lnbmF0dXJl")
    }

    #[test]
    fn reads_subject_tenant_roles_and_expiry() {
        let token = token_with(&serde_json::json!({
            "sub": "rita", "tenant": "acme", "roles": ["requester", "agent"], "exp": 1_900_000_000,
            "iss": "itsm", "aud": ["itsm", "other"]
        }));
        assert_eq!(
            decode_claims(&token).unwrap(),
            TokenClaims {
                subject: "rita".into(),
                tenant: "acme".into(),
                roles: vec!["requester".into(), "agent".into()],
                expires_at: 1_900_000_000,
            }
        );
    }

    #[test]
    fn a_pasted_bearer_prefix_and_padding_are_accepted() {
        let token = token_with(&serde_json::json!({"sub": "a", "tenant": "t", "exp": 5}));
        assert_eq!(clean_pasted(&format!("  Bearer {token}\n")), token);
        let (head, rest) = token.split_once('.').unwrap();
        let (body, signature) = rest.split_once('.').unwrap();
        let padded = format!("{head}.{body}==.{signature}");
        assert_eq!(decode_claims(&padded).unwrap().subject, "a");
        let claims = decode_claims(&token).unwrap();
        assert!(claims.roles.is_empty());
    }

    #[test]
    fn what_is_not_a_usable_token_is_said_in_a_sentence() {
        for (token, says) in [
            ("not-a-token".to_string(), "not a JSON Web Token"),
            ("a.b.c.d".to_string(), "not a JSON Web Token"),
            ("a.!!!.c".to_string(), "not base64url"),
            (format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2")), "not JSON"),
            (token_with(&serde_json::json!({"tenant": "t", "exp": 1})), "no `sub`"),
            (token_with(&serde_json::json!({"sub": "s", "exp": 1})), "no `tenant`"),
            (token_with(&serde_json::json!({"sub": "s", "tenant": "t"})), "no `exp`"),
        ] {
            let err = decode_claims(&token).unwrap_err();
            assert!(err.contains(says), "{token}: {err}");
        }
    }
}
