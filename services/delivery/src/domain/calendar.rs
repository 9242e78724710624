//! Business calendars: weekly working hours in a time zone, with holidays and exceptions.
//!
//! Working time is defined on local dates and converted to UTC one day at a time, so
//! daylight-saving changes fall out of the time-zone database: a 23 h local day counts 23 h,
//! a 25 h one counts 25 h, and SLA clocks stay correct across transitions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, MappedLocalTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Minutes in a local day; a span ending here ends at the next local midnight.
pub const MINUTES_PER_DAY: u16 = 1440;

/// How many days `add_working_time` walks before giving up (10 years), so a calendar without
/// future working time cannot make it loop forever.
const MAX_SEARCH_DAYS: usize = 3660;

/// Working time within one local day, in minutes since local midnight: 0 <= start < end <= 1440
/// (1440 = the end of the day, so 00:00–24:00 is a whole day even on 23 h / 25 h DST days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl Span {
    /// The whole local day, 00:00–24:00.
    pub const WHOLE_DAY: Self = Self::new(0, MINUTES_PER_DAY);

    pub const fn new(start_minute: u16, end_minute: u16) -> Self {
        Self { start_minute, end_minute }
    }

    /// The end as used at run time: an invalid end past midnight is clamped rather than trusted.
    fn effective_end(self) -> u16 {
        self.end_minute.min(MINUTES_PER_DAY)
    }

    fn has_time(self) -> bool {
        self.start_minute < self.effective_end()
    }

    fn is_valid(self) -> bool {
        self.start_minute < self.end_minute && self.end_minute <= MINUTES_PER_DAY
    }

    /// Touching spans (one ends where the other starts) do not overlap.
    fn overlaps(self, other: Self) -> bool {
        self.start_minute < other.end_minute && other.start_minute < self.end_minute
    }
}

/// A closed local date: the whole day has no working time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
}

/// Replaces one date's weekly hours (empty spans = closed that day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub date: NaiveDate,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusinessCalendar {
    pub time_zone: Tz,
    /// Index 0 = Monday … 6 = Sunday.
    pub weekly: [Vec<Span>; 7],
    pub holidays: Vec<Holiday>,
    pub exceptions: Vec<Exception>,
}

/// A problem with a calendar definition, naming the field (for INVALID_ARGUMENT field violations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarProblem {
    pub field: String,
    pub description: String,
}

fn problem(field: &str, description: String) -> CalendarProblem {
    CalendarProblem { field: field.to_owned(), description }
}

/// Checks the spans of one day; `prefix` is the field path of the list, e.g. "weekly_hours[0]".
fn check_spans(prefix: &str, spans: &[Span], problems: &mut Vec<CalendarProblem>) {
    for (index, span) in spans.iter().enumerate() {
        let field = format!("{prefix}[{index}]");
        if span.start_minute >= span.end_minute {
            problems.push(problem(
                &field,
                format!(
                    "the start minute {} must be before the end minute {}",
                    span.start_minute, span.end_minute
                ),
            ));
        }
        if span.end_minute > MINUTES_PER_DAY {
            problems.push(problem(
                &field,
                format!("the end minute {} is after the end of the day ({MINUTES_PER_DAY})", span.end_minute),
            ));
        }
        if !span.is_valid() {
            continue;
        }
        let overlapped =
            spans.iter().take(index).position(|earlier| earlier.is_valid() && earlier.overlaps(*span));
        if let Some(earlier) = overlapped {
            problems.push(problem(&field, format!("the span overlaps {prefix}[{earlier}]")));
        }
    }
}

/// Which end of a span a local time is, deciding how an ambiguous (repeated) local time resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    End,
}

/// Converts local (date, minute) to UTC. A repeated local time resolves to its earliest instant for a
/// span start and its latest for a span end, so a span over the repeated hour counts both hours. A
/// local time inside a spring-forward gap does not exist: the first valid minute after it is used,
/// which is the transition instant, so a span inside the gap counts nothing.
fn local_to_utc(tz: Tz, date: NaiveDate, minute: u16, edge: Edge) -> Option<DateTime<Utc>> {
    let (date, minute) = if minute >= MINUTES_PER_DAY { (date.succ_opt()?, 0) } else { (date, minute) };
    let naive = date.and_hms_opt(0, 0, 0)?.checked_add_signed(TimeDelta::minutes(i64::from(minute)))?;
    // Gaps are an hour or so in practice; a day bounds the search for any zone.
    for skipped in 0..=i64::from(MINUTES_PER_DAY) {
        let candidate = naive.checked_add_signed(TimeDelta::minutes(skipped))?;
        match tz.from_local_datetime(&candidate) {
            MappedLocalTime::Single(instant) => return Some(instant.with_timezone(&Utc)),
            MappedLocalTime::Ambiguous(earliest, latest) => {
                let chosen = match edge {
                    Edge::Start => earliest,
                    Edge::End => latest,
                };
                return Some(chosen.with_timezone(&Utc));
            }
            MappedLocalTime::None => {}
        }
    }
    None
}

/// Holidays and exceptions indexed by date, built once per query so long ranges stay linear.
struct DayIndex<'a> {
    calendar: &'a BusinessCalendar,
    holidays: BTreeSet<NaiveDate>,
    exceptions: BTreeMap<NaiveDate, &'a [Span]>,
}

impl<'a> DayIndex<'a> {
    fn new(calendar: &'a BusinessCalendar) -> Self {
        let holidays = calendar.holidays.iter().map(|holiday| holiday.date).collect();
        let mut exceptions = BTreeMap::new();
        for exception in &calendar.exceptions {
            // The first definition of a date wins; validate() reports the others.
            exceptions.entry(exception.date).or_insert(exception.spans.as_slice());
        }
        Self { calendar, holidays, exceptions }
    }

    /// The spans in force on a local date. A holiday wins over an exception on the same date
    /// (validate() rejects that combination; closing is the conservative reading).
    fn spans(&self, date: NaiveDate) -> &'a [Span] {
        if self.holidays.contains(&date) {
            return &[];
        }
        if let Some(spans) = self.exceptions.get(&date).copied() {
            return spans;
        }
        let weekday = date.weekday().num_days_from_monday() as usize;
        self.calendar.weekly.get(weekday).map_or(&[], Vec::as_slice)
    }

    /// The UTC intervals of a local date, sorted and merged: spans that touch or that overlap in UTC
    /// (possible around a repeated hour) become one interval, so nothing counts twice.
    fn intervals(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let tz = self.calendar.time_zone;
        let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = self
            .spans(date)
            .iter()
            .filter(|span| span.has_time())
            .filter_map(|span| {
                let start = local_to_utc(tz, date, span.start_minute, Edge::Start)?;
                let end = local_to_utc(tz, date, span.effective_end(), Edge::End)?;
                (start < end).then_some((start, end))
            })
            .collect();
        intervals.sort_unstable();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(intervals.len());
        for (start, end) in intervals {
            match merged.last_mut() {
                Some(last) if start <= last.1 => {
                    if end > last.1 {
                        last.1 = end;
                    }
                }
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

impl BusinessCalendar {
    /// 24×7 in UTC.
    pub fn always() -> Self {
        Self {
            time_zone: Tz::UTC,
            weekly: std::array::from_fn(|_| vec![Span::WHOLE_DAY]),
            holidays: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    /// Every problem with the definition, each naming its field: "weekly_hours[0][1]" (day 0 span 1),
    /// "holidays[2]", "exceptions[1]", "exceptions[1].spans[0]" or "weekly_hours".
    pub fn validate(&self) -> Vec<CalendarProblem> {
        let mut problems = Vec::new();
        for (day, spans) in self.weekly.iter().enumerate() {
            check_spans(&format!("weekly_hours[{day}]"), spans, &mut problems);
        }
        for (index, holiday) in self.holidays.iter().enumerate() {
            let earlier = self.holidays.iter().take(index).position(|other| other.date == holiday.date);
            if let Some(earlier) = earlier {
                problems.push(problem(
                    &format!("holidays[{index}]"),
                    format!("overlapping holiday definitions: {} is also holidays[{earlier}]", holiday.date),
                ));
            }
        }
        for (index, exception) in self.exceptions.iter().enumerate() {
            let field = format!("exceptions[{index}]");
            let holiday = self.holidays.iter().position(|holiday| holiday.date == exception.date);
            if let Some(holiday) = holiday {
                problems.push(problem(
                    &field,
                    format!(
                        "the exception on {} falls on holidays[{holiday}], which closes the whole day",
                        exception.date
                    ),
                ));
            }
            let earlier = self.exceptions.iter().take(index).position(|other| other.date == exception.date);
            if let Some(earlier) = earlier {
                problems.push(problem(
                    &field,
                    format!(
                        "overlapping exception definitions: {} is also exceptions[{earlier}]",
                        exception.date
                    ),
                ));
            }
            check_spans(&format!("{field}.spans"), &exception.spans, &mut problems);
        }
        let weekly_time = self.weekly.iter().flatten().any(|span| span.has_time());
        let exception_time =
            self.exceptions.iter().flat_map(|exception| &exception.spans).any(|span| span.has_time());
        if !weekly_time && !exception_time {
            problems.push(problem("weekly_hours", "the calendar has no working time".to_owned()));
        }
        problems
    }

    /// The spans of one local date after holidays and exceptions, as UTC intervals [start, end) in order.
    pub fn working_intervals(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        DayIndex::new(self).intervals(date)
    }

    /// Working time in [from, to) (zero when to <= from).
    pub fn working_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> TimeDelta {
        let mut total = TimeDelta::zero();
        if to <= from {
            return total;
        }
        let index = DayIndex::new(self);
        let last = self.local_date(to);
        let mut date = self.first_date(from);
        // Intervals of neighbouring days can overlap around a repeated midnight; the cursor makes
        // sure no instant is counted twice.
        let mut cursor = from;
        while date <= last {
            for (start, end) in index.intervals(date) {
                let start = start.max(cursor);
                let end = end.min(to);
                if start < end {
                    total += end - start;
                    cursor = end;
                }
            }
            date = match date.succ_opt() {
                Some(next) => next,
                None => break,
            };
        }
        total
    }

    /// The instant at which `amount` of working time has passed after `from`; `from` itself when
    /// `amount` <= 0. When the amount ends exactly at the end of a working interval, that end is the
    /// answer (not the start of the next interval). None when there is not enough working time
    /// within 10 years.
    pub fn add_working_time(&self, from: DateTime<Utc>, amount: TimeDelta) -> Option<DateTime<Utc>> {
        if amount <= TimeDelta::zero() {
            return Some(from);
        }
        let index = DayIndex::new(self);
        let mut remaining = amount;
        let mut cursor = from;
        let mut date = self.first_date(from);
        // One extra day for the day before `from`'s local date.
        for _ in 0..=MAX_SEARCH_DAYS {
            for (start, end) in index.intervals(date) {
                let start = start.max(cursor);
                if start >= end {
                    continue;
                }
                let available = end - start;
                if available >= remaining {
                    return start.checked_add_signed(remaining);
                }
                remaining -= available;
                cursor = end;
            }
            date = date.succ_opt()?;
        }
        None
    }

    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        let index = DayIndex::new(self);
        let date = self.local_date(at);
        [date.pred_opt(), Some(date)]
            .into_iter()
            .flatten()
            .any(|day| index.intervals(day).iter().any(|(start, end)| *start <= at && at < *end))
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// The local date before `at`'s: an instant can lie in the previous local day's spans (a span
    /// ending at 24:00 that resolves past midnight around a DST change).
    fn first_date(&self, at: DateTime<Utc>) -> NaiveDate {
        let date = self.local_date(at);
        date.pred_opt().unwrap_or(date)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn hours(count: i64) -> TimeDelta {
        TimeDelta::hours(count)
    }

    /// Mon–Fri 09:00–17:00 in the given zone.
    fn business_hours(time_zone: Tz) -> BusinessCalendar {
        let work = vec![Span::new(9 * 60, 17 * 60)];
        BusinessCalendar {
            time_zone,
            weekly: [work.clone(), work.clone(), work.clone(), work.clone(), work, Vec::new(), Vec::new()],
            holidays: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    fn whole_days(time_zone: Tz) -> BusinessCalendar {
        BusinessCalendar { time_zone, ..BusinessCalendar::always() }
    }

    #[test]
    fn always_counts_wall_time() {
        let calendar = BusinessCalendar::always();
        assert!(calendar.validate().is_empty());
        let from = at("2026-03-02T09:15:00Z");
        let to = at("2026-03-05T11:45:30Z");
        assert_eq!(calendar.working_time_between(from, to), to - from);
        assert_eq!(calendar.working_time_between(to, from), TimeDelta::zero());
        assert_eq!(calendar.add_working_time(from, hours(50)), Some(at("2026-03-04T11:15:00Z")));
        assert_eq!(calendar.add_working_time(from, TimeDelta::zero()), Some(from));
        assert_eq!(calendar.add_working_time(from, hours(-3)), Some(from));
        assert!(calendar.is_working(from));
        // Whole days merge without gaps or double counting across midnight.
        assert_eq!(
            calendar.working_time_between(at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")),
            TimeDelta::days(365)
        );
    }

    #[test]
    fn business_hours_skip_the_weekend() {
        let calendar = business_hours(chrono_tz::Europe::London);
        assert!(calendar.validate().is_empty());
        // Winter (GMT = UTC): Friday 2026-12-18 16:00 + 2 h = Monday 2026-12-21 10:00.
        let friday = at("2026-12-18T16:00:00Z");
        let monday = at("2026-12-21T10:00:00Z");
        assert_eq!(calendar.add_working_time(friday, hours(2)), Some(monday));
        assert_eq!(calendar.working_time_between(friday, monday), hours(2));
        // Exactly one hour fits Friday: the answer is the end of Friday's hours.
        assert_eq!(calendar.add_working_time(friday, hours(1)), Some(at("2026-12-18T17:00:00Z")));
        assert!(!calendar.is_working(at("2026-12-19T12:00:00Z")));
        assert!(calendar.is_working(at("2026-12-21T09:00:00Z")));
        assert!(!calendar.is_working(at("2026-12-21T17:00:00Z")));
        // Summer (BST = UTC+1): Friday 2026-06-05 16:00 local = 15:00Z; Monday 10:00 local = 09:00Z.
        assert_eq!(
            calendar.add_working_time(at("2026-06-05T15:00:00Z"), hours(2)),
            Some(at("2026-06-08T09:00:00Z"))
        );
        // A week of business hours is 40 h.
        assert_eq!(
            calendar.working_time_between(at("2026-06-01T00:00:00Z"), at("2026-06-08T00:00:00Z")),
            hours(40)
        );
    }

    #[test]
    fn holidays_and_exceptions() {
        let mut calendar = business_hours(chrono_tz::Europe::London);
        calendar.holidays.push(Holiday { date: day("2026-12-25"), name: "Christmas Day".to_owned() });
        calendar
            .exceptions
            .push(Exception { date: day("2026-12-24"), spans: vec![Span::new(9 * 60, 12 * 60)] });
        assert!(calendar.validate().is_empty());
        assert!(calendar.working_intervals(day("2026-12-25")).is_empty());
        assert_eq!(
            calendar.working_intervals(day("2026-12-24")),
            vec![(at("2026-12-24T09:00:00Z"), at("2026-12-24T12:00:00Z"))]
        );
        // Thursday 24th: 10:00–12:00 (2 h); Friday 25th closed; weekend; Monday 28th 09:00 + 2 h.
        assert_eq!(
            calendar.add_working_time(at("2026-12-24T10:00:00Z"), hours(4)),
            Some(at("2026-12-28T11:00:00Z"))
        );
        // 3 h on the 24th + 8 h on Monday 28th.
        assert_eq!(
            calendar.working_time_between(at("2026-12-24T00:00:00Z"), at("2026-12-29T00:00:00Z")),
            hours(11)
        );
        assert!(!calendar.is_working(at("2026-12-24T13:00:00Z")));
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        let calendar = whole_days(chrono_tz::Europe::Berlin);
        // 2026-03-29 00:00 CET = 03-28 23:00Z; 03-30 00:00 CEST = 03-29 22:00Z.
        assert_eq!(
            calendar.working_intervals(day("2026-03-29")),
            vec![(at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z"))]
        );
        assert_eq!(
            calendar.working_time_between(at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")),
            hours(23)
        );
        // 2026-10-25 00:00 CEST = 10-24 22:00Z; 10-26 00:00 CET = 10-25 23:00Z.
        assert_eq!(
            calendar.working_intervals(day("2026-10-25")),
            vec![(at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"))]
        );
        assert_eq!(
            calendar.working_time_between(at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z")),
            hours(25)
        );
        // Over both transitions a 24×7 calendar still counts wall time.
        assert_eq!(
            calendar.working_time_between(at("2026-03-23T00:00:00Z"), at("2026-04-06T00:00:00Z")),
            TimeDelta::days(14)
        );
        assert_eq!(
            calendar.add_working_time(at("2026-10-24T12:00:00Z"), hours(30)),
            Some(at("2026-10-25T18:00:00Z"))
        );
    }

    #[test]
    fn new_york_business_hours_across_spring_forward() {
        let calendar = business_hours(chrono_tz::America::New_York);
        // Friday 2026-03-06 is EST (UTC-5), Monday 2026-03-09 is EDT (UTC-4).
        assert_eq!(
            calendar.working_intervals(day("2026-03-06")),
            vec![(at("2026-03-06T14:00:00Z"), at("2026-03-06T22:00:00Z"))]
        );
        assert_eq!(
            calendar.working_intervals(day("2026-03-09")),
            vec![(at("2026-03-09T13:00:00Z"), at("2026-03-09T21:00:00Z"))]
        );
        assert!(calendar.working_intervals(day("2026-03-08")).is_empty());
        assert_eq!(
            calendar.working_time_between(at("2026-03-06T00:00:00Z"), at("2026-03-10T00:00:00Z")),
            hours(16)
        );
        // Friday 15:00 EST (20:00Z) + 4 h: 2 h on Friday, then Monday 09:00 EDT (13:00Z) + 2 h.
        assert_eq!(
            calendar.add_working_time(at("2026-03-06T20:00:00Z"), hours(4)),
            Some(at("2026-03-09T15:00:00Z"))
        );
    }

    #[test]
    fn spans_in_the_gap_and_the_repeated_hour() {
        let mut calendar = whole_days(chrono_tz::Europe::Berlin);
        calendar.weekly = std::array::from_fn(|_| Vec::new());
        // Sundays 02:00–03:00 local.
        calendar.weekly[6] = vec![Span::new(120, 180)];
        assert!(calendar.validate().is_empty());
        // 2026-03-29: 02:00–03:00 does not exist.
        assert!(calendar.working_intervals(day("2026-03-29")).is_empty());
        assert_eq!(
            calendar.working_time_between(at("2026-03-28T12:00:00Z"), at("2026-03-30T12:00:00Z")),
            TimeDelta::zero()
        );
        // 2026-10-25: 02:00 CEST (00:00Z) to 03:00 CET (02:00Z), the repeated hour counts twice.
        assert_eq!(
            calendar.working_intervals(day("2026-10-25")),
            vec![(at("2026-10-25T00:00:00Z"), at("2026-10-25T02:00:00Z"))]
        );
        assert_eq!(
            calendar.working_time_between(at("2026-10-24T12:00:00Z"), at("2026-10-26T12:00:00Z")),
            hours(2)
        );
        // An ordinary Sunday has one hour.
        assert_eq!(
            calendar.working_intervals(day("2026-11-01")),
            vec![(at("2026-11-01T01:00:00Z"), at("2026-11-01T02:00:00Z"))]
        );
    }

    #[test]
    fn not_enough_working_time_gives_none() {
        let mut calendar = BusinessCalendar::always();
        calendar.weekly = std::array::from_fn(|_| Vec::new());
        assert_eq!(calendar.add_working_time(at("2026-03-02T09:00:00Z"), hours(1)), None);
        assert_eq!(
            calendar.validate(),
            vec![CalendarProblem {
                field: "weekly_hours".to_owned(),
                description: "the calendar has no working time".to_owned(),
            }]
        );
        // An exception with hours is working time.
        calendar.exceptions.push(Exception { date: day("2026-03-03"), spans: vec![Span::new(600, 660)] });
        assert!(calendar.validate().is_empty());
        assert_eq!(
            calendar.add_working_time(at("2026-03-02T09:00:00Z"), hours(1)),
            Some(at("2026-03-03T11:00:00Z"))
        );
    }

    #[test]
    fn validate_reports_each_problem() {
        let mut calendar = business_hours(chrono_tz::Europe::London);
        calendar.weekly[0] = vec![
            Span::new(540, 720),
            Span::new(720, 1020),  // touching: fine
            Span::new(1000, 1100), // overlaps span 1
        ];
        calendar.weekly[2] = vec![Span::new(600, 1500)];
        calendar.weekly[3] = vec![Span::new(600, 600)];
        calendar.holidays = vec![
            Holiday { date: day("2026-12-25"), name: "Christmas Day".to_owned() },
            Holiday { date: day("2026-12-26"), name: "Boxing Day".to_owned() },
            Holiday { date: day("2026-12-25"), name: "Christmas again".to_owned() },
        ];
        calendar.exceptions = vec![
            Exception { date: day("2026-12-24"), spans: vec![Span::new(540, 720), Span::new(600, 660)] },
            Exception { date: day("2026-12-26"), spans: Vec::new() },
            Exception { date: day("2026-12-24"), spans: Vec::new() },
        ];
        let fields: Vec<String> = calendar.validate().into_iter().map(|problem| problem.field).collect();
        assert_eq!(
            fields,
            vec![
                "weekly_hours[0][2]",
                "weekly_hours[2][0]",
                "weekly_hours[3][0]",
                "holidays[2]",
                "exceptions[0].spans[1]",
                "exceptions[1]",
                "exceptions[2]",
            ]
        );
        let problems = calendar.validate();
        assert!(problems[0].description.contains("weekly_hours[0][1]"));
        assert!(problems[3].description.contains("overlapping holiday definitions"));
        assert!(problems[3].description.contains("holidays[0]"));
    }
}
