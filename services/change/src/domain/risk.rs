//! Risk assessment that explains itself: each factor adds points with a reason, and the total
//! gives the level.

use std::collections::BTreeMap;

use super::lifecycle::ChangeType;

/// Numbers match `itsm.change.v1.Risk`.
pub const LOW: i32 = 1;
pub const MODERATE: i32 = 2;
pub const HIGH: i32 = 3;
pub const VERY_HIGH: i32 = 4;

/// The built-in questionnaire, until a tenant saves its own: (id, question, the answer that
/// adds risk, points).
pub const QUESTIONS: &[(&str, &str, bool, i32)] = &[
    ("tested_in_staging", "Was the change tested in a staging environment?", false, 10),
    ("backout_tested", "Was the backout plan tested?", false, 10),
    ("requires_downtime", "Does the change need downtime?", true, 10),
];

/// One question of a tenant's questionnaire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    pub id: String,
    pub question: String,
    pub risky_answer: bool,
    pub points: i32,
}

/// The built-in questions as [`Question`]s.
pub fn built_in() -> Vec<Question> {
    QUESTIONS
        .iter()
        .map(|(id, question, risky_answer, points)| Question {
            id: (*id).to_string(),
            question: (*question).to_string(),
            risky_answer: *risky_answer,
            points: *points,
        })
        .collect()
}

/// Most questions in a questionnaire, and the points range of one.
pub const MAX_QUESTIONS: usize = 50;
pub const MAX_POINTS: i32 = 50;

/// What is wrong with a questionnaire, as (field, description) pairs.
pub fn questionnaire_problems(questions: &[Question]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if questions.is_empty() || questions.len() > MAX_QUESTIONS {
        problems.push(("questions".to_string(), format!("must hold 1 to {MAX_QUESTIONS} questions")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, q) in questions.iter().enumerate() {
        let id_ok = !q.id.is_empty()
            && q.id.len() <= 64
            && q.id.starts_with(|c: char| c.is_ascii_lowercase())
            && q.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !id_ok {
            problems.push((
                format!("questions[{i}].id"),
                "must be lower snake case, at most 64 characters".into(),
            ));
        } else if !seen.insert(q.id.as_str()) {
            problems.push((format!("questions[{i}].id"), format!("{} is used twice", q.id)));
        }
        if q.question.trim().is_empty() || q.question.len() > 500 {
            problems
                .push((format!("questions[{i}].question"), "is required (at most 500 characters)".into()));
        }
        if !(1..=MAX_POINTS).contains(&q.points) {
            problems.push((format!("questions[{i}].points"), format!("must be 1 to {MAX_POINTS}")));
        }
    }
    problems
}

/// What the assessment looks at.
#[derive(Debug, Clone, Default)]
pub struct RiskInputs {
    pub change_type: Option<ChangeType>,
    /// Highest CMDB criticality among the affected CIs (0 unknown, 1 low … 4 critical).
    pub max_criticality: i32,
    /// Business services that fail when the affected CIs fail.
    pub business_services: i32,
    /// Past implemented changes on the same CIs, and how many of them failed.
    pub past_changes: i32,
    pub past_failures: i32,
    /// Other open changes overlapping this one on a shared CI.
    pub conflicts: i32,
    pub answers: BTreeMap<String, bool>,
    /// The tenant's questionnaire (empty: the built-in questions).
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Factor {
    pub factor: String,
    pub points: i32,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAssessment {
    pub level: i32,
    pub score: i32,
    pub factors: Vec<Factor>,
}

fn factor(name: &str, points: i32, explanation: String) -> Factor {
    Factor { factor: name.to_string(), points, explanation }
}

pub fn assess(inputs: &RiskInputs) -> RiskAssessment {
    let mut factors = Vec::new();
    let criticality = ["unknown", "low", "medium", "high", "critical"];
    let level_name =
        criticality.get(inputs.max_criticality.clamp(0, 4) as usize).copied().unwrap_or("unknown");
    factors.push(factor(
        "ci_criticality",
        match inputs.max_criticality {
            4 => 20,
            3 => 12,
            2 => 6,
            _ => 0,
        },
        format!("the most critical affected CI is {level_name}"),
    ));
    factors.push(factor(
        "blast_radius",
        match inputs.business_services {
            0 => 0,
            1 => 8,
            2..=4 => 15,
            _ => 25,
        },
        format!("{} business service(s) depend on the affected CIs", inputs.business_services),
    ));
    let (type_points, type_name) = match inputs.change_type {
        Some(ChangeType::Standard) => (0, "standard (pre-approved)"),
        Some(ChangeType::Emergency) => (15, "emergency (little time to assess)"),
        _ => (5, "normal"),
    };
    factors.push(factor("change_type", type_points, format!("the change is {type_name}")));
    let failure_points = if inputs.past_changes == 0 {
        0
    } else {
        (inputs.past_failures * 20 + inputs.past_changes - 1) / inputs.past_changes
    };
    factors.push(factor(
        "failure_history",
        failure_points,
        format!("{} of {} past changes on these CIs failed", inputs.past_failures, inputs.past_changes),
    ));
    factors.push(factor(
        "schedule_conflicts",
        if inputs.conflicts > 0 { 15 } else { 0 },
        format!("{} other change(s) overlap on a shared CI", inputs.conflicts),
    ));
    let mut answered = Vec::new();
    let mut question_points = 0;
    let questions = if inputs.questions.is_empty() { built_in() } else { inputs.questions.clone() };
    for q in &questions {
        if let Some(answer) = inputs.answers.get(&q.id)
            && *answer == q.risky_answer
        {
            question_points += q.points;
            answered.push(format!("{}: {answer}", q.id));
        }
    }
    factors.push(factor(
        "questionnaire",
        question_points,
        if answered.is_empty() { "no risky answers".to_string() } else { answered.join(", ") },
    ));
    let score: i32 = factors.iter().map(|f| f.points).sum();
    let level = match score {
        s if s < 20 => LOW,
        s if s < 40 => MODERATE,
        s if s < 60 => HIGH,
        _ => VERY_HIGH,
    };
    RiskAssessment { level, score, factors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_questionnaire_replaces_the_built_in_one() {
        let own = vec![Question {
            id: "touches_payments".into(),
            question: "Does it touch payment processing?".into(),
            risky_answer: true,
            points: 30,
        }];
        let mut answers = BTreeMap::new();
        answers.insert("touches_payments".to_string(), true);
        answers.insert("tested_in_staging".to_string(), false);
        let with_own = assess(&RiskInputs { answers: answers.clone(), questions: own, ..Default::default() });
        let questionnaire = with_own.factors.iter().find(|f| f.factor == "questionnaire").unwrap();
        assert_eq!(questionnaire.points, 30, "only the tenant's question counts");
        assert!(questionnaire.explanation.contains("touches_payments"));
        let built = assess(&RiskInputs { answers, ..Default::default() });
        assert_eq!(built.factors.iter().find(|f| f.factor == "questionnaire").unwrap().points, 10);
    }

    #[test]
    fn questionnaires_are_checked() {
        let q = |id: &str, points: i32| Question {
            id: id.into(),
            question: "Q?".into(),
            risky_answer: true,
            points,
        };
        assert!(questionnaire_problems(&built_in()).is_empty());
        let fields: Vec<String> =
            questionnaire_problems(&[q("ok", 5), q("ok", 5), q("Bad-Id", 5), q("zero", 0)])
                .into_iter()
                .map(|(f, _)| f)
                .collect();
        assert_eq!(fields, ["questions[1].id", "questions[2].id", "questions[3].points"]);
        assert_eq!(questionnaire_problems(&[]).len(), 1);
    }

    fn points(a: &RiskAssessment, name: &str) -> i32 {
        a.factors.iter().find(|f| f.factor == name).map(|f| f.points).unwrap()
    }

    #[test]
    fn a_standard_change_on_nothing_critical_is_low() {
        let a = assess(&RiskInputs { change_type: Some(ChangeType::Standard), ..Default::default() });
        assert_eq!((a.level, a.score), (LOW, 0));
        assert_eq!(a.factors.len(), 6, "every factor is reported, even at zero");
    }

    #[test]
    fn each_factor_adds_its_points() {
        let mut inputs = RiskInputs { change_type: Some(ChangeType::Normal), ..Default::default() };
        assert_eq!(assess(&inputs).score, 5);
        inputs.max_criticality = 4;
        assert_eq!(points(&assess(&inputs), "ci_criticality"), 20);
        inputs.business_services = 3;
        assert_eq!(points(&assess(&inputs), "blast_radius"), 15);
        inputs.past_changes = 4;
        inputs.past_failures = 1;
        assert_eq!(points(&assess(&inputs), "failure_history"), 5);
        inputs.conflicts = 2;
        assert_eq!(points(&assess(&inputs), "schedule_conflicts"), 15);
        inputs.answers.insert("backout_tested".into(), false);
        inputs.answers.insert("tested_in_staging".into(), true);
        let a = assess(&inputs);
        assert_eq!(points(&a, "questionnaire"), 10);
        assert_eq!(a.score, 5 + 20 + 15 + 5 + 15 + 10);
        assert_eq!(a.level, VERY_HIGH);
        assert!(
            a.factors.iter().any(|f| f.explanation == "3 business service(s) depend on the affected CIs")
        );
    }

    #[test]
    fn levels_follow_the_score() {
        let at = |criticality, services, kind| {
            assess(&RiskInputs {
                change_type: Some(kind),
                max_criticality: criticality,
                business_services: services,
                ..Default::default()
            })
        };
        assert_eq!(at(2, 1, ChangeType::Normal).level, LOW); // 6 + 8 + 5 = 19
        assert_eq!(at(3, 1, ChangeType::Normal).level, MODERATE); // 12 + 8 + 5 = 25
        assert_eq!(at(4, 2, ChangeType::Normal).level, HIGH); // 20 + 15 + 5 = 40
        assert_eq!(at(4, 5, ChangeType::Emergency).level, VERY_HIGH); // 20 + 25 + 15 = 60
    }
}
