//! Text rules: field limits and what full-text search reads.

/// Longest one-line summary.
pub const MAX_SHORT: usize = 300;
/// Longest free text (description, notes, root cause, workaround).
pub const MAX_LONG: usize = 32 * 1024;
/// Longest short identifier-like field (category, principal, group name).
pub const MAX_NAME: usize = 200;
/// Most CIs on one record.
pub const MAX_CIS: usize = 100;
/// Most words a search query keeps.
pub const MAX_QUERY_WORDS: usize = 16;

/// The words of a search query: letters and digits only, lower case, so no query syntax of
/// either database can be smuggled in.
pub fn query_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_QUERY_WORDS)
        .map(str::to_lowercase)
        .collect()
}

/// A SQLite FTS5 query matching documents that contain every word (each word a quoted string,
/// prefix-free).
pub fn fts5_query(words: &[String]) -> String {
    words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_words_only() {
        assert_eq!(query_words("Disk FULL on db-01!"), vec!["disk", "full", "on", "db", "01"]);
        assert_eq!(query_words("\" OR 1=1 -- NEAR(x y) *"), vec!["or", "1", "1", "near", "x", "y"]);
        assert!(query_words("  ;;  ").is_empty());
        assert_eq!(fts5_query(&query_words("mail server")), "\"mail\" \"server\"");
    }
}
