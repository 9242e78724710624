//! Knowledge articles: revisions of their content, full-text search, links to the tickets they
//! answered.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::history::{self, NewEntry, change_time, check_etag, diff};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::search::{matching, matching_any, write_document};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::{CallContext, Error, keyset, numbers};

use super::{Page, Repository};
use crate::convert::{list_from, list_to};
use crate::domain::knowledge::{self, PUBLISHED};
use crate::entity::article;

pub const ARTICLE: &str = "article";
pub const ARTICLE_PREFIX: &str = "articles/";
pub const ARTICLE_NUMBER: &str = "KB";
const CREATE_METHOD: &str = "CreateArticle";
const ID_COLUMN: &str = r#""articles"."id""#;

pub fn article_name(number: &str) -> String {
    format!("{ARTICLE_PREFIX}{number}")
}

/// One stored revision: (revision, title, body, keywords, author, time).
pub type Revision = (i32, String, String, Vec<String>, String, i64);

fn search_body(m: &article::Model) -> String {
    format!("{}\n{}\n{}", m.title, list_from(&m.keywords).join(" "), m.body)
}

async fn write_revision(
    txn: &impl ConnectionTrait,
    m: &article::Model,
    author: &str,
    at: i64,
) -> Result<(), Error> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO article_revisions (article_id, revision, title, body, keywords, author, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            m.id.as_str().into(),
            m.revision.into(),
            m.title.as_str().into(),
            m.body.as_str().into(),
            m.keywords.as_str().into(),
            author.into(),
            at.into(),
        ],
    ))
    .await?;
    Ok(())
}

impl Repository {
    pub async fn find_article(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<article::Model>, Error> {
        Ok(article::Entity::find()
            .filter(article::Column::TenantId.eq(tenant))
            .filter(article::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    pub async fn get_article(&self, ctx: &CallContext, number: &str) -> Result<article::Model, Error> {
        Self::find_article(&self.db, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(article_name(number)))
    }

    pub async fn create_article(
        &self,
        ctx: &CallContext,
        mut model: article::Model,
        request_id: &str,
        request_hash: &str,
    ) -> Result<article::Model, Error> {
        let txn = self.db.begin().await?;
        match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
            Claim::Fresh => {}
            Claim::Done(name) => {
                let found =
                    Self::find_article(&txn, &ctx.tenant, name.trim_start_matches(ARTICLE_PREFIX)).await?;
                txn.commit().await?;
                return found.ok_or(Error::NotFound(name));
            }
            Claim::LostRace => {
                return Err(Error::Aborted("a create with the same request_id is running; retry".into()));
            }
        }
        let now = now_micros();
        model.id = uuid::Uuid::now_v7().to_string();
        model.tenant_id.clone_from(&ctx.tenant);
        model.number = numbers::next(&txn, &ctx.tenant, ARTICLE_NUMBER).await?;
        model.state = knowledge::DRAFT;
        model.revision = 1;
        model.version = 1;
        model.create_time = now;
        model.update_time = now;
        model.creator.clone_from(&ctx.principal);
        model.updater.clone_from(&ctx.principal);
        model.clone().into_active_model().reset_all().insert(&txn).await?;
        write_revision(&txn, &model, &ctx.principal, now).await?;
        write_document(&txn, ARTICLE, &model.id, &ctx.tenant, &search_body(&model)).await?;
        let changes = diff(None, Some(&model));
        let entry = NewEntry {
            kind: ARTICLE,
            record_id: &model.id,
            version: 1,
            change_time: now,
            action: "create",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &article_name(&model.number))
            .await?;
        txn.commit().await?;
        Ok(model)
    }

    /// Applies `edit`; a change of title, body or keywords is a new revision.
    pub async fn change_article(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        edit: impl FnOnce(&mut article::Model) -> Result<(), Error>,
    ) -> Result<article::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_article(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(article_name(number)))?;
        check_etag(expected_etag, current.version, &article_name(number))?;
        let mut after = current.clone();
        edit(&mut after)?;
        let content_changed =
            after.title != current.title || after.body != current.body || after.keywords != current.keywords;
        if content_changed {
            after.revision = current.revision + 1;
        }
        let changes = diff(Some(&current), Some(&after));
        if changes.is_empty() {
            txn.commit().await?;
            return Ok(current);
        }
        let now = change_time(current.update_time);
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let result = article::Entity::update_many()
            .set(after.clone().into_active_model().reset_all())
            .filter(article::Column::Id.eq(current.id.as_str()))
            .filter(article::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                article_name(number)
            )));
        }
        if content_changed {
            write_revision(&txn, &after, &ctx.principal, now).await?;
            write_document(&txn, ARTICLE, &after.id, &ctx.tenant, &search_body(&after)).await?;
        }
        let entry = NewEntry {
            kind: ARTICLE,
            record_id: &after.id,
            version: after.version,
            change_time: now,
            action: "update",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        txn.commit().await?;
        Ok(after)
    }

    pub async fn list_articles(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        words: &[String],
        published_only: bool,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<article::Model>, Error> {
        let mut query = article::Entity::find().filter(article::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query =
                query.filter(filters::condition(filter, &ctx.tenant, &article_field, ARTICLE_FILTER_FIELDS)?);
        }
        if published_only {
            query = query.filter(article::Column::State.eq(PUBLISHED));
        }
        if !words.is_empty() {
            query = query.filter(matching(
                self.db.get_database_backend(),
                ID_COLUMN,
                ARTICLE,
                &ctx.tenant,
                words,
            ));
        }
        keyset::page(
            &self.db,
            query,
            article::Column::UpdateTime,
            article::Column::Id,
            true,
            after,
            limit,
            |m| (serde_json::json!(m.update_time), m.id.clone()),
        )
        .await
    }

    pub async fn revisions(&self, ctx: &CallContext, number: &str) -> Result<Vec<Revision>, Error> {
        let found = self.get_article(ctx, number).await?;
        let rows = self
            .db
            .query_all_raw(stmt(
                self.db.get_database_backend(),
                "SELECT revision, title, body, keywords, author, create_time FROM article_revisions \
                 WHERE article_id = $1 ORDER BY revision",
                [found.id.as_str().into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("", "revision")?,
                    r.try_get("", "title")?,
                    r.try_get("", "body")?,
                    list_from(&r.try_get::<String>("", "keywords")?),
                    r.try_get("", "author")?,
                    r.try_get("", "create_time")?,
                ))
            })
            .collect()
    }

    /// Links a published article to a ticket; `solved` counts once per ticket.
    pub async fn link_article(
        &self,
        ctx: &CallContext,
        number: &str,
        ticket: &str,
        solved: bool,
    ) -> Result<article::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_article(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(article_name(number)))?;
        if current.state != PUBLISHED {
            return Err(Error::FailedPrecondition(format!(
                "{} is {}; only published articles are linked to tickets",
                article_name(number),
                knowledge::name(current.state)
            )));
        }
        let backend = txn.get_database_backend();
        let existing = txn
            .query_one_raw(stmt(
                backend,
                "SELECT solved FROM article_links WHERE article_id = $1 AND ticket = $2",
                [current.id.as_str().into(), ticket.into()],
            ))
            .await?;
        let mut after = current.clone();
        match existing {
            None => {
                txn.execute_raw(stmt(
                    backend,
                    "INSERT INTO article_links (article_id, ticket, tenant_id, solved, create_time) VALUES ($1, $2, $3, $4, $5)",
                    [current.id.as_str().into(), ticket.into(), ctx.tenant.as_str().into(), solved.into(), now_micros().into()],
                ))
                .await?;
                after.link_count += 1;
                if solved {
                    after.solved_count += 1;
                }
            }
            Some(row) => {
                let was: bool = row.try_get("", "solved")?;
                if solved && !was {
                    txn.execute_raw(stmt(
                        backend,
                        "UPDATE article_links SET solved = $1 WHERE article_id = $2 AND ticket = $3",
                        [true.into(), current.id.as_str().into(), ticket.into()],
                    ))
                    .await?;
                    after.solved_count += 1;
                }
            }
        }
        if after != current {
            after.version = current.version + 1;
            after.update_time = change_time(current.update_time);
            article::Entity::update_many()
                .set(after.clone().into_active_model().reset_all())
                .filter(article::Column::Id.eq(current.id.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(after)
    }

    /// Published articles matching any of the words, most often solving first.
    pub async fn suggest_articles(
        &self,
        ctx: &CallContext,
        words: &[String],
        limit: u64,
    ) -> Result<Vec<article::Model>, Error> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        Ok(article::Entity::find()
            .filter(article::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(article::Column::State.eq(PUBLISHED))
            .filter(matching_any(self.db.get_database_backend(), ID_COLUMN, ARTICLE, &ctx.tenant, words))
            .order_by(article::Column::SolvedCount, Order::Desc)
            .order_by(article::Column::UpdateTime, Order::Desc)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}

pub const ARTICLE_FILTER_FIELDS: &[&str] = &["state", "category", "update_time"];
const STATES: &[(i32, &str)] = &[(1, "DRAFT"), (2, "REVIEW"), (3, "PUBLISHED"), (4, "RETIRED")];

fn article_field(member: &str) -> Option<Field> {
    use article::Column as C;
    let col = |c: C| Expr::col((article::Entity, c));
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "ARTICLE_STATE_" },
        "category" => Field::Text(col(C::Category)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        _ => return None,
    })
}

/// Keywords as stored.
pub fn keywords_to(list: &[String]) -> String {
    list_to(list)
}
