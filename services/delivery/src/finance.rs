//! `itsm.delivery.v1.FinanceService`: cost items (by hand or from FOCUS billing files),
//! allocation through the CMDB's dependency graph to business services, budgets against
//! actuals, showback and chargeback. Money is `rust_decimal`, never a float.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use tonic::{Request, Response, Status};

use itsm_cmdb_client::{BUSINESS_SERVICE_CLASS, CiReference, CmdbDirectory};
use itsm_proto::common::Money;
use itsm_proto::delivery::finance_service_server::FinanceService;
use itsm_proto::delivery::{
    AllocateCostsRequest, AllocationLine as AllocationLineProto, AllocationMethod as MethodProto,
    BillingRowIssue, Budget, BudgetLine, BudgetReport, ChargeRate, ChargebackReport, CostAllocation,
    CostItem, CostPool, CostType, CreateBudgetRequest, CreateChargeRateRequest, CreateCostItemRequest,
    CustomerCharge, DeleteCostItemRequest, DeleteCostItemResponse, GetBudgetReportRequest,
    GetChargebackReportRequest, GetCostItemRequest, GetTotalCostOfOwnershipRequest,
    IdleCost as IdleCostProto, ImportBillingDataRequest, ImportBillingDataResponse, ListBudgetsRequest,
    ListBudgetsResponse, ListChargeRatesRequest, ListChargeRatesResponse, ListCostItemsRequest,
    ListCostItemsResponse, MonthlyCost, PoolCost, PriceModel as PriceModelProto,
    ServiceCost as ServiceCostProto, TotalCostOfOwnership, UpdateCostItemRequest,
};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::paging::PageTokens;
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error};

use crate::domain::allocation::{self, AllocationInput, AllocationMethod, CostSource, Edge, PriceModel};
use crate::domain::focus::{self, AllocationExportLine, CiMatcher, FocusError, FocusVersion};
use crate::domain::money::{Currency, split_largest_remainder};
use crate::entity::capacity_sample;
use itsm_runtime::documents::{Column, Columns, Document, Documents, Kind, Listing};

pub const COST_ITEMS: Kind = Kind {
    prefix: "costItems/",
    create_method: "CreateCostItem",
    filters: &[
        ("period", Column::Period),
        ("configuration_item", Column::Subject),
        ("cost_center", Column::Owner),
        ("source", Column::Parent),
        ("currency_code", Column::State),
        ("display_name", Column::DisplayName),
    ],
};
pub const BUDGETS: Kind = Kind {
    prefix: "budgets/",
    create_method: "CreateBudget",
    filters: &[
        ("period", Column::Period),
        ("business_service", Column::Subject),
        ("cost_center", Column::Owner),
    ],
};
pub const CHARGE_RATES: Kind = Kind {
    prefix: "chargeRates/",
    create_method: "CreateChargeRate",
    filters: &[
        ("period", Column::Period),
        ("business_service", Column::Subject),
        ("customer", Column::Owner),
    ],
};
pub const BILLING_IMPORTS: Kind =
    Kind { prefix: "billingImports/", create_method: "ImportBillingData", filters: &[] };

const UPDATABLE: &[&str] =
    &["display_name", "amount", "period", "configuration_item", "cost_type", "cost_center", "pool"];
/// Tag whose value names a CI, when the caller names none.
const DEFAULT_CI_TAG: &str = "itsm-ci";
const DEFAULT_MAX_LINES: usize = 1000;
const MAX_LINES: usize = 100_000;
const CI_PREFIX: &str = "configurationItems/";

/// An exact decimal from a proto `Money` (units and nanos).
pub fn decimal_of(m: &Money) -> Decimal {
    Decimal::from(m.units) + Decimal::new(i64::from(m.nanos), 9)
}

/// A proto `Money` from an exact decimal (rounded to nanos).
pub fn money_of(amount: Decimal, currency: &str) -> Money {
    let amount = amount.round_dp(9);
    let units = amount.trunc();
    let nanos = ((amount - units) * Decimal::from(1_000_000_000)).trunc();
    Money {
        currency_code: currency.to_string(),
        units: i64::try_from(units).unwrap_or(if amount.is_sign_negative() { i64::MIN } else { i64::MAX }),
        nanos: i32::try_from(nanos).unwrap_or_default(),
    }
}

fn check_money(v: &mut Violations, field: &str, m: Option<&Money>) -> Option<(Decimal, Currency)> {
    let Some(m) = m else {
        v.add(field, "is required");
        return None;
    };
    let currency = match Currency::parse(&m.currency_code) {
        Ok(c) => Some(c),
        Err(e) => {
            v.add(format!("{field}.currency_code"), e.to_string());
            None
        }
    };
    if !(-999_999_999..=999_999_999).contains(&m.nanos)
        || (m.units > 0 && m.nanos < 0)
        || (m.units < 0 && m.nanos > 0)
    {
        v.add(format!("{field}.nanos"), "must be within ±999,999,999 and have the sign of units");
        return None;
    }
    currency.map(|c| (decimal_of(m), c))
}

/// "YYYY-MM".
fn check_period(v: &mut Violations, field: &str, period: &str) {
    let ok =
        period.len() == 7 && chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").is_ok();
    if !ok {
        v.add(field, "must be a month, `YYYY-MM`");
    }
}

fn check_ci_name(v: &mut Violations, field: &str, name: &str, required: bool) {
    if name.is_empty() {
        if required {
            v.add(field, "is required");
        }
        return;
    }
    let ok = name.strip_prefix(CI_PREFIX).is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    if !ok {
        v.add(field, "must be `configurationItems/{id}`");
    }
}

fn method_of(method: i32) -> AllocationMethod {
    match MethodProto::try_from(method) {
        Ok(MethodProto::Weight) => AllocationMethod::Weight,
        Ok(MethodProto::Usage) => AllocationMethod::Usage,
        _ => AllocationMethod::Even,
    }
}

/// The indexed columns of a cost item.
pub fn cost_columns(c: &CostItem) -> Columns {
    Columns {
        subject: c.configuration_item.clone(),
        parent: c.source.clone(),
        period: c.period.clone(),
        display_name: c.display_name.clone(),
        state: c.amount.as_ref().map(|m| m.currency_code.clone()).unwrap_or_default(),
        owner: c.cost_center.clone(),
        unique_key: None,
    }
}

fn present_cost(d: Document<CostItem>) -> CostItem {
    CostItem { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn check_cost_item(v: &mut Violations, c: &CostItem, has: &dyn Fn(&str) -> bool) {
    if has("display_name") {
        validate::text(v, "cost_item.display_name", &c.display_name, 200, true);
    }
    if has("amount") {
        check_money(v, "cost_item.amount", c.amount.as_ref());
    }
    if has("period") {
        check_period(v, "cost_item.period", &c.period);
    }
    if has("configuration_item") {
        check_ci_name(v, "cost_item.configuration_item", &c.configuration_item, false);
    }
    if has("cost_type") && CostType::try_from(c.cost_type).is_err() {
        v.add("cost_item.cost_type", "is not a cost type");
    }
    if has("cost_center") {
        validate::text(v, "cost_item.cost_center", &c.cost_center, 100, false);
    }
    if has("pool") && !matches!(CostPool::try_from(c.pool), Ok(p) if p != CostPool::Unspecified) {
        v.add("cost_item.pool", "must be one of HARDWARE, SOFTWARE, PEOPLE, FACILITIES, CLOUD, SERVICES");
    }
}

/// The finance API.
pub struct FinanceApi {
    pub documents: Documents,
    pub cmdb: CmdbDirectory,
    pub page_tokens: PageTokens,
}

/// A period's cost items in one currency, allocated.
struct Allocated {
    result: allocation::AllocationResult,
    /// Business service → display name.
    services: HashMap<String, String>,
    minor_units: u32,
    currency: String,
    /// The period's cost items (all currencies), for reports that need more than the totals.
    items: Vec<Document<CostItem>>,
}

impl FinanceApi {
    async fn check_cis(&self, ctx: &CallContext, refs: &[CiReference<'_>]) -> Result<(), Error> {
        if refs.iter().all(|r| r.name.is_empty()) {
            return Ok(());
        }
        let refs: Vec<CiReference<'_>> = refs
            .iter()
            .filter(|r| !r.name.is_empty())
            .map(|r| CiReference { field: r.field.clone(), name: r.name, class: r.class })
            .collect();
        self.cmdb.check(ctx, &refs).await.map(|_| ())
    }

    /// Allocates `period`'s costs in `currency` through the CMDB graph.
    async fn allocate(
        &self,
        ctx: &CallContext,
        period: &str,
        currency: &Currency,
        method: AllocationMethod,
        usage_metric: &str,
    ) -> Result<Allocated, Error> {
        let usage = if method == AllocationMethod::Usage && !usage_metric.is_empty() {
            self.usage_by_ci(ctx, period, usage_metric).await?
        } else {
            HashMap::new()
        };
        let items: Vec<Document<CostItem>> =
            Documents::all_where(&self.documents.db, &COST_ITEMS, &ctx.tenant, Column::Period, period)
                .await?;
        let services: HashMap<String, String> = self
            .cmdb
            .configuration_items(ctx, &format!("ci_class = \"{BUSINESS_SERVICE_CLASS}\""))
            .await?
            .into_iter()
            .map(|ci| (ci.name, ci.display_name))
            .collect();
        let edges = self
            .cmdb
            .dependencies(ctx)
            .await?
            .into_iter()
            .map(|d| Edge {
                weight: d.numbers.get("weight").and_then(|n| Decimal::from_f64_retain(*n)),
                usage: usage
                    .get(&d.consumer)
                    .copied()
                    .or_else(|| d.numbers.get("usage").and_then(|n| Decimal::from_f64_retain(*n))),
                consumer: d.consumer,
                provider: d.provider,
            })
            .collect();
        // Imported billing rows are often fractions of a cent each: they are summed per import
        // and CI before rounding, so the cents are not lost row by row. The source named is the
        // import (its rows are listed with `source` filters); other items stand alone.
        let mut grouped: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        let mut sources = Vec::new();
        for d in items.iter().filter(|d| d.columns.state == currency.code()) {
            let Some(m) = &d.body.amount else { continue };
            match d.body.source.split_once(':') {
                Some((import, _)) if import.starts_with(BILLING_IMPORTS.prefix) => {
                    *grouped.entry((import.to_string(), d.body.configuration_item.clone())).or_default() +=
                        decimal_of(m);
                }
                _ => sources.push(CostSource {
                    id: d.name.clone(),
                    configuration_item: d.body.configuration_item.clone(),
                    amount: decimal_of(m),
                }),
            }
        }
        sources.extend(grouped.into_iter().map(|((import, ci), amount)| CostSource {
            id: import,
            configuration_item: ci,
            amount,
        }));
        let input = AllocationInput {
            edges,
            business_services: services.keys().cloned().collect::<HashSet<String>>(),
            sources,
            method,
            minor_units: currency.minor_units(),
        };
        let result = allocation::allocate(&input).map_err(|e| Error::invalid("method", e.to_string()))?;
        Ok(Allocated {
            result,
            services,
            minor_units: currency.minor_units(),
            currency: currency.code().to_string(),
            items,
        })
    }
}

impl FinanceApi {
    /// CI → mean of its capacity resource with `metric` over the period (daily buckets).
    async fn usage_by_ci(
        &self,
        ctx: &CallContext,
        period: &str,
        metric: &str,
    ) -> Result<HashMap<String, Decimal>, Error> {
        let (start, end) = period_bounds(period);
        let resources: Vec<Document<itsm_proto::delivery::CapacityResource>> = Documents::all_where(
            &self.documents.db,
            &crate::capacity::RESOURCES,
            &ctx.tenant,
            Column::Parent,
            metric,
        )
        .await?;
        let mut usage = HashMap::new();
        for resource in resources {
            let buckets = capacity_sample::Entity::find()
                .filter(capacity_sample::Column::ResourceId.eq(resource.id.as_str()))
                .filter(capacity_sample::Column::WidthSeconds.eq(86_400_i64))
                .filter(capacity_sample::Column::StartTime.gte(start.timestamp_micros()))
                .filter(capacity_sample::Column::StartTime.lt(end.timestamp_micros()))
                .all(&self.documents.db)
                .await?;
            let count: i64 = buckets.iter().map(|b| b.count).sum();
            if count > 0 {
                let mean = buckets.iter().map(|b| b.sum_value).sum::<f64>() / count as f64;
                if let Some(mean) = Decimal::from_f64_retain(mean).filter(|m| !m.is_sign_negative()) {
                    usage.insert(resource.body.configuration_item.clone(), mean.round_dp(6));
                }
            }
        }
        Ok(usage)
    }
}

fn period_bounds(period: &str) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, NaiveDate, TimeZone, Utc};
    let start = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").unwrap_or_default();
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
    }
    .unwrap_or(start);
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    (at(start), at(next))
}

/// The months from `start` to `end` ("YYYY-MM", both valid), at most 36.
fn months_between(start: &str, end: &str) -> Result<Vec<String>, Error> {
    use chrono::{Datelike, NaiveDate};
    let parse = |p: &str| NaiveDate::parse_from_str(&format!("{p}-01"), "%Y-%m-%d").unwrap_or_default();
    let (mut at, last) = (parse(start), parse(end));
    if last < at {
        return Err(Error::invalid("end_period", "must not be before start_period"));
    }
    let mut months = Vec::new();
    while at <= last {
        if months.len() == 36 {
            return Err(Error::invalid("end_period", "at most 36 months"));
        }
        months.push(at.format("%Y-%m").to_string());
        at = if at.month() == 12 {
            NaiveDate::from_ymd_opt(at.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(at.year(), at.month() + 1, 1)
        }
        .unwrap_or(last + chrono::Days::new(1));
    }
    Ok(months)
}

fn check_report_request(period: &str, currency: &str) -> Result<Currency, Error> {
    let mut v = Violations::new();
    check_period(&mut v, "period", period);
    let parsed = Currency::parse(currency).map_err(|e| v.add("currency_code", e.to_string())).ok();
    v.into_result()?;
    parsed.ok_or_else(|| Error::invalid("currency_code", "is required"))
}

#[tonic::async_trait]
impl FinanceService for FinanceApi {
    async fn create_cost_item(
        &self,
        request: Request<CreateCostItemRequest>,
    ) -> Result<Response<CostItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(c) = r.cost_item.as_ref() else {
            return Err(Error::invalid("cost_item", "is required").into());
        };
        let mut v = Violations::new();
        check_cost_item(&mut v, c, &|_| true);
        v.into_result()?;
        self.check_cis(
            &ctx,
            &[CiReference {
                field: "cost_item.configuration_item".into(),
                name: &c.configuration_item,
                class: None,
            }],
        )
        .await?;
        let body = CostItem {
            name: String::new(),
            etag: String::new(),
            audit: None,
            source: String::new(),
            ..c.clone()
        };
        let hash = idempotency::request_hash(&r);
        let stored = self
            .documents
            .create(&COST_ITEMS, &ctx, &r.request_id, &hash, cost_columns(&body), &body)
            .await?;
        Ok(Response::new(present_cost(stored)))
    }

    async fn get_cost_item(
        &self,
        request: Request<GetCostItemRequest>,
    ) -> Result<Response<CostItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.documents.get(&COST_ITEMS, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(present_cost(d)))
    }

    async fn list_cost_items(
        &self,
        request: Request<ListCostItemsRequest>,
    ) -> Result<Response<ListCostItemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing = Listing {
            page_size: r.page_size,
            page_token: &r.page_token,
            filter: &r.filter,
            order_by: &r.order_by,
        };
        let (items, next_page_token) =
            self.documents.list::<CostItem>(&COST_ITEMS, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListCostItemsResponse {
            cost_items: items.into_iter().map(present_cost).collect(),
            next_page_token,
        }))
    }

    async fn update_cost_item(
        &self,
        request: Request<UpdateCostItemRequest>,
    ) -> Result<Response<CostItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(c) = r.cost_item else { return Err(Error::invalid("cost_item", "is required").into()) };
        let id = COST_ITEMS.id_of(&c.name, "cost_item.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_cost_item(&mut v, &c, &|p| mask.contains(p));
        v.into_result()?;
        if mask.contains("configuration_item") {
            self.check_cis(
                &ctx,
                &[CiReference {
                    field: "cost_item.configuration_item".into(),
                    name: &c.configuration_item,
                    class: None,
                }],
            )
            .await?;
        }
        let stored = self
            .documents
            .update(&COST_ITEMS, &ctx, &id, &c.etag, |current: &Document<CostItem>| {
                let mut after = current.body.clone();
                if mask.contains("display_name") {
                    after.display_name.clone_from(&c.display_name);
                }
                if mask.contains("amount") {
                    after.amount.clone_from(&c.amount);
                }
                if mask.contains("period") {
                    after.period.clone_from(&c.period);
                }
                if mask.contains("configuration_item") {
                    after.configuration_item.clone_from(&c.configuration_item);
                }
                if mask.contains("cost_type") {
                    after.cost_type = c.cost_type;
                }
                if mask.contains("cost_center") {
                    after.cost_center.clone_from(&c.cost_center);
                }
                if mask.contains("pool") {
                    after.pool = c.pool;
                }
                Ok((cost_columns(&after), after))
            })
            .await?;
        Ok(Response::new(present_cost(stored)))
    }

    async fn delete_cost_item(
        &self,
        request: Request<DeleteCostItemRequest>,
    ) -> Result<Response<DeleteCostItemResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let id = COST_ITEMS.id_of(&r.name, "name")?;
        self.documents.delete(&COST_ITEMS, &ctx, &id, &r.etag).await?;
        Ok(Response::new(DeleteCostItemResponse {}))
    }

    async fn import_billing_data(
        &self,
        request: Request<ImportBillingDataRequest>,
    ) -> Result<Response<ImportBillingDataResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        idempotency::validate_request_id(&r.request_id, "request_id")?;
        let version = match r.focus_version.as_str() {
            "" => None,
            "1.0" => Some(FocusVersion::V1_0),
            "1.1" => Some(FocusVersion::V1_1),
            "1.2" => Some(FocusVersion::V1_2),
            _ => return Err(Error::invalid("focus_version", "must be 1.0, 1.1 or 1.2 (or empty)").into()),
        };
        if r.csv.is_empty() {
            return Err(Error::invalid("csv", "is required").into());
        }
        let mut tag_keys = r.ci_tag_keys.clone();
        if tag_keys.is_empty() {
            tag_keys.push(DEFAULT_CI_TAG.to_string());
        }
        let file = focus::parse(r.csv.as_slice(), version).map_err(|e| match e {
            FocusError::MissingColumns { .. } => Error::invalid("csv", e.to_string()),
            other => Error::invalid("csv", other.to_string()),
        })?;
        // What the rows can match: cloud resources by their resource_id attribute, and CIs
        // named in the tags.
        let mut by_resource_id = HashMap::new();
        for ci in self.cmdb.configuration_items(&ctx, "ci_class = \"cloud_resource\"").await? {
            let id = ci.attributes.as_ref().and_then(|a| a.fields.get("resource_id")).and_then(|v| match &v
                .kind
            {
                Some(prost_types::value::Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            });
            if let Some(id) = id {
                by_resource_id.insert(id.to_lowercase(), ci.name);
            }
        }
        let mut named: Vec<String> = file
            .rows
            .iter()
            .flat_map(|row| tag_keys.iter().filter_map(|k| row.tags.get(k).cloned()))
            .filter(|v| v.strip_prefix(CI_PREFIX).is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()))
            .collect::<HashSet<String>>()
            .into_iter()
            .collect();
        named.sort();
        let mut by_tag_value = HashMap::new();
        for chunk in named.chunks(1000) {
            for name in self.cmdb.lookup(&ctx, chunk).await?.into_keys() {
                by_tag_value.insert(name.clone(), name);
            }
        }
        let matcher = CiMatcher::new(by_resource_id, tag_keys, by_tag_value);
        let mut rejected: Vec<BillingRowIssue> = file
            .rejected
            .iter()
            .map(|x| BillingRowIssue {
                line: x.line as i64,
                resource_id: String::new(),
                reason: x.reason.clone(),
            })
            .collect();
        let import_id = uuid::Uuid::now_v7().to_string();
        let import_name = BILLING_IMPORTS.name(&import_id);
        let mut records = Vec::with_capacity(file.rows.len());
        let mut unmatched = Vec::new();
        let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut matched = 0_i64;
        for row in &file.rows {
            let resource_id = row.resource_id.clone().unwrap_or_default();
            if let Err(e) = Currency::parse(&row.currency) {
                rejected.push(BillingRowIssue { line: row.line as i64, resource_id, reason: e.to_string() });
                continue;
            }
            let ci = match matcher.match_row(row) {
                Some((ci, _)) => {
                    matched += 1;
                    ci
                }
                None => {
                    unmatched.push(BillingRowIssue {
                        line: row.line as i64,
                        resource_id: resource_id.clone(),
                        reason: "no CI has this resource id or a matching tag".into(),
                    });
                    String::new()
                }
            };
            *totals.entry(row.currency.clone()).or_default() += row.billed_cost;
            let item = CostItem {
                display_name: format!(
                    "{} {}",
                    row.provider,
                    row.resource_name.clone().unwrap_or_else(|| row.service_name.clone())
                )
                .chars()
                .take(200)
                .collect(),
                amount: Some(money_of(row.billed_cost, &row.currency)),
                period: row.billing_period_start.format("%Y-%m").to_string(),
                configuration_item: ci,
                cost_type: CostType::Opex as i32,
                cost_center: String::new(),
                pool: CostPool::Cloud as i32,
                source: format!("{import_name}:{}", row.line),
                resource_id,
                ..Default::default()
            };
            records.push((cost_columns(&item), item));
        }
        rejected.sort_by_key(|x| x.line);
        let response = ImportBillingDataResponse {
            name: import_name.clone(),
            focus_version: match file.version {
                FocusVersion::V1_0 => "1.0",
                FocusVersion::V1_1 => "1.1",
                FocusVersion::V1_2 => "1.2",
            }
            .into(),
            data_rows: file.data_lines as i64,
            matched_rows: matched,
            unmatched,
            rejected,
            totals: totals.into_iter().map(|(c, t)| money_of(t, &c)).collect(),
        };
        // All rows and the import record in one transaction, once per request_id.
        let hash = idempotency::request_hash(&r);
        let txn = self.documents.db.begin().await.map_err(Error::from)?;
        match idempotency::claim(&txn, &ctx.tenant, BILLING_IMPORTS.create_method, &r.request_id, &hash)
            .await?
        {
            Claim::Fresh => {}
            Claim::Done(name) => {
                let id = BILLING_IMPORTS.id_of(&name, "request_id")?;
                let earlier: Option<Document<ImportBillingDataResponse>> =
                    Documents::find(&txn, &BILLING_IMPORTS, &ctx.tenant, &id).await?;
                txn.commit().await.map_err(Error::from)?;
                return Ok(Response::new(earlier.ok_or(Error::NotFound(name))?.body));
            }
            Claim::LostRace => {
                return Err(
                    Error::Aborted("a concurrent import with the same request_id; retry".into()).into()
                );
            }
        }
        Documents::insert_many(&txn, &COST_ITEMS, &ctx, records).await?;
        let summary = Documents::insert_with_id(
            &txn,
            &BILLING_IMPORTS,
            &ctx,
            &import_id,
            Columns { display_name: import_name.clone(), ..Columns::default() },
            &response,
        )
        .await?;
        idempotency::complete(&txn, &ctx.tenant, BILLING_IMPORTS.create_method, &r.request_id, &summary.name)
            .await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(response))
    }

    async fn allocate_costs(
        &self,
        request: Request<AllocateCostsRequest>,
    ) -> Result<Response<CostAllocation>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let currency = check_report_request(&r.period, &r.currency_code)?;
        let max_lines = match r.max_lines {
            0 => DEFAULT_MAX_LINES,
            n if n < 0 => return Err(Error::invalid("max_lines", "must not be negative").into()),
            n => (n as usize).min(MAX_LINES),
        };
        let method = method_of(r.method);
        let a = self.allocate(&ctx, &r.period, &currency, method, &r.usage_metric).await?;
        let code = a.currency.as_str();
        let mut focus_csv = Vec::new();
        if r.focus_csv {
            let (start, end) = period_bounds(&r.period);
            let lines: Vec<AllocationExportLine> = a
                .result
                .lines
                .iter()
                .map(|l| AllocationExportLine {
                    business_service: l.business_service.clone(),
                    business_service_name: a.services.get(&l.business_service).cloned().unwrap_or_default(),
                    source: l.source.clone(),
                    amount: l.amount,
                    currency: code.to_string(),
                    billing_period_start: start,
                    billing_period_end: end,
                })
                .collect();
            focus::write_allocations(&lines, &mut focus_csv).map_err(|e| Error::Internal(e.to_string()))?;
        }
        let res = &a.result;
        Ok(Response::new(CostAllocation {
            period: r.period.clone(),
            method: r.method,
            total: Some(money_of(res.total_in, code)),
            allocated: Some(money_of(res.total_allocated, code)),
            idle: Some(money_of(res.total_idle, code)),
            services: res
                .per_service
                .iter()
                .map(|(s, c)| ServiceCostProto {
                    business_service: s.clone(),
                    direct: Some(money_of(c.direct, code)),
                    dedicated: Some(money_of(c.dedicated, code)),
                    shared: Some(money_of(c.shared, code)),
                    total: Some(money_of(c.total, code)),
                })
                .collect(),
            lines: res
                .lines
                .iter()
                .take(max_lines)
                .map(|l| AllocationLineProto {
                    source: l.source.clone(),
                    business_service: l.business_service.clone(),
                    amount: Some(money_of(l.amount, code)),
                    path: l.path.clone(),
                    paths: l.paths as i32,
                })
                .collect(),
            total_lines: res.lines.len() as i32,
            idle_costs: res
                .idle
                .iter()
                .take(max_lines)
                .map(|i| IdleCostProto {
                    configuration_item: i.configuration_item.clone(),
                    source: i.source.clone(),
                    amount: Some(money_of(i.amount, code)),
                    reason: if i.configuration_item.is_empty() {
                        "unassigned: no CI matched the cost".into()
                    } else {
                        i.reason.to_string()
                    },
                })
                .collect(),
            notes: res.notes.clone(),
            focus_csv,
        }))
    }

    async fn get_total_cost_of_ownership(
        &self,
        request: Request<GetTotalCostOfOwnershipRequest>,
    ) -> Result<Response<TotalCostOfOwnership>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_ci_name(&mut v, "business_service", &r.business_service, true);
        check_period(&mut v, "start_period", &r.start_period);
        check_period(&mut v, "end_period", &r.end_period);
        let currency =
            Currency::parse(&r.currency_code).map_err(|e| v.add("currency_code", e.to_string())).ok();
        v.into_result()?;
        let months = months_between(&r.start_period, &r.end_period)?;
        let Some(currency) = currency else {
            return Err(Error::invalid("currency_code", "is required").into());
        };
        self.check_cis(
            &ctx,
            &[CiReference {
                field: "business_service".into(),
                name: &r.business_service,
                class: Some(BUSINESS_SERVICE_CLASS),
            }],
        )
        .await?;
        let code = currency.code();
        let mut out =
            TotalCostOfOwnership { business_service: r.business_service.clone(), ..Default::default() };
        let mut by_pool: BTreeMap<i32, Decimal> = BTreeMap::new();
        let mut total = Decimal::ZERO;
        for period in months {
            let a = self.allocate(&ctx, &period, &currency, method_of(r.method), "").await?;
            let cost = a.result.per_service.get(&r.business_service).copied().unwrap_or_default();
            // Each line's pool is its source's: a cost item's own, an import's CLOUD.
            let pools: HashMap<&str, i32> = a.items.iter().map(|d| (d.name.as_str(), d.body.pool)).collect();
            for line in a.result.lines.iter().filter(|l| l.business_service == r.business_service) {
                let pool = pools.get(line.source.as_str()).copied().unwrap_or(CostPool::Cloud as i32);
                *by_pool.entry(pool).or_default() += line.amount;
            }
            total += cost.total;
            out.months.push(MonthlyCost {
                period,
                direct: Some(money_of(cost.direct, code)),
                dedicated: Some(money_of(cost.dedicated, code)),
                shared: Some(money_of(cost.shared, code)),
                total: Some(money_of(cost.total, code)),
            });
        }
        out.by_pool = by_pool
            .into_iter()
            .map(|(pool, amount)| PoolCost { pool, amount: Some(money_of(amount, code)) })
            .collect();
        out.total = Some(money_of(total, code));
        Ok(Response::new(out))
    }

    async fn create_budget(&self, request: Request<CreateBudgetRequest>) -> Result<Response<Budget>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(b) = r.budget.as_ref() else { return Err(Error::invalid("budget", "is required").into()) };
        let mut v = Violations::new();
        if b.business_service.is_empty() == b.cost_center.is_empty() {
            v.add("budget.business_service", "set exactly one of business_service and cost_center");
        }
        check_ci_name(&mut v, "budget.business_service", &b.business_service, false);
        validate::text(&mut v, "budget.cost_center", &b.cost_center, 100, false);
        check_period(&mut v, "budget.period", &b.period);
        if let Some((amount, _)) = check_money(&mut v, "budget.amount", b.amount.as_ref())
            && amount.is_sign_negative()
        {
            v.add("budget.amount", "must not be negative");
        }
        v.into_result()?;
        self.check_cis(
            &ctx,
            &[CiReference {
                field: "budget.business_service".into(),
                name: &b.business_service,
                class: Some(BUSINESS_SERVICE_CLASS),
            }],
        )
        .await?;
        let body = Budget { name: String::new(), audit: None, ..b.clone() };
        let owner = if b.business_service.is_empty() { &b.cost_center } else { &b.business_service };
        let columns = Columns {
            subject: b.business_service.clone(),
            owner: b.cost_center.clone(),
            period: b.period.clone(),
            unique_key: Some(format!(
                "{owner}|{}|{}",
                b.period,
                b.amount.as_ref().map_or("", |m| &m.currency_code)
            )),
            ..Columns::default()
        };
        let hash = idempotency::request_hash(&r);
        let d = self.documents.create(&BUDGETS, &ctx, &r.request_id, &hash, columns, &body).await?;
        Ok(Response::new(Budget { name: d.name.clone(), audit: Some(d.audit()), ..d.body }))
    }

    async fn list_budgets(
        &self,
        request: Request<ListBudgetsRequest>,
    ) -> Result<Response<ListBudgetsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) =
            self.documents.list::<Budget>(&BUDGETS, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListBudgetsResponse {
            budgets: items
                .into_iter()
                .map(|d| Budget { name: d.name.clone(), audit: Some(d.audit()), ..d.body })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_budget_report(
        &self,
        request: Request<GetBudgetReportRequest>,
    ) -> Result<Response<BudgetReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let currency = check_report_request(&r.period, &r.currency_code)?;
        let budgets: Vec<Document<Budget>> =
            Documents::all_where(&self.documents.db, &BUDGETS, &ctx.tenant, Column::Period, &r.period)
                .await?;
        let budgets: Vec<Document<Budget>> = budgets
            .into_iter()
            .filter(|b| b.body.amount.as_ref().is_some_and(|m| m.currency_code == currency.code()))
            .collect();
        let a = self.allocate(&ctx, &r.period, &currency, method_of(r.method), "").await?;
        // Cost centres are charged what their cost items say, not what allocation moves.
        let mut by_cost_center: HashMap<&str, Decimal> = HashMap::new();
        for item in a.items.iter().filter(|i| i.columns.state == currency.code()) {
            if let Some(m) = &item.body.amount {
                *by_cost_center.entry(item.body.cost_center.as_str()).or_default() += decimal_of(m);
            }
        }
        let code = currency.code();
        let lines = budgets
            .iter()
            .map(|b| {
                let budgeted = b.body.amount.as_ref().map(decimal_of).unwrap_or_default();
                let actual = if b.body.business_service.is_empty() {
                    by_cost_center.get(b.body.cost_center.as_str()).copied().unwrap_or_default()
                } else {
                    a.result.per_service.get(&b.body.business_service).map(|c| c.total).unwrap_or_default()
                };
                let actual = actual.round_dp(a.minor_units);
                let variance = allocation::variance(budgeted, actual);
                BudgetLine {
                    budget: b.name.clone(),
                    business_service: b.body.business_service.clone(),
                    cost_center: b.body.cost_center.clone(),
                    budgeted: Some(money_of(budgeted, code)),
                    actual: Some(money_of(actual, code)),
                    variance: Some(money_of(variance.amount, code)),
                    variance_percent: variance
                        .percent
                        .map(|p| p.round_dp(2).to_string())
                        .unwrap_or_else(|| "0".into()),
                    over_budget: variance.over_budget,
                }
            })
            .collect();
        Ok(Response::new(BudgetReport { period: r.period, lines }))
    }

    async fn create_charge_rate(
        &self,
        request: Request<CreateChargeRateRequest>,
    ) -> Result<Response<ChargeRate>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(c) = r.charge_rate.as_ref() else {
            return Err(Error::invalid("charge_rate", "is required").into());
        };
        let mut v = Violations::new();
        validate::text(&mut v, "charge_rate.customer", &c.customer, 200, true);
        check_ci_name(&mut v, "charge_rate.business_service", &c.business_service, true);
        if !matches!(PriceModelProto::try_from(c.model), Ok(m) if m != PriceModelProto::Unspecified) {
            v.add("charge_rate.model", "must be FIXED_PER_USER or PER_USAGE_UNIT");
        }
        if let Some((price, _)) = check_money(&mut v, "charge_rate.unit_price", c.unit_price.as_ref())
            && price.is_sign_negative()
        {
            v.add("charge_rate.unit_price", "must not be negative");
        }
        match Decimal::from_str(&c.quantity) {
            Ok(q) if !q.is_sign_negative() => {}
            _ => v.add("charge_rate.quantity", "must be a non-negative decimal, e.g. \"250\""),
        }
        check_period(&mut v, "charge_rate.period", &c.period);
        v.into_result()?;
        self.check_cis(
            &ctx,
            &[CiReference {
                field: "charge_rate.business_service".into(),
                name: &c.business_service,
                class: Some(BUSINESS_SERVICE_CLASS),
            }],
        )
        .await?;
        let body = ChargeRate { name: String::new(), audit: None, ..c.clone() };
        let columns = Columns {
            subject: c.business_service.clone(),
            owner: c.customer.clone(),
            period: c.period.clone(),
            unique_key: Some(format!("{}|{}|{}", c.customer, c.business_service, c.period)),
            ..Columns::default()
        };
        let hash = idempotency::request_hash(&r);
        let d = self.documents.create(&CHARGE_RATES, &ctx, &r.request_id, &hash, columns, &body).await?;
        Ok(Response::new(ChargeRate { name: d.name.clone(), audit: Some(d.audit()), ..d.body }))
    }

    async fn list_charge_rates(
        &self,
        request: Request<ListChargeRatesRequest>,
    ) -> Result<Response<ListChargeRatesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) =
            self.documents.list::<ChargeRate>(&CHARGE_RATES, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListChargeRatesResponse {
            charge_rates: items
                .into_iter()
                .map(|d| ChargeRate { name: d.name.clone(), audit: Some(d.audit()), ..d.body })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_chargeback_report(
        &self,
        request: Request<GetChargebackReportRequest>,
    ) -> Result<Response<ChargebackReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let currency = check_report_request(&r.period, &r.currency_code)?;
        let a = self.allocate(&ctx, &r.period, &currency, method_of(r.method), "").await?;
        let rates: Vec<Document<ChargeRate>> =
            Documents::all_where(&self.documents.db, &CHARGE_RATES, &ctx.tenant, Column::Period, &r.period)
                .await?;
        let rates: Vec<&ChargeRate> = rates
            .iter()
            .map(|d| &d.body)
            .filter(|c| c.unit_price.as_ref().is_some_and(|m| m.currency_code == currency.code()))
            .collect();
        let mut by_service: BTreeMap<&str, Vec<&ChargeRate>> = BTreeMap::new();
        for rate in &rates {
            by_service.entry(rate.business_service.as_str()).or_default().push(rate);
        }
        let mut showback: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut chargeback: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut unrecovered = Decimal::ZERO;
        for (service, cost) in &a.result.per_service {
            let Some(service_rates) = by_service.get(service.as_str()) else {
                unrecovered += cost.total;
                continue;
            };
            // Each customer bears the service's cost in proportion to its quantity.
            let weights: Vec<Decimal> =
                service_rates.iter().map(|c| Decimal::from_str(&c.quantity).unwrap_or_default()).collect();
            let shares = split_largest_remainder(cost.total, a.minor_units, &weights).or_else(|_| {
                split_largest_remainder(cost.total, a.minor_units, &vec![Decimal::ONE; weights.len()])
            });
            match shares {
                Ok(shares) => {
                    for (rate, share) in service_rates.iter().zip(shares) {
                        *showback.entry(rate.customer.clone()).or_default() += share;
                    }
                }
                Err(_) => unrecovered += cost.total,
            }
        }
        for rate in &rates {
            let price = rate.unit_price.as_ref().map(decimal_of).unwrap_or_default();
            let quantity = Decimal::from_str(&rate.quantity).unwrap_or_default();
            let model = if rate.model == PriceModelProto::PerUsageUnit as i32 {
                PriceModel::PerUsageUnit { price }
            } else {
                PriceModel::FixedPerUser { price }
            };
            let charged = allocation::charge(model, quantity, a.minor_units)
                .map_err(|e| Error::FailedPrecondition(format!("charge rate of {}: {e}", rate.customer)))?;
            *chargeback.entry(rate.customer.clone()).or_default() += charged;
        }
        let code = currency.code();
        let customers: BTreeMap<String, ()> =
            showback.keys().chain(chargeback.keys()).map(|k| (k.clone(), ())).collect();
        Ok(Response::new(ChargebackReport {
            period: r.period.clone(),
            customers: customers
                .into_keys()
                .map(|customer| {
                    let shown = showback.get(&customer).copied().unwrap_or_default();
                    let charged = chargeback.get(&customer).copied().unwrap_or_default();
                    CustomerCharge {
                        showback: Some(money_of(shown, code)),
                        chargeback: Some(money_of(charged, code)),
                        recovery: Some(money_of(charged - shown, code)),
                        customer,
                    }
                })
                .collect(),
            unrecovered: Some(money_of(unrecovered, code)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_through_units_and_nanos() {
        for text in ["0", "1234.56", "-0.5", "0.000000001", "-1234.000000009", "99999999999.999999999"] {
            let d = Decimal::from_str(text).unwrap();
            assert_eq!(decimal_of(&money_of(d, "EUR")), d, "{text}");
        }
        let m = money_of(Decimal::from_str("-1.25").unwrap(), "EUR");
        assert_eq!((m.units, m.nanos), (-1, -250_000_000));
    }

    #[test]
    fn months_between_periods() {
        assert_eq!(
            months_between("2025-11", "2026-02").unwrap(),
            ["2025-11", "2025-12", "2026-01", "2026-02"]
        );
        assert_eq!(months_between("2026-03", "2026-03").unwrap(), ["2026-03"]);
        assert!(months_between("2026-03", "2026-02").is_err());
        assert!(months_between("2020-01", "2026-01").is_err(), "more than 36 months");
    }

    #[test]
    fn periods_are_months() {
        let mut v = Violations::new();
        check_period(&mut v, "p", "2026-11");
        assert!(v.is_empty());
        for bad in ["2026-13", "2026-1", "202611", "", "2026-11-01"] {
            let mut v = Violations::new();
            check_period(&mut v, "p", bad);
            assert!(!v.is_empty(), "{bad}");
        }
        let (start, end) = period_bounds("2026-12");
        assert_eq!(start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }
}
