//! The service catalogue: business services (their CMDB CIs) as offered to customers, with hours
//! of service, an owner and the customers subscribed.

use std::collections::BTreeSet;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};

use itsm_cmdb_client::{BUSINESS_SERVICE_CLASS, CiReference, CmdbDirectory};
use itsm_proto::common::AuditInfo;
use itsm_proto::delivery::ServiceOffering;
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::history::{change_time, check_etag, etag};
use itsm_runtime::validate::{self, MAX_NAME};
use itsm_runtime::{CallContext, Error};

use super::convert::{AGREEMENT_PREFIX, CALENDAR_PREFIX, id_of};
use super::store::ServiceLevel;
use crate::entity::{agreement, offering};

pub const PREFIX: &str = "serviceOfferings/";
pub const UPDATABLE: &[&str] =
    &["display_name", "business_service", "description", "hours", "owner", "customers"];
const MAX_CUSTOMERS: usize = 500;

#[derive(Clone)]
pub struct Catalogue {
    pub db: DatabaseConnection,
    pub cmdb: CmdbDirectory,
}

fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

pub fn to_proto(m: &offering::Model, agreements: Vec<String>) -> ServiceOffering {
    ServiceOffering {
        name: format!("{PREFIX}{}", m.id),
        display_name: m.display_name.clone(),
        business_service: m.business_service.clone(),
        description: m.description.clone(),
        hours: if m.hours.is_empty() { String::new() } else { format!("{CALENDAR_PREFIX}{}", m.hours) },
        owner: m.owner.clone(),
        customers: serde_json::from_str(&m.customers).unwrap_or_default(),
        service_level_agreements: agreements,
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
    }
}

impl Catalogue {
    /// Checks the masked fields (the business service in the CMDB, the hours calendar) and
    /// applies them to `m`.
    async fn apply(
        &self,
        ctx: &CallContext,
        m: &mut offering::Model,
        o: &ServiceOffering,
        has: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(), Error> {
        let mut v = Violations::new();
        if has("display_name") {
            validate::text(&mut v, "service_offering.display_name", &o.display_name, MAX_NAME, true);
        }
        if has("description") {
            validate::text(&mut v, "service_offering.description", &o.description, 4000, false);
        }
        if has("owner") {
            validate::text(&mut v, "service_offering.owner", &o.owner, MAX_NAME, false);
        }
        let mut hours = m.hours.clone();
        if has("hours") {
            hours.clear();
            if !o.hours.is_empty() {
                match id_of(&o.hours, CALENDAR_PREFIX, "service_offering.hours") {
                    Ok(id) if ServiceLevel::find_calendar(&self.db, &ctx.tenant, &id).await?.is_some() => {
                        hours = id;
                    }
                    Ok(_) => v.add("service_offering.hours", format!("no such calendar: {}", o.hours)),
                    Err(_) => v.add("service_offering.hours", "must be `businessCalendars/{id}`"),
                }
            }
        }
        let mut customers = Vec::new();
        if has("customers") {
            if o.customers.len() > MAX_CUSTOMERS {
                v.add("service_offering.customers", format!("at most {MAX_CUSTOMERS} customers"));
            }
            let mut seen = BTreeSet::new();
            for (i, c) in o.customers.iter().enumerate() {
                validate::text(&mut v, &format!("service_offering.customers[{i}]"), c, MAX_NAME, true);
                if !seen.insert(c) {
                    v.add(format!("service_offering.customers[{i}]"), "is listed twice");
                }
            }
            customers.clone_from(&o.customers);
        }
        if has("business_service") && o.business_service.is_empty() {
            v.add("service_offering.business_service", "is required");
        }
        v.into_result()?;
        if has("business_service") {
            let reference = CiReference {
                field: "service_offering.business_service".into(),
                name: &o.business_service,
                class: Some(BUSINESS_SERVICE_CLASS),
            };
            self.cmdb.check(ctx, &[reference]).await?;
            m.business_service.clone_from(&o.business_service);
        }
        if has("display_name") {
            m.display_name.clone_from(&o.display_name);
        }
        if has("description") {
            m.description.clone_from(&o.description);
        }
        if has("owner") {
            m.owner.clone_from(&o.owner);
        }
        m.hours = hours;
        if has("customers") {
            m.customers = serde_json::to_string(&customers).unwrap_or_else(|_| "[]".into());
        }
        Ok(())
    }

    async fn ensure_name_free(
        db: &impl ConnectionTrait,
        tenant: &str,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), Error> {
        let found = offering::Entity::find()
            .filter(offering::Column::TenantId.eq(tenant))
            .filter(offering::Column::DisplayName.eq(name))
            .one(db)
            .await?;
        match found {
            Some(other) if Some(other.id.as_str()) != except => Err(Error::AlreadyExists(format!(
                "an offering named {name:?} already exists: {PREFIX}{}",
                other.id
            ))),
            _ => Ok(()),
        }
    }

    pub async fn create(&self, ctx: &CallContext, o: &ServiceOffering) -> Result<ServiceOffering, Error> {
        let now = now_micros();
        let mut m = offering::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ctx.tenant.clone(),
            display_name: String::new(),
            business_service: String::new(),
            description: String::new(),
            hours: String::new(),
            owner: String::new(),
            customers: "[]".into(),
            version: 1,
            create_time: now,
            update_time: now,
            creator: ctx.principal.clone(),
            updater: ctx.principal.clone(),
        };
        self.apply(ctx, &mut m, o, &|_| true).await?;
        let txn = self.db.begin().await?;
        Self::ensure_name_free(&txn, &ctx.tenant, &m.display_name, None).await?;
        m.clone().into_active_model().reset_all().insert(&txn).await?;
        txn.commit().await?;
        self.view(ctx, &m).await
    }

    async fn find(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<offering::Model>, Error> {
        Ok(offering::Entity::find()
            .filter(offering::Column::TenantId.eq(tenant))
            .filter(offering::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub async fn get(&self, ctx: &CallContext, id: &str) -> Result<ServiceOffering, Error> {
        let m = Self::find(&self.db, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        self.view(ctx, &m).await
    }

    /// The offering with the active agreements on its business service.
    async fn view(&self, ctx: &CallContext, m: &offering::Model) -> Result<ServiceOffering, Error> {
        let agreements = agreement::Entity::find()
            .filter(agreement::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(agreement::Column::BusinessService.eq(m.business_service.as_str()))
            .filter(agreement::Column::Active.eq(true))
            .all(&self.db)
            .await?;
        Ok(to_proto(m, agreements.iter().map(|a| format!("{AGREEMENT_PREFIX}{}", a.id)).collect()))
    }

    pub async fn list(
        &self,
        ctx: &CallContext,
        business_service: &str,
        customer: &str,
    ) -> Result<Vec<ServiceOffering>, Error> {
        let mut query = offering::Entity::find().filter(offering::Column::TenantId.eq(ctx.tenant.as_str()));
        if !business_service.is_empty() {
            query = query.filter(offering::Column::BusinessService.eq(business_service));
        }
        let rows = query.order_by_asc(offering::Column::DisplayName).all(&self.db).await?;
        let mut out = Vec::new();
        for m in rows {
            let customers: Vec<String> = serde_json::from_str(&m.customers).unwrap_or_default();
            if customer.is_empty() || customers.iter().any(|c| c == customer) {
                out.push(self.view(ctx, &m).await?);
            }
        }
        Ok(out)
    }

    pub async fn update(
        &self,
        ctx: &CallContext,
        id: &str,
        o: &ServiceOffering,
        has: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<ServiceOffering, Error> {
        let current = Self::find(&self.db, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        check_etag(&o.etag, current.version, &format!("{PREFIX}{id}"))?;
        let mut after = current.clone();
        self.apply(ctx, &mut after, o, has).await?;
        if after == current {
            return self.view(ctx, &current).await;
        }
        let txn = self.db.begin().await?;
        Self::ensure_name_free(&txn, &ctx.tenant, &after.display_name, Some(id)).await?;
        after.version = current.version + 1;
        after.update_time = change_time(current.update_time);
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let done = offering::Entity::update_many()
            .set(active)
            .filter(offering::Column::Id.eq(id))
            .filter(offering::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(Error::Aborted(format!("{PREFIX}{id} was changed concurrently; read it again")));
        }
        txn.commit().await?;
        self.view(ctx, &after).await
    }

    pub async fn delete(&self, ctx: &CallContext, id: &str, etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{PREFIX}{id}"))?;
        offering::Entity::delete_by_id(current.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}
