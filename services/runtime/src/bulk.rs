//! Multi-row inserts given column by column.
//!
//! On PostgreSQL the rows travel as one typed array per column in a single
//! `INSERT … SELECT … FROM UNNEST($1::text[], $2::int8[], …)`: the statement's text does not
//! depend on the number of rows, so its prepared statement is parsed once per connection and
//! reused, and a batch of any size is one statement with one parameter per column instead of
//! thousands. SQLite gets multi-row `VALUES` statements within [`STATEMENT_BUDGET`].

use sea_orm::{ConnectionTrait, DatabaseBackend, Value};

use crate::db::{STATEMENT_BUDGET, chunks_within, stmt};
use crate::error::Error;

/// SQLite's limit on bind parameters in one statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
const SQLITE_MAX_PARAMETERS: usize = 32_766;

/// The values of one column, one per row.
#[derive(Debug, Clone)]
pub enum Column {
    Text(Vec<String>),
    BigInt(Vec<i64>),
    Int(Vec<i32>),
    Bytes(Vec<Vec<u8>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Text(v) => v.len(),
            Self::BigInt(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    fn postgres_array_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text[]",
            Self::BigInt(_) => "int8[]",
            Self::Int(_) => "int4[]",
            Self::Bytes(_) => "bytea[]",
        }
    }

    /// Estimated bytes row `i` adds to a statement.
    fn size_of(&self, i: usize) -> usize {
        match self {
            Self::Text(v) => v[i].len() + 8,
            Self::Bytes(v) => v[i].len() + 8,
            Self::BigInt(_) | Self::Int(_) => 8,
        }
    }

    fn value(&self, i: usize) -> Value {
        match self {
            Self::Text(v) => v[i].as_str().into(),
            Self::BigInt(v) => v[i].into(),
            Self::Int(v) => v[i].into(),
            Self::Bytes(v) => v[i].clone().into(),
        }
    }

    /// The whole column as one array parameter (PostgreSQL).
    fn into_array(self) -> Value {
        use sea_orm::sea_query::ArrayType;
        fn array(kind: ArrayType, values: Vec<Value>) -> Value {
            Value::Array(kind, Some(Box::new(values)))
        }
        match self {
            Self::Text(v) => array(ArrayType::String, v.into_iter().map(Value::from).collect()),
            Self::BigInt(v) => array(ArrayType::BigInt, v.into_iter().map(Value::from).collect()),
            Self::Int(v) => array(ArrayType::Int, v.into_iter().map(Value::from).collect()),
            Self::Bytes(v) => array(ArrayType::Bytes, v.into_iter().map(Value::from).collect()),
        }
    }
}

/// Rows for one table, given column by column; every column has one value per row.
#[derive(Debug, Clone)]
pub struct BulkInsert {
    table: &'static str,
    columns: Vec<(&'static str, Column)>,
}

impl BulkInsert {
    pub fn new(table: &'static str) -> Self {
        Self { table, columns: Vec::new() }
    }

    pub fn column(mut self, name: &'static str, values: Column) -> Self {
        self.columns.push((name, values));
        self
    }

    fn rows(&self) -> Result<usize, Error> {
        let rows = self.columns.first().map_or(0, |(_, c)| c.len());
        match self.columns.iter().find(|(_, c)| c.len() != rows) {
            Some((name, c)) => Err(Error::Internal(format!(
                "bulk insert into {}: column {name} has {} values for {rows} rows",
                self.table,
                c.len()
            ))),
            None => Ok(rows),
        }
    }

    fn names(&self) -> String {
        self.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// Inserts the rows in the caller's transaction.
    pub async fn execute(self, db: &impl ConnectionTrait) -> Result<(), Error> {
        self.execute_serialised(db, None).await
    }

    /// Inserts the rows in order; on PostgreSQL the statement first takes the transaction-scoped
    /// advisory lock `lock` (re-entrant, held until the transaction ends) when one is given.
    pub async fn execute_serialised(self, db: &impl ConnectionTrait, lock: Option<i64>) -> Result<(), Error> {
        let rows = self.rows()?;
        if rows == 0 || self.columns.is_empty() {
            return Ok(());
        }
        let backend = db.get_database_backend();
        if backend == DatabaseBackend::Postgres {
            let sql = self.postgres_sql(lock);
            let values: Vec<Value> = self.columns.into_iter().map(|(_, c)| c.into_array()).collect();
            db.execute_raw(stmt(backend, &sql, values)).await?;
            return Ok(());
        }
        let names = self.names();
        let width = self.columns.len();
        let indices: Vec<usize> = (0..rows).collect();
        let row_size = |i: &usize| self.columns.iter().map(|(_, c)| c.size_of(*i)).sum::<usize>();
        for chunk in chunks_within(&indices, row_size, STATEMENT_BUDGET) {
            for part in chunk.chunks((SQLITE_MAX_PARAMETERS / width).max(1)) {
                let mut values = Vec::with_capacity(part.len() * width);
                let mut tuples = Vec::with_capacity(part.len());
                for &row in part {
                    let marks: Vec<String> = (0..width)
                        .map(|c| {
                            values.push(self.columns[c].1.value(row));
                            format!("${}", values.len())
                        })
                        .collect();
                    tuples.push(format!("({})", marks.join(", ")));
                }
                let sql = format!("INSERT INTO {} ({names}) VALUES {}", self.table, tuples.join(", "));
                db.execute_raw(stmt(backend, &sql, values)).await?;
            }
        }
        Ok(())
    }

    /// `INSERT INTO t (a, b) SELECT u.a, u.b FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY
    /// AS u(a, b, n)`; with a lock, `… ORDER BY u.n`, so that a serial column (the outbox's
    /// sequence) follows the arrays' order.
    fn postgres_sql(&self, lock: Option<i64>) -> String {
        let names = self.names();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("${}::{}", i + 1, c.postgres_array_type()))
            .collect();
        let selected: Vec<String> = self.columns.iter().map(|(name, _)| format!("u.{name}")).collect();
        let source = format!("UNNEST({}) WITH ORDINALITY AS u({names}, bulk_ordinal)", arrays.join(", "));
        match lock {
            Some(key) => format!(
                "WITH serialised AS (SELECT pg_advisory_xact_lock({key})) INSERT INTO {} ({names}) \
                 SELECT {} FROM {source} CROSS JOIN serialised ORDER BY u.bulk_ordinal",
                self.table,
                selected.join(", ")
            ),
            // Without a serial column that must follow the rows' order, no sort.
            None => {
                format!("INSERT INTO {} ({names}) SELECT {} FROM {source}", self.table, selected.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_statement_is_the_same_for_any_number_of_rows() {
        let insert = |n: usize| {
            BulkInsert::new("t")
                .column("a", Column::Text(vec!["x".into(); n]))
                .column("b", Column::BigInt(vec![1; n]))
        };
        assert_eq!(insert(1).postgres_sql(None), insert(500).postgres_sql(None));
        assert_eq!(
            insert(2).postgres_sql(None),
            "INSERT INTO t (a, b) SELECT u.a, u.b FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY \
             AS u(a, b, bulk_ordinal)"
        );
        assert!(
            insert(2)
                .postgres_sql(Some(7))
                .starts_with("WITH serialised AS (SELECT pg_advisory_xact_lock(7))")
        );
    }

    #[test]
    fn columns_of_different_lengths_are_refused() {
        let insert = BulkInsert::new("t")
            .column("a", Column::Text(vec!["x".into(); 2]))
            .column("b", Column::Int(vec![1]));
        assert!(matches!(insert.rows(), Err(Error::Internal(_))));
    }
}
