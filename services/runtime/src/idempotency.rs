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

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// No earlier call: go on and create, then [`complete`] the claim.
    Fresh,
    /// An earlier call with this request_id created this resource: return it.
    Done(String),
    /// A concurrent call with the same request_id holds the key: roll back and try again (the
    /// retry sees its result).
    LostRace,
}

/// Claims `request_id` at the start of a create's transaction. The key row is written first, so
/// a concurrent retry waits on it (Postgres) instead of racing the create itself.
pub async fn claim(
    db: &impl ConnectionTrait,
    tenant: &str,
    method: &str,
    request_id: &str,
    hash: &str,
) -> Result<Claim, Error> {
    if request_id.is_empty() {
        return Ok(Claim::Fresh);
    }
    if let Some(name) = lookup(db, tenant, method, request_id, hash).await? {
        return Ok(Claim::Done(name));
    }
    let values: [Value; 6] =
        [tenant.into(), method.into(), request_id.into(), hash.into(), "".into(), now_micros().into()];
    let result = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO idempotency_keys (tenant_id, method, request_id, request_hash, resource_name, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            values,
        ))
        .await;
    match result {
        Ok(_) => Ok(Claim::Fresh),
        Err(err) => match classify_db_error(err) {
            Error::AlreadyExists(_) => Ok(Claim::LostRace),
            other => Err(other),
        },
    }
}

/// Records which resource the claimed `request_id` created (same transaction as the create).
pub async fn complete(
    db: &impl ConnectionTrait,
    tenant: &str,
    method: &str,
    request_id: &str,
    resource_name: &str,
) -> Result<(), Error> {
    if request_id.is_empty() {
        return Ok(());
    }
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE idempotency_keys SET resource_name = $1 WHERE tenant_id = $2 AND method = $3 AND request_id = $4",
        [resource_name.into(), tenant.into(), method.into(), request_id.into()],
    ))
    .await?;
    Ok(())
}
