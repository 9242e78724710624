//! VCS changesets: recorded once per repository and revision, linked to the changes their
//! message names (and to changes linked explicitly), and reported when no authorised change
//! covers them. Coverage is computed when read, so it follows the changes' states.

use std::collections::{BTreeSet, HashMap};

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait, Value,
};

use itsm_proto::change::{Changeset, ChangesetRecorded};
use itsm_proto::common::AuditInfo;
use itsm_runtime::db::{micros, now_micros, placeholders, stmt, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::keyset::{self, Page};
use itsm_runtime::numbers::{DIGITS, is_number};
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error};

use crate::convert::{CHANGE_NUMBER, CHANGE_PREFIX, change_name};
use crate::domain::changeset::{change_numbers, coverage};
use crate::domain::lifecycle::ChangeState;
use crate::entity::changeset;
use crate::repo::{Repository, list_from, list_to};

pub const PREFIX: &str = "changesets/";
const MAX_FILES: usize = 10_000;
const MAX_MESSAGE: usize = 64 * 1024;
const MAX_LINKS: usize = 100;

pub const FILTER_FIELDS: &[&str] =
    &["repository", "revision", "author", "committer", "branch", "commit_time", "changes"];

fn field(member: &str) -> Option<Field> {
    use changeset::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((changeset::Entity, c)) };
    Some(match member {
        "repository" => Field::Text(col(C::Repository)),
        "revision" => Field::Text(col(C::Revision)),
        "author" => Field::Text(col(C::Author)),
        "committer" => Field::Text(col(C::Committer)),
        "branch" => Field::Text(col(C::Branch)),
        "commit_time" => Field::Time(col(C::CommitTime)),
        "changes" => Field::Member {
            id: col(C::Id),
            table: "changeset_changes",
            owner: "changeset_id",
            column: "change_name",
        },
        _ => return None,
    })
}

/// A link to a change as stored: its name and number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    name: String,
    number: String,
}

fn parse_link(change: &str) -> Option<Link> {
    change
        .strip_prefix(CHANGE_PREFIX)
        .filter(|n| is_number(n, CHANGE_NUMBER))
        .map(|number| Link { name: change.to_string(), number: number.to_string() })
}

fn link_of(change: &str, field: &str) -> Result<Link, Error> {
    parse_link(change).ok_or_else(|| Error::invalid(field, "must be `changes/CHG0000123`"))
}

/// The id in `changesets/{id}`.
pub fn changeset_id(name: &str, field: &str) -> Result<String, Error> {
    name.strip_prefix(PREFIX)
        .filter(|id| !id.is_empty() && id.len() <= 64 && !id.contains('/'))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `changesets/{id}`"))
}

/// Checks a changeset to record; returns the stored form and its explicit links.
pub fn validate_record(
    c: Option<&Changeset>,
    changes: &[String],
) -> Result<(changeset::Model, Vec<Link>), Error> {
    let Some(c) = c else { return Err(Error::invalid("changeset", "is required")) };
    let mut v = Violations::new();
    validate::text(&mut v, "changeset.repository", &c.repository, 500, true);
    validate::text(&mut v, "changeset.revision", &c.revision, 200, true);
    if c.revision.chars().any(char::is_whitespace) {
        v.add("changeset.revision", "must not contain spaces");
    }
    validate::text(&mut v, "changeset.author", &c.author, 300, true);
    validate::text(&mut v, "changeset.committer", &c.committer, 300, false);
    validate::text(&mut v, "changeset.branch", &c.branch, 300, false);
    if c.message.len() > MAX_MESSAGE {
        v.add("changeset.message", format!("at most {MAX_MESSAGE} bytes"));
    }
    if c.commit_time.is_none() {
        v.add("changeset.commit_time", "is required");
    }
    if c.files.len() > MAX_FILES {
        v.add("changeset.files", format!("at most {MAX_FILES} files"));
    }
    for (i, file) in c.files.iter().enumerate() {
        validate::text(&mut v, &format!("changeset.files[{i}]"), file, 1000, true);
    }
    if changes.len() > MAX_LINKS {
        v.add("changes", format!("at most {MAX_LINKS} changes"));
    }
    let mut links = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        match parse_link(change) {
            Some(link) => links.push(link),
            None => v.add(format!("changes[{i}]"), "must be `changes/CHG0000123`"),
        }
    }
    v.into_result()?;
    let model = changeset::Model {
        id: String::new(),
        tenant_id: String::new(),
        repository: c.repository.clone(),
        revision: c.revision.clone(),
        author: c.author.clone(),
        committer: if c.committer.is_empty() { c.author.clone() } else { c.committer.clone() },
        commit_time: c.commit_time.as_ref().map_or(0, micros),
        message: c.message.clone(),
        branch: c.branch.clone(),
        files: list_to(&c.files),
        create_time: 0,
        creator: String::new(),
    };
    Ok((model, links))
}

impl Repository {
    async fn find_changeset(
        db: &impl ConnectionTrait,
        tenant: &str,
        filter: impl FnOnce(sea_orm::Select<changeset::Entity>) -> sea_orm::Select<changeset::Entity>,
    ) -> Result<Option<changeset::Model>, Error> {
        let query = changeset::Entity::find().filter(changeset::Column::TenantId.eq(tenant));
        Ok(filter(query).one(db).await?)
    }

    /// Records a changeset (or returns the stored one for its repository and revision, adding
    /// the explicit links it lacks).
    pub async fn record_changeset(
        &self,
        ctx: &CallContext,
        mut model: changeset::Model,
        explicit: Vec<Link>,
    ) -> Result<Changeset, Error> {
        // Two attempts: a concurrent record of the same revision makes the insert fail on the
        // unique index, and the second attempt finds the stored one.
        for attempt in 0..2 {
            let txn = self.db.begin().await?;
            let existing = Self::find_changeset(&txn, &ctx.tenant, |q| {
                q.filter(changeset::Column::Repository.eq(model.repository.as_str()))
                    .filter(changeset::Column::Revision.eq(model.revision.as_str()))
            })
            .await?;
            let (stored, action, added) = match existing {
                Some(stored) => {
                    let added = add_links(&txn, &stored, &explicit, "explicit").await?;
                    (stored, "link", added)
                }
                None => {
                    model.id = uuid::Uuid::now_v7().to_string();
                    model.tenant_id.clone_from(&ctx.tenant);
                    model.create_time = now_micros();
                    model.creator.clone_from(&ctx.principal);
                    if let Err(err) = model.clone().into_active_model().reset_all().insert(&txn).await {
                        txn.rollback().await?;
                        if attempt == 0 {
                            continue;
                        }
                        return Err(err.into());
                    }
                    let from_message: Vec<Link> = change_numbers(&model.message, CHANGE_NUMBER, DIGITS)
                        .into_iter()
                        .map(|number| Link { name: change_name(&number), number })
                        .collect();
                    add_links(&txn, &model, &from_message, "message").await?;
                    add_links(&txn, &model, &explicit, "explicit").await?;
                    (model.clone(), "record", true)
                }
            };
            let proto = hydrate(&txn, &ctx.tenant, vec![stored]).await?.pop();
            let proto = proto.ok_or_else(|| Error::Internal("a changeset vanished while recorded".into()))?;
            if added {
                let payload =
                    ChangesetRecorded { action: action.to_string(), changeset: Some(proto.clone()) };
                outbox::append(&txn, NewEvent::of(&payload, &proto.name, &ctx.tenant, &ctx.principal))
                    .await?;
            }
            txn.commit().await?;
            if added {
                self.feed.notify_committed();
            }
            return Ok(proto);
        }
        Err(Error::Aborted("the changeset was recorded concurrently; retry".into()))
    }

    pub async fn get_changeset(&self, ctx: &CallContext, id: &str) -> Result<Changeset, Error> {
        let model = Self::find_changeset(&self.db, &ctx.tenant, |q| q.filter(changeset::Column::Id.eq(id)))
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        hydrate(&self.db, &ctx.tenant, vec![model])
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))
    }

    pub async fn link_changeset(
        &self,
        ctx: &CallContext,
        id: &str,
        change: &str,
    ) -> Result<Changeset, Error> {
        let link = link_of(change, "change")?;
        let txn = self.db.begin().await?;
        let model = Self::find_changeset(&txn, &ctx.tenant, |q| q.filter(changeset::Column::Id.eq(id)))
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        let added = add_links(&txn, &model, &[link], "explicit").await?;
        let proto = hydrate(&txn, &ctx.tenant, vec![model])
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        if added {
            let payload = ChangesetRecorded { action: "link".into(), changeset: Some(proto.clone()) };
            outbox::append(&txn, NewEvent::of(&payload, &proto.name, &ctx.tenant, &ctx.principal)).await?;
        }
        txn.commit().await?;
        if added {
            self.feed.notify_committed();
        }
        Ok(proto)
    }

    /// Changesets, newest commit first.
    pub async fn list_changesets(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        unauthorized: Option<(&str, i64, i64)>,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<(Vec<Changeset>, Option<Vec<serde_json::Value>>), Error> {
        let mut query = changeset::Entity::find().filter(changeset::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &field, FILTER_FIELDS)?);
        }
        if let Some((repository, start, end)) = unauthorized {
            if !repository.is_empty() {
                query = query.filter(changeset::Column::Repository.eq(repository));
            }
            if start > 0 {
                query = query.filter(changeset::Column::CommitTime.gte(start));
            }
            if end > 0 {
                query = query.filter(changeset::Column::CommitTime.lt(end));
            }
            // No link to a change that was authorised (the states `coverage` accepts).
            query = query.filter(Expr::cust(
                "NOT EXISTS (SELECT 1 FROM changeset_changes l JOIN changes c \
                 ON c.tenant_id = l.tenant_id AND c.number = l.change_number \
                 WHERE l.changeset_id = changesets.id AND c.state IN (4, 5, 6, 7, 9))",
            ));
        }
        let page: Page<changeset::Model> = keyset::page(
            &self.db,
            query,
            changeset::Column::CommitTime,
            changeset::Column::Id,
            true,
            after,
            limit,
            |m| (serde_json::json!(m.commit_time), m.id.clone()),
        )
        .await?;
        Ok((hydrate(&self.db, &ctx.tenant, page.items).await?, page.next_key))
    }
}

/// Adds the links the changeset lacks; true when any was added.
async fn add_links(
    txn: &impl ConnectionTrait,
    model: &changeset::Model,
    links: &[Link],
    source: &str,
) -> Result<bool, Error> {
    let backend = txn.get_database_backend();
    let mut added = false;
    for link in links {
        let exists = txn
            .query_one_raw(stmt(
                backend,
                "SELECT 1 AS one FROM changeset_changes WHERE changeset_id = $1 AND change_number = $2",
                [model.id.as_str().into(), link.number.as_str().into()],
            ))
            .await?
            .is_some();
        if exists {
            continue;
        }
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO changeset_changes (changeset_id, tenant_id, change_name, change_number, source) \
             VALUES ($1, $2, $3, $4, $5)",
            [
                model.id.as_str().into(),
                model.tenant_id.as_str().into(),
                link.name.as_str().into(),
                link.number.as_str().into(),
                source.into(),
            ],
        ))
        .await?;
        added = true;
    }
    Ok(added)
}

/// The changesets as messages, with their links resolved against the changes as they are now.
async fn hydrate(
    db: &impl ConnectionTrait,
    tenant: &str,
    models: Vec<changeset::Model>,
) -> Result<Vec<Changeset>, Error> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
    let mut values: Vec<Value> = Vec::new();
    let list = placeholders(&mut values, &ids);
    let rows = db
        .query_all_raw(stmt(
            backend,
            &format!(
                "SELECT changeset_id, change_number FROM changeset_changes WHERE changeset_id IN ({list})"
            ),
            values,
        ))
        .await?;
    let mut links: HashMap<String, BTreeSet<String>> = HashMap::new();
    for row in rows {
        links.entry(row.try_get("", "changeset_id")?).or_default().insert(row.try_get("", "change_number")?);
    }
    let numbers: Vec<String> =
        links.values().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let mut states: HashMap<String, ChangeState> = HashMap::new();
    if !numbers.is_empty() {
        let mut values: Vec<Value> = vec![tenant.into()];
        let list = placeholders(&mut values, &numbers);
        let rows = db
            .query_all_raw(stmt(
                backend,
                &format!("SELECT number, state FROM changes WHERE tenant_id = $1 AND number IN ({list})"),
                values,
            ))
            .await?;
        for row in rows {
            let number: String = row.try_get("", "number")?;
            if let Some(state) = ChangeState::from_i32(row.try_get("", "state")?) {
                states.insert(number, state);
            }
        }
    }
    Ok(models
        .into_iter()
        .map(|m| {
            let mine = links.remove(&m.id).unwrap_or_default();
            let linked: Vec<(String, ChangeState)> =
                mine.iter().filter_map(|n| states.get(n).map(|s| (n.clone(), *s))).collect();
            let unknown: Vec<String> = mine.iter().filter(|n| !states.contains_key(*n)).cloned().collect();
            let (authorization, reason) = coverage(&linked, &unknown);
            Changeset {
                name: format!("{PREFIX}{}", m.id),
                repository: m.repository,
                revision: m.revision,
                author: m.author,
                committer: m.committer,
                commit_time: Some(timestamp(m.commit_time)),
                message: m.message,
                branch: m.branch,
                files: list_from(&m.files),
                changes: linked.iter().map(|(n, _)| change_name(n)).collect(),
                unknown_changes: unknown.iter().map(|n| change_name(n)).collect(),
                authorization: authorization as i32,
                authorization_reason: reason,
                audit: Some(AuditInfo {
                    create_time: Some(timestamp(m.create_time)),
                    update_time: Some(timestamp(m.create_time)),
                    creator: m.creator.clone(),
                    updater: m.creator,
                }),
            }
        })
        .collect())
}
