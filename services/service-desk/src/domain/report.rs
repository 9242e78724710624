//! Service desk figures from tickets: first-contact resolution, escalation per tier, mean times.

/// What the report needs of one ticket (times in micros; 0 = not yet).
#[derive(Debug, Clone, Default)]
pub struct TicketFacts {
    pub open_time: i64,
    pub first_response_time: i64,
    pub resolve_time: i64,
    pub max_tier: i32,
    pub escalation_count: i32,
    pub survey_score: i32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierFigures {
    pub tier: i32,
    pub tickets: i32,
    pub escalated: i32,
    pub escalation_rate: f64,
    pub resolved: i32,
    pub mean_time_to_respond_seconds: f64,
    pub mean_time_to_resolve_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub tickets: i32,
    pub resolved: i32,
    pub first_contact_resolved: i32,
    pub first_contact_resolution_rate: f64,
    pub tiers: Vec<TierFigures>,
    pub mean_survey_score: f64,
    pub surveys: i32,
}

fn rate(part: i32, whole: i32) -> f64 {
    if whole == 0 { 0.0 } else { f64::from(part) / f64::from(whole) }
}

fn mean_seconds(values: &[i64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<i64>() as f64 / values.len() as f64 / 1e6 }
}

pub fn compute(tickets: &[TicketFacts]) -> Report {
    let resolved: Vec<&TicketFacts> = tickets.iter().filter(|t| t.resolve_time > 0).collect();
    let fcr = resolved.iter().filter(|t| t.max_tier <= 1 && t.escalation_count == 0).count() as i32;
    let tiers = (1..=3)
        .map(|tier| {
            // A ticket passed through every tier up to the highest it reached.
            let worked: Vec<&TicketFacts> = tickets.iter().filter(|t| t.max_tier.max(1) >= tier).collect();
            let escalated = worked.iter().filter(|t| t.max_tier > tier).count() as i32;
            let finished: Vec<&&TicketFacts> =
                resolved.iter().filter(|t| t.max_tier.max(1) == tier).collect();
            let respond: Vec<i64> = finished
                .iter()
                .filter(|t| t.first_response_time > 0)
                .map(|t| t.first_response_time - t.open_time)
                .collect();
            let resolve: Vec<i64> = finished.iter().map(|t| t.resolve_time - t.open_time).collect();
            TierFigures {
                tier,
                tickets: worked.len() as i32,
                escalated,
                escalation_rate: rate(escalated, worked.len() as i32),
                resolved: finished.len() as i32,
                mean_time_to_respond_seconds: mean_seconds(&respond),
                mean_time_to_resolve_seconds: mean_seconds(&resolve),
            }
        })
        .collect();
    let scores: Vec<i32> = tickets.iter().map(|t| t.survey_score).filter(|s| *s > 0).collect();
    Report {
        tickets: tickets.len() as i32,
        resolved: resolved.len() as i32,
        first_contact_resolved: fcr,
        first_contact_resolution_rate: rate(fcr, resolved.len() as i32),
        tiers,
        mean_survey_score: if scores.is_empty() {
            0.0
        } else {
            f64::from(scores.iter().sum::<i32>()) / scores.len() as f64
        },
        surveys: scores.len() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_per_tier() {
        let s = 1_000_000;
        let tickets = vec![
            // Resolved at tier 1 on first contact: responded after 60 s, resolved after 600 s.
            TicketFacts {
                open_time: 0,
                first_response_time: 60 * s,
                resolve_time: 600 * s,
                max_tier: 1,
                escalation_count: 0,
                survey_score: 5,
            },
            // Escalated 1 -> 2 -> 3, resolved at tier 3.
            TicketFacts {
                open_time: 0,
                first_response_time: 120 * s,
                resolve_time: 3600 * s,
                max_tier: 3,
                escalation_count: 2,
                survey_score: 3,
            },
            // Escalated to 2, still open.
            TicketFacts {
                open_time: 0,
                first_response_time: 0,
                resolve_time: 0,
                max_tier: 2,
                escalation_count: 1,
                survey_score: 0,
            },
        ];
        let r = compute(&tickets);
        assert_eq!((r.tickets, r.resolved, r.first_contact_resolved), (3, 2, 1));
        assert!((r.first_contact_resolution_rate - 0.5).abs() < 1e-9);
        let t1 = &r.tiers[0];
        assert_eq!((t1.tickets, t1.escalated, t1.resolved), (3, 2, 1));
        assert!((t1.escalation_rate - 2.0 / 3.0).abs() < 1e-9);
        assert!((t1.mean_time_to_resolve_seconds - 600.0).abs() < 1e-9);
        let t2 = &r.tiers[1];
        assert_eq!((t2.tickets, t2.escalated, t2.resolved), (2, 1, 0));
        let t3 = &r.tiers[2];
        assert_eq!((t3.tickets, t3.escalated, t3.resolved), (1, 0, 1));
        assert!((t3.mean_time_to_respond_seconds - 120.0).abs() < 1e-9);
        assert_eq!(r.surveys, 2);
        assert!((r.mean_survey_score - 4.0).abs() < 1e-9);
        assert_eq!(compute(&[]).first_contact_resolution_rate, 0.0);
    }
}
