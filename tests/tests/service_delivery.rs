//! Capacity, continuity and financial management end to end through the gateway, against a
//! CMDB graph: costs imported from the FOCUS project's sample billing data and allocated to
//! business services; budgets and chargeback; continuity gaps, exercises and an invoked plan
//! that opens a major incident; capacity samples forecast into a warning that raises a problem.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_e2e::{Suite, authed};
use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{ChangeType, GetChangeRequest};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, CreateRelationshipRequest, Relationship,
    RelationshipType,
};
use itsm_proto::common::Money;
use itsm_proto::delivery::capacity_service_client::CapacityServiceClient;
use itsm_proto::delivery::continuity_service_client::ContinuityServiceClient;
use itsm_proto::delivery::finance_service_client::FinanceServiceClient;
use itsm_proto::delivery::*;
use itsm_proto::gateway::GetServiceHealthRequest;
use itsm_proto::gateway::overview_service_client::OverviewServiceClient;
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::problem_service_client::ProblemServiceClient;
use itsm_proto::incident::{GetIncidentRequest, ListProblemsRequest};
use itsm_runtime::testing::TestBackend;

const FOCUS_AWS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/focus/focus_sample_head300.csv");

struct Cmdb {
    client: CmdbServiceClient<Channel>,
    token: String,
}

impl Cmdb {
    async fn ci(&mut self, name: &str, class: &str, attributes: &[(&str, &str)]) -> String {
        let attributes = prost_types::Struct {
            fields: attributes
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue(v.to_string())),
                        },
                    )
                })
                .collect(),
        };
        self.client
            .create_configuration_item(authed(
                CreateConfigurationItemRequest {
                    configuration_item: Some(ConfigurationItem {
                        display_name: name.into(),
                        ci_class: class.into(),
                        attributes: Some(attributes),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    /// `source` needs `target` (DEPENDS_ON), with an optional weight.
    async fn needs(&mut self, source: &str, target: &str, weight: Option<f64>) {
        let properties = weight.map(|w| prost_types::Struct {
            fields: [(
                "weight".to_string(),
                prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(w)) },
            )]
            .into(),
        });
        self.client
            .create_relationship(authed(
                CreateRelationshipRequest {
                    relationship: Some(Relationship {
                        source: source.into(),
                        target: target.into(),
                        r#type: RelationshipType::DependsOn as i32,
                        properties,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.token,
            ))
            .await
            .unwrap();
    }
}

fn eur(amount: &str) -> Money {
    money(amount, "EUR")
}

fn money(amount: &str, currency: &str) -> Money {
    let d = Decimal::from_str(amount).unwrap();
    let units = d.trunc();
    Money {
        currency_code: currency.into(),
        units: i64::try_from(units).unwrap(),
        nanos: i32::try_from(((d - units) * Decimal::from(1_000_000_000)).trunc()).unwrap(),
    }
}

fn decimal(m: &Option<Money>) -> Decimal {
    let m = m.as_ref().unwrap();
    Decimal::from(m.units) + Decimal::new(i64::from(m.nanos), 9)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn hours(h: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: h * 3600, nanos: 0 }
}

async fn cost_item_count(finance: &mut FinanceServiceClient<Channel>, token: &str) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = finance
            .list_cost_items(authed(
                ListCostItemsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        count += page.cost_items.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

async fn costs_are_imported_allocated_budgeted_and_charged(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("fiona", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = Cmdb { client: CmdbServiceClient::new(channel.clone()), token: admin.clone() };
    let mut finance = FinanceServiceClient::new(channel.clone());

    // Two services share a database on a SAN; the shop also uses a cloud queue.
    let aws = itsm_delivery::domain::focus::parse(std::fs::File::open(FOCUS_AWS).unwrap(), None).unwrap();
    let queue_id = aws.rows.iter().find_map(|r| r.resource_id.clone()).unwrap();
    let shop = cmdb.ci("Shop", "business_service", &[]).await;
    let blog = cmdb.ci("Blog", "business_service", &[]).await;
    let shop_app = cmdb.ci("shop-app", "application", &[]).await;
    let blog_app = cmdb.ci("blog-app", "application", &[]).await;
    let db = cmdb.ci("shared-db", "database", &[]).await;
    let san = cmdb.ci("san-1", "server", &[]).await;
    let queue = cmdb.ci("orders-queue", "cloud_resource", &[("resource_id", &queue_id)]).await;
    let spare = cmdb.ci("spare-server", "server", &[]).await;
    cmdb.needs(&shop, &shop_app, None).await;
    cmdb.needs(&blog, &blog_app, None).await;
    cmdb.needs(&shop_app, &db, Some(3.0)).await;
    cmdb.needs(&blog_app, &db, Some(1.0)).await;
    cmdb.needs(&db, &san, None).await;
    cmdb.needs(&shop_app, &queue, None).await;

    let item =
        |name: &str, ci: &str, amount: &str, pool: CostPool, cost_center: &str| CreateCostItemRequest {
            cost_item: Some(CostItem {
                display_name: name.into(),
                amount: Some(eur(amount)),
                period: "2026-10".into(),
                configuration_item: ci.into(),
                cost_type: CostType::Opex as i32,
                cost_center: cost_center.into(),
                pool: pool as i32,
                ..Default::default()
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
    let san_cost = item("SAN lease", &san, "1000.00", CostPool::Hardware, "CC-INFRA");
    let first = finance.create_cost_item(authed(san_cost.clone(), &admin)).await.unwrap().into_inner();
    let again = finance.create_cost_item(authed(san_cost, &admin)).await.unwrap().into_inner();
    assert_eq!(first.name, again.name, "a retried create returns the first cost item");
    for request in [
        item("DB licence", &db, "500.00", CostPool::Software, "CC-INFRA"),
        item("Shop team", &shop, "100.00", CostPool::People, "CC-SHOP"),
        item("Idle spare", &spare, "33.33", CostPool::Hardware, "CC-INFRA"),
    ] {
        finance.create_cost_item(authed(request, &admin)).await.unwrap();
    }

    // Bad input: unknown currency, bad period, missing pool — each named, nothing written.
    let mut bad = item("bad", &san, "1.00", CostPool::Unspecified, "");
    if let Some(c) = bad.cost_item.as_mut() {
        c.amount = Some(money("1.00", "XYZ"));
        c.period = "2026-13".into();
    }
    let err = finance.create_cost_item(authed(bad, &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let named = fields(&err);
    for field in ["cost_item.amount.currency_code", "cost_item.period", "cost_item.pool"] {
        assert!(named.iter().any(|f| f == field), "{field} in {named:?}");
    }
    assert_eq!(cost_item_count(&mut finance, &admin).await, 4);

    // Even split: the database's 1,500 (its own 500 and the SAN's 1,000) halves between the
    // apps; the shop keeps its direct 100; the spare server's cost is idle.
    let allocate = |method: AllocationMethod, focus_csv: bool| AllocateCostsRequest {
        period: "2026-10".into(),
        currency_code: "EUR".into(),
        method: method as i32,
        focus_csv,
        max_lines: 0,
        usage_metric: String::new(),
    };
    let even = finance
        .allocate_costs(authed(allocate(AllocationMethod::Even, true), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decimal(&even.total), dec("1633.33"));
    assert_eq!(
        decimal(&even.allocated) + decimal(&even.idle),
        decimal(&even.total),
        "every cent accounted for"
    );
    assert_eq!(decimal(&even.idle), dec("33.33"));
    let service =
        |a: &CostAllocation, s: &str| a.services.iter().find(|c| c.business_service == s).unwrap().clone();
    let (shop_cost, blog_cost) = (service(&even, &shop), service(&even, &blog));
    assert_eq!(
        (decimal(&shop_cost.total), decimal(&shop_cost.direct), decimal(&shop_cost.shared)),
        (dec("850.00"), dec("100.00"), dec("750.00"))
    );
    assert_eq!(decimal(&blog_cost.total), dec("750.00"));
    let san_to_shop =
        even.lines.iter().find(|l| l.source == first.name && l.business_service == shop).unwrap();
    assert_eq!(decimal(&san_to_shop.amount), dec("500.00"));
    assert_eq!(san_to_shop.path, vec![san.clone(), db.clone(), shop_app.clone(), shop.clone()]);
    let idle = even.idle_costs.iter().find(|i| i.configuration_item == spare).unwrap();
    assert_eq!(decimal(&idle.amount), dec("33.33"));
    let csv = String::from_utf8(even.focus_csv.clone()).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("BilledCost")
            && header.contains("BillingCurrency")
            && header.contains("x_AllocationSource")
    );
    assert_eq!(csv.lines().count(), even.lines.len() + 1);

    // By weight (3:1 on the app → database relationships).
    let weighted = finance
        .allocate_costs(authed(allocate(AllocationMethod::Weight, false), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decimal(&service(&weighted, &shop).total), dec("1225.00"));
    assert_eq!(decimal(&service(&weighted, &blog).total), dec("375.00"));
    assert!(weighted.focus_csv.is_empty());

    // By usage from capacity management: the apps' mean request rates in October (1:4).
    let mut capacity = CapacityServiceClient::new(channel.clone());
    for (app, rate) in [(&shop_app, 100.0), (&blog_app, 400.0)] {
        let resource = capacity
            .create_capacity_resource(authed(
                CreateCapacityResourceRequest {
                    capacity_resource: Some(CapacityResource {
                        display_name: "requests".into(),
                        configuration_item: app.clone(),
                        metric: "requests".into(),
                        threshold: 1000.0,
                        kind: CapacityResourceKind::DemandDriver as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let october = chrono::NaiveDate::from_ymd_opt(2026, 10, 10).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let at = october.and_utc().timestamp();
        let samples = [rate - 10.0, rate + 10.0]
            .iter()
            .enumerate()
            .map(|(i, v)| CapacitySample {
                time: Some(prost_types::Timestamp { seconds: at + i as i64 * 3600, nanos: 0 }),
                value: *v,
            })
            .collect();
        let message = RecordCapacitySamplesRequest { capacity_resource: resource.name, samples };
        capacity.record_capacity_samples(authed(tokio_stream::iter(vec![message]), &admin)).await.unwrap();
    }
    let mut by_usage = allocate(AllocationMethod::Usage, false);
    by_usage.usage_metric = "requests".into();
    let by_usage = finance.allocate_costs(authed(by_usage, &admin)).await.unwrap().into_inner();
    assert_eq!(decimal(&service(&by_usage, &shop).total), dec("400.00"));
    assert_eq!(decimal(&service(&by_usage, &blog).total), dec("1200.00"));

    // FOCUS import: every row accounted for; the queue's rows land on its CI.
    let csv_bytes = std::fs::read(FOCUS_AWS).unwrap();
    let import = ImportBillingDataRequest {
        csv: csv_bytes.clone(),
        focus_version: String::new(),
        ci_tag_keys: vec![],
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let imported = finance.import_billing_data(authed(import.clone(), &admin)).await.unwrap().into_inner();
    assert_eq!(imported.focus_version, "1.0");
    assert_eq!(imported.data_rows, 300);
    let on_queue =
        aws.rows.iter().filter(|r| r.resource_id.as_deref() == Some(queue_id.as_str())).count() as i64;
    assert!(on_queue >= 1);
    assert_eq!(imported.matched_rows, on_queue);
    assert_eq!(imported.matched_rows + imported.unmatched.len() as i64 + imported.rejected.len() as i64, 300);
    assert!(imported.rejected.is_empty(), "{:?}", imported.rejected);
    let expected_total: Decimal = aws.rows.iter().map(|r| r.billed_cost).sum();
    assert_eq!(imported.totals.len(), 1);
    // Money travels in nanos: the sample's 11-decimal amounts arrive rounded to 9.
    assert_eq!(decimal(&imported.totals.first().cloned()), expected_total.round_dp(9));
    assert_eq!(cost_item_count(&mut finance, &admin).await, 304);
    let retried = finance.import_billing_data(authed(import, &admin)).await.unwrap().into_inner();
    assert_eq!(retried.name, imported.name, "a retried import is not imported twice");
    assert_eq!(cost_item_count(&mut finance, &admin).await, 304);
    let usd = finance
        .allocate_costs(authed(
            AllocateCostsRequest {
                period: "2024-09".into(),
                currency_code: "USD".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    // Rows are summed per import and CI before rounding to the cent.
    let on_queue_cost: Decimal = aws
        .rows
        .iter()
        .filter(|r| r.resource_id.as_deref() == Some(queue_id.as_str()))
        .map(|r| r.billed_cost)
        .sum();
    let cents =
        |d: Decimal| d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    assert_eq!(decimal(&usd.total), cents(on_queue_cost) + cents(expected_total - on_queue_cost));
    assert_eq!(decimal(&usd.allocated), cents(on_queue_cost));
    assert_eq!(decimal(&usd.allocated) + decimal(&usd.idle), decimal(&usd.total));
    assert_eq!(decimal(&service(&usd, &shop).total), cents(on_queue_cost));
    assert!(
        usd.idle_costs.iter().any(|i| i.configuration_item.is_empty() && i.reason.starts_with("unassigned"))
    );

    // A file missing mandatory columns is refused whole; bad rows are listed, good ones kept.
    let text = String::from_utf8(csv_bytes).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let without_currency = header.replace("\"BillingCurrency\",", "");
    let err = finance
        .import_billing_data(authed(
            ImportBillingDataRequest {
                csv: format!("{without_currency}\n").into_bytes(),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("BillingCurrency"), "{}", err.message());
    let good = lines.next().unwrap();
    let bad_cost = good.replacen(",0.00000080000,", ",not-money,", 1);
    assert_ne!(bad_cost, good);
    let partial = finance
        .import_billing_data(authed(
            ImportBillingDataRequest {
                csv: format!("{header}\n{good}\n{bad_cost}\n").into_bytes(),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial.data_rows, 2);
    assert_eq!(partial.rejected.len(), 1);
    assert_eq!(partial.rejected[0].line, 3);
    assert!(partial.rejected[0].reason.contains("BilledCost"), "{}", partial.rejected[0].reason);
    assert_eq!(cost_item_count(&mut finance, &admin).await, 305);

    // Total cost of ownership of the shop over two months, by cost pool.
    let tco = finance
        .get_total_cost_of_ownership(authed(
            GetTotalCostOfOwnershipRequest {
                business_service: shop.clone(),
                currency_code: "EUR".into(),
                start_period: "2026-09".into(),
                end_period: "2026-10".into(),
                method: AllocationMethod::Even as i32,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tco.months.len(), 2);
    assert_eq!(decimal(&tco.months[0].total), dec("0"));
    assert_eq!(decimal(&tco.total), dec("850.00"));
    let pool = |p: CostPool| tco.by_pool.iter().find(|x| x.pool == p as i32).map(|x| decimal(&x.amount));
    assert_eq!(
        (pool(CostPool::Hardware), pool(CostPool::Software), pool(CostPool::People)),
        (Some(dec("500.00")), Some(dec("250.00")), Some(dec("100.00")))
    );

    // Budgets against actuals.
    for (service, cost_center, amount) in [(shop.as_str(), "", "800.00"), ("", "CC-INFRA", "2000.00")] {
        finance
            .create_budget(authed(
                CreateBudgetRequest {
                    budget: Some(Budget {
                        business_service: service.into(),
                        cost_center: cost_center.into(),
                        period: "2026-10".into(),
                        amount: Some(eur(amount)),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap();
    }
    let err = finance
        .create_budget(authed(
            CreateBudgetRequest {
                budget: Some(Budget {
                    business_service: blog.clone(),
                    cost_center: "CC-X".into(),
                    period: "2026-10".into(),
                    amount: Some(eur("-5.00")),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let report = finance
        .get_budget_report(authed(
            GetBudgetReportRequest { period: "2026-10".into(), currency_code: "EUR".into(), method: 0 },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let shop_line = report.lines.iter().find(|l| l.business_service == shop).unwrap();
    assert_eq!(
        (
            decimal(&shop_line.actual),
            decimal(&shop_line.variance),
            shop_line.variance_percent.as_str(),
            shop_line.over_budget
        ),
        (dec("850.00"), dec("50.00"), "6.25", true)
    );
    let infra = report.lines.iter().find(|l| l.cost_center == "CC-INFRA").unwrap();
    assert_eq!((decimal(&infra.actual), infra.over_budget), (dec("1533.33"), false));

    // Chargeback: retail pays per user for the shop; the blog is not recovered.
    finance
        .create_charge_rate(authed(
            CreateChargeRateRequest {
                charge_rate: Some(ChargeRate {
                    customer: "Retail".into(),
                    business_service: shop.clone(),
                    model: PriceModel::FixedPerUser as i32,
                    unit_price: Some(eur("100.00")),
                    quantity: "10".into(),
                    period: "2026-10".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let chargeback = finance
        .get_chargeback_report(authed(
            GetChargebackReportRequest { period: "2026-10".into(), currency_code: "EUR".into(), method: 0 },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let retail = chargeback.customers.iter().find(|c| c.customer == "Retail").unwrap();
    assert_eq!(
        (decimal(&retail.showback), decimal(&retail.chargeback), decimal(&retail.recovery)),
        (dec("850.00"), dec("1000.00"), dec("150.00"))
    );
    assert_eq!(decimal(&chargeback.unrecovered), dec("750.00"));

    // Another tenant sees none of it.
    let other = suite.token("olga", "globex", &["admin"]).unwrap();
    let err = finance
        .get_cost_item(authed(GetCostItemRequest { name: first.name.clone() }, &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(cost_item_count(&mut finance, &other).await, 0);
}

async fn continuity_gaps_exercises_and_an_invoked_plan(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("carla", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = Cmdb { client: CmdbServiceClient::new(channel.clone()), token: admin.clone() };
    let mut continuity = ContinuityServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());

    // Payments needs its app, which needs a database on a server.
    let payments = cmdb.ci("Payments", "business_service", &[]).await;
    let app = cmdb.ci("payments-app", "application", &[]).await;
    let db = cmdb.ci("payments-db", "database", &[]).await;
    let host = cmdb.ci("db-host", "server", &[]).await;
    cmdb.needs(&payments, &app, None).await;
    cmdb.needs(&app, &db, None).await;
    cmdb.needs(&db, &host, None).await;

    let bia = |rto: i64, rpo: i64, mtd: i64| BusinessImpactAnalysis {
        business_service: payments.clone(),
        criticality: ServiceCriticality::Critical as i32,
        rto: Some(hours(rto)),
        rpo: Some(hours(rpo)),
        maximum_tolerable_downtime: Some(hours(mtd)),
        impact_over_time: vec![
            ImpactOverTime {
                after: Some(hours(1)),
                level: ImpactLevel::Moderate as i32,
                ..Default::default()
            },
            ImpactOverTime {
                after: Some(hours(4)),
                level: ImpactLevel::Severe as i32,
                loss_per_hour: Some(eur("50000.00")),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    // Bad input: a negative RTO, an RTO past the maximum tolerable downtime.
    for (bad, field) in
        [(bia(-1, 1, 8), "business_impact_analysis.rto"), (bia(9, 1, 8), "business_impact_analysis.rto")]
    {
        let err = continuity
            .create_business_impact_analysis(authed(
                CreateBusinessImpactAnalysisRequest {
                    business_impact_analysis: Some(bad),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(fields(&err).iter().any(|f| f == field), "{:?}", fields(&err));
    }
    let analysis = continuity
        .create_business_impact_analysis(authed(
            CreateBusinessImpactAnalysisRequest {
                business_impact_analysis: Some(bia(4, 1, 8)),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let err = continuity
        .create_business_impact_analysis(authed(
            CreateBusinessImpactAnalysisRequest {
                business_impact_analysis: Some(bia(4, 1, 8)),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "one analysis per service");

    let gaps = |continuity: &mut ContinuityServiceClient<Channel>| {
        let mut continuity = continuity.clone();
        let (payments, admin) = (payments.clone(), admin.clone());
        async move {
            let response = continuity
                .analyze_continuity_gaps(authed(
                    AnalyzeContinuityGapsRequest { business_service: payments, exercise_period: None },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner();
            let service = response.services.into_iter().next().unwrap();
            let mut codes: Vec<String> = service.gaps.iter().map(|g| g.code.clone()).collect();
            codes.sort();
            (service, codes)
        }
    };
    let (before, codes) = gaps(&mut continuity).await;
    assert_eq!(codes, ["NO_BACKUP", "NO_PLAN"], "the database has no backup either");
    assert_eq!(before.dependencies, 3);
    assert_eq!(before.business_impact_analysis, analysis.name);

    // Steps in the wrong order (the app before its database), the host never recovered, daily
    // backups against a one-hour RPO.
    let step = |title: &str, h: i64, recovers: &[&String]| ContinuityStep {
        title: title.into(),
        owner: "dba-team".into(),
        expected_duration: Some(hours(h)),
        recovers: recovers.iter().map(|s| (*s).clone()).collect(),
        ..Default::default()
    };
    let mut plan = ContinuityPlan {
        display_name: "Payments DR".into(),
        business_service: payments.clone(),
        strategy: RecoveryStrategy::Intermediate as i32,
        steps: vec![step("Start app", 1, &[&app]), step("Restore database", 2, &[&db])],
        owner: "payments-owner".into(),
        backups: vec![BackupPolicy { configuration_item: db.clone(), interval: Some(hours(24)) }],
        ..Default::default()
    };
    let mut negative = plan.clone();
    negative.steps[1].expected_duration = Some(prost_types::Duration { seconds: -60, nanos: 0 });
    let err = continuity
        .create_continuity_plan(authed(
            CreateContinuityPlanRequest { continuity_plan: Some(negative), request_id: String::new() },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        fields(&err).iter().any(|f| f == "continuity_plan.steps[1].expected_duration"),
        "{:?}",
        fields(&err)
    );
    let created = continuity
        .create_continuity_plan(authed(
            CreateContinuityPlanRequest { continuity_plan: Some(plan.clone()), request_id: String::new() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    // The app waits for the database even though it is listed first: 2 h + 1 h.
    assert_eq!(created.estimated_recovery_time.unwrap().seconds, 3 * 3600);
    let (with_plan, codes) = gaps(&mut continuity).await;
    assert_eq!(
        codes,
        ["BACKUP_INTERVAL_EXCEEDS_RPO", "NOT_EXERCISED", "STEP_ORDER", "UNRECOVERED_DEPENDENCY"],
        "{:?}",
        with_plan.gaps
    );
    let unrecovered = with_plan.gaps.iter().find(|g| g.code == "UNRECOVERED_DEPENDENCY").unwrap();
    assert_eq!(unrecovered.configuration_item, host);

    // Fixed order and backups, the host recovered first — but now 2 + 2 + 1 h exceeds the 4 h RTO.
    plan.name = created.name.clone();
    plan.etag = created.etag.clone();
    plan.steps = vec![
        step("Rebuild host", 2, &[&host]),
        step("Restore database", 2, &[&db]),
        step("Start app", 1, &[&app]),
    ];
    plan.backups = vec![BackupPolicy { configuration_item: db.clone(), interval: Some(hours(1)) }];
    let updated = continuity
        .update_continuity_plan(authed(
            UpdateContinuityPlanRequest {
                continuity_plan: Some(plan.clone()),
                update_mask: Some(prost_types::FieldMask { paths: vec!["steps".into(), "backups".into()] }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.estimated_recovery_time.unwrap().seconds, 5 * 3600);
    let (_, codes) = gaps(&mut continuity).await;
    assert_eq!(codes, ["NOT_EXERCISED", "RTO_NOT_MET"]);

    // An exercise: recovered in 5 h (RTO missed by an hour), 30 min of data lost (RPO met).
    let err = continuity
        .record_continuity_exercise(authed(
            RecordContinuityExerciseRequest {
                continuity_exercise: Some(ContinuityExercise {
                    continuity_plan: created.name.clone(),
                    perform_time: Some(prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp(),
                        nanos: 0,
                    }),
                    achieved_recovery_time: Some(prost_types::Duration { seconds: -1, nanos: 0 }),
                    data_loss: Some(hours(0)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let exercise = continuity
        .record_continuity_exercise(authed(
            RecordContinuityExerciseRequest {
                continuity_exercise: Some(ContinuityExercise {
                    continuity_plan: created.name.clone(),
                    perform_time: Some(prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp(),
                        nanos: 0,
                    }),
                    achieved_recovery_time: Some(hours(5)),
                    data_loss: Some(prost_types::Duration { seconds: 1800, nanos: 0 }),
                    findings: vec!["Host rebuild took longer than planned".into()],
                    follow_up_actions: vec![ExerciseAction {
                        title: "Keep a warm standby host".into(),
                        owner: "infra".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((exercise.rto_met, exercise.rpo_met), (false, true));
    assert_eq!(exercise.rto_margin.unwrap().seconds, -3600);
    assert_eq!(exercise.rpo_margin.unwrap().seconds, 1800);
    let (_, codes) = gaps(&mut continuity).await;
    assert_eq!(codes, ["RTO_NOT_MET"], "the exercise counts");
    let listed = continuity
        .list_continuity_exercises(authed(
            ListContinuityExercisesRequest { continuity_plan: created.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.continuity_exercises.len(), 1);

    // Disaster: a major incident, and the steps tracked in dependency order.
    let invocation = continuity
        .invoke_continuity_plan(authed(
            InvokeContinuityPlanRequest {
                continuity_plan: created.name.clone(),
                description: "Data centre flooded".into(),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(invocation.incident.starts_with("incidents/"), "{}", invocation.incident);
    let incident = incidents
        .get_incident(authed(GetIncidentRequest { name: invocation.incident.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(incident.major);
    assert_eq!(incident.business_service, payments);
    assert_eq!(invocation.steps.len(), 3);
    assert_eq!(invocation.remaining_estimate.unwrap().seconds, 5 * 3600);
    assert!(invocation.rto_deadline.is_some());
    let step_to = |step: i32, state: InvocationStepState| UpdateInvocationStepRequest {
        continuity_invocation: invocation.name.clone(),
        step,
        state: state as i32,
    };
    let err = continuity
        .update_invocation_step(authed(step_to(3, InvocationStepState::InProgress), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "the app waits for the database");
    assert!(err.message().contains("waiting for"), "{}", err.message());
    let err = continuity
        .update_invocation_step(authed(step_to(1, InvocationStepState::Done), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("IN_PROGRESS") || err.message().contains("InProgress"),
        "{}",
        err.message()
    );
    continuity
        .update_invocation_step(authed(step_to(1, InvocationStepState::InProgress), &admin))
        .await
        .unwrap();
    let after = continuity
        .update_invocation_step(authed(step_to(1, InvocationStepState::Done), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.steps_done, 1);
    assert!(after.remaining_estimate.unwrap().seconds <= 3 * 3600);
    continuity
        .update_invocation_step(authed(step_to(2, InvocationStepState::InProgress), &admin))
        .await
        .unwrap();
}

async fn capacity_samples_forecast_a_warning_that_raises_one_problem(backend: TestBackend) {
    let suite =
        Suite::start_tuned(backend, |_, settings| settings.delivery.capacity_sweep_interval_ms = 200, |_| {})
            .await
            .unwrap();
    let admin = suite.token("sam", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = Cmdb { client: CmdbServiceClient::new(channel.clone()), token: admin.clone() };
    let mut capacity = CapacityServiceClient::new(channel.clone());
    let mut problems = ProblemServiceClient::new(channel.clone());

    let server = cmdb.ci("db-host-7", "server", &[]).await;
    let orders = cmdb.ci("Orders", "business_service", &[]).await;
    let orders_app = cmdb.ci("orders-app", "application", &[]).await;
    cmdb.needs(&orders, &orders_app, None).await;
    cmdb.needs(&orders_app, &server, None).await;
    let resource = capacity
        .create_capacity_resource(authed(
            CreateCapacityResourceRequest {
                capacity_resource: Some(CapacityResource {
                    display_name: "db-host-7 CPU".into(),
                    configuration_item: server.clone(),
                    metric: "cpu_utilization".into(),
                    unit: "percent".into(),
                    threshold: 80.0,
                    kind: CapacityResourceKind::Cpu as i32,
                    forecast_step: Some(hours(1)),
                    season_length: 24,
                    lead_time: Some(hours(30 * 24)),
                    warning_action: CapacityWarningAction::Problem as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();

    // Fourteen days of hourly CPU: a rising trend (0.1 %/h) and a daily cycle of ±5 %.
    let now = chrono::Utc::now().timestamp();
    let start = now - 14 * 86_400;
    let value = |h: i64| 30.0 + 0.1 * h as f64 + 5.0 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
    let samples: Vec<CapacitySample> = (0..14 * 24)
        .map(|h| CapacitySample {
            time: Some(prost_types::Timestamp { seconds: start + h * 3600, nanos: 0 }),
            value: value(h),
        })
        .collect();
    let messages: Vec<RecordCapacitySamplesRequest> = samples
        .chunks(100)
        .map(|chunk| RecordCapacitySamplesRequest {
            capacity_resource: resource.name.clone(),
            samples: chunk.to_vec(),
        })
        .collect();
    let recorded = capacity
        .record_capacity_samples(authed(tokio_stream::iter(messages), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((recorded.samples_recorded, recorded.messages), (336, 4));

    // A NaN is refused, and its message stores nothing.
    let bad = RecordCapacitySamplesRequest {
        capacity_resource: resource.name.clone(),
        samples: vec![
            CapacitySample { time: Some(prost_types::Timestamp { seconds: now, nanos: 0 }), value: 99.0 },
            CapacitySample { time: Some(prost_types::Timestamp { seconds: now, nanos: 0 }), value: f64::NAN },
        ],
    };
    let err =
        capacity.record_capacity_samples(authed(tokio_stream::iter(vec![bad]), &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(fields(&err).iter().any(|f| f == "samples[1].value"), "{:?}", fields(&err));

    let forecast = capacity
        .get_capacity_forecast(authed(
            GetCapacityForecastRequest {
                capacity_resource: resource.name.clone(),
                horizon: Some(hours(21 * 24)),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forecast.history.len(), 336);
    assert_eq!(forecast.history.iter().map(|b| b.count).sum::<i64>(), 336, "the NaN's message left nothing");
    let utilisation = forecast.utilisation.unwrap();
    assert!((utilisation.mean - 46.75).abs() < 0.5, "{utilisation:?}");
    assert!(forecast.seasonal);
    assert_eq!(forecast.points.len(), 21 * 24);
    // The trend reaches 80 % (peaks first) about 165 h after the last sample.
    let expected = forecast.expected_crossing_time.unwrap().seconds;
    let last = start + 335 * 3600;
    let hours_ahead = (expected - last) / 3600;
    assert!((100..=220).contains(&hours_ahead), "crossing {hours_ahead} h ahead");
    let earliest = forecast.earliest_crossing_time.unwrap().seconds;
    assert!(earliest <= expected);
    assert!(forecast.latest_crossing_time.is_none_or(|l| l.seconds >= expected));
    assert!(forecast.warning, "within the 30-day lead time");

    // The sweep opens the warning once and raises one problem for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let warned = loop {
        let current = capacity
            .get_capacity_resource(authed(GetCapacityResourceRequest { name: resource.name.clone() }, &admin))
            .await
            .unwrap()
            .into_inner();
        if !current.problem.is_empty() {
            break current;
        }
        assert!(Instant::now() < deadline, "no capacity warning: {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(warned.warning_time.is_some());
    assert!((warned.current_value - value(335)).abs() < 1e-9);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listed = problems
        .list_problems(authed(ListProblemsRequest { page_size: 100, ..Default::default() }, &admin))
        .await
        .unwrap()
        .into_inner();
    let raised: Vec<_> = listed.problems.iter().filter(|p| p.configuration_items.contains(&server)).collect();
    assert_eq!(raised.len(), 1, "one problem per warning, however many sweeps");
    assert_eq!(raised[0].name, warned.problem);

    // The same forecast on a resource that asks for a change raises one change on its CI.
    let disk = capacity
        .create_capacity_resource(authed(
            CreateCapacityResourceRequest {
                capacity_resource: Some(CapacityResource {
                    display_name: "db-host-7 CPU (change)".into(),
                    configuration_item: server.clone(),
                    metric: "cpu_utilization".into(),
                    threshold: 80.0,
                    season_length: 24,
                    lead_time: Some(hours(30 * 24)),
                    warning_action: CapacityWarningAction::Change as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let again: Vec<RecordCapacitySamplesRequest> = samples
        .chunks(100)
        .map(|chunk| RecordCapacitySamplesRequest {
            capacity_resource: disk.name.clone(),
            samples: chunk.to_vec(),
        })
        .collect();
    capacity.record_capacity_samples(authed(tokio_stream::iter(again), &admin)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let with_change = loop {
        let current = capacity
            .get_capacity_resource(authed(GetCapacityResourceRequest { name: disk.name.clone() }, &admin))
            .await
            .unwrap()
            .into_inner();
        if !current.change.is_empty() {
            break current;
        }
        assert!(Instant::now() < deadline, "no capacity change: {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(with_change.problem.is_empty());
    let raised = ChangeServiceClient::new(channel.clone())
        .get_change(authed(GetChangeRequest { name: with_change.change.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raised.configuration_items, std::slice::from_ref(&server));
    assert_eq!(raised.r#type, ChangeType::Normal as i32);

    // The service's health shows the warning of a CI it depends on.
    let health = OverviewServiceClient::new(channel.clone())
        .get_service_health(authed(GetServiceHealthRequest { service: orders.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(health.part_errors.is_empty(), "{:?}", health.part_errors);
    let mut names: Vec<&str> = health.capacity_warnings.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = vec![resource.name.as_str(), disk.name.as_str()];
    expected.sort_unstable();
    assert_eq!(names, expected);

    // A plan answers the forecast.
    let plan = capacity
        .create_capacity_plan(authed(
            CreateCapacityPlanRequest {
                capacity_plan: Some(CapacityPlan {
                    display_name: "More CPU for db-host-7".into(),
                    capacity_resources: vec![resource.name.clone()],
                    actions: vec![CapacityAction {
                        title: "Add 8 vCPU".into(),
                        owner: "infra".into(),
                        due_time: forecast.earliest_crossing_time,
                        ..Default::default()
                    }],
                    owner: "sam".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.state, CapacityPlanState::Open as i32);
    assert_eq!(plan.actions[0].state, CapacityPlanState::Open as i32);
    let err = capacity
        .create_capacity_plan(authed(
            CreateCapacityPlanRequest {
                capacity_plan: Some(CapacityPlan {
                    display_name: "ghost".into(),
                    capacity_resources: vec![format!("capacityResources/{}", uuid::Uuid::now_v7())],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

itsm_runtime::db_tests!(
    costs_are_imported_allocated_budgeted_and_charged,
    continuity_gaps_exercises_and_an_invoked_plan,
    capacity_samples_forecast_a_warning_that_raises_one_problem,
);
