//! Multi-row inserts given column by column.
//!
//! On PostgreSQL the rows travel as one typed array per column in a single
//! `INSERT … SELECT … FROM UNNEST($1::text[], $2::int8[], …)` (a column with the same value in
//! every row, [`Column::Same`], as one scalar parameter): the statement's text does not depend
//! on the number of rows, so its prepared statement is parsed once per connection and reused,
//! and a batch of any size is one statement with one parameter per column instead of
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
    /// One value for every row (a batch's tenant, actor or time): on PostgreSQL it travels once
    /// as a scalar parameter rather than once per row in an array.
    Same(Scalar),
}

/// A value that every row of a [`BulkInsert`] takes.
#[derive(Debug, Clone)]
pub enum Scalar {
    Text(String),
    BigInt(i64),
    Int(i32),
}

impl From<Scalar> for Value {
    fn from(scalar: Scalar) -> Self {
        match scalar {
            Scalar::Text(v) => v.into(),
            Scalar::BigInt(v) => v.into(),
            Scalar::Int(v) => v.into(),
        }
    }
}

impl Column {
    /// Rows the column holds values for; `None` for [`Column::Same`], which fits any number.
    fn len(&self) -> Option<usize> {
        match self {
            Self::Text(v) => Some(v.len()),
            Self::BigInt(v) => Some(v.len()),
            Self::Int(v) => Some(v.len()),
            Self::Bytes(v) => Some(v.len()),
            Self::Same(_) => None,
        }
    }

    /// The PostgreSQL type a parameter of this column is cast to: an array, or a scalar for
    /// [`Column::Same`].
    fn postgres_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text[]",
            Self::BigInt(_) => "int8[]",
            Self::Int(_) => "int4[]",
            Self::Bytes(_) => "bytea[]",
            Self::Same(Scalar::Text(_)) => "text",
            Self::Same(Scalar::BigInt(_)) => "int8",
            Self::Same(Scalar::Int(_)) => "int4",
        }
    }

    /// Estimated bytes row `i` adds to a statement.
    fn size_of(&self, i: usize) -> usize {
        match self {
            Self::Text(v) => v[i].len() + 8,
            Self::Bytes(v) => v[i].len() + 8,
            Self::Same(Scalar::Text(v)) => v.len() + 8,
            Self::BigInt(_) | Self::Int(_) | Self::Same(_) => 8,
        }
    }

    fn value(&self, i: usize) -> Value {
        match self {
            Self::Text(v) => v[i].as_str().into(),
            Self::BigInt(v) => v[i].into(),
            Self::Int(v) => v[i].into(),
            Self::Bytes(v) => v[i].clone().into(),
            Self::Same(scalar) => scalar.clone().into(),
        }
    }

    /// The column as one parameter (PostgreSQL): an array, or the one value of [`Column::Same`].
    fn into_parameter(self) -> Value {
        use sea_orm::sea_query::ArrayType;
        fn array(kind: ArrayType, values: Vec<Value>) -> Value {
            Value::Array(kind, Some(Box::new(values)))
        }
        match self {
            Self::Text(v) => array(ArrayType::String, v.into_iter().map(Value::from).collect()),
            Self::BigInt(v) => array(ArrayType::BigInt, v.into_iter().map(Value::from).collect()),
            Self::Int(v) => array(ArrayType::Int, v.into_iter().map(Value::from).collect()),
            Self::Bytes(v) => array(ArrayType::Bytes, v.into_iter().map(Value::from).collect()),
            Self::Same(scalar) => scalar.into(),
        }
    }
}

/// Rows for one table, given column by column; every column has one value per row, except
/// [`Column::Same`], which has one for all.
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

    /// The number of rows: every column that is not [`Column::Same`] holds that many values.
    fn rows(&self) -> Result<usize, Error> {
        let mut lengths = self.columns.iter().filter_map(|(name, c)| c.len().map(|n| (name, n)));
        let Some((_, rows)) = lengths.next() else {
            if self.columns.is_empty() {
                return Ok(0);
            }
            return Err(Error::Internal(format!(
                "bulk insert into {}: every column is the same for all rows, so the number of rows is unknown",
                self.table
            )));
        };
        match lengths.find(|(_, n)| *n != rows) {
            Some((name, n)) => Err(Error::Internal(format!(
                "bulk insert into {}: column {name} has {n} values for {rows} rows",
                self.table
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
            let values: Vec<Value> = self.columns.into_iter().map(|(_, c)| c.into_parameter()).collect();
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

    /// `INSERT INTO t (a, b, c) SELECT u.a, $2::text, u.c FROM UNNEST($1::text[], $3::int8[])
    /// WITH ORDINALITY AS u(a, c, bulk_ordinal)` (a [`Column::Same`] is a scalar parameter in
    /// the select list; parameters are numbered by column, so `$2` may come before `$1`); with a
    /// lock, `… ORDER BY u.bulk_ordinal`, so that a serial column (the outbox's sequence)
    /// follows the arrays' order.
    fn postgres_sql(&self, lock: Option<i64>) -> String {
        let names = self.names();
        let mut arrays = Vec::new();
        let mut unnested = Vec::new();
        let mut selected = Vec::new();
        for (i, (name, column)) in self.columns.iter().enumerate() {
            let parameter = format!("${}::{}", i + 1, column.postgres_type());
            if column.len().is_some() {
                arrays.push(parameter);
                unnested.push(*name);
                selected.push(format!("u.{name}"));
            } else {
                selected.push(parameter);
            }
        }
        let source = format!(
            "UNNEST({}) WITH ORDINALITY AS u({}, bulk_ordinal)",
            arrays.join(", "),
            unnested.join(", ")
        );
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

    #[test]
    fn a_column_the_same_for_every_row_is_one_scalar_parameter() {
        let insert = BulkInsert::new("t")
            .column("a", Column::Text(vec!["x".into(); 3]))
            .column("tenant", Column::Same(Scalar::Text("acme".into())))
            .column("b", Column::BigInt(vec![1; 3]));
        assert_eq!(insert.rows().ok(), Some(3));
        assert_eq!(
            insert.postgres_sql(None),
            "INSERT INTO t (a, tenant, b) SELECT u.a, $2::text, u.b FROM UNNEST($1::text[], $3::int8[]) \
             WITH ORDINALITY AS u(a, b, bulk_ordinal)"
        );
        let only_same = BulkInsert::new("t").column("tenant", Column::Same(Scalar::Int(1)));
        assert!(matches!(only_same.rows(), Err(Error::Internal(_))));
    }
}
