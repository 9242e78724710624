//! Release rules: the release state machine, artefact digests and the gates a deployment to an
//! environment must pass. Numbers match `itsm.change.v1.ReleaseState` and `ReleaseType`.

use std::fmt;

use super::lifecycle::ChangeState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseState {
    Planned = 1,
    Build = 2,
    Test = 3,
    Deploy = 4,
    Review = 5,
    Closed = 6,
    Cancelled = 7,
}

use ReleaseState::{Build, Cancelled, Closed, Deploy, Planned, Review, Test};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseType {
    Major = 1,
    Minor = 2,
    Emergency = 3,
}

impl ReleaseType {
    pub fn from_i32(value: i32) -> Option<Self> {
        [Self::Major, Self::Minor, Self::Emergency].into_iter().find(|t| *t as i32 == value)
    }
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 7] = [Planned, Build, Test, Deploy, Review, Closed, Cancelled];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            Planned => "PLANNED",
            Build => "BUILD",
            Test => "TEST",
            Deploy => "DEPLOY",
            Review => "REVIEW",
            Closed => "CLOSED",
            Cancelled => "CANCELLED",
        }
    }

    /// States UpdateRelease may move to from here. TEST -> DEPLOY is DeployRelease's: a release
    /// enters DEPLOY by its first deployment, through the gates.
    pub fn next_states(self) -> &'static [ReleaseState] {
        match self {
            Planned => &[Build, Cancelled],
            Build => &[Test, Cancelled],
            Test => &[Build, Cancelled],
            Deploy => &[Review],
            Review => &[Closed],
            Closed | Cancelled => &[],
        }
    }

    /// `Ok` when UpdateRelease may move from `self` to `to`; else a message naming the legal moves.
    pub fn check(self, to: ReleaseState) -> Result<(), String> {
        if self.next_states().contains(&to) {
            return Ok(());
        }
        let legal: Vec<&str> = self.next_states().iter().map(|s| s.name()).collect();
        let hint = if self == Test && to == Deploy {
            " (DeployRelease moves a tested release to DEPLOY)"
        } else {
            ""
        };
        Err(if legal.is_empty() {
            format!("a release in {self} is final; it cannot move to {to}")
        } else {
            format!(
                "a release cannot move from {self} to {to}{hint}; from {self} it can go to {}",
                legal.join(", ")
            )
        })
    }

    /// Whether the release's content (changes, CIs, artefacts, environments) may still change.
    pub fn content_open(self) -> bool {
        matches!(self, Planned | Build | Test)
    }
}

impl fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SHA-256 digest as 64 lowercase or uppercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One evaluated gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub gate: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What the gates of deploying a release to one environment are decided on.
pub struct GateInputs<'a> {
    pub state: ReleaseState,
    pub kind: ReleaseType,
    pub environment: &'a str,
    /// The release's environments in order, each with whether it is deployed now.
    pub stages: &'a [(String, bool)],
    /// Bundled changes: name and state (None: the change does not exist).
    pub changes: &'a [(String, Option<ChangeState>)],
    pub evidence: usize,
    /// The change service's CanDeploy per CI of the release in that environment: (CI, allowed, reasons).
    pub can_deploy: &'a [(String, bool, Vec<String>)],
}

/// Every gate, passed or not, so a refusal can name all that failed at once.
pub fn gates(inputs: &GateInputs<'_>) -> Vec<Gate> {
    let mut out = Vec::new();
    let state_ok = matches!(inputs.state, Test | Deploy);
    out.push(Gate {
        gate: "state",
        passed: state_ok,
        detail: if state_ok {
            format!("the release is {}", inputs.state)
        } else {
            format!("the release is {}; it deploys from TEST or DEPLOY", inputs.state)
        },
    });

    let position = inputs.stages.iter().position(|(env, _)| env == inputs.environment);
    let (passed, detail) = match position {
        None => (false, format!("{:?} is not one of the release's environments", inputs.environment)),
        Some(0) => (true, format!("{:?} is the first stage", inputs.environment)),
        Some(i) => {
            let (before, deployed) = &inputs.stages[i - 1];
            if *deployed {
                (true, format!("the previous stage {before:?} is deployed"))
            } else {
                (false, format!("the previous stage {before:?} is not deployed"))
            }
        }
    };
    out.push(Gate { gate: "previous_stage", passed, detail });

    let unauthorised: Vec<String> = inputs
        .changes
        .iter()
        .filter_map(|(name, state)| match state {
            None => Some(format!("{name} does not exist")),
            Some(
                ChangeState::Scheduled | ChangeState::Implement | ChangeState::Review | ChangeState::Closed,
            ) => None,
            Some(s) => Some(format!("{name} is {s}")),
        })
        .collect();
    out.push(if inputs.changes.is_empty() {
        Gate { gate: "changes_authorised", passed: false, detail: "the release bundles no change".into() }
    } else if unauthorised.is_empty() {
        Gate {
            gate: "changes_authorised",
            passed: true,
            detail: format!("all {} bundled changes are authorised", inputs.changes.len()),
        }
    } else {
        Gate {
            gate: "changes_authorised",
            passed: false,
            detail: format!("not authorised: {}", unauthorised.join("; ")),
        }
    });

    out.push(if inputs.evidence > 0 {
        Gate {
            gate: "test_evidence",
            passed: true,
            detail: format!("{} piece(s) of test evidence", inputs.evidence),
        }
    } else if inputs.kind == ReleaseType::Emergency {
        Gate {
            gate: "test_evidence",
            passed: true,
            detail: "an emergency release may deploy before its evidence is attached".into(),
        }
    } else {
        Gate { gate: "test_evidence", passed: false, detail: "no test evidence attached".into() }
    });

    let refused: Vec<String> = inputs
        .can_deploy
        .iter()
        .filter(|(_, allowed, _)| !allowed)
        .map(|(ci, _, reasons)| format!("{ci}: {}", reasons.join("; ")))
        .collect();
    out.push(if refused.is_empty() {
        Gate {
            gate: "can_deploy",
            passed: true,
            detail: if inputs.can_deploy.is_empty() {
                format!("the release has no CI in {:?}", inputs.environment)
            } else {
                format!("an authorised change covers each of the {} CIs now", inputs.can_deploy.len())
            },
        }
    } else {
        Gate { gate: "can_deploy", passed: false, detail: refused.join(" | ") }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_states() {
        for from in ReleaseState::ALL {
            for to in ReleaseState::ALL {
                let legal = matches!(
                    (from, to),
                    (Planned | Test, Build | Cancelled)
                        | (Build, Test | Cancelled)
                        | (Deploy, Review)
                        | (Review, Closed)
                );
                assert_eq!(from.check(to).is_ok(), legal, "{from} -> {to}");
            }
        }
        let err = Test.check(Deploy).unwrap_err();
        assert!(err.contains("DeployRelease") && err.contains("BUILD, CANCELLED"), "{err}");
        assert!(Closed.check(Review).unwrap_err().contains("final"));
    }

    #[test]
    fn digests() {
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"a".repeat(63)));
        assert!(!is_sha256(&"g".repeat(64)));
    }

    fn inputs<'a>(
        stages: &'a [(String, bool)],
        changes: &'a [(String, Option<ChangeState>)],
        can: &'a [(String, bool, Vec<String>)],
        environment: &'a str,
        evidence: usize,
    ) -> GateInputs<'a> {
        GateInputs {
            state: Test,
            kind: ReleaseType::Minor,
            environment,
            stages,
            changes,
            evidence,
            can_deploy: can,
        }
    }

    fn failed(gates: &[Gate]) -> Vec<&'static str> {
        gates.iter().filter(|g| !g.passed).map(|g| g.gate).collect()
    }

    #[test]
    fn all_gates_pass_for_an_authorised_tested_release_in_order() {
        let stages = [("staging".to_string(), false), ("production".to_string(), false)];
        let changes = [("changes/CHG1".to_string(), Some(ChangeState::Scheduled))];
        let can = [("configurationItems/a".to_string(), true, vec![])];
        assert!(failed(&gates(&inputs(&stages, &changes, &can, "staging", 1))).is_empty());
    }

    #[test]
    fn each_gate_fails_on_its_own() {
        let stages = [("staging".to_string(), false), ("production".to_string(), false)];
        let ok = [("changes/CHG1".to_string(), Some(ChangeState::Implement))];
        let can = [("configurationItems/a".to_string(), true, vec![])];
        assert_eq!(failed(&gates(&inputs(&stages, &ok, &can, "production", 1))), ["previous_stage"]);
        assert_eq!(failed(&gates(&inputs(&stages, &ok, &can, "qa", 1))), ["previous_stage"]);
        let assess =
            [("changes/CHG1".to_string(), Some(ChangeState::Assess)), ("changes/CHG9".to_string(), None)];
        let g = gates(&inputs(&stages, &assess, &can, "staging", 1));
        assert_eq!(failed(&g), ["changes_authorised"]);
        assert!(g[2].detail.contains("CHG1 is ASSESS") && g[2].detail.contains("CHG9 does not exist"));
        assert_eq!(failed(&gates(&inputs(&stages, &[], &can, "staging", 1))), ["changes_authorised"]);
        assert_eq!(failed(&gates(&inputs(&stages, &ok, &can, "staging", 0))), ["test_evidence"]);
        let refused = [("configurationItems/a".to_string(), false, vec!["no authorised change".to_string()])];
        let g = gates(&inputs(&stages, &ok, &refused, "staging", 1));
        assert_eq!(failed(&g), ["can_deploy"]);
        assert!(g[4].detail.contains("no authorised change"));
        let mut planned = inputs(&stages, &ok, &can, "staging", 1);
        planned.state = Planned;
        assert_eq!(failed(&gates(&planned)), ["state"]);
        let mut emergency = inputs(&stages, &ok, &can, "staging", 0);
        emergency.kind = ReleaseType::Emergency;
        assert!(failed(&gates(&emergency)).is_empty(), "evidence may follow an emergency release");
    }
}
