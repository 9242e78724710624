#![no_main]
//! FOCUS billing CSV: `itsm_delivery::domain::focus::parse` over the raw bytes (it takes any
//! `Read`; UTF-8 is checked per cell), with the version detected from the header.
//!
//! Beyond "does not panic":
//! - every data record is either a row or a rejection (`rows + rejected == data_lines`), and
//!   there are no more records than line ends;
//! - naming the detected version explicitly gives the same result; a file refused with the
//!   version detected is refused with a version given too;
//! - an accepted row holds what the parser promised: periods that do not end before they
//!   start, an upper-case currency, required texts present and trimmed, no `NULL` literal kept;
//! - a rejection says why.

use itsm_delivery::domain::focus::{self, FocusVersion};
use libfuzzer_sys::fuzz_target;

fn check_text(text: &str, what: &str) {
    assert!(!text.is_empty(), "{what} is empty");
    assert_eq!(text, text.trim(), "{what} is not trimmed");
    assert!(!text.eq_ignore_ascii_case("null"), "{what} kept a NULL literal");
}

fuzz_target!(|data: &[u8]| {
    let file = match focus::parse(data, None) {
        Ok(file) => file,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert!(focus::parse(data, Some(FocusVersion::V1_2)).is_err(), "refused only when detecting: {error}");
            return;
        }
    };

    let records = usize::try_from(file.data_lines).expect("data_lines fits in usize");
    assert_eq!(file.rows.len() + file.rejected.len(), records, "rows + rejected != data_lines");
    let line_ends = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert!(records <= line_ends, "{records} records in {line_ends} line ends");

    assert_eq!(focus::parse(data, Some(file.version)), Ok(file.clone()), "explicit version {}", file.version);

    for row in &file.rows {
        assert!(row.billing_period_start <= row.billing_period_end, "billing period ends first: line {}", row.line);
        assert!(row.charge_period_start <= row.charge_period_end, "charge period ends first: line {}", row.line);
        check_text(&row.currency, "BillingCurrency");
        assert_eq!(row.currency, row.currency.to_ascii_uppercase(), "currency not upper-cased");
        check_text(&row.charge_category, "ChargeCategory");
        check_text(&row.provider, "ProviderName");
        check_text(&row.service_name, "ServiceName");
        check_text(&row.billing_account_id, "BillingAccountId");
        for (value, what) in [
            (&row.sub_account_id, "SubAccountId"),
            (&row.resource_id, "ResourceId"),
            (&row.resource_name, "ResourceName"),
            (&row.region, "RegionId/RegionName"),
        ] {
            if let Some(value) = value {
                check_text(value, what);
            }
        }
    }
    for rejected in &file.rejected {
        assert!(!rejected.reason.is_empty(), "rejected line {} without a reason", rejected.line);
    }
});
