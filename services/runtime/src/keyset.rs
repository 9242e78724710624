//! Keyset paging over (sort column, id): the next page is "rows after the last key", an index
//! range scan whatever the page number, never an offset.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ConnectionTrait, EntityTrait, ExprTrait, Order, QueryFilter, QueryOrder, QuerySelect, Select, Value,
};

use crate::error::Error;

/// One page of a listing.
pub struct Page<T> {
    pub items: Vec<T>,
    /// Sort key of the last item when there may be more (what the next page token carries).
    pub next_key: Option<Vec<serde_json::Value>>,
}

/// The (sort value, id) a page token carries.
pub fn parse_key(key: &[serde_json::Value]) -> Result<(Value, String), Error> {
    let bad = || Error::invalid("page_token", "invalid page token");
    match key {
        [serde_json::Value::String(v), serde_json::Value::String(id)] => Ok((v.clone().into(), id.clone())),
        [serde_json::Value::Number(v), serde_json::Value::String(id)] => {
            Ok((v.as_i64().ok_or_else(bad)?.into(), id.clone()))
        }
        _ => Err(bad()),
    }
}

/// Runs `query` ordered by (`sort`, `id`) after `after`, `limit` rows; `key_of` gives a row's
/// sort value and id for the next token.
#[allow(clippy::too_many_arguments)] // the query, its order and the page
pub async fn page<E: EntityTrait>(
    db: &impl ConnectionTrait,
    mut query: Select<E>,
    sort: E::Column,
    id: E::Column,
    descending: bool,
    after: Option<Vec<serde_json::Value>>,
    limit: u64,
    key_of: impl Fn(&E::Model) -> (serde_json::Value, String),
) -> Result<Page<E::Model>, Error> {
    if let Some(key) = after {
        let (value, last_id) = parse_key(&key)?;
        // A row-value comparison, so the index on (tenant, sort, id) serves it as a range.
        let key = Expr::tuple([Expr::col((E::default(), sort)), Expr::col((E::default(), id))]);
        let last = Expr::tuple([Expr::val(value), Expr::val(last_id)]);
        query = query.filter(if descending { key.lt(last) } else { key.gt(last) });
    }
    let direction = if descending { Order::Desc } else { Order::Asc };
    let rows =
        query.order_by(sort, direction.clone()).order_by(id, direction).limit(limit + 1).all(db).await?;
    let more = rows.len() as u64 > limit;
    let items: Vec<E::Model> = rows.into_iter().take(limit as usize).collect();
    let next_key = match (more, items.last()) {
        (true, Some(last)) => {
            let (value, id) = key_of(last);
            Some(vec![value, serde_json::Value::String(id)])
        }
        _ => None,
    };
    Ok(Page { items, next_key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_text_or_integer_then_id() {
        assert!(parse_key(&[json!("a"), json!("id")]).is_ok());
        assert!(parse_key(&[json!(42), json!("id")]).is_ok());
        for bad in [vec![json!(1.5), json!("id")], vec![json!("a")], vec![json!("a"), json!(1)], vec![]] {
            assert!(parse_key(&bad).is_err(), "{bad:?}");
        }
    }
}
