//! Human numbers (`INC0001234`, `PRB0000007`): one counter per tenant and prefix, advanced in the
//! caller's transaction so a rolled-back create gives its number back.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

use crate::db::{execute_for_backend, stmt};
use crate::error::Error;

/// Digits after the prefix; more appear once a tenant passes 9,999,999.
pub const DIGITS: usize = 7;

/// The next number for `prefix` in `tenant`, e.g. `INC0000001`. On PostgreSQL the upsert locks the
/// counter row until the transaction ends, so concurrent creates get distinct numbers.
pub async fn next(db: &impl ConnectionTrait, tenant: &str, prefix: &str) -> Result<String, Error> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO number_sequences (tenant_id, prefix, last_value) VALUES ($1, $2, 1) \
             ON CONFLICT (tenant_id, prefix) DO UPDATE SET last_value = number_sequences.last_value + 1 \
             RETURNING last_value",
            [tenant.into(), prefix.into()],
        ))
        .await?
        .ok_or_else(|| Error::Internal("number sequence returned no row".into()))?;
    let value: i64 = row.try_get("", "last_value")?;
    let number = format_number(prefix, value);
    // The call that creates the record carries its number (the span of a create knows no name
    // before this point).
    tracing::Span::current().record("itsm.number", number.as_str());
    Ok(number)
}

/// The human number a resource name ends with (`incidents/INC0000042` → `INC0000042`): upper-case
/// letters, then at least [`DIGITS`] digits.
pub fn number_in(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    let digits = last.trim_start_matches(|c: char| c.is_ascii_uppercase());
    let is_number =
        digits.len() >= DIGITS && digits.len() < last.len() && digits.bytes().all(|b| b.is_ascii_digit());
    is_number.then_some(last)
}

pub fn format_number(prefix: &str, value: i64) -> String {
    format!("{prefix}{value:0DIGITS$}")
}

/// `INC0001234` → true when it is `prefix` followed by digits only.
pub fn is_number(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|d| d.len() >= DIGITS && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The migration that creates the counters; services that hand out numbers add it after their own.
pub struct CreateNumberSequences;

impl MigrationName for CreateNumberSequences {
    fn name(&self) -> &str {
        "m20261125_000002_number_sequences"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNumberSequences {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = "CREATE TABLE number_sequences (
            tenant_id TEXT NOT NULL,
            prefix TEXT NOT NULL,
            last_value BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, prefix)
        )";
        execute_for_backend(manager.get_connection(), sql, sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS number_sequences").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_zero_padded_and_recognised() {
        assert_eq!(format_number("INC", 42), "INC0000042");
        assert_eq!(format_number("INC", 12_345_678), "INC12345678");
        assert!(is_number("INC0000042", "INC"));
        assert!(is_number("INC12345678", "INC"));
        assert!(!is_number("INC42", "INC"));
        assert!(!is_number("PRB0000042", "INC"));
        assert!(!is_number("INC00000x2", "INC"));
    }

    #[test]
    fn numbers_are_found_at_the_end_of_names() {
        assert_eq!(number_in("incidents/INC0000042"), Some("INC0000042"));
        assert_eq!(number_in("tickets/REQ12345678"), Some("REQ12345678"));
        assert_eq!(number_in("configurationItems/0190a4b2-7c1d-7000-8000-000000000000"), None);
        assert_eq!(number_in("incidents/INC42"), None);
        assert_eq!(number_in("incidents/0000042"), None);
        assert_eq!(number_in(""), None);
    }
}
