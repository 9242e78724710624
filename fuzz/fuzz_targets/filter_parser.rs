#![no_main]
//! AIP-160 filters: `itsm_runtime::filter::parse`, then `sql_filter::condition` over a field table
//! that has every kind of field, then the SQL that sea-query builds from it; and
//! `filter::parse_order_by` on the first line of the input.
//!
//! Beyond "does not panic":
//! - every error is `InvalidArgument` (bad input is the caller's fault, never `Internal`);
//! - a parsed filter stays within the documented limits (64 comparisons, field-name grammar);
//! - the filter written back as text (see `render`) parses to the same tree;
//! - the SQL has no string literal in it and one placeholder per bound value: filter values are
//!   always bound parameters, never spliced into SQL;
//! - `parse_order_by` only ever returns a field of the allowed list.

use itsm_runtime::Error;
use itsm_runtime::filter::{self, Expr, MAX_COMPARISONS, MAX_FILTER_LEN, Op};
use itsm_runtime::sql_filter::{self, Field, LEVELS, PRIORITIES};
use libfuzzer_sys::fuzz_target;
use sea_orm::sea_query::{Alias, Expr as Sql, PostgresQueryBuilder, Query, SimpleExpr};

/// Members the field table knows, one or more of each kind of `Field`.
const FIELDS: &[&str] = &["name", "labels.env", "priority", "impact", "active", "create_time", "cis", "changes"];
const ORDER_BY: &[&str] = &["display_name", "create_time"];

fn column(name: &'static str) -> SimpleExpr {
    Sql::col(Alias::new(name))
}

fn field(member: &str) -> Option<Field> {
    Some(match member {
        "name" => Field::Text(column("name")),
        "labels.env" => Field::Text(column("label_env")),
        "priority" => Field::Enum { column: column("priority"), values: PRIORITIES, prefix: "PRIORITY_" },
        "impact" => Field::Enum { column: column("impact"), values: LEVELS, prefix: "IMPACT_" },
        "active" => Field::Bool(column("active")),
        "create_time" => Field::Time(column("create_time")),
        "cis" => Field::Contains(column("cis")),
        "changes" => Field::Member {
            id: column("id"),
            table: "item_changes",
            owner: "item_id",
            column: "change_name",
        },
        _ => return None,
    })
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
    }
}

/// `member op "value"`, the value quoted with `\` before `\` and `"`.
fn comparison(member: &str, op: Op, value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    format!("{member} {} {quoted}", op_text(op))
}

/// Filter text that parses back to `expr`, with no more nesting than the text it came from:
/// parentheses only where the tree needs them, negation written as `-`. `None` when the tree
/// cannot be written back (a member starting with `-` outside a negation, which the parser
/// should never produce).
fn render(expr: &Expr) -> Option<String> {
    match expr {
        Expr::And(parts) => {
            let parts: Option<Vec<String>> = parts
                .iter()
                .map(|part| match part {
                    Expr::And(_) => Some(format!("({})", render(part)?)),
                    _ => render(part),
                })
                .collect();
            Some(parts?.join(" AND "))
        }
        Expr::Or(parts) => {
            let parts: Option<Vec<String>> = parts
                .iter()
                .map(|part| match part {
                    Expr::And(_) | Expr::Or(_) => Some(format!("({})", render(part)?)),
                    _ => render(part),
                })
                .collect();
            Some(parts?.join(" OR "))
        }
        // `-` and not `NOT`: a member may itself start with `-` right after a `-` (`--a = 1`).
        Expr::Not(inner) => match inner.as_ref() {
            Expr::Compare { member, op, value } => Some(format!("-{}", comparison(member, *op, value))),
            other => Some(format!("-({})", render(other)?)),
        },
        Expr::Compare { member, op, value } => {
            if member.starts_with('-') {
                None
            } else {
                Some(comparison(member, *op, value))
            }
        }
    }
}

/// Checks every comparison and returns how many there are.
fn check_comparisons(expr: &Expr) -> usize {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => {
            assert!(parts.len() >= 2, "an AND/OR of fewer than two parts: {expr:?}");
            parts.iter().map(check_comparisons).sum()
        }
        Expr::Not(inner) => check_comparisons(inner),
        Expr::Compare { member, .. } => {
            assert!(
                member.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                }),
                "accepted a member that is not a field name: {member:?}"
            );
            1
        }
    }
}

fn check_sql(expr: &Expr) {
    let condition = match sql_filter::condition(expr, "tenant-a", &field, FIELDS) {
        Ok(condition) => condition,
        Err(Error::InvalidArgument(_)) => return,
        Err(other) => panic!("translating {expr:?} failed with a non-InvalidArgument error: {other:?}"),
    };
    let (sql, values) = Query::select()
        .column(Alias::new("id"))
        .from(Alias::new("items"))
        .cond_where(condition)
        .build(PostgresQueryBuilder);
    assert!(!sql.contains('\''), "a value was spliced into the SQL: {sql}");
    let placeholders = sql.as_bytes().windows(2).filter(|w| w[0] == b'$' && w[1].is_ascii_digit()).count();
    assert_eq!(placeholders, values.0.len(), "placeholders and bound values differ: {sql}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    let first_line = text.split('\n').next().unwrap_or_default();
    match filter::parse_order_by(first_line, ORDER_BY) {
        Ok(Some((field, _descending))) => assert!(ORDER_BY.contains(&field), "order_by {field:?}"),
        Ok(None) => assert!(first_line.trim().is_empty(), "order_by {first_line:?} read as empty"),
        Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("order_by {first_line:?}: not InvalidArgument: {other:?}"),
    }

    let expr = match filter::parse(text) {
        Ok(Some(expr)) => expr,
        Ok(None) => {
            assert!(text.trim().is_empty(), "non-blank filter read as empty: {text:?}");
            return;
        }
        Err(Error::InvalidArgument(_)) => return,
        Err(other) => panic!("filter {text:?}: not InvalidArgument: {other:?}"),
    };
    assert!(text.len() <= MAX_FILTER_LEN);
    let comparisons = check_comparisons(&expr);
    assert!(comparisons <= MAX_COMPARISONS, "{comparisons} comparisons accepted");

    if let Some(again) = render(&expr).filter(|again| again.len() <= MAX_FILTER_LEN) {
        match filter::parse(&again) {
            Ok(Some(reparsed)) => {
                assert_eq!(reparsed, expr, "{text:?} written back as {again:?} parses differently")
            }
            other => panic!("{text:?} written back as {again:?} does not parse: {other:?}"),
        }
    }

    check_sql(&expr);
});
