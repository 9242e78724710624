//! Bulk import: rows upserted by natural key, each in its own transaction, so a rejected row
//! never half-applies; a dry run does the same work and rolls every row back.

use std::collections::{HashMap, HashSet, VecDeque};

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use itsm_proto::cmdb::{
    CiReference, ImportOutcome, ImportRelationship, ImportRow, ImportRowResult, import_row,
};
use itsm_runtime::structs::struct_to_json;
use itsm_runtime::{CallContext, Error};

use super::relationships::{NewRelationship, Related};
use super::{Repository, WriteSource};
use crate::convert::more::RELATIONSHIP_PREFIX;
use crate::convert::{fields_from_proto, resource_name};
use crate::domain::attributes;
use crate::domain::ci::CiFields;
use crate::domain::classes::ClassRegistry;
use crate::domain::relationships::{RelKind, check_properties};
use itsm_runtime::error::Violations;

/// State of one import call.
#[derive(Clone)]
pub struct ImportSession {
    pub registry: ClassRegistry,
    pub dry_run: bool,
    pub source: WriteSource,
    /// CIs a dry run would have created, by (class, natural key), so later relationship rows can
    /// refer to them.
    planned: HashMap<(String, String), String>,
}

impl ImportSession {
    pub fn new(registry: ClassRegistry, dry_run: bool, source: WriteSource) -> Self {
        Self { registry, dry_run, source, planned: HashMap::new() }
    }

    /// Converts and checks the batch's CI rows once, without the database.
    pub fn check(&self, rows: Vec<ImportRow>) -> Batch {
        let checked = rows
            .iter()
            .map(|row| match &row.kind {
                Some(import_row::Kind::ConfigurationItem(item)) => Some(self.check_item(item)),
                _ => None,
            })
            .collect();
        Batch { rows, checked }
    }

    fn check_item(&self, item: &itsm_proto::cmdb::ConfigurationItem) -> CheckedItem {
        let mut fields = fields_from_proto(item);
        // An unset status becomes PLANNED (new) or stays as stored (update): valid either way.
        if fields.lifecycle_status == 0 {
            fields.lifecycle_status = 1;
        }
        let mut violations = Violations::new();
        fields.validate(&self.registry, "configuration_item", &mut violations);
        let references = attributes::check(
            &self.registry,
            &fields.ci_class,
            &fields.attributes,
            "configuration_item.attributes",
            &mut violations,
        );
        let key = attributes::natural_key(
            &self.registry,
            &fields.ci_class,
            &fields.display_name,
            &fields.attributes,
        );
        CheckedItem {
            fields,
            key,
            rejection: violations.into_result().err().map(|e| e.to_string()),
            has_references: !references.is_empty(),
        }
    }

    /// The (class, natural key) of every row of a batch that reads nothing another batch of the
    /// call writes, so it may be applied beside the batch before it: only CI rows, none with a
    /// reference attribute (which looks up other CIs), not a dry run (whose plan is shared state).
    /// `None` when the batch must wait for the ones before it.
    fn independent_keys(&self, batch: &Batch) -> Option<HashSet<(String, String)>> {
        if self.dry_run {
            return None;
        }
        let mut keys = HashSet::with_capacity(batch.checked.len());
        for checked in &batch.checked {
            let item = checked.as_ref().filter(|item| !item.has_references)?;
            keys.insert((item.fields.ci_class.clone(), item.key.clone()));
        }
        Some(keys)
    }
}

/// One batch of an import call: its rows and, for each CI row, what [`ImportSession::check`]
/// found (`None` for relationship rows, and once the set-based write has taken the fields).
pub struct Batch {
    rows: Vec<ImportRow>,
    checked: Vec<Option<CheckedItem>>,
}

/// A CI row converted and checked once, without the database: the pipeline's independence
/// test and the set-based write both read it.
struct CheckedItem {
    /// The row's fields, an unset status read as PLANNED (what a create stores).
    fields: CiFields,
    key: String,
    /// Why the fields are rejected, if they are.
    rejection: Option<String>,
    /// The row names other CIs (reference attributes), which only the per-row path looks up.
    has_references: bool,
}

/// Applies an import call's batches in order, except that a batch which cannot depend on the
/// ones before it ([`ImportSession::independent_keys`], and no key in common with any batch
/// still in flight) is started beside them on another connection: the service prepares one
/// batch while the database writes others. At most [`IN_FLIGHT`] batches run at once, fewer
/// when the pool is small (one at a time on SQLite's single connection), so an import leaves
/// connections for other calls; results come back in row order. Dropping the pipeline (the
/// call failed or the client went away) aborts the batches still running: a batch that has not
/// committed rolls back, as a sequential import's unfinished batch did.
pub struct ImportPipeline {
    repo: Repository,
    ctx: CallContext,
    in_flight: VecDeque<InFlight>,
    depth: usize,
}

/// Batches of one import applied at the same time, at most.
pub const IN_FLIGHT: usize = 3;

struct InFlight {
    task: tokio::task::JoinHandle<Result<Vec<ImportRowResult>, Error>>,
    keys: HashSet<(String, String)>,
}

impl Drop for ImportPipeline {
    fn drop(&mut self) {
        for batch in &self.in_flight {
            batch.task.abort();
        }
    }
}

impl ImportPipeline {
    pub fn new(repo: Repository, ctx: CallContext) -> Self {
        // Two connections of the pool stay for other calls.
        let spare = (itsm_runtime::db::pool_max(&repo.db) as usize).saturating_sub(2);
        let depth = spare.clamp(1, IN_FLIGHT);
        Self { repo, ctx, in_flight: VecDeque::with_capacity(depth), depth }
    }

    /// Starts `rows`; returns the results of the batches that finished meanwhile, in row order.
    /// Batches that finished before a failure stay applied (each commits on its own, as a
    /// sequential import's earlier batches do).
    pub async fn push(
        &mut self,
        session: &mut ImportSession,
        rows: Vec<ImportRow>,
    ) -> Result<Vec<ImportRowResult>, Error> {
        use tracing::Instrument;

        let mut finished = Vec::new();
        let batch = session.check(rows);
        let Some(keys) = session.independent_keys(&batch) else {
            finished.extend(self.finish().await?);
            finished.extend(self.repo.import_batch(&self.ctx, session, batch).await?);
            return Ok(finished);
        };
        if self.in_flight.iter().any(|batch| !batch.keys.is_disjoint(&keys)) {
            finished.extend(self.finish().await?);
        }
        while self.in_flight.len() >= self.depth {
            finished.extend(self.finish_oldest().await?);
        }
        let (repo, ctx, mut batch_session) = (self.repo.clone(), self.ctx.clone(), session.clone());
        let task = tokio::spawn(
            async move { repo.import_batch(&ctx, &mut batch_session, batch).await }
                .instrument(tracing::Span::current()),
        );
        self.in_flight.push_back(InFlight { task, keys });
        Ok(finished)
    }

    /// Waits for every batch in flight and returns their results, in row order.
    pub async fn finish(&mut self) -> Result<Vec<ImportRowResult>, Error> {
        let mut finished = Vec::new();
        while !self.in_flight.is_empty() {
            finished.extend(self.finish_oldest().await?);
        }
        Ok(finished)
    }

    async fn finish_oldest(&mut self) -> Result<Vec<ImportRowResult>, Error> {
        match self.in_flight.pop_front() {
            None => Ok(Vec::new()),
            Some(batch) => {
                batch.task.await.map_err(|e| Error::Internal(format!("import batch did not finish: {e}")))?
            }
        }
    }
}

fn rejected(row_id: &str, reason: impl Into<String>) -> ImportRowResult {
    ImportRowResult {
        row_id: row_id.to_string(),
        outcome: ImportOutcome::Rejected as i32,
        resource: String::new(),
        reason: reason.into(),
    }
}

fn outcome(row_id: &str, outcome: ImportOutcome, resource: String) -> ImportRowResult {
    ImportRowResult { row_id: row_id.to_string(), outcome: outcome as i32, resource, reason: String::new() }
}

/// Errors that mean "this row is wrong" (reported per row) rather than "we cannot work now".
fn row_error(err: &Error) -> bool {
    !matches!(err, Error::Unavailable(_) | Error::Internal(_))
}

impl Repository {
    /// Applies a batch of rows in one transaction, each row inside its own savepoint: a rejected
    /// row is rolled back alone and never half-applies, while the batch pays for one commit.
    /// `Err` only for failures of the service itself (the call then fails and nothing of the
    /// batch is kept).
    pub async fn import_batch(
        &self,
        ctx: &CallContext,
        session: &mut ImportSession,
        mut batch: Batch,
    ) -> Result<Vec<ImportRowResult>, Error> {
        let txn = self.db.begin().await?;
        let mut results: Vec<Option<ImportRowResult>> = vec![None; batch.rows.len()];
        self.create_new_items(&txn, ctx, session, &mut batch, &mut results).await?;
        for (row, slot) in batch.rows.into_iter().zip(results.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let row_id = row.row_id.clone();
            let savepoint = txn.begin().await?;
            let result = match row.kind {
                Some(import_row::Kind::ConfigurationItem(item)) => {
                    self.import_item(&savepoint, ctx, session, &item).await
                }
                Some(import_row::Kind::Relationship(rel)) => {
                    self.import_relationship(&savepoint, ctx, session, &rel).await
                }
                None => Err(Error::invalid("row", "a row holds a configuration_item or a relationship")),
            };
            match result {
                Ok((kind, resource)) => {
                    savepoint.commit().await?;
                    *slot = Some(outcome(&row_id, kind, resource));
                }
                Err(err) if row_error(&err) => {
                    savepoint.rollback().await?;
                    *slot = Some(rejected(&row_id, err.to_string()));
                }
                Err(err) => return Err(err),
            }
        }
        let results: Vec<ImportRowResult> = results.into_iter().flatten().collect();
        if session.dry_run {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
            self.feed.notify_committed();
        }
        Ok(results)
    }

    /// The set-based part of a batch: CI rows that are new, valid and need no lookups (no
    /// reference attributes) are written with multi-row statements. Rows it cannot settle are
    /// left as `None` for the per-row path; if the database refuses the bulk write, all of them
    /// are.
    async fn create_new_items(
        &self,
        txn: &DatabaseTransaction,
        ctx: &CallContext,
        session: &mut ImportSession,
        batch: &mut Batch,
        results: &mut [Option<ImportRowResult>],
    ) -> Result<(), Error> {
        let mut candidates: Vec<usize> = Vec::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (i, checked) in batch.checked.iter().enumerate() {
            let Some(item) = checked else { continue };
            if let Some(reason) = &item.rejection {
                results[i] = Some(rejected(&batch.rows[i].row_id, reason.as_str()));
                continue;
            }
            // A key twice in one batch: the first may be created here, the rest update it.
            if item.has_references || !seen.insert((item.fields.ci_class.as_str(), item.key.as_str())) {
                continue;
            }
            candidates.push(i);
        }
        drop(seen);
        let class_and_key = |i: &usize| {
            let item = batch.checked[*i].as_ref();
            item.map_or(("", ""), |item| (item.fields.ci_class.as_str(), item.key.as_str()))
        };
        // Rows whose key exists already are updates: the per-row path.
        let existing = Self::existing_keys(txn, &ctx.tenant, candidates.iter().map(class_and_key)).await?;
        if !existing.is_empty() {
            candidates.retain(|i| {
                let (class, key) = class_and_key(i);
                !existing.contains(&(class.to_string(), key.to_string()))
            });
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let mut planned_keys = Vec::new();
        let mut items = Vec::with_capacity(candidates.len());
        for i in &candidates {
            // Candidates are distinct CI rows, each checked: results below pair them with ids.
            let item = batch.checked[*i]
                .take()
                .ok_or_else(|| Error::Internal(format!("import row {i} was taken twice")))?;
            if session.dry_run {
                planned_keys.push((item.fields.ci_class.clone(), item.key.clone()));
            }
            items.push((item.fields, item.key));
        }
        let savepoint = txn.begin().await?;
        match self.create_many_in(&savepoint, ctx, items, &session.source).await {
            Ok(ids) => {
                savepoint.commit().await?;
                for (planned, id) in planned_keys.into_iter().zip(&ids) {
                    session.planned.insert(planned, id.clone());
                }
                for (i, id) in candidates.iter().zip(ids) {
                    results[*i] =
                        Some(outcome(&batch.rows[*i].row_id, ImportOutcome::Created, resource_name(&id)));
                }
                Ok(())
            }
            Err(err) if row_error(&err) => {
                // e.g. a concurrent import created one of these keys: go row by row.
                savepoint.rollback().await?;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    async fn import_item(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        session: &mut ImportSession,
        item: &itsm_proto::cmdb::ConfigurationItem,
    ) -> Result<(ImportOutcome, String), Error> {
        let mut fields = fields_from_proto(item);
        let key = attributes::natural_key(
            &session.registry,
            &fields.ci_class,
            &fields.display_name,
            &fields.attributes,
        );
        let existing = Self::find_by_key(txn, &ctx.tenant, &fields.ci_class, &key).await?;
        match existing {
            None => {
                if fields.lifecycle_status == 0 {
                    fields.lifecycle_status = 1; // PLANNED
                }
                Self::check_fields(txn, &ctx.tenant, &session.registry, &fields, "configuration_item")
                    .await?;
                let model =
                    self.create_in(txn, ctx, &session.registry, &fields, &session.source, false).await?;
                if session.dry_run {
                    session.planned.insert((fields.ci_class.clone(), key), model.id.clone());
                }
                Ok((ImportOutcome::Created, resource_name(&model.id)))
            }
            Some(current) => {
                // Unset enums keep what is stored; everything else is what the source says.
                if fields.lifecycle_status == 0 {
                    fields.lifecycle_status = current.lifecycle_status;
                }
                if fields.criticality == 0 {
                    fields.criticality = current.criticality;
                }
                Self::check_fields(txn, &ctx.tenant, &session.registry, &fields, "configuration_item")
                    .await?;
                let model =
                    self.update_in(txn, ctx, &session.registry, &current, &fields, &session.source).await?;
                let kind = if model.version == current.version {
                    ImportOutcome::Unchanged
                } else {
                    ImportOutcome::Updated
                };
                Ok((kind, resource_name(&model.id)))
            }
        }
    }

    async fn resolve(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        session: &ImportSession,
        reference: Option<&CiReference>,
        end: &str,
    ) -> Result<(String, bool), Error> {
        let Some(reference) = reference else {
            return Err(Error::invalid(format!("relationship.{end}"), "is required"));
        };
        if let Some(found) =
            Self::find_by_key(txn, &ctx.tenant, &reference.ci_class, &reference.natural_key).await?
        {
            return Ok((found.id, false));
        }
        if let Some(planned) =
            session.planned.get(&(reference.ci_class.clone(), reference.natural_key.clone()))
        {
            return Ok((planned.clone(), true));
        }
        Err(Error::FailedPrecondition(format!(
            "relationship.{end}: no {} with natural key {:?} (dangling reference)",
            reference.ci_class, reference.natural_key
        )))
    }

    async fn import_relationship(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        session: &ImportSession,
        rel: &ImportRelationship,
    ) -> Result<(ImportOutcome, String), Error> {
        let kind = RelKind::from_proto(rel.r#type)
            .ok_or_else(|| Error::invalid("relationship.type", "is required"))?;
        let properties = rel.properties.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json);
        check_properties(&properties)
            .map_err(|(field, reason)| Error::invalid(format!("relationship.{field}"), reason))?;
        let (source_id, source_planned) =
            self.resolve(txn, ctx, session, rel.source.as_ref(), "source").await?;
        let (target_id, target_planned) =
            self.resolve(txn, ctx, session, rel.target.as_ref(), "target").await?;
        if source_planned || target_planned {
            // Dry run: an end exists only in this run's plan, so there is nothing to check it against.
            return Ok((ImportOutcome::Created, String::new()));
        }
        let new = NewRelationship { source_id, target_id, kind, properties };
        match self.relate_in(txn, ctx, &new, &session.source, "relationship").await? {
            Related::Created(model) => {
                Ok((ImportOutcome::Created, format!("{RELATIONSHIP_PREFIX}{}", model.id)))
            }
            Related::Existing(model) => {
                Ok((ImportOutcome::Unchanged, format!("{RELATIONSHIP_PREFIX}{}", model.id)))
            }
        }
    }
}
