//! Availability figures of a service over a period, counted within its agreed service hours
//! (a business calendar): availability = (agreed time − downtime) / agreed time, where planned
//! outages are taken out of the agreed time and only unplanned full outages are downtime;
//! degraded outages are reported apart. MTRS, MTBF and MTBSI follow ITIL:
//! MTRS = downtime / breaks, MTBF = uptime / breaks, MTBSI = agreed time / breaks (= MTBF + MTRS).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::calendar::BusinessCalendar;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSpan {
    pub start: DateTime<Utc>,
    /// None while ongoing (counted up to the end of the period).
    pub end: Option<DateTime<Utc>>,
    pub planned: bool,
    /// Full (unavailable) rather than degraded.
    pub full: bool,
    /// The CI that failed ("" = the service as a whole).
    pub configuration_item: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Agreed service time in the period, less planned outages.
    pub agreed: TimeDelta,
    pub downtime: TimeDelta,
    pub degraded: TimeDelta,
    pub planned: TimeDelta,
    /// Unplanned full outages that started in the period.
    pub breaks: u32,
    /// 0..=1 (1 when there is no agreed time).
    pub availability: f64,
    pub mtrs: Option<TimeDelta>,
    pub mtbf: Option<TimeDelta>,
    pub mtbsi: Option<TimeDelta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CiFigures {
    pub downtime: TimeDelta,
    pub breaks: u32,
    pub mtrs: Option<TimeDelta>,
}

/// The intervals of `spans` clipped to [from, to) and merged where they overlap.
fn merged(
    spans: &[&OutageSpan],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = spans
        .iter()
        .map(|s| (s.start.max(from), s.end.unwrap_or(to).min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    intervals.sort();
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (a, b) in intervals {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn counted(calendar: &BusinessCalendar, intervals: &[(DateTime<Utc>, DateTime<Utc>)]) -> TimeDelta {
    intervals.iter().fold(TimeDelta::zero(), |sum, (a, b)| sum + calendar.working_time_between(*a, *b))
}

fn divided(total: TimeDelta, n: u32) -> Option<TimeDelta> {
    (n > 0).then(|| TimeDelta::milliseconds(total.num_milliseconds() / i64::from(n)))
}

/// The service's figures over [from, to).
pub fn figures(
    calendar: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    outages: &[OutageSpan],
) -> Figures {
    let of = |planned: bool, full: bool| {
        outages.iter().filter(|o| o.planned == planned && o.full == full).collect::<Vec<_>>()
    };
    let planned = counted(calendar, &merged(&of(true, true), from, to));
    let downtime = counted(calendar, &merged(&of(false, true), from, to));
    let degraded = counted(calendar, &merged(&of(false, false), from, to));
    let agreed = (calendar.working_time_between(from, to) - planned).max(TimeDelta::zero());
    let downtime = downtime.min(agreed);
    let breaks = of(false, true).iter().filter(|o| o.start >= from && o.start < to).count() as u32;
    let availability = if agreed > TimeDelta::zero() {
        (agreed - downtime).num_milliseconds() as f64 / agreed.num_milliseconds() as f64
    } else {
        1.0
    };
    Figures {
        agreed,
        downtime,
        degraded,
        planned,
        breaks,
        availability,
        mtrs: divided(downtime, breaks),
        mtbf: divided(agreed - downtime, breaks),
        mtbsi: divided(agreed, breaks),
    }
}

/// Downtime, breaks and MTRS per CI named by unplanned full outages.
pub fn per_ci(
    calendar: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    outages: &[OutageSpan],
) -> BTreeMap<String, CiFigures> {
    let mut by_ci: BTreeMap<String, Vec<&OutageSpan>> = BTreeMap::new();
    for o in outages.iter().filter(|o| !o.planned && o.full && !o.configuration_item.is_empty()) {
        by_ci.entry(o.configuration_item.clone()).or_default().push(o);
    }
    by_ci
        .into_iter()
        .map(|(ci, spans)| {
            let downtime = counted(calendar, &merged(&spans, from, to));
            let breaks = spans.iter().filter(|o| o.start >= from && o.start < to).count() as u32;
            (ci, CiFigures { downtime, breaks, mtrs: divided(downtime, breaks) })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::calendar::Span;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    fn outage(
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        planned: bool,
        full: bool,
        ci: &str,
    ) -> OutageSpan {
        OutageSpan { start, end, planned, full, configuration_item: ci.into() }
    }

    #[test]
    fn a_day_with_one_hour_down() {
        let always = BusinessCalendar::always();
        let f =
            figures(&always, at(2, 0), at(3, 0), &[outage(at(2, 10), Some(at(2, 11)), false, true, "db")]);
        assert_eq!(f.agreed, TimeDelta::hours(24));
        assert_eq!(f.downtime, TimeDelta::hours(1));
        assert!((f.availability - 23.0 / 24.0).abs() < 1e-9);
        assert_eq!((f.breaks, f.mtrs), (1, Some(TimeDelta::hours(1))));
        assert_eq!(f.mtbf, Some(TimeDelta::hours(23)));
        assert_eq!(f.mtbsi, Some(TimeDelta::hours(24)));
    }

    #[test]
    fn planned_degraded_overlapping_and_ongoing_outages() {
        let always = BusinessCalendar::always();
        let outages = [
            // Two overlapping failures: 10:00-12:00 counted once.
            outage(at(2, 10), Some(at(2, 11)), false, true, "db"),
            outage(at(2, 10), Some(at(2, 12)), false, true, "web"),
            // Maintenance 02:00-04:00 comes out of the agreed time.
            outage(at(2, 2), Some(at(2, 4)), true, true, ""),
            // Degraded for 3 hours: reported, not downtime.
            outage(at(2, 14), Some(at(2, 17)), false, false, ""),
            // Still down at the end of the period: counted to its end.
            outage(at(2, 23), None, false, true, "db"),
        ];
        let f = figures(&always, at(2, 0), at(3, 0), &outages);
        assert_eq!(f.planned, TimeDelta::hours(2));
        assert_eq!(f.agreed, TimeDelta::hours(22));
        assert_eq!(f.downtime, TimeDelta::hours(3));
        assert_eq!(f.degraded, TimeDelta::hours(3));
        assert_eq!(f.breaks, 3);
        let cis = per_ci(&always, at(2, 0), at(3, 0), &outages);
        assert_eq!(cis["db"].downtime, TimeDelta::hours(2));
        assert_eq!(cis["db"].breaks, 2);
        assert_eq!(cis["web"].mtrs, Some(TimeDelta::hours(2)));
    }

    #[test]
    fn only_agreed_hours_count() {
        let mut weekly: [Vec<Span>; 7] = Default::default();
        for day in weekly.iter_mut().take(5) {
            *day = vec![Span { start_minute: 9 * 60, end_minute: 17 * 60 }];
        }
        let office =
            BusinessCalendar { time_zone: chrono_tz::UTC, weekly, holidays: vec![], exceptions: vec![] };
        // Monday 2026-03-02: down 16:00-20:00, of which one hour is within service hours.
        let f = figures(&office, at(2, 0), at(3, 0), &[outage(at(2, 16), Some(at(2, 20)), false, true, "")]);
        assert_eq!(f.agreed, TimeDelta::hours(8));
        assert_eq!(f.downtime, TimeDelta::hours(1));
        assert!((f.availability - 7.0 / 8.0).abs() < 1e-9);
        let none = figures(&office, at(7, 0), at(8, 0), &[]);
        assert_eq!(
            (none.agreed, none.availability),
            (TimeDelta::zero(), 1.0),
            "a Saturday has no service hours"
        );
    }
}
