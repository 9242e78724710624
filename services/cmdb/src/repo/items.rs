//! Persistence of configuration items: every write in one transaction with its history entry,
//! its labels, its outbox event and (for creates) its idempotency key.

use sea_orm::sea_query::{Expr, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, IntoActiveModel,
    Order, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, Value,
};

use itsm_proto::cmdb::{ConfigurationItem, ConfigurationItemChanged};
use itsm_proto::common::{FieldChange, HistoryEntry};
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::filter::{Expr as Filter, Op};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::{CallContext, Error};

use super::{Page, Repository, WriteSource};
use crate::convert::{apply_fields, etag, fields_from_model, parse_name, resource_name, to_proto};
use crate::domain::attributes;
use crate::domain::ci::{CRITICALITIES, CiFields, FieldDiff, LIFECYCLE_STATUSES, enum_value};
use crate::domain::classes::ClassRegistry;
use crate::entity::{ci_history, ci_label, configuration_item as ci, relationship};

/// The attribute a deployed release sets.
const VERSION_ATTRIBUTE: &str = "version";

const CREATE_METHOD: &str = "CreateConfigurationItem";

/// The version of a new CI (`new_model`; `create_many_in` sends it once per batch).
const FIRST_VERSION: i64 = 1;

/// Sort orders a listing accepts.
pub const ORDER_FIELDS: &[&str] = &["display_name", "create_time", "update_time"];

impl Repository {
    pub(crate) async fn find(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ci::Model>, Error> {
        Ok(ci::Entity::find()
            .filter(ci::Column::TenantId.eq(tenant))
            .filter(ci::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub(crate) async fn find_by_key(
        db: &impl ConnectionTrait,
        tenant: &str,
        class: &str,
        natural_key: &str,
    ) -> Result<Option<ci::Model>, Error> {
        Ok(ci::Entity::find()
            .filter(ci::Column::TenantId.eq(tenant))
            .filter(ci::Column::CiClass.eq(class))
            .filter(ci::Column::NaturalKey.eq(natural_key))
            .one(db)
            .await?)
    }

    /// Which of these (class, natural key) pairs exist in the tenant.
    pub(crate) async fn existing_keys<'k>(
        db: &impl ConnectionTrait,
        tenant: &str,
        keys: impl Iterator<Item = (&'k str, &'k str)>,
    ) -> Result<std::collections::HashSet<(String, String)>, Error> {
        let mut by_class: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        for (class, key) in keys {
            by_class.entry(class).or_default().push(key);
        }
        let mut found = std::collections::HashSet::new();
        let backend = db.get_database_backend();
        for (class, keys) in by_class {
            if backend == sea_orm::DatabaseBackend::Postgres {
                // One array parameter: the same statement text whatever the batch size. One index
                // probe per key (LATERAL … LIMIT 1): with `natural_key = ANY($3)` a planner without
                // fresh statistics (a table an import is filling) scanned the class's whole range.
                let keys: Vec<sea_orm::Value> = keys.iter().map(|k| (*k).into()).collect();
                let array =
                    sea_orm::Value::Array(sea_orm::sea_query::ArrayType::String, Some(Box::new(keys)));
                let rows = db
                    .query_all_raw(itsm_runtime::db::stmt(
                        backend,
                        "SELECT found.natural_key FROM unnest($1::text[]) AS wanted(key) \
                         CROSS JOIN LATERAL (SELECT natural_key FROM configuration_items \
                         WHERE tenant_id = $2 AND ci_class = $3 AND natural_key = wanted.key LIMIT 1) AS found",
                        [array, tenant.into(), class.into()],
                    ))
                    .await?;
                for row in rows {
                    let key: String = row.try_get("", "natural_key")?;
                    found.insert((class.to_string(), key));
                }
                continue;
            }
            let budget = itsm_runtime::db::STATEMENT_BUDGET;
            for chunk in itsm_runtime::db::chunks_within(&keys, |k| k.len() + 16, budget) {
                let rows: Vec<String> = ci::Entity::find()
                    .select_only()
                    .column(ci::Column::NaturalKey)
                    .filter(ci::Column::TenantId.eq(tenant))
                    .filter(ci::Column::CiClass.eq(class))
                    .filter(ExprTrait::is_in(Expr::col(ci::Column::NaturalKey), chunk.iter().copied()))
                    .into_tuple()
                    .all(db)
                    .await?;
                found.extend(rows.into_iter().map(|key| (class.to_string(), key)));
            }
        }
        Ok(found)
    }

    pub async fn get(&self, ctx: &CallContext, id: &str) -> Result<ConfigurationItem, Error> {
        match Self::find(&self.db, &ctx.tenant, id).await? {
            Some(model) => Ok(to_proto(&model)),
            None => Err(Error::NotFound(resource_name(id))),
        }
    }

    /// The CI as it was at `at` (micros): the newest history snapshot not after that time.
    pub async fn get_at(&self, ctx: &CallContext, id: &str, at: i64) -> Result<ConfigurationItem, Error> {
        let entry = ci_history::Entity::find()
            .filter(ci_history::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci_history::Column::CiId.eq(id))
            .filter(ci_history::Column::ChangeTime.lte(at))
            .order_by(ci_history::Column::Version, Order::Desc)
            .one(&self.db)
            .await?;
        match entry {
            Some(entry) if entry.action != "delete" => {
                let model: ci::Model = serde_json::from_str(&entry.snapshot)
                    .map_err(|e| Error::Internal(format!("history snapshot of {id}: {e}")))?;
                Ok(to_proto(&model))
            }
            _ => Err(Error::NotFound(format!("{} at the requested time", resource_name(id)))),
        }
    }

    /// Checks the fields against the tenant's classes, including that referenced CIs exist.
    pub(crate) async fn check_fields(
        db: &impl ConnectionTrait,
        tenant: &str,
        registry: &ClassRegistry,
        fields: &CiFields,
        prefix: &str,
    ) -> Result<(), Error> {
        let mut violations = Violations::new();
        fields.validate(registry, prefix, &mut violations);
        let references = attributes::check(
            registry,
            &fields.ci_class,
            &fields.attributes,
            &format!("{prefix}.attributes"),
            &mut violations,
        );
        for reference in references {
            let target = match parse_name(&reference.target) {
                Some(id) => Self::find(db, tenant, &id).await?,
                None => None,
            };
            match target {
                None => violations.add(reference.field, format!("{} does not exist", reference.target)),
                Some(t) if !reference.class.is_empty() && !registry.is_a(&t.ci_class, &reference.class) => {
                    violations.add(
                        reference.field,
                        format!("must reference a {} (found a {})", reference.class, t.ci_class),
                    );
                }
                Some(_) => {}
            }
        }
        violations.into_result()
    }

    pub async fn create(
        &self,
        ctx: &CallContext,
        fields: CiFields,
        request_id: &str,
        request_hash: &str,
        source: &WriteSource,
    ) -> Result<ConfigurationItem, Error> {
        // A concurrent create with the same request_id can win the race; then we return its result.
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let id = name.trim_start_matches(crate::convert::NAME_PREFIX).to_string();
                    let found = Self::find(&txn, &ctx.tenant, &id).await?;
                    txn.commit().await?;
                    return found.map(|m| to_proto(&m)).ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let registry = Self::registry(&txn, &ctx.tenant).await?;
            Self::check_fields(&txn, &ctx.tenant, &registry, &fields, "configuration_item").await?;
            let model = self.create_in(&txn, ctx, &registry, &fields, source, true).await?;
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &resource_name(&model.id))
                .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(to_proto(&model));
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Inserts a checked CI with its labels, history and event, in the caller's transaction.
    pub(crate) async fn create_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        registry: &ClassRegistry,
        fields: &CiFields,
        source: &WriteSource,
        check_unique: bool,
    ) -> Result<ci::Model, Error> {
        let key =
            attributes::natural_key(registry, &fields.ci_class, &fields.display_name, &fields.attributes);
        // The unique index enforces it anyway; the query only turns a clash into a clear message.
        if check_unique {
            self.ensure_unique_key(txn, &ctx.tenant, &fields.ci_class, &key, None).await?;
        }
        let now = now_micros();
        let model = new_model(ctx, fields, key, now);
        model.clone().into_active_model().reset_all().insert(txn).await?;
        write_labels(txn, &model, fields, true).await?;
        let diff = CiFields::diff(None, Some(fields));
        self.record_change(txn, ctx, &model, "create", &diff, source).await?;
        Ok(model)
    }

    /// Inserts many checked, new CIs with multi-row statements — labels, history and events
    /// included — in the caller's transaction; returns their ids in order. The caller has
    /// checked the fields and that no CI has these natural keys (the unique index still guards
    /// it). Values the whole batch shares (tenant, actor, time) are sent once per statement.
    pub(crate) async fn create_many_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        items: Vec<(CiFields, String)>,
        source: &WriteSource,
    ) -> Result<Vec<String>, Error> {
        use itsm_runtime::bulk::{BulkInsert, Column, Scalar};
        use prost::Message;

        let now = now_micros();
        let n = items.len();
        let text = || Vec::<String>::with_capacity(n);
        let (mut ids, mut names, mut classes, mut descriptions) = (text(), text(), text(), text());
        let (mut environments, mut owners, mut groups) = (text(), text(), text());
        let (mut labels, mut attributes, mut keys) = (text(), text(), text());
        let (mut statuses, mut criticalities) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut label_ids, mut label_keys, mut label_values) = (Vec::new(), Vec::new(), Vec::new());
        let (mut snapshots, mut changes, mut events) = (text(), text(), Vec::with_capacity(n));
        for (fields, key) in items {
            let model = new_model(ctx, &fields, key, now);
            let diff = CiFields::diff(None, Some(&fields));
            snapshots.push(serde_json::to_string(&model).map_err(|e| Error::Internal(e.to_string()))?);
            changes.push(serde_json::to_string(&diff).unwrap_or_else(|_| "[]".into()));
            for (key, value) in &fields.labels {
                label_ids.push(model.id.clone());
                label_keys.push(key.clone());
                label_values.push(value.clone());
            }
            let payload = ConfigurationItemChanged {
                action: "create".into(),
                configuration_item: Some(crate::convert::proto_from_fields(&model, fields)),
                changes: diff
                    .into_iter()
                    .map(|d| FieldChange { field: d.field, old_value: d.old_value, new_value: d.new_value })
                    .collect(),
            };
            events.push((resource_name(&model.id), payload.encode_to_vec()));
            ids.push(model.id);
            names.push(model.display_name);
            classes.push(model.ci_class);
            descriptions.push(model.description);
            statuses.push(model.lifecycle_status);
            environments.push(model.environment);
            criticalities.push(model.criticality);
            owners.push(model.owner);
            groups.push(model.support_group);
            labels.push(model.labels);
            attributes.push(model.attributes);
            keys.push(model.natural_key);
        }
        // Version, times and actor as `new_model` set them for every new CI (the same `now`).
        let tenant = || Column::Same(Scalar::Text(ctx.tenant.clone()));
        let principal = || Column::Same(Scalar::Text(ctx.principal.clone()));
        BulkInsert::new("configuration_items")
            .column("id", Column::Text(ids.clone()))
            .column("tenant_id", tenant())
            .column("display_name", Column::Text(names))
            .column("ci_class", Column::Text(classes))
            .column("description", Column::Text(descriptions))
            .column("lifecycle_status", Column::Int(statuses))
            .column("environment", Column::Text(environments))
            .column("criticality", Column::Int(criticalities))
            .column("owner", Column::Text(owners))
            .column("support_group", Column::Text(groups))
            .column("labels", Column::Text(labels))
            .column("attributes", Column::Text(attributes))
            .column("natural_key", Column::Text(keys))
            .column("version", Column::Same(Scalar::BigInt(FIRST_VERSION)))
            .column("create_time", Column::Same(Scalar::BigInt(now)))
            .column("update_time", Column::Same(Scalar::BigInt(now)))
            .column("creator", principal())
            .column("updater", principal())
            .execute(txn)
            .await?;
        BulkInsert::new("ci_labels")
            .column("ci_id", Column::Text(label_ids))
            .column("key", Column::Text(label_keys))
            .column("tenant_id", tenant())
            .column("value", Column::Text(label_values))
            .execute(txn)
            .await?;
        BulkInsert::new("ci_history")
            .column("tenant_id", tenant())
            .column("ci_id", Column::Text(ids.clone()))
            .column("version", Column::Same(Scalar::BigInt(FIRST_VERSION)))
            .column("change_time", Column::Same(Scalar::BigInt(now)))
            .column("actor", principal())
            .column("source", Column::Same(Scalar::Int(source.source as i32)))
            .column("source_reference", Column::Same(Scalar::Text(source.reference.clone())))
            .column("action", Column::Same(Scalar::Text("create".into())))
            .column("changes", Column::Text(changes))
            .column("snapshot", Column::Text(snapshots))
            .execute(txn)
            .await?;
        let event_type = <ConfigurationItemChanged as prost::Name>::full_name();
        let events: Vec<NewEvent> = events
            .iter_mut()
            .map(|(name, payload)| NewEvent {
                event_type: event_type.clone(),
                resource_name: name,
                tenant: &ctx.tenant,
                actor: &ctx.principal,
                payload_type: event_type.clone(),
                payload: std::mem::take(payload),
            })
            .collect();
        outbox::append_many(txn, &events).await?;
        Ok(ids)
    }

    pub async fn update(
        &self,
        ctx: &CallContext,
        id: &str,
        expected_etag: &str,
        change: impl FnOnce(&mut CiFields),
        source: &WriteSource,
    ) -> Result<ConfigurationItem, Error> {
        let txn = self.db.begin().await?;
        let current =
            Self::find(&txn, &ctx.tenant, id).await?.ok_or_else(|| Error::NotFound(resource_name(id)))?;
        if !expected_etag.is_empty() && expected_etag != etag(current.version) {
            return Err(Error::Aborted(format!(
                "etag mismatch: {} was changed since it was read (current etag {})",
                resource_name(id),
                etag(current.version)
            )));
        }
        let registry = Self::registry(&txn, &ctx.tenant).await?;
        let mut after = fields_from_model(&current);
        change(&mut after);
        Self::check_fields(&txn, &ctx.tenant, &registry, &after, "configuration_item").await?;
        let model = self.update_in(&txn, ctx, &registry, &current, &after, source).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(to_proto(&model))
    }

    /// Applies checked fields to `current` (no-op when nothing differs), in the caller's
    /// transaction. Returns the record as stored afterwards.
    pub(crate) async fn update_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        registry: &ClassRegistry,
        current: &ci::Model,
        after: &CiFields,
        source: &WriteSource,
    ) -> Result<ci::Model, Error> {
        let before = fields_from_model(current);
        let diff = CiFields::diff(Some(&before), Some(after));
        if diff.is_empty() {
            return Ok(current.clone());
        }
        let key = attributes::natural_key(registry, &after.ci_class, &after.display_name, &after.attributes);
        if key != current.natural_key || after.ci_class != current.ci_class {
            self.ensure_unique_key(txn, &ctx.tenant, &after.ci_class, &key, Some(&current.id)).await?;
        }
        let mut model = current.clone();
        apply_fields(&mut model, after);
        model.natural_key = key;
        model.version = current.version + 1;
        model.update_time = std::cmp::max(now_micros(), current.update_time + 1);
        model.updater.clone_from(&ctx.principal);
        let mut active = model.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = ci::Entity::update_many()
            .set(active)
            .filter(ci::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci::Column::Id.eq(current.id.as_str()))
            .filter(ci::Column::Version.eq(current.version))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                resource_name(&current.id)
            )));
        }
        if after.labels != before.labels {
            write_labels(txn, &model, after, false).await?;
        }
        self.record_change(txn, ctx, &model, "update", &diff, source).await?;
        Ok(model)
    }

    /// Records on a CI that a change or release acted on it, without changing its fields: a new
    /// version whose history entry names the source. `None` when the CI is not in the tenant.
    pub(crate) async fn note_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        id: &str,
        action: &str,
        source: &WriteSource,
    ) -> Result<Option<ci::Model>, Error> {
        let Some(current) = Self::find(txn, &ctx.tenant, id).await? else { return Ok(None) };
        let mut model = current.clone();
        model.version = current.version + 1;
        model.update_time = std::cmp::max(now_micros(), current.update_time + 1);
        model.updater.clone_from(&ctx.principal);
        let result = ci::Entity::update_many()
            .col_expr(ci::Column::Version, Expr::value(model.version))
            .col_expr(ci::Column::UpdateTime, Expr::value(model.update_time))
            .col_expr(ci::Column::Updater, Expr::value(model.updater.clone()))
            .filter(ci::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci::Column::Id.eq(id))
            .filter(ci::Column::Version.eq(current.version))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!("{} was changed concurrently", resource_name(id))));
        }
        self.record_change(txn, ctx, &model, action, &[], source).await?;
        Ok(Some(model))
    }

    /// Sets (or with `None` removes) the `version` attribute of a CI whose class has one, as a
    /// release deployment does. `Ok(false)` when the CI is not in the tenant or its class keeps
    /// no version.
    pub(crate) async fn set_version_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        id: &str,
        version: Option<&str>,
        source: &WriteSource,
    ) -> Result<bool, Error> {
        let Some(current) = Self::find(txn, &ctx.tenant, id).await? else { return Ok(false) };
        let registry = Self::registry(txn, &ctx.tenant).await?;
        if !registry.effective_attributes(&current.ci_class).iter().any(|a| a.name == VERSION_ATTRIBUTE) {
            return Ok(false);
        }
        let mut after = fields_from_model(&current);
        if !after.attributes.is_object() {
            after.attributes = serde_json::json!({});
        }
        if let Some(attributes) = after.attributes.as_object_mut() {
            match version {
                Some(v) => {
                    attributes.insert(VERSION_ATTRIBUTE.into(), serde_json::Value::String(v.to_string()));
                }
                None => {
                    attributes.remove(VERSION_ATTRIBUTE);
                }
            }
        }
        self.update_in(txn, ctx, &registry, &current, &after, source).await?;
        Ok(true)
    }

    /// The `version` a CI had before `reference` (a release) last set it: `Some(None)` when it
    /// had none, `None` when that release never set it.
    pub(crate) async fn version_before(
        txn: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
        reference: &str,
    ) -> Result<Option<Option<String>>, Error> {
        let entries = ci_history::Entity::find()
            .filter(ci_history::Column::TenantId.eq(tenant))
            .filter(ci_history::Column::CiId.eq(id))
            .filter(ci_history::Column::SourceReference.eq(reference))
            .filter(ci_history::Column::Action.eq("update"))
            .order_by(ci_history::Column::Version, Order::Desc)
            .all(txn)
            .await?;
        for entry in entries {
            let diffs: Vec<FieldDiff> = serde_json::from_str(&entry.changes).unwrap_or_default();
            let Some(attributes) = diffs.iter().find(|d| d.field == "attributes") else { continue };
            let old: serde_json::Value = serde_json::from_str(&attributes.old_value).unwrap_or_default();
            let new: serde_json::Value = serde_json::from_str(&attributes.new_value).unwrap_or_default();
            if old.get(VERSION_ATTRIBUTE) != new.get(VERSION_ATTRIBUTE) {
                return Ok(Some(old.get(VERSION_ATTRIBUTE).and_then(|v| v.as_str()).map(str::to_string)));
            }
        }
        Ok(None)
    }

    pub async fn delete(
        &self,
        ctx: &CallContext,
        id: &str,
        expected_etag: &str,
        cascade: bool,
        source: &WriteSource,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current =
            Self::find(&txn, &ctx.tenant, id).await?.ok_or_else(|| Error::NotFound(resource_name(id)))?;
        if !expected_etag.is_empty() && expected_etag != etag(current.version) {
            return Err(Error::Aborted(format!("etag mismatch: current etag is {}", etag(current.version))));
        }
        let related = relationship::Entity::find()
            .filter(relationship::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(
                Condition::any()
                    .add(relationship::Column::SourceId.eq(id))
                    .add(relationship::Column::TargetId.eq(id)),
            )
            .all(&txn)
            .await?;
        if !related.is_empty() && !cascade {
            return Err(Error::FailedPrecondition(format!(
                "{} has {} relationship(s); delete them first or set cascade to delete them with it",
                resource_name(id),
                related.len()
            )));
        }
        for rel in &related {
            self.delete_relationship_in(&txn, ctx, rel, source).await?;
        }
        let result = ci::Entity::delete_many()
            .filter(ci::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci::Column::Id.eq(id))
            .filter(ci::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                resource_name(id)
            )));
        }
        ci_label::Entity::delete_many().filter(ci_label::Column::CiId.eq(id)).exec(&txn).await?;
        let before = fields_from_model(&current);
        let diff = CiFields::diff(Some(&before), None);
        let mut gone = current.clone();
        gone.version = current.version + 1;
        gone.update_time = std::cmp::max(now_micros(), current.update_time + 1);
        gone.updater.clone_from(&ctx.principal);
        self.record_change(&txn, ctx, &gone, "delete", &diff, source).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    async fn ensure_unique_key(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        class: &str,
        key: &str,
        except_id: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(existing) = Self::find_by_key(db, tenant, class, key).await?
            && except_id != Some(existing.id.as_str())
        {
            return Err(Error::AlreadyExists(format!(
                "a {class} with natural key {key:?} already exists: {}",
                resource_name(&existing.id)
            )));
        }
        Ok(())
    }

    /// History entry + outbox event, in the caller's transaction.
    async fn record_change(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        model: &ci::Model,
        action: &str,
        diff: &[FieldDiff],
        source: &WriteSource,
    ) -> Result<(), Error> {
        let snapshot = if action == "delete" {
            String::new()
        } else {
            serde_json::to_string(model).map_err(|e| Error::Internal(e.to_string()))?
        };
        ci_history::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            tenant_id: sea_orm::ActiveValue::Set(ctx.tenant.clone()),
            ci_id: sea_orm::ActiveValue::Set(model.id.clone()),
            version: sea_orm::ActiveValue::Set(model.version),
            change_time: sea_orm::ActiveValue::Set(model.update_time),
            actor: sea_orm::ActiveValue::Set(ctx.principal.clone()),
            source: sea_orm::ActiveValue::Set(source.source as i32),
            source_reference: sea_orm::ActiveValue::Set(source.reference.clone()),
            action: sea_orm::ActiveValue::Set(action.to_string()),
            changes: sea_orm::ActiveValue::Set(serde_json::to_string(diff).unwrap_or_else(|_| "[]".into())),
            snapshot: sea_orm::ActiveValue::Set(snapshot),
        }
        .insert(txn)
        .await?;
        let name = resource_name(&model.id);
        let payload = ConfigurationItemChanged {
            action: action.to_string(),
            configuration_item: Some(to_proto(model)),
            changes: diff.iter().map(field_change).collect(),
        };
        outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
        Ok(())
    }

    pub async fn history(
        &self,
        ctx: &CallContext,
        id: &str,
        after_version: i64,
        limit: u64,
    ) -> Result<Page<HistoryEntry>, Error> {
        let rows = ci_history::Entity::find()
            .filter(ci_history::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci_history::Column::CiId.eq(id))
            .filter(ci_history::Column::Version.gt(after_version))
            .order_by(ci_history::Column::Version, Order::Asc)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        if rows.is_empty() && after_version == 0 {
            return Err(Error::NotFound(resource_name(id)));
        }
        let more = rows.len() as u64 > limit;
        let items: Vec<HistoryEntry> = rows.iter().take(limit as usize).map(history_entry).collect();
        let next_key = if more { items.last().map(|e| vec![serde_json::json!(e.version)]) } else { None };
        Ok(Page { items, next_key })
    }

    pub async fn batch_get(&self, ctx: &CallContext, ids: &[String]) -> Result<Vec<ci::Model>, Error> {
        Self::find_many(&self.db, &ctx.tenant, ids).await
    }

    /// The CIs with these ids in the tenant (any order; missing ones are absent).
    pub(crate) async fn find_many(
        db: &impl ConnectionTrait,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<ci::Model>, Error> {
        let queries = ids.chunks(itsm_runtime::db::MAX_IN_LIST).map(|chunk| {
            ci::Entity::find()
                .filter(ci::Column::TenantId.eq(tenant))
                .filter(ExprTrait::is_in(Expr::col(ci::Column::Id), chunk.iter().map(String::as_str)))
                .all(db)
        });
        let out: Vec<ci::Model> =
            futures::future::try_join_all(queries).await?.into_iter().flatten().collect();
        Ok(out)
    }

    /// Display name and class of each of these CIs (impact analysis needs no more).
    pub(crate) async fn find_names(
        db: &impl ConnectionTrait,
        tenant: &str,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, (String, String)>, Error> {
        let queries = ids.chunks(itsm_runtime::db::MAX_IN_LIST).map(|chunk| {
            ci::Entity::find()
                .select_only()
                .column(ci::Column::Id)
                .column(ci::Column::DisplayName)
                .column(ci::Column::CiClass)
                .filter(ci::Column::TenantId.eq(tenant))
                .filter(ExprTrait::is_in(Expr::col(ci::Column::Id), chunk.iter().map(String::as_str)))
                .into_tuple::<(String, String, String)>()
                .all(db)
        });
        Ok(futures::future::try_join_all(queries)
            .await?
            .into_iter()
            .flatten()
            .map(|(id, name, class)| (id, (name, class)))
            .collect())
    }

    /// A page of CIs matching `filter`, in `order` (field, descending), after `after` (the last
    /// sort key of the previous page).
    pub async fn list(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ConfigurationItem>, Error> {
        let (field, descending) = order;
        let column = match field {
            "create_time" => ci::Column::CreateTime,
            "update_time" => ci::Column::UpdateTime,
            _ => ci::Column::DisplayName,
        };
        let mut query = ci::Entity::find().filter(ci::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            let registry = Self::registry(&self.db, &ctx.tenant).await?;
            query = query.filter(condition(filter, &ctx.tenant, &registry)?);
        }
        if let Some(key) = after {
            let (value, id) = match key.as_slice() {
                [value, serde_json::Value::String(id)] => (sort_value(field, value)?, id.clone()),
                _ => return Err(Error::invalid("page_token", "invalid page token")),
            };
            // A row-value comparison, so the index on (tenant, column, id) serves it as a range:
            // page 10,000 costs what page 1 costs.
            let key = Expr::tuple([Expr::col((ci::Entity, column)), Expr::col((ci::Entity, ci::Column::Id))]);
            let last = Expr::tuple([Expr::val(value), Expr::val(id)]);
            query = query.filter(if descending { key.lt(last) } else { key.gt(last) });
        }
        let direction = if descending { Order::Desc } else { Order::Asc };
        let rows = query
            .order_by(column, direction.clone())
            .order_by(ci::Column::Id, direction)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<ci::Model> = rows.into_iter().take(limit as usize).collect();
        let next_key = match (more, rows.last()) {
            (true, Some(last)) => Some(vec![
                match field {
                    "create_time" => serde_json::json!(last.create_time),
                    "update_time" => serde_json::json!(last.update_time),
                    _ => serde_json::json!(last.display_name),
                },
                serde_json::json!(last.id),
            ]),
            _ => None,
        };
        Ok(Page { items: rows.iter().map(to_proto).collect(), next_key })
    }

    /// Every CI matching a filter (baselines), at most `limit`.
    pub(crate) async fn all_matching(
        db: &impl ConnectionTrait,
        ctx: &CallContext,
        registry: &ClassRegistry,
        filter: Option<&Filter>,
        limit: u64,
    ) -> Result<Vec<ci::Model>, Error> {
        let mut query = ci::Entity::find().filter(ci::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(condition(filter, &ctx.tenant, registry)?);
        }
        Ok(query.order_by(ci::Column::Id, Order::Asc).limit(limit).all(db).await?)
    }
}

fn sort_value(field: &str, value: &serde_json::Value) -> Result<Value, Error> {
    let bad = || Error::invalid("page_token", "invalid page token");
    Ok(match field {
        "create_time" | "update_time" => Value::from(value.as_i64().ok_or_else(bad)?),
        _ => Value::from(value.as_str().ok_or_else(bad)?.to_string()),
    })
}

/// Labels live in `ci_labels` too, for indexed `labels.key = value` filters.
async fn write_labels(
    txn: &impl ConnectionTrait,
    model: &ci::Model,
    fields: &CiFields,
    fresh: bool,
) -> Result<(), Error> {
    if !fresh {
        ci_label::Entity::delete_many()
            .filter(ci_label::Column::CiId.eq(model.id.as_str()))
            .exec(txn)
            .await?;
    }
    if fields.labels.is_empty() {
        return Ok(());
    }
    let rows = fields.labels.iter().map(|(key, value)| ci_label::ActiveModel {
        ci_id: sea_orm::ActiveValue::Set(model.id.clone()),
        key: sea_orm::ActiveValue::Set(key.clone()),
        tenant_id: sea_orm::ActiveValue::Set(model.tenant_id.clone()),
        value: sea_orm::ActiveValue::Set(value.clone()),
    });
    ci_label::Entity::insert_many(rows).exec(txn).await?;
    Ok(())
}

/// A new CI record, version 1, created and last changed by the caller at `now`.
fn new_model(ctx: &CallContext, fields: &CiFields, natural_key: String, now: i64) -> ci::Model {
    let mut model = ci::Model {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: ctx.tenant.clone(),
        display_name: String::new(),
        ci_class: String::new(),
        description: String::new(),
        lifecycle_status: 0,
        environment: String::new(),
        criticality: 0,
        owner: String::new(),
        support_group: String::new(),
        labels: String::new(),
        attributes: String::new(),
        natural_key,
        version: FIRST_VERSION,
        create_time: now,
        update_time: now,
        creator: ctx.principal.clone(),
        updater: ctx.principal.clone(),
    };
    apply_fields(&mut model, fields);
    model
}

fn field_change(diff: &FieldDiff) -> FieldChange {
    FieldChange {
        field: diff.field.clone(),
        old_value: diff.old_value.clone(),
        new_value: diff.new_value.clone(),
    }
}

fn history_entry(row: &ci_history::Model) -> HistoryEntry {
    let diffs: Vec<FieldDiff> = serde_json::from_str(&row.changes).unwrap_or_default();
    HistoryEntry {
        version: row.version,
        change_time: Some(timestamp(row.change_time)),
        actor: row.actor.clone(),
        source: row.source,
        source_reference: row.source_reference.clone(),
        action: row.action.clone(),
        changes: diffs.iter().map(field_change).collect(),
    }
}

/// Fields a filter may name, and how each compares.
pub const FILTER_FIELDS: &[&str] = &[
    "display_name",
    "ci_class",
    "description",
    "lifecycle_status",
    "environment",
    "criticality",
    "owner",
    "support_group",
    "create_time",
    "update_time",
    "labels.<key>",
];

/// Filter AST → SQL condition. Values are always bound parameters, never spliced into SQL.
fn condition(expr: &Filter, tenant: &str, registry: &ClassRegistry) -> Result<Condition, Error> {
    Ok(match expr {
        Filter::And(parts) => parts
            .iter()
            .try_fold(Condition::all(), |c, p| Ok::<_, Error>(c.add(condition(p, tenant, registry)?)))?,
        Filter::Or(parts) => parts
            .iter()
            .try_fold(Condition::any(), |c, p| Ok::<_, Error>(c.add(condition(p, tenant, registry)?)))?,
        Filter::Not(inner) => condition(inner, tenant, registry)?.not(),
        Filter::Compare { member, op, value } => {
            Condition::all().add(comparison(member, *op, value, tenant, registry)?)
        }
    })
}

fn only_equality(member: &str, op: Op) -> Result<(), Error> {
    match op {
        Op::Eq | Op::Ne => Ok(()),
        _ => Err(Error::invalid("filter", format!("`{member}` supports only = and !="))),
    }
}

fn compare(column: ci::Column, op: Op, value: Value) -> SimpleExpr {
    let col = Expr::col(column);
    match op {
        Op::Eq => col.eq(value),
        Op::Ne => col.ne(value),
        Op::Lt => col.lt(value),
        Op::Le => col.lte(value),
        Op::Gt => col.gt(value),
        Op::Ge => col.gte(value),
    }
}

fn comparison(
    member: &str,
    op: Op,
    value: &str,
    tenant: &str,
    registry: &ClassRegistry,
) -> Result<SimpleExpr, Error> {
    if let Some(key) = member.strip_prefix("labels.") {
        only_equality(member, op)?;
        let matching = Query::select()
            .column(ci_label::Column::CiId)
            .from(ci_label::Entity)
            .and_where(Expr::col(ci_label::Column::TenantId).eq(tenant))
            .and_where(Expr::col(ci_label::Column::Key).eq(key))
            .and_where(Expr::col(ci_label::Column::Value).eq(value))
            .to_owned();
        let id = Expr::col((ci::Entity, ci::Column::Id));
        return Ok(if op == Op::Eq { id.in_subquery(matching) } else { id.not_in_subquery(matching) });
    }
    let text = |column: ci::Column| -> Result<SimpleExpr, Error> {
        only_equality(member, op)?;
        Ok(compare(column, op, Value::from(value.to_string())))
    };
    match member {
        "display_name" => text(ci::Column::DisplayName),
        "description" => text(ci::Column::Description),
        "environment" => text(ci::Column::Environment),
        "owner" => text(ci::Column::Owner),
        "support_group" => text(ci::Column::SupportGroup),
        "ci_class" => {
            only_equality(member, op)?;
            let family = registry.with_descendants(value);
            if family.is_empty() {
                return Err(Error::invalid("filter", format!("unknown class `{value}`")));
            }
            let col = Expr::col(ci::Column::CiClass);
            Ok(if op == Op::Eq { col.is_in(family) } else { col.is_not_in(family) })
        }
        "lifecycle_status" | "criticality" => {
            let (table, prefix, column) = if member == "criticality" {
                (CRITICALITIES, "CRITICALITY_", ci::Column::Criticality)
            } else {
                (LIFECYCLE_STATUSES, "LIFECYCLE_STATUS_", ci::Column::LifecycleStatus)
            };
            let number = enum_value(table, prefix, value)
                .ok_or_else(|| Error::invalid("filter", format!("`{value}` is not a value of {member}")))?;
            Ok(compare(column, op, Value::from(number)))
        }
        "create_time" | "update_time" => {
            let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
                Error::invalid(
                    "filter",
                    format!("`{member}` takes an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"),
                )
            })?;
            let column =
                if member == "create_time" { ci::Column::CreateTime } else { ci::Column::UpdateTime };
            Ok(compare(column, op, Value::from(at.timestamp_micros())))
        }
        other => Err(Error::invalid(
            "filter",
            format!("unknown field `{other}`; filterable: {}", FILTER_FIELDS.join(", ")),
        )),
    }
}
