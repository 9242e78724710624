//! Database connection: SQLite (WAL, one writer) or PostgreSQL, with retry at start-up and
//! connection failures reported as `UNAVAILABLE` while the pool reconnects by itself.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr,
    Statement, Value,
};

use crate::config::DatabaseSettings;
use crate::error::Error;

pub use sea_orm::DatabaseConnection as Db;

/// Connects, retrying with exponential backoff for up to `startup_retry_ms` while the database
/// cannot be reached (a Postgres pod that starts after us is normal in Kubernetes).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(settings.startup_retry_ms);
    let mut delay = Duration::from_millis(100);
    loop {
        match connect_once(settings).await {
            Ok(db) => return Ok(db),
            Err(err) if is_connection_error(&err) && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                return Err(Error::Unavailable(format!(
                    "database {} not reachable: {err}",
                    redact_url(&settings.url)
                )));
            }
        }
    }
}

/// Reports the connection pool of `service` as `db.client.connection.count` (by state, idle
/// or used) and `db.client.connection.max`.
pub fn observe_pool(service: &str, db: &DatabaseConnection) {
    let meter = crate::telemetry::meter(service);
    let pool_name = opentelemetry::KeyValue::new("db.client.connection.pool.name", service.to_string());
    let (counted, name) = (db.clone(), pool_name.clone());
    let count = meter
        .i64_observable_gauge("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections of the pool, by state")
        .with_callback(move |observer| {
            let (size, idle) = pool_size(&counted);
            observer.observe(
                i64::from(size) - idle as i64,
                &[name.clone(), opentelemetry::KeyValue::new("db.client.connection.state", "used")],
            );
            observer.observe(
                idle as i64,
                &[name.clone(), opentelemetry::KeyValue::new("db.client.connection.state", "idle")],
            );
        })
        .build();
    let maxed = db.clone();
    let max = meter
        .i64_observable_gauge("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("Most connections the pool may open")
        .with_callback(move |observer| {
            observer.observe(i64::from(pool_max(&maxed)), std::slice::from_ref(&pool_name));
        })
        .build();
    crate::telemetry::keep(count);
    crate::telemetry::keep(max);
}

/// Open connections and idle ones.
fn pool_size(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    }
}

/// The most connections the pool of `db` opens.
pub fn pool_max(db: &DatabaseConnection) -> u32 {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => db.get_postgres_connection_pool().options().get_max_connections(),
        DatabaseBackend::Sqlite => db.get_sqlite_connection_pool().options().get_max_connections(),
        _ => 0,
    }
}

async fn connect_once(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let is_sqlite = settings.url.starts_with("sqlite:");
    let mut url = settings.url.clone();
    if is_sqlite {
        ensure_sqlite_dir(&url);
        if !url.contains('?') {
            url.push_str("?mode=rwc");
        }
    }
    let mut options = ConnectOptions::new(url);
    options
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .min_connections(settings.min_connections)
        .sqlx_logging(false)
        // Statements are parameterised: their text carries no values (and the exporter blanks
        // any literal written into SQL all the same).
        .record_stmt_in_spans(true);
    if is_sqlite {
        // SQLite allows one writer. One connection per service keeps writes serialised in the
        // pool instead of failing with SQLITE_BUSY when two deferred transactions both upgrade.
        options.max_connections(1).map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        // - jit off: LLVM compilation pays off for analytics, not for short OLTP statements.
        // - force_custom_plan: sqlx keeps statements prepared; a generic plan chosen while a
        //   table was nearly empty (a fresh tenant, the start of an import) stays a sequential
        //   scan as the table grows, making a bulk import quadratic. Planning per execution
        //   sees the table's current size.
        options.max_connections(settings.max_connections).map_sqlx_postgres_opts(|opts| {
            opts.options([("jit", "off"), ("plan_cache_mode", "force_custom_plan")])
        });
    }
    let db = Database::connect(options).await?;
    // Fail now rather than on the first request when the server refuses us.
    db.execute_unprepared("SELECT 1").await?;
    Ok(db)
}

fn ensure_sqlite_dir(url: &str) {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
        && let Err(err) = std::fs::create_dir_all(parent)
    {
        tracing::warn!(error = %err, dir = %parent.display(), "could not create database directory");
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`: URLs end up in logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// True when the error means "the database cannot be reached", not "the statement is wrong".
pub fn is_connection_error(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            is_sqlx_connection_error(e)
        }
        _ => false,
    }
}

fn is_sqlx_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Postgres: 08xxx connection exception, 57P01..03 shutdown / cannot connect now,
            // 53300 too many connections. SQLite: 5 (BUSY), 6 (LOCKED).
            code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "5" || code == "6"
        }
        _ => false,
    }
}

/// Maps a database error to the error a caller sees: unreachable → `UNAVAILABLE`, a unique key
/// clash → `ALREADY_EXISTS`, anything else is ours → `INTERNAL` (detail logged, not sent).
#[allow(clippy::needless_pass_by_value)] // called as `.map_err(classify_db_error)` and by `From<DbErr>`
pub fn classify_db_error(err: DbErr) -> Error {
    if is_connection_error(&err) {
        return Error::Unavailable("database unavailable, retry later".into());
    }
    if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
        return Error::AlreadyExists("a record with the same key already exists".into());
    }
    if is_transaction_conflict(&err) {
        return Error::Aborted("the write conflicted with a concurrent one; retry".into());
    }
    Error::Internal(err.to_string())
}

/// A deadlock or serialisation failure (Postgres 40P01 / 40001): the transaction was rolled
/// back and a retry can succeed, which is what ABORTED tells a client.
pub fn is_transaction_conflict(err: &DbErr) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(&**e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
        }
        _ => false,
    }
}

/// Builds a statement for the connection's backend. SQL uses `$1, $2, …` placeholders, which
/// both Postgres and SQLite accept (first uses must be in ascending order; text only PostgreSQL
/// runs, such as `bulk`'s UNNEST insert, may number them in any order).
pub fn stmt(backend: DatabaseBackend, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql, values)
}

/// Runs one of two DDL texts depending on the backend (migrations).
pub async fn execute_for_backend(
    db: &impl ConnectionTrait,
    sqlite: &str,
    postgres: &str,
) -> Result<(), DbErr> {
    let sql = match db.get_database_backend() {
        DatabaseBackend::Postgres => postgres,
        _ => sqlite,
    };
    for part in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.execute_unprepared(part).await?;
    }
    Ok(())
}

/// Bytes one multi-row statement should carry at most. Large enough that a batch is a few
/// statements, small enough to stay far below the bind-parameter limits (65,535 on PostgreSQL,
/// 32,766 on SQLite) for rows of a few hundred bytes. (Until the vendored sqlx-core set
/// TCP_NODELAY, a statement past ~16 KiB waited ~40 ms for a delayed ACK and this was 12 KiB.)
pub const STATEMENT_BUDGET: usize = 128 * 1024;

/// Most ids in one `IN (...)` list.
pub const MAX_IN_LIST: usize = 1_000;

/// Splits `items` into runs whose estimated `size` adds up to at most `budget` (a run holds at
/// least one item, however large).
pub fn chunks_within<T>(items: &[T], size: impl Fn(&T) -> usize, budget: usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, item) in items.iter().enumerate() {
        let s = size(item);
        if i > start && used + s > budget {
            chunks.push(&items[start..i]);
            start = i;
            used = 0;
        }
        used += s;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

/// Appends `items` to `values` and returns their placeholders (`$n, $n+1, …`) for an `IN` list.
pub fn placeholders(values: &mut Vec<Value>, items: &[String]) -> String {
    let mut marks = Vec::with_capacity(items.len());
    for item in items {
        values.push(item.as_str().into());
        marks.push(format!("${}", values.len()));
    }
    marks.join(", ")
}

/// Current time in microseconds since the epoch, the portable timestamp of every table.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Micros since the epoch → protobuf timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Protobuf timestamp → micros since the epoch.
pub fn micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds.saturating_mul(1_000_000).saturating_add(i64::from(ts.nanos) / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn chunks_stay_within_budget() {
        let items = [3, 3, 3, 10, 1];
        let chunks = chunks_within(&items, |n| *n, 6);
        assert_eq!(chunks, vec![&[3, 3][..], &[3][..], &[10][..], &[1][..]]);
        assert!(chunks_within(&[] as &[usize], |n| *n, 6).is_empty());
    }

    #[test]
    fn timestamps_round_trip() {
        for m in [0_i64, 1, 1_700_000_000_123_456, -1] {
            assert_eq!(micros(&timestamp(m)), m);
        }
    }

    #[test]
    fn connection_failures_are_unavailable() {
        let err = classify_db_error(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert!(matches!(err, Error::Unavailable(_)));
        let err = classify_db_error(DbErr::Custom("boom".into()));
        assert!(matches!(err, Error::Internal(_)));
    }
}
