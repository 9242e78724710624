//! Maintenance windows: when changes to a CI or business service are expected. A change whose
//! planned window lies outside every window of one of its targets (its CIs and the business
//! services behind them) needs one approval more; targets without windows do not constrain it.

/// A maintenance window: its targets and [start, end) in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub targets: Vec<String>,
    pub start: i64,
    pub end: i64,
}

/// The first target that has windows of its own, none of which holds [start, end); None when
/// the change fits (or nothing has windows).
pub fn outside_windows<'a>(
    targets: &'a [String],
    start: i64,
    end: i64,
    windows: &[Window],
) -> Option<&'a str> {
    targets.iter().map(String::as_str).find(|target| {
        let mut own = windows.iter().filter(|w| w.targets.iter().any(|t| t == target)).peekable();
        own.peek().is_some() && !own.any(|w| w.start <= start && end <= w.end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(targets: &[&str], start: i64, end: i64) -> Window {
        Window { targets: targets.iter().map(|t| (*t).to_string()).collect(), start, end }
    }

    #[test]
    fn a_change_must_fit_a_window_of_each_target_that_has_windows() {
        let targets = vec!["db".to_string(), "shop".to_string(), "cache".to_string()];
        let windows =
            [window(&["db"], 100, 200), window(&["db"], 300, 400), window(&["shop", "other"], 0, 1_000)];
        assert_eq!(outside_windows(&targets, 120, 180, &windows), None, "inside db's first window");
        assert_eq!(outside_windows(&targets, 300, 400, &windows), None, "exactly the second window");
        assert_eq!(outside_windows(&targets, 150, 250, &windows), Some("db"), "runs past the window's end");
        assert_eq!(outside_windows(&targets, 210, 290, &windows), Some("db"), "between windows");
        let late = [window(&["shop"], 0, 100)];
        assert_eq!(outside_windows(&targets, 120, 180, &late), Some("shop"));
        assert_eq!(outside_windows(&targets, 1, 2, &[]), None, "no windows, no constraint");
        assert_eq!(outside_windows(&targets, 1, 2, &[window(&["elsewhere"], 5, 6)]), None);
    }
}
