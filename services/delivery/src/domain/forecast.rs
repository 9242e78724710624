//! Capacity management: resource metric samples are downsampled into buckets, rolled up through
//! retention tiers (raw → hourly → daily), summarised as utilisation against a threshold, and
//! forecast to tell when the threshold will be crossed.
//!
//! Forecasting uses Grafana's augurs: an MSTL decomposition with an AutoETS trend model when the
//! series has a season and at least two full seasons of data, plain non-seasonal AutoETS
//! otherwise.

use std::collections::BTreeMap;

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use chrono::{DateTime, TimeDelta, Utc};

/// AutoETS refuses series of six points or fewer (it estimates the level and smoothing
/// parameters plus a margin), so no forecast is attempted below this.
pub const MIN_FORECAST_POINTS: usize = 7;

/// Upper bound on the length of a regular series, so a step far finer than the data (seconds
/// over years) fails instead of allocating gigabytes.
pub const MAX_REGULAR_SERIES_LEN: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("value {value} is not a finite number")]
    NonFiniteValue { value: f64 },
    #[error("series value at index {index} is not a finite number")]
    NonFiniteSeriesValue { index: usize },
    #[error("series has {have} points, forecasting needs at least {need}")]
    TooFewPoints { have: usize, need: usize },
    #[error("forecast horizon must be at least one step")]
    ZeroHorizon,
    #[error("confidence level {level} must lie strictly between 0 and 1")]
    LevelOutOfRange { level: f64 },
    #[error("season length must be at least 1")]
    InvalidSeasonLength,
    #[error("width must be at least one microsecond, got {width}")]
    InvalidWidth { width: TimeDelta },
    #[error("buckets of width {from} cannot be rolled up exactly into width {to}")]
    MisalignedRollUp { from: TimeDelta, to: TimeDelta },
    #[error("timestamp outside the representable range")]
    TimestampOutOfRange,
    #[error("regular series would exceed {limit} points; use a coarser step")]
    SeriesTooLong { limit: usize },
    #[error("invalid retention policy: {reason}")]
    InvalidRetention { reason: String },
    #[error("forecasting model failed: {message}")]
    Model { message: String },
}

// The augurs errors are neither Clone nor PartialEq (one holds a boxed trait object), so only
// their message is kept.
impl From<augurs_mstl::Error> for ForecastError {
    fn from(error: augurs_mstl::Error) -> Self {
        Self::Model { message: error.to_string() }
    }
}

impl From<augurs_ets::Error> for ForecastError {
    fn from(error: augurs_ets::Error) -> Self {
        Self::Model { message: error.to_string() }
    }
}

/// One measurement of a resource metric (CPU %, disk bytes used, …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// Samples aggregated over [start, start + width).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// A multiple of `width` since the Unix epoch.
    pub start: DateTime<Utc>,
    /// Kept on the bucket so a roll-up can check that it merges exactly.
    pub width: TimeDelta,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// Running aggregate of one bucket; keeps the count-weighted sum so merging stays exact.
#[derive(Debug, Clone, Copy)]
struct Accumulator {
    count: u64,
    min: f64,
    max: f64,
    weighted_sum: f64,
}

impl Accumulator {
    fn empty() -> Self {
        Self { count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, weighted_sum: 0.0 }
    }

    fn add(&mut self, count: u64, min: f64, max: f64, mean: f64) {
        self.count = self.count.saturating_add(count);
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.weighted_sum += mean * count as f64;
    }

    fn into_bucket(self, start_micros: i64, width: TimeDelta) -> Result<Bucket, ForecastError> {
        let start =
            DateTime::from_timestamp_micros(start_micros).ok_or(ForecastError::TimestampOutOfRange)?;
        Ok(Bucket {
            start,
            width,
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.weighted_sum / self.count as f64,
        })
    }
}

fn width_micros(width: TimeDelta) -> Result<i64, ForecastError> {
    match width.num_microseconds() {
        Some(micros) if micros > 0 => Ok(micros),
        _ => Err(ForecastError::InvalidWidth { width }),
    }
}

/// Floor to a multiple of the width (Euclidean, so times before 1970 also round down).
fn aligned_start_micros(at: DateTime<Utc>, width_micros: i64) -> i64 {
    at.timestamp_micros().div_euclid(width_micros) * width_micros
}

/// Aggregates samples into buckets of `width` aligned to the Unix epoch, sorted by start.
/// Samples need not be sorted; their values are assumed finite (see [`validate_sample`]).
pub fn downsample(samples: &[Sample], width: TimeDelta) -> Result<Vec<Bucket>, ForecastError> {
    let width_us = width_micros(width)?;
    let mut by_start: BTreeMap<i64, Accumulator> = BTreeMap::new();
    for sample in samples {
        by_start.entry(aligned_start_micros(sample.at, width_us)).or_insert_with(Accumulator::empty).add(
            1,
            sample.value,
            sample.value,
            sample.value,
        );
    }
    by_start.into_iter().map(|(start_us, acc)| acc.into_bucket(start_us, width)).collect()
}

/// Merges finer buckets into buckets of `width` (count-weighted mean, min of mins, max of
/// maxes), sorted by start. Exact only if every bucket lies wholly inside one coarse bucket, so
/// `width` must be a multiple of each bucket's width and each bucket must be aligned to its own
/// width; otherwise [`ForecastError::MisalignedRollUp`]. Empty buckets are dropped.
pub fn roll_up(buckets: &[Bucket], width: TimeDelta) -> Result<Vec<Bucket>, ForecastError> {
    let width_us = width_micros(width)?;
    let mut by_start: BTreeMap<i64, Accumulator> = BTreeMap::new();
    for bucket in buckets.iter().filter(|bucket| bucket.count > 0) {
        let fine_us = width_micros(bucket.width)?;
        let start_us = bucket.start.timestamp_micros();
        if width_us % fine_us != 0 || start_us.rem_euclid(fine_us) != 0 {
            return Err(ForecastError::MisalignedRollUp { from: bucket.width, to: width });
        }
        by_start.entry(start_us.div_euclid(width_us) * width_us).or_insert_with(Accumulator::empty).add(
            bucket.count,
            bucket.min,
            bucket.max,
            bucket.mean,
        );
    }
    by_start.into_iter().map(|(start_us, acc)| acc.into_bucket(start_us, width)).collect()
}

/// Only finite values are stored: one NaN would poison every mean and forecast built on it.
pub fn validate_sample(value: f64) -> Result<(), ForecastError> {
    if value.is_finite() { Ok(()) } else { Err(ForecastError::NonFiniteValue { value }) }
}

/// How long data of one resolution is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionTier {
    /// Bucket width; zero means raw samples.
    pub width: TimeDelta,
    /// Data at least this old has left the tier (exclusive bound, measured from now).
    pub keep_for: TimeDelta,
}

/// Resolutions from finest to coarsest; older data lives only in coarser tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub tiers: Vec<RetentionTier>,
}

impl Default for RetentionPolicy {
    /// Raw for 7 days, hourly for 90 days, daily for 2 years.
    fn default() -> Self {
        Self {
            tiers: vec![
                RetentionTier { width: TimeDelta::zero(), keep_for: TimeDelta::days(7) },
                RetentionTier { width: TimeDelta::hours(1), keep_for: TimeDelta::days(90) },
                RetentionTier { width: TimeDelta::days(1), keep_for: TimeDelta::days(730) },
            ],
        }
    }
}

impl RetentionPolicy {
    /// At least one tier; widths strictly increase (only the first may be zero = raw) and each
    /// is a multiple of the previous non-raw width, so roll-ups are exact; keep_for is positive
    /// and strictly increases, so every coarser tier outlives the finer one.
    pub fn validate(&self) -> Result<(), ForecastError> {
        let invalid = |reason: String| ForecastError::InvalidRetention { reason };
        if self.tiers.is_empty() {
            return Err(invalid("at least one tier is needed".to_owned()));
        }
        let mut previous: Option<&RetentionTier> = None;
        for (index, tier) in self.tiers.iter().enumerate() {
            if tier.keep_for <= TimeDelta::zero() {
                return Err(invalid(format!("tier {index}: keep_for must be positive")));
            }
            if tier.width < TimeDelta::zero() {
                return Err(invalid(format!("tier {index}: width must not be negative")));
            }
            let width_us = if tier.width.is_zero() {
                None
            } else {
                let micros = width_micros(tier.width)
                    .map_err(|_| invalid(format!("tier {index}: width must be at least one microsecond")))?;
                Some(micros)
            };
            if let Some(previous) = previous {
                if tier.width <= previous.width {
                    return Err(invalid(format!("tier {index}: widths must strictly increase")));
                }
                if tier.keep_for <= previous.keep_for {
                    return Err(invalid(format!("tier {index}: keep_for must strictly increase")));
                }
                let previous_us = previous.width.num_microseconds().filter(|&us| us > 0);
                if let (Some(previous_us), Some(width_us)) = (previous_us, width_us)
                    && width_us % previous_us != 0
                {
                    return Err(invalid(format!(
                        "tier {index}: width must be a multiple of the previous tier's width"
                    )));
                }
            }
            previous = Some(tier);
        }
        Ok(())
    }

    /// Index of the finest tier that still keeps data from `at` (age = now − at; a tier keeps
    /// ages strictly below its keep_for). None = older than every tier, so delete it. Future
    /// timestamps count as fresh. Assumes [`RetentionPolicy::validate`] passed.
    pub fn tier_for(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<usize> {
        let age = now.signed_duration_since(at);
        self.tiers.iter().position(|tier| age < tier.keep_for)
    }
}

/// One value per `step` from the earliest bucket's start to the latest, using bucket means;
/// gaps are filled by linear interpolation between the neighbouring known values, because
/// forecasting models need evenly spaced input. Bucket starts off the step grid go to the
/// nearest slot; buckets sharing a slot are merged count-weighted. Empty buckets are ignored.
pub fn regular_series(buckets: &[Bucket], step: TimeDelta) -> Result<Vec<f64>, ForecastError> {
    let step_us = i128::from(width_micros(step)?);
    let filled: Vec<&Bucket> = buckets.iter().filter(|bucket| bucket.count > 0).collect();
    let Some(first_us) = filled.iter().map(|bucket| bucket.start.timestamp_micros()).min() else {
        return Ok(Vec::new());
    };
    // slot -> (count-weighted sum of means, count)
    let mut slots: BTreeMap<usize, (f64, u64)> = BTreeMap::new();
    for bucket in filled {
        // i128: two extreme timestamps can differ by more than i64 microseconds.
        let offset_us = i128::from(bucket.start.timestamp_micros()) - i128::from(first_us);
        let slot = usize::try_from((offset_us + step_us / 2) / step_us)
            .ok()
            .filter(|&slot| slot < MAX_REGULAR_SERIES_LEN)
            .ok_or(ForecastError::SeriesTooLong { limit: MAX_REGULAR_SERIES_LEN })?;
        let entry = slots.entry(slot).or_insert((0.0, 0));
        entry.0 += bucket.mean * bucket.count as f64;
        entry.1 = entry.1.saturating_add(bucket.count);
    }
    let len = slots.keys().next_back().map_or(0, |last| last + 1);
    let mut series = Vec::with_capacity(len);
    let mut previous: Option<(usize, f64)> = None;
    for (&slot, &(weighted_sum, count)) in &slots {
        let value = weighted_sum / count as f64;
        if let Some((previous_slot, previous_value)) = previous {
            let span = (slot - previous_slot) as f64;
            for missing in (previous_slot + 1)..slot {
                let fraction = (missing - previous_slot) as f64 / span;
                series.push(previous_value + (value - previous_value) * fraction);
            }
        }
        series.push(value);
        previous = Some((slot, value));
    }
    Ok(series)
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRequest {
    /// Evenly spaced values, oldest first (see [`regular_series`]).
    pub series: Vec<f64>,
    /// Steps per season (e.g. 24 for hourly data with a daily cycle). Used only when the series
    /// holds at least two full seasons; otherwise the forecast is non-seasonal.
    pub season_length: Option<usize>,
    /// Steps to forecast.
    pub horizon: usize,
    /// Prediction interval coverage, strictly between 0 and 1 (e.g. 0.95).
    pub level: f64,
}

/// Values for steps 1..=horizon after the end of the series.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub level: f64,
    /// Whether a seasonal model was used (false when no season was given or data was too short).
    pub seasonal: bool,
}

/// Forecasts `horizon` steps with prediction intervals at `level`.
///
/// Errors: horizon 0, level outside (0, 1), a non-finite value, season length 0, fewer than
/// [`MIN_FORECAST_POINTS`] values, or a failure inside the model.
pub fn forecast(request: &ForecastRequest) -> Result<Forecast, ForecastError> {
    if request.horizon == 0 {
        return Err(ForecastError::ZeroHorizon);
    }
    // Written as a positive check so NaN is rejected too.
    let level_valid = request.level > 0.0 && request.level < 1.0;
    if !level_valid {
        return Err(ForecastError::LevelOutOfRange { level: request.level });
    }
    if let Some(index) = request.series.iter().position(|value| !value.is_finite()) {
        return Err(ForecastError::NonFiniteSeriesValue { index });
    }
    if request.season_length == Some(0) {
        return Err(ForecastError::InvalidSeasonLength);
    }
    let have = request.series.len();
    if have < MIN_FORECAST_POINTS {
        return Err(ForecastError::TooFewPoints { have, need: MIN_FORECAST_POINTS });
    }
    if is_flat(&request.series) {
        return Ok(flat_forecast(request));
    }
    // MSTL needs two full seasons to separate season from trend; a period of 1 is no season.
    let period = request.season_length.filter(|&period| period >= 2 && have / 2 >= period);
    let raw = match period {
        Some(period) => {
            let trend_model = AutoETS::non_seasonal().into_trend_model();
            let fitted = MSTLModel::new(vec![period], trend_model).fit(request.series.as_slice())?;
            fitted.predict(request.horizon, Some(request.level))?
        }
        None => {
            let fitted = AutoETS::non_seasonal().fit(request.series.as_slice())?;
            fitted.predict(request.horizon, Some(request.level))?
        }
    };
    into_forecast(raw, request, period.is_some())
}

fn is_flat(series: &[f64]) -> bool {
    series.windows(2).all(|pair| pair[0] == pair[1])
}

/// A constant metric (e.g. a fixed reservation) gives ETS zero variance to estimate, which is
/// numerically degenerate; the exact forecast is the constant with zero-width intervals.
fn flat_forecast(request: &ForecastRequest) -> Forecast {
    let value = request.series.first().copied().unwrap_or_default();
    let values = vec![value; request.horizon];
    Forecast {
        point: values.clone(),
        lower: values.clone(),
        upper: values,
        level: request.level,
        seasonal: false,
    }
}

fn into_forecast(
    raw: augurs_core::Forecast,
    request: &ForecastRequest,
    seasonal: bool,
) -> Result<Forecast, ForecastError> {
    let model_error = |message: &str| ForecastError::Model { message: message.to_owned() };
    let Some(intervals) = raw.intervals else {
        return Err(model_error("model returned no prediction intervals"));
    };
    let horizon = request.horizon;
    if raw.point.len() != horizon || intervals.lower.len() != horizon || intervals.upper.len() != horizon {
        return Err(model_error("model returned a forecast of the wrong length"));
    }
    let all_finite = raw.point.iter().chain(&intervals.lower).chain(&intervals.upper).all(|v| v.is_finite());
    if !all_finite {
        return Err(model_error("model returned non-finite values"));
    }
    // Bounds are widened to contain the point so crossing steps stay ordered
    // (earliest <= expected <= latest) even if the model's rounding says otherwise.
    let lower = intervals.lower.iter().zip(&raw.point).map(|(lower, point)| lower.min(*point)).collect();
    let upper = intervals.upper.iter().zip(&raw.point).map(|(upper, point)| upper.max(*point)).collect();
    Ok(Forecast { point: raw.point, lower, upper, level: request.level, seasonal })
}

/// Steps ahead (1-based) at which a forecast first reaches (>=) a threshold; None where it does
/// not within the horizon. Only upward crossings are looked for: forecast "used", not "free".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdCrossing {
    /// First step where the upper bound reaches the threshold (pessimistic).
    pub earliest: Option<usize>,
    /// First step where the point forecast reaches the threshold.
    pub expected: Option<usize>,
    /// First step where the lower bound reaches the threshold (optimistic).
    pub latest: Option<usize>,
}

pub fn threshold_crossing(forecast: &Forecast, threshold: f64) -> ThresholdCrossing {
    let first_reaching =
        |values: &[f64]| values.iter().position(|&value| value >= threshold).map(|index| index + 1);
    ThresholdCrossing {
        earliest: first_reaching(&forecast.upper),
        expected: first_reaching(&forecast.point),
        latest: first_reaching(&forecast.lower),
    }
}

/// A capacity warning is due once the pessimistic crossing is within `lead_steps`, leaving time
/// to add capacity before the likely crossing.
pub fn warning_due(crossing: &ThresholdCrossing, lead_steps: usize) -> bool {
    crossing.earliest.is_some_and(|step| step <= lead_steps)
}

/// Utilisation over a set of buckets against a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Utilisation {
    /// Mean of all underlying samples (count-weighted, so independent of the bucketing).
    pub mean: f64,
    /// Highest sample (max of bucket maxes).
    pub peak: f64,
    /// 95th percentile (nearest rank) of bucket means: the sustained high level, not a spike.
    pub p95: f64,
    /// Share (0..=1) of buckets whose max was at or above the threshold.
    pub over_threshold_share: f64,
    /// Number of underlying samples.
    pub samples: u64,
}

/// None when there are no non-empty buckets. Empty buckets are ignored.
pub fn utilisation(buckets: &[Bucket], threshold: f64) -> Option<Utilisation> {
    let filled: Vec<&Bucket> = buckets.iter().filter(|bucket| bucket.count > 0).collect();
    if filled.is_empty() {
        return None;
    }
    let samples = filled.iter().fold(0_u64, |sum, bucket| sum.saturating_add(bucket.count));
    let weighted_sum: f64 = filled.iter().map(|bucket| bucket.mean * bucket.count as f64).sum();
    let peak = filled.iter().map(|bucket| bucket.max).fold(f64::NEG_INFINITY, f64::max);
    let mut means: Vec<f64> = filled.iter().map(|bucket| bucket.mean).collect();
    means.sort_by(f64::total_cmp);
    let over = filled.iter().filter(|bucket| bucket.max >= threshold).count();
    Some(Utilisation {
        mean: weighted_sum / samples as f64,
        peak,
        p95: nearest_rank(&means, 0.95)?,
        over_threshold_share: over as f64 / filled.len() as f64,
        samples,
    })
}

/// The smallest value with at least `quantile` of the sorted values at or below it.
fn nearest_rank(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    /// Deterministic pseudo-noise (Knuth's MMIX LCG), so tests need no rand crate.
    struct Lcg(u64);

    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1_u64 << 53) as f64
        }

        /// Uniform in [-amplitude, amplitude).
        fn noise(&mut self, amplitude: f64) -> f64 {
            (self.unit() * 2.0 - 1.0) * amplitude
        }
    }

    fn linear_series(len: usize, noise: f64) -> Vec<f64> {
        let mut lcg = Lcg(42);
        (0..len).map(|t| 50.0 + 0.5 * t as f64 + lcg.noise(noise)).collect()
    }

    fn request(series: Vec<f64>, season_length: Option<usize>, horizon: usize) -> ForecastRequest {
        ForecastRequest { series, season_length, horizon, level: 0.95 }
    }

    fn assert_ordered(forecast: &Forecast) {
        for step in 0..forecast.point.len() {
            assert!(forecast.lower[step] <= forecast.point[step], "lower > point at {step}");
            assert!(forecast.point[step] <= forecast.upper[step], "point > upper at {step}");
        }
    }

    #[test]
    fn downsample_aligns_to_epoch_and_aggregates() {
        let day = 20_000 * DAY;
        let samples = [
            Sample { at: at(day + HOUR + 59), value: 4.0 },
            Sample { at: at(day + 10), value: 1.0 },
            Sample { at: at(day + HOUR), value: 8.0 }, // exactly on a boundary: next bucket
            Sample { at: at(day + HOUR - 1), value: 3.0 },
            Sample { at: at(-HOUR / 2), value: 7.0 }, // before 1970 rounds down, not toward zero
        ];
        let buckets = downsample(&samples, TimeDelta::hours(1)).unwrap();
        assert_eq!(buckets.len(), 3);

        assert_eq!(buckets[0].start, at(-HOUR));
        assert_eq!(buckets[0].count, 1);

        assert_eq!(buckets[1].start, at(day));
        assert_eq!(buckets[1].width, TimeDelta::hours(1));
        assert_eq!((buckets[1].count, buckets[1].min, buckets[1].max), (2, 1.0, 3.0));
        assert!((buckets[1].mean - 2.0).abs() < 1e-12);

        assert_eq!(buckets[2].start, at(day + HOUR));
        assert_eq!((buckets[2].count, buckets[2].min, buckets[2].max), (2, 4.0, 8.0));
        assert!((buckets[2].mean - 6.0).abs() < 1e-12);
    }

    #[test]
    fn downsample_rejects_non_positive_width() {
        let samples = [Sample { at: at(0), value: 1.0 }];
        assert!(matches!(downsample(&samples, TimeDelta::zero()), Err(ForecastError::InvalidWidth { .. })));
        assert!(downsample(&[], TimeDelta::hours(1)).unwrap().is_empty());
    }

    #[test]
    fn roll_up_of_hourly_equals_direct_daily_downsample() {
        // Three and a half days of irregular samples starting at an unaligned time.
        let mut lcg = Lcg(7);
        let mut samples = Vec::new();
        let mut seconds = 19_800 * DAY + 5 * HOUR + 13 * 60;
        while seconds < 19_803 * DAY + 17 * HOUR {
            samples.push(Sample { at: at(seconds), value: 40.0 + lcg.noise(30.0) });
            seconds += 300 + (lcg.unit() * 600.0) as i64;
        }
        samples.reverse(); // order must not matter

        let hourly = downsample(&samples, TimeDelta::hours(1)).unwrap();
        let rolled = roll_up(&hourly, TimeDelta::days(1)).unwrap();
        let direct = downsample(&samples, TimeDelta::days(1)).unwrap();

        assert_eq!(rolled.len(), 4);
        assert_eq!(rolled.len(), direct.len());
        for (rolled, direct) in rolled.iter().zip(&direct) {
            assert_eq!(rolled.start, direct.start);
            assert_eq!(rolled.width, TimeDelta::days(1));
            assert_eq!(rolled.count, direct.count);
            assert_eq!(rolled.min, direct.min);
            assert_eq!(rolled.max, direct.max);
            assert!((rolled.mean - direct.mean).abs() < 1e-9, "{} vs {}", rolled.mean, direct.mean);
        }
        let total: u64 = rolled.iter().map(|bucket| bucket.count).sum();
        assert_eq!(total, samples.len() as u64);
    }

    #[test]
    fn roll_up_refuses_widths_that_would_split_buckets() {
        let samples = [Sample { at: at(HOUR), value: 1.0 }];
        let hourly = downsample(&samples, TimeDelta::hours(1)).unwrap();
        assert_eq!(
            roll_up(&hourly, TimeDelta::minutes(90)),
            Err(ForecastError::MisalignedRollUp { from: TimeDelta::hours(1), to: TimeDelta::minutes(90) })
        );
    }

    #[test]
    fn default_retention_is_valid_and_selects_tiers_at_boundaries() {
        let policy = RetentionPolicy::default();
        policy.validate().unwrap();
        let now = at(20_000 * DAY);
        let aged = |seconds: i64| now - TimeDelta::seconds(seconds);

        assert_eq!(policy.tier_for(now + TimeDelta::hours(1), now), Some(0));
        assert_eq!(policy.tier_for(now, now), Some(0));
        assert_eq!(policy.tier_for(aged(7 * DAY - 1), now), Some(0));
        assert_eq!(policy.tier_for(aged(7 * DAY), now), Some(1));
        assert_eq!(policy.tier_for(aged(90 * DAY - 1), now), Some(1));
        assert_eq!(policy.tier_for(aged(90 * DAY), now), Some(2));
        assert_eq!(policy.tier_for(aged(730 * DAY - 1), now), Some(2));
        assert_eq!(policy.tier_for(aged(730 * DAY), now), None);
    }

    #[test]
    fn retention_validation_rejects_bad_policies() {
        let tier = |width: TimeDelta, days: i64| RetentionTier { width, keep_for: TimeDelta::days(days) };
        let invalid = |tiers: Vec<RetentionTier>| {
            matches!(RetentionPolicy { tiers }.validate(), Err(ForecastError::InvalidRetention { .. }))
        };
        assert!(invalid(vec![]));
        assert!(invalid(vec![tier(TimeDelta::zero(), 0)]));
        assert!(invalid(vec![tier(TimeDelta::hours(-1), 7)]));
        // widths not increasing
        assert!(invalid(vec![tier(TimeDelta::hours(1), 7), tier(TimeDelta::hours(1), 90)]));
        assert!(invalid(vec![tier(TimeDelta::zero(), 7), tier(TimeDelta::zero(), 90)]));
        // keep_for not increasing
        assert!(invalid(vec![tier(TimeDelta::zero(), 90), tier(TimeDelta::hours(1), 7)]));
        // daily is not a multiple of 7 hours, so a roll-up would split buckets
        assert!(invalid(vec![tier(TimeDelta::hours(7), 7), tier(TimeDelta::days(1), 90)]));

        let valid =
            RetentionPolicy { tiers: vec![tier(TimeDelta::minutes(5), 2), tier(TimeDelta::hours(1), 30)] };
        assert_eq!(valid.validate(), Ok(()));
    }

    #[test]
    fn validate_sample_accepts_only_finite_values() {
        assert_eq!(validate_sample(42.5), Ok(()));
        assert_eq!(validate_sample(-1.0), Ok(()));
        assert!(matches!(validate_sample(f64::NAN), Err(ForecastError::NonFiniteValue { .. })));
        assert_eq!(
            validate_sample(f64::INFINITY),
            Err(ForecastError::NonFiniteValue { value: f64::INFINITY })
        );
        assert!(validate_sample(f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn regular_series_interpolates_across_a_gap() {
        let bucket = |hour: i64, mean: f64| Bucket {
            start: at(20_000 * DAY + hour * HOUR),
            width: TimeDelta::hours(1),
            count: 3,
            min: mean - 1.0,
            max: mean + 1.0,
            mean,
        };
        let empty = Bucket { count: 0, ..bucket(9, 999.0) };
        // Unsorted, with hours 2 and 3 missing and an empty bucket past the end.
        let buckets = [bucket(4, 50.0), bucket(0, 10.0), empty, bucket(1, 20.0)];
        let series = regular_series(&buckets, TimeDelta::hours(1)).unwrap();
        assert_eq!(series.len(), 5);
        for (value, expected) in series.iter().zip([10.0, 20.0, 30.0, 40.0, 50.0]) {
            assert!((value - expected).abs() < 1e-12, "{series:?}");
        }

        assert!(regular_series(&[], TimeDelta::hours(1)).unwrap().is_empty());
        assert!(matches!(
            regular_series(&buckets, TimeDelta::zero()),
            Err(ForecastError::InvalidWidth { .. })
        ));
        let years_apart = [bucket(0, 1.0), bucket(2 * 365 * 24, 2.0)];
        assert_eq!(
            regular_series(&years_apart, TimeDelta::seconds(1)),
            Err(ForecastError::SeriesTooLong { limit: MAX_REGULAR_SERIES_LEN })
        );
    }

    #[test]
    fn forecast_follows_a_linear_trend() {
        let len = 120;
        let horizon = 24;
        let result = forecast(&request(linear_series(len, 0.2), None, horizon)).unwrap();
        assert!(!result.seasonal);
        assert_eq!(result.level, 0.95);
        assert_eq!(result.point.len(), horizon);
        assert_eq!(result.lower.len(), horizon);
        assert_eq!(result.upper.len(), horizon);
        assert_ordered(&result);
        for step in 1..=horizon {
            let truth = 50.0 + 0.5 * (len + step - 1) as f64;
            let point = result.point[step - 1];
            assert!(((point - truth) / truth).abs() < 0.03, "step {step}: forecast {point}, truth {truth}");
        }
    }

    #[test]
    fn forecast_tracks_a_seasonal_shape() {
        let period = 24;
        let seasons = 10;
        let truth = |t: usize| {
            let phase = 2.0 * std::f64::consts::PI * (t % period) as f64 / period as f64;
            100.0 + 0.05 * t as f64 + 10.0 * phase.sin()
        };
        let mut lcg = Lcg(2024);
        let len = period * seasons;
        let series: Vec<f64> = (0..len).map(|t| truth(t) + lcg.noise(0.5)).collect();

        let result = forecast(&request(series, Some(period), period)).unwrap();
        assert!(result.seasonal);
        assert_eq!(result.point.len(), period);
        assert_ordered(&result);

        let expected: Vec<f64> = (len..len + period).map(truth).collect();
        let argmax =
            |values: &[f64]| (0..values.len()).max_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap();
        let argmin =
            |values: &[f64]| (0..values.len()).min_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap();
        let circular_distance = |a: usize, b: usize| {
            let d = a.abs_diff(b);
            d.min(period - d)
        };
        let (peak, true_peak) = (argmax(&result.point), argmax(&expected));
        assert!(circular_distance(peak, true_peak) <= 1, "peak at {peak}, truth at {true_peak}");
        let (trough, true_trough) = (argmin(&result.point), argmin(&expected));
        assert!(circular_distance(trough, true_trough) <= 1, "trough at {trough}, truth {true_trough}");

        // A forecast ignoring the season would be off by ~6.4 on average (10 · 2/π).
        let mean_abs_error: f64 =
            result.point.iter().zip(&expected).map(|(p, e)| (p - e).abs()).sum::<f64>() / period as f64;
        assert!(mean_abs_error < 1.5, "mean absolute error {mean_abs_error}");
    }

    #[test]
    fn forecast_falls_back_to_non_seasonal_when_shorter_than_two_seasons() {
        let result = forecast(&request(linear_series(30, 0.2), Some(24), 5)).unwrap();
        assert!(!result.seasonal);
        assert_eq!(result.point.len(), 5);
        assert_ordered(&result);
    }

    #[test]
    fn forecast_of_a_flat_series_is_flat() {
        let result = forecast(&request(vec![42.0; 20], Some(4), 6)).unwrap();
        assert_eq!(result.point, vec![42.0; 6]);
        assert_eq!(result.lower, vec![42.0; 6]);
        assert_eq!(result.upper, vec![42.0; 6]);
        assert!(!result.seasonal);
    }

    #[test]
    fn threshold_crossing_of_a_trend_matches_the_analytic_step() {
        // 50 + 0.5·t for t = 0..120; step h is t = 119 + h, which reaches 120 first at h = 21.
        let threshold = 120.0;
        let analytic = 21;
        let result = forecast(&request(linear_series(120, 0.2), None, 48)).unwrap();
        let crossing = threshold_crossing(&result, threshold);

        let expected = crossing.expected.unwrap();
        assert!(expected.abs_diff(analytic) <= 2, "expected crossing at {expected}");
        let earliest = crossing.earliest.unwrap();
        assert!(earliest <= expected);
        if let Some(latest) = crossing.latest {
            assert!(expected <= latest);
        }
        assert!(warning_due(&crossing, 30));
        assert!(!warning_due(&crossing, 0));
    }

    #[test]
    fn threshold_crossing_reads_each_band() {
        let forecast = Forecast {
            point: vec![1.0, 2.0, 3.0, 4.0, 5.0],
            lower: vec![0.0, 1.0, 2.0, 3.0, 4.0],
            upper: vec![2.0, 3.0, 4.0, 5.0, 6.0],
            level: 0.9,
            seasonal: false,
        };
        assert_eq!(
            threshold_crossing(&forecast, 4.0),
            ThresholdCrossing { earliest: Some(3), expected: Some(4), latest: Some(5) }
        );
        assert_eq!(
            threshold_crossing(&forecast, 5.5),
            ThresholdCrossing { earliest: Some(5), expected: None, latest: None }
        );
        assert_eq!(
            threshold_crossing(&forecast, 10.0),
            ThresholdCrossing { earliest: None, expected: None, latest: None }
        );
    }

    #[test]
    fn warning_is_due_when_the_earliest_crossing_is_within_the_lead() {
        let crossing = ThresholdCrossing { earliest: Some(3), expected: Some(6), latest: None };
        assert!(warning_due(&crossing, 3));
        assert!(warning_due(&crossing, 10));
        assert!(!warning_due(&crossing, 2));
        let never = ThresholdCrossing { earliest: None, expected: None, latest: None };
        assert!(!warning_due(&never, usize::MAX));
    }

    #[test]
    fn forecast_rejects_bad_requests() {
        assert_eq!(
            forecast(&request(vec![1.0, 2.0, 3.0, 4.0, 5.0], None, 3)),
            Err(ForecastError::TooFewPoints { have: 5, need: MIN_FORECAST_POINTS })
        );
        assert_eq!(
            forecast(&request(vec![1.0, 2.0, 3.0], Some(24), 3)),
            Err(ForecastError::TooFewPoints { have: 3, need: MIN_FORECAST_POINTS })
        );
        assert_eq!(forecast(&request(linear_series(20, 0.0), None, 0)), Err(ForecastError::ZeroHorizon));
        for level in [0.0, 1.0, -0.5, 95.0, f64::NAN] {
            let bad = ForecastRequest { level, ..request(linear_series(20, 0.0), None, 3) };
            assert!(
                matches!(forecast(&bad), Err(ForecastError::LevelOutOfRange { .. })),
                "level {level} accepted"
            );
        }
        let mut series = linear_series(20, 0.0);
        series[7] = f64::NAN;
        assert_eq!(
            forecast(&request(series, None, 3)),
            Err(ForecastError::NonFiniteSeriesValue { index: 7 })
        );
        assert_eq!(
            forecast(&request(linear_series(20, 0.0), Some(0), 3)),
            Err(ForecastError::InvalidSeasonLength)
        );
        let message = ForecastError::TooFewPoints { have: 5, need: 7 }.to_string();
        assert!(message.contains("at least 7"), "{message}");
    }

    #[test]
    fn utilisation_summarises_buckets() {
        let bucket = |count: u64, min: f64, max: f64, mean: f64| Bucket {
            start: at(0),
            width: TimeDelta::hours(1),
            count,
            min,
            max,
            mean,
        };
        let buckets = [
            bucket(2, 10.0, 30.0, 20.0),
            bucket(1, 50.0, 50.0, 50.0),
            bucket(0, 0.0, 1000.0, 1000.0), // empty: ignored
            bucket(1, 70.0, 90.0, 80.0),
        ];
        let summary = utilisation(&buckets, 50.0).unwrap();
        assert!((summary.mean - 42.5).abs() < 1e-12); // (2·20 + 50 + 80) / 4
        assert_eq!(summary.peak, 90.0);
        assert_eq!(summary.p95, 80.0);
        assert!((summary.over_threshold_share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(summary.samples, 4);

        assert_eq!(utilisation(&[], 50.0), None);
        assert_eq!(utilisation(&[bucket(0, 0.0, 0.0, 0.0)], 50.0), None);
    }

    #[test]
    fn utilisation_p95_uses_nearest_rank() {
        let buckets: Vec<Bucket> = (1..=20)
            .map(|i| {
                let value = f64::from(i);
                Bucket {
                    start: at(0),
                    width: TimeDelta::hours(1),
                    count: 1,
                    min: value,
                    max: value,
                    mean: value,
                }
            })
            .collect();
        let summary = utilisation(&buckets, 100.0).unwrap();
        assert_eq!(summary.p95, 19.0);
        assert_eq!(summary.over_threshold_share, 0.0);
        assert!((summary.mean - 10.5).abs() < 1e-12);
    }
}
