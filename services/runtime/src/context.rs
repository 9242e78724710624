//! Who is calling, for which tenant: read from request metadata that only the gateway sets.
//!
//! The gateway authenticates the caller, strips any `x-itsm-*` metadata the client sent, and
//! adds the principal, tenant and roles plus the internal token. Services reject calls without
//! that token (see `server::CallLayer`), so these headers can be trusted inside a service.

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::error::Error;

pub const TENANT_HEADER: &str = "x-itsm-tenant";
pub const PRINCIPAL_HEADER: &str = "x-itsm-principal";
pub const ROLES_HEADER: &str = "x-itsm-roles";
pub const INTERNAL_TOKEN_HEADER: &str = "x-itsm-internal-token";

/// Tenant and principal of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub tenant: String,
    pub principal: String,
    pub roles: Vec<String>,
}

impl CallContext {
    /// A context for calls the platform makes itself (event consumers, schedulers).
    pub fn system(tenant: impl Into<String>) -> Self {
        Self { tenant: tenant.into(), principal: "system".into(), roles: vec!["admin".into()] }
    }

    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, Error> {
        let get = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok()).unwrap_or_default().trim();
        let tenant = get(TENANT_HEADER);
        if tenant.is_empty() {
            return Err(Error::Unauthenticated("no tenant in call context".into()));
        }
        let principal = get(PRINCIPAL_HEADER);
        if principal.is_empty() {
            return Err(Error::Unauthenticated("no principal in call context".into()));
        }
        let roles =
            get(ROLES_HEADER).split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
        Ok(Self { tenant: tenant.to_string(), principal: principal.to_string(), roles })
    }

    pub fn from_request<T>(request: &tonic::Request<T>) -> Result<Self, Error> {
        Self::from_metadata(request.metadata())
    }

    /// Writes this context into outgoing metadata, for a service calling another service, with
    /// the current trace context.
    pub fn apply(&self, metadata: &mut MetadataMap, internal_token: &str) {
        crate::telemetry::inject_into_metadata(metadata);
        let mut set = |key: &'static str, value: &str| {
            if let Ok(v) = MetadataValue::try_from(value) {
                metadata.insert(key, v);
            }
        };
        set(TENANT_HEADER, &self.tenant);
        set(PRINCIPAL_HEADER, &self.principal);
        set(ROLES_HEADER, &self.roles.join(","));
        if !internal_token.is_empty() {
            set(INTERNAL_TOKEN_HEADER, internal_token);
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Constant-time comparison, so the internal token cannot be guessed byte by byte.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_metadata() {
        let ctx = CallContext {
            tenant: "acme".into(),
            principal: "alice".into(),
            roles: vec!["agent".into(), "tier1".into()],
        };
        let mut md = MetadataMap::new();
        ctx.apply(&mut md, "tok");
        assert_eq!(CallContext::from_metadata(&md).unwrap(), ctx);
        assert_eq!(md.get(INTERNAL_TOKEN_HEADER).unwrap(), "tok");
    }

    #[test]
    fn missing_tenant_is_unauthenticated() {
        let md = MetadataMap::new();
        assert!(matches!(CallContext::from_metadata(&md), Err(Error::Unauthenticated(_))));
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match(b"abc", b"abc"));
        assert!(!tokens_match(b"abd", b"abc"));
        assert!(!tokens_match(b"ab", b"abc"));
    }
}
