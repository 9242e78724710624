//! Full-text search documents: SQLite FTS5 (porter stemming) or Postgres tsvector ('english'),
//! one table per service for all its searchable kinds of record.

#[cfg(test)]
use sea_orm::ExprTrait;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseBackend};

use sea_orm_migration::prelude::*;

use crate::db::{execute_for_backend, stmt};
use crate::error::Error;

/// Most words a search query keeps.
pub const MAX_QUERY_WORDS: usize = 16;

/// The words of a search query: letters and digits only, lower case, so no query syntax of
/// either database can be smuggled in.
pub fn query_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_QUERY_WORDS)
        .map(str::to_lowercase)
        .collect()
}

/// A SQLite FTS5 query matching documents that contain every word (each word a quoted string).
pub fn fts5_query(words: &[String]) -> String {
    words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" ")
}

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

/// `{id_column} IN (ids of documents containing every word)`; see [`search_condition`].
pub fn matching(
    backend: DatabaseBackend,
    id_column: &'static str,
    kind: &str,
    tenant: &str,
    words: &[String],
) -> SimpleExpr {
    search_condition(backend, id_column, kind, tenant, words, Combine::All)
}

/// `{id_column} IN (ids of documents containing any of the words)`: for suggestions.
pub fn matching_any(
    backend: DatabaseBackend,
    id_column: &'static str,
    kind: &str,
    tenant: &str,
    words: &[String],
) -> SimpleExpr {
    search_condition(backend, id_column, kind, tenant, words, Combine::Any)
}

/// How the words of a query combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    All,
    Any,
}

/// The words are letters and digits only (see [`query_words`]) and travel as bound values;
/// `id_column` is the caller's constant (`"incidents"."id"`), never input. sea-query binds custom
/// values at `$n` for Postgres and at `?` for SQLite.
pub fn search_condition(
    backend: DatabaseBackend,
    id_column: &'static str,
    kind: &str,
    tenant: &str,
    words: &[String],
    combine: Combine,
) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => {
            let (function, text) = match combine {
                Combine::All => ("plainto_tsquery", words.join(" ")),
                // Letters and digits only, so `|` between them is the whole tsquery syntax used.
                Combine::Any => ("to_tsquery", words.join(" | ")),
            };
            Expr::cust_with_values(
                format!(
                    "{id_column} IN (SELECT record_id FROM search_documents WHERE kind = $1 AND tenant_id = $2 \
                     AND document @@ {function}('english', $3))"
                ),
                [kind.to_string(), tenant.to_string(), text],
            )
        }
        _ => {
            let query = match combine {
                Combine::All => fts5_query(words),
                Combine::Any => words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR "),
            };
            Expr::cust_with_values(
                format!(
                    "{id_column} IN (SELECT d.record_id FROM search_index JOIN search_documents d \
                     ON d.rowid = search_index.rowid WHERE search_index MATCH ? AND d.kind = ? AND d.tenant_id = ?)"
                ),
                [query, kind.to_string(), tenant.to_string()],
            )
        }
    }
}

/// One document per searchable record. SQLite keeps the text in a plain
/// table (looked up by index) with an FTS5 index fed by triggers; Postgres a generated tsvector
/// with a GIN index.
const SEARCH_SQLITE: &str = r"
CREATE TABLE search_documents (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX search_documents_by_record ON search_documents (kind, record_id);
CREATE VIRTUAL TABLE search_index USING fts5(body, content='search_documents', content_rowid='rowid', tokenize='porter unicode61');
CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN INSERT INTO search_index (rowid, body) VALUES (new.rowid, new.body); END;
CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN INSERT INTO search_index (search_index, rowid, body) VALUES ('delete', old.rowid, old.body); END;
CREATE TRIGGER search_documents_au AFTER UPDATE ON search_documents BEGIN INSERT INTO search_index (search_index, rowid, body) VALUES ('delete', old.rowid, old.body); INSERT INTO search_index (rowid, body) VALUES (new.rowid, new.body); END";

const SEARCH_POSTGRES: &str = r"
CREATE TABLE search_documents (
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    body TEXT NOT NULL,
    document tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    PRIMARY KEY (kind, record_id)
);
CREATE INDEX search_documents_fts ON search_documents USING GIN (document)";

/// The migration that creates the search tables; services that search add it.
pub struct CreateSearchDocuments;

impl MigrationName for CreateSearchDocuments {
    fn name(&self) -> &str {
        "m20261125_000004_search_documents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSearchDocuments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Statements are split at `;` + newline, so each trigger stays on one line.
        execute_for_backend(manager.get_connection(), SEARCH_SQLITE, SEARCH_POSTGRES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["search_index", "search_documents"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sea_query::{Alias, PostgresQueryBuilder, Query, SqliteQueryBuilder};

    #[test]
    fn queries_keep_words_only() {
        assert_eq!(query_words("Disk FULL on db-01!"), vec!["disk", "full", "on", "db", "01"]);
        assert_eq!(query_words("\" OR 1=1 -- NEAR(x y) *"), vec!["or", "1", "1", "near", "x", "y"]);
        assert!(query_words("  ;;  ").is_empty());
        assert_eq!(fts5_query(&query_words("mail server")), "\"mail\" \"server\"");
    }

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
            let two = vec!["printer".to_string(), "toner".to_string()];
            let any = Query::select()
                .column(Alias::new("id"))
                .from(Alias::new("incidents"))
                .and_where(matching_any(backend, r#""incidents"."id""#, "incident", "acme", &two))
                .to_owned();
            let (sql, values) = match backend {
                DatabaseBackend::Postgres => any.build(PostgresQueryBuilder),
                _ => any.build(SqliteQueryBuilder),
            };
            assert_eq!(values.0.len(), 3, "{sql}");
            let query = values.0[if backend == DatabaseBackend::Postgres { 2 } else { 0 }].to_string();
            assert!(query.contains("printer") && query.contains("toner"), "{query}");
        }
    }
}
