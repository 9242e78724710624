//! Between stored calendars, agreements and clocks and their protobuf messages, with the checks
//! that give field violations on the way in.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::NaiveDate;

use itsm_proto::common::AuditInfo;
use itsm_proto::delivery::{
    BusinessCalendar as CalendarProto, CalendarException, DayHours, DayOfWeek, Holiday as HolidayProto,
    ServiceLevelAgreement, ServiceLevelTarget, SlaClock, TimeSpan,
};
use itsm_runtime::db::timestamp;
use itsm_runtime::error::Violations;
use itsm_runtime::history::etag;
use itsm_runtime::validate::{self, MAX_NAME};

use super::rules::{AVAILABILITY, RESOLUTION_TIME, RESPONSE_TIME, TargetDef, parse_condition};
use crate::domain::calendar::{BusinessCalendar, Exception, Holiday, Span};
use crate::entity::{agreement, calendar, clock};

pub const CALENDAR_PREFIX: &str = "businessCalendars/";
pub const AGREEMENT_PREFIX: &str = "serviceLevelAgreements/";
pub const CLOCK_PREFIX: &str = "slaClocks/";
const MAX_TARGETS: usize = 20;
const MAX_STATES: usize = 20;
/// Longest allowed time of a target: a year.
const MAX_TARGET_SECONDS: i64 = 366 * 24 * 3600;

fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

fn duration(millis: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: millis / 1000, nanos: ((millis % 1000) * 1_000_000) as i32 }
}

/// The id in `{prefix}{id}` (a UUID).
pub fn id_of(name: &str, prefix: &str, field: &str) -> Result<String, itsm_runtime::Error> {
    name.strip_prefix(prefix)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(str::to_string)
        .ok_or_else(|| itsm_runtime::Error::invalid(field, format!("must be `{prefix}{{id}}`")))
}

// ---- calendars ----------------------------------------------------------------------------------

/// "HH:MM" → minutes since midnight (24:00 allowed as the end of the day).
fn minute_of(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn text_of(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn spans_of(v: &mut Violations, field: &str, spans: &[TimeSpan]) -> Vec<Span> {
    let mut out = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match (minute_of(&span.start), minute_of(&span.end)) {
            (Some(start_minute), Some(end_minute)) => out.push(Span { start_minute, end_minute }),
            (None, _) => v.add(format!("{field}[{i}].start"), "must be HH:MM (00:00 to 24:00)"),
            (_, None) => v.add(format!("{field}[{i}].end"), "must be HH:MM (00:00 to 24:00)"),
        }
    }
    out
}

fn date_of(v: &mut Violations, field: &str, text: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if date.is_none() {
        v.add(field, "must be a date YYYY-MM-DD");
    }
    date
}

/// Checks a calendar message and turns it into the stored form (id and audit fields empty).
pub fn calendar_from_proto(c: &CalendarProto) -> Result<calendar::Model, itsm_runtime::Error> {
    let mut v = Violations::new();
    validate::text(&mut v, "business_calendar.display_name", &c.display_name, MAX_NAME, true);
    let time_zone = chrono_tz::Tz::from_str(&c.time_zone);
    if time_zone.is_err() {
        v.add("business_calendar.time_zone", "must be an IANA time zone, e.g. Europe/Berlin");
    }
    let mut weekly: [Vec<Span>; 7] = Default::default();
    // Domain problems name days by index (Monday = 0); the message names entries.
    let mut entry_of_day: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, day) in c.weekly_hours.iter().enumerate() {
        let field = format!("business_calendar.weekly_hours[{i}]");
        match DayOfWeek::try_from(day.day) {
            Ok(d) if d != DayOfWeek::Unspecified => {
                let index = (d as usize) - 1;
                if entry_of_day.insert(index, i).is_some() {
                    v.add(format!("{field}.day"), "is listed twice");
                }
                weekly[index] = spans_of(&mut v, &format!("{field}.spans"), &day.spans);
            }
            _ => v.add(format!("{field}.day"), "must be MONDAY..SUNDAY"),
        }
    }
    let mut holidays = Vec::new();
    for (i, h) in c.holidays.iter().enumerate() {
        validate::text(&mut v, &format!("business_calendar.holidays[{i}].name"), &h.name, MAX_NAME, false);
        if let Some(date) = date_of(&mut v, &format!("business_calendar.holidays[{i}].date"), &h.date) {
            holidays.push(Holiday { date, name: h.name.clone() });
        }
    }
    let mut exceptions = Vec::new();
    for (i, e) in c.exceptions.iter().enumerate() {
        let field = format!("business_calendar.exceptions[{i}]");
        let spans = spans_of(&mut v, &format!("{field}.spans"), &e.spans);
        if let Some(date) = date_of(&mut v, &format!("{field}.date"), &e.date) {
            exceptions.push(Exception { date, spans });
        }
    }
    v.into_result()?;
    let domain = BusinessCalendar {
        time_zone: time_zone.unwrap_or(chrono_tz::UTC),
        weekly: weekly.clone(),
        holidays: holidays.clone(),
        exceptions: exceptions.clone(),
    };
    let mut v = Violations::new();
    for problem in domain.validate() {
        v.add(
            format!("business_calendar.{}", proto_field(&problem.field, &entry_of_day)),
            problem.description,
        );
    }
    v.into_result()?;
    Ok(calendar::Model {
        id: String::new(),
        tenant_id: String::new(),
        display_name: c.display_name.clone(),
        time_zone: c.time_zone.clone(),
        weekly: serde_json::to_string(&weekly.to_vec()).unwrap_or_else(|_| "[]".into()),
        holidays: serde_json::to_string(&holidays).unwrap_or_else(|_| "[]".into()),
        exceptions: serde_json::to_string(&exceptions).unwrap_or_else(|_| "[]".into()),
        version: 0,
        create_time: 0,
        update_time: 0,
        creator: String::new(),
        updater: String::new(),
    })
}

/// `weekly_hours[0][1]` (Monday, span 1) → `weekly_hours[k].spans[1]` (the message's entry k).
fn proto_field(field: &str, entry_of_day: &BTreeMap<usize, usize>) -> String {
    let Some(rest) = field.strip_prefix("weekly_hours[") else { return field.to_string() };
    let parsed = rest.split_once("][").and_then(|(day, span)| {
        let day: usize = day.parse().ok()?;
        let span: usize = span.trim_end_matches(']').parse().ok()?;
        Some((day, span))
    });
    match parsed {
        Some((day, span)) => match entry_of_day.get(&day) {
            Some(entry) => format!("weekly_hours[{entry}].spans[{span}]"),
            None => field.to_string(),
        },
        None => field.to_string(),
    }
}

pub fn calendar_to_proto(m: &calendar::Model) -> CalendarProto {
    let days: Vec<Vec<Span>> = serde_json::from_str(&m.weekly).unwrap_or_default();
    let holidays: Vec<Holiday> = serde_json::from_str(&m.holidays).unwrap_or_default();
    let exceptions: Vec<Exception> = serde_json::from_str(&m.exceptions).unwrap_or_default();
    let spans = |spans: &[Span]| {
        spans
            .iter()
            .map(|s| TimeSpan { start: text_of(s.start_minute), end: text_of(s.end_minute) })
            .collect::<Vec<_>>()
    };
    CalendarProto {
        name: format!("{CALENDAR_PREFIX}{}", m.id),
        display_name: m.display_name.clone(),
        time_zone: m.time_zone.clone(),
        weekly_hours: days
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| DayHours { day: i as i32 + 1, spans: spans(s) })
            .collect(),
        holidays: holidays
            .iter()
            .map(|h| HolidayProto { date: h.date.format("%Y-%m-%d").to_string(), name: h.name.clone() })
            .collect(),
        exceptions: exceptions
            .iter()
            .map(|e| CalendarException {
                date: e.date.format("%Y-%m-%d").to_string(),
                spans: spans(&e.spans),
            })
            .collect(),
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
    }
}

// ---- agreements ---------------------------------------------------------------------------------

fn seconds_of(d: &prost_types::Duration) -> i64 {
    d.seconds + i64::from(d.nanos > 0)
}

fn check_duration(v: &mut Violations, field: &str, d: &prost_types::Duration) {
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        v.add(field, "must be positive");
    } else if d.seconds > MAX_TARGET_SECONDS {
        v.add(field, "must be at most a year");
    }
}

fn check_states(v: &mut Violations, field: &str, states: &[String]) {
    if states.len() > MAX_STATES {
        v.add(field, format!("at most {MAX_STATES} states"));
    }
    for (i, s) in states.iter().enumerate() {
        if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            v.add(format!("{field}[{i}]"), "must be a state name like ON_HOLD");
        }
    }
}

/// Checks the targets; returns their stored form. `calendar_exists` answers for a calendar id.
pub fn targets_from_proto(
    v: &mut Violations,
    targets: &[ServiceLevelTarget],
    calendar_exists: &dyn Fn(&str) -> bool,
) -> Vec<TargetDef> {
    let mut out = Vec::new();
    if targets.len() > MAX_TARGETS {
        v.add("service_level_agreement.targets", format!("at most {MAX_TARGETS} targets"));
    }
    for (i, t) in targets.iter().enumerate() {
        let field = format!("service_level_agreement.targets[{i}]");
        if !matches!(t.metric, RESPONSE_TIME | RESOLUTION_TIME | AVAILABILITY) {
            v.add(format!("{field}.metric"), "must be RESPONSE_TIME, RESOLUTION_TIME or AVAILABILITY");
        }
        if let Err(itsm_runtime::Error::InvalidArgument(violations)) =
            parse_condition(&t.condition, &format!("{field}.condition"))
        {
            for violation in violations {
                v.add(violation.field, violation.description);
            }
        }
        let timed = matches!(t.metric, RESPONSE_TIME | RESOLUTION_TIME);
        let mut calendar = String::new();
        if timed && t.calendar.is_empty() {
            v.add(format!("{field}.calendar"), "is required: a time target counts on a business calendar");
        } else if !t.calendar.is_empty() {
            // For availability targets the calendar gives the agreed service hours (else 24×7).
            match id_of(&t.calendar, CALENDAR_PREFIX, "calendar") {
                Ok(id) if calendar_exists(&id) => calendar = id,
                Ok(_) => v.add(format!("{field}.calendar"), format!("no such calendar: {}", t.calendar)),
                Err(_) => v.add(format!("{field}.calendar"), "must be `businessCalendars/{id}`"),
            }
        }
        if timed {
            if t.duration.is_none() && t.priority_durations.is_empty() {
                v.add(format!("{field}.duration"), "is required (or priority_durations)");
            }
        } else if !(1..=10_000).contains(&t.availability_basis_points) {
            v.add(format!("{field}.availability_basis_points"), "must be 1..10000 (9995 = 99.95%)");
        }
        if let Some(d) = &t.duration {
            check_duration(v, &format!("{field}.duration"), d);
        }
        let mut priority_durations = BTreeMap::new();
        for (key, d) in &t.priority_durations {
            let priority =
                key.strip_prefix('P').and_then(|n| n.parse::<i32>().ok()).filter(|p| (1..=5).contains(p));
            match priority {
                Some(p) => {
                    check_duration(v, &format!("{field}.priority_durations[{key}]"), d);
                    priority_durations.insert(p, seconds_of(d));
                }
                None => v.add(format!("{field}.priority_durations[{key}]"), "keys are P1..P5"),
            }
        }
        let mut seen = BTreeSet::new();
        let mut warnings = Vec::new();
        for (j, p) in t.warning_percents.iter().enumerate() {
            if !(1..=99).contains(p) || !seen.insert(*p) {
                v.add(format!("{field}.warning_percents[{j}]"), "must be 1..99, each once");
            } else {
                warnings.push(*p as u8);
            }
        }
        warnings.sort_unstable();
        check_states(v, &format!("{field}.start_states"), &t.start_states);
        check_states(v, &format!("{field}.pause_states"), &t.pause_states);
        check_states(v, &format!("{field}.stop_states"), &t.stop_states);
        check_states(v, &format!("{field}.cancel_states"), &t.cancel_states);
        out.push(TargetDef {
            metric: t.metric,
            condition: t.condition.clone(),
            duration_seconds: t.duration.as_ref().map(seconds_of),
            availability_basis_points: t.availability_basis_points,
            warning_percents: warnings,
            calendar,
            priority_durations,
            start_states: t.start_states.clone(),
            pause_states: t.pause_states.clone(),
            stop_states: t.stop_states.clone(),
            cancel_states: t.cancel_states.clone(),
        });
    }
    out
}

fn target_to_proto(t: &TargetDef) -> ServiceLevelTarget {
    let seconds = |s: i64| prost_types::Duration { seconds: s, nanos: 0 };
    ServiceLevelTarget {
        metric: t.metric,
        condition: t.condition.clone(),
        duration: t.duration_seconds.map(seconds),
        availability_basis_points: t.availability_basis_points,
        warning_percents: t.warning_percents.iter().map(|p| i32::from(*p)).collect(),
        calendar: if t.calendar.is_empty() {
            String::new()
        } else {
            format!("{CALENDAR_PREFIX}{}", t.calendar)
        },
        priority_durations: t
            .priority_durations
            .iter()
            .map(|(p, s)| (format!("P{p}"), seconds(*s)))
            .collect(),
        start_states: t.start_states.clone(),
        pause_states: t.pause_states.clone(),
        stop_states: t.stop_states.clone(),
        cancel_states: t.cancel_states.clone(),
    }
}

pub fn agreement_to_proto(m: &agreement::Model) -> ServiceLevelAgreement {
    ServiceLevelAgreement {
        name: format!("{AGREEMENT_PREFIX}{}", m.id),
        display_name: m.display_name.clone(),
        r#type: m.agreement_type,
        business_service: m.business_service.clone(),
        counterparty: m.counterparty.clone(),
        targets: super::store::targets_of(m).iter().map(target_to_proto).collect(),
        active: m.active,
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
    }
}

// ---- clocks -------------------------------------------------------------------------------------

pub fn clock_to_proto(m: &clock::Model) -> SlaClock {
    SlaClock {
        name: format!("{CLOCK_PREFIX}{}", m.id),
        service_level_agreement: format!("{AGREEMENT_PREFIX}{}", m.agreement_id),
        target_index: m.target_index,
        metric: m.metric,
        record: m.record.clone(),
        state: m.state,
        start_time: time(m.start_time),
        due_time: time(m.due_time),
        stop_time: time(m.stop_time),
        elapsed: Some(duration(m.elapsed_ms)),
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: String::new(),
            updater: String::new(),
        }),
        target: (m.target_ms >= 0).then(|| duration(m.target_ms)),
        priority: m.priority,
        breach_time: time(m.breach_time),
        warnings: serde_json::from_str(&m.warnings).unwrap_or_default(),
        business_service: m.business_service.clone(),
    }
}

pub fn duration_of(delta: chrono::TimeDelta) -> prost_types::Duration {
    duration(delta.num_milliseconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(minute_of("09:30"), Some(570));
        assert_eq!(minute_of("24:00"), Some(1440));
        assert_eq!(minute_of("24:01"), None);
        assert_eq!(minute_of("9:30"), None);
        assert_eq!(text_of(1440), "24:00");
    }

    #[test]
    fn calendar_problems_name_the_message_fields() {
        let span = |s: &str, e: &str| TimeSpan { start: s.into(), end: e.into() };
        let c = CalendarProto {
            display_name: "Berlin".into(),
            time_zone: "Europe/Berlin".into(),
            weekly_hours: vec![
                DayHours { day: DayOfWeek::Tuesday as i32, spans: vec![span("09:00", "17:00")] },
                DayHours {
                    day: DayOfWeek::Monday as i32,
                    spans: vec![span("09:00", "12:00"), span("11:00", "17:00")],
                },
            ],
            holidays: vec![
                HolidayProto { date: "2026-12-25".into(), name: "Christmas".into() },
                HolidayProto { date: "2026-12-25".into(), name: "Christmas again".into() },
            ],
            ..Default::default()
        };
        let err = calendar_from_proto(&c).unwrap_err();
        let itsm_runtime::Error::InvalidArgument(violations) = err else { panic!("{err:?}") };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert!(fields.contains(&"business_calendar.weekly_hours[1].spans[1]"), "{fields:?}");
        assert!(fields.contains(&"business_calendar.holidays[1]"), "{fields:?}");
        let bad = CalendarProto { time_zone: "Mars/Olympus".into(), ..c };
        let err = calendar_from_proto(&bad).unwrap_err().to_string();
        assert!(err.contains("time_zone"), "{err}");
    }
}
