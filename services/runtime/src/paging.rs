//! Opaque page tokens bound to the query that made them, and page-size rules (AIP-158).
//!
//! A token carries the sort key of the last row returned (keyset pagination: the next page is
//! "rows after this key", never an offset scan) and a fingerprint of the query. It is signed with
//! HMAC-SHA256, so a tampered token, or one from another query or tenant, is `INVALID_ARGUMENT`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page; larger requests are coerced down (AIP-158).
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Validates a requested page size: 0 → default, above the maximum → the maximum.
pub fn page_size(requested: i32, field: &str) -> Result<u64, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid(field, "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// Signs and checks page tokens with the service's paging key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct TokenBody {
    /// Query fingerprint.
    q: String,
    /// Sort key of the last row returned.
    k: Vec<serde_json::Value>,
}

type HmacSha256 = Hmac<Sha256>;

impl PageTokens {
    pub fn new(secret: &str) -> Self {
        Self { key: secret.as_bytes().to_vec() }
    }

    /// Fingerprint of everything that shapes a listing: tenant, parent, filter, order.
    pub fn fingerprint(parts: &[&str]) -> String {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(&hasher.finalize()[..16])
    }

    fn mac(&self, body: &[u8]) -> Result<Vec<u8>, Error> {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .map_err(|e| Error::Internal(format!("page token key: {e}")))?;
        mac.update(body);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// A token for the page after the row whose sort key is `last_key`.
    pub fn encode(&self, fingerprint: &str, last_key: Vec<serde_json::Value>) -> Result<String, Error> {
        let body = serde_json::to_vec(&TokenBody { q: fingerprint.to_string(), k: last_key })
            .map_err(|e| Error::Internal(format!("page token: {e}")))?;
        let mut bytes = self.mac(&body)?;
        bytes.extend_from_slice(&body);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The sort key a token continues after; `None` for an empty token (first page).
    pub fn decode(&self, token: &str, fingerprint: &str) -> Result<Option<Vec<serde_json::Value>>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "invalid page token");
        if token.len() > 4096 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() < 32 {
            return Err(invalid());
        }
        let (mac, body) = bytes.split_at(32);
        let mut verifier = HmacSha256::new_from_slice(&self.key)
            .map_err(|e| Error::Internal(format!("page token key: {e}")))?;
        verifier.update(body);
        verifier.verify_slice(mac).map_err(|_| invalid())?;
        let body: TokenBody = serde_json::from_slice(body).map_err(|_| invalid())?;
        if body.q != fingerprint {
            return Err(Error::invalid(
                "page_token",
                "page token belongs to a different query (filter, order_by or parent changed)",
            ));
        }
        Ok(Some(body.k))
    }
}

impl PageTokens {
    /// A one-number cursor (history version, row id): 0 on the first page.
    pub fn decode_number(&self, token: &str, fingerprint: &str) -> Result<i64, Error> {
        match self.decode(token, fingerprint)? {
            Some(key) => key
                .first()
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| Error::invalid("page_token", "invalid page token")),
            None => Ok(0),
        }
    }

    /// A one-string cursor (resource id): `None` on the first page.
    pub fn decode_text(&self, token: &str, fingerprint: &str) -> Result<Option<String>, Error> {
        match self.decode(token, fingerprint)? {
            Some(key) => key
                .first()
                .and_then(|v| v.as_str().map(String::from))
                .map(Some)
                .ok_or_else(|| Error::invalid("page_token", "invalid page token")),
            None => Ok(None),
        }
    }

    /// The token for the next page, or "" when `last_key` says there is none.
    pub fn next(&self, fingerprint: &str, last_key: Option<Vec<serde_json::Value>>) -> Result<String, Error> {
        match last_key {
            Some(key) => self.encode(fingerprint, key),
            None => Ok(String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let tokens = PageTokens::new("a-secret-of-some-length");
        let fp = PageTokens::fingerprint(&["tenant", "filter", "order"]);
        let token = tokens.encode(&fp, vec![json!("abc"), json!(42)]).unwrap();
        assert_eq!(tokens.decode(&token, &fp).unwrap(), Some(vec![json!("abc"), json!(42)]));
        assert_eq!(tokens.decode("", &fp).unwrap(), None);
    }

    #[test]
    fn tampered_token_is_invalid_argument() {
        let tokens = PageTokens::new("a-secret-of-some-length");
        let fp = PageTokens::fingerprint(&["t"]);
        let token = tokens.encode(&fp, vec![json!("abc")]).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(matches!(tokens.decode(&tampered, &fp), Err(Error::InvalidArgument(_))));
        for garbage in ["not base64!!", "AAAA", &"A".repeat(5000)] {
            assert!(matches!(tokens.decode(garbage, &fp), Err(Error::InvalidArgument(_))), "{garbage}");
        }
    }

    #[test]
    fn foreign_token_is_invalid_argument() {
        let tokens = PageTokens::new("a-secret-of-some-length");
        let token = tokens.encode(&PageTokens::fingerprint(&["tenant-a", ""]), vec![json!(1)]).unwrap();
        let other_query = PageTokens::fingerprint(&["tenant-b", ""]);
        assert!(matches!(tokens.decode(&token, &other_query), Err(Error::InvalidArgument(_))));
        // Signed with another key (another deployment).
        let other = PageTokens::new("another-secret-of-length");
        let fp = PageTokens::fingerprint(&["tenant-a", ""]);
        assert!(matches!(other.decode(&token, &fp), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(PageTokens::fingerprint(&["ab", "c"]), PageTokens::fingerprint(&["a", "bc"]));
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(page_size(0, "page_size").unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10, "page_size").unwrap(), 10);
        assert_eq!(page_size(i32::MAX, "page_size").unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1, "page_size").is_err());
    }
}
