//! `itsm.change.v1.ReleaseService`: releases bundle authorised changes and build artefacts and
//! are deployed stage by stage through gates; each deployment and rollback is an event the CMDB
//! follows to keep the version of the release's CIs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use itsm_cmdb_client::CiReference;
use itsm_proto::change::release_service_server::ReleaseService;
use itsm_proto::change::{
    Artefact, AttachTestEvidenceRequest, CheckReleaseGatesRequest, CheckReleaseGatesResponse,
    CreateReleaseRequest, DeleteReleaseRequest, DeleteReleaseResponse, DeployReleaseRequest,
    GetReleaseRequest, ListReleasesRequest, ListReleasesResponse, Release, ReleaseChanged, ReleaseGate,
    RollbackReleaseRequest, Rollout, RolloutStatus, TestEvidence, UpdateReleaseRequest,
};
use itsm_proto::common::AuditInfo;
use itsm_runtime::db::{micros, now_micros, placeholders, stmt, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::filter::{self, Expr as Filter};
use itsm_runtime::history::{self, NewEntry, change_time, check_etag, diff, etag};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset::{self, Page};
use itsm_runtime::numbers::{self, is_number};
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::validate::{self, MAX_NAME};
use itsm_runtime::{CallContext, Error};

use crate::api::ChangeApi;
use crate::convert::{CHANGE_NUMBER, CHANGE_PREFIX};
use crate::domain::lifecycle::ChangeState;
use crate::domain::release::{Gate, GateInputs, ReleaseState, ReleaseType, gates, is_sha256};
use crate::entity::release;
use crate::repo::{list_from, list_to};

pub const PREFIX: &str = "releases/";
pub const NUMBER: &str = "RLS";
const CREATE_METHOD: &str = "CreateRelease";
const KIND: &str = "release";
const MAX_ITEMS: usize = 100;
const MAX_ENVIRONMENTS: usize = 20;

pub const UPDATABLE: &[&str] = &[
    "short_description",
    "description",
    "version",
    "changes",
    "configuration_items",
    "environments",
    "artefacts",
    "planned_release_time",
    "state",
];
/// What is fixed once a release is deployed.
const CONTENT: &[&str] = &["version", "changes", "configuration_items", "environments", "artefacts"];
pub const ORDER_FIELDS: &[&str] = &["number", "planned_release_time", "create_time", "update_time"];
pub const FILTER_FIELDS: &[&str] =
    &["state", "type", "version", "changes", "planned_release_time", "create_time", "update_time"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ArtefactRecord {
    name: String,
    version: String,
    sha256: String,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EvidenceRecord {
    description: String,
    url: String,
    time: i64,
    by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RolloutRecord {
    environment: String,
    status: i32,
    deploy_time: i64,
    deployed_by: String,
    rollback_time: i64,
    rollback_reason: String,
}

fn records<T: for<'de> Deserialize<'de>>(json: &str) -> Vec<T> {
    serde_json::from_str(json).unwrap_or_default()
}

fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

pub fn release_name(number: &str) -> String {
    format!("{PREFIX}{number}")
}

pub fn to_proto(m: &release::Model) -> Release {
    Release {
        name: release_name(&m.number),
        number: m.number.clone(),
        r#type: m.release_type,
        state: m.state,
        version: m.version_label.clone(),
        short_description: m.short_description.clone(),
        description: m.description.clone(),
        changes: list_from(&m.changes),
        planned_release_time: time(m.planned_release_time),
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
        artefacts: records::<ArtefactRecord>(&m.artefacts)
            .into_iter()
            .map(|a| Artefact { name: a.name, version: a.version, sha256: a.sha256, source: a.source })
            .collect(),
        environments: list_from(&m.environments),
        configuration_items: list_from(&m.configuration_items),
        test_evidence: records::<EvidenceRecord>(&m.evidence)
            .into_iter()
            .map(|e| TestEvidence {
                description: e.description,
                url: e.url,
                attach_time: time(e.time),
                attached_by: e.by,
            })
            .collect(),
        rollouts: records::<RolloutRecord>(&m.rollouts)
            .into_iter()
            .map(|r| Rollout {
                environment: r.environment,
                status: r.status,
                deploy_time: time(r.deploy_time),
                deployed_by: r.deployed_by,
                rollback_time: time(r.rollback_time),
                rollback_reason: r.rollback_reason,
            })
            .collect(),
    }
}

fn number(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    name.strip_prefix(PREFIX)
        .filter(|n| is_number(n, NUMBER))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `releases/RLS0000123`"))
}

/// Checks the fields a caller may set (all on create, the masked ones on update).
fn check_fields(v: &mut Violations, r: &Release, has: &dyn Fn(&str) -> bool) {
    if has("short_description") {
        validate::text(v, "release.short_description", &r.short_description, 300, true);
    }
    if has("description") {
        validate::text(v, "release.description", &r.description, 32 * 1024, false);
    }
    if has("version") {
        validate::text(v, "release.version", &r.version, MAX_NAME, true);
    }
    if has("changes") {
        if r.changes.len() > MAX_ITEMS {
            v.add("release.changes", format!("at most {MAX_ITEMS} changes"));
        }
        for (i, c) in r.changes.iter().enumerate() {
            if !c.strip_prefix(CHANGE_PREFIX).is_some_and(|n| is_number(n, CHANGE_NUMBER)) {
                v.add(format!("release.changes[{i}]"), "must be `changes/CHG0000123`");
            }
        }
    }
    if has("configuration_items") && r.configuration_items.len() > MAX_ITEMS {
        v.add("release.configuration_items", format!("at most {MAX_ITEMS} configuration items"));
    }
    if has("environments") {
        if r.environments.len() > MAX_ENVIRONMENTS {
            v.add("release.environments", format!("at most {MAX_ENVIRONMENTS} environments"));
        }
        let mut seen = BTreeSet::new();
        for (i, env) in r.environments.iter().enumerate() {
            validate::text(v, &format!("release.environments[{i}]"), env, MAX_NAME, true);
            if !seen.insert(env) {
                v.add(format!("release.environments[{i}]"), "is listed twice");
            }
        }
    }
    if has("artefacts") {
        if r.artefacts.len() > MAX_ITEMS {
            v.add("release.artefacts", format!("at most {MAX_ITEMS} artefacts"));
        }
        for (i, a) in r.artefacts.iter().enumerate() {
            validate::text(v, &format!("release.artefacts[{i}].name"), &a.name, MAX_NAME, true);
            validate::text(v, &format!("release.artefacts[{i}].version"), &a.version, MAX_NAME, true);
            validate::text(v, &format!("release.artefacts[{i}].source"), &a.source, 2000, false);
            if !is_sha256(&a.sha256) {
                v.add(format!("release.artefacts[{i}].sha256"), "must be a SHA-256 digest (64 hex digits)");
            }
        }
    }
}

/// Sets the masked fields of `m` from `r`.
fn apply(m: &mut release::Model, r: &Release, has: &dyn Fn(&str) -> bool) {
    if has("short_description") {
        m.short_description.clone_from(&r.short_description);
    }
    if has("description") {
        m.description.clone_from(&r.description);
    }
    if has("version") {
        m.version_label.clone_from(&r.version);
    }
    if has("changes") {
        m.changes = list_to(&r.changes);
    }
    if has("configuration_items") {
        m.configuration_items = list_to(&r.configuration_items);
    }
    if has("environments") {
        m.environments = list_to(&r.environments);
        let rollouts: Vec<RolloutRecord> = r
            .environments
            .iter()
            .map(|env| RolloutRecord {
                environment: env.clone(),
                status: RolloutStatus::Pending as i32,
                deploy_time: 0,
                deployed_by: String::new(),
                rollback_time: 0,
                rollback_reason: String::new(),
            })
            .collect();
        m.rollouts = list_to(&rollouts);
    }
    if has("artefacts") {
        let artefacts: Vec<ArtefactRecord> = r
            .artefacts
            .iter()
            .map(|a| ArtefactRecord {
                name: a.name.clone(),
                version: a.version.clone(),
                sha256: a.sha256.to_ascii_lowercase(),
                source: a.source.clone(),
            })
            .collect();
        m.artefacts = list_to(&artefacts);
    }
    if has("planned_release_time") {
        m.planned_release_time = r.planned_release_time.as_ref().map_or(0, micros);
    }
}

fn state_of(m: &release::Model) -> Result<ReleaseState, Error> {
    ReleaseState::from_i32(m.state)
        .ok_or_else(|| Error::Internal(format!("{} has an unknown state", m.number)))
}

/// Persistence of releases: every write in one transaction with its history entry and event.
#[derive(Clone)]
pub struct Releases {
    pub db: sea_orm::DatabaseConnection,
    pub feed: outbox::EventFeed,
}

impl Releases {
    async fn find(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<release::Model>, Error> {
        Ok(release::Entity::find()
            .filter(release::Column::TenantId.eq(tenant))
            .filter(release::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    pub async fn get(&self, ctx: &CallContext, number: &str) -> Result<release::Model, Error> {
        Self::find(&self.db, &ctx.tenant, number).await?.ok_or_else(|| Error::NotFound(release_name(number)))
    }

    async fn create(
        &self,
        ctx: &CallContext,
        mut model: release::Model,
        request_id: &str,
        hash: &str,
    ) -> Result<release::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let found = Self::find(&txn, &ctx.tenant, name.trim_start_matches(PREFIX)).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let now = now_micros();
            model.id = uuid::Uuid::now_v7().to_string();
            model.tenant_id.clone_from(&ctx.tenant);
            model.number = numbers::next(&txn, &ctx.tenant, NUMBER).await?;
            model.state = ReleaseState::Planned as i32;
            model.version = 1;
            model.create_time = now;
            model.update_time = now;
            model.creator.clone_from(&ctx.principal);
            model.updater.clone_from(&ctx.principal);
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            let changes = diff(None, Some(&model));
            record(&txn, ctx, None, &model, "create", "", &changes, "").await?;
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &release_name(&model.number))
                .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Loads, checks the etag, lets `edit` change a copy (it enforces the rules) and stores it
    /// with its history entry and event, in one transaction.
    #[allow(clippy::too_many_arguments)] // the call's context, target, audit text and the edit
    async fn change(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        action: &str,
        environment: &str,
        reason: &str,
        edit: impl FnOnce(&mut release::Model, i64) -> Result<(), Error>,
    ) -> Result<release::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(release_name(number)))?;
        check_etag(expected_etag, current.version, &release_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        edit(&mut after, now)?;
        let changes = diff(Some(&current), Some(&after));
        if changes.is_empty() {
            txn.commit().await?;
            return Ok(current);
        }
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = release::Entity::update_many()
            .set(active)
            .filter(release::Column::Id.eq(current.id.as_str()))
            .filter(release::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                release_name(number)
            )));
        }
        record(&txn, ctx, Some(&current), &after, action, environment, &changes, reason).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(after)
    }

    async fn delete(&self, ctx: &CallContext, number: &str, expected_etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(release_name(number)))?;
        check_etag(expected_etag, current.version, &release_name(number))?;
        let state = state_of(&current)?;
        if !matches!(state, ReleaseState::Planned | ReleaseState::Cancelled) {
            return Err(Error::FailedPrecondition(format!(
                "{} is {state}; only PLANNED or CANCELLED releases can be deleted (cancel it first)",
                release_name(number)
            )));
        }
        release::Entity::delete_many().filter(release::Column::Id.eq(current.id.as_str())).exec(&txn).await?;
        let changes = diff(Some(&current), None);
        let mut gone = current.clone();
        gone.version = current.version + 1;
        gone.update_time = change_time(current.update_time);
        record(&txn, ctx, Some(&current), &gone, "delete", "", &changes, "").await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    async fn list(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<release::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => release::Column::Number,
            "planned_release_time" => release::Column::PlannedReleaseTime,
            "update_time" => release::Column::UpdateTime,
            _ => release::Column::CreateTime,
        };
        let mut query = release::Entity::find().filter(release::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &release_field, FILTER_FIELDS)?);
        }
        keyset::page(&self.db, query, column, release::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "planned_release_time" => serde_json::json!(m.planned_release_time),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// The state of each change (by name); None for names that are no change of the tenant.
    async fn change_states(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<(String, Option<ChangeState>)>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<String> =
            names.iter().map(|n| n.trim_start_matches(CHANGE_PREFIX).to_string()).collect();
        let mut values: Vec<Value> = vec![tenant.into()];
        let list = placeholders(&mut values, &numbers);
        let rows = self
            .db
            .query_all_raw(stmt(
                self.db.get_database_backend(),
                &format!("SELECT number, state FROM changes WHERE tenant_id = $1 AND number IN ({list})"),
                values,
            ))
            .await?;
        let mut states = HashMap::new();
        for row in rows {
            let number: String = row.try_get("", "number")?;
            states.insert(number, ChangeState::from_i32(row.try_get("", "state")?));
        }
        Ok(names
            .iter()
            .zip(&numbers)
            .map(|(name, number)| (name.clone(), states.get(number).copied().flatten()))
            .collect())
    }
}

/// History entry and `ReleaseChanged` event, in the caller's transaction.
#[allow(clippy::too_many_arguments)] // the record before and after, and what the event says
async fn record(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    before: Option<&release::Model>,
    after: &release::Model,
    action: &str,
    environment: &str,
    changes: &[history::FieldDiff],
    reason: &str,
) -> Result<(), Error> {
    let entry = NewEntry {
        kind: KIND,
        record_id: &after.id,
        version: after.version,
        change_time: after.update_time,
        action,
        changes,
        reason,
    };
    history::record(txn, ctx, entry).await?;
    let payload = ReleaseChanged {
        action: action.to_string(),
        release: Some(to_proto(if action == "delete" { before.unwrap_or(after) } else { after })),
        environment: environment.to_string(),
        previous_state: before.map_or(0, |b| b.state),
    };
    let name = release_name(&after.number);
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    Ok(())
}

const STATES: &[(i32, &str)] = &[
    (1, "PLANNED"),
    (2, "BUILD"),
    (3, "TEST"),
    (4, "DEPLOY"),
    (5, "REVIEW"),
    (6, "CLOSED"),
    (7, "CANCELLED"),
];
const TYPES: &[(i32, &str)] = &[(1, "MAJOR"), (2, "MINOR"), (3, "EMERGENCY")];

fn release_field(member: &str) -> Option<Field> {
    use release::Column as C;
    use sea_orm::sea_query::Expr;
    let col = |c: C| Expr::col((release::Entity, c));
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "RELEASE_STATE_" },
        "type" => Field::Enum { column: col(C::ReleaseType), values: TYPES, prefix: "RELEASE_TYPE_" },
        "version" => Field::Text(col(C::VersionLabel)),
        "changes" => Field::Contains(col(C::Changes)),
        "planned_release_time" => Field::Time(col(C::PlannedReleaseTime)),
        "create_time" => Field::Time(col(C::CreateTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        _ => return None,
    })
}

pub struct ReleaseApi {
    pub releases: Releases,
    /// The change side: the CMDB client and CanDeploy for the gates.
    pub changes: Arc<ChangeApi>,
    pub page_tokens: PageTokens,
}

impl ReleaseApi {
    /// Checks that the changes exist and the CIs are in the CMDB.
    async fn check_references(
        &self,
        ctx: &CallContext,
        r: &Release,
        has: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(), Error> {
        let mut v = Violations::new();
        if has("changes") {
            for (i, (_, state)) in
                self.releases.change_states(&ctx.tenant, &r.changes).await?.iter().enumerate()
            {
                if state.is_none() {
                    v.add(format!("release.changes[{i}]"), "no such change");
                }
            }
        }
        v.into_result()?;
        if has("configuration_items") && !r.configuration_items.is_empty() {
            let refs: Vec<CiReference<'_>> = r
                .configuration_items
                .iter()
                .enumerate()
                .map(|(i, name)| CiReference {
                    field: format!("release.configuration_items[{i}]"),
                    name,
                    class: None,
                })
                .collect();
            self.changes.cmdb.check(ctx, &refs).await?;
        }
        Ok(())
    }

    /// Every gate of deploying `m` to `environment` now.
    async fn evaluate(
        &self,
        ctx: &CallContext,
        m: &release::Model,
        environment: &str,
    ) -> Result<Vec<Gate>, Error> {
        let state = state_of(m)?;
        let kind = ReleaseType::from_i32(m.release_type)
            .ok_or_else(|| Error::Internal(format!("{} has an unknown type", m.number)))?;
        let rollouts: Vec<RolloutRecord> = records(&m.rollouts);
        let stages: Vec<(String, bool)> = rollouts
            .iter()
            .map(|r| (r.environment.clone(), r.status == RolloutStatus::Deployed as i32))
            .collect();
        let changes = self.releases.change_states(&ctx.tenant, &list_from(&m.changes)).await?;
        // CanDeploy for the release's CIs in that environment (a CI with no environment is in all).
        let cis = list_from(&m.configuration_items);
        let refs: Vec<CiReference<'_>> = cis
            .iter()
            .map(|name| CiReference { field: "release.configuration_items".into(), name, class: None })
            .collect();
        let found =
            if refs.is_empty() { HashMap::new() } else { self.changes.cmdb.check(ctx, &refs).await? };
        let now = now_micros();
        let mut can_deploy = Vec::new();
        for ci in &cis {
            let in_environment =
                found.get(ci).is_none_or(|c| c.environment.is_empty() || c.environment == environment);
            if in_environment {
                let answer = self.changes.deploy_decision(ctx, ci, environment, now).await?;
                can_deploy.push((ci.clone(), answer.allowed, answer.reasons));
            }
        }
        Ok(gates(&GateInputs {
            state,
            kind,
            environment,
            stages: &stages,
            changes: &changes,
            evidence: records::<EvidenceRecord>(&m.evidence).len(),
            can_deploy: &can_deploy,
        }))
    }
}

fn gate_to_proto(g: &Gate) -> ReleaseGate {
    ReleaseGate { gate: g.gate.to_string(), passed: g.passed, detail: g.detail.clone() }
}

fn check_environment(environment: &str) -> Result<(), Error> {
    let mut v = Violations::new();
    validate::text(&mut v, "environment", environment, MAX_NAME, true);
    v.into_result()
}

#[tonic::async_trait]
impl ReleaseService for ReleaseApi {
    async fn create_release(
        &self,
        request: Request<CreateReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(r) = request.release.as_ref() else {
            return Err(Error::invalid("release", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        if ReleaseType::from_i32(r.r#type).is_none() {
            v.add("release.type", "must be MAJOR, MINOR or EMERGENCY");
        }
        check_fields(&mut v, r, &|_| true);
        v.into_result()?;
        let hash = idempotency::request_hash(&request);
        if let Some(name) =
            idempotency::lookup(&self.releases.db, &ctx.tenant, CREATE_METHOD, &request.request_id, &hash)
                .await?
            && let Some(found) =
                Releases::find(&self.releases.db, &ctx.tenant, name.trim_start_matches(PREFIX)).await?
        {
            return Ok(Response::new(to_proto(&found)));
        }
        self.check_references(&ctx, r, &|_| true).await?;
        let mut model = release::Model {
            id: String::new(),
            tenant_id: String::new(),
            number: String::new(),
            release_type: r.r#type,
            state: 0,
            version_label: String::new(),
            short_description: String::new(),
            description: String::new(),
            changes: "[]".into(),
            configuration_items: "[]".into(),
            environments: "[]".into(),
            artefacts: "[]".into(),
            evidence: "[]".into(),
            rollouts: "[]".into(),
            planned_release_time: 0,
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        apply(&mut model, r, &|_| true);
        let created = self.releases.create(&ctx, model, &request.request_id, &hash).await?;
        Ok(Response::new(to_proto(&created)))
    }

    async fn get_release(&self, request: Request<GetReleaseRequest>) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        Ok(Response::new(to_proto(&self.releases.get(&ctx, &number).await?)))
    }

    async fn list_releases(
        &self,
        request: Request<ListReleasesRequest>,
    ) -> Result<Response<ListReleasesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order = filter::parse_order_by(&r.order_by, ORDER_FIELDS)?.unwrap_or(("create_time", true));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "releases", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.releases.list(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListReleasesResponse {
            releases: page.items.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_release(
        &self,
        request: Request<UpdateReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(r) = request.release else {
            return Err(Error::invalid("release", "is required").into());
        };
        let number = number(&r.name, "release.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_fields(&mut v, &r, &|p| mask.contains(p));
        let target = if mask.contains("state") {
            let state = ReleaseState::from_i32(r.state);
            if state.is_none() {
                v.add("release.state", "must be a release state");
            }
            state
        } else {
            None
        };
        v.into_result()?;
        self.check_references(&ctx, &r, &|p| mask.contains(p)).await?;
        let name = release_name(&number);
        let updated = self
            .releases
            .change(&ctx, &number, &r.etag, "update", "", "", |m, _now| {
                let state = state_of(m)?;
                if let Some(field) = CONTENT.iter().find(|f| mask.contains(f))
                    && !state.content_open()
                {
                    return Err(Error::FailedPrecondition(format!(
                        "{name} is {state}: its {field} is fixed once it is deployed"
                    )));
                }
                apply(m, &r, &|p| mask.contains(p));
                if let Some(to) = target
                    && to != state
                {
                    state.check(to).map_err(|why| Error::FailedPrecondition(format!("{name}: {why}")))?;
                    m.state = to as i32;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(to_proto(&updated)))
    }

    async fn delete_release(
        &self,
        request: Request<DeleteReleaseRequest>,
    ) -> Result<Response<DeleteReleaseResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        self.releases.delete(&ctx, &number, &r.etag).await?;
        Ok(Response::new(DeleteReleaseResponse {}))
    }

    async fn attach_test_evidence(
        &self,
        request: Request<AttachTestEvidenceRequest>,
    ) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let evidence = r.evidence.unwrap_or_default();
        let mut v = Violations::new();
        validate::text(&mut v, "evidence.description", &evidence.description, 1000, true);
        validate::text(&mut v, "evidence.url", &evidence.url, 2000, false);
        let web_link = evidence.url.starts_with("https://") || evidence.url.starts_with("http://");
        if !(evidence.url.is_empty() || web_link) {
            v.add("evidence.url", "must be an http(s) URL");
        }
        v.into_result()?;
        let name = release_name(&number);
        let principal = ctx.principal.clone();
        let updated = self
            .releases
            .change(&ctx, &number, "", "evidence", "", &evidence.description.clone(), |m, now| {
                let state = state_of(m)?;
                if matches!(state, ReleaseState::Closed | ReleaseState::Cancelled) {
                    return Err(Error::FailedPrecondition(format!(
                        "{name} is {state}; it takes no more evidence"
                    )));
                }
                let mut list: Vec<EvidenceRecord> = records(&m.evidence);
                list.push(EvidenceRecord {
                    description: evidence.description,
                    url: evidence.url,
                    time: now,
                    by: principal,
                });
                m.evidence = list_to(&list);
                Ok(())
            })
            .await?;
        Ok(Response::new(to_proto(&updated)))
    }

    async fn check_release_gates(
        &self,
        request: Request<CheckReleaseGatesRequest>,
    ) -> Result<Response<CheckReleaseGatesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        check_environment(&r.environment)?;
        let model = self.releases.get(&ctx, &number).await?;
        let gates = self.evaluate(&ctx, &model, &r.environment).await?;
        Ok(Response::new(CheckReleaseGatesResponse {
            passed: gates.iter().all(|g| g.passed),
            gates: gates.iter().map(gate_to_proto).collect(),
        }))
    }

    async fn deploy_release(
        &self,
        request: Request<DeployReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        check_environment(&r.environment)?;
        let model = self.releases.get(&ctx, &number).await?;
        let gates = self.evaluate(&ctx, &model, &r.environment).await?;
        let failed: Vec<String> =
            gates.iter().filter(|g| !g.passed).map(|g| format!("{}: {}", g.gate, g.detail)).collect();
        let name = release_name(&number);
        if !failed.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{name} cannot be deployed to {:?}; failed gates: {}",
                r.environment,
                failed.join("; ")
            ))
            .into());
        }
        let principal = ctx.principal.clone();
        let environment = r.environment.clone();
        let seen_version = model.version;
        let updated = self
            .releases
            .change(&ctx, &number, &r.etag, "deploy", &r.environment, "", |m, now| {
                // The gates were read from this version; anything newer must be checked again.
                if m.version != seen_version {
                    return Err(Error::Aborted(format!(
                        "{name} changed while its gates were checked; retry"
                    )));
                }
                let mut rollouts: Vec<RolloutRecord> = records(&m.rollouts);
                if let Some(rollout) = rollouts.iter_mut().find(|x| x.environment == environment) {
                    rollout.status = RolloutStatus::Deployed as i32;
                    rollout.deploy_time = now;
                    rollout.deployed_by.clone_from(&principal);
                    rollout.rollback_time = 0;
                    rollout.rollback_reason.clear();
                }
                m.rollouts = list_to(&rollouts);
                m.state = ReleaseState::Deploy as i32;
                Ok(())
            })
            .await?;
        Ok(Response::new(to_proto(&updated)))
    }

    async fn rollback_release(
        &self,
        request: Request<RollbackReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        validate::text(&mut v, "environment", &r.environment, MAX_NAME, true);
        validate::text(&mut v, "reason", &r.reason, 1000, true);
        v.into_result()?;
        let name = release_name(&number);
        let environment = r.environment.clone();
        let reason = r.reason.clone();
        let updated = self
            .releases
            .change(&ctx, &number, &r.etag, "rollback", &r.environment, &r.reason, |m, now| {
                let mut rollouts: Vec<RolloutRecord> = records(&m.rollouts);
                let deployed: Vec<String> = rollouts
                    .iter()
                    .filter(|x| x.status == RolloutStatus::Deployed as i32)
                    .map(|x| x.environment.clone())
                    .collect();
                let Some(rollout) = rollouts
                    .iter_mut()
                    .find(|x| x.environment == environment && x.status == RolloutStatus::Deployed as i32)
                else {
                    return Err(Error::FailedPrecondition(format!(
                        "{name} is not deployed to {environment:?}; deployed to: [{}]",
                        deployed.join(", ")
                    )));
                };
                rollout.status = RolloutStatus::RolledBack as i32;
                rollout.rollback_time = now;
                rollout.rollback_reason = reason;
                m.rollouts = list_to(&rollouts);
                Ok(())
            })
            .await?;
        Ok(Response::new(to_proto(&updated)))
    }
}
