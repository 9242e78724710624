//! CMDB pages: search with the API's filter language, a configuration item with its
//! attributes, relationships, history and a picture of what depends on it.
//!
//! The impact picture is laid out here by plain functions over plain values
//! ([`impact_picture`]) and drawn by the template as inline SVG: no script and no inline style
//! (the Content-Security-Policy forbids both), only classes from `static/cmdb.css`.
//!
//! Directions are the API's (`ImpactDirection`): **downstream** is what stops working when the
//! CI fails (its dependants), **upstream** is what the CI needs (possible causes when it fails).
//! The picture puts downstream CIs left of the CI and upstream CIs right of it, so every arrow
//! points from a CI to what it needs, left to right: a business service on the left, the servers
//! it ends up running on on the right.

use std::collections::{BTreeSet, HashMap, HashSet};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use prost_types::value::Kind;
use serde::Deserialize;
use tonic::{Code, Status};

use itsm_proto::cmdb::{
    AnalyzeImpactRequest, AnalyzeImpactResponse, AttributeDefinition, AttributeType,
    BatchGetConfigurationItemsRequest, ConfigurationItem, Criticality, GetCiClassRequest,
    GetConfigurationItemRequest, ImpactDirection, LifecycleStatus, ListConfigurationItemHistoryRequest,
    ListConfigurationItemsRequest, ListRelationshipsRequest, Relationship, RelationshipType,
};
use itsm_proto::common::{ChangeSource, HistoryEntry};
use itsm_proto::servicedesk::GetSupportGroupRequest;
use itsm_runtime::structs::struct_to_json;

use crate::calls::{authed, form_errors, page_error};
use crate::forms::{Choice, FieldKind, FieldView, FormErrors, FormView};
use crate::listing::{PageQuery, Pager, pager, query_escape};
use crate::pages::{CMDB_ROLES, Layout, PageError, Section, render};
use crate::session::Session;
use crate::views::{ChangeView, TimeView, number_of, time_view};
use crate::{AppState, form_status};

/// Rows per page of the search.
const PAGE_SIZE: i32 = 25;
/// History entries per page of a CI page.
const HISTORY_PAGE_SIZE: i32 = 50;
/// Relationships a CI page lists at most (the rest are counted, not shown).
const MAX_RELATIONSHIPS: i32 = 200;
/// Impact depth when the address names none, and the deepest the page offers.
const DEFAULT_DEPTH: u32 = 2;
const MAX_DEPTH: u32 = 5;
/// The class id of business services (the API also reports subclasses in `business_services`).
const BUSINESS_SERVICE: &str = "business_service";

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/cmdb", get(search)).route("/cmdb/items/{id}", get(item))
}

/// The CMDB is for IT staff: a session without one of [`CMDB_ROLES`] gets the 403 page before
/// any call (the gateway would answer PERMISSION_DENIED as well).
fn check_role(session: &Session) -> Result<(), PageError> {
    if session.data.has_any_role(CMDB_ROLES) {
        return Ok(());
    }
    Err(PageError::Forbidden("The CMDB is open to IT staff; your roles do not include it.".into()))
}

/// Whether `id` is a CI id as the API writes it (a lower-case, hyphenated UUID), so it is safe
/// in a resource name and an address.
fn is_ci_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|parsed| parsed.hyphenated().to_string() == id)
}

/// The page of the CI named `name` (`configurationItems/{id}`).
fn item_href(name: &str) -> String {
    format!("/cmdb/items/{}", query_escape(number_of(name)))
}

/// A lifecycle status for people.
fn status_label(status: i32) -> &'static str {
    match LifecycleStatus::try_from(status) {
        Ok(LifecycleStatus::Planned) => "Planned",
        Ok(LifecycleStatus::InBuild) => "In build",
        Ok(LifecycleStatus::InUse) => "In use",
        Ok(LifecycleStatus::Maintenance) => "Maintenance",
        Ok(LifecycleStatus::Retired) => "Retired",
        _ => "—",
    }
}

/// A criticality for people, and a CSS class for its badge ("" = no badge).
fn criticality_label(criticality: i32) -> (&'static str, &'static str) {
    match Criticality::try_from(criticality) {
        Ok(Criticality::Low) => ("Low", "cmdb-criticality--low"),
        Ok(Criticality::Medium) => ("Medium", "cmdb-criticality--medium"),
        Ok(Criticality::High) => ("High", "cmdb-criticality--high"),
        Ok(Criticality::Critical) => ("Critical", "cmdb-criticality--critical"),
        _ => ("—", ""),
    }
}

/// `text`, or "—" when it is empty.
fn or_dash(text: &str) -> String {
    if text.is_empty() { "—".to_string() } else { text.to_string() }
}

// ---- search ----------------------------------------------------------------------------------

/// `/cmdb?filter=…&order_by=…&page=…&trail=…`: the filter and order go to the API unchanged.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    pub filter: String,
    pub order_by: String,
    /// The API's token of the page shown ("" = the first); `page_token` is accepted too.
    #[serde(alias = "page_token")]
    pub page: String,
    pub trail: String,
}

/// The orders the form offers, as `order_by` values of ListConfigurationItems.
const ORDERS: [(&str, &str); 5] = [
    ("display_name", "Name, A to Z"),
    ("display_name desc", "Name, Z to A"),
    ("update_time desc", "Recently changed first"),
    ("create_time desc", "Newest first"),
    ("create_time", "Oldest first"),
];

/// Filters the help shows (each a link that searches with it).
const FILTER_EXAMPLES: [&str; 4] = [
    r#"ci_class = "server" AND environment = "prod""#,
    r#"labels.team = "payments""#,
    r#"criticality = "CRITICAL" OR criticality = "HIGH""#,
    r#"lifecycle_status != "RETIRED" AND owner = "payments-team""#,
];

/// The fields ListConfigurationItems filters on.
const FILTER_FIELDS: &str = "display_name, ci_class, description, lifecycle_status, environment, \
                             criticality, owner, support_group, create_time, update_time, labels.<key>";

/// One row of the search results.
pub struct CiRow {
    /// The last segment of the resource name (the page's address).
    pub id: String,
    pub name: String,
    pub class: String,
    pub status: &'static str,
    pub environment: String,
    pub criticality: &'static str,
    pub criticality_class: &'static str,
    pub owner: String,
}

impl CiRow {
    fn new(ci: &ConfigurationItem) -> Self {
        let (criticality, criticality_class) = criticality_label(ci.criticality);
        Self {
            id: number_of(&ci.name).to_string(),
            name: ci.display_name.clone(),
            class: ci.ci_class.clone(),
            status: status_label(ci.lifecycle_status),
            environment: or_dash(&ci.environment),
            criticality,
            criticality_class,
            owner: or_dash(&ci.owner),
        }
    }

    pub fn has_criticality_badge(&self) -> bool {
        !self.criticality_class.is_empty()
    }
}

/// An example filter and the search it links to.
pub struct FilterExample {
    pub text: &'static str,
    pub href: String,
}

#[derive(Template)]
#[template(path = "cmdb/search.html")]
pub struct SearchPage {
    layout: Layout,
    form: FormView,
    examples: Vec<FilterExample>,
    fields_help: &'static str,
    /// A filter was given.
    searched: bool,
    /// The API refused the search (the errors are on the form).
    failed: bool,
    items: Vec<CiRow>,
    pager: Pager,
}

/// The search's address for `filter` and `order_by` (escaped; empty ones left out).
fn search_address(filter: &str, order_by: &str) -> String {
    let mut params = Vec::new();
    if !filter.is_empty() {
        params.push(format!("filter={}", query_escape(filter)));
    }
    if !order_by.is_empty() {
        params.push(format!("order_by={}", query_escape(order_by)));
    }
    if params.is_empty() { "/cmdb".to_string() } else { format!("/cmdb?{}", params.join("&")) }
}

/// Where a ListConfigurationItems field violation shows; `page_token` and the rest go on top.
fn search_field(path: &str) -> Option<String> {
    matches!(path, "filter" | "order_by").then(|| path.to_string())
}

/// The form errors of a refused search. The API's descriptions ("expected a value after
/// `name`") follow the field's label: "Filter is not valid: expected a value after `name`".
fn search_errors(status: &Status, here: &str) -> Result<FormErrors, PageError> {
    let mut errors = form_errors(status, here, &search_field)?;
    for description in errors.fields.values_mut() {
        *description = format!("is not valid: {description}");
    }
    Ok(errors)
}

/// GET `/cmdb`: configuration items matching the filter, a page at a time.
pub async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PageError> {
    check_role(&session)?;
    let page = PageQuery { page: query.page.clone(), trail: query.trail.clone() };
    let request = ListConfigurationItemsRequest {
        page_size: PAGE_SIZE,
        page_token: page.page.clone(),
        filter: query.filter.clone(),
        order_by: query.order_by.clone(),
    };
    let mut errors = FormErrors::default();
    let (mut items, mut next_page_token) = (Vec::new(), String::new());
    match state.gateway.cmdb().list_configuration_items(authed(&session.data, request)).await {
        Ok(response) => {
            let listed = response.into_inner();
            items = listed.configuration_items.iter().map(CiRow::new).collect();
            next_page_token = listed.next_page_token;
        }
        Err(status) => errors = search_errors(&status, &session.here)?,
    }

    let mut orders: Vec<(&str, &str)> = ORDERS.to_vec();
    if !query.order_by.is_empty() && !orders.iter().any(|(value, _)| *value == query.order_by) {
        // An order typed into the address stays what the form sends next.
        orders.push((query.order_by.as_str(), query.order_by.as_str()));
    }
    let fields = vec![
        FieldView::new("filter", "filter", "Filter", FieldKind::Text).value(query.filter.as_str()).hint(
            "The API's filter language (AIP-160): a field, an operator and a quoted value, \
             combined with AND, OR and NOT. Empty shows every configuration item.",
        ),
        FieldView::new("order_by", "order_by", "Order", FieldKind::Select)
            .value(query.order_by.as_str())
            .choices(orders)
            .hint("Unchosen: by name, A to Z."),
    ];
    let examples = FILTER_EXAMPLES
        .into_iter()
        .map(|text| FilterExample { text, href: search_address(text, "") })
        .collect();
    let failed = !errors.is_empty();
    let page_view = SearchPage {
        layout: Layout::new("Configuration items", Some(&session.data), Section::Cmdb),
        form: FormView::new(fields, &errors),
        examples,
        fields_help: FILTER_FIELDS,
        searched: !query.filter.trim().is_empty(),
        failed,
        items,
        pager: pager(&search_address(&query.filter, &query.order_by), &page, &next_page_token),
    };
    Ok(render(form_status(failed), &page_view))
}

// ---- one configuration item ------------------------------------------------------------------

/// `/cmdb/items/{id}?depth=1..5&page=…&trail=…` (`page`/`trail` page the history).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ItemQuery {
    pub depth: String,
    pub page: String,
    pub trail: String,
}

/// The impact depth of `?depth=`: 1 to 5, the default when missing or not a number, the nearest
/// bound when out of range.
fn impact_depth(text: &str) -> u32 {
    match text.trim().parse::<i64>() {
        Ok(depth) => u32::try_from(depth.clamp(1, i64::from(MAX_DEPTH))).unwrap_or(DEFAULT_DEPTH),
        Err(_) => DEFAULT_DEPTH,
    }
}

/// The CI's own fields as the page shows them.
pub struct CiView {
    pub id: String,
    pub name: String,
    pub class: String,
    /// The class's display name ("" when unknown).
    pub class_name: String,
    pub description: String,
    pub status: &'static str,
    pub environment: String,
    pub criticality: &'static str,
    pub criticality_class: &'static str,
    pub owner: String,
    /// The support group's display name when the service desk tells it, else its resource name.
    pub support_group: String,
    pub created: Option<TimeView>,
    pub updated: Option<TimeView>,
    pub updater: String,
}

impl CiView {
    pub fn has_description(&self) -> bool {
        !self.description.is_empty()
    }

    pub fn has_class_name(&self) -> bool {
        !self.class_name.is_empty() && self.class_name != self.class
    }

    pub fn has_criticality_badge(&self) -> bool {
        !self.criticality_class.is_empty()
    }
}

/// One attribute of the CI: every attribute its class defines (set or not), then any other
/// the CI carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeView {
    pub name: String,
    /// What values it takes, for people ("text", "one of a, b", …; "—" when not in the class).
    pub kind: String,
    pub value: String,
    /// The page of a referenced CI ("" = not a reference).
    pub link: String,
    pub required: bool,
    pub description: String,
}

impl AttributeView {
    pub fn has_link(&self) -> bool {
        !self.link.is_empty()
    }
}

/// One label.
pub struct LabelView {
    pub key: String,
    pub value: String,
}

/// One relationship, read from this CI's side ("depends on", "is used by", …).
pub struct RelationshipView {
    pub element_id: String,
    pub reading: &'static str,
    pub kind: &'static str,
    pub other_href: String,
    pub other_name: String,
    pub other_class: String,
    pub redundant: bool,
}

/// One entry of the CI's history.
pub struct HistoryView {
    pub version: i64,
    pub when: Option<TimeView>,
    pub actor: String,
    pub action: String,
    /// What made the change ("user", "change CHG0000012", …).
    pub source: String,
    pub changes: Vec<ChangeView>,
}

/// One CI of an impact direction, for the list beside the picture.
pub struct ImpactRow {
    pub element_id: String,
    pub href: String,
    pub name: String,
    pub class: String,
    pub depth: u32,
    pub business_service: bool,
    pub from_href: String,
    pub from_name: String,
}

/// A CI that lost some of its redundant providers and stays up.
pub struct DegradedView {
    pub href: String,
    pub name: String,
    pub remaining: usize,
}

/// The impact section: the picture, its accessible lists and what could not be shown.
pub struct ImpactView {
    pub depth: u32,
    pub depth_choices: Vec<Choice>,
    pub picture: ImpactPicture,
    /// The picture's accessible name and description.
    pub label: String,
    pub description: String,
    pub downstream: Vec<ImpactRow>,
    pub upstream: Vec<ImpactRow>,
    pub degraded: Vec<DegradedView>,
    /// Why a direction could not be analysed, or that the walk was cut short.
    pub notes: Vec<String>,
}

#[derive(Template)]
#[template(path = "cmdb/item.html")]
pub struct ItemPage {
    layout: Layout,
    ci: CiView,
    attributes: Vec<AttributeView>,
    labels: Vec<LabelView>,
    relationships: Vec<RelationshipView>,
    /// Why the relationships cannot be shown, or that only the first ones are ("" = all shown).
    relationships_note: String,
    impact: ImpactView,
    history: Vec<HistoryView>,
    history_problem: String,
    pager: Pager,
}

impl ItemPage {
    pub fn has_relationships_note(&self) -> bool {
        !self.relationships_note.is_empty()
    }

    pub fn has_history_problem(&self) -> bool {
        !self.history_problem.is_empty()
    }
}

/// A part of a page beside its main record: its value, or why it cannot be shown. A revoked
/// token or a missing role ends the page as the main call would.
fn part<T>(result: Result<tonic::Response<T>, Status>, here: &str) -> Result<Result<T, String>, PageError> {
    match result {
        Ok(response) => Ok(Ok(response.into_inner())),
        Err(status) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
            Err(page_error(&status, here))
        }
        Err(status) => Ok(Err(status.message().to_string())),
    }
}

fn impact_request(name: &str, direction: ImpactDirection, depth: u32) -> AnalyzeImpactRequest {
    AnalyzeImpactRequest {
        configuration_item: name.to_string(),
        direction: direction as i32,
        max_depth: i32::try_from(depth).unwrap_or(2),
        // Empty: the API's default types (DEPENDS_ON, RUNS_ON and PART_OF).
        relationship_types: Vec::new(),
        also_failed: Vec::new(),
        // Zero: the API's default (1000).
        max_items: 0,
    }
}

/// GET `/cmdb/items/{id}`: the CI with its attributes, relationships, impact and history.
pub async fn item(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ItemQuery>,
) -> Result<Response, PageError> {
    check_role(&session)?;
    if !is_ci_id(&id) {
        return Err(PageError::NotFound(format!("No configuration item {id}.")));
    }
    let name = format!("configurationItems/{id}");
    let depth = impact_depth(&query.depth);
    let history_page = PageQuery { page: query.page, trail: query.trail };
    let here = session.here.as_str();
    let ci = state
        .gateway
        .cmdb()
        .get_configuration_item(authed(
            &session.data,
            GetConfigurationItemRequest { name: name.clone(), read_time: None },
        ))
        .await
        .map_err(|status| page_error(&status, here))?
        .into_inner();

    // One client per call, so the five reads run at once.
    let mut relationships_client = state.gateway.cmdb();
    let mut history_client = state.gateway.cmdb();
    let mut downstream_client = state.gateway.cmdb();
    let mut upstream_client = state.gateway.cmdb();
    let mut class_client = state.gateway.cmdb();
    let relationships_request = ListRelationshipsRequest {
        page_size: MAX_RELATIONSHIPS,
        page_token: String::new(),
        filter: format!("ci = \"{name}\""),
    };
    let history_request = ListConfigurationItemHistoryRequest {
        name: name.clone(),
        page_size: HISTORY_PAGE_SIZE,
        page_token: history_page.page.clone(),
    };
    let class_request = GetCiClassRequest { name: format!("ciClasses/{}", ci.ci_class) };
    let (relationships, history, downstream, upstream, class) = tokio::join!(
        relationships_client.list_relationships(authed(&session.data, relationships_request)),
        history_client.list_configuration_item_history(authed(&session.data, history_request)),
        downstream_client
            .analyze_impact(authed(&session.data, impact_request(&name, ImpactDirection::Downstream, depth))),
        upstream_client
            .analyze_impact(authed(&session.data, impact_request(&name, ImpactDirection::Upstream, depth))),
        class_client.get_ci_class(authed(&session.data, class_request)),
    );
    let relationships = part(relationships, here)?;
    let history = part(history, here)?;
    let downstream = part(downstream, here)?;
    let upstream = part(upstream, here)?;
    // The class only adds types and unset attributes: without it the page shows what the CI has.
    let class = class.ok().map(tonic::Response::into_inner);

    // Names of the CIs the page links to besides the impact walk (which names its own).
    let attribute_values = match ci.attributes.as_ref().map(struct_to_json) {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut wanted = BTreeSet::new();
    if let Ok(listed) = &relationships {
        for relationship in &listed.relationships {
            wanted.insert(other_end(relationship, &name).to_string());
        }
    }
    if let Ok(analysis) = &downstream {
        for degraded in &analysis.degraded {
            wanted.insert(degraded.configuration_item.clone());
        }
    }
    for value in attribute_values.values() {
        if let Some(reference) = value.as_str().filter(|text| text.starts_with("configurationItems/")) {
            wanted.insert(reference.to_string());
        }
    }
    let names = ci_names(&state, &session, wanted.into_iter().collect()).await;

    let (relationships, relationships_note) = match relationships {
        Ok(listed) => {
            let note = if listed.next_page_token.is_empty() {
                String::new()
            } else {
                format!("Only the first {MAX_RELATIONSHIPS} relationships are shown.")
            };
            (relationship_views(&listed.relationships, &name, &names), note)
        }
        Err(problem) => (Vec::new(), format!("The relationships cannot be shown: {problem}")),
    };
    let (history, history_problem, next_history_token) = match history {
        Ok(listed) => (history_views(&listed.entries), String::new(), listed.next_page_token),
        Err(problem) => (Vec::new(), format!("The history cannot be shown: {problem}"), String::new()),
    };

    let support_group = support_group_name(&state, &session, &ci.support_group).await;
    let is_service =
        ci.ci_class == BUSINESS_SERVICE || class.as_ref().is_some_and(|c| c.parent == BUSINESS_SERVICE);
    let impact = impact_view(&ci, is_service, depth, &downstream, &upstream, &names);
    let definitions = class.as_ref().map(|c| c.effective_attributes.as_slice()).unwrap_or_default();
    let mut labels: Vec<LabelView> =
        ci.labels.iter().map(|(key, value)| LabelView { key: key.clone(), value: value.clone() }).collect();
    labels.sort_by(|a, b| a.key.cmp(&b.key));
    let (criticality, criticality_class) = criticality_label(ci.criticality);
    let audit = ci.audit.clone().unwrap_or_default();
    let view = CiView {
        id: id.clone(),
        name: ci.display_name.clone(),
        class: ci.ci_class.clone(),
        class_name: class.as_ref().map(|c| c.display_name.clone()).unwrap_or_default(),
        description: ci.description.clone(),
        status: status_label(ci.lifecycle_status),
        environment: or_dash(&ci.environment),
        criticality,
        criticality_class,
        owner: or_dash(&ci.owner),
        support_group: or_dash(&support_group),
        created: time_view(audit.create_time.as_ref()),
        updated: time_view(audit.update_time.as_ref()),
        updater: audit.updater,
    };
    let page = ItemPage {
        layout: Layout::new(format!("{} · CMDB", ci.display_name), Some(&session.data), Section::Cmdb),
        attributes: attribute_views(definitions, &attribute_values, &names),
        labels,
        relationships,
        relationships_note,
        impact,
        history,
        history_problem,
        pager: pager(&format!("/cmdb/items/{id}?depth={depth}"), &history_page, &next_history_token),
        ci: view,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The display name and class of each of `names` (resource names). A failure leaves the map
/// empty and the page shows resource names: it is decoration, not the page's point.
async fn ci_names(
    state: &AppState,
    session: &Session,
    names: Vec<String>,
) -> HashMap<String, (String, String)> {
    if names.is_empty() {
        return HashMap::new();
    }
    let request = BatchGetConfigurationItemsRequest { names };
    match state.gateway.cmdb().batch_get_configuration_items(authed(&session.data, request)).await {
        Ok(response) => response
            .into_inner()
            .configuration_items
            .into_iter()
            .map(|ci| (ci.name, (ci.display_name, ci.ci_class)))
            .collect(),
        Err(status) => {
            tracing::debug!(code = ?status.code(), "configuration item names not available");
            HashMap::new()
        }
    }
}

/// The display name of support group `name`, or `name` itself when the service desk does not
/// tell it (roles without service-desk access, a group that is gone).
async fn support_group_name(state: &AppState, session: &Session, name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let request = GetSupportGroupRequest { name: name.to_string() };
    match state.gateway.desk().get_support_group(authed(&session.data, request)).await {
        Ok(response) => response.into_inner().display_name,
        Err(status) => {
            tracing::debug!(code = ?status.code(), "support group name not available");
            name.to_string()
        }
    }
}

// ---- attributes, relationships, history --------------------------------------------------------

/// What values an attribute takes, for people.
fn attribute_kind(definition: &AttributeDefinition) -> String {
    match AttributeType::try_from(definition.r#type) {
        Ok(AttributeType::String) => "text".into(),
        Ok(AttributeType::Int) => "whole number".into(),
        Ok(AttributeType::Bool) => "true or false".into(),
        Ok(AttributeType::Enum) => format!("one of {}", definition.enum_values.join(", ")),
        Ok(AttributeType::Timestamp) => "time".into(),
        Ok(AttributeType::Reference) if definition.reference_class.is_empty() => "CI reference".into(),
        Ok(AttributeType::Reference) => format!("reference to a {}", definition.reference_class),
        Ok(AttributeType::Json) => "JSON".into(),
        _ => "—".into(),
    }
}

/// A JSON number as people write it: whole numbers without ".0".
fn number_text(number: &serde_json::Number) -> String {
    if let Some(float) = number.as_f64()
        && number.is_f64()
        && float.fract() == 0.0
        && float.abs() < 9.0e15
    {
        // Exact: a whole number below 2^53 converts without loss.
        return (float as i64).to_string();
    }
    number.to_string()
}

/// An attribute or history value as text: strings without quotes, nothing as "—", lists and
/// objects as compact JSON.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "—".to_string(),
        serde_json::Value::String(text) if text.is_empty() => "—".to_string(),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Bool(flag) => flag.to_string(),
        serde_json::Value::Number(number) => number_text(number),
        other => other.to_string(),
    }
}

/// A history value (JSON text) as text; "" (unset) as "—".
fn history_text(json: &str) -> String {
    if json.is_empty() {
        return "—".to_string();
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => json_text(&value),
        Err(_) => json.to_string(),
    }
}

/// One attribute row for `value`: a reference to a CI links to its page, by name when known.
fn attribute_view(
    name: &str,
    kind: String,
    value: Option<&serde_json::Value>,
    names: &HashMap<String, (String, String)>,
) -> AttributeView {
    let mut view = AttributeView {
        name: name.to_string(),
        kind,
        value: value.map_or_else(|| "—".to_string(), json_text),
        link: String::new(),
        required: false,
        description: String::new(),
    };
    if let Some(reference) = value.and_then(serde_json::Value::as_str)
        && let Some(id) = reference.strip_prefix("configurationItems/")
        && is_ci_id(id)
    {
        view.link = item_href(reference);
        if let Some((display_name, _)) = names.get(reference) {
            view.value.clone_from(display_name);
        }
    }
    view
}

/// Every attribute `definitions` (the class's, inherited included) defines, set or not, in the
/// class's order; then the others `values` holds, by name.
fn attribute_views(
    definitions: &[AttributeDefinition],
    values: &serde_json::Map<String, serde_json::Value>,
    names: &HashMap<String, (String, String)>,
) -> Vec<AttributeView> {
    let mut views = Vec::with_capacity(definitions.len() + values.len());
    for definition in definitions {
        let mut view =
            attribute_view(&definition.name, attribute_kind(definition), values.get(&definition.name), names);
        view.required = definition.required;
        view.description.clone_from(&definition.description);
        views.push(view);
    }
    for (name, value) in values {
        if !definitions.iter().any(|d| &d.name == name) {
            views.push(attribute_view(name, "—".to_string(), Some(value), names));
        }
    }
    views
}

/// The end of `relationship` that is not `this` (its source when it relates `this` to itself).
fn other_end<'a>(relationship: &'a Relationship, this: &str) -> &'a str {
    if relationship.source == this { &relationship.target } else { &relationship.source }
}

/// How a relationship reads from one end (`outgoing`: that end is its source), and its type.
fn reading(kind: i32, outgoing: bool) -> (&'static str, &'static str) {
    match (RelationshipType::try_from(kind), outgoing) {
        (Ok(RelationshipType::DependsOn), true) => ("depends on", "DEPENDS_ON"),
        (Ok(RelationshipType::DependsOn), false) => ("is used by", "DEPENDS_ON"),
        (Ok(RelationshipType::RunsOn), true) => ("runs on", "RUNS_ON"),
        (Ok(RelationshipType::RunsOn), false) => ("hosts", "RUNS_ON"),
        (Ok(RelationshipType::PartOf), true) => ("is part of", "PART_OF"),
        (Ok(RelationshipType::PartOf), false) => ("contains", "PART_OF"),
        (Ok(RelationshipType::ConnectsTo), _) => ("connects to", "CONNECTS_TO"),
        (Ok(RelationshipType::OwnedBy), true) => ("is owned by", "OWNED_BY"),
        (Ok(RelationshipType::OwnedBy), false) => ("owns", "OWNED_BY"),
        _ => ("relates to", "—"),
    }
}

/// Whether a relationship's properties mark it as one of several redundant providers.
fn is_redundant(relationship: &Relationship) -> bool {
    relationship
        .properties
        .as_ref()
        .and_then(|p| p.fields.get("redundant"))
        .is_some_and(|value| matches!(value.kind, Some(Kind::BoolValue(true))))
}

/// The relationships of CI `this`, read from its side, by reading then the other CI's name.
fn relationship_views(
    relationships: &[Relationship],
    this: &str,
    names: &HashMap<String, (String, String)>,
) -> Vec<RelationshipView> {
    let mut views: Vec<RelationshipView> = relationships
        .iter()
        .map(|relationship| {
            let other = other_end(relationship, this);
            let (reading, kind) = reading(relationship.r#type, relationship.source == this);
            let (other_name, other_class) =
                names.get(other).cloned().unwrap_or_else(|| (other.to_string(), String::new()));
            RelationshipView {
                element_id: format!("relationship-{}", number_of(&relationship.name)),
                reading,
                kind,
                other_href: item_href(other),
                other_name,
                other_class,
                redundant: is_redundant(relationship),
            }
        })
        .collect();
    views.sort_by(|a, b| a.reading.cmp(b.reading).then_with(|| a.other_name.cmp(&b.other_name)));
    views
}

/// What made a change, for people: "user", "import", "change CHG0000012", …
fn source_label(source: i32, reference: &str) -> String {
    let what = match ChangeSource::try_from(source) {
        Ok(ChangeSource::User) => "user",
        Ok(ChangeSource::Import) => "import",
        Ok(ChangeSource::Change) => "change",
        Ok(ChangeSource::Release) => "release",
        Ok(ChangeSource::System) => "system",
        _ => "",
    };
    match (what.is_empty(), reference.is_empty()) {
        (true, true) => "—".to_string(),
        (true, false) => reference.to_string(),
        (false, true) => what.to_string(),
        (false, false) => format!("{what} {reference}"),
    }
}

/// The history entries as the page shows them, in the API's order (oldest first).
fn history_views(entries: &[HistoryEntry]) -> Vec<HistoryView> {
    entries
        .iter()
        .map(|entry| HistoryView {
            version: entry.version,
            when: time_view(entry.change_time.as_ref()),
            actor: or_dash(&entry.actor),
            action: entry.action.clone(),
            source: source_label(entry.source, &entry.source_reference),
            changes: entry
                .changes
                .iter()
                .map(|change| ChangeView {
                    field: change.field.clone(),
                    from: history_text(&change.old_value),
                    to: history_text(&change.new_value),
                })
                .collect(),
        })
        .collect()
}

// ---- impact ----------------------------------------------------------------------------------

/// The CIs one AnalyzeImpact answer reached, as the picture takes them. Business services are
/// the answer's `business_services` (subclasses included) and CIs of the class itself.
fn impact_cis(response: &AnalyzeImpactResponse) -> Vec<ImpactCi> {
    let services: HashSet<&str> =
        response.business_services.iter().map(|s| s.configuration_item.as_str()).collect();
    response
        .items
        .iter()
        .map(|item| ImpactCi {
            name: item.configuration_item.clone(),
            display_name: item.display_name.clone(),
            ci_class: item.ci_class.clone(),
            depth: u32::try_from(item.depth).unwrap_or(0),
            // `reached_from` is always set; a path (business services) says the same.
            reached_from: if item.reached_from.is_empty() {
                item.path.iter().rev().nth(1).cloned().unwrap_or_default()
            } else {
                item.reached_from.clone()
            },
            business_service: services.contains(item.configuration_item.as_str())
                || item.ci_class == BUSINESS_SERVICE,
        })
        .collect()
}

/// The list of one direction beside the picture: nearest first, then by name.
fn impact_rows(side: Side, cis: &[ImpactCi], root: &ImpactCi) -> Vec<ImpactRow> {
    let by_name: HashMap<&str, &str> = cis
        .iter()
        .chain(std::iter::once(root))
        .map(|ci| (ci.name.as_str(), ci.display_name.as_str()))
        .collect();
    let mut rows: Vec<ImpactRow> = cis
        .iter()
        .map(|ci| ImpactRow {
            element_id: format!("{}-row-{}", side.word(), number_of(&ci.name)),
            href: item_href(&ci.name),
            name: shown_name(ci).to_string(),
            class: ci.ci_class.clone(),
            depth: ci.depth,
            business_service: ci.business_service,
            from_href: item_href(&ci.reached_from),
            from_name: by_name
                .get(ci.reached_from.as_str())
                .map_or_else(|| ci.reached_from.clone(), |name| (*name).to_string()),
        })
        .collect();
    rows.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.name.cmp(&b.name)));
    rows
}

fn impact_view(
    ci: &ConfigurationItem,
    is_service: bool,
    depth: u32,
    downstream: &Result<AnalyzeImpactResponse, String>,
    upstream: &Result<AnalyzeImpactResponse, String>,
    names: &HashMap<String, (String, String)>,
) -> ImpactView {
    let root = ImpactCi {
        name: ci.name.clone(),
        display_name: ci.display_name.clone(),
        ci_class: ci.ci_class.clone(),
        depth: 0,
        reached_from: String::new(),
        business_service: is_service,
    };
    let mut notes = Vec::new();
    let mut side = |answer: &Result<AnalyzeImpactResponse, String>, what: &str| match answer {
        Ok(response) => {
            if response.truncated {
                notes.push(format!(
                    "The {what} walk reached {} configuration items and stopped early; not all are shown.",
                    response.total_reached
                ));
            }
            impact_cis(response)
        }
        Err(problem) => {
            notes.push(format!("The {what} impact cannot be shown: {problem}"));
            Vec::new()
        }
    };
    let down = side(downstream, "downstream");
    let up = side(upstream, "upstream");
    let degraded = match downstream {
        Ok(response) => response
            .degraded
            .iter()
            .map(|d| DegradedView {
                href: item_href(&d.configuration_item),
                name: names
                    .get(&d.configuration_item)
                    .map_or_else(|| d.configuration_item.clone(), |(name, _)| name.clone()),
                remaining: d.remaining_providers.len(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let label = format!(
        "Impact of {}: {} downstream and {} upstream configuration items, to depth {depth}",
        ci.display_name,
        down.len(),
        up.len()
    );
    let description = format!(
        "{} in the middle. Left, downstream: what stops working if it fails. Right, upstream: \
         what it needs. Arrows point from a configuration item to what it needs. The same items \
         are listed in the tables below the picture.",
        ci.display_name
    );
    let depth_choices = (1..=MAX_DEPTH)
        .map(|value| Choice { value: value.to_string(), label: value.to_string(), selected: value == depth })
        .collect();
    ImpactView {
        depth,
        depth_choices,
        picture: impact_picture(&root, &down, &up, MAX_NODES_PER_COLUMN),
        label,
        description,
        downstream: impact_rows(Side::Downstream, &down, &root),
        upstream: impact_rows(Side::Upstream, &up, &root),
        degraded,
        notes,
    }
}

// ---- the impact picture: layout over plain values ----------------------------------------------

/// Most CIs drawn in one column; the rest are counted ("and 3 more") and listed in the tables.
const MAX_NODES_PER_COLUMN: usize = 25;
const NODE_WIDTH: i32 = 188;
const NODE_HEIGHT: i32 = 46;
const COLUMN_GAP: i32 = 64;
const ROW_GAP: i32 = 14;
const MARGIN: i32 = 16;
/// Room above the nodes for the column headings.
const HEAD_HEIGHT: i32 = 28;
/// Where an arrow stops before the box it points at.
const ARROW_GAP: i32 = 3;
/// Characters of a name and a class a box holds.
const NAME_CHARS: usize = 24;
const CLASS_CHARS: usize = 27;
/// The element id of the analysed CI's box.
const ROOT_ELEMENT_ID: &str = "impact-root";

/// Which way from the analysed CI (the API's `ImpactDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// What stops working when the CI fails: drawn left of it.
    Downstream,
    /// What the CI needs: drawn right of it.
    Upstream,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Self::Downstream => "downstream",
            Self::Upstream => "upstream",
        }
    }

    fn node_class(self) -> &'static str {
        match self {
            Self::Downstream => "impact-node--downstream",
            Self::Upstream => "impact-node--upstream",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Downstream => "Downstream",
            Self::Upstream => "Upstream",
        }
    }
}

/// A CI as the picture takes it: what the API said, as plain strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactCi {
    /// Resource name (`configurationItems/{id}`): what `reached_from` refers to.
    pub name: String,
    pub display_name: String,
    pub ci_class: String,
    /// Steps from the analysed CI (0 for the analysed CI itself).
    pub depth: u32,
    /// The resource name of the CI it was reached from (the analysed CI's for depth 1).
    pub reached_from: String,
    pub business_service: bool,
}

/// One box of the picture: a link to the CI's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureNode {
    /// `impact-node-{id}` (`impact-root` for the analysed CI); a CI on both sides (a cycle) has
    /// `-upstream` added on its right-hand box.
    pub element_id: String,
    pub href: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
    pub text_x: i32,
    pub name_y: i32,
    pub class_y: i32,
    /// Name and class, clipped to the box; `tooltip` has both in full.
    pub name: String,
    pub class_text: String,
    pub tooltip: String,
    pub css: String,
}

/// A line from a CI to what it needs (a cubic path, left to right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureEdge {
    pub d: String,
    pub css: &'static str,
}

/// A text of the picture: a column heading or how many more a column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureText {
    pub element_id: String,
    /// The middle of the text (CSS anchors it there).
    pub x: i32,
    pub y: i32,
    pub text: String,
}

/// The laid-out picture: sizes, boxes per side, lines and texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactPicture {
    pub width: i32,
    pub height: i32,
    pub root: PictureNode,
    pub downstream: Vec<PictureNode>,
    pub upstream: Vec<PictureNode>,
    pub edges: Vec<PictureEdge>,
    pub heads: Vec<PictureText>,
    pub overflows: Vec<PictureText>,
}

impl ImpactPicture {
    pub fn view_box(&self) -> String {
        format!("0 0 {} {}", self.width, self.height)
    }

    pub fn is_alone(&self) -> bool {
        self.downstream.is_empty() && self.upstream.is_empty()
    }
}

/// One column of one side: the CIs drawn, in order, and how many did not fit.
struct Column<'a> {
    members: Vec<&'a ImpactCi>,
    hidden: usize,
}

impl Column<'_> {
    /// Rows the column takes: its boxes and the "and N more" line.
    fn rows(&self) -> usize {
        self.members.len() + usize::from(self.hidden > 0)
    }
}

/// `n` in pixels (the counts here are small; a huge one saturates).
fn pixels(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `text` cut to `max_chars` characters, the last one an ellipsis when cut.
fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// The name a CI is shown by (its id when the API gave no name).
fn shown_name(ci: &ImpactCi) -> &str {
    if ci.display_name.is_empty() { number_of(&ci.name) } else { &ci.display_name }
}

/// The CIs of one side by depth (index 0 = depth 1), each column ordered by the row of the CI it
/// was reached from, so lines run as straight as they can, then by name; at most `cap` each.
fn arrange<'a>(cis: &'a [ImpactCi], root: &'a str, cap: usize) -> Vec<Column<'a>> {
    let deepest = cis.iter().map(|ci| ci.depth).max().unwrap_or(0);
    let mut rows: HashMap<&'a str, usize> = HashMap::from([(root, 0)]);
    let mut columns = Vec::new();
    for depth in 1..=deepest {
        let mut members: Vec<&'a ImpactCi> = cis.iter().filter(|ci| ci.depth == depth).collect();
        let key = |ci: &ImpactCi| {
            (
                rows.get(ci.reached_from.as_str()).copied().unwrap_or(usize::MAX),
                ci.display_name.to_lowercase(),
            )
        };
        members.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name)));
        let hidden = members.len().saturating_sub(cap);
        members.truncate(cap);
        for (row, ci) in members.iter().copied().enumerate() {
            rows.insert(ci.name.as_str(), row);
        }
        columns.push(Column { members, hidden });
    }
    columns
}

fn picture_node(ci: &ImpactCi, element_id: String, (x, y): (i32, i32), side_class: &str) -> PictureNode {
    let mut css = format!("impact-node {side_class}");
    if ci.business_service {
        css.push_str(" impact-node--service");
    }
    let name = shown_name(ci);
    PictureNode {
        element_id,
        href: item_href(&ci.name),
        x,
        y,
        width: NODE_WIDTH,
        height: NODE_HEIGHT,
        text_x: x + 10,
        name_y: y + 19,
        class_y: y + 37,
        name: clip(name, NAME_CHARS),
        class_text: clip(&ci.ci_class, CLASS_CHARS),
        tooltip: format!("{name} ({})", ci.ci_class),
        css,
    }
}

/// A line from the box at `from` (its right edge) to the box at `to` (its left edge, where the
/// arrow head goes): a cubic curve, level at both ends.
fn edge_path(from: (i32, i32), to: (i32, i32)) -> String {
    let (x1, y1) = (from.0 + NODE_WIDTH, from.1 + NODE_HEIGHT / 2);
    let (x2, y2) = (to.0 - ARROW_GAP, to.1 + NODE_HEIGHT / 2);
    let middle = (x1 + x2) / 2;
    format!("M{x1} {y1} C{middle} {y1} {middle} {y2} {x2} {y2}")
}

/// Lays out the impact picture of `root`: the CIs `downstream` reached in columns to its left
/// (depth 1 next to it), those `upstream` reached to its right, at most `cap` boxes a column
/// (the rest counted under it), and a line from each CI to the one it was reached from when both
/// are drawn. Every line points from a CI to what it needs, so left to right. Each column is
/// centred on the tallest, so a chain is a straight line.
pub fn impact_picture(
    root: &ImpactCi,
    downstream: &[ImpactCi],
    upstream: &[ImpactCi],
    cap: usize,
) -> ImpactPicture {
    let left = arrange(downstream, &root.name, cap);
    let right = arrange(upstream, &root.name, cap);
    let tallest = left.iter().chain(&right).map(Column::rows).max().unwrap_or(0).max(1);
    let pitch = NODE_HEIGHT + ROW_GAP;
    let body = pixels(tallest) * pitch - ROW_GAP;
    let top = MARGIN + HEAD_HEIGHT;
    let column_x = |index: usize| MARGIN + pixels(index) * (NODE_WIDTH + COLUMN_GAP);
    let row_y =
        |rows: usize, row: usize| top + (body - (pixels(rows) * pitch - ROW_GAP)) / 2 + pixels(row) * pitch;
    let heading_y = MARGIN + HEAD_HEIGHT / 2;

    let root_index = left.len();
    let root_at = (column_x(root_index), row_y(1, 0));
    let columns = left.len() + 1 + right.len();
    let mut picture = ImpactPicture {
        width: 2 * MARGIN + pixels(columns) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP,
        height: top + body + MARGIN,
        root: picture_node(root, ROOT_ELEMENT_ID.to_string(), root_at, "impact-node--root"),
        downstream: Vec::new(),
        upstream: Vec::new(),
        edges: Vec::new(),
        heads: vec![PictureText {
            element_id: "impact-head-root".to_string(),
            x: root_at.0 + NODE_WIDTH / 2,
            y: heading_y,
            text: "This CI".to_string(),
        }],
        overflows: Vec::new(),
    };
    let mut used_ids: HashSet<String> = HashSet::from([ROOT_ELEMENT_ID.to_string()]);
    for (side, side_columns) in [(Side::Downstream, &left), (Side::Upstream, &right)] {
        let mut positions: HashMap<&str, (i32, i32)> = HashMap::from([(root.name.as_str(), root_at)]);
        for (index, column) in side_columns.iter().enumerate() {
            let depth = index + 1;
            let x = match side {
                Side::Downstream => column_x(root_index - depth),
                Side::Upstream => column_x(root_index + depth),
            };
            let rows = column.rows();
            picture.heads.push(PictureText {
                element_id: format!("impact-head-{}-{depth}", side.word()),
                x: x + NODE_WIDTH / 2,
                y: heading_y,
                text: format!("{} · depth {depth}", side.title()),
            });
            for (row, ci) in column.members.iter().copied().enumerate() {
                let at = (x, row_y(rows, row));
                positions.insert(ci.name.as_str(), at);
                let mut element_id = format!("impact-node-{}", number_of(&ci.name));
                if !used_ids.insert(element_id.clone()) {
                    element_id = format!("{element_id}-{}", side.word());
                    used_ids.insert(element_id.clone());
                }
                if let Some(&from) = positions.get(ci.reached_from.as_str()) {
                    // Downstream CIs need the one they were reached from; upstream ones are
                    // needed by it. Either way the line runs left to right.
                    let (needs, needed) = match side {
                        Side::Downstream => (at, from),
                        Side::Upstream => (from, at),
                    };
                    picture.edges.push(PictureEdge { d: edge_path(needs, needed), css: "impact-edge" });
                }
                let node = picture_node(ci, element_id, at, side.node_class());
                match side {
                    Side::Downstream => picture.downstream.push(node),
                    Side::Upstream => picture.upstream.push(node),
                }
            }
            if column.hidden > 0 {
                picture.overflows.push(PictureText {
                    element_id: format!("impact-more-{}-{depth}", side.word()),
                    x: x + NODE_WIDTH / 2,
                    y: row_y(rows, column.members.len()) + NODE_HEIGHT / 2 + 4,
                    text: format!("and {} more (listed below)", column.hidden),
                });
            }
        }
    }
    picture
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(id: &str, name: &str, class: &str, depth: u32, from: &str) -> ImpactCi {
        ImpactCi {
            name: format!("configurationItems/{id}"),
            display_name: name.into(),
            ci_class: class.into(),
            depth,
            reached_from: format!("configurationItems/{from}"),
            business_service: class == BUSINESS_SERVICE,
        }
    }

    fn root() -> ImpactCi {
        ImpactCi { depth: 0, reached_from: String::new(), ..ci("app", "payments-api", "application", 0, "") }
    }

    fn node<'a>(nodes: &'a [PictureNode], element_id: &str) -> &'a PictureNode {
        nodes.iter().find(|n| n.element_id == element_id).unwrap_or_else(|| panic!("no {element_id}"))
    }

    #[test]
    fn downstream_goes_left_upstream_right_and_lines_point_to_what_is_needed() {
        let down = [ci("svc", "Online payments", BUSINESS_SERVICE, 1, "app")];
        let up = [ci("db", "payments-db", "database", 1, "app"), ci("host", "db-host-01", "server", 2, "db")];
        let picture = impact_picture(&root(), &down, &up, 25);

        let service = node(&picture.downstream, "impact-node-svc");
        let db = node(&picture.upstream, "impact-node-db");
        let host = node(&picture.upstream, "impact-node-host");
        assert!(service.x < picture.root.x && picture.root.x < db.x && db.x < host.x);
        // A chain is a straight line: every box on the root's row.
        assert!([service.y, db.y, host.y].iter().all(|y| *y == picture.root.y));
        assert!(
            service.css.contains("impact-node--service") && service.css.contains("impact-node--downstream")
        );
        assert!(!db.css.contains("impact-node--service"));
        assert_eq!(db.href, "/cmdb/items/db");
        assert_eq!(picture.root.element_id, "impact-root");

        let mid = picture.root.y + NODE_HEIGHT / 2;
        let expected = [
            // The service needs the app: from its right edge to the app's left edge.
            (service.x + NODE_WIDTH, picture.root.x - ARROW_GAP),
            (picture.root.x + NODE_WIDTH, db.x - ARROW_GAP),
            (db.x + NODE_WIDTH, host.x - ARROW_GAP),
        ];
        assert_eq!(picture.edges.len(), 3);
        for (x1, x2) in expected {
            let d = format!("M{x1} {mid} C{m} {mid} {m} {mid} {x2} {mid}", m = (x1 + x2) / 2);
            assert!(picture.edges.iter().any(|e| e.d == d), "{d} in {:?}", picture.edges);
        }
        assert_eq!(picture.width, 2 * MARGIN + 4 * NODE_WIDTH + 3 * COLUMN_GAP);
        assert_eq!(picture.height, MARGIN + HEAD_HEIGHT + NODE_HEIGHT + MARGIN);
        let heads: Vec<&str> = picture.heads.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(heads, ["This CI", "Downstream · depth 1", "Upstream · depth 1", "Upstream · depth 2"]);
        assert!(picture.overflows.is_empty());
    }

    #[test]
    fn a_ci_with_nothing_around_it_is_one_box() {
        let picture = impact_picture(&root(), &[], &[], 25);
        assert!(picture.is_alone() && picture.edges.is_empty());
        assert_eq!(picture.root.x, MARGIN);
        assert_eq!(picture.width, 2 * MARGIN + NODE_WIDTH);
        assert_eq!(picture.view_box(), format!("0 0 {} {}", picture.width, picture.height));
    }

    #[test]
    fn columns_are_capped_and_say_how_many_more() {
        let up: Vec<ImpactCi> =
            (0..30).map(|i| ci(&format!("n{i:02}"), &format!("node {i:02}"), "server", 1, "app")).collect();
        let picture = impact_picture(&root(), &[], &up, 25);
        assert_eq!(picture.upstream.len(), 25);
        assert_eq!(picture.edges.len(), 25);
        assert_eq!(picture.overflows.len(), 1);
        assert_eq!(picture.overflows[0].text, "and 5 more (listed below)");
        assert_eq!(picture.overflows[0].element_id, "impact-more-upstream-1");
        // Sorted by name: the first 25 are drawn, one under the other.
        assert_eq!(picture.upstream[0].name, "node 00");
        assert_eq!(picture.upstream[24].name, "node 24");
        assert_eq!(picture.upstream[1].y - picture.upstream[0].y, NODE_HEIGHT + ROW_GAP);
        // 25 boxes and the line under them.
        assert_eq!(picture.height, MARGIN + HEAD_HEIGHT + 26 * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + MARGIN);
        // The root is centred on the tallest column.
        let middle = (picture.upstream[0].y + picture.overflows[0].y) / 2;
        assert!((picture.root.y + NODE_HEIGHT / 2 - middle).abs() <= NODE_HEIGHT);
    }

    #[test]
    fn children_line_up_next_to_their_parents_and_hidden_parents_draw_no_line() {
        let up = [
            ci("a", "alpha", "database", 1, "app"),
            ci("b", "beta", "database", 1, "app"),
            // Named so that by name alone they would come the other way round.
            ci("b1", "aaa on beta", "server", 2, "b"),
            ci("a1", "zzz on alpha", "server", 2, "a"),
        ];
        let picture = impact_picture(&root(), &[], &up, 25);
        let order: Vec<&str> = picture.upstream.iter().map(|n| n.element_id.as_str()).collect();
        assert_eq!(order, ["impact-node-a", "impact-node-b", "impact-node-a1", "impact-node-b1"]);
        assert!(node(&picture.upstream, "impact-node-a1").y < node(&picture.upstream, "impact-node-b1").y);

        // One box a column: beta does not fit, so its child (drawn) has no line to draw.
        let capped = impact_picture(&root(), &[], &up[..3], 1);
        let drawn: Vec<&str> = capped.upstream.iter().map(|n| n.element_id.as_str()).collect();
        assert_eq!(drawn, ["impact-node-a", "impact-node-b1"]);
        assert_eq!(capped.edges.len(), 1);
        assert_eq!(capped.overflows.len(), 1);
    }

    #[test]
    fn a_ci_on_both_sides_keeps_unique_element_ids() {
        let down = [ci("loop", "peer", "application", 1, "app")];
        let up = [ci("loop", "peer", "application", 1, "app")];
        let picture = impact_picture(&root(), &down, &up, 25);
        assert_eq!(picture.downstream[0].element_id, "impact-node-loop");
        assert_eq!(picture.upstream[0].element_id, "impact-node-loop-upstream");
    }

    #[test]
    fn long_names_are_clipped_and_kept_whole_in_the_tooltip() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly-10", 10), "exactly-10");
        assert_eq!(clip("much-longer-than-ten", 10), "much-long…");
        assert_eq!(clip("ééééé", 3), "éé…");
        let long = ci("x", &"n".repeat(40), "server", 1, "app");
        let picture = impact_picture(&root(), &[], &[long], 25);
        assert_eq!(picture.upstream[0].name.chars().count(), NAME_CHARS);
        assert!(picture.upstream[0].tooltip.starts_with(&"n".repeat(40)));
        let nameless = ImpactCi { display_name: String::new(), ..ci("id-1", "", "server", 1, "app") };
        assert_eq!(shown_name(&nameless), "id-1");
    }

    #[test]
    fn depth_is_one_to_five_and_two_by_default() {
        assert_eq!(impact_depth(""), 2);
        assert_eq!(impact_depth("x"), 2);
        assert_eq!(impact_depth("1"), 1);
        assert_eq!(impact_depth(" 4 "), 4);
        assert_eq!(impact_depth("0"), 1);
        assert_eq!(impact_depth("-3"), 1);
        assert_eq!(impact_depth("99"), 5);
    }

    #[test]
    fn ci_ids_are_canonical_uuids() {
        assert!(is_ci_id("0190a5b2-7c1e-7d3a-9b4f-2a1c3d4e5f60"));
        assert!(!is_ci_id("0190A5B2-7C1E-7D3A-9B4F-2A1C3D4E5F60"));
        assert!(!is_ci_id("../x"));
        assert!(!is_ci_id(""));
        assert_eq!(item_href("configurationItems/abc"), "/cmdb/items/abc");
    }

    #[test]
    fn the_search_keeps_filter_and_order_in_its_address() {
        assert_eq!(search_address("", ""), "/cmdb");
        assert_eq!(
            search_address(r#"labels.team = "payments""#, "display_name desc"),
            "/cmdb?filter=labels.team%20%3D%20%22payments%22&order_by=display_name%20desc"
        );
        let query: SearchQuery =
            serde_json::from_value(serde_json::json!({ "page_token": "T2", "filter": "x" })).unwrap();
        assert_eq!((query.page.as_str(), query.filter.as_str()), ("T2", "x"));
    }

    #[test]
    fn a_bad_filter_is_shown_next_to_the_filter_field() {
        let details = tonic_types::ErrorDetails::with_bad_request(vec![tonic_types::FieldViolation::new(
            "filter",
            "expected a value after `name`",
        )]);
        let status = {
            use tonic_types::StatusExt;
            Status::with_error_details(Code::InvalidArgument, "invalid argument", details)
        };
        let errors = search_errors(&status, "/cmdb").unwrap();
        let form =
            FormView::new(vec![FieldView::new("filter", "filter", "Filter", FieldKind::Text)], &errors);
        assert_eq!(form.fields[0].error, "Filter is not valid: expected a value after `name`");
        assert!(form.messages.is_empty());

        let errors = search_errors(&Status::invalid_argument("page token is not valid"), "/cmdb").unwrap();
        assert_eq!(errors.form, ["page token is not valid"]);
        assert_eq!(
            search_errors(&Status::permission_denied("no"), "/cmdb").unwrap_err(),
            PageError::Forbidden("no".into())
        );
        assert_eq!(search_field("page_token"), None);
        assert_eq!(search_field("order_by").as_deref(), Some("order_by"));
    }

    #[test]
    fn values_read_for_people() {
        use serde_json::json;
        assert_eq!(json_text(&json!(8.0)), "8");
        assert_eq!(json_text(&json!(8)), "8");
        assert_eq!(json_text(&json!(2.5)), "2.5");
        assert_eq!(json_text(&json!("")), "—");
        assert_eq!(json_text(&json!(null)), "—");
        assert_eq!(json_text(&json!(true)), "true");
        assert_eq!(json_text(&json!(["a", "b"])), r#"["a","b"]"#);
        assert_eq!(history_text(""), "—");
        assert_eq!(history_text("\"payments-team\""), "payments-team");
        assert_eq!(history_text("not json"), "not json");
        assert_eq!(source_label(ChangeSource::Change as i32, "CHG0000012"), "change CHG0000012");
        assert_eq!(source_label(ChangeSource::User as i32, ""), "user");
        assert_eq!(source_label(0, ""), "—");
    }

    #[test]
    fn attributes_list_the_class_then_the_rest_and_references_link() {
        let referenced = "configurationItems/0190a5b2-7c1e-7d3a-9b4f-2a1c3d4e5f60";
        let definitions = vec![
            AttributeDefinition {
                name: "cpu_count".into(),
                r#type: AttributeType::Int as i32,
                ..Default::default()
            },
            AttributeDefinition {
                name: "os".into(),
                r#type: AttributeType::String as i32,
                required: true,
                ..Default::default()
            },
            AttributeDefinition {
                name: "tier".into(),
                r#type: AttributeType::Enum as i32,
                enum_values: vec!["gold".into(), "silver".into()],
                ..Default::default()
            },
            AttributeDefinition {
                name: "rack".into(),
                r#type: AttributeType::Reference as i32,
                reference_class: "rack".into(),
                ..Default::default()
            },
        ];
        let serde_json::Value::Object(values) =
            serde_json::json!({ "cpu_count": 8, "rack": referenced, "extra": {"a": 1} })
        else {
            unreachable!()
        };
        let names = HashMap::from([(referenced.to_string(), ("rack-7".to_string(), "rack".to_string()))]);
        let views = attribute_views(&definitions, &values, &names);
        let rows: Vec<(&str, &str, &str)> =
            views.iter().map(|v| (v.name.as_str(), v.kind.as_str(), v.value.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("cpu_count", "whole number", "8"),
                ("os", "text", "—"),
                ("tier", "one of gold, silver", "—"),
                ("rack", "reference to a rack", "rack-7"),
                ("extra", "—", r#"{"a":1}"#),
            ]
        );
        assert!(views[1].required);
        assert_eq!(views[3].link, "/cmdb/items/0190a5b2-7c1e-7d3a-9b4f-2a1c3d4e5f60");
        assert!(!views[0].has_link());
    }

    #[test]
    fn relationships_read_from_this_ci() {
        let this = "configurationItems/app";
        let relationship = |source: &str, target: &str, kind: RelationshipType| Relationship {
            name: format!("relationships/{source}-{target}"),
            source: format!("configurationItems/{source}"),
            target: format!("configurationItems/{target}"),
            r#type: kind as i32,
            ..Default::default()
        };
        let mut redundant = relationship("app", "db2", RelationshipType::DependsOn);
        redundant.properties =
            Some(itsm_runtime::structs::json_to_struct(&serde_json::json!({"redundant": true})));
        let listed = [
            relationship("svc", "app", RelationshipType::DependsOn),
            relationship("app", "db", RelationshipType::DependsOn),
            relationship("app", "host", RelationshipType::RunsOn),
            redundant,
        ];
        let names =
            HashMap::from([("configurationItems/db".to_string(), ("payments-db".into(), "database".into()))]);
        let views = relationship_views(&listed, this, &names);
        let read: Vec<(&str, &str, bool)> =
            views.iter().map(|v| (v.reading, v.other_name.as_str(), v.redundant)).collect();
        assert_eq!(
            read,
            [
                ("depends on", "configurationItems/db2", true),
                ("depends on", "payments-db", false),
                ("is used by", "configurationItems/svc", false),
                ("runs on", "configurationItems/host", false),
            ]
        );
        assert_eq!(views[1].other_href, "/cmdb/items/db");
        assert_eq!(views[1].element_id, "relationship-app-db");
        assert_eq!(reading(RelationshipType::PartOf as i32, false).0, "contains");
        assert_eq!(reading(RelationshipType::RunsOn as i32, false).0, "hosts");
    }
}
