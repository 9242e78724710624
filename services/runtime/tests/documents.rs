//! The whole-message record table on both backends: idempotent creates, tenant scoping, bulk
//! inserts split under the statement budget, filtered keyset listing, etags and unique keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use sea_orm::TransactionTrait;
use sea_orm_migration::prelude::*;

use itsm_proto::common::Money;
use itsm_runtime::documents::{Column, Columns, Document, Documents, Kind, Listing};
use itsm_runtime::paging::PageTokens;
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};
use itsm_runtime::{CallContext, Error};

struct WithDocuments;

#[async_trait::async_trait]
impl MigratorTrait for WithDocuments {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = itsm_runtime::schema::migrations();
        migrations.push(Box::new(itsm_runtime::documents::CreateDocuments));
        migrations
    }
}

const PRICES: Kind = Kind {
    prefix: "prices/",
    create_method: "CreatePrice",
    filters: &[("product", Column::Subject), ("period", Column::Period)],
};

fn ctx(tenant: &str) -> CallContext {
    CallContext { tenant: tenant.into(), principal: "pat".into(), roles: Vec::new() }
}

fn price(units: i64) -> Money {
    Money { currency_code: "EUR".into(), units, nanos: 0 }
}

fn columns(product: &str, period: &str) -> Columns {
    Columns { subject: product.into(), period: period.into(), ..Columns::default() }
}

async fn records_are_created_listed_updated_and_scoped(backend: TestBackend) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = itsm_runtime::db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<WithDocuments>(&db).await.unwrap();
    let documents = Documents { db: db.clone() };
    let (acme, globex) = (ctx("acme"), ctx("globex"));

    // A retried create returns the first record; another tenant cannot see it.
    let request_id = uuid::Uuid::new_v4().to_string();
    let first = documents
        .create(&PRICES, &acme, &request_id, "h", columns("tea", "2026-10"), &price(3))
        .await
        .unwrap();
    let again = documents
        .create(&PRICES, &acme, &request_id, "h", columns("tea", "2026-10"), &price(3))
        .await
        .unwrap();
    assert_eq!(first.name, again.name);
    assert!(first.name.starts_with("prices/"));
    let read: Document<Money> = documents.get(&PRICES, &acme, &first.name, "name").await.unwrap();
    assert_eq!(read.body, price(3));
    let hidden = documents.get::<Money>(&PRICES, &globex, &first.name, "name").await.unwrap_err();
    assert!(matches!(hidden, Error::NotFound(_)), "{hidden:?}");
    assert!(matches!(
        documents.get::<Money>(&PRICES, &acme, "prices/not-a-uuid", "name").await.unwrap_err(),
        Error::InvalidArgument(_)
    ));

    // 1,500 records with 2 KiB bodies: many statements, each under the budget, one transaction.
    let big = Money { currency_code: "x".repeat(2048), units: 1, nanos: 0 };
    let txn = db.begin().await.unwrap();
    let ids = Documents::insert_many(
        &txn,
        &PRICES,
        &acme,
        (0..1500)
            .map(|i| (columns(if i % 3 == 0 { "coffee" } else { "cake" }, "2026-11"), big.clone()))
            .collect(),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(ids.len(), 1500);

    // Filtered keyset listing walks every coffee record once.
    let tokens = PageTokens::new("test-secret");
    let mut seen = std::collections::HashSet::new();
    let mut page_token = String::new();
    loop {
        let listing = Listing {
            page_size: 120,
            page_token: &page_token,
            filter: "product = \"coffee\" AND period = \"2026-11\"",
            order_by: "",
        };
        let (items, next) = documents.list::<Money>(&PRICES, &acme, &tokens, &listing).await.unwrap();
        for item in items {
            assert_eq!(item.columns.subject, "coffee");
            assert!(seen.insert(item.id));
        }
        if next.is_empty() {
            break;
        }
        page_token = next;
    }
    assert_eq!(seen.len(), 500);
    let bad = Listing { page_size: 10, page_token: "", filter: "colour = \"red\"", order_by: "" };
    assert!(matches!(
        documents.list::<Money>(&PRICES, &acme, &tokens, &bad).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
    let (none, _) = documents
        .list::<Money>(
            &PRICES,
            &globex,
            &tokens,
            &Listing { page_size: 10, page_token: "", filter: "", order_by: "" },
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "another tenant's list is empty");

    // Updates check the etag; a stale one is ABORTED and changes nothing.
    let updated = documents
        .update(&PRICES, &acme, &first.id, &first.etag(), |current: &Document<Money>| {
            Ok((current.columns.clone(), price(4)))
        })
        .await
        .unwrap();
    assert_eq!((updated.body.units, updated.version), (4, 2));
    let stale = documents
        .update(&PRICES, &acme, &first.id, &first.etag(), |current: &Document<Money>| {
            Ok((current.columns.clone(), price(5)))
        })
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Aborted(_)), "{stale:?}");
    let read: Document<Money> = documents.get(&PRICES, &acme, &first.name, "name").await.unwrap();
    assert_eq!(read.body.units, 4);

    // A unique key holds once per tenant and kind.
    let unique = |key: &str| Columns { unique_key: Some(key.into()), ..columns("tea", "2026-12") };
    documents.create(&PRICES, &acme, "", "", unique("tea-dec"), &price(1)).await.unwrap();
    let duplicate = documents.create(&PRICES, &acme, "", "", unique("tea-dec"), &price(2)).await.unwrap_err();
    assert!(matches!(duplicate, Error::AlreadyExists(_)), "{duplicate:?}");
    documents.create(&PRICES, &globex, "", "", unique("tea-dec"), &price(2)).await.unwrap();

    // A tenant's one settings record: created on first save, replaced after, etag checked.
    assert!(Documents::singleton::<Money>(&db, &PRICES, "acme", "settings").await.unwrap().is_none());
    let saved = documents.save_singleton(&PRICES, &acme, "settings", "", price(7)).await.unwrap();
    let again = documents.save_singleton(&PRICES, &acme, "settings", &saved.etag(), price(8)).await.unwrap();
    assert_eq!((again.id.as_str(), again.body.units), (saved.id.as_str(), 8));
    let stale =
        documents.save_singleton(&PRICES, &acme, "settings", &saved.etag(), price(9)).await.unwrap_err();
    assert!(matches!(stale, Error::Aborted(_)), "{stale:?}");
    let settings = Documents::singleton::<Money>(&db, &PRICES, "acme", "settings").await.unwrap().unwrap();
    assert_eq!(settings.body.units, 8);
    assert!(Documents::singleton::<Money>(&db, &PRICES, "globex", "settings").await.unwrap().is_none());

    // Deleting checks the etag too.
    assert!(matches!(
        documents.delete(&PRICES, &acme, &first.id, &first.etag()).await.unwrap_err(),
        Error::Aborted(_)
    ));
    documents.delete(&PRICES, &acme, &first.id, &read.etag()).await.unwrap();
    assert!(matches!(
        documents.get::<Money>(&PRICES, &acme, &first.name, "name").await.unwrap_err(),
        Error::NotFound(_)
    ));
}

itsm_runtime::db_tests!(records_are_created_listed_updated_and_scoped);

/// Writes without an etag (a stream of samples, a consumer) to one record at the same time
/// all succeed and none is lost: the read-modify-write holds the row. Writes with the same
/// etag: exactly one wins, the others get ABORTED.
async fn concurrent_writes_to_one_record_lose_nothing(backend: TestBackend) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = itsm_runtime::db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<WithDocuments>(&db).await.unwrap();
    let documents = Documents { db: db.clone() };
    let acme = ctx("acme");
    let first =
        documents.create(&PRICES, &acme, "", "h", columns("tea", "2026-10"), &price(0)).await.unwrap();

    let increments: Vec<_> = (0..16)
        .map(|_| {
            let (documents, acme, id) = (documents.clone(), acme.clone(), first.id.clone());
            tokio::spawn(async move {
                let txn = documents.db.begin().await?;
                Documents::update_in(&txn, &PRICES, &acme, &id, "", |current: &Document<Money>| {
                    Ok((current.columns.clone(), price(current.body.units + 1)))
                })
                .await?;
                // Hold the transaction a moment so the writers overlap.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                txn.commit().await.map_err(Error::from)
            })
        })
        .collect();
    for increment in increments {
        increment.await.unwrap().unwrap();
    }
    let read: Document<Money> = documents.get(&PRICES, &acme, &first.name, "name").await.unwrap();
    assert_eq!(read.body.units, 16, "every increment without an etag is kept");

    let etag = read.etag();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (documents, acme, id, etag) =
                (documents.clone(), acme.clone(), first.id.clone(), etag.clone());
            tokio::spawn(async move {
                documents
                    .update(&PRICES, &acme, &id, &etag, |current: &Document<Money>| {
                        Ok((current.columns.clone(), price(100 + i)))
                    })
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Aborted(_)) => {}
            Err(other) => panic!("a losing writer gets ABORTED, not {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins per etag");
}

itsm_runtime::db_tests!(concurrent_writes_to_one_record_lose_nothing);
