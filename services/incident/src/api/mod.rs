//! gRPC handlers: validate the request, call the repository, translate. Rules live in `domain`
//! and in the transition functions the repository applies.

pub mod incidents;
pub mod problems;

use itsm_runtime::error::Violations;
use itsm_runtime::paging::PageTokens;
use itsm_runtime::{Error, filter};

use crate::domain::text::{MAX_CIS, MAX_LONG, MAX_NAME, MAX_SHORT};
use crate::repo::Repository;
use itsm_cmdb_client::{CiReference, CmdbDirectory};

/// What both services need.
#[derive(Clone)]
pub struct Shared {
    pub repo: Repository,
    pub cmdb: CmdbDirectory,
    pub changes: crate::change_desk::ChangeDesk,
    pub page_tokens: PageTokens,
}

/// The number in `name` (`incidents/INC0000001` → `INC0000001`), or a violation of `field`.
pub fn number_from(name: &str, prefix: &str, number_prefix: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    crate::convert::parse_number(name, prefix, number_prefix)
        .ok_or_else(|| Error::invalid(field, format!("must be `{prefix}{number_prefix}0000123`")))
}

pub use itsm_runtime::validate::{support_group as check_group, text as check_text};

pub fn check_short(v: &mut Violations, field: &str, value: &str, required: bool) {
    check_text(v, field, value, MAX_SHORT, required);
}

pub fn check_long(v: &mut Violations, field: &str, value: &str) {
    check_text(v, field, value, MAX_LONG, false);
}

pub fn check_name(v: &mut Violations, field: &str, value: &str) {
    check_text(v, field, value, MAX_NAME, false);
}

/// A level 1-3 (0 = not given → `default`).
pub fn level(v: &mut Violations, field: &str, value: i32, default: i32) -> i32 {
    match value {
        0 => default,
        1..=3 => value,
        _ => {
            v.add(field, "must be HIGH, MEDIUM or LOW (1-3)");
            default
        }
    }
}

/// The CI references of a record: each of `cis` and the optional business service.
pub fn ci_references<'a>(
    prefix: &str,
    cis: &'a [String],
    business_service: Option<&'a str>,
) -> Vec<CiReference<'a>> {
    let mut refs: Vec<CiReference<'a>> = cis
        .iter()
        .enumerate()
        .map(|(i, name)| CiReference {
            field: format!("{prefix}.configuration_items[{i}]"),
            name,
            class: None,
        })
        .collect();
    if let Some(service) = business_service.filter(|s| !s.is_empty()) {
        refs.push(CiReference {
            field: format!("{prefix}.business_service"),
            name: service,
            class: Some(itsm_cmdb_client::BUSINESS_SERVICE_CLASS),
        });
    }
    refs
}

pub fn check_ci_count(v: &mut Violations, field: &str, cis: &[String]) {
    if cis.len() > MAX_CIS {
        v.add(field, format!("at most {MAX_CIS} configuration items"));
    }
}

/// Parsed `filter` and `order_by` of a listing plus where to continue.
pub struct Listing<'a> {
    pub filter: Option<filter::Expr>,
    pub order: (&'a str, bool),
    pub after: Option<Vec<serde_json::Value>>,
    pub fingerprint: String,
}

#[allow(clippy::too_many_arguments)] // one per request field of a listing
pub fn listing<'a>(
    tokens: &PageTokens,
    tenant: &str,
    collection: &str,
    filter_text: &str,
    order_by: &str,
    extra: &str,
    page_token: &str,
    orders: &[&'a str],
    default_order: (&'a str, bool),
) -> Result<Listing<'a>, Error> {
    let filter = filter::parse(filter_text)?;
    let order = filter::parse_order_by(order_by, orders)?.unwrap_or(default_order);
    let fingerprint = PageTokens::fingerprint(&[tenant, collection, filter_text, order_by, extra]);
    let after = tokens.decode(page_token, &fingerprint)?;
    Ok(Listing { filter, order, after, fingerprint })
}
