//! Known errors: documented root causes with workarounds, searchable by text and CI.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait,
};

use itsm_runtime::db::now_micros;
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset;
use itsm_runtime::numbers;
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::{CallContext, Error};

use super::{KNOWN_ERROR, Page, Repository, write_links};
use crate::convert::{
    KNOWN_ERROR_NUMBER, KNOWN_ERROR_PREFIX, PROBLEM_PREFIX, known_error_to_proto, list_from, list_to,
};
use crate::domain::problem::KNOWN_ERROR_STATUSES;
use crate::entity::known_error;
use itsm_runtime::history::{self, NewEntry, change_time, check_etag, diff};
use itsm_runtime::search::{delete_document, matching, write_document};
use itsm_runtime::sql_filter::{self as filters, Field};

pub const CREATE_METHOD: &str = "CreateKnownError";
pub const ORDER_FIELDS: &[&str] = &["number", "create_time", "update_time"];

pub fn known_error_name(number: &str) -> String {
    format!("{KNOWN_ERROR_PREFIX}{number}")
}

/// What a caller gives to create a known error.
#[derive(Debug, Clone, Default)]
pub struct NewKnownError {
    pub problem: String,
    pub short_description: String,
    pub symptoms: String,
    pub workaround: String,
    pub configuration_items: Vec<String>,
    pub status: i32,
}

fn search_body(m: &known_error::Model) -> String {
    format!("{}\n{}\n{}", m.short_description, m.symptoms, m.workaround)
}

impl Repository {
    pub async fn find_known_error(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<known_error::Model>, Error> {
        Ok(known_error::Entity::find()
            .filter(known_error::Column::TenantId.eq(tenant))
            .filter(known_error::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    pub async fn get_known_error(
        &self,
        ctx: &CallContext,
        number: &str,
    ) -> Result<known_error::Model, Error> {
        Self::find_known_error(&self.db, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(known_error_name(number)))
    }

    pub async fn create_known_error(
        &self,
        ctx: &CallContext,
        new: NewKnownError,
        request_id: &str,
        request_hash: &str,
    ) -> Result<known_error::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let number = name.trim_start_matches(KNOWN_ERROR_PREFIX).to_string();
                    let found = Self::find_known_error(&txn, &ctx.tenant, &number).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let source = if new.problem.is_empty() {
                None
            } else {
                let number = new.problem.trim_start_matches(PROBLEM_PREFIX);
                Some(Self::find_problem(&txn, &ctx.tenant, number).await?.ok_or_else(|| {
                    Error::invalid("known_error.problem", format!("{} does not exist", new.problem))
                })?)
            };
            let now = now_micros();
            let model = known_error::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: ctx.tenant.clone(),
                number: numbers::next(&txn, &ctx.tenant, KNOWN_ERROR_NUMBER).await?,
                problem: new.problem,
                short_description: new.short_description,
                symptoms: new.symptoms,
                workaround: new.workaround,
                configuration_items: list_to(&new.configuration_items),
                status: if new.status == 0 { 1 } else { new.status },
                version: 1,
                create_time: now,
                update_time: now,
                creator: ctx.principal.clone(),
                updater: ctx.principal.clone(),
            };
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            write_links(
                &txn,
                "known_error_cis",
                "known_error_id",
                &model.id,
                &ctx.tenant,
                &new.configuration_items,
                None,
            )
            .await?;
            write_document(&txn, KNOWN_ERROR, &model.id, &ctx.tenant, &search_body(&model)).await?;
            let changes = diff(None, Some(&model));
            history::record(
                &txn,
                ctx,
                NewEntry {
                    kind: KNOWN_ERROR,
                    record_id: &model.id,
                    version: 1,
                    change_time: now,
                    action: "create",
                    changes: &changes,
                    reason: "",
                },
            )
            .await?;
            let name = known_error_name(&model.number);
            outbox::append(
                &txn,
                NewEvent::of(&known_error_to_proto(&model), &name, &ctx.tenant, &ctx.principal),
            )
            .await?;
            // The problem it came from points back at it.
            if let Some(problem) = source
                && problem.known_error.is_empty()
            {
                let mut after = problem.clone();
                after.known_error.clone_from(&name);
                self.store_problem(&txn, ctx, &problem, after, "update", "known error recorded").await?;
            }
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &name).await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    pub async fn change_known_error(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        change: impl FnOnce(&mut known_error::Model) -> Result<(), Error>,
    ) -> Result<known_error::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_known_error(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(known_error_name(number)))?;
        check_etag(expected_etag, current.version, &known_error_name(number))?;
        let mut after = current.clone();
        change(&mut after)?;
        let changes = diff(Some(&current), Some(&after));
        if changes.is_empty() {
            txn.commit().await?;
            return Ok(current);
        }
        let now = change_time(current.update_time);
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = known_error::Entity::update_many()
            .set(active)
            .filter(known_error::Column::Id.eq(current.id.as_str()))
            .filter(known_error::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                known_error_name(number)
            )));
        }
        if after.configuration_items != current.configuration_items {
            let cis = list_from(&after.configuration_items);
            write_links(&txn, "known_error_cis", "known_error_id", &after.id, &ctx.tenant, &cis, None)
                .await?;
        }
        write_document(&txn, KNOWN_ERROR, &after.id, &ctx.tenant, &search_body(&after)).await?;
        history::record(
            &txn,
            ctx,
            NewEntry {
                kind: KNOWN_ERROR,
                record_id: &after.id,
                version: after.version,
                change_time: now,
                action: "update",
                changes: &changes,
                reason: "",
            },
        )
        .await?;
        let name = known_error_name(number);
        outbox::append(&txn, NewEvent::of(&known_error_to_proto(&after), &name, &ctx.tenant, &ctx.principal))
            .await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(after)
    }

    pub async fn delete_known_error(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_known_error(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(known_error_name(number)))?;
        check_etag(expected_etag, current.version, &known_error_name(number))?;
        known_error::Entity::delete_many()
            .filter(known_error::Column::Id.eq(current.id.as_str()))
            .exec(&txn)
            .await?;
        write_links(&txn, "known_error_cis", "known_error_id", &current.id, &ctx.tenant, &[], None).await?;
        delete_document(&txn, KNOWN_ERROR, &current.id).await?;
        let now = change_time(current.update_time);
        let changes = diff(Some(&current), None);
        history::record(
            &txn,
            ctx,
            NewEntry {
                kind: KNOWN_ERROR,
                record_id: &current.id,
                version: current.version + 1,
                change_time: now,
                action: "delete",
                changes: &changes,
                reason: "",
            },
        )
        .await?;
        let name = known_error_name(number);
        outbox::append(
            &txn,
            NewEvent::of(&known_error_to_proto(&current), &name, &ctx.tenant, &ctx.principal),
        )
        .await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    pub async fn list_known_errors(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        words: &[String],
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<known_error::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => known_error::Column::Number,
            "update_time" => known_error::Column::UpdateTime,
            _ => known_error::Column::CreateTime,
        };
        let mut query =
            known_error::Entity::find().filter(known_error::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(
                filter,
                &ctx.tenant,
                &known_error_field,
                KNOWN_ERROR_FILTER_FIELDS,
            )?);
        }
        if !words.is_empty() {
            let id = r#""known_errors"."id""#;
            query =
                query.filter(matching(self.db.get_database_backend(), id, KNOWN_ERROR, &ctx.tenant, words));
        }
        keyset::page(&self.db, query, column, known_error::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }
}

pub const KNOWN_ERROR_FILTER_FIELDS: &[&str] =
    &["status", "problem", "configuration_items", "create_time", "update_time"];

fn known_error_field(member: &str) -> Option<Field> {
    use known_error::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((known_error::Entity, c)) };
    Some(match member {
        "status" => Field::Enum {
            column: col(C::Status),
            values: KNOWN_ERROR_STATUSES,
            prefix: "KNOWN_ERROR_STATUS_",
        },
        "problem" => Field::Text(col(C::Problem)),
        "create_time" => Field::Time(col(C::CreateTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        "configuration_items" => {
            Field::Member { id: col(C::Id), table: "known_error_cis", owner: "known_error_id", column: "ci" }
        }
        _ => return None,
    })
}
