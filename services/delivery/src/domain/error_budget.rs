//! An SLO's error budget over time: at every step of a range, the budget remaining over the SLO's
//! rolling window ending then, the share of that budget the step's bad events spent and the burn
//! rate over the step.
//!
//! The budget at a time is exactly what [`openslo::budget_remaining`](super::openslo::budget_remaining)
//! answers for that time — the same window (open at its start, closed at its end), the same
//! clamping of bad samples, the same saturating sums, the same division
//! ([`burn_rate_of`]) — so the last point of a history ending at the newest sample is the budget
//! `GetServiceLevelObjective` reports, to the last bit. Under Occurrences budgeting the budget is
//! (1 − target) of the events the window saw: a constant bad ratio in a window that was all good
//! spends it linearly as the bad events replace the good ones, and holds it at 1 − the burn rate
//! once the window is full of them.
//!
//! Window sums come from running totals of the samples sorted by end time, so a history of n
//! points over m samples costs O(m log m + n log m), not O(n × m).

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use itsm_runtime::error::FieldViolation;

use super::openslo::{SliSample, burn_rate_of};

/// Most points one history may have.
pub const MAX_POINTS: i64 = 1_000;
/// Most points the default step gives (counting both ends of the range).
const DEFAULT_POINTS: u64 = 200;
/// Longest range (and step) a history may span, unless the SLO's window is longer.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Round steps the default step is chosen from, in seconds: a second to a week. No two neighbours
/// are more than 2.5 apart, so the default gives at least 80 points over a range of a few minutes
/// or more (and 60 over one of a minute).
const ROUND_STEPS: [u64; 21] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400,
    172_800, 345_600, 604_800,
];

/// `delta` in microseconds, saturating (a `TimeDelta` can hold more than an `i64` of them).
fn micros_of(delta: TimeDelta) -> i64 {
    delta.num_microseconds().unwrap_or(if delta < TimeDelta::zero() { i64::MIN } else { i64::MAX })
}

/// Whole seconds in `delta`, rounded up; 0 for an empty or negative one.
fn seconds_up(delta: TimeDelta) -> u64 {
    u64::try_from(micros_of(delta)).unwrap_or(0).div_ceil(1_000_000)
}

fn delta_of_seconds(seconds: u64) -> TimeDelta {
    i64::try_from(seconds).ok().and_then(TimeDelta::try_seconds).unwrap_or(TimeDelta::MAX)
}

/// The longest range, and the longest step, a history of an SLO with rolling `window` may have:
/// [`MAX_RANGE_DAYS`], or the window when that is longer (its default range is one window).
pub fn max_range(window: TimeDelta) -> TimeDelta {
    TimeDelta::days(MAX_RANGE_DAYS).max(window)
}

/// The step a history over `span` takes by default: the smallest round step that gives at most
/// 200 points (counting both ends); a second for an empty span.
pub fn default_step(span: TimeDelta) -> TimeDelta {
    let rough = seconds_up(span).div_ceil(DEFAULT_POINTS - 1).max(1);
    delta_of_seconds(ROUND_STEPS.iter().copied().find(|&step| step >= rough).unwrap_or(rough))
}

/// The times a history is computed at: `end`, and every `step` before it down to `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step: TimeDelta,
}

impl HistoryRange {
    /// How many points the range has: one at `end` and one per whole `step` back to `start`.
    pub fn point_count(&self) -> i64 {
        let span = micros_of(self.end - self.start).max(0);
        span / micros_of(self.step).max(1) + 1
    }

    /// The points' times, oldest first; the last is `end`. A range of more than [`MAX_POINTS`]
    /// (never one [`HistoryQuery::resolve`] answers) keeps its newest [`MAX_POINTS`].
    pub fn times(&self) -> Vec<DateTime<Utc>> {
        let step = micros_of(self.step).max(1);
        let end = self.end.timestamp_micros();
        (0..self.point_count().min(MAX_POINTS))
            .rev()
            .filter_map(|back| back.checked_mul(step).and_then(|offset| end.checked_sub(offset)))
            .filter_map(DateTime::from_timestamp_micros)
            .collect()
    }
}

/// The range a caller asked for; `None` takes the default (see [`HistoryQuery::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub step: Option<TimeDelta>,
}

impl HistoryQuery {
    /// What is wrong with the query whatever the SLO: a step that is not at least a second
    /// (`step`), an end that is not after the start (`end_time`). Empty when nothing is.
    pub fn check(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if let Some(step) = self.step {
            if step <= TimeDelta::zero() {
                violations.push(FieldViolation::new("step", "must be positive"));
            } else if step < TimeDelta::seconds(1) {
                violations.push(FieldViolation::new("step", "must be at least one second"));
            }
        }
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            violations.push(FieldViolation::new("end_time", "must be after start_time"));
        }
        violations
    }

    /// The range of a history of an SLO with rolling `window` whose samples end from `oldest` to
    /// `newest` (`samples`; `None` without samples), asked at `now`:
    /// - end: the query's, else the newest sample's end (where the SLO's current budget is
    ///   measured), else `now`;
    /// - start: the query's, else one window before the end — or the oldest sample's end when
    ///   that is later (and not after the end), so a young SLO's history starts at its first
    ///   sample instead of a stretch without points;
    /// - step: the query's, else [`default_step`] of the range.
    ///
    /// Fails with every violation found: those of [`check`](Self::check); a given start not
    /// before the default end (`start_time`); a range longer than [`max_range`] (`start_time`);
    /// a step longer than that (`step`); more than [`MAX_POINTS`] points (`step`).
    pub fn resolve(
        &self,
        window: TimeDelta,
        samples: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<HistoryRange, Vec<FieldViolation>> {
        let mut violations = self.check();
        if !violations.is_empty() {
            return Err(violations);
        }
        let end = self.end.or(samples.map(|(_, newest)| newest)).unwrap_or(now);
        let start = match self.start {
            Some(start) => start,
            None => {
                let window_start = end.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
                match samples {
                    Some((oldest, _)) if oldest > window_start && oldest <= end => oldest,
                    _ => window_start,
                }
            }
        };
        if self.start.is_some() && self.end.is_none() && start >= end {
            let end_text = end.to_rfc3339_opts(SecondsFormat::Secs, true);
            violations.push(FieldViolation::new(
                "start_time",
                format!("must be before the end of the range ({end_text}: the newest sample, or now without samples)"),
            ));
        }
        let longest = max_range(window);
        let longest_days = longest.num_days();
        if end - start > longest {
            violations.push(FieldViolation::new(
                "start_time",
                format!(
                    "the range may span at most {longest_days} days (the SLO's time window or \
                     {MAX_RANGE_DAYS} days, whichever is longer)"
                ),
            ));
        }
        let step = self.step.unwrap_or_else(|| default_step(end - start));
        if step > longest {
            violations.push(FieldViolation::new("step", format!("must be at most {longest_days} days")));
        }
        let range = HistoryRange { start, end, step };
        let points = range.point_count();
        if violations.is_empty() && points > MAX_POINTS {
            let least = seconds_up(end - start).div_ceil(MAX_POINTS.unsigned_abs() - 1);
            violations.push(FieldViolation::new(
                "step",
                format!(
                    "gives {points} points over the range, more than {MAX_POINTS}: use a step of at least \
                     {least} seconds"
                ),
            ));
        }
        if violations.is_empty() { Ok(range) } else { Err(violations) }
    }
}

/// One point of an error budget history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPoint {
    pub time: DateTime<Utc>,
    /// Budget remaining over the SLO's window ending at `time`: 1 = untouched, 0 = spent,
    /// negative = overspent.
    pub remaining: f64,
    /// Share of that window's budget the bad events of the step (time − step, time] spent.
    pub consumed: f64,
    /// Burn rate over the step; 0 when the step saw no events.
    pub burn_rate: f64,
}

/// Good and total events of samples sorted by end time, summed up to each sample, so the events of
/// any (from, to] are two binary searches.
struct RunningTotals {
    ends: Vec<DateTime<Utc>>,
    /// `good[i]` and `total[i]`: the events of the first i samples (so index 0 is zero).
    good: Vec<u128>,
    total: Vec<u128>,
}

impl RunningTotals {
    fn of(samples: &[SliSample]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by_key(|sample| sample.end);
        let mut totals = Self {
            ends: Vec::with_capacity(sorted.len()),
            good: Vec::with_capacity(sorted.len() + 1),
            total: Vec::with_capacity(sorted.len() + 1),
        };
        // u128 cannot overflow here (fewer than 2^64 samples of fewer than 2^64 events each).
        let (mut good, mut total) = (0_u128, 0_u128);
        totals.good.push(good);
        totals.total.push(total);
        for sample in &sorted {
            // As `openslo::window_totals` counts: a sample claiming more good than total events
            // counts as all good.
            good += u128::from(sample.good.min(sample.total));
            total += u128::from(sample.total);
            totals.ends.push(sample.end);
            totals.good.push(good);
            totals.total.push(total);
        }
        totals
    }

    /// Good and total events of the samples whose end lies in (from, to]; `from` `None` counts
    /// every sample up to `to`. A sum past `u64::MAX` is `u64::MAX`, as `window_totals`'
    /// saturating sums are.
    fn within(&self, from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> (u64, u64) {
        let upto = self.ends.partition_point(|end| *end <= to);
        let after = from.map_or(0, |from| self.ends.partition_point(|end| *end <= from)).min(upto);
        let saturate = |sum: u128| u64::try_from(sum).unwrap_or(u64::MAX);
        (saturate(self.good[upto] - self.good[after]), saturate(self.total[upto] - self.total[after]))
    }
}

/// The error budget of an SLO with `target` and rolling `window` at each time of `range`, oldest
/// first, from `samples` (in any order; those the range's first window and first step reach back
/// to must be among them). A time whose window saw no events has no point — its budget is not
/// known, as the SLO's current budget is not without samples — so no samples give no points.
pub fn history(
    samples: &[SliSample],
    target: f64,
    window: TimeDelta,
    range: &HistoryRange,
) -> Vec<BudgetPoint> {
    let totals = RunningTotals::of(samples);
    let mut points = Vec::new();
    for time in range.times() {
        let (good, total) = totals.within(time.checked_sub_signed(window), time);
        let Some(window_rate) = burn_rate_of(good, total, target) else { continue };
        let (step_good, step_total) = totals.within(time.checked_sub_signed(range.step), time);
        let step_bad = step_total.saturating_sub(step_good);
        points.push(BudgetPoint {
            time,
            remaining: 1.0 - window_rate,
            // The window's budget is (1 − target) of its events; `burn_rate_of` answered, so
            // there were some and the target is strictly between 0 and 1.
            consumed: step_bad as f64 / total as f64 / (1.0 - target),
            burn_rate: burn_rate_of(step_good, step_total, target).unwrap_or(0.0),
        });
    }
    points
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::openslo::budget_remaining;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().unwrap()
    }

    fn hour(h: i64) -> DateTime<Utc> {
        t0() + TimeDelta::hours(h)
    }

    /// One sample per hour ending at hours `from..=to`, each `bad` of `total` events bad.
    fn hourly(from: i64, to: i64, bad: u64, total: u64) -> Vec<SliSample> {
        (from..=to).map(|h| SliSample { end: hour(h), good: total - bad, total }).collect()
    }

    fn hourly_range(from: i64, to: i64) -> HistoryRange {
        HistoryRange { start: hour(from), end: hour(to), step: TimeDelta::hours(1) }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn all_good_samples_keep_the_whole_budget() {
        let samples = hourly(1, 48, 0, 1_000);
        let points = history(&samples, 0.999, TimeDelta::hours(24), &hourly_range(1, 48));
        assert_eq!(points.len(), 48);
        assert!(points.iter().all(|p| p.remaining == 1.0 && p.consumed == 0.0 && p.burn_rate == 0.0));
    }

    #[test]
    fn a_constant_bad_ratio_spends_a_full_window_linearly_then_holds() {
        // A 10-hour window full of good events, then 1 % bad at 99 %: a burn rate of 1, so each
        // hour replaces a tenth of the window's good events and spends a tenth of its budget.
        let window = TimeDelta::hours(10);
        let mut samples = hourly(1, 10, 0, 1_000);
        samples.extend(hourly(11, 25, 10, 1_000));
        let points = history(&samples, 0.99, window, &hourly_range(10, 25));
        assert_eq!(points.len(), 16);
        for (s, point) in points.iter().enumerate().take(11) {
            let expected = 1.0 - s as f64 / 10.0;
            assert!(close(point.remaining, expected), "hour {s}: {} != {expected}", point.remaining);
        }
        for pair in points[..11].windows(2) {
            assert!(close(pair[0].remaining - pair[1].remaining, 0.1), "falls by the same step");
        }
        for point in &points[1..] {
            assert!(close(point.consumed, 0.1) && close(point.burn_rate, 1.0), "{point:?}");
        }
        // A window full of 1 % bad: the budget stays spent (1 − the burn rate), neither lower nor
        // higher.
        for point in &points[10..] {
            assert!(close(point.remaining, 0.0), "{point:?}");
        }
        assert_eq!(points[0].time, hour(10));
        assert_eq!(points[15].time, hour(25));
    }

    #[test]
    fn a_burst_rolls_out_of_the_window_after_one_window() {
        // One bad hour (10 % at 99 %) amid good ones; the window is open at its start, so the
        // burst stops counting exactly one window after it ended.
        let window = TimeDelta::hours(6);
        let mut samples = hourly(1, 4, 0, 1_000);
        samples.extend(hourly(5, 5, 100, 1_000));
        samples.extend(hourly(6, 20, 0, 1_000));
        let points = history(&samples, 0.99, window, &hourly_range(4, 20));
        let at = |h: i64| points.iter().find(|p| p.time == hour(h)).unwrap();
        assert_eq!(at(4).remaining, 1.0);
        // 100 bad of 5,000 against a budget of 50: overspent by the budget once more.
        assert!(close(at(5).remaining, -1.0), "{:?}", at(5));
        assert!(close(at(5).burn_rate, 10.0) && close(at(5).consumed, 2.0), "{:?}", at(5));
        // Full windows: a good hour comes in as one goes out, the burst stays until it leaves.
        assert!(close(at(6).remaining, at(10).remaining) && at(10).remaining < 0.0, "{:?}", at(10));
        assert_eq!(at(11).remaining, 1.0, "out of the window 6 h after");
        assert_eq!(at(11).consumed, 0.0);
    }

    #[test]
    fn no_events_no_points() {
        let window = TimeDelta::hours(6);
        assert!(history(&[], 0.99, window, &hourly_range(0, 10)).is_empty());
        // Points whose window saw nothing are left out; the others are there.
        let samples = hourly(8, 8, 0, 100);
        let points = history(&samples, 0.99, window, &hourly_range(0, 20));
        let times: Vec<DateTime<Utc>> = points.iter().map(|p| p.time).collect();
        assert_eq!(times, (8..14).map(hour).collect::<Vec<_>>());
        // A target no budget follows from: no points either.
        assert!(history(&samples, 1.0, window, &hourly_range(0, 20)).is_empty());
        // A step without events burns at 0 while the window still has its budget figure.
        assert_eq!(points[1].burn_rate, 0.0);
    }

    #[test]
    fn the_last_point_is_the_current_budget_to_the_last_bit() {
        // Irregular samples: uneven spacing and volumes, a sample claiming more good than total,
        // one far outside the window.
        let window = TimeDelta::days(3);
        let newest = hour(100);
        let mut samples = vec![
            SliSample { end: hour(1), good: 0, total: 1_000_000 },
            SliSample { end: hour(97) + TimeDelta::seconds(17), good: 12_345, total: 12_400 },
            SliSample { end: hour(99), good: 70, total: 60 },
            SliSample { end: newest, good: 99_871, total: 100_003 },
        ];
        samples.extend((30..96).map(|h| SliSample {
            end: hour(h),
            good: 997 - (h as u64 % 7),
            total: 1_000,
        }));
        let query = HistoryQuery::default();
        let range = query.resolve(window, Some((hour(1), newest)), hour(500)).unwrap();
        assert_eq!(range.end, newest);
        let points = history(&samples, 0.995, window, &range);
        let last = points.last().unwrap();
        assert_eq!(last.time, newest);
        let current = budget_remaining(&samples, 0.995, newest, window).unwrap();
        assert_eq!(last.remaining.to_bits(), current.to_bits(), "{} != {current}", last.remaining);
        // And at every point, not just the last.
        for point in &points {
            let at = budget_remaining(&samples, 0.995, point.time, window).unwrap();
            assert_eq!(point.remaining.to_bits(), at.to_bits(), "at {}", point.time);
        }
    }

    #[test]
    fn ranges_count_back_from_the_end() {
        let range = HistoryRange {
            start: hour(0),
            end: hour(10) + TimeDelta::minutes(30),
            step: TimeDelta::hours(1),
        };
        assert_eq!(range.point_count(), 11);
        let times = range.times();
        assert_eq!(times.len(), 11);
        assert_eq!(times[10], range.end);
        assert_eq!(times[0], hour(0) + TimeDelta::minutes(30), "the first point is not before the start");
        let single = HistoryRange { start: hour(3), end: hour(3), step: TimeDelta::seconds(1) };
        assert_eq!(single.times(), [hour(3)]);
        let huge = HistoryRange { start: hour(0), end: hour(10_000), step: TimeDelta::seconds(1) };
        assert_eq!(huge.times().len(), MAX_POINTS as usize, "never more than the most points");
    }

    #[test]
    fn default_steps_are_round_and_give_60_to_200_points() {
        assert_eq!(default_step(TimeDelta::days(30)), TimeDelta::hours(6));
        assert_eq!(default_step(TimeDelta::days(1)), TimeDelta::minutes(10));
        assert_eq!(default_step(TimeDelta::hours(2)), TimeDelta::minutes(1));
        assert_eq!(default_step(TimeDelta::zero()), TimeDelta::seconds(1));
        for span in [
            TimeDelta::minutes(1),
            TimeDelta::minutes(7),
            TimeDelta::hours(1),
            TimeDelta::hours(2),
            TimeDelta::hours(13),
            TimeDelta::days(1),
            TimeDelta::days(7),
            TimeDelta::days(28),
            TimeDelta::days(30),
            TimeDelta::days(90),
            TimeDelta::days(365),
            TimeDelta::days(400),
            TimeDelta::days(730),
        ] {
            let range = HistoryRange { start: t0(), end: t0() + span, step: default_step(span) };
            let count = range.point_count();
            assert!((60..=200).contains(&count), "{span}: {count} points");
        }
    }

    #[test]
    fn defaults_take_the_current_window_or_the_samples_since_the_first() {
        let window = TimeDelta::days(30);
        let now = hour(10_000);
        // No samples: the window up to now (no points will have a budget).
        let range = HistoryQuery::default().resolve(window, None, now).unwrap();
        assert_eq!((range.start, range.end, range.step), (now - window, now, TimeDelta::hours(6)));
        // Samples older than a window: the window up to the newest.
        let range = HistoryQuery::default().resolve(window, Some((hour(0), hour(5_000))), now).unwrap();
        assert_eq!((range.start, range.end), (hour(5_000) - window, hour(5_000)));
        // A young SLO: from its first sample.
        let range = HistoryQuery::default().resolve(window, Some((hour(4_998), hour(5_000))), now).unwrap();
        assert_eq!((range.start, range.end, range.step), (hour(4_998), hour(5_000), TimeDelta::minutes(1)));
        // One sample: one point.
        let range = HistoryQuery::default().resolve(window, Some((hour(5_000), hour(5_000))), now).unwrap();
        assert_eq!(range.point_count(), 1);
        // An end given: the window before it.
        let query = HistoryQuery { end: Some(hour(3_000)), ..Default::default() };
        let range = query.resolve(window, Some((hour(0), hour(5_000))), now).unwrap();
        assert_eq!((range.start, range.end), (hour(3_000) - window, hour(3_000)));
    }

    #[test]
    fn bad_ranges_and_steps_name_their_fields() {
        let window = TimeDelta::days(30);
        let samples = Some((hour(0), hour(1_000)));
        let now = hour(2_000);
        let resolve = |query: HistoryQuery| query.resolve(window, samples, now).unwrap_err();
        let zero = HistoryQuery { step: Some(TimeDelta::zero()), ..Default::default() };
        assert_eq!(fields(&zero.check()), ["step"]);
        assert_eq!(fields(&resolve(zero)), ["step"]);
        let negative = HistoryQuery { step: Some(TimeDelta::seconds(-60)), ..Default::default() };
        assert_eq!(fields(&resolve(negative)), ["step"]);
        let sub_second = HistoryQuery { step: Some(TimeDelta::milliseconds(500)), ..Default::default() };
        assert_eq!(fields(&resolve(sub_second)), ["step"]);
        let backwards =
            HistoryQuery { start: Some(hour(10)), end: Some(hour(10)), step: Some(TimeDelta::zero()) };
        assert_eq!(fields(&backwards.check()), ["step", "end_time"], "every violation at once");
        // A start after the newest sample (the default end).
        let late = HistoryQuery { start: Some(hour(1_500)), ..Default::default() };
        assert_eq!(fields(&resolve(late)), ["start_time"]);
        // Longer than 400 days (the window is shorter).
        let long = HistoryQuery { start: Some(hour(0) - TimeDelta::days(401)), ..Default::default() };
        assert_eq!(fields(&resolve(long)), ["start_time"]);
        // A day at one point a second: 86,401 points.
        let dense =
            HistoryQuery { start: Some(hour(0)), end: Some(hour(24)), step: Some(TimeDelta::seconds(1)) };
        let violations = resolve(dense);
        assert_eq!(fields(&violations), ["step"]);
        assert!(violations[0].description.contains("86401 points"), "{}", violations[0].description);
        assert!(violations[0].description.contains("at least 87 seconds"), "{}", violations[0].description);
        let ok = HistoryQuery { step: Some(TimeDelta::seconds(87)), ..dense };
        assert_eq!(ok.resolve(window, samples, now).unwrap().point_count(), 994);
        let too_long_step = HistoryQuery { step: Some(TimeDelta::days(500)), ..Default::default() };
        assert_eq!(fields(&resolve(too_long_step)), ["step"]);
    }
}
