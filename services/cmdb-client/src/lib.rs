//! What other services ask the CMDB over gRPC: whether CI names exist (and are of the right
//! class), what the CIs are, and which business services break if one fails. When the CMDB
//! cannot answer, the caller's write is `UNAVAILABLE`: no record names a CI nobody checked.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::Channel;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    AnalyzeImpactRequest, BatchGetConfigurationItemsRequest, ConfigurationItem, ImpactDirection,
    ListConfigurationItemsRequest, ListRelationshipsRequest, RelationshipType,
};
use itsm_runtime::error::Violations;
use itsm_runtime::{CallContext, Error, Settings};

const CI_PREFIX: &str = "configurationItems/";
/// The class a business service must be (or descend from, once the CMDB answers that).
pub const BUSINESS_SERVICE_CLASS: &str = "business_service";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A CI reference to check: the request field it came from and the name.
pub struct CiReference<'a> {
    pub field: String,
    pub name: &'a str,
    /// Required class, when the field demands one.
    pub class: Option<&'static str>,
}

/// A CI's downstream impact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Downstream {
    pub items: Vec<String>,
    pub business_services: Vec<String>,
}

/// One dependency between CIs, with the relationship's numeric properties (`weight`, `usage`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    /// The CI that needs the other.
    pub consumer: String,
    pub provider: String,
    pub numbers: std::collections::BTreeMap<String, f64>,
}

#[derive(Clone)]
pub struct CmdbDirectory {
    channel: Option<Channel>,
    internal_token: String,
}

impl CmdbDirectory {
    /// A lazily connected channel to `upstream.cmdb` (no CMDB configured: every check with a CI
    /// in it is `UNAVAILABLE`).
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let channel = itsm_runtime::upstream::channel(&settings.upstream.cmdb, "upstream.cmdb")?;
        Ok(Self { channel, internal_token: settings.auth.internal_token.clone() })
    }

    /// Checks that every reference is a well-formed CI name that exists in the caller's tenant
    /// (and has the required class). Bad ones become field violations; the CIs found are
    /// returned by name, so a caller that needs them asks the CMDB only once.
    pub async fn check(
        &self,
        ctx: &CallContext,
        references: &[CiReference<'_>],
    ) -> Result<HashMap<String, ConfigurationItem>, Error> {
        let mut violations = Violations::new();
        let mut names: Vec<String> = Vec::new();
        for reference in references {
            let well_formed = reference
                .name
                .strip_prefix(CI_PREFIX)
                .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id));
            if !well_formed {
                violations.add(reference.field.clone(), "must be `configurationItems/{uuid}`");
            } else if !names.iter().any(|n| n == reference.name) {
                names.push(reference.name.to_string());
            }
        }
        violations.into_result()?;
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.lookup(ctx, &names).await?;
        let mut violations = Violations::new();
        for reference in references {
            match found.get(reference.name).map(|ci| &ci.ci_class) {
                None => violations
                    .add(reference.field.clone(), format!("{} does not exist in the CMDB", reference.name)),
                Some(class) => {
                    if let Some(required) = reference.class
                        && class != required
                    {
                        violations
                            .add(reference.field.clone(), format!("must be a {required} (it is a {class})"));
                    }
                }
            }
        }
        violations.into_result()?;
        Ok(found)
    }

    /// Name → CI for the CIs that exist among `names` (well-formed names; at most 1000).
    pub async fn lookup(
        &self,
        ctx: &CallContext,
        names: &[String],
    ) -> Result<HashMap<String, ConfigurationItem>, Error> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let mut client = self.client()?;
        let request = self.request(ctx, BatchGetConfigurationItemsRequest { names: names.to_vec() });
        let response = client.batch_get_configuration_items(request).await.map_err(unavailable)?;
        Ok(response.into_inner().configuration_items.into_iter().map(|ci| (ci.name.clone(), ci)).collect())
    }

    /// Names of the business services that fail when `ci` fails (downstream impact, default depth).
    pub async fn impacted_business_services(
        &self,
        ctx: &CallContext,
        ci: &str,
    ) -> Result<Vec<String>, Error> {
        Ok(self.downstream(ctx, ci).await?.business_services)
    }

    /// What fails when `ci` fails (downstream impact, default depth and relationship types): the
    /// CIs reached (at most 1000, nearest first) and the business services among them.
    pub async fn downstream(&self, ctx: &CallContext, ci: &str) -> Result<Downstream, Error> {
        let mut client = self.client()?;
        let request = self.request(
            ctx,
            AnalyzeImpactRequest {
                configuration_item: ci.to_string(),
                direction: ImpactDirection::Downstream as i32,
                // Business services are cut at max_items too; ask for all of them.
                max_items: 1000,
                ..Default::default()
            },
        );
        let response = client.analyze_impact(request).await.map_err(unavailable)?.into_inner();
        Ok(Downstream {
            items: response.items.into_iter().map(|i| i.configuration_item).collect(),
            business_services: response.business_services.into_iter().map(|s| s.configuration_item).collect(),
        })
    }

    /// Every CI matching `filter` (all pages).
    pub async fn configuration_items(
        &self,
        ctx: &CallContext,
        filter: &str,
    ) -> Result<Vec<ConfigurationItem>, Error> {
        let mut client = self.client()?;
        let mut items = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.request(
                ctx,
                ListConfigurationItemsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    filter: filter.to_string(),
                    order_by: String::new(),
                },
            );
            let page = client.list_configuration_items(request).await.map_err(unavailable)?.into_inner();
            items.extend(page.configuration_items);
            if page.next_page_token.is_empty() {
                return Ok(items);
            }
            page_token = page.next_page_token;
        }
    }

    /// Every dependency in the tenant's CMDB, oriented from the CI that needs another to the
    /// one it needs: `depends on` and `runs on` as recorded, `part of` reversed (the whole
    /// needs its parts).
    pub async fn dependencies(&self, ctx: &CallContext) -> Result<Vec<Dependency>, Error> {
        let mut client = self.client()?;
        let mut edges = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.request(
                ctx,
                ListRelationshipsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    filter: "type = DEPENDS_ON OR type = RUNS_ON OR type = PART_OF".into(),
                },
            );
            let page = client.list_relationships(request).await.map_err(unavailable)?.into_inner();
            for r in page.relationships {
                let numbers = r
                    .properties
                    .iter()
                    .flat_map(|p| p.fields.iter())
                    .filter_map(|(key, value)| match value.kind {
                        Some(prost_types::value::Kind::NumberValue(n)) => Some((key.clone(), n)),
                        _ => None,
                    })
                    .collect();
                let (consumer, provider) = if r.r#type == RelationshipType::PartOf as i32 {
                    (r.target, r.source)
                } else {
                    (r.source, r.target)
                };
                edges.push(Dependency { consumer, provider, numbers });
            }
            if page.next_page_token.is_empty() {
                return Ok(edges);
            }
            page_token = page.next_page_token;
        }
    }

    fn client(&self) -> Result<CmdbServiceClient<Channel>, Error> {
        match &self.channel {
            Some(channel) => Ok(CmdbServiceClient::new(channel.clone())),
            None => Err(Error::Unavailable(
                "the CMDB is not configured (upstream.cmdb); CIs cannot be checked".into(),
            )),
        }
    }

    /// A request carrying the caller's context and a deadline.
    fn request<T>(&self, ctx: &CallContext, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        request
    }
}

#[allow(clippy::needless_pass_by_value)] // shaped for `map_err`
fn unavailable(status: tonic::Status) -> Error {
    Error::Unavailable(format!(
        "the CMDB could not answer ({:?}: {}); try again",
        status.code(),
        status.message()
    ))
}
