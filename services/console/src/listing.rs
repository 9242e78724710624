//! Lists across pages with the API's opaque page tokens: "Next" carries the token the service
//! returned, "Previous" the token of the page before, kept in a trail in the address. Never an
//! offset: the services page by key (AIP-158), so a page is stable while records are added.

use serde::Deserialize;

/// Tokens of earlier pages kept in an address at most; older ones fall off (Previous then skips
/// back further, to the first page at worst). Ten keep a deep page's address near 2 KB: with 30
/// it was ~5.8 KB, close to the 8 KB request-line limit of common proxies, and the console spent
/// measurably longer on every deep page (BENCHMARKS.md, console lists).
const MAX_TRAIL: usize = 10;

/// `text` percent-encoded for a query string value: everything but `A-Z a-z 0-9 - . _ ~`.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The page of a list being shown: `page` is the API's token of this page ("" = the first),
/// `trail` the tokens of the pages before it (after the first), joined with `.` (tokens are
/// base64url, which has no `.`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    pub page: String,
    pub trail: String,
}

/// Links to the neighbouring pages ("" = none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pager {
    pub previous: String,
    pub next: String,
}

impl Pager {
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    pub fn has_next(&self) -> bool {
        !self.next.is_empty()
    }

    pub fn has_any(&self) -> bool {
        self.has_previous() || self.has_next()
    }
}

/// The pager of `current` on `base` (a path with the query parameters that shape the list, already
/// escaped, e.g. `/agent/queue?view=mine`), given the service's `next_page_token`.
pub fn pager(base: &str, current: &PageQuery, next_page_token: &str) -> Pager {
    let trail: Vec<&str> = current.trail.split('.').filter(|t| !t.is_empty()).collect();
    let link = |token: &str, trail: &[&str]| {
        let mut href = base.to_string();
        let mut separator = if base.contains('?') { '&' } else { '?' };
        if !token.is_empty() {
            href.push(separator);
            href.push_str("page=");
            href.push_str(&query_escape(token));
            separator = '&';
        }
        if !trail.is_empty() {
            href.push(separator);
            href.push_str("trail=");
            href.push_str(&query_escape(&trail.join(".")));
        }
        href
    };
    let previous = if current.page.is_empty() {
        String::new()
    } else {
        match trail.split_last() {
            Some((last, before)) => link(last, before),
            None => link("", &[]),
        }
    };
    let next = if next_page_token.is_empty() {
        String::new()
    } else {
        let mut before = trail.clone();
        if !current.page.is_empty() {
            before.push(&current.page);
        }
        let keep_from = before.len().saturating_sub(MAX_TRAIL);
        link(next_page_token, &before[keep_from..])
    };
    Pager { previous, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(page: &str, trail: &str) -> PageQuery {
        PageQuery { page: page.into(), trail: trail.into() }
    }

    #[test]
    fn escapes_everything_but_unreserved_characters() {
        assert_eq!(query_escape("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(query_escape("/x?y=1&z"), "%2Fx%3Fy%3D1%26z");
        assert_eq!(query_escape("é "), "%C3%A9%20");
    }

    #[test]
    fn next_and_previous_walk_the_tokens() {
        let first = pager("/portal", &at("", ""), "T2");
        assert_eq!(first, Pager { previous: String::new(), next: "/portal?page=T2".into() });
        let second = pager("/portal", &at("T2", ""), "T3");
        assert_eq!(second.previous, "/portal");
        assert_eq!(second.next, "/portal?page=T3&trail=T2");
        let third = pager("/portal", &at("T3", "T2"), "");
        assert_eq!(third.previous, "/portal?page=T2");
        assert!(!third.has_next() && third.has_any());
        let deeper = pager("/agent/queue?view=mine", &at("T4", "T2.T3"), "T5");
        assert_eq!(deeper.previous, "/agent/queue?view=mine&page=T3&trail=T2");
        assert_eq!(deeper.next, "/agent/queue?view=mine&page=T5&trail=T2.T3.T4");
        assert!(!pager("/portal", &at("", ""), "").has_any());
    }

    #[test]
    fn the_trail_stays_bounded() {
        let long: Vec<String> = (0..40).map(|i| format!("T{i}")).collect();
        let next = pager("/p", &at("X", &long.join(".")), "Y").next;
        let trail = next.split("trail=").nth(1).unwrap();
        assert_eq!(trail.split('.').count(), MAX_TRAIL);
        assert!(trail.ends_with(".X"));
    }
}
