//! On-shift schedules: weekdays and a local time window in a time zone (DST handled by chrono-tz).

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shift {
    pub member: String,
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub weekdays: Vec<i32>,
    /// "HH:MM", local.
    pub start_time: String,
    pub end_time: String,
    pub time_zone: String,
}

/// Why a shift is malformed, naming the part.
pub fn check(shift: &Shift) -> Result<(), (&'static str, String)> {
    if shift.weekdays.is_empty() || shift.weekdays.iter().any(|d| !(1..=7).contains(d)) {
        return Err(("weekdays", "must list ISO weekdays 1 (Monday) to 7 (Sunday)".into()));
    }
    let start = parse_time(&shift.start_time).ok_or(("start_time", "must be HH:MM".to_string()))?;
    let end = parse_time(&shift.end_time).ok_or(("end_time", "must be HH:MM".to_string()))?;
    if end <= start {
        return Err(("end_time", "must be after start_time (split a night shift in two)".into()));
    }
    if shift.time_zone.parse::<Tz>().is_err() {
        return Err(("time_zone", format!("`{}` is not an IANA time zone", shift.time_zone)));
    }
    Ok(())
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// Whether `shift` covers the instant `at`.
pub fn covers(shift: &Shift, at: DateTime<Utc>) -> bool {
    let (Ok(zone), Some(start), Some(end)) =
        (shift.time_zone.parse::<Tz>(), parse_time(&shift.start_time), parse_time(&shift.end_time))
    else {
        return false;
    };
    let local = at.with_timezone(&zone);
    let weekday = local.weekday().number_from_monday() as i32;
    let time = local.time();
    shift.weekdays.contains(&weekday) && time >= start && time < end
}

/// Members on shift at `at`: those with a covering shift, and those with no shift at all.
pub fn on_shift<'a>(members: &'a [String], shifts: &[Shift], at: DateTime<Utc>) -> Vec<&'a String> {
    members
        .iter()
        .filter(|m| {
            let own: Vec<&Shift> = shifts.iter().filter(|s| &s.member == *m).collect();
            own.is_empty() || own.iter().any(|s| covers(s, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn shift(member: &str, days: &[i32], start: &str, end: &str, tz: &str) -> Shift {
        Shift {
            member: member.into(),
            weekdays: days.to_vec(),
            start_time: start.into(),
            end_time: end.into(),
            time_zone: tz.into(),
        }
    }

    #[test]
    fn local_time_and_daylight_saving() {
        let berlin = shift("ann", &[1, 2, 3, 4, 5], "09:00", "17:00", "Europe/Berlin");
        // Monday 2026-03-23, 08:30 UTC = 09:30 CET (winter): on shift.
        assert!(covers(&berlin, Utc.with_ymd_and_hms(2026, 3, 23, 8, 30, 0).unwrap()));
        // Monday 2026-03-30, 07:30 UTC = 09:30 CEST (summer): on shift; 07:30 UTC a week earlier
        // was 08:30 CET: not yet.
        assert!(covers(&berlin, Utc.with_ymd_and_hms(2026, 3, 30, 7, 30, 0).unwrap()));
        assert!(!covers(&berlin, Utc.with_ymd_and_hms(2026, 3, 23, 7, 30, 0).unwrap()));
        // Saturday.
        assert!(!covers(&berlin, Utc.with_ymd_and_hms(2026, 3, 28, 10, 0, 0).unwrap()));
    }

    #[test]
    fn members_without_shifts_are_always_on() {
        let members = vec!["ann".to_string(), "ben".to_string()];
        let shifts = vec![shift("ann", &[6], "09:00", "10:00", "UTC")];
        let monday = Utc.with_ymd_and_hms(2026, 3, 23, 9, 30, 0).unwrap();
        assert_eq!(on_shift(&members, &shifts, monday), vec![&members[1]]);
    }

    #[test]
    fn malformed_shifts_name_the_part() {
        assert_eq!(check(&shift("a", &[8], "09:00", "10:00", "UTC")).unwrap_err().0, "weekdays");
        assert_eq!(check(&shift("a", &[1], "9am", "10:00", "UTC")).unwrap_err().0, "start_time");
        assert_eq!(check(&shift("a", &[1], "10:00", "09:00", "UTC")).unwrap_err().0, "end_time");
        assert_eq!(check(&shift("a", &[1], "09:00", "10:00", "Mars/Olympus")).unwrap_err().0, "time_zone");
        assert!(check(&shift("a", &[1, 7], "09:00", "10:00", "America/New_York")).is_ok());
    }
}
