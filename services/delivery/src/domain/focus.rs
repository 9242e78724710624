//! FOCUS (FinOps Open Cost and Usage Specification) billing exports: parse the CSV into typed
//! rows, map rows to configuration items, and write cost allocations back out under FOCUS
//! column names.
//!
//! Parsing is row-tolerant: a malformed row is rejected with its line number and a reason and
//! the rest of the file is kept, so one bad line in a month of billing data does not block the
//! import. Only file-level problems (no header, missing mandatory columns, I/O) are errors.
//!
//! Money is `Decimal` throughout: provider exports carry 11+ fractional digits that binary
//! floats would round.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

/// FOCUS column IDs this module reads or writes.
mod column {
    pub const BILLED_COST: &str = "BilledCost";
    pub const EFFECTIVE_COST: &str = "EffectiveCost";
    pub const LIST_COST: &str = "ListCost";
    pub const BILLING_CURRENCY: &str = "BillingCurrency";
    pub const BILLING_PERIOD_START: &str = "BillingPeriodStart";
    pub const BILLING_PERIOD_END: &str = "BillingPeriodEnd";
    pub const CHARGE_PERIOD_START: &str = "ChargePeriodStart";
    pub const CHARGE_PERIOD_END: &str = "ChargePeriodEnd";
    pub const CHARGE_CATEGORY: &str = "ChargeCategory";
    pub const PROVIDER_NAME: &str = "ProviderName";
    pub const SERVICE_NAME: &str = "ServiceName";
    pub const BILLING_ACCOUNT_ID: &str = "BillingAccountId";
    pub const SUB_ACCOUNT_ID: &str = "SubAccountId";
    pub const RESOURCE_ID: &str = "ResourceId";
    pub const RESOURCE_NAME: &str = "ResourceName";
    pub const REGION_ID: &str = "RegionId";
    pub const REGION_NAME: &str = "RegionName";
    pub const TAGS: &str = "Tags";
}

/// Columns a FOCUS dataset MUST contain (feature level "Mandatory"; several of them allow
/// nulls, e.g. ChargeClass, BillingAccountName, PricingQuantity). Identical for 1.0, 1.1 and
/// 1.2: the later versions only added Conditional or Recommended columns.
const MANDATORY_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
];

/// Columns first defined in FOCUS 1.1 (all Conditional or Recommended).
const INTRODUCED_IN_V1_1: &[&str] = &[
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
    "ServiceSubcategory",
    "SkuMeter",
    "SkuPriceDetails",
];

/// Columns first defined in FOCUS 1.2. BillingAccountType and SubAccountType are 1.2 columns
/// too, but Microsoft's 1.0 exports already carry them, so they prove nothing about the version.
const INTRODUCED_IN_V1_2: &[&str] = &[
    "InvoiceId",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
];

/// Every column `parse` reads; a duplicate of one of these makes the file ambiguous.
const COLUMNS_READ: &[&str] = &[
    column::BILLED_COST,
    column::EFFECTIVE_COST,
    column::LIST_COST,
    column::BILLING_CURRENCY,
    column::BILLING_PERIOD_START,
    column::BILLING_PERIOD_END,
    column::CHARGE_PERIOD_START,
    column::CHARGE_PERIOD_END,
    column::CHARGE_CATEGORY,
    column::PROVIDER_NAME,
    column::SERVICE_NAME,
    column::BILLING_ACCOUNT_ID,
    column::SUB_ACCOUNT_ID,
    column::RESOURCE_ID,
    column::RESOURCE_NAME,
    column::REGION_ID,
    column::REGION_NAME,
    column::TAGS,
];

/// Header written by [`write_allocations`]: FOCUS names where a FOCUS column fits, and the
/// `x_` prefix FOCUS requires for custom columns.
pub const ALLOCATION_EXPORT_COLUMNS: &[&str] = &[
    "ResourceId",
    "ResourceName",
    "BilledCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "x_AllocationSource",
];

/// Allocated amounts re-attribute consumption to a business service, so they are "Usage".
const ALLOCATION_CHARGE_CATEGORY: &str = "Usage";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A FOCUS specification version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FocusVersion {
    V1_0,
    V1_1,
    V1_2,
}

impl FocusVersion {
    /// Oldest first.
    pub const ALL: [Self; 3] = [Self::V1_0, Self::V1_1, Self::V1_2];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        }
    }

    /// Columns that MUST be present in a dataset of this version.
    pub fn mandatory_columns(self) -> &'static [&'static str] {
        // One list today; kept per version so a future divergence is a one-line change.
        match self {
            Self::V1_0 | Self::V1_1 | Self::V1_2 => MANDATORY_COLUMNS,
        }
    }

    /// Columns this version added to the previous one.
    fn introduced_columns(self) -> &'static [&'static str] {
        match self {
            Self::V1_0 => &[],
            Self::V1_1 => INTRODUCED_IN_V1_1,
            Self::V1_2 => INTRODUCED_IN_V1_2,
        }
    }

    fn missing_columns(self, header_index: &HashMap<String, usize>) -> Vec<String> {
        self.mandatory_columns()
            .iter()
            .filter(|name| !header_index.contains_key(**name))
            .map(|name| (*name).to_owned())
            .collect()
    }

    /// The highest version whose mandatory columns are all present and, above 1.0, which shows
    /// at least one column it introduced. The second condition matters because the mandatory
    /// sets of 1.0–1.2 are equal: without it every 1.0 file would be reported as 1.2.
    fn detect(header_index: &HashMap<String, usize>) -> Result<Self, FocusError> {
        let missing = Self::V1_0.missing_columns(header_index);
        if !missing.is_empty() {
            return Err(FocusError::MissingColumns { version: Self::V1_0, missing });
        }
        let detected = Self::ALL.iter().rev().copied().find(|version| {
            version.missing_columns(header_index).is_empty()
                && (*version == Self::V1_0
                    || version.introduced_columns().iter().any(|name| header_index.contains_key(*name)))
        });
        Ok(detected.unwrap_or(Self::V1_0))
    }
}

impl fmt::Display for FocusVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// File-level failures; problems confined to one row become a [`RejectedRow`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FocusError {
    #[error("FOCUS {version} mandatory columns missing: {}", .missing.join(", "))]
    MissingColumns { version: FocusVersion, missing: Vec<String> },
    #[error("ambiguous header, columns appear more than once: {}", .0.join(", "))]
    DuplicateColumns(Vec<String>),
    #[error("not a readable CSV file: {0}")]
    Csv(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<csv::Error> for FocusError {
    fn from(error: csv::Error) -> Self {
        if error.is_io_error() { Self::Io(error.to_string()) } else { Self::Csv(error.to_string()) }
    }
}

/// One accepted billing row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRow {
    /// 1-based line in the file where the row starts (the header is line 1).
    pub line: u64,
    pub billed_cost: Decimal,
    pub effective_cost: Option<Decimal>,
    pub list_cost: Option<Decimal>,
    /// BillingCurrency, upper-cased; whether it is a valid ISO 4217 code is the caller's check.
    pub currency: String,
    pub billing_period_start: DateTime<Utc>,
    pub billing_period_end: DateTime<Utc>,
    pub charge_period_start: DateTime<Utc>,
    pub charge_period_end: DateTime<Utc>,
    pub charge_category: String,
    /// ProviderName.
    pub provider: String,
    pub service_name: String,
    pub billing_account_id: String,
    pub sub_account_id: Option<String>,
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    /// RegionId, or RegionName when the row has no RegionId (Oracle rows in the FOCUS sample).
    pub region: Option<String>,
    /// The JSON `Tags` object; values that are not strings are kept as their JSON text.
    pub tags: BTreeMap<String, String>,
}

/// A data row that could not be used, with every reason found (joined by "; ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

/// A parsed file. Invariant: `rows.len() + rejected.len() == data_lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusFile {
    pub version: FocusVersion,
    pub rows: Vec<BillingRow>,
    pub rejected: Vec<RejectedRow>,
    /// CSV records after the header (blank lines are not records).
    pub data_lines: u64,
}

/// Parses a FOCUS CSV export. With `version: None` the version is detected from the header.
///
/// `NULL` literals and empty strings both mean "no value". Date-times may be RFC 3339
/// (`2024-09-01T00:00:00Z`), or `2024-09-01 00:00:00` / `2024-09-01T00:00:00` without an offset,
/// which FOCUS defines as UTC; fractional seconds and a bare date are accepted too.
pub fn parse(reader: impl Read, version: Option<FocusVersion>) -> Result<FocusFile, FocusError> {
    // Flexible: a short or long row must become a rejected row, not abort the file.
    let mut csv_reader =
        csv::ReaderBuilder::new().flexible(true).from_reader(LineTrackingReader::new(reader));

    let header = read_header(&mut csv_reader)?;
    let header_index = index_header(&header)?;
    let version = match version {
        Some(chosen) => {
            let missing = chosen.missing_columns(&header_index);
            if !missing.is_empty() {
                return Err(FocusError::MissingColumns { version: chosen, missing });
            }
            chosen
        }
        None => FocusVersion::detect(&header_index)?,
    };
    let columns = ColumnIndexes::locate(&header_index);

    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut data_lines: u64 = 0;
    let mut record = csv::ByteRecord::new();
    while csv_reader.read_byte_record(&mut record)? {
        data_lines += 1;
        let start_byte = record.position().map_or(0, csv::Position::byte);
        let line = csv_reader
            .get_mut()
            .line_at_or_after(start_byte)
            .or_else(|| record.position().map(csv::Position::line))
            .unwrap_or(data_lines + 1);
        match parse_record(&record, line, &header, &columns) {
            Ok(row) => rows.push(row),
            Err(reason) => rejected.push(RejectedRow { line, reason }),
        }
    }
    Ok(FocusFile { version, rows, rejected, data_lines })
}

fn read_header<R: Read>(csv_reader: &mut csv::Reader<R>) -> Result<Vec<String>, FocusError> {
    let raw_header = csv_reader.byte_headers()?.clone();
    let mut header = Vec::with_capacity(raw_header.len());
    for (position, raw_name) in raw_header.iter().enumerate() {
        // Excel-style exports start with a BOM, which the csv crate keeps in the first name.
        let raw_name =
            if position == 0 { raw_name.strip_prefix(UTF8_BOM).unwrap_or(raw_name) } else { raw_name };
        let name = std::str::from_utf8(raw_name)
            .map_err(|_| FocusError::Csv(format!("header column {} is not valid UTF-8", position + 1)))?;
        header.push(name.trim().to_owned());
    }
    if header.iter().all(String::is_empty) {
        return Err(FocusError::Csv("empty input: no header row".to_owned()));
    }
    Ok(header)
}

fn index_header(header: &[String]) -> Result<HashMap<String, usize>, FocusError> {
    let mut header_index = HashMap::with_capacity(header.len());
    let mut duplicates = Vec::new();
    for (index, name) in header.iter().enumerate() {
        let repeated = header_index.insert(name.clone(), index).is_some();
        // Repeated columns we never read (e.g. blank names from trailing commas) are harmless.
        if repeated && COLUMNS_READ.contains(&name.as_str()) && !duplicates.contains(name) {
            duplicates.push(name.clone());
        }
    }
    if duplicates.is_empty() { Ok(header_index) } else { Err(FocusError::DuplicateColumns(duplicates)) }
}

/// Positions of the columns `parse` reads; `None` when the file does not have the column.
struct ColumnIndexes {
    billed_cost: Option<usize>,
    effective_cost: Option<usize>,
    list_cost: Option<usize>,
    billing_currency: Option<usize>,
    billing_period_start: Option<usize>,
    billing_period_end: Option<usize>,
    charge_period_start: Option<usize>,
    charge_period_end: Option<usize>,
    charge_category: Option<usize>,
    provider_name: Option<usize>,
    service_name: Option<usize>,
    billing_account_id: Option<usize>,
    sub_account_id: Option<usize>,
    resource_id: Option<usize>,
    resource_name: Option<usize>,
    region_id: Option<usize>,
    region_name: Option<usize>,
    tags: Option<usize>,
}

impl ColumnIndexes {
    fn locate(header_index: &HashMap<String, usize>) -> Self {
        let find = |name: &str| header_index.get(name).copied();
        Self {
            billed_cost: find(column::BILLED_COST),
            effective_cost: find(column::EFFECTIVE_COST),
            list_cost: find(column::LIST_COST),
            billing_currency: find(column::BILLING_CURRENCY),
            billing_period_start: find(column::BILLING_PERIOD_START),
            billing_period_end: find(column::BILLING_PERIOD_END),
            charge_period_start: find(column::CHARGE_PERIOD_START),
            charge_period_end: find(column::CHARGE_PERIOD_END),
            charge_category: find(column::CHARGE_CATEGORY),
            provider_name: find(column::PROVIDER_NAME),
            service_name: find(column::SERVICE_NAME),
            billing_account_id: find(column::BILLING_ACCOUNT_ID),
            sub_account_id: find(column::SUB_ACCOUNT_ID),
            resource_id: find(column::RESOURCE_ID),
            resource_name: find(column::RESOURCE_NAME),
            region_id: find(column::REGION_ID),
            region_name: find(column::REGION_NAME),
            tags: find(column::TAGS),
        }
    }
}

fn parse_record(
    record: &csv::ByteRecord,
    line: u64,
    header: &[String],
    columns: &ColumnIndexes,
) -> Result<BillingRow, String> {
    if record.len() != header.len() {
        return Err(format!("expected {} fields like the header, found {}", header.len(), record.len()));
    }
    let mut fields = Vec::with_capacity(record.len());
    for (index, raw) in record.iter().enumerate() {
        match std::str::from_utf8(raw) {
            Ok(text) => fields.push(text),
            Err(_) => {
                let name = header.get(index).map_or("?", String::as_str);
                return Err(format!("{name}: not valid UTF-8"));
            }
        }
    }
    parse_fields(&fields, line, columns)
}

fn parse_fields(fields: &[&str], line: u64, columns: &ColumnIndexes) -> Result<BillingRow, String> {
    // Collect every problem so one pass over a bad export shows all of them.
    let mut reasons = Vec::new();
    let reasons = &mut reasons;
    let billed_cost = keep(required_decimal(fields, columns.billed_cost, column::BILLED_COST), reasons);
    let effective_cost =
        keep(optional_decimal(fields, columns.effective_cost, column::EFFECTIVE_COST), reasons);
    let list_cost = keep(optional_decimal(fields, columns.list_cost, column::LIST_COST), reasons);
    let currency = keep(required_text(fields, columns.billing_currency, column::BILLING_CURRENCY), reasons)
        .map(|code| code.to_ascii_uppercase());
    let billing_period_start =
        keep(required_timestamp(fields, columns.billing_period_start, column::BILLING_PERIOD_START), reasons);
    let billing_period_end =
        keep(required_timestamp(fields, columns.billing_period_end, column::BILLING_PERIOD_END), reasons);
    let charge_period_start =
        keep(required_timestamp(fields, columns.charge_period_start, column::CHARGE_PERIOD_START), reasons);
    let charge_period_end =
        keep(required_timestamp(fields, columns.charge_period_end, column::CHARGE_PERIOD_END), reasons);
    let charge_category =
        keep(required_text(fields, columns.charge_category, column::CHARGE_CATEGORY), reasons);
    let provider = keep(required_text(fields, columns.provider_name, column::PROVIDER_NAME), reasons);
    let service_name = keep(required_text(fields, columns.service_name, column::SERVICE_NAME), reasons);
    let billing_account_id =
        keep(required_text(fields, columns.billing_account_id, column::BILLING_ACCOUNT_ID), reasons);
    let tags = keep(parse_tags(value_at(fields, columns.tags)), reasons);

    // Both periods are [start, end); an end before the start cannot be allocated to any time.
    if let (Some(start), Some(end)) = (billing_period_start, billing_period_end)
        && end < start
    {
        reasons.push("BillingPeriodEnd before BillingPeriodStart".to_owned());
    }
    if let (Some(start), Some(end)) = (charge_period_start, charge_period_end)
        && end < start
    {
        reasons.push("ChargePeriodEnd before ChargePeriodStart".to_owned());
    }
    if !reasons.is_empty() {
        return Err(reasons.join("; "));
    }

    let (
        Some(billed_cost),
        Some(effective_cost),
        Some(list_cost),
        Some(currency),
        Some(billing_period_start),
        Some(billing_period_end),
        Some(charge_period_start),
        Some(charge_period_end),
        Some(charge_category),
        Some(provider),
        Some(service_name),
        Some(billing_account_id),
        Some(tags),
    ) = (
        billed_cost,
        effective_cost,
        list_cost,
        currency,
        billing_period_start,
        billing_period_end,
        charge_period_start,
        charge_period_end,
        charge_category,
        provider,
        service_name,
        billing_account_id,
        tags,
    )
    else {
        // Unreachable: every `None` above recorded a reason.
        return Err("row could not be read".to_owned());
    };

    Ok(BillingRow {
        line,
        billed_cost,
        effective_cost,
        list_cost,
        currency,
        billing_period_start,
        billing_period_end,
        charge_period_start,
        charge_period_end,
        charge_category,
        provider,
        service_name,
        billing_account_id,
        sub_account_id: optional_text(fields, columns.sub_account_id),
        resource_id: optional_text(fields, columns.resource_id),
        resource_name: optional_text(fields, columns.resource_name),
        region: optional_text(fields, columns.region_id)
            .or_else(|| optional_text(fields, columns.region_name)),
        tags,
    })
}

fn keep<T>(result: Result<T, String>, reasons: &mut Vec<String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(reason) => {
            reasons.push(reason);
            None
        }
    }
}

/// The trimmed value, or `None` when the file lacks the column or the cell is empty or a
/// `NULL` literal (FOCUS CSV exports write nulls both ways).
fn value_at<'a>(fields: &[&'a str], index: Option<usize>) -> Option<&'a str> {
    let text = fields.get(index?).copied()?.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("null") { None } else { Some(text) }
}

fn optional_text(fields: &[&str], index: Option<usize>) -> Option<String> {
    value_at(fields, index).map(str::to_owned)
}

fn required_text(fields: &[&str], index: Option<usize>, column: &str) -> Result<String, String> {
    optional_text(fields, index).ok_or_else(|| format!("{column}: missing"))
}

fn required_decimal(fields: &[&str], index: Option<usize>, column: &str) -> Result<Decimal, String> {
    optional_decimal(fields, index, column)?.ok_or_else(|| format!("{column}: missing"))
}

fn optional_decimal(fields: &[&str], index: Option<usize>, column: &str) -> Result<Option<Decimal>, String> {
    value_at(fields, index)
        .map(|text| {
            parse_decimal(text).ok_or_else(|| format!("{column}: '{}' is not a decimal", shown(text)))
        })
        .transpose()
}

fn required_timestamp(fields: &[&str], index: Option<usize>, column: &str) -> Result<DateTime<Utc>, String> {
    let text = value_at(fields, index).ok_or_else(|| format!("{column}: missing"))?;
    parse_timestamp(text).ok_or_else(|| format!("{column}: '{}' is not a date-time", shown(text)))
}

/// Plain decimal first; scientific notation (`1.2E-5`) as a fallback, since some exporters
/// write tiny unit costs that way.
fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str_exact(text)
        .ok()
        .or_else(|| if text.contains(['e', 'E']) { Decimal::from_scientific(text).ok() } else { None })
}

/// Accepts RFC 3339 with any offset, and offset-less forms, which FOCUS defines as UTC.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Some(with_offset.with_timezone(&Utc));
    }
    let without_zone = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    const NAIVE_FORMATS: [&str; 4] =
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"];
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(without_zone, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

fn parse_tags(text: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let Some(text) = text else {
        return Ok(BTreeMap::new());
    };
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("Tags: not valid JSON ({error})"))?;
    let serde_json::Value::Object(entries) = parsed else {
        return Err("Tags: not a JSON object".to_owned());
    };
    Ok(entries
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (key, value)
        })
        .collect())
}

/// A cell value for a rejection reason, cut short so one huge cell cannot flood the report.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX_CHARS).collect::<String>())
    }
}

/// Remembers where each non-blank line of the input starts, so rows are reported by their
/// real line even after quoted newlines, blank lines (which the csv crate skips) and CRLF
/// endings. Only lines not yet passed by the reader are kept, so memory stays small.
struct LineTrackingReader<R> {
    inner: R,
    bytes_read: u64,
    current_line: u64,
    current_line_start: u64,
    current_line_seen: bool,
    /// (byte offset where the line starts, 1-based line number), oldest first.
    content_lines: VecDeque<(u64, u64)>,
}

impl<R> LineTrackingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            bytes_read: 0,
            current_line: 1,
            current_line_start: 0,
            current_line_seen: false,
            content_lines: VecDeque::new(),
        }
    }

    /// The first non-blank line starting at or after `byte_offset`. A record's start offset
    /// can sit on the previous line's terminator, so the next content line is the record's.
    fn line_at_or_after(&mut self, byte_offset: u64) -> Option<u64> {
        while let Some(&(start, line)) = self.content_lines.front() {
            if start >= byte_offset {
                return Some(line);
            }
            // Records come in file order: lines before this one are never asked for again.
            self.content_lines.pop_front();
        }
        None
    }
}

impl<R: Read> Read for LineTrackingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        for &byte in buffer.iter().take(count) {
            match byte {
                b'\n' => {
                    self.current_line += 1;
                    self.current_line_start = self.bytes_read + 1;
                    self.current_line_seen = false;
                }
                b'\r' => {}
                _ if !self.current_line_seen => {
                    self.current_line_seen = true;
                    self.content_lines.push_back((self.current_line_start, self.current_line));
                }
                _ => {}
            }
            self.bytes_read += 1;
        }
        Ok(count)
    }
}

/// How a row was tied to a configuration item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchedBy {
    ResourceId,
    /// The configured tag key that matched.
    Tag(String),
}

/// Maps billing rows to configuration items: by provider resource id first (the most specific
/// link), then by the configured tag keys in order.
#[derive(Debug, Clone, Default)]
pub struct CiMatcher {
    /// Lower-cased, trimmed provider resource id → CI.
    by_resource_id: HashMap<String, String>,
    /// Tag keys whose value names a CI, e.g. "ci", "itsm-ci"; earlier keys win.
    tag_keys: Vec<String>,
    /// Lower-cased, trimmed tag value → CI.
    by_tag_value: HashMap<String, String>,
}

impl CiMatcher {
    /// `resource_ids`: (provider resource id, CI); `tag_keys`: keys to look at, in priority
    /// order; `tag_values`: (tag value, CI). Ids and values match case-insensitively: Azure
    /// resource ids come back in varying case, and tag values are typed by hand.
    pub fn new<I, K, V>(resource_ids: I, tag_keys: K, tag_values: V) -> Self
    where
        I: IntoIterator<Item = (String, String)>,
        K: IntoIterator<Item = String>,
        V: IntoIterator<Item = (String, String)>,
    {
        Self {
            by_resource_id: resource_ids.into_iter().map(|(id, ci)| (normalize(&id), ci)).collect(),
            tag_keys: tag_keys
                .into_iter()
                .map(|key| key.trim().to_owned())
                .filter(|key| !key.is_empty())
                .collect(),
            by_tag_value: tag_values.into_iter().map(|(value, ci)| (normalize(&value), ci)).collect(),
        }
    }

    /// The CI for a row, if any. A tag whose value is not configured does not match; the next
    /// key is tried, so a typo in a tag cannot invent a CI.
    pub fn match_row(&self, row: &BillingRow) -> Option<(String, MatchedBy)> {
        if let Some(resource_id) = &row.resource_id
            && let Some(ci) = self.by_resource_id.get(&normalize(resource_id))
        {
            return Some((ci.clone(), MatchedBy::ResourceId));
        }
        for key in &self.tag_keys {
            let Some(value) = tag_value(&row.tags, key) else {
                continue;
            };
            if let Some(ci) = self.by_tag_value.get(&normalize(value)) {
                return Some((ci.clone(), MatchedBy::Tag(key.clone())));
            }
        }
        None
    }
}

fn normalize(text: &str) -> String {
    text.trim().to_lowercase()
}

/// The exact key first, then a case- and whitespace-insensitive one: Azure tag keys are
/// case-insensitive and real exports carry keys like " org" (Microsoft FOCUS sample).
fn tag_value<'a>(tags: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    tags.get(key)
        .or_else(|| {
            tags.iter()
                .find(|(candidate, _)| candidate.trim().eq_ignore_ascii_case(key))
                .map(|(_, value)| value)
        })
        .map(String::as_str)
}

/// One business service's share of costs for a billing period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationExportLine {
    pub business_service: String,
    pub business_service_name: String,
    /// Where the amount came from (e.g. the import or allocation rule); exported as
    /// `x_AllocationSource`.
    pub source: String,
    pub amount: Decimal,
    pub currency: String,
    pub billing_period_start: DateTime<Utc>,
    pub billing_period_end: DateTime<Utc>,
}

/// Writes allocations as CSV with the [`ALLOCATION_EXPORT_COLUMNS`] header. The business
/// service goes in ResourceId/ResourceName, the charge period equals the billing period, and
/// date-times are RFC 3339 in UTC with `Z`. Amounts keep their decimal scale.
pub fn write_allocations(lines: &[AllocationExportLine], out: impl Write) -> Result<(), FocusError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(ALLOCATION_EXPORT_COLUMNS)?;
    for line in lines {
        let amount = line.amount.to_string();
        let period_start = rfc3339_utc(line.billing_period_start);
        let period_end = rfc3339_utc(line.billing_period_end);
        let description = format!("Cost allocated to business service {}", line.business_service_name);
        writer.write_record([
            line.business_service.as_str(),
            line.business_service_name.as_str(),
            amount.as_str(),
            line.currency.as_str(),
            period_start.as_str(),
            period_end.as_str(),
            period_start.as_str(),
            period_end.as_str(),
            ALLOCATION_CHARGE_CATEGORY,
            description.as_str(),
            line.source.as_str(),
        ])?;
    }
    // Explicit flush: dropping the writer would swallow a write error.
    writer.flush().map_err(|error| FocusError::Io(error.to_string()))
}

fn rfc3339_utc(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    const AWS_FIXTURE: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/focus/focus_sample_head300.csv");
    const MULTI_PROVIDER_FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/focus/focus_sample_microsoft_oracle_rows.csv"
    );
    const AZURE_STORAGE_ID: &str = "/subscriptions/64e355d7-997c-491d-b0c1-8414dccfcf42/\
        resourcegroups/ftk-integration-tests/providers/microsoft.storage/storageaccounts/\
        2b7e6ef8d799420f9aafb807";

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn parse_fixture(path: &str) -> FocusFile {
        parse(File::open(path).unwrap(), None).unwrap()
    }

    fn assert_all_accounted_for(file: &FocusFile) {
        let accounted = u64::try_from(file.rows.len() + file.rejected.len()).unwrap();
        assert_eq!(accounted, file.data_lines);
    }

    /// Record count and BilledCost total read straight from the CSV, not through `parse`.
    fn raw_billed_cost_total(path: &str) -> (u64, Decimal) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let index = reader.headers().unwrap().iter().position(|name| name == "BilledCost").unwrap();
        let mut count = 0;
        let mut total = Decimal::ZERO;
        for record in reader.records() {
            total += Decimal::from_str_exact(&record.unwrap()[index]).unwrap();
            count += 1;
        }
        (count, total)
    }

    fn provider_counts(file: &FocusFile) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for row in &file.rows {
            *counts.entry(row.provider.as_str()).or_insert(0) += 1;
        }
        counts
    }

    fn owned_map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    fn row_by_line(file: &FocusFile, line: u64) -> &BillingRow {
        file.rows.iter().find(|row| row.line == line).unwrap()
    }

    /// Header of the hand-written files: every mandatory column plus two optional ones.
    fn test_header() -> Vec<&'static str> {
        let mut header = MANDATORY_COLUMNS.to_vec();
        header.extend(["ResourceId", "Tags"]);
        header
    }

    fn default_value(column: &str) -> &'static str {
        match column {
            "BilledCost" | "ContractedCost" => "10.00",
            "EffectiveCost" => "9.50",
            "ListCost" => "12.00",
            "BillingAccountId" => "acct-1",
            "BillingAccountName" => "Main",
            "BillingCurrency" => "USD",
            "BillingPeriodStart" | "ChargePeriodStart" => "2024-09-01 00:00:00",
            "BillingPeriodEnd" => "2024-10-01 00:00:00",
            "ChargePeriodEnd" => "2024-09-02 00:00:00",
            "ChargeCategory" => "Usage",
            "ChargeDescription" => "VM hours",
            "InvoiceIssuerName" | "ProviderName" | "PublisherName" => "ExampleCloud",
            "PricingQuantity" => "24",
            "PricingUnit" => "Hours",
            "ServiceCategory" => "Compute",
            "ServiceName" => "Virtual Machines",
            "ResourceId" => "vm-1",
            _ => "NULL",
        }
    }

    /// A data line with every field quoted; `overrides` replace the defaults by column.
    fn csv_line(overrides: &[(&str, &str)]) -> String {
        test_header()
            .iter()
            .map(|column| {
                let value = overrides
                    .iter()
                    .find(|(name, _)| name == column)
                    .map_or(default_value(column), |(_, value)| *value);
                format!("\"{}\"", value.replace('"', "\"\""))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn blank_row(resource_id: Option<&str>, tags: &[(&str, &str)]) -> BillingRow {
        BillingRow {
            line: 2,
            billed_cost: Decimal::ONE,
            effective_cost: None,
            list_cost: None,
            currency: "USD".to_owned(),
            billing_period_start: utc("2024-09-01T00:00:00Z"),
            billing_period_end: utc("2024-10-01T00:00:00Z"),
            charge_period_start: utc("2024-09-01T00:00:00Z"),
            charge_period_end: utc("2024-09-02T00:00:00Z"),
            charge_category: "Usage".to_owned(),
            provider: "ExampleCloud".to_owned(),
            service_name: "Virtual Machines".to_owned(),
            billing_account_id: "acct-1".to_owned(),
            sub_account_id: None,
            resource_id: resource_id.map(str::to_owned),
            resource_name: None,
            region: None,
            tags: owned_map(tags),
        }
    }

    #[test]
    fn aws_fixture_parses_every_row() {
        let file = parse_fixture(AWS_FIXTURE);
        assert_eq!(file.version, FocusVersion::V1_0);
        assert_eq!(file.data_lines, 300);
        assert_eq!(file.rows.len(), 300);
        assert!(file.rejected.is_empty(), "{:?}", file.rejected);
        assert_all_accounted_for(&file);

        let total: Decimal = file.rows.iter().map(|row| row.billed_cost).sum();
        let (raw_count, raw_total) = raw_billed_cost_total(AWS_FIXTURE);
        assert_eq!(raw_count, 300);
        assert_eq!(total, raw_total);
        assert_eq!(total, dec("5.16919349920"));

        assert_eq!(provider_counts(&file), BTreeMap::from([("AWS", 300)]));
        assert_eq!(file.rows.first().unwrap().line, 2);
        assert_eq!(file.rows.last().unwrap().line, 301);
        assert_eq!(file.rows.iter().filter(|row| !row.tags.is_empty()).count(), 214);
        assert_eq!(file.rows.iter().filter(|row| row.resource_id.is_none()).count(), 21);
    }

    #[test]
    fn aws_fixture_row_values_are_typed() {
        let file = parse_fixture(AWS_FIXTURE);
        let first = row_by_line(&file, 2);
        assert_eq!(first.billed_cost, dec("0.0000008"));
        assert_eq!(first.effective_cost, Some(Decimal::ZERO));
        assert_eq!(first.list_cost, Some(dec("0.0000008")));
        assert_eq!(first.currency, "USD");
        assert_eq!(first.billing_period_start, utc("2024-09-01T00:00:00Z"));
        assert_eq!(first.billing_period_end, utc("2024-10-01T00:00:00Z"));
        assert_eq!(first.charge_period_start, utc("2024-09-18T22:00:00Z"));
        assert_eq!(first.charge_period_end, utc("2024-09-18T23:00:00Z"));
        assert_eq!(first.charge_category, "Usage");
        assert_eq!(first.service_name, "Amazon Simple Queue Service");
        assert_eq!(first.billing_account_id, "1234567890123");
        assert_eq!(first.sub_account_id.as_deref(), Some("51738928782"));
        assert_eq!(first.region.as_deref(), Some("us-west-2"));
        // ResourceName and Tags are unquoted NULL literals in this row.
        assert_eq!(first.resource_name, None);
        assert!(first.tags.is_empty());

        let tagged = row_by_line(&file, 3);
        assert_eq!(
            tagged.tags,
            owned_map(&[
                ("application", "BrightLensMatrix"),
                ("business_unit", "ViennaAI"),
                ("environment", "dev"),
            ])
        );
    }

    #[test]
    fn microsoft_and_oracle_fixture_parses_every_row() {
        let file = parse_fixture(MULTI_PROVIDER_FIXTURE);
        assert_eq!(file.version, FocusVersion::V1_0);
        assert_eq!(file.data_lines, 58);
        assert_eq!(file.rows.len(), 58);
        assert!(file.rejected.is_empty(), "{:?}", file.rejected);
        assert_all_accounted_for(&file);

        let total: Decimal = file.rows.iter().map(|row| row.billed_cost).sum();
        let (raw_count, raw_total) = raw_billed_cost_total(MULTI_PROVIDER_FIXTURE);
        assert_eq!(raw_count, 58);
        assert_eq!(total, raw_total);
        assert_eq!(total, dec("2.51358811059"));

        assert_eq!(provider_counts(&file), BTreeMap::from([("Microsoft", 51), ("Oracle", 7)]));
        let adjustments: Vec<u64> =
            file.rows.iter().filter(|row| row.charge_category == "Adjustment").map(|row| row.line).collect();
        assert_eq!(adjustments, vec![7, 8]);
    }

    #[test]
    fn multi_provider_rows_keep_real_tags_and_fall_back_to_region_name() {
        let file = parse_fixture(MULTI_PROVIDER_FIXTURE);

        let oracle = row_by_line(&file, 2);
        assert_eq!(oracle.provider, "Oracle");
        assert_eq!(oracle.region.as_deref(), Some("us-sanjose-1"), "RegionId is NULL here");
        assert_eq!(oracle.resource_name, None, "empty string means absent");
        assert_eq!(oracle.tags.get("application").map(String::as_str), Some("SafeRadarCore"));

        let azure = row_by_line(&file, 6);
        assert_eq!(azure.provider, "Microsoft");
        assert_eq!(azure.billed_cost, dec("0.000015"));
        assert_eq!(azure.resource_id.as_deref(), Some(AZURE_STORAGE_ID));
        assert_eq!(azure.resource_name.as_deref(), Some("2b7e6ef8d799420f9aafb807"));
        assert_eq!(azure.region.as_deref(), Some("eastus"));
        assert_eq!(azure.charge_period_start, utc("2024-09-04T00:00:00Z"));
        assert_eq!(
            azure.tags,
            owned_map(&[
                (" org", "trey"),
                ("CostAllocationTest", "Sameer"),
                ("CostCenter", "1234"),
                ("Project", "Foo"),
                ("env", "prod"),
                ("org", "trey"),
            ])
        );
    }

    #[test]
    fn caller_chosen_version_is_kept() {
        let file = parse(File::open(AWS_FIXTURE).unwrap(), Some(FocusVersion::V1_2)).unwrap();
        assert_eq!(file.version, FocusVersion::V1_2);
        assert_eq!(file.rows.len(), 300);
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_reason_and_good_rows_kept() {
        let lines = [
            test_header().join(","),
            csv_line(&[]),
            csv_line(&[("BilledCost", "abc")]),
            csv_line(&[("ChargePeriodEnd", "2024-08-31 00:00:00")]),
            format!("{},\"extra\"", csv_line(&[])),
            csv_line(&[("BillingCurrency", "")]),
            csv_line(&[
                ("BilledCost", "1.2E-5"),
                ("BillingCurrency", "eur"),
                ("ChargePeriodStart", "2024-09-03T00:00:00Z"),
                ("ChargePeriodEnd", "2024-09-03T02:00:00+01:00"),
                ("Tags", r#"{"ci": "payments", "n": 5}"#),
            ]),
            // A quoted newline: this record spans lines 8 and 9.
            csv_line(&[("ChargeDescription", "two\nlines")]),
            csv_line(&[("BillingCurrency", "NULL"), ("EffectiveCost", "x")]),
            String::new(),
            csv_line(&[("Tags", "[1, 2]")]),
        ];
        let text = lines.join("\n") + "\n";
        let file = parse(text.as_bytes(), None).unwrap();

        assert_eq!(file.data_lines, 9);
        assert_all_accounted_for(&file);
        let kept: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        assert_eq!(kept, vec![2, 7, 8]);
        let rejected: Vec<u64> = file.rejected.iter().map(|row| row.line).collect();
        assert_eq!(rejected, vec![3, 4, 5, 6, 10, 12]);

        let reasons: Vec<&str> = file.rejected.iter().map(|row| row.reason.as_str()).collect();
        assert_eq!(reasons[0], "BilledCost: 'abc' is not a decimal");
        assert_eq!(reasons[1], "ChargePeriodEnd before ChargePeriodStart");
        assert_eq!(reasons[2], "expected 23 fields like the header, found 24");
        assert_eq!(reasons[3], "BillingCurrency: missing");
        assert!(reasons[4].contains("EffectiveCost: 'x' is not a decimal"), "{}", reasons[4]);
        assert!(reasons[4].contains("BillingCurrency: missing"), "{}", reasons[4]);
        assert_eq!(reasons[5], "Tags: not a JSON object");

        let default_row = row_by_line(&file, 2);
        assert_eq!(default_row.billed_cost, dec("10.00"));
        assert_eq!(default_row.effective_cost, Some(dec("9.50")));
        assert_eq!(default_row.resource_id.as_deref(), Some("vm-1"));
        assert_eq!(default_row.region, None, "the file has no region columns");

        let scientific = row_by_line(&file, 7);
        assert_eq!(scientific.billed_cost, dec("0.000012"));
        assert_eq!(scientific.currency, "EUR");
        assert_eq!(scientific.charge_period_start, utc("2024-09-03T00:00:00Z"));
        assert_eq!(scientific.charge_period_end, utc("2024-09-03T01:00:00Z"));
        assert_eq!(scientific.tags, owned_map(&[("ci", "payments"), ("n", "5")]));
    }

    #[test]
    fn crlf_line_endings_and_bom_keep_line_numbers() {
        let lines = [
            test_header().join(","),
            csv_line(&[]),
            csv_line(&[("BilledCost", "oops")]),
            csv_line(&[]),
            csv_line(&[("ChargePeriodStart", "not a date")]),
        ];
        let text = format!("\u{feff}{}\r\n", lines.join("\r\n"));
        let file = parse(text.as_bytes(), None).unwrap();

        let kept: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        assert_eq!(kept, vec![2, 4]);
        let rejected: Vec<(u64, &str)> =
            file.rejected.iter().map(|row| (row.line, row.reason.as_str())).collect();
        assert_eq!(
            rejected,
            vec![
                (3, "BilledCost: 'oops' is not a decimal"),
                (5, "ChargePeriodStart: 'not a date' is not a date-time"),
            ]
        );
        assert_all_accounted_for(&file);
    }

    #[test]
    fn missing_mandatory_columns_are_listed() {
        let header: Vec<&str> = test_header()
            .into_iter()
            .filter(|name| *name != "BilledCost" && *name != "ChargeClass")
            .collect();
        let text = header.join(",") + "\n";
        let expected_missing = vec!["BilledCost".to_owned(), "ChargeClass".to_owned()];

        let detected = parse(text.as_bytes(), None).unwrap_err();
        assert_eq!(
            detected,
            FocusError::MissingColumns { version: FocusVersion::V1_0, missing: expected_missing.clone() }
        );
        assert_eq!(detected.to_string(), "FOCUS 1.0 mandatory columns missing: BilledCost, ChargeClass");

        let chosen = parse(text.as_bytes(), Some(FocusVersion::V1_2)).unwrap_err();
        assert_eq!(
            chosen,
            FocusError::MissingColumns { version: FocusVersion::V1_2, missing: expected_missing }
        );
    }

    #[test]
    fn version_detection_needs_a_column_the_version_introduced() {
        let detected = |extra: &[&'static str]| {
            let mut header = test_header();
            header.extend_from_slice(extra);
            parse((header.join(",") + "\n").as_bytes(), None).unwrap().version
        };
        assert_eq!(detected(&[]), FocusVersion::V1_0);
        assert_eq!(detected(&["SkuMeter"]), FocusVersion::V1_1);
        assert_eq!(detected(&["SkuMeter", "InvoiceId"]), FocusVersion::V1_2);
        assert_eq!(detected(&["PricingCurrency"]), FocusVersion::V1_2);
        // Microsoft 1.0 exports already carry BillingAccountType.
        assert_eq!(detected(&["BillingAccountType"]), FocusVersion::V1_0);
    }

    #[test]
    fn empty_input_header_only_and_duplicate_columns() {
        assert!(matches!(parse("".as_bytes(), None), Err(FocusError::Csv(_))));

        let header_only = parse((test_header().join(",") + "\n").as_bytes(), None).unwrap();
        assert_eq!(header_only.data_lines, 0);
        assert!(header_only.rows.is_empty() && header_only.rejected.is_empty());

        let mut header = test_header();
        header.push("BilledCost");
        // Blank names from trailing commas are not read, so their repetition is harmless.
        header.extend(["", ""]);
        let duplicated = parse((header.join(",") + "\n").as_bytes(), None).unwrap_err();
        assert_eq!(duplicated, FocusError::DuplicateColumns(vec!["BilledCost".to_owned()]));
    }

    #[test]
    fn decimals_accept_plain_and_scientific_notation_only() {
        assert_eq!(parse_decimal("0.00000080000"), Some(dec("0.0000008")));
        assert_eq!(parse_decimal("-3.50"), Some(dec("-3.5")));
        assert_eq!(parse_decimal("1.2E-5"), Some(dec("0.000012")));
        assert_eq!(parse_decimal("2e3"), Some(dec("2000")));
        assert_eq!(parse_decimal("abc"), None);
        assert_eq!(parse_decimal("1e"), None);
        assert_eq!(parse_decimal("1,000.00"), None);
        assert_eq!(parse_decimal("NaN"), None);
    }

    #[test]
    fn timestamps_accept_fixture_and_rfc3339_forms() {
        let midnight = utc("2024-09-01T00:00:00Z");
        for text in [
            "2024-09-01 00:00:00",
            "2024-09-01T00:00:00Z",
            "2024-09-01T00:00:00",
            "2024-09-01T02:00:00+02:00",
            "2024-09-01 00:00:00.000",
            "2024-09-01 00:00",
            "2024-09-01",
        ] {
            assert_eq!(parse_timestamp(text), Some(midnight), "{text}");
        }
        assert_eq!(parse_timestamp("2024-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn non_string_tag_values_keep_their_json_text() {
        let tags = parse_tags(Some(r#"{"n": 5, "flag": true, "nested": {"a": 1}, "none": null}"#));
        assert_eq!(
            tags.unwrap(),
            owned_map(&[("flag", "true"), ("n", "5"), ("nested", r#"{"a":1}"#), ("none", "null")])
        );
        assert!(parse_tags(Some("{not json")).unwrap_err().starts_with("Tags: not valid JSON"));
        assert_eq!(parse_tags(None).unwrap(), BTreeMap::new());
    }

    #[test]
    fn matcher_finds_azure_resource_ids_regardless_of_case() {
        let file = parse_fixture(MULTI_PROVIDER_FIXTURE);
        let configured_id = "/SUBSCRIPTIONS/64E355D7-997C-491D-B0C1-8414DCCFCF42/resourceGroups/\
            FTK-Integration-Tests/providers/Microsoft.Storage/storageAccounts/\
            2b7e6ef8d799420f9aafb807";
        let matcher = CiMatcher::new(
            [(configured_id.to_owned(), "ci-storage".to_owned())],
            Vec::<String>::new(),
            Vec::<(String, String)>::new(),
        );
        let matched: Vec<(u64, (String, MatchedBy))> = file
            .rows
            .iter()
            .filter_map(|row| matcher.match_row(row).map(|found| (row.line, found)))
            .collect();
        assert_eq!(matched, vec![(6, ("ci-storage".to_owned(), MatchedBy::ResourceId))]);
    }

    #[test]
    fn matcher_uses_configured_tag_keys_on_real_rows() {
        let file = parse_fixture(AWS_FIXTURE);
        let matcher = CiMatcher::new(
            Vec::<(String, String)>::new(),
            ["ci".to_owned(), "application".to_owned()],
            [("brightpathmatrix".to_owned(), "svc-brightpath".to_owned())],
        );
        let matches: Vec<(String, MatchedBy)> =
            file.rows.iter().filter_map(|row| matcher.match_row(row)).collect();
        assert_eq!(matches.len(), 54);
        let expected = ("svc-brightpath".to_owned(), MatchedBy::Tag("application".to_owned()));
        assert!(matches.iter().all(|found| *found == expected));
    }

    #[test]
    fn matcher_prefers_resource_id_then_tag_keys_in_order() {
        let matcher = CiMatcher::new(
            [("VM-1".to_owned(), "ci-vm".to_owned())],
            ["ci".to_owned(), "itsm-ci".to_owned()],
            [("a".to_owned(), "ci-a".to_owned()), ("b".to_owned(), "ci-b".to_owned())],
        );
        let both = blank_row(Some("vm-1"), &[("ci", "a")]);
        assert_eq!(matcher.match_row(&both), Some(("ci-vm".to_owned(), MatchedBy::ResourceId)));

        let two_keys = blank_row(Some("vm-2"), &[("itsm-ci", "a"), ("CI", " B ")]);
        assert_eq!(matcher.match_row(&two_keys), Some(("ci-b".to_owned(), MatchedBy::Tag("ci".to_owned()))));

        let unknown_value = blank_row(None, &[("ci", "nope"), ("itsm-ci", "a")]);
        assert_eq!(
            matcher.match_row(&unknown_value),
            Some(("ci-a".to_owned(), MatchedBy::Tag("itsm-ci".to_owned())))
        );

        assert_eq!(matcher.match_row(&blank_row(None, &[("owner", "a")])), None);
    }

    #[test]
    fn allocations_round_trip_through_csv() {
        let lines = vec![
            AllocationExportLine {
                business_service: "bs-payments".to_owned(),
                business_service_name: "Payments".to_owned(),
                source: "focus:aws:2024-09".to_owned(),
                amount: dec("5.16919349920"),
                currency: "USD".to_owned(),
                billing_period_start: utc("2024-09-01T00:00:00Z"),
                billing_period_end: utc("2024-10-01T00:00:00Z"),
            },
            AllocationExportLine {
                business_service: "bs-data".to_owned(),
                business_service_name: "Data, \"Analytics\"".to_owned(),
                source: "rule:even-split".to_owned(),
                amount: dec("-1.25"),
                currency: "EUR".to_owned(),
                billing_period_start: utc("2024-10-01T02:00:00+02:00"),
                billing_period_end: utc("2024-11-01T00:00:00Z"),
            },
        ];
        let mut out = Vec::new();
        write_allocations(&lines, &mut out).unwrap();

        let mut reader = csv::Reader::from_reader(out.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, ALLOCATION_EXPORT_COLUMNS);
        let custom: Vec<&String> = header.iter().filter(|name| name.starts_with("x_")).collect();
        assert_eq!(custom, vec!["x_AllocationSource"]);

        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        let field = |record: &csv::StringRecord, name: &str| {
            let index = header.iter().position(|column| column == name).unwrap();
            record[index].to_owned()
        };
        let first = &records[0];
        assert_eq!(field(first, "ResourceId"), "bs-payments");
        assert_eq!(field(first, "ResourceName"), "Payments");
        assert_eq!(dec(&field(first, "BilledCost")), dec("5.16919349920"));
        assert_eq!(field(first, "BillingCurrency"), "USD");
        assert_eq!(field(first, "BillingPeriodStart"), "2024-09-01T00:00:00Z");
        assert_eq!(field(first, "BillingPeriodEnd"), "2024-10-01T00:00:00Z");
        assert_eq!(field(first, "ChargePeriodStart"), "2024-09-01T00:00:00Z");
        assert_eq!(field(first, "ChargeCategory"), "Usage");
        assert_eq!(field(first, "x_AllocationSource"), "focus:aws:2024-09");

        let second = &records[1];
        assert_eq!(field(second, "ResourceName"), "Data, \"Analytics\"");
        assert_eq!(dec(&field(second, "BilledCost")), dec("-1.25"));
        assert_eq!(field(second, "BillingPeriodStart"), "2024-10-01T00:00:00Z");

        let total: Decimal = records.iter().map(|record| dec(&field(record, "BilledCost"))).sum();
        assert_eq!(total, dec("3.91919349920"));
    }
}
