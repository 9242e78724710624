//! OpenSLO v1 (<https://github.com/OpenSLO/OpenSLO>): reading and validating documents, checking the
//! references between them, and the burn-rate arithmetic of multi-window, multi-burn-rate alerts.
//!
//! What the OpenSLO project's own documents (`shared/fixtures/openslo`) decided here:
//! - A file is a YAML stream; each document holds one object or a list of objects (the go-sdk
//!   examples are lists). Empty documents are skipped.
//! - Durations are a positive whole number and a case-sensitive unit. `s`, `m`, `h`, `d` and `w` have
//!   a fixed length; `M`, `Q` and `Y` (month, quarter, year) are only accepted as the length of a
//!   calendar-aligned SLO window, whose nominal length counts 30, 90 and 365 days. `1m` is one
//!   minute, even where an upstream example's comment meant a month.
//! - References the go-sdk inlines (SLI, AlertPolicy, AlertCondition, AlertNotificationTarget) must
//!   resolve to a top-level object of the set. `spec.service` is only checked when the set holds at
//!   least one Service: upstream examples name services they never define, as Services are often
//!   kept in another file or in the CMDB. `metricSourceRef` is not checked (upstream examples point at
//!   data sources they do not define; `type` already says what to query).
//! - Unknown fields are errors (except inside free-form `metricSource.spec` and
//!   `connectionDetails`), so a misspelt `targetPercentage` does not silently drop the objective.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

/// The only `apiVersion` this module reads.
pub const API_VERSION: &str = "openslo/v1";
/// OpenSLO's limit for every `description`.
pub const MAX_DESCRIPTION_CHARS: usize = 1050;
/// `metadata.name` is a DNS label (RFC 1123).
const MAX_NAME_CHARS: usize = 63;
/// The field named when a problem concerns a whole document.
const DOCUMENT: &str = "(document)";

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// One parsed, validated OpenSLO object.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenSloObject {
    Service(Service),
    Sli(Sli),
    Slo(Slo),
    AlertPolicy(AlertPolicy),
    AlertCondition(AlertCondition),
    AlertNotificationTarget(NotificationTarget),
    DataSource(DataSource),
}

impl OpenSloObject {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Service(_) => Kind::Service,
            Self::Sli(_) => Kind::Sli,
            Self::Slo(_) => Kind::Slo,
            Self::AlertPolicy(_) => Kind::AlertPolicy,
            Self::AlertCondition(_) => Kind::AlertCondition,
            Self::AlertNotificationTarget(_) => Kind::AlertNotificationTarget,
            Self::DataSource(_) => Kind::DataSource,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Self::Service(object) => &object.metadata,
            Self::Sli(object) => &object.metadata,
            Self::Slo(object) => &object.metadata,
            Self::AlertPolicy(object) => &object.metadata,
            Self::AlertCondition(object) => &object.metadata,
            Self::AlertNotificationTarget(object) => &object.metadata,
            Self::DataSource(object) => &object.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }
}

/// The `kind` of an OpenSLO object, spelt as in the documents by [`Kind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Service,
    Sli,
    Slo,
    AlertPolicy,
    AlertCondition,
    AlertNotificationTarget,
    DataSource,
}

impl Kind {
    const ALL: [Self; 7] = [
        Self::Service,
        Self::Sli,
        Self::Slo,
        Self::AlertPolicy,
        Self::AlertCondition,
        Self::AlertNotificationTarget,
        Self::DataSource,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::Sli => "SLI",
            Self::Slo => "SLO",
            Self::AlertPolicy => "AlertPolicy",
            Self::AlertCondition => "AlertCondition",
            Self::AlertNotificationTarget => "AlertNotificationTarget",
            Self::DataSource => "DataSource",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub name: String,
    pub display_name: Option<String>,
    /// OpenSLO allows a string or a list of strings per label; a single string becomes a list of one.
    pub labels: BTreeMap<String, Vec<String>>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub metadata: Metadata,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sli {
    pub metadata: Metadata,
    pub description: Option<String>,
    pub metric: SliMetric,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliMetric {
    Threshold(MetricSource),
    Ratio(RatioMetric),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatioMetric {
    /// The metrics are monotonically increasing counters.
    pub counter: bool,
    pub kind: RatioKind,
}

impl RatioMetric {
    pub fn good(&self) -> Option<&MetricSource> {
        match &self.kind {
            RatioKind::GoodTotal { good, .. } => Some(good),
            _ => None,
        }
    }

    pub fn bad(&self) -> Option<&MetricSource> {
        match &self.kind {
            RatioKind::BadTotal { bad, .. } => Some(bad),
            _ => None,
        }
    }

    pub fn total(&self) -> Option<&MetricSource> {
        match &self.kind {
            RatioKind::GoodTotal { total, .. } | RatioKind::BadTotal { total, .. } => Some(total),
            RatioKind::Raw { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatioKind {
    GoodTotal {
        good: MetricSource,
        total: MetricSource,
    },
    BadTotal {
        bad: MetricSource,
        total: MetricSource,
    },
    /// A metric that already is a ratio; `raw_type` says whether it counts successes or failures.
    Raw {
        raw_type: RawType,
        raw: MetricSource,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawType {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSource {
    /// Name of a DataSource (not checked, see the module documentation).
    pub metric_source_ref: Option<String>,
    /// The source's type, e.g. `Prometheus`, `Datadog`.
    pub source_type: Option<String>,
    /// Source-specific fields, kept as they are.
    pub spec: serde_json::Value,
}

impl MetricSource {
    /// The `query` most sources use (Prometheus, Datadog, …); other sources have other fields.
    pub fn query(&self) -> Option<&str> {
        self.spec.get("query").and_then(serde_json::Value::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub metadata: Metadata,
    pub description: Option<String>,
    /// Name of the Service the SLO belongs to.
    pub service: String,
    /// `None` when every objective names its own indicator.
    pub indicator: Option<Indicator>,
    pub time_window: TimeWindow,
    pub budgeting_method: BudgetingMethod,
    pub objectives: Vec<Objective>,
    pub alert_policies: Vec<RefOrInline<AlertPolicy>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indicator {
    Inline(Box<Sli>),
    /// `indicatorRef`: the name of an SLI.
    Ref(String),
}

/// A list entry that either names an object (`conditionRef`, `targetRef`, `alertPolicyRef`) or holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum RefOrInline<T> {
    Ref(String),
    Inline(Box<T>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// The window's length; months, quarters and years count 30, 90 and 365 days.
    pub duration: TimeDelta,
    /// The length as written, for calendar arithmetic on months, quarters and years.
    pub shorthand: DurationShorthand,
    pub is_rolling: bool,
    /// Present exactly when the window is calendar-aligned.
    pub calendar: Option<Calendar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub start_time: NaiveDateTime,
    pub time_zone: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetingMethod {
    Occurrences,
    Timeslices,
    RatioTimeslices,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub display_name: Option<String>,
    /// How an SLI value compares with `value` (threshold metrics).
    pub op: Option<Operator>,
    pub value: Option<f64>,
    /// The target as a ratio in (0, 1); `targetPercent` is divided by 100.
    pub target: f64,
    pub time_slice_target: Option<f64>,
    pub time_slice_window: Option<TimeDelta>,
    /// The objective's own indicator; otherwise the SLO's.
    pub indicator: Option<Indicator>,
    pub composite_weight: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Operator {
    /// `left op right`.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Self::Lt => left < right,
            Self::Lte => left <= right,
            Self::Gt => left > right,
            Self::Gte => left >= right,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    pub metadata: Metadata,
    pub description: Option<String>,
    /// Defaults to false.
    pub alert_when_no_data: bool,
    /// Defaults to false.
    pub alert_when_resolved: bool,
    /// Defaults to true: a policy exists to alert on breaches.
    pub alert_when_breaching: bool,
    pub conditions: Vec<RefOrInline<AlertCondition>>,
    pub notification_targets: Vec<RefOrInline<NotificationTarget>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertCondition {
    pub metadata: Metadata,
    pub description: Option<String>,
    /// Free text (`page`, `warning`, `sev1`, …).
    pub severity: String,
    pub condition: BurnRateCondition,
}

/// `condition` of kind `burnrate`, the only kind OpenSLO v1 defines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRateCondition {
    pub op: Operator,
    /// The burn rate compared with `op`.
    pub threshold: f64,
    pub lookback_window: TimeDelta,
    /// How long the condition must hold before it alerts.
    pub alert_after: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationTarget {
    pub metadata: Metadata,
    pub description: Option<String>,
    /// Free text (`email`, `pagerduty`, `slack`, …).
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    pub metadata: Metadata,
    pub description: Option<String>,
    pub source_type: String,
    /// Anything the source needs to connect, kept as it is; `Null` when absent.
    pub connection_details: serde_json::Value,
}

/// An error pointing at the offending document and field, e.g. document 2 (kind SLO "checkout-latency"):
/// `spec.objectives[0].target`: must be between 0 and 1 (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct OpenSloError {
    pub location: String,
    pub field: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// A duration as OpenSLO writes it: a positive whole number and a unit, e.g. `28d`, `1M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationShorthand {
    pub count: u32,
    pub unit: DurationUnit,
}

impl DurationShorthand {
    /// Units are case-sensitive: `m` is a minute, `M` a month.
    pub fn parse(text: &str) -> Option<Self> {
        let symbol = text.chars().next_back()?;
        let unit = match symbol {
            's' => DurationUnit::Second,
            'm' => DurationUnit::Minute,
            'h' => DurationUnit::Hour,
            'd' => DurationUnit::Day,
            'w' => DurationUnit::Week,
            'M' => DurationUnit::Month,
            'Q' => DurationUnit::Quarter,
            'Y' => DurationUnit::Year,
            _ => return None,
        };
        let digits = text.strip_suffix(symbol)?;
        // `u32::from_str` alone would also take "+5".
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let count: u32 = digits.parse().ok()?;
        (count > 0).then_some(Self { count, unit })
    }

    /// Months, quarters and years have no fixed length.
    pub fn is_calendar(self) -> bool {
        matches!(self.unit, DurationUnit::Month | DurationUnit::Quarter | DurationUnit::Year)
    }

    /// The length; months, quarters and years count 30, 90 and 365 days. `None` if out of range.
    pub fn nominal(self) -> Option<TimeDelta> {
        const DAY: i64 = 86_400;
        let unit_seconds = match self.unit {
            DurationUnit::Second => 1,
            DurationUnit::Minute => 60,
            DurationUnit::Hour => 3_600,
            DurationUnit::Day => DAY,
            DurationUnit::Week => 7 * DAY,
            DurationUnit::Month => 30 * DAY,
            DurationUnit::Quarter => 90 * DAY,
            DurationUnit::Year => 365 * DAY,
        };
        TimeDelta::try_seconds(i64::from(self.count).checked_mul(unit_seconds)?)
    }

    /// The exact length, for the fixed units only.
    pub fn fixed(self) -> Option<TimeDelta> {
        if self.is_calendar() { None } else { self.nominal() }
    }
}

/// Parses durations as OpenSLO writes them: "30s", "5m", "1h", "28d", "1w". Months, quarters and
/// years ("1M", "1Q", "1Y") have no fixed length and give `None`; only a calendar-aligned SLO window
/// takes them (see [`DurationShorthand`]).
pub fn parse_duration(text: &str) -> Option<TimeDelta> {
    DurationShorthand::parse(text)?.fixed()
}

const DURATION_HELP: &str =
    "is not a duration: use a positive whole number and a unit s, m, h, d or w, such as 5m, 1h or 28d";

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses every YAML document of a file (multi-document, each document one object or a list of
/// objects) and validates each object on its own. Returns all objects or all errors.
pub fn parse_documents(yaml: &str) -> Result<Vec<OpenSloObject>, Vec<OpenSloError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let number = index + 1;
        let mut value = match Value::deserialize(document) {
            Ok(value) => value,
            Err(error) => {
                errors.push(OpenSloError {
                    location: format!("document {number}"),
                    field: DOCUMENT.to_owned(),
                    message: format!("not valid YAML: {error}"),
                });
                // The YAML reader cannot resume after an error: it would report it again forever.
                break;
            }
        };
        if let Err(error) = value.apply_merge() {
            errors.push(OpenSloError {
                location: format!("document {number}"),
                field: DOCUMENT.to_owned(),
                message: format!("bad YAML merge key: {error}"),
            });
            continue;
        }
        let items: Vec<(&Value, String)> = match &value {
            // An empty document, e.g. after a trailing `---`.
            Value::Null => Vec::new(),
            Value::Sequence(list) => list
                .iter()
                .enumerate()
                .map(|(item, value)| (value, format!("document {number}, item {}", item + 1)))
                .collect(),
            single => vec![(single, format!("document {number}"))],
        };
        for (item, place) in items {
            match parse_object(item, &place) {
                Ok(object) => objects.push(object),
                Err(found) => errors.extend(found),
            }
        }
    }
    if errors.is_empty() { Ok(objects) } else { Err(errors) }
}

fn parse_object(value: &Value, place: &str) -> Result<OpenSloObject, Vec<OpenSloError>> {
    let mut report = Report { location: describe(place, value), errors: Vec::new() };
    match read_object(&mut report, value) {
        Some(object) if report.errors.is_empty() => Ok(object),
        _ => {
            if report.errors.is_empty() {
                report.push(DOCUMENT, "could not be read");
            }
            Err(report.errors)
        }
    }
}

/// `document 2 (kind SLO "checkout-latency")`, as far as the document says what it is.
fn describe(place: &str, value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str);
    let name = value.get("metadata").and_then(|metadata| metadata.get("name")).and_then(Value::as_str);
    match (kind, name) {
        (Some(kind), Some(name)) => format!("{place} (kind {kind} {name:?})"),
        (Some(kind), None) => format!("{place} (kind {kind})"),
        (None, Some(name)) => format!("{place} ({name:?})"),
        (None, None) => place.to_owned(),
    }
}

/// The errors found in one object.
struct Report {
    location: String,
    errors: Vec<OpenSloError>,
}

impl Report {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(OpenSloError {
            location: self.location.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// A YAML mapping being read, with its path for error messages (`spec.objectives[0]`).
struct Fields<'a> {
    map: &'a Mapping,
    path: String,
}

impl<'a> Fields<'a> {
    fn of(r: &mut Report, value: &'a Value, path: &str) -> Option<Self> {
        if let Some(map) = value.as_mapping() {
            return Some(Self { map, path: path.to_owned() });
        }
        r.push(field_or_document(path), "must be a mapping");
        None
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// The value under `key`; an explicit null (`key:` with nothing after it) counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn only(&self, r: &mut Report, allowed: &[&str]) {
        for (key, _) in self.map {
            match key.as_str() {
                Some(name) if allowed.contains(&name) => {}
                Some(name) => {
                    r.push(
                        self.path(name),
                        format!("unknown field (expected one of {})", allowed.join(", ")),
                    );
                }
                None => r.push(field_or_document(&self.path), format!("keys must be strings, found {key:?}")),
            }
        }
    }

    fn required(&self, r: &mut Report, key: &str) -> bool {
        let present = self.has(key);
        if !present {
            r.push(self.path(key), "is required");
        }
        present
    }

    fn opt_str(&self, r: &mut Report, key: &str) -> Option<String> {
        let text = self.get(key)?.as_str();
        if text.is_none() {
            r.push(self.path(key), "must be a string");
        }
        text.map(str::to_owned)
    }

    fn req_str(&self, r: &mut Report, key: &str) -> Option<String> {
        if !self.required(r, key) {
            return None;
        }
        let text = self.opt_str(r, key)?;
        if text.trim().is_empty() {
            r.push(self.path(key), "must not be empty");
            return None;
        }
        Some(text)
    }

    fn opt_name(&self, r: &mut Report, key: &str) -> Option<String> {
        let name = self.opt_str(r, key)?;
        self.checked_name(r, key, name)
    }

    fn req_name(&self, r: &mut Report, key: &str) -> Option<String> {
        let name = self.req_str(r, key)?;
        self.checked_name(r, key, name)
    }

    fn checked_name(&self, r: &mut Report, key: &str, name: String) -> Option<String> {
        if is_dns_label(&name) {
            return Some(name);
        }
        r.push(
            self.path(key),
            format!(
                "{name:?} is not a valid name: at most {MAX_NAME_CHARS} lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        );
        None
    }

    fn opt_bool(&self, r: &mut Report, key: &str) -> Option<bool> {
        let flag = self.get(key)?.as_bool();
        if flag.is_none() {
            r.push(self.path(key), "must be true or false");
        }
        flag
    }

    fn opt_number(&self, r: &mut Report, key: &str) -> Option<f64> {
        let number = self.get(key)?.as_f64().filter(|number| number.is_finite());
        if number.is_none() {
            r.push(self.path(key), "must be a number");
        }
        number
    }

    fn req_number(&self, r: &mut Report, key: &str) -> Option<f64> {
        if !self.required(r, key) {
            return None;
        }
        self.opt_number(r, key)
    }

    fn opt_duration(&self, r: &mut Report, key: &str) -> Option<TimeDelta> {
        let text = self.opt_str(r, key)?;
        let duration = parse_duration(&text);
        if duration.is_none() {
            r.push(self.path(key), format!("{text:?} {DURATION_HELP}"));
        }
        duration
    }

    fn req_duration(&self, r: &mut Report, key: &str) -> Option<TimeDelta> {
        if !self.required(r, key) {
            return None;
        }
        self.opt_duration(r, key)
    }

    fn opt_choice<T: Copy>(&self, r: &mut Report, key: &str, choices: &[(&str, T)]) -> Option<T> {
        let text = self.opt_str(r, key)?;
        let found = choices.iter().find(|(name, _)| *name == text).map(|&(_, choice)| choice);
        if found.is_none() {
            let names: Vec<&str> = choices.iter().map(|&(name, _)| name).collect();
            r.push(self.path(key), format!("must be one of {}, found {text:?}", names.join(", ")));
        }
        found
    }

    fn req_choice<T: Copy>(&self, r: &mut Report, key: &str, choices: &[(&str, T)]) -> Option<T> {
        if !self.required(r, key) {
            return None;
        }
        self.opt_choice(r, key, choices)
    }

    fn opt_mapping(&self, r: &mut Report, key: &str) -> Option<Fields<'a>> {
        Fields::of(r, self.get(key)?, &self.path(key))
    }

    fn req_mapping(&self, r: &mut Report, key: &str) -> Option<Fields<'a>> {
        if !self.required(r, key) {
            return None;
        }
        self.opt_mapping(r, key)
    }
}

fn field_or_document(path: &str) -> String {
    if path.is_empty() { DOCUMENT.to_owned() } else { path.to_owned() }
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= MAX_NAME_CHARS
        && bytes.iter().all(|&byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A ratio strictly between 0 and 1 (false for NaN).
fn is_open_ratio(value: f64) -> bool {
    value > 0.0 && value < 1.0
}

const OPERATORS: &[(&str, Operator)] =
    &[("lt", Operator::Lt), ("lte", Operator::Lte), ("gt", Operator::Gt), ("gte", Operator::Gte)];
const BUDGETING_METHODS: &[(&str, BudgetingMethod)] = &[
    ("Occurrences", BudgetingMethod::Occurrences),
    ("Timeslices", BudgetingMethod::Timeslices),
    ("RatioTimeslices", BudgetingMethod::RatioTimeslices),
];
const RAW_TYPES: &[(&str, RawType)] = &[("success", RawType::Success), ("failure", RawType::Failure)];
const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

/// Reads the spec of one kind; `metadata` is `None` when it had errors (already reported).
type SpecReader<T> = fn(&mut Report, Option<Metadata>, &Fields<'_>) -> Option<T>;

fn read_object(r: &mut Report, value: &Value) -> Option<OpenSloObject> {
    let top = Fields::of(r, value, "")?;
    top.only(r, OBJECT_FIELDS);
    if let Some(version) = top.req_str(r, "apiVersion") {
        check_api_version(r, &top, &version);
    }
    let kind = top.req_str(r, "kind").and_then(|text| {
        let kind = Kind::parse(&text);
        if kind.is_none() {
            let names: Vec<&str> = Kind::ALL.iter().map(Kind::as_str).collect();
            r.push("kind", format!("must be one of {}, found {text:?}", names.join(", ")));
        }
        kind
    });
    let metadata = top.req_mapping(r, "metadata").and_then(|metadata| read_metadata(r, &metadata));
    let spec = top.req_mapping(r, "spec")?;
    let object = match kind? {
        Kind::Service => OpenSloObject::Service(read_service(r, metadata, &spec)?),
        Kind::Sli => OpenSloObject::Sli(read_sli(r, metadata, &spec)?),
        Kind::Slo => OpenSloObject::Slo(read_slo(r, metadata, &spec)?),
        Kind::AlertPolicy => OpenSloObject::AlertPolicy(read_alert_policy(r, metadata, &spec)?),
        Kind::AlertCondition => OpenSloObject::AlertCondition(read_alert_condition(r, metadata, &spec)?),
        Kind::AlertNotificationTarget => {
            OpenSloObject::AlertNotificationTarget(read_notification_target(r, metadata, &spec)?)
        }
        Kind::DataSource => OpenSloObject::DataSource(read_data_source(r, metadata, &spec)?),
    };
    Some(object)
}

fn check_api_version(r: &mut Report, fields: &Fields<'_>, version: &str) {
    if version != API_VERSION {
        r.push(fields.path("apiVersion"), format!("must be {API_VERSION:?}, found {version:?}"));
    }
}

/// An object written inside another (an SLO's indicator, a policy's condition): `apiVersion` and
/// `kind` may be left out, `metadata` and `spec` may not.
fn read_inline<T>(r: &mut Report, fields: &Fields<'_>, kind: Kind, read_spec: SpecReader<T>) -> Option<T> {
    fields.only(r, OBJECT_FIELDS);
    if let Some(version) = fields.opt_str(r, "apiVersion") {
        check_api_version(r, fields, &version);
    }
    if let Some(text) = fields.opt_str(r, "kind")
        && text != kind.as_str()
    {
        r.push(fields.path("kind"), format!("must be {}, found {text:?}", kind.as_str()));
    }
    let metadata = fields.req_mapping(r, "metadata").and_then(|metadata| read_metadata(r, &metadata));
    let spec = fields.req_mapping(r, "spec")?;
    read_spec(r, metadata, &spec)
}

fn read_metadata(r: &mut Report, fields: &Fields<'_>) -> Option<Metadata> {
    fields.only(r, &["name", "displayName", "labels", "annotations"]);
    let name = fields.req_name(r, "name");
    let display_name = fields.opt_str(r, "displayName");
    let labels = read_labels(r, fields);
    let annotations = read_annotations(r, fields);
    Some(Metadata { name: name?, display_name, labels, annotations })
}

fn read_labels(r: &mut Report, metadata: &Fields<'_>) -> BTreeMap<String, Vec<String>> {
    let mut labels = BTreeMap::new();
    let Some(map) = metadata.opt_mapping(r, "labels") else {
        return labels;
    };
    for (key, value) in map.map {
        let Some(name) = key.as_str() else {
            r.push(map.path.clone(), format!("keys must be strings, found {key:?}"));
            continue;
        };
        let field = map.path(name);
        let values = match value {
            Value::String(text) => vec![text.clone()],
            Value::Sequence(items) => {
                let mut values = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(text) => values.push(text.to_owned()),
                        None => r.push(format!("{field}[{index}]"), "must be a string"),
                    }
                }
                values
            }
            _ => {
                r.push(field, "must be a string or a list of strings");
                continue;
            }
        };
        labels.insert(name.to_owned(), values);
    }
    labels
}

fn read_annotations(r: &mut Report, metadata: &Fields<'_>) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    let Some(map) = metadata.opt_mapping(r, "annotations") else {
        return annotations;
    };
    for (key, value) in map.map {
        let Some(name) = key.as_str() else {
            r.push(map.path.clone(), format!("keys must be strings, found {key:?}"));
            continue;
        };
        match value.as_str() {
            Some(text) => {
                annotations.insert(name.to_owned(), text.to_owned());
            }
            None => r.push(map.path(name), "must be a string"),
        }
    }
    annotations
}

fn read_description(r: &mut Report, spec: &Fields<'_>) -> Option<String> {
    let description = spec.opt_str(r, "description")?;
    let length = description.chars().count();
    if length > MAX_DESCRIPTION_CHARS {
        r.push(
            spec.path("description"),
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters, found {length}"),
        );
    }
    Some(description)
}

fn to_json<T: Serialize + ?Sized>(r: &mut Report, value: &T, path: &str) -> Option<serde_json::Value> {
    match serde_json::to_value(value) {
        Ok(json) => Some(json),
        Err(error) => {
            r.push(path, format!("cannot be represented as JSON: {error}"));
            None
        }
    }
}

/// Reads the list under `key` item by item. `None` when it is required but missing, or when any item
/// has errors (all of them reported).
fn read_list<T>(
    r: &mut Report,
    fields: &Fields<'_>,
    key: &str,
    required: bool,
    mut read_item: impl FnMut(&mut Report, &Value, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let path = fields.path(key);
    let Some(value) = fields.get(key) else {
        if required {
            r.push(path, "is required");
            return None;
        }
        return Some(Vec::new());
    };
    let Some(items) = value.as_sequence() else {
        r.push(path, "must be a list");
        return None;
    };
    if required && items.is_empty() {
        r.push(path, "must not be empty");
        return None;
    }
    let mut read = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(parsed) = read_item(r, item, &format!("{path}[{index}]")) {
            read.push(parsed);
        }
    }
    (read.len() == items.len()).then_some(read)
}

/// A list of `{ <ref_key>: name }` entries or inline objects of `kind`.
fn read_entries<T>(
    r: &mut Report,
    fields: &Fields<'_>,
    key: &str,
    required: bool,
    ref_key: &str,
    kind: Kind,
    read_spec: SpecReader<T>,
) -> Option<Vec<RefOrInline<T>>> {
    read_list(r, fields, key, required, |r, item, path| read_entry(r, item, path, ref_key, kind, read_spec))
}

fn read_entry<T>(
    r: &mut Report,
    value: &Value,
    path: &str,
    ref_key: &str,
    kind: Kind,
    read_spec: SpecReader<T>,
) -> Option<RefOrInline<T>> {
    let entry = Fields::of(r, value, path)?;
    if entry.has(ref_key) {
        entry.only(r, &[ref_key]);
        return entry.req_name(r, ref_key).map(RefOrInline::Ref);
    }
    if !OBJECT_FIELDS.iter().any(|key| entry.has(key)) {
        r.push(path, format!("must hold {ref_key} or an inline {} (kind, metadata, spec)", kind.as_str()));
        return None;
    }
    read_inline(r, &entry, kind, read_spec).map(|object| RefOrInline::Inline(Box::new(object)))
}

fn read_service(r: &mut Report, metadata: Option<Metadata>, spec: &Fields<'_>) -> Option<Service> {
    spec.only(r, &["description"]);
    let description = read_description(r, spec);
    Some(Service { metadata: metadata?, description })
}

fn read_sli(r: &mut Report, metadata: Option<Metadata>, spec: &Fields<'_>) -> Option<Sli> {
    spec.only(r, &["description", "thresholdMetric", "ratioMetric"]);
    let description = read_description(r, spec);
    let metric = match (spec.get("thresholdMetric"), spec.get("ratioMetric")) {
        (Some(_), Some(_)) => {
            r.push(spec.path("ratioMetric"), "give either thresholdMetric or ratioMetric, not both");
            None
        }
        (Some(value), None) => read_metric(r, value, &spec.path("thresholdMetric")).map(SliMetric::Threshold),
        (None, Some(value)) => Fields::of(r, value, &spec.path("ratioMetric"))
            .and_then(|ratio| read_ratio(r, &ratio))
            .map(SliMetric::Ratio),
        (None, None) => {
            r.push(spec.path("thresholdMetric"), "is required (or ratioMetric)");
            None
        }
    };
    Some(Sli { metadata: metadata?, description, metric: metric? })
}

fn read_ratio(r: &mut Report, ratio: &Fields<'_>) -> Option<RatioMetric> {
    ratio.only(r, &["counter", "good", "bad", "total", "rawType", "raw"]);
    let counter = ratio.opt_bool(r, "counter") == Some(true);
    let kind = if ratio.has("raw") {
        for key in ["good", "bad", "total"] {
            if ratio.has(key) {
                r.push(ratio.path(key), "is not used together with raw");
            }
        }
        let raw_type = ratio.req_choice(r, "rawType", RAW_TYPES);
        let raw = read_metric_at(r, ratio, "raw");
        RatioKind::Raw { raw_type: raw_type?, raw: raw? }
    } else {
        if ratio.has("rawType") {
            r.push(ratio.path("rawType"), "is only used together with raw");
        }
        let total = read_metric_at(r, ratio, "total");
        if !ratio.has("total") {
            r.push(ratio.path("total"), "is required (with good or bad)");
        }
        match (ratio.has("good"), ratio.has("bad")) {
            (true, true) => {
                r.push(ratio.path("bad"), "give either good or bad, not both");
                return None;
            }
            (false, false) => {
                r.push(ratio.path("good"), "is required (or bad), with total");
                return None;
            }
            (true, false) => {
                let good = read_metric_at(r, ratio, "good");
                RatioKind::GoodTotal { good: good?, total: total? }
            }
            (false, true) => {
                let bad = read_metric_at(r, ratio, "bad");
                RatioKind::BadTotal { bad: bad?, total: total? }
            }
        }
    };
    Some(RatioMetric { counter, kind })
}

fn read_metric_at(r: &mut Report, fields: &Fields<'_>, key: &str) -> Option<MetricSource> {
    let value = fields.get(key)?;
    read_metric(r, value, &fields.path(key))
}

/// `{ metricSource: { metricSourceRef?, type?, spec } }`.
fn read_metric(r: &mut Report, value: &Value, path: &str) -> Option<MetricSource> {
    let metric = Fields::of(r, value, path)?;
    metric.only(r, &["metricSource"]);
    let source = metric.req_mapping(r, "metricSource")?;
    source.only(r, &["metricSourceRef", "type", "spec"]);
    let metric_source_ref = source.opt_name(r, "metricSourceRef");
    let source_type = source.opt_str(r, "type");
    if !source.has("metricSourceRef") && !source.has("type") {
        r.push(source.path("type"), "is required (or metricSourceRef)");
    }
    let spec = source.req_mapping(r, "spec").and_then(|spec| to_json(r, spec.map, &spec.path));
    Some(MetricSource { metric_source_ref, source_type, spec: spec? })
}

/// What an objective is checked against.
struct ObjectiveRules<'s> {
    budgeting_method: Option<BudgetingMethod>,
    slo_indicator: Option<&'s Indicator>,
    window: Option<TimeDelta>,
}

fn read_slo(r: &mut Report, metadata: Option<Metadata>, spec: &Fields<'_>) -> Option<Slo> {
    spec.only(
        r,
        &[
            "description",
            "service",
            "indicator",
            "indicatorRef",
            "timeWindow",
            "budgetingMethod",
            "objectives",
            "alertPolicies",
        ],
    );
    let description = read_description(r, spec);
    let service = spec.req_name(r, "service");
    let indicator = read_indicator(r, spec);
    if !has_indicator(spec.map) && !every_objective_has_indicator(spec) {
        r.push(spec.path("indicator"), "is required (or indicatorRef, or an indicator on every objective)");
    }
    let time_window = read_time_window(r, spec);
    let budgeting_method = spec.req_choice(r, "budgetingMethod", BUDGETING_METHODS);
    let rules = ObjectiveRules {
        budgeting_method,
        slo_indicator: indicator.as_ref(),
        window: time_window.as_ref().map(|window| window.duration),
    };
    let objectives =
        read_list(r, spec, "objectives", true, |r, item, path| read_objective(r, item, path, &rules));
    let alert_policies =
        read_entries(r, spec, "alertPolicies", false, "alertPolicyRef", Kind::AlertPolicy, read_alert_policy);
    Some(Slo {
        metadata: metadata?,
        description,
        service: service?,
        indicator,
        time_window: time_window?,
        budgeting_method: budgeting_method?,
        objectives: objectives?,
        alert_policies: alert_policies?,
    })
}

fn has_indicator(map: &Mapping) -> bool {
    ["indicator", "indicatorRef"].iter().any(|key| map.get(*key).is_some_and(|value| !value.is_null()))
}

fn every_objective_has_indicator(spec: &Fields<'_>) -> bool {
    spec.get("objectives").and_then(Value::as_sequence).is_some_and(|items| {
        !items.is_empty() && items.iter().all(|item| item.as_mapping().is_some_and(has_indicator))
    })
}

/// `indicator` (an inline SLI) or `indicatorRef`; `None` when neither is given or on errors.
fn read_indicator(r: &mut Report, fields: &Fields<'_>) -> Option<Indicator> {
    match (fields.get("indicator"), fields.has("indicatorRef")) {
        (Some(_), true) => {
            r.push(fields.path("indicatorRef"), "give either indicator or indicatorRef, not both");
            None
        }
        (Some(value), false) => {
            let inline = Fields::of(r, value, &fields.path("indicator"))?;
            read_inline(r, &inline, Kind::Sli, read_sli).map(|sli| Indicator::Inline(Box::new(sli)))
        }
        (None, true) => fields.req_name(r, "indicatorRef").map(Indicator::Ref),
        (None, false) => None,
    }
}

fn read_time_window(r: &mut Report, spec: &Fields<'_>) -> Option<TimeWindow> {
    let path = spec.path("timeWindow");
    let Some(value) = spec.get("timeWindow") else {
        r.push(path, "is required");
        return None;
    };
    let Some(items) = value.as_sequence() else {
        r.push(path, "must be a list holding one window");
        return None;
    };
    let [item] = items.as_slice() else {
        r.push(path, format!("must hold exactly one window, found {}", items.len()));
        return None;
    };
    let window = Fields::of(r, item, &format!("{path}[0]"))?;
    window.only(r, &["duration", "isRolling", "calendar"]);
    let length = read_window_length(r, &window);
    let calendar = window.opt_mapping(r, "calendar").and_then(|calendar| read_calendar(r, &calendar));
    let has_calendar = window.has("calendar");
    // OpenSLO: without isRolling, a window with a calendar is calendar-aligned.
    let is_rolling = window.opt_bool(r, "isRolling").unwrap_or(!has_calendar);
    if is_rolling && has_calendar {
        r.push(window.path("calendar"), "is only for calendar-aligned windows (isRolling: false)");
    }
    if !is_rolling && !has_calendar {
        r.push(window.path("calendar"), "is required for a calendar-aligned window (isRolling: false)");
    }
    let (shorthand, duration) = length?;
    if is_rolling && shorthand.is_calendar() {
        r.push(
            window.path("duration"),
            "months, quarters and years need a calendar-aligned window (isRolling: false)",
        );
    }
    Some(TimeWindow { duration, shorthand, is_rolling, calendar })
}

fn read_window_length(r: &mut Report, window: &Fields<'_>) -> Option<(DurationShorthand, TimeDelta)> {
    let text = window.req_str(r, "duration")?;
    let Some(shorthand) = DurationShorthand::parse(&text) else {
        r.push(
            window.path("duration"),
            format!(
                "{text:?} is not a duration: use a positive whole number and a unit s, m, h, d, w \
                 (or M, Q, Y for calendar-aligned windows), such as 28d or 1M"
            ),
        );
        return None;
    };
    let Some(duration) = shorthand.nominal() else {
        r.push(window.path("duration"), format!("{text:?} is too long"));
        return None;
    };
    Some((shorthand, duration))
}

fn read_calendar(r: &mut Report, calendar: &Fields<'_>) -> Option<Calendar> {
    calendar.only(r, &["startTime", "timeZone"]);
    let start_time = calendar.req_str(r, "startTime").and_then(|text| {
        let parsed = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok());
        if parsed.is_none() {
            r.push(
                calendar.path("startTime"),
                format!("{text:?} is not a date and time without time zone, such as 2022-01-01 12:00:00"),
            );
        }
        parsed
    });
    let time_zone = calendar.req_str(r, "timeZone").and_then(|text| {
        let zone = text.parse::<Tz>().ok();
        if zone.is_none() {
            r.push(
                calendar.path("timeZone"),
                format!("{text:?} is not an IANA time zone, such as America/New_York"),
            );
        }
        zone
    });
    Some(Calendar { start_time: start_time?, time_zone: time_zone? })
}

const OBJECTIVE_FIELDS: &[&str] = &[
    "displayName",
    "op",
    "value",
    "target",
    "targetPercent",
    "timeSliceTarget",
    "timeSliceWindow",
    "indicator",
    "indicatorRef",
    "compositeWeight",
];

fn read_objective(
    r: &mut Report,
    value: &Value,
    path: &str,
    rules: &ObjectiveRules<'_>,
) -> Option<Objective> {
    let objective = Fields::of(r, value, path)?;
    objective.only(r, OBJECTIVE_FIELDS);
    let display_name = objective.opt_str(r, "displayName");
    let op = objective.opt_choice(r, "op", OPERATORS);
    let threshold = objective.opt_number(r, "value");
    let target = read_target(r, &objective);
    let time_slice_target = objective.opt_number(r, "timeSliceTarget");
    if let Some(slice_target) = time_slice_target
        && (slice_target <= 0.0 || slice_target > 1.0)
    {
        r.push(objective.path("timeSliceTarget"), "must be greater than 0 and at most 1");
    }
    let time_slice_window = objective.opt_duration(r, "timeSliceWindow");
    if let (Some(slice), Some(window)) = (time_slice_window, rules.window)
        && slice > window
    {
        r.push(objective.path("timeSliceWindow"), "must not be longer than the SLO's time window");
    }
    check_time_slices(r, &objective, rules.budgeting_method);
    let indicator = read_indicator(r, &objective);
    let composite_weight = objective.opt_number(r, "compositeWeight");
    if composite_weight.is_some_and(|weight| weight <= 0.0) {
        r.push(objective.path("compositeWeight"), "must be greater than 0");
    }
    // A threshold SLI means nothing without the value it is compared with.
    if let Some(Indicator::Inline(sli)) = indicator.as_ref().or(rules.slo_indicator)
        && matches!(sli.metric, SliMetric::Threshold(_))
    {
        for key in ["op", "value"] {
            if !objective.has(key) {
                r.push(objective.path(key), "is required for a threshold metric");
            }
        }
    }
    Some(Objective {
        display_name,
        op,
        value: threshold,
        target: target?,
        time_slice_target,
        time_slice_window,
        indicator,
        composite_weight,
    })
}

/// `target` in (0, 1) or `targetPercent` in (0, 100), as a ratio.
fn read_target(r: &mut Report, objective: &Fields<'_>) -> Option<f64> {
    match (objective.has("target"), objective.has("targetPercent")) {
        (true, true) => {
            r.push(objective.path("targetPercent"), "give either target or targetPercent, not both");
            None
        }
        (false, false) => {
            r.push(objective.path("target"), "is required (or targetPercent)");
            None
        }
        (true, false) => {
            let target = objective.opt_number(r, "target")?;
            if !is_open_ratio(target) {
                r.push(objective.path("target"), "must be between 0 and 1 (exclusive)");
                return None;
            }
            Some(target)
        }
        (false, true) => {
            let percent = objective.opt_number(r, "targetPercent")?;
            let target = percent / 100.0;
            if !is_open_ratio(target) {
                r.push(objective.path("targetPercent"), "must be between 0 and 100 (exclusive)");
                return None;
            }
            Some(target)
        }
    }
}

/// Time slices need a slice length (and for Timeslices a per-slice target); Occurrences has none.
fn check_time_slices(r: &mut Report, objective: &Fields<'_>, method: Option<BudgetingMethod>) {
    let required: &[&str] = match method {
        None => return,
        Some(BudgetingMethod::Occurrences) => {
            for key in ["timeSliceTarget", "timeSliceWindow"] {
                if objective.has(key) {
                    r.push(objective.path(key), "is only used with Timeslices or RatioTimeslices budgeting");
                }
            }
            return;
        }
        Some(BudgetingMethod::Timeslices) => &["timeSliceTarget", "timeSliceWindow"],
        Some(BudgetingMethod::RatioTimeslices) => &["timeSliceWindow"],
    };
    for key in required {
        if !objective.has(key) {
            r.push(objective.path(key), "is required with time-slice budgeting");
        }
    }
}

fn read_alert_policy(r: &mut Report, metadata: Option<Metadata>, spec: &Fields<'_>) -> Option<AlertPolicy> {
    spec.only(
        r,
        &[
            "description",
            "alertWhenNoData",
            "alertWhenResolved",
            "alertWhenBreaching",
            "conditions",
            "notificationTargets",
        ],
    );
    let description = read_description(r, spec);
    let alert_when_no_data = spec.opt_bool(r, "alertWhenNoData") == Some(true);
    let alert_when_resolved = spec.opt_bool(r, "alertWhenResolved") == Some(true);
    let alert_when_breaching = spec.opt_bool(r, "alertWhenBreaching").unwrap_or(true);
    let conditions =
        read_entries(r, spec, "conditions", true, "conditionRef", Kind::AlertCondition, read_alert_condition);
    let notification_targets = read_entries(
        r,
        spec,
        "notificationTargets",
        true,
        "targetRef",
        Kind::AlertNotificationTarget,
        read_notification_target,
    );
    Some(AlertPolicy {
        metadata: metadata?,
        description,
        alert_when_no_data,
        alert_when_resolved,
        alert_when_breaching,
        conditions: conditions?,
        notification_targets: notification_targets?,
    })
}

fn read_alert_condition(
    r: &mut Report,
    metadata: Option<Metadata>,
    spec: &Fields<'_>,
) -> Option<AlertCondition> {
    spec.only(r, &["description", "severity", "condition"]);
    let description = read_description(r, spec);
    let severity = spec.req_str(r, "severity");
    let condition = spec.req_mapping(r, "condition").and_then(|condition| read_burn_rate(r, &condition));
    Some(AlertCondition { metadata: metadata?, description, severity: severity?, condition: condition? })
}

fn read_burn_rate(r: &mut Report, condition: &Fields<'_>) -> Option<BurnRateCondition> {
    condition.only(r, &["kind", "op", "threshold", "lookbackWindow", "alertAfter"]);
    let kind = condition.req_str(r, "kind");
    let known_kind = kind.as_deref() == Some("burnrate");
    if let Some(kind) = &kind
        && !known_kind
    {
        r.push(condition.path("kind"), format!("must be burnrate, found {kind:?}"));
    }
    let op = condition.req_choice(r, "op", OPERATORS);
    let threshold = condition.req_number(r, "threshold");
    if threshold.is_some_and(|threshold| threshold < 0.0) {
        r.push(condition.path("threshold"), "must not be negative");
    }
    let lookback_window = condition.req_duration(r, "lookbackWindow");
    let alert_after = condition.req_duration(r, "alertAfter");
    if !known_kind {
        return None;
    }
    Some(BurnRateCondition {
        op: op?,
        threshold: threshold?,
        lookback_window: lookback_window?,
        alert_after: alert_after?,
    })
}

fn read_notification_target(
    r: &mut Report,
    metadata: Option<Metadata>,
    spec: &Fields<'_>,
) -> Option<NotificationTarget> {
    spec.only(r, &["description", "target"]);
    let description = read_description(r, spec);
    let target = spec.req_str(r, "target");
    Some(NotificationTarget { metadata: metadata?, description, target: target? })
}

fn read_data_source(r: &mut Report, metadata: Option<Metadata>, spec: &Fields<'_>) -> Option<DataSource> {
    spec.only(r, &["description", "type", "connectionDetails"]);
    let description = read_description(r, spec);
    let source_type = spec.req_str(r, "type");
    let connection_details = match spec.get("connectionDetails") {
        Some(details) => to_json(r, details, &spec.path("connectionDetails")),
        None => Some(serde_json::Value::Null),
    };
    Some(DataSource {
        metadata: metadata?,
        description,
        source_type: source_type?,
        connection_details: connection_details?,
    })
}

// ---------------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------------

/// Checks references across a set of objects (possibly from several files). `indicatorRef`,
/// `alertPolicyRef`, `conditionRef` and `targetRef` must name a top-level object of the set, as the
/// go-sdk's inliner demands. An SLO's `service` is only checked when the set holds at least one
/// Service (see the module documentation). Each dangling reference is an error naming the field and
/// the missing name.
pub fn check_references(objects: &[OpenSloObject]) -> Vec<OpenSloError> {
    let mut defined: HashMap<Kind, HashSet<&str>> = HashMap::new();
    for object in objects {
        defined.entry(object.kind()).or_default().insert(object.name());
    }
    let check_services = defined.contains_key(&Kind::Service);
    let mut check = ReferenceCheck { defined, errors: Vec::new() };
    for object in objects {
        let kind = object.kind().as_str();
        let name = object.name();
        let location = format!("kind {kind} {name:?}");
        match object {
            OpenSloObject::Slo(slo) => {
                if check_services {
                    check.require(&location, "spec.service".to_owned(), Kind::Service, &slo.service);
                }
                if let Some(Indicator::Ref(sli)) = &slo.indicator {
                    check.require(&location, "spec.indicatorRef".to_owned(), Kind::Sli, sli);
                }
                for (index, objective) in slo.objectives.iter().enumerate() {
                    if let Some(Indicator::Ref(sli)) = &objective.indicator {
                        let field = format!("spec.objectives[{index}].indicatorRef");
                        check.require(&location, field, Kind::Sli, sli);
                    }
                }
                for (index, entry) in slo.alert_policies.iter().enumerate() {
                    match entry {
                        RefOrInline::Ref(policy) => {
                            let field = format!("spec.alertPolicies[{index}].alertPolicyRef");
                            check.require(&location, field, Kind::AlertPolicy, policy);
                        }
                        RefOrInline::Inline(policy) => {
                            check.policy(&location, &format!("spec.alertPolicies[{index}].spec"), policy);
                        }
                    }
                }
            }
            OpenSloObject::AlertPolicy(policy) => check.policy(&location, "spec", policy),
            _ => {}
        }
    }
    check.errors
}

struct ReferenceCheck<'o> {
    defined: HashMap<Kind, HashSet<&'o str>>,
    errors: Vec<OpenSloError>,
}

impl ReferenceCheck<'_> {
    fn require(&mut self, location: &str, field: String, kind: Kind, name: &str) {
        if self.defined.get(&kind).is_some_and(|names| names.contains(name)) {
            return;
        }
        self.errors.push(OpenSloError {
            location: location.to_owned(),
            field,
            message: format!("{} {name:?} is not defined", kind.as_str()),
        });
    }

    fn policy(&mut self, location: &str, spec: &str, policy: &AlertPolicy) {
        for (index, entry) in policy.conditions.iter().enumerate() {
            if let RefOrInline::Ref(condition) = entry {
                let field = format!("{spec}.conditions[{index}].conditionRef");
                self.require(location, field, Kind::AlertCondition, condition);
            }
        }
        for (index, entry) in policy.notification_targets.iter().enumerate() {
            if let RefOrInline::Ref(target) = entry {
                let field = format!("{spec}.notificationTargets[{index}].targetRef");
                self.require(location, field, Kind::AlertNotificationTarget, target);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Burn rates
// ---------------------------------------------------------------------------------------------

/// good/total counts of one sample period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliSample {
    pub end: DateTime<Utc>,
    pub good: u64,
    pub total: u64,
}

/// Good and total events of the samples whose end lies in (now − window, now]. A sample claiming
/// more good than total events counts as all good.
fn window_totals(samples: &[SliSample], now: DateTime<Utc>, window: TimeDelta) -> (u64, u64) {
    // No start (a window reaching before the representable past) means every sample up to now.
    let start = now.checked_sub_signed(window);
    samples.iter().filter(|sample| sample.end <= now && start.is_none_or(|start| sample.end > start)).fold(
        (0_u64, 0_u64),
        |(good, total), sample| {
            (good.saturating_add(sample.good.min(sample.total)), total.saturating_add(sample.total))
        },
    )
}

/// Error-budget burn rate over a window ending at `now`: (bad/total) / (1 − target). `None` when the
/// window saw no events or `target` is not strictly between 0 and 1.
pub fn burn_rate(samples: &[SliSample], target: f64, now: DateTime<Utc>, window: TimeDelta) -> Option<f64> {
    let (good, total) = window_totals(samples, now, window);
    burn_rate_of(good, total, target)
}

/// The burn rate of `good` out of `total` events: (bad/total) / (1 − target). `None` without events
/// or when `target` is not strictly between 0 and 1. [`burn_rate`] and the error budget history
/// (`domain::error_budget`) both count through it, so they agree to the last bit.
pub fn burn_rate_of(good: u64, total: u64, target: f64) -> Option<f64> {
    if !is_open_ratio(target) || total == 0 {
        return None;
    }
    let bad = total.saturating_sub(good);
    Some(bad as f64 / total as f64 / (1.0 - target))
}

/// Remaining error budget of the SLO window ending at `now`, as a fraction (1 = untouched, 0 = spent,
/// negative = overspent). The budget is (1 − target) of the events the window saw (Occurrences), so
/// this is 1 − the burn rate over the whole window. `None` as for [`burn_rate`].
pub fn budget_remaining(
    samples: &[SliSample],
    target: f64,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Option<f64> {
    burn_rate(samples, target, now, window).map(|rate| 1.0 - rate)
}

/// One multi-window alert: it fires when both windows burn faster than `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRateWindow {
    pub factor: f64,
    pub long: TimeDelta,
    pub short: TimeDelta,
}

/// The SRE workbook's windows (chapter 5, "Alerting on SLOs") are for a 30-day SLO.
const STANDARD_SLO_WINDOW_SECONDS: i64 = 30 * 86_400;
/// (factor, long window, short window) in seconds: 2 %, 5 % and 10 % of a 30-day budget.
const STANDARD_WINDOWS: [(f64, i64, i64); 3] =
    [(14.4, 3_600, 300), (6.0, 21_600, 1_800), (1.0, 259_200, 21_600)];

/// The standard alert windows: 14.4× over 1 h and 5 min, 6× over 6 h and 30 min, 1× over 3 days and
/// 6 h, for a 30-day SLO. For other SLO windows the factors stay and the windows scale with the SLO
/// window (28 days: 56 min and 4 min 40 s, …), so each alert still means the same share of the budget
/// spent. Windows are whole seconds, at least one. Empty for a window that is not positive.
pub fn standard_alert_windows(slo_window: TimeDelta) -> Vec<BurnRateWindow> {
    let slo_seconds = slo_window.num_seconds();
    if slo_seconds <= 0 {
        return Vec::new();
    }
    STANDARD_WINDOWS
        .iter()
        .map(|&(factor, long, short)| BurnRateWindow {
            factor,
            long: scale_window(long, slo_seconds),
            short: scale_window(short, slo_seconds),
        })
        .collect()
}

fn scale_window(seconds: i64, slo_seconds: i64) -> TimeDelta {
    let scaled =
        (i128::from(seconds) * i128::from(slo_seconds) / i128::from(STANDARD_SLO_WINDOW_SECONDS)).max(1);
    i64::try_from(scaled).ok().and_then(TimeDelta::try_seconds).unwrap_or(TimeDelta::MAX)
}

/// Which windows fire now: both the long and the short window burn faster than the factor. The
/// short window stops an alert soon after the burning stops.
pub fn firing_windows(
    samples: &[SliSample],
    target: f64,
    now: DateTime<Utc>,
    windows: &[BurnRateWindow],
) -> Vec<BurnRateWindow> {
    let burns_faster = |window: TimeDelta, factor: f64| {
        burn_rate(samples, target, now, window).is_some_and(|rate| rate > factor)
    };
    windows
        .iter()
        .filter(|window| {
            burns_faster(window.long, window.factor) && burns_faster(window.short, window.factor)
        })
        .copied()
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::{Path, PathBuf};

    use chrono::TimeZone;

    use super::*;

    // ---- fixtures -------------------------------------------------------------------------

    fn fixture_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/openslo")
    }

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|extension| extension == "yaml" || extension == "yml")
                {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn parse_fixture(path: &Path) -> Vec<OpenSloObject> {
        parse_documents(&read(path)).unwrap_or_else(|errors| panic!("{}: {errors:#?}", path.display()))
    }

    fn valid_fixtures() -> Vec<PathBuf> {
        let root = fixture_root();
        let invalid = root.join("invalid");
        yaml_files(&root).into_iter().filter(|path| !path.starts_with(&invalid)).collect()
    }

    #[test]
    fn every_valid_fixture_parses() {
        let files = valid_fixtures();
        assert_eq!(files.len(), 13, "{files:#?}");
        for path in &files {
            let objects = parse_fixture(path);
            assert!(!objects.is_empty(), "{}", path.display());
        }
    }

    #[test]
    fn valid_fixtures_have_no_dangling_references() {
        let root = fixture_root();
        // The v1/ examples are decode examples, not a consistent set: alert_policies.yaml names
        // targets that no upstream file defines. Every other file resolves on its own.
        let policies = root.join("v1/alert_policies.yaml");
        for path in valid_fixtures().iter().filter(|path| **path != policies) {
            let errors = check_references(&parse_fixture(path));
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        }
        let mut objects = parse_fixture(&policies);
        objects.extend(parse_fixture(&root.join("v1/alert_conditions.yaml")));
        objects.extend(parse_fixture(&root.join("v1/alert_notification_targets.yaml")));
        let errors = check_references(&objects);
        let found: Vec<(&str, &str, &str)> =
            errors.iter().map(|e| (e.location.as_str(), e.field.as_str(), e.message.as_str())).collect();
        assert_eq!(
            found,
            [
                (
                    "kind AlertPolicy \"low-priority\"",
                    "spec.notificationTargets[0].targetRef",
                    "AlertNotificationTarget \"on-call-mail-notification\" is not defined",
                ),
                (
                    "kind AlertPolicy \"high-priority\"",
                    "spec.notificationTargets[0].targetRef",
                    "AlertNotificationTarget \"on-call-pd-notification\" is not defined",
                ),
            ]
        );
    }

    /// Parse errors, or reference errors when the file parses.
    fn all_errors(path: &Path) -> (bool, Vec<OpenSloError>) {
        match parse_documents(&read(path)) {
            Err(errors) => (false, errors),
            Ok(objects) => (true, check_references(&objects)),
        }
    }

    #[test]
    fn every_invalid_fixture_is_rejected_naming_a_field() {
        let files = yaml_files(&fixture_root().join("invalid"));
        assert_eq!(files.len(), 12, "{files:#?}");
        for path in &files {
            let (parsed, errors) = all_errors(path);
            assert!(!errors.is_empty(), "{} was accepted", path.display());
            assert!(errors.iter().all(|e| !e.field.is_empty()), "{errors:#?}");
            // Schema violations fail parsing; dangling references fail only the reference check.
            let dangling = path.parent().is_some_and(|dir| dir.ends_with("dangling-refs"));
            assert_eq!(parsed, dangling, "{}: {errors:#?}", path.display());
        }
    }

    #[test]
    fn invalid_fixtures_name_the_offending_field() {
        let cases = [
            ("schema/alert-condition-no-condition.yaml", "spec.condition", "is required"),
            ("schema/alert-condition-no-sev.yaml", "spec.severity", "is required"),
            ("schema/alert-notification-target-no-target.yaml", "spec.target", "is required"),
            ("schema/alert-policy-malformed-cond.yaml", "spec.conditions[0]", "conditionRef"),
            ("schema/alert-policy-no-cond.yaml", "spec.conditions", "is required"),
            ("schema/alert-policy-no-notification.yaml", "spec.notificationTargets", "is required"),
            ("schema/invalid-apiversion.yaml", "apiVersion", "openslo/v1alpha"),
            ("schema/service-long-description.yaml", "spec.description", "at most 1050"),
            (
                "dangling-refs/v1_alert_policies_invalid_condition.yaml",
                "spec.conditions[0].conditionRef",
                "cpu-usage-breach",
            ),
            (
                "dangling-refs/v1_alert_policies_invalid_target.yaml",
                "spec.notificationTargets[1].targetRef",
                "devs-email-notification",
            ),
            ("dangling-refs/v1_slo_invalid_sli.yaml", "spec.indicatorRef", "\"no-sli\""),
            (
                "dangling-refs/v1_slo_invalid_policy.yaml",
                "spec.alertPolicies[0].alertPolicyRef",
                "\"no-policy\"",
            ),
        ];
        let root = fixture_root().join("invalid");
        for (file, field, fragment) in cases {
            let (_, errors) = all_errors(&root.join(file));
            assert!(
                errors.iter().any(|e| e.field == field && e.message.contains(fragment)),
                "{file}: no error on {field} mentioning {fragment}: {errors:#?}"
            );
        }
    }

    #[test]
    fn dangling_sli_error_reads_well() {
        let (_, errors) = all_errors(&fixture_root().join("invalid/dangling-refs/v1_slo_invalid_sli.yaml"));
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages, ["kind SLO \"my-slo\": spec.indicatorRef: SLI \"no-sli\" is not defined"]);
    }

    #[test]
    fn fixture_shapes_are_read() {
        let root = fixture_root();

        let services = parse_fixture(&root.join("sdk-test-data/two_documents.yaml"));
        let names: Vec<&str> = services.iter().map(OpenSloObject::name).collect();
        assert_eq!(names, ["users-auth", "users-login"]);

        let slis = parse_fixture(&root.join("v1/slis.yaml"));
        let [
            OpenSloObject::Sli(good_total),
            OpenSloObject::Sli(bad_total),
            OpenSloObject::Sli(raw),
            OpenSloObject::Sli(threshold),
        ] = slis.as_slice()
        else {
            panic!("{slis:#?}");
        };
        let SliMetric::Ratio(ratio) = &good_total.metric else { panic!("{good_total:#?}") };
        assert!(ratio.counter);
        assert_eq!(
            ratio.good().and_then(MetricSource::query),
            Some("sum:trace.http.request.hits.by_http_status{http.status_code:200}.as_count()")
        );
        assert_eq!(ratio.total().and_then(|total| total.metric_source_ref.as_deref()), Some("my-datadog"));
        let SliMetric::Ratio(ratio) = &bad_total.metric else { panic!("{bad_total:#?}") };
        assert!(!ratio.counter);
        assert_eq!(
            ratio.bad().map(|bad| &bad.spec["metricPath"]),
            Some(&serde_json::json!("End User Experience|App|Slow Requests"))
        );
        let SliMetric::Ratio(RatioMetric { kind: RatioKind::Raw { raw_type, .. }, .. }) = &raw.metric else {
            panic!("{raw:#?}")
        };
        assert_eq!(*raw_type, RawType::Success);
        assert!(matches!(threshold.metric, SliMetric::Threshold(_)));
        assert_eq!(good_total.metadata.labels["team"], ["team-a", "team-b"]);

        let slos = parse_fixture(&root.join("examples/budgeting-method/timeslices-slo.yaml"));
        let [OpenSloObject::Slo(slo)] = slos.as_slice() else { panic!("{slos:#?}") };
        // `1m` is one minute (case-sensitive units), although the upstream comment means a month.
        assert_eq!(slo.time_window.duration, TimeDelta::minutes(1));
        assert!(!slo.time_window.is_rolling);
        let calendar = slo.time_window.calendar.unwrap();
        assert_eq!(calendar.time_zone, Tz::America__New_York);
        assert_eq!(calendar.start_time.to_string(), "2022-01-01 12:00:00");
        assert_eq!(slo.budgeting_method, BudgetingMethod::Timeslices);
        assert_eq!(slo.objectives.len(), 2);
        assert_eq!(slo.objectives[0].op, Some(Operator::Gt));
        assert_eq!(slo.objectives[1].op, None);
        assert_eq!(slo.objectives[1].time_slice_window, Some(TimeDelta::minutes(1)));
        assert!(slo.alert_policies.is_empty());

        let slos = parse_fixture(&root.join("examples/budgeting-method/occurences-slo.yaml"));
        let [OpenSloObject::Slo(slo)] = slos.as_slice() else { panic!("{slos:#?}") };
        assert_eq!(slo.time_window.duration, TimeDelta::weeks(2));
        assert!(slo.time_window.is_rolling);
        assert_eq!(slo.objectives[0].op, Some(Operator::Lt));
        assert_eq!(slo.objectives[0].value, Some(500.0));

        let policies = parse_fixture(&root.join("v1/alert_policies.yaml"));
        let OpenSloObject::AlertPolicy(high) = &policies[1] else { panic!("{policies:#?}") };
        let [RefOrInline::Inline(condition)] = high.conditions.as_slice() else { panic!("{high:#?}") };
        assert_eq!(condition.metadata.name, "memory-usage-breach");
        assert_eq!(condition.condition.lookback_window, TimeDelta::hours(1));
        assert_eq!(condition.condition.alert_after, TimeDelta::minutes(5));
    }

    // ---- own documents --------------------------------------------------------------------

    const FULL_SET: &str = r#"apiVersion: openslo/v1
kind: Service
metadata:
  name: checkout
  displayName: Checkout
spec:
  description: Takes payment for a basket
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-success
spec:
  ratioMetric:
    counter: true
    good:
      metricSource:
        type: Prometheus
        spec:
          query: 'sum(rate(checkout_requests_total{code!~"5.."}[5m]))'
    total:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(checkout_requests_total[5m]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  labels:
    team: payments
spec:
  service: checkout
  indicatorRef: checkout-success
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Checkouts succeed
      target: 0.999
  alertPolicies:
    - alertPolicyRef: checkout-fast-burn
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: checkout-fast-burn
spec:
  alertWhenBreaching: true
  conditions:
    - conditionRef: checkout-burn-14x
  notificationTargets:
    - targetRef: checkout-on-call
---
apiVersion: openslo/v1
kind: AlertCondition
metadata:
  name: checkout-burn-14x
spec:
  severity: page
  condition:
    kind: burnrate
    op: gt
    threshold: 14.4
    lookbackWindow: 1h
    alertAfter: 5m
---
apiVersion: openslo/v1
kind: AlertNotificationTarget
metadata:
  name: checkout-on-call
spec:
  target: pagerduty
"#;

    /// FULL_SET with one change (which must apply).
    fn variant(from: &str, to: &str) -> String {
        assert!(FULL_SET.contains(from), "{from}");
        FULL_SET.replacen(from, to, 1)
    }

    fn fields(errors: &[OpenSloError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn full_set_parses_and_resolves() {
        let objects = parse_documents(FULL_SET).unwrap();
        let kinds: Vec<Kind> = objects.iter().map(OpenSloObject::kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Service,
                Kind::Sli,
                Kind::Slo,
                Kind::AlertPolicy,
                Kind::AlertCondition,
                Kind::AlertNotificationTarget
            ]
        );
        let errors = check_references(&objects);
        assert!(errors.is_empty(), "{errors:#?}");

        let OpenSloObject::Sli(sli) = &objects[1] else { panic!() };
        let SliMetric::Ratio(ratio) = &sli.metric else { panic!() };
        assert_eq!(
            ratio.good().and_then(MetricSource::query),
            Some(r#"sum(rate(checkout_requests_total{code!~"5.."}[5m]))"#)
        );
        assert_eq!(
            ratio.total().and_then(MetricSource::query),
            Some("sum(rate(checkout_requests_total[5m]))")
        );

        let OpenSloObject::Slo(slo) = &objects[2] else { panic!() };
        assert_eq!(slo.service, "checkout");
        assert_eq!(slo.indicator, Some(Indicator::Ref("checkout-success".to_owned())));
        assert_eq!(slo.time_window.duration, TimeDelta::days(30));
        assert!(slo.time_window.is_rolling);
        assert_eq!(slo.budgeting_method, BudgetingMethod::Occurrences);
        assert!((slo.objectives[0].target - 0.999).abs() < 1e-12);
        assert!(
            matches!(slo.alert_policies.as_slice(), [RefOrInline::Ref(policy)] if policy == "checkout-fast-burn"),
            "{slo:#?}"
        );
        assert_eq!(slo.metadata.labels["team"], ["payments"]);

        let OpenSloObject::AlertCondition(condition) = &objects[4] else { panic!() };
        assert_eq!(condition.severity, "page");
        assert_eq!(
            condition.condition,
            BurnRateCondition {
                op: Operator::Gt,
                threshold: 14.4,
                lookback_window: TimeDelta::hours(1),
                alert_after: TimeDelta::minutes(5),
            }
        );
    }

    #[test]
    fn target_out_of_range_names_document_and_field() {
        let errors = parse_documents(&variant("target: 0.999", "target: 1.5")).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            ["document 3 (kind SLO \"checkout-availability\"): spec.objectives[0].target: \
                 must be between 0 and 1 (exclusive)"]
        );
    }

    #[test]
    fn broken_variants_name_the_field() {
        let cases = [
            (variant("  service: checkout\n", ""), "spec.service"),
            (variant("alertAfter: 5m", "alertAfter: 5 minutes"), "spec.condition.alertAfter"),
            (variant("budgetingMethod: Occurrences", "budgetingMethod: Events"), "spec.budgetingMethod"),
            (variant("duration: 30d", "duration: 30 days"), "spec.timeWindow[0].duration"),
            (variant("duration: 30d", "duration: 1M"), "spec.timeWindow[0].duration"),
            (
                variant("targetRef: checkout-on-call", "target: checkout-on-call"),
                "spec.notificationTargets[0]",
            ),
            (variant("name: checkout-success", "name: Checkout_Success"), "metadata.name"),
            (variant("target: 0.999", "targetPercentage: 99.9"), "spec.objectives[0].targetPercentage"),
            (variant("kind: AlertCondition", "kind: AlertConditions"), "kind"),
            (
                variant("    good:\n", "    bad:\n      metricSource: {type: X, spec: {}}\n    good:\n"),
                "spec.ratioMetric.bad",
            ),
        ];
        for (yaml, field) in cases {
            let errors = parse_documents(&yaml).unwrap_err();
            assert!(fields(&errors).contains(&field), "{field}: {errors:#?}");
        }
    }

    #[test]
    fn dangling_references_of_own_set_are_reported() {
        let cases = [
            (
                "indicatorRef: checkout-success",
                "indicatorRef: checkout-errors",
                "spec.indicatorRef",
                "checkout-errors",
            ),
            ("  service: checkout\n", "  service: payments\n", "spec.service", "payments"),
            (
                "alertPolicyRef: checkout-fast-burn",
                "alertPolicyRef: slow-burn",
                "spec.alertPolicies[0].alertPolicyRef",
                "slow-burn",
            ),
            (
                "conditionRef: checkout-burn-14x",
                "conditionRef: burn-6x",
                "spec.conditions[0].conditionRef",
                "burn-6x",
            ),
        ];
        for (from, to, field, name) in cases {
            let objects = parse_documents(&variant(from, to)).unwrap();
            let errors = check_references(&objects);
            assert_eq!(fields(&errors), [field], "{errors:#?}");
            assert!(errors[0].message.contains(name), "{errors:#?}");
        }
    }

    #[test]
    fn service_is_only_checked_when_the_set_has_services() {
        let objects = parse_documents(&variant("  service: checkout\n", "  service: payments\n")).unwrap();
        let without_services: Vec<OpenSloObject> =
            objects.into_iter().filter(|object| object.kind() != Kind::Service).collect();
        let errors = check_references(&without_services);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn inline_objects_and_percent_targets() {
        let yaml = r"
- apiVersion: openslo/v1
  kind: SLO
  metadata:
    name: search-latency
  spec:
    service: search
    indicator:
      metadata:
        name: search-p99
      spec:
        thresholdMetric:
          metricSource:
            type: Prometheus
            spec:
              query: histogram_quantile(0.99, rate(search_seconds_bucket[5m]))
    timeWindow:
      - duration: 1M
        calendar:
          startTime: 2024-01-01 00:00:00
          timeZone: Europe/Berlin
    budgetingMethod: Timeslices
    objectives:
      - op: lte
        value: 0.3
        targetPercent: 99.5
        timeSliceTarget: 0.9
        timeSliceWindow: 5m
    alertPolicies:
      - kind: AlertPolicy
        metadata:
          name: search-slow
        spec:
          conditions:
            - kind: AlertCondition
              metadata:
                name: search-slow-burn
              spec:
                severity: warning
                condition: {kind: burnrate, op: gt, threshold: 6, lookbackWindow: 6h, alertAfter: 30m}
          notificationTargets:
            - targetRef: search-team
";
        let objects = parse_documents(yaml).unwrap();
        let [OpenSloObject::Slo(slo)] = objects.as_slice() else { panic!("{objects:#?}") };
        assert!((slo.objectives[0].target - 0.995).abs() < 1e-12);
        assert!(matches!(&slo.indicator, Some(Indicator::Inline(sli)) if sli.metadata.name == "search-p99"));
        // A calendar window without isRolling is calendar-aligned; a month counts 30 days nominally.
        assert!(!slo.time_window.is_rolling);
        assert_eq!(slo.time_window.shorthand, DurationShorthand { count: 1, unit: DurationUnit::Month });
        assert_eq!(slo.time_window.duration, TimeDelta::days(30));
        let [RefOrInline::Inline(policy)] = slo.alert_policies.as_slice() else { panic!("{slo:#?}") };
        assert!(policy.alert_when_breaching);
        // The inline policy's target reference is checked too.
        let errors = check_references(&objects);
        assert_eq!(fields(&errors), ["spec.alertPolicies[0].spec.notificationTargets[0].targetRef"]);

        // A threshold metric needs op and value.
        let errors = parse_documents(&yaml.replace("        value: 0.3\n", "")).unwrap_err();
        assert_eq!(fields(&errors), ["spec.objectives[0].value"]);
    }

    #[test]
    fn locations_count_documents_and_list_items() {
        let yaml = "
apiVersion: openslo/v1
kind: Service
metadata: {name: fine}
spec: {}
---
---
- apiVersion: openslo/v1
  kind: Service
  metadata: {name: also-fine}
  spec: {}
- apiVersion: openslo/v1
  kind: Service
  metadata: {name: Not_Fine}
  spec: {}
";
        let errors = parse_documents(yaml).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].location, "document 3, item 2 (kind Service \"Not_Fine\")");
        assert_eq!(errors[0].field, "metadata.name");
    }

    #[test]
    fn broken_yaml_is_one_error() {
        let errors = parse_documents("kind: [SLO\n").unwrap_err();
        assert_eq!(fields(&errors), [DOCUMENT]);
        assert_eq!(errors[0].location, "document 1");
        assert_eq!(parse_documents(""), Ok(Vec::new()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(TimeDelta::seconds(30)));
        assert_eq!(parse_duration("5m"), Some(TimeDelta::minutes(5)));
        assert_eq!(parse_duration("1h"), Some(TimeDelta::hours(1)));
        assert_eq!(parse_duration("28d"), Some(TimeDelta::days(28)));
        assert_eq!(parse_duration("1w"), Some(TimeDelta::weeks(1)));
        assert_eq!(parse_duration("010m"), Some(TimeDelta::minutes(10)));
        for text in
            ["", "m", "5", "0m", "-5m", "+5m", "1.5h", "5 m", " 5m", "5 minutes", "5x", "1M", "1Q", "1Y"]
        {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
        assert_eq!(
            DurationShorthand::parse("3Q"),
            Some(DurationShorthand { count: 3, unit: DurationUnit::Quarter })
        );
        assert_eq!(
            DurationShorthand::parse("1Y").and_then(DurationShorthand::nominal),
            Some(TimeDelta::days(365))
        );
        assert_eq!(DurationShorthand::parse("4294967295Y").and_then(DurationShorthand::nominal), None);
    }

    // ---- burn rates -----------------------------------------------------------------------

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap()
    }

    fn sample(minutes_ago: i64, good: u64, total: u64) -> SliSample {
        SliSample { end: now() - TimeDelta::minutes(minutes_ago), good, total }
    }

    fn assert_close(actual: Option<f64>, expected: f64) {
        let actual = actual.unwrap();
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[test]
    fn burn_rate_is_the_error_ratio_over_the_budget() {
        // 1,000 of 100,000 bad in the last hour at 99.9 %: 1 % errors against a 0.1 % budget.
        let samples = [sample(30, 99_000, 100_000), sample(90, 0, 1_000)];
        assert_close(burn_rate(&samples, 0.999, now(), TimeDelta::hours(1)), 10.0);
        assert_eq!(burn_rate(&samples, 0.999, now(), TimeDelta::minutes(10)), None);
        assert_eq!(burn_rate(&samples, 1.0, now(), TimeDelta::hours(1)), None);
        assert_eq!(burn_rate(&[], 0.999, now(), TimeDelta::hours(1)), None);
    }

    #[test]
    fn window_is_open_at_the_start_and_closed_at_now() {
        // Only the sample ending exactly at now counts: 5 of 10 bad against a 50 % budget.
        let samples = [sample(60, 0, 10), sample(0, 5, 10), sample(-5, 0, 10)];
        assert_close(burn_rate(&samples, 0.5, now(), TimeDelta::hours(1)), 1.0);
    }

    #[test]
    fn budget_remaining_counts_the_slo_window() {
        let window = TimeDelta::days(30);
        let old = sample(31 * 24 * 60, 0, 10_000);
        // 25 bad of 10,000 at 99 %: a quarter of the budget of 100 spent.
        assert_close(budget_remaining(&[sample(60, 9_975, 10_000), old], 0.99, now(), window), 0.75);
        assert_close(budget_remaining(&[sample(60, 10_000, 10_000)], 0.99, now(), window), 1.0);
        assert_close(budget_remaining(&[sample(60, 9_850, 10_000)], 0.99, now(), window), -0.5);
        assert_eq!(budget_remaining(&[old], 0.99, now(), window), None);
    }

    #[test]
    fn standard_windows_for_30_and_28_days() {
        assert_eq!(
            standard_alert_windows(TimeDelta::days(30)),
            [
                BurnRateWindow { factor: 14.4, long: TimeDelta::hours(1), short: TimeDelta::minutes(5) },
                BurnRateWindow { factor: 6.0, long: TimeDelta::hours(6), short: TimeDelta::minutes(30) },
                BurnRateWindow { factor: 1.0, long: TimeDelta::days(3), short: TimeDelta::hours(6) },
            ]
        );
        let windows = standard_alert_windows(TimeDelta::days(28));
        assert_eq!(
            windows[0],
            BurnRateWindow { factor: 14.4, long: TimeDelta::minutes(56), short: TimeDelta::seconds(280) }
        );
        assert_eq!(windows[2].long, TimeDelta::seconds(241_920));
        assert!(standard_alert_windows(TimeDelta::zero()).is_empty());
    }

    /// One sample of 1,000 events every 5 minutes over the last 6 hours; `bad(minutes_ago)` of them bad.
    fn six_hours(bad: impl Fn(i64) -> u64) -> Vec<SliSample> {
        (0..72)
            .map(|step| step * 5)
            .map(|minutes_ago| sample(minutes_ago, 1_000 - bad(minutes_ago), 1_000))
            .collect()
    }

    #[test]
    fn a_window_fires_only_when_long_and_short_both_burn() {
        let windows = standard_alert_windows(TimeDelta::days(30));
        let target = 0.999;

        // Burning at 20× everywhere: every window fires.
        let steady = six_hours(|_| 20);
        assert_eq!(firing_windows(&steady, target, now(), &windows), windows);

        // Only the last 5 minutes burn (20×); the hour burns at 1.7×: nothing fires.
        let spike = six_hours(|minutes_ago| if minutes_ago == 0 { 20 } else { 0 });
        assert_close(burn_rate(&spike, target, now(), TimeDelta::minutes(5)), 20.0);
        assert!(firing_windows(&spike, target, now(), &windows).is_empty());

        // The hour burnt at 18× but the last 5 minutes are clean: 14.4× stops at once, while the
        // slower windows (6× over 6 h / 30 min, 1× over 3 d / 6 h) still see the burn.
        let recovered = six_hours(|minutes_ago| if minutes_ago == 0 { 0 } else { 20 });
        assert!(burn_rate(&recovered, target, now(), TimeDelta::hours(1)).unwrap() > 14.4);
        assert_eq!(firing_windows(&recovered, target, now(), &windows), [windows[1], windows[2]]);
    }
}
