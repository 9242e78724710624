//! A parsed AIP-160 filter → a SQL condition, given how each field compares. Values are always
//! bound parameters, never spliced into SQL.

use sea_orm::sea_query::{Alias, Expr, Query, SimpleExpr};
use sea_orm::{Condition, ExprTrait, Value};

use crate::error::Error;
use crate::filter::{Expr as Filter, Op};

/// How one filterable field compares.
pub enum Field {
    /// Exact text; `=` and `!=`.
    Text(SimpleExpr),
    /// An enum stored as its number, named in filters (`IN_PROGRESS` or `INCIDENT_STATE_IN_PROGRESS`).
    Enum { column: SimpleExpr, values: &'static [(i32, &'static str)], prefix: &'static str },
    /// `true` / `false`.
    Bool(SimpleExpr),
    /// RFC 3339 time against micros; all comparisons.
    Time(SimpleExpr),
    /// `field = "value"`: a JSON array column holds `value`.
    Contains(SimpleExpr),
    /// `field = "value"`: the record has `value` in a link table (`incident_cis` …).
    Member { id: SimpleExpr, table: &'static str, owner: &'static str, column: &'static str },
}

/// Turns a parsed filter into a condition; `field` maps a member name to its spec (None =
/// unknown), `known` lists them for the error message.
pub fn condition(
    expr: &Filter,
    tenant: &str,
    field: &dyn Fn(&str) -> Option<Field>,
    known: &[&str],
) -> Result<Condition, Error> {
    Ok(match expr {
        Filter::And(parts) => parts
            .iter()
            .try_fold(Condition::all(), |c, p| Ok::<_, Error>(c.add(condition(p, tenant, field, known)?)))?,
        Filter::Or(parts) => parts
            .iter()
            .try_fold(Condition::any(), |c, p| Ok::<_, Error>(c.add(condition(p, tenant, field, known)?)))?,
        Filter::Not(inner) => condition(inner, tenant, field, known)?.not(),
        Filter::Compare { member, op, value } => {
            let spec = field(member).ok_or_else(|| {
                Error::invalid(
                    "filter",
                    format!("unknown field `{member}`; filterable: {}", known.join(", ")),
                )
            })?;
            Condition::all().add(comparison(member, spec, *op, value, tenant)?)
        }
    })
}

fn only_equality(member: &str, op: Op) -> Result<(), Error> {
    match op {
        Op::Eq | Op::Ne => Ok(()),
        _ => Err(Error::invalid("filter", format!("`{member}` supports only = and !="))),
    }
}

fn compare(column: SimpleExpr, op: Op, value: Value) -> SimpleExpr {
    match op {
        Op::Eq => column.eq(value),
        Op::Ne => column.ne(value),
        Op::Lt => column.lt(value),
        Op::Le => column.lte(value),
        Op::Gt => column.gt(value),
        Op::Ge => column.gte(value),
    }
}

/// The number of an enum value by name, with or without its prefix; also `P1`-style priorities.
pub fn enum_number(values: &[(i32, &str)], prefix: &str, name: &str) -> Option<i32> {
    let name = name.strip_prefix(prefix).unwrap_or(name);
    values.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

fn comparison(member: &str, spec: Field, op: Op, value: &str, tenant: &str) -> Result<SimpleExpr, Error> {
    match spec {
        Field::Text(column) => {
            only_equality(member, op)?;
            Ok(compare(column, op, Value::from(value.to_string())))
        }
        Field::Enum { column, values, prefix } => {
            let number = enum_number(values, prefix, value).ok_or_else(|| {
                let names: Vec<&str> = values.iter().map(|(_, n)| *n).collect();
                Error::invalid(
                    "filter",
                    format!("`{value}` is not a value of {member} ({})", names.join(", ")),
                )
            })?;
            Ok(compare(column, op, Value::from(number)))
        }
        Field::Bool(column) => {
            only_equality(member, op)?;
            let flag = match value {
                "true" => true,
                "false" => false,
                _ => return Err(Error::invalid("filter", format!("`{member}` takes true or false"))),
            };
            Ok(compare(column, op, Value::from(flag)))
        }
        Field::Time(column) => {
            let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
                Error::invalid(
                    "filter",
                    format!("`{member}` takes an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"),
                )
            })?;
            Ok(compare(column, op, Value::from(at.timestamp_micros())))
        }
        Field::Contains(column) => {
            only_equality(member, op)?;
            if value.contains(['%', '_', '"', '\\']) {
                return Err(Error::invalid("filter", format!("`{member}` takes a resource name")));
            }
            let pattern = format!("%\"{value}\"%");
            Ok(if op == Op::Eq { column.like(pattern) } else { column.not_like(pattern) })
        }
        Field::Member { id, table, owner, column } => {
            only_equality(member, op)?;
            let matching = Query::select()
                .column(Alias::new(owner))
                .from(Alias::new(table))
                .and_where(Expr::col(Alias::new("tenant_id")).eq(tenant))
                .and_where(Expr::col(Alias::new(column)).eq(value))
                .to_owned();
            Ok(if op == Op::Eq { id.in_subquery(matching) } else { id.not_in_subquery(matching) })
        }
    }
}

/// Priorities as filters name them (`P1` … `P5`).
pub const PRIORITIES: &[(i32, &str)] = &[(1, "P1"), (2, "P2"), (3, "P3"), (4, "P4"), (5, "P5")];
/// Impact and urgency levels.
pub const LEVELS: &[(i32, &str)] = &[(1, "HIGH"), (2, "MEDIUM"), (3, "LOW")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_with_or_without_prefix() {
        assert_eq!(enum_number(PRIORITIES, "PRIORITY_", "P2"), Some(2));
        assert_eq!(enum_number(PRIORITIES, "PRIORITY_", "PRIORITY_P2"), Some(2));
        assert_eq!(enum_number(LEVELS, "IMPACT_", "LOW"), Some(3));
        assert_eq!(enum_number(LEVELS, "IMPACT_", "P9"), None);
    }
}
