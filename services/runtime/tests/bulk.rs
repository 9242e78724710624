//! Column-wise bulk inserts and the outbox appends built on them, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use sea_orm::{ConnectionTrait, TransactionTrait};
use sea_orm_migration::prelude::*;

use itsm_runtime::bulk::{BulkInsert, Column, Scalar};
use itsm_runtime::db::stmt;
use itsm_runtime::outbox::{self, EventFeed, NewEvent};
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};
use itsm_runtime::{db, db_tests};

struct RuntimeOnly;

#[async_trait::async_trait]
impl MigratorTrait for RuntimeOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        itsm_runtime::schema::migrations()
    }
}

db_tests!(
    every_type_round_trips_in_order,
    same_columns_fill_every_row,
    past_the_parameter_limits,
    outbox_keeps_the_order_of_a_batch
);

async fn connect(backend: TestBackend) -> (sea_orm::DatabaseConnection, TestDatabase) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = db::connect(&settings_for(&database.url).database).await.unwrap();
    db.execute_unprepared(
        "CREATE TABLE bulk_rows (name TEXT NOT NULL, big BIGINT NOT NULL, small INTEGER NOT NULL, \
         data BYTEA NOT NULL)"
            .replace("BYTEA", if backend == TestBackend::Sqlite { "BLOB" } else { "BYTEA" })
            .as_str(),
    )
    .await
    .unwrap();
    (db, database)
}

async fn every_type_round_trips_in_order(backend: TestBackend) {
    let (db, _database) = connect(backend).await;
    let names = vec!["a".to_string(), "it's \"quoted\", {json}".into(), String::new(), "ünï©ødé".into()];
    let data = vec![vec![0u8, 255], vec![], b"x\0y".to_vec(), vec![7; 300]];
    let txn = db.begin().await.unwrap();
    BulkInsert::new("bulk_rows")
        .column("name", Column::Text(names.clone()))
        .column("big", Column::BigInt(vec![i64::MIN, -1, 0, i64::MAX]))
        .column("small", Column::Int(vec![i32::MIN, 0, 1, i32::MAX]))
        .column("data", Column::Bytes(data.clone()))
        .execute(&txn)
        .await
        .unwrap();
    // No rows: nothing to do, no statement.
    BulkInsert::new("bulk_rows")
        .column("name", Column::Text(vec![]))
        .column("big", Column::BigInt(vec![]))
        .column("small", Column::Int(vec![]))
        .column("data", Column::Bytes(vec![]))
        .execute(&txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let backend_of = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(backend_of, "SELECT name, big, small, data FROM bulk_rows ORDER BY big", []))
        .await
        .unwrap();
    let read: Vec<(String, i64, i32, Vec<u8>)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "big").unwrap(),
                r.try_get("", "small").unwrap(),
                r.try_get("", "data").unwrap(),
            )
        })
        .collect();
    assert_eq!(read.len(), 4);
    for (i, (name, _, _, bytes)) in read.iter().enumerate() {
        assert_eq!(name, &names[i]);
        assert_eq!(bytes, &data[i]);
    }
    assert_eq!(read[0].2, i32::MIN);
    assert_eq!(read[3].1, i64::MAX);

    // Columns of different lengths are refused before anything is written.
    let err = BulkInsert::new("bulk_rows")
        .column("name", Column::Text(vec!["x".into()]))
        .column("big", Column::BigInt(vec![1, 2]))
        .column("small", Column::Int(vec![1]))
        .column("data", Column::Bytes(vec![vec![]]))
        .execute(&db)
        .await
        .unwrap_err();
    assert!(matches!(err, itsm_runtime::Error::Internal(_)), "{err:?}");
}

/// A column given once ([`Column::Same`]) takes that value in every row, of each type, beside
/// columns given per row; with only such columns the row count is unknown and nothing is written.
async fn same_columns_fill_every_row(backend: TestBackend) {
    let (db, _database) = connect(backend).await;
    let n = 5_000; // past the statement budget on SQLite, so its path splits the rows
    BulkInsert::new("bulk_rows")
        .column("name", Column::Same(Scalar::Text("it's the same".into())))
        .column("big", Column::BigInt((0..n as i64).collect()))
        .column("small", Column::Same(Scalar::Int(-7)))
        .column("data", Column::Bytes(vec![vec![9]; n]))
        .execute(&db)
        .await
        .unwrap();
    BulkInsert::new("bulk_rows")
        .column("name", Column::Text(vec!["other".into()]))
        .column("big", Column::Same(Scalar::BigInt(i64::MAX)))
        .column("small", Column::Int(vec![1]))
        .column("data", Column::Bytes(vec![vec![]]))
        .execute(&db)
        .await
        .unwrap();
    let backend_of = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            backend_of,
            "SELECT name, small, COUNT(*) AS n, MIN(big) AS low, MAX(big) AS high FROM bulk_rows \
             GROUP BY name, small ORDER BY name",
            [],
        ))
        .await
        .unwrap();
    let read: Vec<(String, i32, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "small").unwrap(),
                r.try_get("", "n").unwrap(),
                r.try_get("", "low").unwrap(),
                r.try_get("", "high").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        read,
        vec![
            ("it's the same".to_string(), -7, n as i64, 0, n as i64 - 1),
            ("other".to_string(), 1, 1, i64::MAX, i64::MAX),
        ]
    );

    let empty = BulkInsert::new("bulk_rows")
        .column("name", Column::Same(Scalar::Text("x".into())))
        .column("big", Column::Same(Scalar::BigInt(1)))
        .column("small", Column::Same(Scalar::Int(1)))
        .column("data", Column::Bytes(vec![]))
        .execute(&db)
        .await;
    assert!(empty.is_ok(), "an empty per-row column means no rows: {empty:?}");
    let err = BulkInsert::new("bulk_rows")
        .column("name", Column::Same(Scalar::Text("x".into())))
        .column("big", Column::Same(Scalar::BigInt(1)))
        .execute(&db)
        .await
        .unwrap_err();
    assert!(matches!(err, itsm_runtime::Error::Internal(_)), "{err:?}");
}

/// More rows × columns than either database takes bind parameters in one statement (65,535 on
/// PostgreSQL, 32,766 on SQLite): PostgreSQL gets one parameter per column, SQLite is split.
async fn past_the_parameter_limits(backend: TestBackend) {
    let (db, _database) = connect(backend).await;
    let n = 40_000;
    BulkInsert::new("bulk_rows")
        .column("name", Column::Text((0..n).map(|i| format!("row-{i}")).collect()))
        .column("big", Column::BigInt((0..n as i64).collect()))
        .column("small", Column::Int(vec![1; n]))
        .column("data", Column::Bytes(vec![vec![1, 2, 3]; n]))
        .execute(&db)
        .await
        .unwrap();
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, SUM(big) AS total FROM bulk_rows",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    let count: i64 = row.try_get("", "n").unwrap();
    assert_eq!(count, n as i64);
}

/// A batch of events gets sequence numbers in the order it was given, so a consumer reading the
/// feed sees a resource's create before its update.
async fn outbox_keeps_the_order_of_a_batch(backend: TestBackend) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<RuntimeOnly>(&db).await.unwrap();
    let names: Vec<String> = (0..700).map(|i| format!("things/{i:04}")).collect();
    let events: Vec<NewEvent> = names
        .iter()
        .map(|name| NewEvent {
            event_type: "test.Thing".into(),
            resource_name: name,
            tenant: "t1",
            actor: "tester",
            payload_type: "test.Thing".into(),
            payload: name.as_bytes().to_vec(),
        })
        .collect();
    let txn = db.begin().await.unwrap();
    outbox::append_many(&txn, &events).await.unwrap();
    txn.commit().await.unwrap();

    let feed = EventFeed::new(db.clone());
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let batch = feed.read(after, &[], 256).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.sequence;
        read.extend(batch);
    }
    let read_names: Vec<&str> = read.iter().map(|e| e.resource_name.as_str()).collect();
    assert_eq!(read_names, names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(read.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(read[5].payload.as_ref().map(|p| p.value.clone()), Some(b"things/0005".to_vec()));
    assert!(read.iter().all(|e| e.tenant == "t1" && e.actor == "tester"));
}
