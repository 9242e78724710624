//! API keys for machines. The secret is `itsm_<key id>_<random>`; only its SHA-256 is stored.
//! Every gateway replica keeps the active keys in memory (the admission check is synchronous)
//! and re-reads them from its database every few seconds, so a revocation reaches all replicas
//! quickly; on the replica that revoked it, at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use sea_orm_migration::prelude::*;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use itsm_proto::common::AuditInfo;
use itsm_proto::gateway::api_key_service_server::ApiKeyService;
use itsm_proto::gateway::{
    ApiKey, CreateApiKeyRequest, ListApiKeysRequest, ListApiKeysResponse, RevokeApiKeyRequest,
};
use itsm_runtime::context::tokens_match;
use itsm_runtime::db::{execute_for_backend, now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::{CallContext, Error};

pub const PREFIX: &str = "itsm_";
const REFRESH: Duration = Duration::from_secs(5);

pub mod key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        /// 16 hex digits, also the public part of the secret.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub display_name: String,
        pub roles: String,
        /// SHA-256 of the whole secret, hex.
        pub secret_hash: String,
        pub create_time: i64,
        pub creator: String,
        /// 0 while active.
        pub revoke_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who a valid key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub tenant: String,
    pub principal: String,
    pub roles: Vec<String>,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The active keys, by id.
#[derive(Clone, Default)]
pub struct KeyStore {
    active: Arc<RwLock<HashMap<String, key::Model>>>,
}

impl KeyStore {
    pub async fn load(&self, db: &DatabaseConnection) -> Result<(), Error> {
        let rows = key::Entity::find().filter(key::Column::RevokeTime.eq(0)).all(db).await?;
        let map = rows.into_iter().map(|k| (k.id.clone(), k)).collect();
        if let Ok(mut active) = self.active.write() {
            *active = map;
        }
        Ok(())
    }

    /// Re-reads the keys every few seconds (other replicas create and revoke them too).
    pub async fn follow(self, db: DatabaseConnection) {
        let mut ticker = tokio::time::interval(REFRESH);
        loop {
            ticker.tick().await;
            if let Err(err) = self.load(&db).await {
                tracing::warn!(error = %err, "API keys could not be re-read; keeping the known ones");
            }
        }
    }

    /// The identity of a presented secret, or why not.
    pub fn verify(&self, secret: &str) -> Result<KeyIdentity, String> {
        let id = secret.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).unwrap_or_default();
        let active = self.active.read().map_err(|_| "key store unavailable".to_string())?;
        let found = active.get(id).ok_or("unknown or revoked API key")?;
        if !tokens_match(hash(secret).as_bytes(), found.secret_hash.as_bytes()) {
            return Err("unknown or revoked API key".into());
        }
        Ok(KeyIdentity {
            tenant: found.tenant_id.clone(),
            principal: format!("apikey:{}", found.display_name),
            roles: found.roles.split(',').filter(|r| !r.is_empty()).map(String::from).collect(),
        })
    }

    fn put(&self, model: &key::Model) {
        if let Ok(mut active) = self.active.write() {
            if model.revoke_time == 0 {
                active.insert(model.id.clone(), model.clone());
            } else {
                active.remove(&model.id);
            }
        }
    }
}

pub struct ApiKeyApi {
    pub db: DatabaseConnection,
    pub store: KeyStore,
}

fn to_proto(m: &key::Model, secret: String) -> ApiKey {
    ApiKey {
        name: format!("apiKeys/{}", m.id),
        display_name: m.display_name.clone(),
        roles: m.roles.split(',').filter(|r| !r.is_empty()).map(String::from).collect(),
        secret,
        revoke_time: (m.revoke_time > 0).then(|| timestamp(m.revoke_time)),
        audit: Some(AuditInfo {
            create_time: Some(timestamp(m.create_time)),
            update_time: Some(timestamp(std::cmp::max(m.revoke_time, m.create_time))),
            creator: m.creator.clone(),
            updater: m.creator.clone(),
        }),
    }
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(wanted) = request.into_inner().api_key else {
            return Err(Error::invalid("api_key", "is required").into());
        };
        let mut v = Violations::new();
        itsm_runtime::validate::text(&mut v, "api_key.display_name", &wanted.display_name, 100, true);
        if wanted.display_name.contains(',') || wanted.display_name.chars().any(char::is_control) {
            v.add("api_key.display_name", "must not contain commas or control characters");
        }
        if wanted.roles.is_empty() {
            v.add("api_key.roles", "at least one role");
        }
        for (i, role) in wanted.roles.iter().enumerate() {
            if !crate::authz::ROLES.contains(&role.as_str()) {
                v.add(
                    format!("api_key.roles[{i}]"),
                    format!("unknown role; roles: {}", crate::authz::ROLES.join(", ")),
                );
            }
        }
        v.into_result()?;
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let mut id_bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut id_bytes);
        let id = hex::encode(id_bytes);
        let secret = format!("{PREFIX}{id}_{}", hex::encode(random));
        let model = key::Model {
            id,
            tenant_id: ctx.tenant.clone(),
            display_name: wanted.display_name.trim().to_string(),
            roles: wanted.roles.join(","),
            secret_hash: hash(&secret),
            create_time: now_micros(),
            creator: ctx.principal.clone(),
            revoke_time: 0,
        };
        model.clone().into_active_model().reset_all().insert(&self.db).await.map_err(Error::from)?;
        self.store.put(&model);
        Ok(Response::new(to_proto(&model, secret)))
    }

    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let rows = key::Entity::find()
            .filter(key::Column::TenantId.eq(ctx.tenant.as_str()))
            .order_by_asc(key::Column::CreateTime)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(ListApiKeysResponse {
            api_keys: rows.iter().map(|m| to_proto(m, String::new())).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = &request.get_ref().name;
        let id = name
            .strip_prefix("apiKeys/")
            .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::invalid("name", "must be `apiKeys/{id}`"))?;
        let found = key::Entity::find()
            .filter(key::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(key::Column::Id.eq(id))
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(name.clone()))?;
        let mut revoked = found.clone();
        if revoked.revoke_time == 0 {
            revoked.revoke_time = now_micros();
            revoked.clone().into_active_model().reset_all().update(&self.db).await.map_err(Error::from)?;
        }
        self.store.put(&revoked);
        Ok(Response::new(to_proto(&revoked, String::new())))
    }
}

/// The gateway's API key table.
pub struct CreateApiKeys;

impl MigrationName for CreateApiKeys {
    fn name(&self) -> &str {
        "m20261125_500002_api_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateApiKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = "CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    roles TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    revoke_time BIGINT NOT NULL
)";
        execute_for_backend(manager.get_connection(), sql, sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS api_keys").await?;
        Ok(())
    }
}
