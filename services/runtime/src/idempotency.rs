//! `request_id` idempotency for creates (AIP-155): a retry with the same id returns the first
//! result; the same id with a different request body is `ALREADY_EXISTS`.
//!
//! Both functions run inside the create's own transaction, so the key and the record it names
//! commit together or not at all.

use prost::Message;
use sea_orm::{ConnectionTrait, Value};
use sha2::{Digest, Sha256};

use crate::db::{classify_db_error, now_micros, stmt};
use crate::error::Error;

/// Hash of the request body that a request_id stands for.
pub fn request_hash(request: &impl Message) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

/// Checks a request_id: a UUID per AIP-155.
pub fn validate_request_id(request_id: &str, field: &str) -> Result<(), Error> {
    if request_id.is_empty() || uuid::Uuid::parse_str(request_id).is_ok() {
        Ok(())
    } else {
        Err(Error::invalid(field, "must be a UUID"))
    }
}

/// The resource a previous call with this request_id created, if any.
pub async fn lookup(
    db: &impl ConnectionTrait,
    tenant: &str,
    method: &str,
    request_id: &str,
    hash: &str,
) -> Result<Option<String>, Error> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT request_hash, resource_name FROM idempotency_keys \
             WHERE tenant_id = $1 AND method = $2 AND request_id = $3",
            [tenant.into(), method.into(), request_id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let stored_hash: String = row.try_get("", "request_hash")?;
    if stored_hash != hash {
        return Err(Error::AlreadyExists(format!(
            "request_id {request_id} was already used for a different request"
        )));
    }
    Ok(Some(row.try_get("", "resource_name")?))
}

/// What `record` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// A concurrent call with the same request_id committed first: roll back and look it up.
    LostRace,
}

/// Remembers that `request_id` created `resource_name`.
pub async fn record(
    db: &impl ConnectionTrait,
    tenant: &str,
    method: &str,
    request_id: &str,
    hash: &str,
    resource_name: &str,
) -> Result<Recorded, Error> {
    if request_id.is_empty() {
        return Ok(Recorded::Stored);
    }
    let values: [Value; 6] = [
        tenant.into(),
        method.into(),
        request_id.into(),
        hash.into(),
        resource_name.into(),
        now_micros().into(),
    ];
    let result = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO idempotency_keys (tenant_id, method, request_id, request_hash, resource_name, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            values,
        ))
        .await;
    match result {
        Ok(_) => Ok(Recorded::Stored),
        Err(err) => match classify_db_error(err) {
            Error::AlreadyExists(_) => Ok(Recorded::LostRace),
            other => Err(other),
        },
    }
}
