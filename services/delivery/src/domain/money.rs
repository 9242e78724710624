//! Money as exact decimals in a validated ISO 4217 currency, and the largest-remainder split that
//! divides an amount into parts which add up to the original to the minor unit (the cent).
//!
//! Amounts are `rust_decimal::Decimal`, never floats: costs must add up exactly, and binary
//! floating point cannot even hold 0.10.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

/// How delivery rounds an amount to its currency's minor unit: half away from zero ("commercial"
/// rounding: 2.345 → 2.35, −2.345 → −2.35), which is what invoices and their readers expect.
/// Banker's rounding would only matter against drift over many roundings, and there is none:
/// every split goes through [`split_largest_remainder`], which conserves the total exactly.
pub const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

/// The largest weight sum the integer split accepts. Keeping the sum (and so every weight) below
/// 2^64 keeps `remainder × weight` below 2^128, which makes the split exact in `u128` for any
/// total (see [`split_units`]).
const MAX_WEIGHT_SUM: u128 = u64::MAX as u128;

/// How far [`integer_weights`] may shift weights to the right before giving up; a `Decimal`
/// mantissa has at most 29 digits, so every weight is zero long before this.
const MIN_WEIGHT_EXPONENT: i64 = -40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}: expected an ISO 4217 code such as EUR")]
    UnknownCurrency(String),
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount { input: String, reason: String },
    #[error("currency mismatch: {left} and {right} cannot be combined without a conversion")]
    CurrencyMismatch { left: String, right: String },
    #[error("amount out of range")]
    Overflow,
    #[error("{0} minor units is more than a decimal can hold (at most 28)")]
    UnsupportedMinorUnits(u32),
    #[error("nothing to split by: the weights are empty")]
    EmptyWeights,
    #[error("weight {index} is negative")]
    NegativeWeight { index: usize },
    #[error("all weights are zero")]
    AllWeightsZero,
    #[error("quantity {0} is negative")]
    NegativeQuantity(Decimal),
    #[error("user count {0} is not a whole number")]
    FractionalUserCount(Decimal),
}

/// A validated ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// The currency with this alphabetic code. Letters may be in either case ("eur" is EUR),
    /// since codes typed into forms and CSV imports are not always upper case.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        iso_currency::Currency::from_code(&code.to_ascii_uppercase())
            .map(Currency)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The upper-case alphabetic code, e.g. "EUR".
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Decimal places of the minor unit: 2 for EUR, 0 for JPY, 3 for BHD. ISO 4217 defines no
    /// minor unit for precious metals, fund and test codes (XAU, XDR, XXX, …); they count as 0,
    /// so amounts in them round to whole units.
    pub fn minor_units(&self) -> u32 {
        self.0.exponent().map_or(0, u32::from)
    }

    /// The underlying `iso_currency` value (name, numeric code, symbol, …).
    pub fn iso(&self) -> iso_currency::Currency {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Currency, MoneyError> {
        Currency::parse(code)
    }
}

/// An exact amount in a currency. The amount may carry more decimals than the currency's minor
/// unit (cloud usage is priced to 10 decimals); [`Money::rounded`] brings it to the minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money { amount: Decimal::ZERO, currency }
    }

    /// Parses a plain decimal ("1234.5", "-0.0000012345") exactly: input that a decimal cannot
    /// hold without rounding (more than 28 decimal places) is an error rather than silently
    /// rounded.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        let currency = Currency::parse(currency)?;
        let amount = Decimal::from_str_exact(amount).map_err(|error| MoneyError::InvalidAmount {
            input: amount.to_owned(),
            reason: error.to_string(),
        })?;
        Ok(Money { amount, currency })
    }

    /// The amount rounded to the currency's minor unit with [`ROUNDING`].
    pub fn rounded(&self) -> Money {
        let amount = self.amount.round_dp_with_strategy(self.currency.minor_units(), ROUNDING);
        Money { amount, currency: self.currency }
    }

    /// The exact sum; amounts in different currencies cannot be added without a conversion.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.require_same_currency(other)?;
        let amount = self.amount.checked_add(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, currency: self.currency })
    }

    /// The exact difference; amounts in different currencies cannot be subtracted.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.require_same_currency(other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, currency: self.currency })
    }

    fn require_same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.code().to_owned(),
                right: other.currency.code().to_owned(),
            })
        }
    }
}

impl fmt::Display for Money {
    /// "1234.50 EUR": padded to the minor unit so amounts line up, but never rounded, so a
    /// fractional rate shows all its digits ("0.0000012345 EUR").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.amount;
        let minor_units = self.currency.minor_units();
        if shown.scale() < minor_units {
            shown.rescale(minor_units);
        }
        write!(f, "{shown} {}", self.currency.code())
    }
}

/// `amount` rounded to `minor_units` decimals with [`ROUNDING`], as a whole number of minor
/// units (EUR 12.345 → 1235). Integer minor units are what the allocation's hot loop adds up.
pub fn round_to_minor_units(amount: Decimal, minor_units: u32) -> Result<i128, MoneyError> {
    check_minor_units(minor_units)?;
    let rounded = amount.round_dp_with_strategy(minor_units, ROUNDING);
    // After rounding the scale is at most `minor_units`; pad the mantissa up to exactly that.
    let missing_digits = minor_units.saturating_sub(rounded.scale());
    let factor = 10_i128.checked_pow(missing_digits).ok_or(MoneyError::Overflow)?;
    rounded.mantissa().checked_mul(factor).ok_or(MoneyError::Overflow)
}

/// A whole number of minor units back as a decimal amount (1235 at 2 → 12.35).
pub fn from_minor_units(units: i128, minor_units: u32) -> Result<Decimal, MoneyError> {
    check_minor_units(minor_units)?;
    Decimal::try_from_i128_with_scale(units, minor_units).map_err(|_| MoneyError::Overflow)
}

fn check_minor_units(minor_units: u32) -> Result<(), MoneyError> {
    if minor_units > Decimal::MAX_SCALE {
        return Err(MoneyError::UnsupportedMinorUnits(minor_units));
    }
    Ok(())
}

/// Splits `total`, first rounded to `minor_units` decimals, into one part per weight,
/// proportional to the weights, each part a whole number of minor units, the parts adding up to
/// the rounded total EXACTLY (Hamilton's largest-remainder method): every exact share is cut
/// down to whole minor units, then the minor units left over go one each to the shares that lost
/// the most, ties to the lower index. A negative total (a credit) is split by its absolute value
/// and the sign put back, so −100.00 in three splits like 100.00 does: −33.34, −33.33, −33.33.
///
/// Weights are compared exactly as long as they fit in 19 significant digits together (their
/// sum on a common decimal scale below 2^64); beyond that their least significant digits are
/// dropped, which can move a part by at most one minor unit and never breaks the exact total.
pub fn split_largest_remainder(
    total: Decimal,
    minor_units: u32,
    weights: &[Decimal],
) -> Result<Vec<Decimal>, MoneyError> {
    let total_units = round_to_minor_units(total, minor_units)?;
    let weights = integer_weights(weights)?;
    let mut ranking = Vec::with_capacity(weights.len());
    let mut shares = Vec::with_capacity(weights.len());
    split_units(total_units, &weights, &mut ranking, &mut shares)?;
    shares.into_iter().map(|units| from_minor_units(units, minor_units)).collect()
}

/// Non-negative decimal weights as integers on one common decimal scale (so their ratios are
/// kept), with a sum of at most `MAX_WEIGHT_SUM`, ready for [`split_units`]. The common scale is
/// the finest scale among the weights when that fits, so ordinary weights stay exact; otherwise
/// it is lowered digit by digit, and a weight tiny against the others can become 0.
pub(crate) fn integer_weights(weights: &[Decimal]) -> Result<Vec<u128>, MoneyError> {
    if weights.is_empty() {
        return Err(MoneyError::EmptyWeights);
    }
    if let Some(index) = weights.iter().position(|weight| *weight < Decimal::ZERO) {
        return Err(MoneyError::NegativeWeight { index });
    }
    if weights.iter().all(Decimal::is_zero) {
        return Err(MoneyError::AllWeightsZero);
    }
    let finest_scale = weights.iter().map(Decimal::scale).max().unwrap_or(0);
    let mut exponent = i64::from(finest_scale);
    while exponent >= MIN_WEIGHT_EXPONENT {
        if let Some(scaled) = weights_at_exponent(weights, exponent) {
            // Lowering the scale one digit at a time stops at the first sum that fits, which is
            // still at least 2^64 / (10 × weights) > 0, so some weight is always left.
            if scaled.iter().all(|weight| *weight == 0) {
                return Err(MoneyError::AllWeightsZero);
            }
            return Ok(scaled);
        }
        exponent -= 1;
    }
    Err(MoneyError::Overflow)
}

/// Every weight as ⌊weight × 10^exponent⌋, or None when one of them or their sum does not fit.
fn weights_at_exponent(weights: &[Decimal], exponent: i64) -> Option<Vec<u128>> {
    let mut sum: u128 = 0;
    let mut scaled = Vec::with_capacity(weights.len());
    for weight in weights {
        let value = scaled_magnitude(*weight, exponent)?;
        sum = sum.checked_add(value).filter(|sum| *sum <= MAX_WEIGHT_SUM)?;
        scaled.push(value);
    }
    Some(scaled)
}

/// ⌊|value| × 10^exponent⌋, or None when it does not fit in a u128.
fn scaled_magnitude(value: Decimal, exponent: i64) -> Option<u128> {
    let mantissa = value.mantissa().unsigned_abs();
    let shift = exponent - i64::from(value.scale());
    if shift >= 0 {
        let factor = 10_u128.checked_pow(u32::try_from(shift).ok()?)?;
        mantissa.checked_mul(factor)
    } else {
        // A divisor beyond u128 (10^39 and up) leaves nothing of a 96-bit mantissa.
        let divisor = u32::try_from(-shift).ok().and_then(|digits| 10_u128.checked_pow(digits));
        Some(divisor.map_or(0, |divisor| mantissa / divisor))
    }
}

/// The largest-remainder split on integers: `total` minor units into `shares` (one per weight,
/// same sign as `total`, adding up to `total` exactly). `ranking` is scratch space, passed in so
/// that a caller splitting millions of times reuses one allocation. The weights must add up to
/// between 1 and `MAX_WEIGHT_SUM` (as [`integer_weights`] guarantees).
pub(crate) fn split_units(
    total: i128,
    weights: &[u128],
    ranking: &mut Vec<(u128, usize)>,
    shares: &mut Vec<i128>,
) -> Result<(), MoneyError> {
    ranking.clear();
    shares.clear();
    let weight_sum = weights
        .iter()
        .try_fold(0_u128, |sum, weight| sum.checked_add(*weight))
        .filter(|sum| *sum <= MAX_WEIGHT_SUM)
        .ok_or(MoneyError::Overflow)?;
    if weight_sum == 0 {
        return Err(MoneyError::AllWeightsZero);
    }
    let magnitude = total.unsigned_abs();
    // magnitude × weight / sum can overflow, so with magnitude = whole × sum + rest it is taken
    // as whole × weight (≤ magnitude, since weight ≤ sum) plus rest × weight / sum, where
    // rest × weight < 2^64 × 2^64 fits. The remainder (rest × weight) mod sum ranks the shares.
    let whole = magnitude / weight_sum;
    let rest = magnitude % weight_sum;
    let mut handed_out: u128 = 0;
    for (index, weight) in weights.iter().enumerate() {
        let scaled_rest = rest * weight;
        let share = whole * weight + scaled_rest / weight_sum;
        handed_out += share;
        shares.push(i128::try_from(share).map_err(|_| MoneyError::Overflow)?);
        ranking.push((scaled_rest % weight_sum, index));
    }
    // The cut-off fractions add up to fewer than one unit per share, so this is < weights.len().
    let leftover = usize::try_from(magnitude - handed_out).map_err(|_| MoneyError::Overflow)?;
    if leftover > 0 {
        let largest_remainder_first =
            |a: &(u128, usize), b: &(u128, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if leftover < ranking.len() {
            // Only which shares are in the top `leftover` matters, not their order: O(n).
            ranking.select_nth_unstable_by(leftover - 1, largest_remainder_first);
        }
        for (_, index) in ranking.iter().take(leftover) {
            if let Some(share) = shares.get_mut(*index) {
                *share += 1;
            }
        }
    }
    if total < 0 {
        shares.iter_mut().for_each(|share| *share = -*share);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn decs(texts: &[&str]) -> Vec<Decimal> {
        texts.iter().map(|text| dec(text)).collect()
    }

    fn split(total: &str, minor_units: u32, weights: &[&str]) -> Vec<String> {
        split_largest_remainder(dec(total), minor_units, &decs(weights))
            .unwrap()
            .iter()
            .map(Decimal::to_string)
            .collect()
    }

    #[test]
    fn currency_knows_its_minor_units() {
        assert_eq!(Currency::parse("EUR").unwrap().minor_units(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("BHD").unwrap().minor_units(), 3);
        // No minor unit in ISO 4217: counted as whole units.
        assert_eq!(Currency::parse("XAU").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("eur").unwrap().code(), "EUR");
        assert_eq!(Currency::parse("EUR").unwrap().to_string(), "EUR");
    }

    #[test]
    fn unknown_currency_is_rejected_with_the_code_given() {
        assert_eq!(Currency::parse("EUX"), Err(MoneyError::UnknownCurrency("EUX".into())));
        assert_eq!(Currency::parse(""), Err(MoneyError::UnknownCurrency(String::new())));
        assert_eq!(Currency::parse("EURO"), Err(MoneyError::UnknownCurrency("EURO".into())));
    }

    #[test]
    fn money_parses_exactly_and_displays_padded_to_the_minor_unit() {
        let money = Money::parse("1234.5", "EUR").unwrap();
        assert_eq!(money.amount, dec("1234.5"));
        assert_eq!(money.to_string(), "1234.50 EUR");
        assert_eq!(Money::parse("-7", "EUR").unwrap().to_string(), "-7.00 EUR");
        assert_eq!(Money::parse("1234", "JPY").unwrap().to_string(), "1234 JPY");
        // Fractional rates keep every digit: displaying never rounds.
        let rate = Money::parse("0.0000012345", "USD").unwrap();
        assert_eq!(rate.to_string(), "0.0000012345 USD");
        assert!(matches!(
            Money::parse("12,50", "EUR"),
            Err(MoneyError::InvalidAmount { input, .. }) if input == "12,50"
        ));
        assert!(matches!(Money::parse("", "EUR"), Err(MoneyError::InvalidAmount { .. })));
        assert_eq!(Money::parse("1", "ZZZ"), Err(MoneyError::UnknownCurrency("ZZZ".into())));
    }

    #[test]
    fn rounding_goes_half_away_from_zero_to_the_minor_unit() {
        let round = |amount: &str, currency: &str| {
            Money::parse(amount, currency).unwrap().rounded().amount.to_string()
        };
        assert_eq!(round("2.345", "EUR"), "2.35");
        assert_eq!(round("-2.345", "EUR"), "-2.35");
        assert_eq!(round("2.344999", "EUR"), "2.34");
        assert_eq!(round("0.125", "EUR"), "0.13"); // banker's rounding would give 0.12
        assert_eq!(round("2.5", "JPY"), "3");
        assert_eq!(round("1.0005", "BHD"), "1.001");
    }

    #[test]
    fn add_and_sub_require_the_same_currency() {
        let a = Money::parse("10.10", "EUR").unwrap();
        let b = Money::parse("0.005", "EUR").unwrap();
        assert_eq!(a.checked_add(&b).unwrap().amount, dec("10.105"));
        assert_eq!(a.checked_sub(&b).unwrap().amount, dec("10.095"));
        let dollars = Money::parse("1", "USD").unwrap();
        let mismatch = MoneyError::CurrencyMismatch { left: "EUR".into(), right: "USD".into() };
        assert_eq!(a.checked_add(&dollars), Err(mismatch.clone()));
        assert_eq!(a.checked_sub(&dollars), Err(mismatch));
        let max = Money::new(Decimal::MAX, a.currency);
        assert_eq!(max.checked_add(&max), Err(MoneyError::Overflow));
    }

    #[test]
    fn minor_unit_conversions_round_and_come_back() {
        assert_eq!(round_to_minor_units(dec("12.345"), 2).unwrap(), 1235);
        assert_eq!(round_to_minor_units(dec("-12.345"), 2).unwrap(), -1235);
        assert_eq!(round_to_minor_units(dec("12"), 2).unwrap(), 1200);
        assert_eq!(round_to_minor_units(dec("12.5"), 0).unwrap(), 13);
        assert_eq!(from_minor_units(1235, 2).unwrap().to_string(), "12.35");
        assert_eq!(from_minor_units(0, 2).unwrap().to_string(), "0.00");
        assert_eq!(round_to_minor_units(dec("1"), 29), Err(MoneyError::UnsupportedMinorUnits(29)));
        assert_eq!(from_minor_units(i128::MAX, 2), Err(MoneyError::Overflow));
    }

    #[test]
    fn hundred_in_three_gives_the_extra_cent_to_the_first() {
        assert_eq!(split("100.00", 2, &["1", "1", "1"]), ["33.34", "33.33", "33.33"]);
        assert_eq!(split("100", 2, &["1", "1", "1"]), ["33.34", "33.33", "33.33"]);
        assert_eq!(split("100", 0, &["1", "1", "1"]), ["34", "33", "33"]);
    }

    #[test]
    fn negative_totals_split_by_absolute_value_with_the_sign_restored() {
        assert_eq!(split("-100.00", 2, &["1", "1", "1"]), ["-33.34", "-33.33", "-33.33"]);
        assert_eq!(split("-10.00", 2, &["1", "2", "3"]), ["-1.67", "-3.33", "-5.00"]);
    }

    #[test]
    fn parts_follow_the_weights_and_leftovers_go_to_the_largest_remainders() {
        // 10.00 × 1/6 = 1.666…, × 2/6 = 3.333…, × 3/6 = 5: the lost cent goes to the first.
        assert_eq!(split("10.00", 2, &["1", "2", "3"]), ["1.67", "3.33", "5.00"]);
        // 1.00 × 2/7 = 0.2857 (remainder .57), × 5/7 = 0.7142 (remainder .42).
        assert_eq!(split("1.00", 2, &["2", "5"]), ["0.29", "0.71"]);
        // Remainders 0.4 / 0.6: the cent goes to the larger remainder, not the lower index.
        assert_eq!(split("0.02", 2, &["1", "4"]), ["0.00", "0.02"]);
        // Equal remainders: lower index first.
        assert_eq!(split("0.05", 2, &["1", "1", "1", "1"]), ["0.02", "0.01", "0.01", "0.01"]);
        assert_eq!(split("0.03", 2, &["0.1", "0.2"]), ["0.01", "0.02"]);
        assert_eq!(split("1.00", 2, &["0", "1"]), ["0.00", "1.00"]);
        assert_eq!(split("0", 2, &["1", "1"]), ["0.00", "0.00"]);
    }

    #[test]
    fn the_total_is_rounded_to_the_minor_unit_before_splitting() {
        assert_eq!(split("10.005", 2, &["1", "1"]), ["5.01", "5.00"]);
        assert_eq!(split("-10.005", 2, &["1", "1"]), ["-5.01", "-5.00"]);
        assert_eq!(split("0.004", 2, &["1", "1"]), ["0.00", "0.00"]);
    }

    #[test]
    fn weights_too_precise_to_fit_lose_only_their_least_significant_digits() {
        let max = Decimal::MAX.to_string();
        assert_eq!(split("1.00", 2, &[max.as_str(), max.as_str()]), ["0.50", "0.50"]);
        assert_eq!(split("1.01", 2, &["0.0000000000000000000000000001", "1"]), ["0.00", "1.01"]);
        let scaled = integer_weights(&decs(&["0.0000000000000000000000000001", "1"])).unwrap();
        assert_eq!(scaled[0], 0);
        assert!(scaled[1] > 0 && scaled[1] <= MAX_WEIGHT_SUM);
        // Ordinary weights stay exact on their finest scale.
        assert_eq!(integer_weights(&decs(&["1.5", "0.25", "2"])).unwrap(), [150, 25, 200]);
    }

    #[test]
    fn split_rejects_bad_weights() {
        let total = dec("1.00");
        assert_eq!(split_largest_remainder(total, 2, &[]), Err(MoneyError::EmptyWeights));
        assert_eq!(
            split_largest_remainder(total, 2, &decs(&["1", "-0.5"])),
            Err(MoneyError::NegativeWeight { index: 1 })
        );
        let zeros = decs(&["0", "0.00"]);
        assert_eq!(split_largest_remainder(total, 2, &zeros), Err(MoneyError::AllWeightsZero));
        assert_eq!(
            split_largest_remainder(total, 29, &decs(&["1"])),
            Err(MoneyError::UnsupportedMinorUnits(29))
        );
    }

    #[test]
    fn split_units_handles_totals_far_beyond_the_weight_sum() {
        let mut ranking = Vec::new();
        let mut shares = Vec::new();
        let big = i128::MAX / 3;
        let weights = [u128::from(u64::MAX) / 2, u128::from(u64::MAX) / 2 - 1, 1];
        split_units(big, &weights, &mut ranking, &mut shares).unwrap();
        assert_eq!(shares.iter().sum::<i128>(), big);
        split_units(-big, &weights, &mut ranking, &mut shares).unwrap();
        assert_eq!(shares.iter().sum::<i128>(), -big);
        assert!(shares.iter().all(|share| *share <= 0));
        assert_eq!(
            split_units(1, &[u128::from(u64::MAX), 1], &mut ranking, &mut shares),
            Err(MoneyError::Overflow)
        );
        let all_zero = split_units(1, &[0], &mut ranking, &mut shares);
        assert_eq!(all_zero, Err(MoneyError::AllWeightsZero));
    }

    /// Against the exact rational shares: every part is a whole number of minor units, within
    /// one unit of its exact share, and the parts add up to the rounded total.
    #[test]
    fn random_splits_conserve_the_total_and_stay_within_one_unit() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..2_000 {
            let minor_units = u32::try_from(next(4)).unwrap();
            let total_units = i128::from(next(2_000_000)) - 1_000_000;
            let total = Decimal::from_i128_with_scale(total_units, minor_units + 1);
            let count = usize::try_from(next(7) + 1).unwrap();
            let mut weights = Vec::with_capacity(count);
            for _ in 0..count {
                weights.push(Decimal::from_i128_with_scale(i128::from(next(1_000)), 2));
            }
            if weights.iter().all(Decimal::is_zero) {
                continue;
            }
            let parts = split_largest_remainder(total, minor_units, &weights).unwrap();
            let rounded = total.round_dp_with_strategy(minor_units, ROUNDING);
            assert_eq!(parts.iter().sum::<Decimal>(), rounded);
            let weight_sum: Decimal = weights.iter().sum();
            let unit = Decimal::from_i128_with_scale(1, minor_units);
            for (part, weight) in parts.iter().zip(&weights) {
                assert!(part.scale() <= minor_units);
                let exact = rounded * weight / weight_sum;
                assert!((*part - exact).abs() < unit, "{part} vs {exact}");
            }
        }
    }
}
