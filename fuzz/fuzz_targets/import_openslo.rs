#![no_main]
//! OpenSLO v1 documents: `itsm_delivery::domain::openslo::parse_documents`, then
//! `check_references` on what it accepted; and `DurationShorthand::parse` on the words of the
//! input.
//!
//! Beyond "does not panic":
//! - a refusal carries at least one error, each with a location and a message;
//! - an accepted object has what validation promised: DNS-label names, descriptions of at most
//!   1,050 characters, at least one objective with a target strictly between 0 and 1, finite
//!   numbers in range, positive windows, a calendar exactly when the window is calendar-aligned;
//! - every reference error names a missing object;
//! - a duration that parses is a positive count and a unit, reads back the same when written
//!   again, and has a fixed length only for the fixed units.

use itsm_delivery::domain::openslo::{
    self, DurationShorthand, DurationUnit, Indicator, Metadata, OpenSloObject, RefOrInline,
    MAX_DESCRIPTION_CHARS,
};
use libfuzzer_sys::fuzz_target;

fn check_name(metadata: &Metadata) {
    let name = metadata.name.as_bytes();
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && name.first().is_some_and(u8::is_ascii_alphanumeric)
            && name.last().is_some_and(u8::is_ascii_alphanumeric),
        "accepted a name that is not a DNS label: {:?}",
        metadata.name
    );
}

fn check_description(description: &Option<String>) {
    if let Some(description) = description {
        assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS, "description too long");
    }
}

fn check_object(object: &OpenSloObject) {
    check_name(object.metadata());
    assert_eq!(object.name(), object.metadata().name);
    match object {
        OpenSloObject::Service(service) => check_description(&service.description),
        OpenSloObject::Sli(sli) => check_description(&sli.description),
        OpenSloObject::Slo(slo) => {
            check_description(&slo.description);
            assert!(!slo.objectives.is_empty(), "an SLO without objectives");
            let window = &slo.time_window;
            assert!(window.duration.num_seconds() > 0, "a window of {:?}", window.duration);
            assert!(window.shorthand.count > 0);
            assert_eq!(window.calendar.is_some(), !window.is_rolling, "calendar vs isRolling");
            if window.is_rolling {
                assert!(!window.shorthand.is_calendar(), "a rolling window of months");
            }
            if let Some(Indicator::Inline(sli)) = &slo.indicator {
                check_name(&sli.metadata);
            }
            for objective in &slo.objectives {
                assert!(objective.target > 0.0 && objective.target < 1.0, "target {}", objective.target);
                if let Some(slice) = objective.time_slice_target {
                    assert!(slice > 0.0 && slice <= 1.0, "timeSliceTarget {slice}");
                }
                if let Some(weight) = objective.composite_weight {
                    assert!(weight > 0.0 && weight.is_finite(), "compositeWeight {weight}");
                }
                if let Some(value) = objective.value {
                    assert!(value.is_finite(), "value {value}");
                }
                if let Some(slice) = objective.time_slice_window {
                    assert!(slice <= window.duration, "a time slice longer than the window");
                }
                if let Some(Indicator::Inline(sli)) = &objective.indicator {
                    check_name(&sli.metadata);
                }
            }
            for policy in &slo.alert_policies {
                if let RefOrInline::Inline(policy) = policy {
                    check_name(&policy.metadata);
                }
            }
        }
        OpenSloObject::AlertPolicy(policy) => check_description(&policy.description),
        OpenSloObject::AlertCondition(condition) => {
            check_description(&condition.description);
            let burn = &condition.condition;
            assert!(burn.threshold >= 0.0 && burn.threshold.is_finite(), "threshold {}", burn.threshold);
            assert!(burn.lookback_window.num_seconds() > 0, "lookbackWindow {:?}", burn.lookback_window);
            assert!(burn.alert_after.num_seconds() > 0, "alertAfter {:?}", burn.alert_after);
        }
        OpenSloObject::AlertNotificationTarget(target) => check_description(&target.description),
        OpenSloObject::DataSource(source) => check_description(&source.description),
    }
}

fn unit_symbol(unit: DurationUnit) -> char {
    match unit {
        DurationUnit::Second => 's',
        DurationUnit::Minute => 'm',
        DurationUnit::Hour => 'h',
        DurationUnit::Day => 'd',
        DurationUnit::Week => 'w',
        DurationUnit::Month => 'M',
        DurationUnit::Quarter => 'Q',
        DurationUnit::Year => 'Y',
    }
}

fn check_durations(text: &str) {
    for word in text.split_whitespace().filter(|word| word.len() <= 24).take(64) {
        let Some(duration) = DurationShorthand::parse(word) else {
            assert_eq!(openslo::parse_duration(word), None, "{word:?}");
            continue;
        };
        assert!(duration.count > 0, "{word:?}");
        let written = format!("{}{}", duration.count, unit_symbol(duration.unit));
        assert_eq!(DurationShorthand::parse(&written), Some(duration), "{word:?} written as {written:?}");
        assert_eq!(openslo::parse_duration(word), duration.fixed(), "{word:?}");
        if duration.is_calendar() {
            assert_eq!(duration.fixed(), None, "{word:?}");
        } else {
            assert_eq!(duration.fixed(), duration.nominal(), "{word:?}");
        }
        if let Some(length) = duration.nominal() {
            assert!(length.num_seconds() > 0, "{word:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_durations(text);
    match openslo::parse_documents(text) {
        Ok(objects) => {
            for object in &objects {
                check_object(object);
            }
            for error in openslo::check_references(&objects) {
                assert!(!error.location.is_empty() && !error.field.is_empty(), "{error:?}");
                assert!(error.message.ends_with("is not defined"), "{error:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without an error");
            for error in &errors {
                // Not `field`: an unknown empty key (`"": 1`) at the top level is named by "".
                assert!(!error.location.is_empty() && !error.message.is_empty(), "{error:?}");
            }
        }
    }
});
