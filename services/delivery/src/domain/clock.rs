//! The SLA clock, computed from a record's observed states.
//!
//! The clock is event-sourced: it is recomputed from every observation each time, so the same
//! observations give the same result whatever order or duplication they arrived in, and a
//! back-dated or re-prioritised observation simply changes the whole computation.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::BusinessCalendar;

/// One observed state of the measured record (from the incident or ticket event feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub time: DateTime<Utc>,
    /// Feed order, breaks ties between observations at the same time.
    pub sequence: i64,
    /// Record state name, e.g. "NEW", "IN_PROGRESS", "ON_HOLD", "RESOLVED", "CLOSED", "CANCELLED".
    pub state: String,
    /// 1 = P1 … 5 = P5 (0 = unknown).
    pub priority: i32,
    /// The event id (duplicates of an id are ignored: the first one counts).
    pub event_id: String,
}

/// Durations serialize as chrono's `TimeDelta` does: `[seconds, nanoseconds]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRules {
    /// States that start the clock; empty = the first observation starts it.
    pub start_states: Vec<String>,
    pub pause_states: Vec<String>,
    /// States that stop it (met, or breached if the target was passed). A later observation in another
    /// state (a reopen) resumes it, keeping the time already counted.
    pub stop_states: Vec<String>,
    /// States that end the clock for good.
    pub cancel_states: Vec<String>,
    /// Allowed working time by priority (1..=5).
    pub durations: BTreeMap<i32, TimeDelta>,
    /// Used when the priority has no entry.
    pub default_duration: Option<TimeDelta>,
    /// Warn when these percentages (1..=99) of the allowed time have passed, ascending.
    pub warning_percents: Vec<u8>,
}

impl ClockRules {
    /// The allowed working time for a priority: its own entry, else the default.
    pub fn target_for(&self, priority: i32) -> Option<TimeDelta> {
        self.durations.get(&priority).copied().or(self.default_duration)
    }

    fn classify(&self, state: &str) -> Class {
        // Cancel is checked first because it is final; stop before pause so a misconfigured state
        // in both lists cannot keep a resolved record paused forever.
        if lists(&self.cancel_states, state) {
            Class::Cancel
        } else if lists(&self.stop_states, state) {
            Class::Stop
        } else if lists(&self.pause_states, state) {
            Class::Pause
        } else {
            Class::Run
        }
    }

    fn starts(&self, state: &str) -> bool {
        self.start_states.is_empty() || lists(&self.start_states, state)
    }
}

fn lists(states: &[String], state: &str) -> bool {
    states.iter().any(|listed| listed == state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    /// No start state observed yet.
    Pending,
    Running,
    Paused,
    /// Stopped within the target.
    Met,
    /// Passed the target, whether still running, paused or stopped.
    Breached,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start: DateTime<Utc>,
    /// None while it is the current segment.
    pub end: Option<DateTime<Utc>>,
    pub running: bool,
    /// The event id that began the segment.
    pub cause: String,
    /// Why, e.g. "ON_HOLD pauses the clock".
    pub reason: String,
    /// Working time counted in this segment (zero for paused ones).
    pub counted: TimeDelta,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClockComputation {
    pub state: ClockState,
    pub start: Option<DateTime<Utc>>,
    /// The stop (or cancel) instant while the clock is stopped (or cancelled).
    pub stop: Option<DateTime<Utc>>,
    pub segments: Vec<Segment>,
    /// Working time counted up to `now` (or to the stop).
    pub elapsed: TimeDelta,
    /// Allowed time for the current priority (None: no duration applies → the clock never breaches).
    pub target: Option<TimeDelta>,
    pub priority: i32,
    /// When it breaches if it keeps running: while Running and not yet breached; None otherwise (paused
    /// clocks have no due time; a breached clock's due time is its breach time).
    pub due: Option<DateTime<Utc>>,
    /// The instant the counted time reached the target, if it has by `now`.
    pub breach_time: Option<DateTime<Utc>>,
    /// (percent, instant) for each warning threshold crossed by `now`.
    pub warnings: Vec<(u8, DateTime<Utc>)>,
    /// The next instant a warning or the breach falls due, while Running (for the sweeper).
    pub next_alert: Option<DateTime<Utc>>,
    /// Human-readable timeline and reasons, oldest first (ExplainClock returns it).
    pub explanation: Vec<String>,
}

/// What an observed state does to the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Run,
    Pause,
    Stop,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Running,
    Paused,
    Stopped,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkKind {
    Started,
    Paused,
    Resumed,
    Reopened,
    /// Carries how many segments were closed at the stop, to report the time counted by then.
    Stopped(usize),
    Cancelled,
    PriorityChanged {
        from: i32,
        to: i32,
    },
}

/// A timeline entry, turned into an explanation line once the counted time is known.
struct Mark<'a> {
    observation: &'a Observation,
    kind: MarkKind,
}

/// Replays the observations into segments and timeline marks.
struct Replay<'a> {
    rules: &'a ClockRules,
    phase: Phase,
    start: Option<DateTime<Utc>>,
    stop: Option<DateTime<Utc>>,
    segments: Vec<Segment>,
    marks: Vec<Mark<'a>>,
}

impl<'a> Replay<'a> {
    fn new(rules: &'a ClockRules) -> Self {
        Self {
            rules,
            phase: Phase::Pending,
            start: None,
            stop: None,
            segments: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, observation: &'a Observation, kind: MarkKind) {
        self.marks.push(Mark { observation, kind });
    }

    fn close_current(&mut self, at: DateTime<Utc>) {
        if let Some(last) = self.segments.last_mut()
            && last.end.is_none()
        {
            last.end = Some(at);
        }
    }

    fn open(&mut self, observation: &Observation, running: bool, reason: String) {
        self.close_current(observation.time);
        self.segments.push(Segment {
            start: observation.time,
            end: None,
            running,
            cause: observation.event_id.clone(),
            reason,
            counted: TimeDelta::zero(),
        });
    }

    fn apply(&mut self, observation: &'a Observation) {
        let class = self.rules.classify(&observation.state);
        let state = observation.state.as_str();
        let previous = self.phase;
        match (previous, class) {
            (Phase::Cancelled, _)
            | (Phase::Running, Class::Run)
            | (Phase::Paused, Class::Pause)
            | (Phase::Stopped, Class::Stop) => return,
            (Phase::Pending, Class::Cancel) => {}
            (Phase::Pending, _) => {
                if !self.rules.starts(state) {
                    return;
                }
                self.start = Some(observation.time);
                self.mark(observation, MarkKind::Started);
            }
            _ => {}
        }
        match class {
            Class::Cancel => {
                self.close_current(observation.time);
                self.phase = Phase::Cancelled;
                self.stop = Some(observation.time);
                self.mark(observation, MarkKind::Cancelled);
            }
            Class::Stop => {
                self.close_current(observation.time);
                self.phase = Phase::Stopped;
                self.stop = Some(observation.time);
                let closed = self.segments.len();
                self.mark(observation, MarkKind::Stopped(closed));
            }
            Class::Pause => {
                self.open(observation, false, format!("{state} pauses the clock"));
                self.phase = Phase::Paused;
                self.stop = None;
                let kind = if previous == Phase::Stopped { MarkKind::Reopened } else { MarkKind::Paused };
                self.mark(observation, kind);
            }
            Class::Run => {
                let (reason, kind) = match previous {
                    Phase::Pending => (format!("{state} starts the clock"), None),
                    Phase::Stopped => (format!("{state} reopens the clock"), Some(MarkKind::Reopened)),
                    _ => (format!("{state} resumes the clock"), Some(MarkKind::Resumed)),
                };
                self.open(observation, true, reason);
                self.phase = Phase::Running;
                self.stop = None;
                if let Some(kind) = kind {
                    self.mark(observation, kind);
                }
            }
        }
    }
}

/// Where a threshold of counted time falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crossing {
    /// Reached by `now`, at this instant.
    Reached(DateTime<Utc>),
    /// Not yet; reached at this instant if the current segment keeps running.
    Upcoming(DateTime<Utc>),
    Never,
}

/// Finds when `threshold` of working time is reached by walking the running segments. A threshold
/// is reached inside a closed segment only strictly before its end: a clock stopped or paused exactly
/// at the threshold has not passed it.
fn crossing(
    calendar: &BusinessCalendar,
    segments: &[Segment],
    threshold: TimeDelta,
    now: DateTime<Utc>,
) -> Crossing {
    let mut counted = TimeDelta::zero();
    for segment in segments.iter().filter(|segment| segment.running) {
        let remaining = threshold - counted;
        // A closed segment that counts less than the remainder cannot reach it: skip the search.
        if segment.end.is_some() && segment.counted < remaining {
            counted += segment.counted;
            continue;
        }
        let Some(instant) = calendar.add_working_time(segment.start, remaining) else {
            return Crossing::Never;
        };
        match segment.end {
            Some(end) if instant < end => return Crossing::Reached(instant),
            Some(_) => {}
            None if instant <= now => return Crossing::Reached(instant),
            None => return Crossing::Upcoming(instant),
        }
        counted += segment.counted;
    }
    Crossing::Never
}

/// Observations up to `now`, in feed order, each event id once. The sort key covers every field so
/// the result does not depend on the input order even for conflicting duplicates.
fn ordered_feed(observations: &[Observation], now: DateTime<Utc>) -> Vec<&Observation> {
    let mut sorted: Vec<&Observation> =
        observations.iter().filter(|observation| observation.time <= now).collect();
    sorted.sort_by(|a, b| {
        (a.time, a.sequence, &a.event_id, &a.state, a.priority).cmp(&(
            b.time,
            b.sequence,
            &b.event_id,
            &b.state,
            b.priority,
        ))
    });
    let mut seen = HashSet::new();
    let mut feed = Vec::with_capacity(sorted.len());
    for observation in sorted {
        if seen.insert(observation.event_id.as_str()) {
            feed.push(observation);
        }
    }
    feed
}

/// Formats a duration like "3h12m" ("45s" below a minute, "0s" for none).
fn format_duration(duration: TimeDelta) -> String {
    let seconds = duration.num_seconds();
    let sign = if seconds < 0 { "-" } else { "" };
    let seconds = seconds.unsigned_abs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if seconds > 0 || parts.is_empty() {
        parts.push(format!("{seconds}s"));
    }
    format!("{sign}{}", parts.concat())
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn priority_label(priority: i32) -> String {
    if priority == 0 { "unknown".to_owned() } else { format!("P{priority}") }
}

fn state_label(state: ClockState) -> &'static str {
    match state {
        ClockState::Pending => "pending",
        ClockState::Running => "running",
        ClockState::Paused => "paused",
        ClockState::Met => "met",
        ClockState::Breached => "breached",
        ClockState::Cancelled => "cancelled",
    }
}

/// Computes the clock as of `now` from every observation (any order; duplicates ignored).
///
/// The target is that of the latest known priority (observations with priority 0 keep the previous
/// one), applied to the whole history: a priority change recomputes the clock against the new target.
pub fn compute(
    rules: &ClockRules,
    calendar: &BusinessCalendar,
    observations: &[Observation],
    now: DateTime<Utc>,
) -> ClockComputation {
    let feed = ordered_feed(observations, now);

    let mut replay = Replay::new(rules);
    let mut priority = 0;
    for &observation in &feed {
        if replay.phase == Phase::Cancelled {
            break;
        }
        if observation.priority != 0 {
            if priority != 0 && observation.priority != priority {
                replay.mark(
                    observation,
                    MarkKind::PriorityChanged { from: priority, to: observation.priority },
                );
            }
            priority = observation.priority;
        }
        replay.apply(observation);
    }
    // Priority changes after a cancel do not matter to the timeline but still name the priority.
    if let Some(latest) = feed.iter().rev().map(|observation| observation.priority).find(|p| *p != 0) {
        priority = latest;
    }
    let target = rules.target_for(priority);

    let Replay { phase, start, stop, mut segments, marks, .. } = replay;

    for segment in segments.iter_mut().filter(|segment| segment.running) {
        let end = segment.end.unwrap_or(now);
        segment.counted = calendar.working_time_between(segment.start, end);
    }
    let elapsed: TimeDelta = segments.iter().map(|segment| segment.counted).sum();

    let mut breach_time = None;
    let mut upcoming_breach = None;
    let mut warnings = Vec::new();
    let mut upcoming_warnings = Vec::new();
    if let Some(target) = target {
        match crossing(calendar, &segments, target, now) {
            Crossing::Reached(instant) => breach_time = Some(instant),
            Crossing::Upcoming(instant) => upcoming_breach = Some(instant),
            Crossing::Never => {}
        }
        let mut percents: Vec<u8> =
            rules.warning_percents.iter().copied().filter(|percent| (1..=99).contains(percent)).collect();
        percents.sort_unstable();
        percents.dedup();
        for percent in percents {
            let threshold = target.checked_mul(i32::from(percent)).and_then(|scaled| scaled.checked_div(100));
            let Some(threshold) = threshold else {
                continue;
            };
            match crossing(calendar, &segments, threshold, now) {
                Crossing::Reached(instant) => warnings.push((percent, instant)),
                Crossing::Upcoming(instant) => upcoming_warnings.push(instant),
                Crossing::Never => {}
            }
        }
    }

    let state = match phase {
        Phase::Pending => ClockState::Pending,
        Phase::Cancelled => ClockState::Cancelled,
        _ if breach_time.is_some() => ClockState::Breached,
        Phase::Running => ClockState::Running,
        Phase::Paused => ClockState::Paused,
        Phase::Stopped => ClockState::Met,
    };
    // The upcoming breach of the running segment equals add_working_time(now, target - elapsed).
    let due = match state {
        ClockState::Breached => breach_time,
        ClockState::Running => upcoming_breach,
        _ => None,
    };
    let next_alert =
        if state == ClockState::Running { upcoming_warnings.into_iter().chain(due).min() } else { None };

    let target_text = target.map(format_duration);
    let mut timeline: Vec<(DateTime<Utc>, String)> = Vec::new();
    for mark in &marks {
        let observation = mark.observation;
        let time = observation.time;
        let state_name = &observation.state;
        let event = &observation.event_id;
        let text = match mark.kind {
            MarkKind::Started => format!("started: state {state_name} (event {event})"),
            MarkKind::Paused => {
                format!("paused: {state_name} pauses the clock (event {event})")
            }
            MarkKind::Resumed => format!("resumed: {state_name} (event {event})"),
            MarkKind::Reopened => format!(
                "reopened: {state_name} after the stop, keeping the time already counted (event {event})"
            ),
            MarkKind::Stopped(closed) => {
                let counted: TimeDelta = segments.iter().take(closed).map(|segment| segment.counted).sum();
                let counted = format_duration(counted);
                match &target_text {
                    Some(target_text) => {
                        let outcome =
                            if breach_time.is_some_and(|breach| breach < time) { "breached" } else { "met" };
                        format!(
                            "stopped: {state_name} (event {event}); {counted} counted of {target_text} target: {outcome}"
                        )
                    }
                    None => {
                        format!("stopped: {state_name} (event {event}); {counted} counted, no target applies")
                    }
                }
            }
            MarkKind::Cancelled => {
                format!("cancelled: {state_name} (event {event}); the clock will not run again")
            }
            MarkKind::PriorityChanged { from, to } => format!(
                "priority changed from {} to {} (event {event}): the whole clock is recomputed against the new target",
                priority_label(from),
                priority_label(to)
            ),
        };
        timeline.push((time, text));
    }
    if let Some(target_text) = &target_text {
        for (percent, instant) in &warnings {
            timeline.push((*instant, format!("warning: {percent}% of the {target_text} target passed")));
        }
        if let Some(breach) = breach_time {
            timeline.push((breach, format!("breached: {target_text} of working time passed")));
        }
    }
    // Stable: marks keep feed order and come before warnings or a breach at the same instant.
    timeline.sort_by_key(|(time, _)| *time);
    let mut explanation: Vec<String> =
        timeline.into_iter().map(|(time, text)| format!("{} {text}", format_time(time))).collect();

    let label = format!("priority {}", priority_label(priority));
    explanation.push(match target {
        Some(duration) if rules.durations.contains_key(&priority) => {
            format!("{label}: target {}", format_duration(duration))
        }
        Some(duration) => format!("{label}: target {} (the default duration)", format_duration(duration)),
        None => format!("{label}: no duration applies, so the clock never breaches"),
    });
    let mut summary =
        format!("as of {}: {}, {} counted", format_time(now), state_label(state), format_duration(elapsed));
    if phase == Phase::Pending {
        summary.push_str(", no start state observed yet");
    }
    if let Some(due) = due {
        summary.push_str(&format!(", due {}", format_time(due)));
    }
    explanation.push(summary);

    ClockComputation {
        state,
        start,
        stop,
        segments,
        elapsed,
        target,
        priority,
        due,
        breach_time,
        warnings,
        next_alert,
        explanation,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::calendar::Span;
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn hm(hours: i64, minutes: i64) -> TimeDelta {
        TimeDelta::hours(hours) + TimeDelta::minutes(minutes)
    }

    fn obs(event_id: &str, time: &str, state: &str, priority: i32) -> Observation {
        Observation {
            time: at(time),
            sequence: 0,
            state: state.to_owned(),
            priority,
            event_id: event_id.to_owned(),
        }
    }

    fn rules() -> ClockRules {
        ClockRules {
            start_states: vec!["NEW".to_owned()],
            pause_states: vec!["ON_HOLD".to_owned()],
            stop_states: vec!["RESOLVED".to_owned(), "CLOSED".to_owned()],
            cancel_states: vec!["CANCELLED".to_owned()],
            durations: BTreeMap::from([(1, TimeDelta::hours(4)), (2, TimeDelta::hours(8))]),
            default_duration: None,
            warning_percents: vec![50, 75, 90],
        }
    }

    /// Mon–Fri 09:00–17:00 Europe/London (GMT = UTC in early March 2026).
    fn london_business_hours() -> BusinessCalendar {
        let work = vec![Span::new(540, 1020)];
        BusinessCalendar {
            time_zone: chrono_tz::Europe::London,
            weekly: [work.clone(), work.clone(), work.clone(), work.clone(), work, Vec::new(), Vec::new()],
            holidays: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    /// Monday 2026-03-02: start 09:00, on hold 10:00–12:00, resolved 13:12 (P1, 4 h target).
    fn basic_feed() -> Vec<Observation> {
        vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 1),
            obs("e2", "2026-03-02T09:30:00Z", "IN_PROGRESS", 1),
            obs("e3", "2026-03-02T10:00:00Z", "ON_HOLD", 1),
            obs("e4", "2026-03-02T12:00:00Z", "IN_PROGRESS", 1),
            obs("e5", "2026-03-02T13:12:00Z", "RESOLVED", 1),
        ]
    }

    fn compute_always(feed: &[Observation], now: &str) -> ClockComputation {
        compute(&rules(), &BusinessCalendar::always(), feed, at(now))
    }

    #[test]
    fn start_pause_resume_stop() {
        let clock = compute_always(&basic_feed(), "2026-03-02T15:00:00Z");
        assert_eq!(clock.state, ClockState::Met);
        assert_eq!(clock.start, Some(at("2026-03-02T09:00:00Z")));
        assert_eq!(clock.stop, Some(at("2026-03-02T13:12:00Z")));
        assert_eq!(clock.elapsed, hm(2, 12));
        assert_eq!(clock.target, Some(TimeDelta::hours(4)));
        assert_eq!(clock.priority, 1);
        assert_eq!(
            clock.segments,
            vec![
                Segment {
                    start: at("2026-03-02T09:00:00Z"),
                    end: Some(at("2026-03-02T10:00:00Z")),
                    running: true,
                    cause: "e1".to_owned(),
                    reason: "NEW starts the clock".to_owned(),
                    counted: TimeDelta::hours(1),
                },
                Segment {
                    start: at("2026-03-02T10:00:00Z"),
                    end: Some(at("2026-03-02T12:00:00Z")),
                    running: false,
                    cause: "e3".to_owned(),
                    reason: "ON_HOLD pauses the clock".to_owned(),
                    counted: TimeDelta::zero(),
                },
                Segment {
                    start: at("2026-03-02T12:00:00Z"),
                    end: Some(at("2026-03-02T13:12:00Z")),
                    running: true,
                    cause: "e4".to_owned(),
                    reason: "IN_PROGRESS resumes the clock".to_owned(),
                    counted: hm(1, 12),
                },
            ]
        );
        // 50 % = 2 h: 1 h before the hold, then 1 h after 12:00. 75 % (3 h) would be 14:00.
        assert_eq!(clock.warnings, vec![(50, at("2026-03-02T13:00:00Z"))]);
        assert_eq!(clock.breach_time, None);
        assert_eq!(clock.due, None);
        assert_eq!(clock.next_alert, None);
        assert_eq!(
            clock.explanation,
            vec![
                "2026-03-02T09:00:00Z started: state NEW (event e1)",
                "2026-03-02T10:00:00Z paused: ON_HOLD pauses the clock (event e3)",
                "2026-03-02T12:00:00Z resumed: IN_PROGRESS (event e4)",
                "2026-03-02T13:00:00Z warning: 50% of the 4h target passed",
                "2026-03-02T13:12:00Z stopped: RESOLVED (event e5); 2h12m counted of 4h target: met",
                "priority P1: target 4h",
                "as of 2026-03-02T15:00:00Z: met, 2h12m counted",
            ]
        );
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let ordered = compute_always(&basic_feed(), "2026-03-02T15:00:00Z");
        let mut shuffled = basic_feed();
        shuffled.reverse();
        shuffled.swap(0, 2);
        // An exact duplicate and a conflicting later duplicate of e2: the first e2 counts.
        shuffled.push(obs("e3", "2026-03-02T10:00:00Z", "ON_HOLD", 1));
        shuffled.insert(1, obs("e2", "2026-03-02T14:00:00Z", "ON_HOLD", 2));
        // Observations after `now` are ignored.
        shuffled.push(obs("e9", "2026-03-02T16:00:00Z", "IN_PROGRESS", 2));
        assert_eq!(compute_always(&shuffled, "2026-03-02T15:00:00Z"), ordered);
    }

    #[test]
    fn sequence_breaks_ties_at_the_same_instant() {
        let mut put_on_hold = obs("e2", "2026-03-02T09:00:00Z", "ON_HOLD", 1);
        put_on_hold.sequence = 2;
        let mut created = obs("e1", "2026-03-02T09:00:00Z", "NEW", 1);
        created.sequence = 1;
        let clock = compute_always(&[put_on_hold, created], "2026-03-02T10:00:00Z");
        assert_eq!(clock.state, ClockState::Paused);
        assert_eq!(clock.start, Some(at("2026-03-02T09:00:00Z")));
        assert_eq!(clock.elapsed, TimeDelta::zero());
        assert_eq!(clock.segments.len(), 2);
        assert_eq!(clock.segments[1].cause, "e2");
    }

    #[test]
    fn back_dated_observation_changes_the_result() {
        let mut feed = basic_feed();
        feed.push(obs("e6", "2026-03-02T09:15:00Z", "ON_HOLD", 1));
        let clock = compute_always(&feed, "2026-03-02T15:00:00Z");
        // Running 09:00–09:15, on hold until IN_PROGRESS at 09:30, running 09:30–10:00, on hold
        // until 12:00, running 12:00–13:12: 15m + 30m + 1h12m.
        assert_eq!(clock.elapsed, hm(1, 57));
        assert_eq!(clock.segments.len(), 5);
        assert_eq!(clock.segments[2].cause, "e2");
        assert_eq!(clock.segments[2].counted, TimeDelta::minutes(30));
        assert_eq!(clock.state, ClockState::Met);
        // 2 h is not reached any more: no warning.
        assert!(clock.warnings.is_empty());
    }

    #[test]
    fn business_hours_pause_over_the_weekend() {
        // Friday 2026-03-06 15:00 start, on hold 16:00 until Monday 10:00; now Monday 12:00 (P2, 8 h).
        let feed = vec![
            obs("e1", "2026-03-06T15:00:00Z", "NEW", 2),
            obs("e2", "2026-03-06T16:00:00Z", "ON_HOLD", 2),
            obs("e3", "2026-03-09T10:00:00Z", "IN_PROGRESS", 2),
        ];
        let calendar = london_business_hours();
        let clock = compute(&rules(), &calendar, &feed, at("2026-03-09T12:00:00Z"));
        assert_eq!(clock.state, ClockState::Running);
        assert_eq!(clock.segments[1].counted, TimeDelta::zero());
        assert_eq!(clock.elapsed, TimeDelta::hours(3));
        // 7 h left from Monday 10:00 fills Monday exactly.
        assert_eq!(clock.due, Some(at("2026-03-09T17:00:00Z")));
        assert!(clock.warnings.is_empty());
        // 50 % = 4 h: 3 h left after Friday's hour, from Monday 10:00.
        assert_eq!(clock.next_alert, Some(at("2026-03-09T13:00:00Z")));

        // Same while paused: no due time, no alert.
        let paused = compute(&rules(), &calendar, &feed[..2], at("2026-03-08T12:00:00Z"));
        assert_eq!(paused.state, ClockState::Paused);
        assert_eq!(paused.elapsed, TimeDelta::hours(1));
        assert_eq!(paused.due, None);
        assert_eq!(paused.next_alert, None);

        // Running over the weekend counts nothing either: 2 h Friday + 3 h Monday.
        let running = compute(&rules(), &calendar, &feed[..1], at("2026-03-09T12:00:00Z"));
        assert_eq!(running.elapsed, TimeDelta::hours(5));
        assert_eq!(running.due, Some(at("2026-03-09T15:00:00Z")));
        assert_eq!(running.warnings, vec![(50, at("2026-03-09T11:00:00Z"))]);
    }

    fn breach_feed() -> Vec<Observation> {
        vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 1),
            obs("e2", "2026-03-02T10:00:00Z", "ON_HOLD", 1),
            obs("e3", "2026-03-02T11:00:00Z", "IN_PROGRESS", 1),
        ]
    }

    #[test]
    fn breach_while_running() {
        let clock = compute_always(&breach_feed(), "2026-03-02T15:00:00Z");
        assert_eq!(clock.state, ClockState::Breached);
        // 1 h before the hold, 3 h more from 11:00.
        assert_eq!(clock.breach_time, Some(at("2026-03-02T14:00:00Z")));
        assert_eq!(clock.due, clock.breach_time);
        assert_eq!(clock.next_alert, None);
        assert_eq!(clock.elapsed, TimeDelta::hours(5));
        assert_eq!(
            clock.warnings,
            vec![
                (50, at("2026-03-02T12:00:00Z")),
                (75, at("2026-03-02T13:00:00Z")),
                (90, at("2026-03-02T13:36:00Z")),
            ]
        );
        assert!(
            clock
                .explanation
                .contains(&"2026-03-02T14:00:00Z breached: 4h of working time passed".to_owned())
        );
        // Exactly at the breach instant the target has been reached.
        let at_breach = compute_always(&breach_feed(), "2026-03-02T14:00:00Z");
        assert_eq!(at_breach.state, ClockState::Breached);
        assert_eq!(at_breach.breach_time, Some(at("2026-03-02T14:00:00Z")));
    }

    #[test]
    fn breach_then_stop_stays_breached() {
        let mut feed = breach_feed();
        feed.push(obs("e4", "2026-03-02T14:30:00Z", "RESOLVED", 1));
        let clock = compute_always(&feed, "2026-03-02T15:00:00Z");
        assert_eq!(clock.state, ClockState::Breached);
        assert_eq!(clock.breach_time, Some(at("2026-03-02T14:00:00Z")));
        assert_eq!(clock.stop, Some(at("2026-03-02T14:30:00Z")));
        assert_eq!(clock.elapsed, hm(4, 30));
        assert!(
            clock.explanation.contains(
                &"2026-03-02T14:30:00Z stopped: RESOLVED (event e4); 4h30m counted of 4h target: breached"
                    .to_owned()
            )
        );
    }

    #[test]
    fn stop_before_or_at_the_target_is_met() {
        let mut feed = breach_feed();
        feed.push(obs("e4", "2026-03-02T13:00:00Z", "RESOLVED", 1));
        let clock = compute_always(&feed, "2026-03-02T15:00:00Z");
        assert_eq!(clock.state, ClockState::Met);
        assert_eq!(clock.elapsed, TimeDelta::hours(3));
        assert_eq!(clock.breach_time, None);
        // 75 % (3 h) is reached exactly at the stop: not passed.
        assert_eq!(clock.warnings, vec![(50, at("2026-03-02T12:00:00Z"))]);

        let mut feed = breach_feed();
        feed.push(obs("e4", "2026-03-02T14:00:00Z", "RESOLVED", 1));
        let clock = compute_always(&feed, "2026-03-02T15:00:00Z");
        assert_eq!(clock.state, ClockState::Met);
        assert_eq!(clock.elapsed, TimeDelta::hours(4));
        assert_eq!(clock.breach_time, None);
    }

    #[test]
    fn warnings_due_and_next_alert() {
        let feed = vec![obs("e1", "2026-03-02T09:00:00Z", "NEW", 1)];
        let clock = compute_always(&feed, "2026-03-02T11:30:00Z");
        assert_eq!(clock.state, ClockState::Running);
        assert_eq!(clock.warnings, vec![(50, at("2026-03-02T11:00:00Z"))]);
        assert_eq!(clock.due, Some(at("2026-03-02T13:00:00Z")));
        assert_eq!(clock.next_alert, Some(at("2026-03-02T12:00:00Z")));

        let clock = compute_always(&feed, "2026-03-02T12:50:00Z");
        assert_eq!(
            clock.warnings,
            vec![
                (50, at("2026-03-02T11:00:00Z")),
                (75, at("2026-03-02T12:00:00Z")),
                (90, at("2026-03-02T12:36:00Z")),
            ]
        );
        assert_eq!(clock.due, Some(at("2026-03-02T13:00:00Z")));
        assert_eq!(clock.next_alert, Some(at("2026-03-02T13:00:00Z")));
        assert_eq!(clock.elapsed, hm(3, 50));
    }

    #[test]
    fn priority_change_switches_the_target() {
        let feed = vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 2),
            obs("e2", "2026-03-02T10:00:00Z", "IN_PROGRESS", 1),
        ];
        let before = compute_always(&feed[..1], "2026-03-02T09:30:00Z");
        assert_eq!(before.target, Some(TimeDelta::hours(8)));
        assert_eq!(before.due, Some(at("2026-03-02T17:00:00Z")));

        let after = compute_always(&feed, "2026-03-02T12:00:00Z");
        assert_eq!(after.priority, 1);
        assert_eq!(after.target, Some(TimeDelta::hours(4)));
        assert_eq!(after.due, Some(at("2026-03-02T13:00:00Z")));
        assert!(after.explanation.contains(
            &"2026-03-02T10:00:00Z priority changed from P2 to P1 (event e2): the whole clock is recomputed against the new target"
                .to_owned()
        ));

        // Raised to P1 after 4 h had passed: breached retroactively at 13:00.
        let late = vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 2),
            obs("e2", "2026-03-02T14:00:00Z", "IN_PROGRESS", 1),
        ];
        let late = compute_always(&late, "2026-03-02T14:30:00Z");
        assert_eq!(late.state, ClockState::Breached);
        assert_eq!(late.breach_time, Some(at("2026-03-02T13:00:00Z")));
    }

    #[test]
    fn reopen_resumes_counting() {
        let feed = vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 1),
            obs("e2", "2026-03-02T10:00:00Z", "RESOLVED", 1),
            obs("e3", "2026-03-02T12:00:00Z", "IN_PROGRESS", 1),
        ];
        let clock = compute_always(&feed, "2026-03-02T13:00:00Z");
        assert_eq!(clock.state, ClockState::Running);
        assert_eq!(clock.stop, None);
        assert_eq!(clock.elapsed, TimeDelta::hours(2));
        assert_eq!(clock.segments.len(), 2);
        assert_eq!(clock.segments[1].reason, "IN_PROGRESS reopens the clock");
        assert_eq!(clock.segments[1].end, None);
        // 3 h left from 12:00.
        assert_eq!(clock.due, Some(at("2026-03-02T15:00:00Z")));
        assert!(
            clock
                .explanation
                .iter()
                .any(|line| line.starts_with("2026-03-02T12:00:00Z reopened: IN_PROGRESS"))
        );
    }

    #[test]
    fn cancel_is_final() {
        let feed = vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 1),
            obs("e2", "2026-03-02T10:00:00Z", "CANCELLED", 1),
            obs("e3", "2026-03-02T11:00:00Z", "IN_PROGRESS", 1),
        ];
        let clock = compute_always(&feed, "2026-03-02T18:00:00Z");
        assert_eq!(clock.state, ClockState::Cancelled);
        assert_eq!(clock.stop, Some(at("2026-03-02T10:00:00Z")));
        assert_eq!(clock.elapsed, TimeDelta::hours(1));
        assert_eq!(clock.segments.len(), 1);
        assert_eq!(clock.segments[0].end, Some(at("2026-03-02T10:00:00Z")));
        assert_eq!(clock.due, None);
        assert_eq!(clock.next_alert, None);
        assert_eq!(clock.breach_time, None);
    }

    #[test]
    fn no_duration_never_breaches() {
        let feed = vec![obs("e1", "2026-03-02T09:00:00Z", "NEW", 3)];
        let clock = compute_always(&feed, "2026-03-10T09:00:00Z");
        assert_eq!(clock.state, ClockState::Running);
        assert_eq!(clock.target, None);
        assert_eq!(clock.elapsed, TimeDelta::hours(192));
        assert_eq!(clock.breach_time, None);
        assert_eq!(clock.due, None);
        assert_eq!(clock.next_alert, None);
        assert!(clock.warnings.is_empty());
        assert!(
            clock
                .explanation
                .contains(&"priority P3: no duration applies, so the clock never breaches".to_owned())
        );
    }

    #[test]
    fn pending_until_a_start_state() {
        let mut rules = rules();
        rules.start_states = vec!["IN_PROGRESS".to_owned()];
        let feed = vec![
            obs("e1", "2026-03-02T09:00:00Z", "NEW", 1),
            obs("e2", "2026-03-02T10:00:00Z", "IN_PROGRESS", 1),
        ];
        let calendar = BusinessCalendar::always();
        let pending = compute(&rules, &calendar, &feed, at("2026-03-02T09:30:00Z"));
        assert_eq!(pending.state, ClockState::Pending);
        assert!(pending.segments.is_empty());
        assert_eq!(pending.elapsed, TimeDelta::zero());
        assert_eq!(pending.start, None);
        assert_eq!(pending.due, None);

        let started = compute(&rules, &calendar, &feed, at("2026-03-02T11:00:00Z"));
        assert_eq!(started.start, Some(at("2026-03-02T10:00:00Z")));
        assert_eq!(started.elapsed, TimeDelta::hours(1));
        assert_eq!(started.due, Some(at("2026-03-02T14:00:00Z")));
    }

    #[test]
    fn durations_format_compactly() {
        assert_eq!(format_duration(hm(3, 12)), "3h12m");
        assert_eq!(format_duration(TimeDelta::hours(4)), "4h");
        assert_eq!(format_duration(TimeDelta::minutes(5)), "5m");
        assert_eq!(format_duration(TimeDelta::seconds(45)), "45s");
        assert_eq!(format_duration(TimeDelta::zero()), "0s");
        assert_eq!(format_duration(TimeDelta::hours(50)), "50h");
    }
}
