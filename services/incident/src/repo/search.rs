//! Full-text search documents: SQLite FTS5 (porter stemming) or Postgres tsvector ('english').

#[cfg(test)]
use sea_orm::ExprTrait;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseBackend};

use itsm_runtime::Error;
use itsm_runtime::db::stmt;

use crate::domain::text::fts5_query;

/// Replaces the search document of a record.
pub async fn write_document(
    txn: &impl ConnectionTrait,
    kind: &str,
    record_id: &str,
    tenant: &str,
    body: &str,
) -> Result<(), Error> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(
        backend,
        "DELETE FROM search_documents WHERE kind = $1 AND record_id = $2",
        [kind.into(), record_id.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        backend,
        "INSERT INTO search_documents (kind, record_id, tenant_id, body) VALUES ($1, $2, $3, $4)",
        [kind.into(), record_id.into(), tenant.into(), body.into()],
    ))
    .await?;
    Ok(())
}

pub async fn delete_document(txn: &impl ConnectionTrait, kind: &str, record_id: &str) -> Result<(), Error> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "DELETE FROM search_documents WHERE kind = $1 AND record_id = $2",
        [kind.into(), record_id.into()],
    ))
    .await?;
    Ok(())
}

/// `{id_column} IN (ids of documents of this kind and tenant containing every word)`. The words
/// are letters and digits only (see `domain::text::query_words`) and travel as bound values;
/// `id_column` is our own constant (`"incidents"."id"`), never input. sea-query binds custom
/// values at `$n` for Postgres and at `?` for SQLite.
pub fn matching(
    backend: DatabaseBackend,
    id_column: &'static str,
    kind: &str,
    tenant: &str,
    words: &[String],
) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => Expr::cust_with_values(
            format!(
                "{id_column} IN (SELECT record_id FROM search_documents WHERE kind = $1 AND tenant_id = $2 \
                 AND document @@ plainto_tsquery('english', $3))"
            ),
            [kind.to_string(), tenant.to_string(), words.join(" ")],
        ),
        _ => Expr::cust_with_values(
            format!(
                "{id_column} IN (SELECT d.record_id FROM search_index JOIN search_documents d \
                 ON d.rowid = search_index.rowid WHERE search_index MATCH ? AND d.kind = ? AND d.tenant_id = ?)"
            ),
            [fts5_query(words), kind.to_string(), tenant.to_string()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sea_query::{Alias, PostgresQueryBuilder, Query, SqliteQueryBuilder};

    #[test]
    fn search_condition_binds_every_value() {
        let words = vec!["printer".to_string()];
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            let query = Query::select()
                .column(Alias::new("id"))
                .from(Alias::new("incidents"))
                .and_where(Expr::col(Alias::new("tenant_id")).eq("acme"))
                .and_where(matching(backend, r#""incidents"."id""#, "incident", "acme", &words))
                .to_owned();
            let (sql, values) = match backend {
                DatabaseBackend::Postgres => query.build(PostgresQueryBuilder),
                _ => query.build(SqliteQueryBuilder),
            };
            assert_eq!(values.0.len(), 4, "{sql}");
            assert!(sql.contains(r#""incidents"."id" IN (SELECT"#), "{sql}");
            assert!(!sql.contains("printer"), "words are bound, never spliced: {sql}");
        }
    }
}
