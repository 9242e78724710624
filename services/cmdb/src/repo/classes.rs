//! The tenant's CI classes: the built-in tree plus rows of `ci_classes`.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
};

use itsm_proto::cmdb::CiClass;
use itsm_proto::common::AuditInfo;
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::{CallContext, Error};

use super::Repository;
use crate::convert::more::class_to_proto;
use crate::domain::classes::{AttrDef, ClassDef, ClassRegistry};
use crate::entity::{ci_class, configuration_item as ci};

fn to_def(row: &ci_class::Model) -> ClassDef {
    ClassDef {
        id: row.class_id.clone(),
        display_name: row.display_name.clone(),
        parent: (!row.parent.is_empty()).then(|| row.parent.clone()),
        description: row.description.clone(),
        attributes: serde_json::from_str::<Vec<AttrDef>>(&row.attributes).unwrap_or_default(),
        natural_key: serde_json::from_str::<Vec<String>>(&row.natural_key).unwrap_or_default(),
        builtin: false,
    }
}

fn audit(row: &ci_class::Model) -> AuditInfo {
    AuditInfo {
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
        creator: row.creator.clone(),
        updater: row.updater.clone(),
    }
}

impl Repository {
    /// The classes one tenant sees.
    pub(crate) async fn registry(db: &impl ConnectionTrait, tenant: &str) -> Result<ClassRegistry, Error> {
        let rows = ci_class::Entity::find().filter(ci_class::Column::TenantId.eq(tenant)).all(db).await?;
        Ok(ClassRegistry::new(rows.iter().map(to_def).collect()))
    }

    pub async fn create_class(&self, ctx: &CallContext, class: ClassDef) -> Result<CiClass, Error> {
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let problems = registry.check_new(&class);
        if !problems.is_empty() {
            return Err(Error::InvalidArgument(
                problems
                    .into_iter()
                    .map(|p| itsm_runtime::error::FieldViolation::new(p.field, p.reason))
                    .collect(),
            ));
        }
        let now = now_micros();
        let row = ci_class::Model {
            tenant_id: ctx.tenant.clone(),
            class_id: class.id.clone(),
            display_name: class.display_name.clone(),
            parent: class.parent.clone().unwrap_or_default(),
            description: class.description.clone(),
            attributes: serde_json::to_string(&class.attributes)
                .map_err(|e| Error::Internal(e.to_string()))?,
            natural_key: serde_json::to_string(&class.natural_key)
                .map_err(|e| Error::Internal(e.to_string()))?,
            version: 1,
            create_time: now,
            update_time: now,
            creator: ctx.principal.clone(),
            updater: ctx.principal.clone(),
        };
        row.clone().into_active_model().reset_all().insert(&self.db).await?;
        let registry = ClassRegistry::new(
            registry.all().filter(|c| !c.builtin).cloned().chain(std::iter::once(to_def(&row))).collect(),
        );
        let def = to_def(&row);
        Ok(class_to_proto(&def, &registry, Some(audit(&row)), row.version))
    }

    pub async fn get_class(&self, ctx: &CallContext, id: &str) -> Result<CiClass, Error> {
        let rows = ci_class::Entity::find()
            .filter(ci_class::Column::TenantId.eq(ctx.tenant.as_str()))
            .all(&self.db)
            .await?;
        let registry = ClassRegistry::new(rows.iter().map(to_def).collect());
        let class = registry.get(id).ok_or_else(|| Error::NotFound(format!("ciClasses/{id}")))?;
        let row = rows.iter().find(|r| r.class_id == id);
        Ok(class_to_proto(class, &registry, row.map(audit), row.map_or(1, |r| r.version)))
    }

    pub async fn list_classes(&self, ctx: &CallContext) -> Result<Vec<CiClass>, Error> {
        let rows = ci_class::Entity::find()
            .filter(ci_class::Column::TenantId.eq(ctx.tenant.as_str()))
            .all(&self.db)
            .await?;
        let registry = ClassRegistry::new(rows.iter().map(to_def).collect());
        Ok(registry
            .all()
            .map(|class| {
                let row = rows.iter().find(|r| r.class_id == class.id);
                class_to_proto(class, &registry, row.map(audit), row.map_or(1, |r| r.version))
            })
            .collect())
    }

    pub async fn delete_class(&self, ctx: &CallContext, id: &str) -> Result<(), Error> {
        let registry = Self::registry(&self.db, &ctx.tenant).await?;
        let class = registry.get(id).ok_or_else(|| Error::NotFound(format!("ciClasses/{id}")))?;
        if class.builtin {
            return Err(Error::FailedPrecondition(format!("{id} is a built-in class and cannot be deleted")));
        }
        if let Some(child) = registry.all().find(|c| c.parent.as_deref() == Some(id)) {
            return Err(Error::FailedPrecondition(format!(
                "{id} has the subclass {}; delete it first",
                child.id
            )));
        }
        let used = ci::Entity::find()
            .filter(ci::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci::Column::CiClass.eq(id))
            .count(&self.db)
            .await?;
        if used > 0 {
            return Err(Error::FailedPrecondition(format!("{used} configuration item(s) have class {id}")));
        }
        ci_class::Entity::delete_many()
            .filter(ci_class::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ci_class::Column::ClassId.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
