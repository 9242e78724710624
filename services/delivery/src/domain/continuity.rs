//! IT service continuity management (ITIL): business impact analysis, continuity plans,
//! recovery-time estimates over the CMDB dependency chain, gap analysis, exercises and the live
//! tracking of an invoked plan. Plain Rust: no gRPC, no SQL.
//!
//! Step precedence: a step waits for every other step that recovers a CI its own CIs depend on,
//! following `deps` (the CMDB "depends on" relations, CI -> provider CIs). CIs that no step
//! recovers are walked through, so `web -> lb -> app` still makes the web step wait for the app
//! step when nobody recovers the load balancer. Steps with no such relation may run in parallel,
//! so the recovery time of a plan is the length of its critical path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

pub use itsm_runtime::error::FieldViolation;

const NOT_NEGATIVE: &str = "must not be negative";
const NOT_EMPTY: &str = "must not be empty";

// ---------------------------------------------------------------------------------------------
// Business impact analysis
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    Low,
    Medium,
    High,
    Critical,
}

/// How badly the business suffers at a point of an outage. Ordered, so "gets worse" is `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImpactLevel {
    Low,
    Moderate,
    High,
    Severe,
}

/// The impact reached once an outage has lasted `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactStep {
    pub after: TimeDelta,
    pub level: ImpactLevel,
    /// Loss per hour of outage from this point on, when the business has put a figure on it.
    pub financial_per_hour: Option<Decimal>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessImpact {
    pub business_service: String,
    pub criticality: Criticality,
    /// Recovery time objective: how soon the service must be back.
    pub rto: TimeDelta,
    /// Recovery point objective: how much data (as time before the incident) may be lost.
    pub rpo: TimeDelta,
    /// Maximum tolerable downtime: beyond it the business cannot survive the outage.
    pub mtd: TimeDelta,
    /// The impact as the outage goes on, earliest first.
    pub impact_over_time: Vec<ImpactStep>,
}

/// Checks the figures of a business impact analysis; every problem is reported, not only the
/// first, with proto-style field paths (`impact_over_time[2].after`).
pub fn validate_bia(bia: &BusinessImpact) -> Result<(), Vec<FieldViolation>> {
    let zero = TimeDelta::zero();
    let mut violations = Vec::new();
    if bia.business_service.trim().is_empty() {
        violations.push(FieldViolation::new("business_service", NOT_EMPTY));
    }
    for (field, value) in [("rto", bia.rto), ("rpo", bia.rpo), ("mtd", bia.mtd)] {
        if value < zero {
            violations.push(FieldViolation::new(field, NOT_NEGATIVE));
        }
    }
    // Recovering after the MTD would plan for an outage the business has said it cannot survive.
    if bia.mtd >= zero && bia.rto > bia.mtd {
        violations.push(FieldViolation::new("rto", "must not exceed mtd (the maximum tolerable downtime)"));
    }
    let mut previous: Option<(usize, &ImpactStep)> = None;
    for (index, step) in bia.impact_over_time.iter().enumerate() {
        let path = format!("impact_over_time[{index}]");
        if step.after < zero {
            violations.push(FieldViolation::new(format!("{path}.after"), NOT_NEGATIVE));
        }
        if let Some((previous_index, previous_step)) = previous {
            if step.after <= previous_step.after {
                violations.push(FieldViolation::new(
                    format!("{path}.after"),
                    format!("must be later than impact_over_time[{previous_index}].after"),
                ));
            }
            // An outage does not hurt less the longer it lasts.
            if step.level < previous_step.level {
                violations.push(FieldViolation::new(
                    format!("{path}.level"),
                    format!("must not be lower than impact_over_time[{previous_index}].level"),
                ));
            }
        }
        if step.financial_per_hour.is_some_and(|amount| amount < Decimal::ZERO) {
            violations.push(FieldViolation::new(format!("{path}.financial_per_hour"), NOT_NEGATIVE));
        }
        previous = Some((index, step));
    }
    into_result(violations)
}

// ---------------------------------------------------------------------------------------------
// Continuity plans
// ---------------------------------------------------------------------------------------------

/// ITIL recovery options, from the cheapest and slowest to the most expensive and fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryStrategy {
    /// Carry on without the service (paper forms, phone orders).
    ManualWorkaround,
    /// Facilities shared with another organisation under a reciprocal agreement.
    Reciprocal,
    /// Cold standby: an empty site, equipment brought in and installed (typically > 72 hours).
    GradualRecovery,
    /// Warm standby: equipment in place, systems restored from backups (typically 24-72 hours).
    IntermediateRecovery,
    /// Hot standby: a prepared site with current data (typically < 24 hours).
    FastRecovery,
    /// Mirrored or load-balanced: no noticeable interruption.
    Immediate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// Position in the plan as written; also the step's identity during an invocation.
    pub order: u32,
    pub title: String,
    pub owner: String,
    /// How long the step is expected to take.
    pub expected: TimeDelta,
    /// Ids of the CIs this step brings back.
    pub recovers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuityPlan {
    pub business_service: String,
    pub strategy: RecoveryStrategy,
    pub steps: Vec<PlanStep>,
    pub last_exercised: Option<DateTime<Utc>>,
}

/// Checks a plan's structure: at least one step, unique orders, titled steps, no negative
/// durations, no blank CI ids.
pub fn validate_plan(plan: &ContinuityPlan) -> Result<(), Vec<FieldViolation>> {
    let mut violations = Vec::new();
    if plan.business_service.trim().is_empty() {
        violations.push(FieldViolation::new("business_service", NOT_EMPTY));
    }
    if plan.steps.is_empty() {
        violations.push(FieldViolation::new("steps", "must contain at least one step"));
    }
    let mut first_with_order: HashMap<u32, usize> = HashMap::new();
    for (index, step) in plan.steps.iter().enumerate() {
        let path = format!("steps[{index}]");
        // Orders identify steps during an invocation, so two steps must never share one.
        match first_with_order.get(&step.order) {
            Some(first) => violations.push(FieldViolation::new(
                format!("{path}.order"),
                format!("duplicates steps[{first}].order ({})", step.order),
            )),
            None => {
                first_with_order.insert(step.order, index);
            }
        }
        if step.title.trim().is_empty() {
            violations.push(FieldViolation::new(format!("{path}.title"), NOT_EMPTY));
        }
        if step.expected < TimeDelta::zero() {
            violations.push(FieldViolation::new(format!("{path}.expected"), NOT_NEGATIVE));
        }
        for (ci_index, ci) in step.recovers.iter().enumerate() {
            if ci.trim().is_empty() {
                violations.push(FieldViolation::new(format!("{path}.recovers[{ci_index}]"), NOT_EMPTY));
            }
        }
    }
    into_result(violations)
}

// ---------------------------------------------------------------------------------------------
// Recovery-time estimate
// ---------------------------------------------------------------------------------------------

/// A step placed before a step it has to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderViolation {
    /// The step listed too early.
    pub step: u32,
    /// The later-listed step it has to wait for.
    pub depends_on_step: u32,
    /// The CI of `step` that needs `dependency`.
    pub ci: String,
    /// The CI recovered by `depends_on_step`.
    pub dependency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryEstimate {
    /// Length of the critical path: the shortest possible recovery with unlimited staff.
    pub total: TimeDelta,
    /// Orders of the steps on the critical path, in execution order.
    pub critical_path: Vec<u32>,
    pub order_violations: Vec<OrderViolation>,
    /// Groups of steps that wait for one another (orders, ascending); each group is assumed
    /// to run one step after another in plan order.
    pub dependency_cycles: Vec<Vec<u32>>,
}

/// Estimates how long the plan takes when independent steps run in parallel. Never loops:
/// dependency cycles between steps are broken by running the cycle's steps in plan order.
pub fn estimate_recovery(plan: &ContinuityPlan, deps: &HashMap<String, Vec<String>>) -> RecoveryEstimate {
    let graph = StepGraph::build(plan, deps);
    let durations: Vec<TimeDelta> = plan.steps.iter().map(|step| step.expected).collect();
    let (total, path) = graph.critical_path(&durations);
    RecoveryEstimate {
        total,
        critical_path: path.iter().map(|&index| plan.steps[index].order).collect(),
        order_violations: graph.order_violations,
        dependency_cycles: graph.cycles,
    }
}

/// The plan's steps as a precedence graph (indices into `plan.steps`).
struct StepGraph {
    /// Step indices in plan order: by `order`, then by position for duplicate orders.
    ranked: Vec<usize>,
    /// `rank[index]` is the position of step `index` in `ranked`.
    rank: Vec<usize>,
    /// For each step, the steps that must finish before it may start. Always acyclic.
    prerequisites: Vec<BTreeSet<usize>>,
    order_violations: Vec<OrderViolation>,
    cycles: Vec<Vec<u32>>,
}

impl StepGraph {
    fn build(plan: &ContinuityPlan, deps: &HashMap<String, Vec<String>>) -> Self {
        let steps = &plan.steps;
        let count = steps.len();
        let mut ranked: Vec<usize> = (0..count).collect();
        ranked.sort_by_key(|&index| (steps[index].order, index));
        let mut rank = vec![0; count];
        for (position, &index) in ranked.iter().enumerate() {
            rank[index] = position;
        }

        let relations = direct_relations(steps, deps);

        let mut order_violations = Vec::new();
        for &index in &ranked {
            for (&provider, (ci, dependency)) in &relations[index] {
                if steps[index].order < steps[provider].order {
                    order_violations.push(OrderViolation {
                        step: steps[index].order,
                        depends_on_step: steps[provider].order,
                        ci: ci.clone(),
                        dependency: dependency.clone(),
                    });
                }
            }
        }
        order_violations.sort_by_key(|v| (v.step, v.depends_on_step));

        // Strongly connected groups by mutual reachability: plans are small, so the quadratic
        // approach is cheap and simpler to trust than an iterative Tarjan.
        let reach: Vec<Vec<bool>> = (0..count).map(|start| reachable_from(start, &relations)).collect();
        let mut group_of: Vec<Option<usize>> = vec![None; count];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut cycles: Vec<Vec<u32>> = Vec::new();
        for &index in &ranked {
            if group_of[index].is_some() {
                continue;
            }
            // Filtering `ranked` keeps the members in plan order.
            let members: Vec<usize> = ranked
                .iter()
                .copied()
                .filter(|&other| other == index || (reach[index][other] && reach[other][index]))
                .collect();
            for &member in &members {
                group_of[member] = Some(groups.len());
            }
            if members.len() > 1 {
                cycles.push(members.iter().map(|&member| steps[member].order).collect());
            }
            groups.push(members);
        }

        let mut prerequisites = vec![BTreeSet::new(); count];
        for (index, related) in relations.iter().enumerate() {
            for &provider in related.keys() {
                if group_of[index] != group_of[provider] {
                    prerequisites[index].insert(provider);
                }
            }
        }
        // A cycle has no valid order, so its steps are taken one after another as written.
        // Between groups the graph is the (acyclic) condensation, so the result is acyclic.
        for members in &groups {
            for pair in members.windows(2) {
                prerequisites[pair[1]].insert(pair[0]);
            }
        }

        Self { ranked, rank, prerequisites, order_violations, cycles }
    }

    /// Steps in an order where prerequisites come first; plan order among independent steps.
    fn topological(&self) -> Vec<usize> {
        let count = self.rank.len();
        let mut waiting: Vec<usize> = self.prerequisites.iter().map(BTreeSet::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (index, prerequisites) in self.prerequisites.iter().enumerate() {
            for &prerequisite in prerequisites {
                dependents[prerequisite].push(index);
            }
        }
        let mut ready: BTreeSet<(usize, usize)> =
            (0..count).filter(|&index| waiting[index] == 0).map(|i| (self.rank[i], i)).collect();
        let mut sorted = Vec::with_capacity(count);
        let mut placed = vec![false; count];
        while let Some((_, index)) = ready.pop_first() {
            sorted.push(index);
            placed[index] = true;
            for &dependent in &dependents[index] {
                waiting[dependent] = waiting[dependent].saturating_sub(1);
                if waiting[dependent] == 0 {
                    ready.insert((self.rank[dependent], dependent));
                }
            }
        }
        // The graph is acyclic by construction; this only guards against dropping steps.
        for &index in &self.ranked {
            if !placed[index] {
                sorted.push(index);
            }
        }
        sorted
    }

    /// Longest chain of `durations` (negative ones count as zero): its length and its steps in
    /// execution order.
    fn critical_path(&self, durations: &[TimeDelta]) -> (TimeDelta, Vec<usize>) {
        let zero = TimeDelta::zero();
        let count = durations.len();
        let mut finish = vec![zero; count];
        let mut predecessor: Vec<Option<usize>> = vec![None; count];
        for index in self.topological() {
            let latest = self.prerequisites[index]
                .iter()
                .copied()
                .max_by_key(|&prerequisite| (finish[prerequisite], self.rank[prerequisite]));
            let start = latest.map_or(zero, |prerequisite| finish[prerequisite]);
            finish[index] = saturating_add(start, durations[index].max(zero));
            predecessor[index] = latest;
        }
        let Some(last) = (0..count).max_by_key(|&index| (finish[index], self.rank[index])) else {
            return (zero, Vec::new());
        };
        let mut path = vec![last];
        let mut current = last;
        while let Some(previous) = predecessor[current] {
            // Predecessors form a chain in a DAG; the bound is a guard, not a limit.
            if path.len() > count {
                break;
            }
            path.push(previous);
            current = previous;
        }
        path.reverse();
        (finish[last], path)
    }

    /// Every step `index` waits for, directly or through other steps.
    fn all_prerequisites(&self, index: usize) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        let mut stack: Vec<usize> = self.prerequisites[index].iter().copied().collect();
        while let Some(next) = stack.pop() {
            if found.insert(next) {
                stack.extend(self.prerequisites[next].iter().copied());
            }
        }
        found
    }

    fn index_of(&self, plan: &ContinuityPlan, order: u32) -> Option<usize> {
        self.ranked.iter().copied().find(|&index| plan.steps[index].order == order)
    }
}

/// For each step, the other steps it waits for directly, with the first (ci, dependency) pair
/// that explains why. The walk stops at CIs recovered by another step (their own relations
/// cover what lies beyond) and passes through CIs no step recovers.
fn direct_relations(
    steps: &[PlanStep],
    deps: &HashMap<String, Vec<String>>,
) -> Vec<BTreeMap<usize, (String, String)>> {
    let mut recovered_by: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, step) in steps.iter().enumerate() {
        for ci in &step.recovers {
            let owners = recovered_by.entry(ci.as_str()).or_default();
            if !owners.contains(&index) {
                owners.push(index);
            }
        }
    }
    let mut relations = vec![BTreeMap::new(); steps.len()];
    for (index, step) in steps.iter().enumerate() {
        let mut visited: HashSet<&str> = step.recovers.iter().map(String::as_str).collect();
        // (CI of this step the walk started from, CI reached)
        let mut queue: VecDeque<(&str, &str)> =
            step.recovers.iter().map(|ci| (ci.as_str(), ci.as_str())).collect();
        while let Some((origin, current)) = queue.pop_front() {
            let Some(providers) = deps.get(current) else {
                continue;
            };
            for provider in providers {
                // `visited` also makes CI cycles in the CMDB harmless.
                if !visited.insert(provider.as_str()) {
                    continue;
                }
                match recovered_by.get(provider.as_str()) {
                    Some(owners) => {
                        for &owner in owners.iter().filter(|&&owner| owner != index) {
                            relations[index]
                                .entry(owner)
                                .or_insert_with(|| (origin.to_owned(), provider.clone()));
                        }
                    }
                    None => queue.push_back((origin, provider.as_str())),
                }
            }
        }
    }
    relations
}

fn reachable_from(start: usize, relations: &[BTreeMap<usize, (String, String)>]) -> Vec<bool> {
    let mut seen = vec![false; relations.len()];
    let mut stack: Vec<usize> = relations[start].keys().copied().collect();
    while let Some(next) = stack.pop() {
        if !seen[next] {
            seen[next] = true;
            stack.extend(relations[next].keys().copied());
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Gap analysis
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// Time between two backups: the most data a restore can lose.
    pub interval: TimeDelta,
}

#[derive(Debug, Clone, Copy)]
pub struct ServiceContinuityInput<'a> {
    pub business_service: &'a str,
    pub bia: Option<&'a BusinessImpact>,
    pub plan: Option<&'a ContinuityPlan>,
    /// The CMDB dependency closure of the service (the CIs it needs).
    pub dependencies: &'a [String],
    /// CI -> the CIs it depends on, restricted to the closure.
    pub deps: &'a HashMap<String, Vec<String>>,
    /// CI -> its backup policy.
    pub backups: &'a HashMap<String, BackupPolicy>,
    /// The CIs that hold data (and so need a backup).
    pub data_cis: &'a HashSet<String>,
    pub now: DateTime<Utc>,
    /// How often the plan must be exercised.
    pub exercise_period: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    NoImpactAnalysis,
    NoPlan,
    /// A CI the service needs that no plan step recovers.
    UnrecoveredDependency {
        ci: String,
    },
    /// A data-holding CI without a backup.
    NoBackup {
        ci: String,
    },
    /// Backups too far apart: a restore could lose more data than the RPO allows.
    BackupIntervalExceedsRpo {
        ci: String,
        interval: TimeDelta,
        rpo: TimeDelta,
    },
    /// The plan's critical path is longer than the RTO.
    RtoNotMet {
        estimated: TimeDelta,
        rto: TimeDelta,
    },
    StepOrder(OrderViolation),
    /// Steps that wait for one another, by order.
    StepDependencyCycle {
        steps: Vec<u32>,
    },
    /// Never exercised, or not within the exercise period.
    NotExercised {
        last: Option<DateTime<Utc>>,
    },
}

impl Gap {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoImpactAnalysis => "NO_IMPACT_ANALYSIS",
            Self::NoPlan => "NO_PLAN",
            Self::UnrecoveredDependency { .. } => "UNRECOVERED_DEPENDENCY",
            Self::NoBackup { .. } => "NO_BACKUP",
            Self::BackupIntervalExceedsRpo { .. } => "BACKUP_INTERVAL_EXCEEDS_RPO",
            Self::RtoNotMet { .. } => "RTO_NOT_MET",
            Self::StepOrder(_) => "STEP_ORDER",
            Self::StepDependencyCycle { .. } => "STEP_DEPENDENCY_CYCLE",
            Self::NotExercised { .. } => "NOT_EXERCISED",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::NoImpactAnalysis => "No business impact analysis has been recorded, so the \
                recovery time and recovery point objectives are unknown."
                .to_owned(),
            Self::NoPlan => "No continuity plan exists for the service.".to_owned(),
            Self::UnrecoveredDependency { ci } => {
                format!("The service depends on CI {ci}, but no plan step recovers it.")
            }
            Self::NoBackup { ci } => format!("CI {ci} holds data but has no backup."),
            Self::BackupIntervalExceedsRpo { ci, interval, rpo } => format!(
                "CI {ci} is backed up every {}, so a restore could lose more data than the \
                 recovery point objective of {} allows.",
                human_duration(*interval),
                human_duration(*rpo)
            ),
            Self::RtoNotMet { estimated, rto } => format!(
                "The plan is estimated to take {}, longer than the recovery time objective of {}.",
                human_duration(*estimated),
                human_duration(*rto)
            ),
            Self::StepOrder(violation) => format!(
                "Step {} is listed before step {}, but its CI {} depends on {}, which step {} \
                 recovers.",
                violation.step,
                violation.depends_on_step,
                violation.ci,
                violation.dependency,
                violation.depends_on_step
            ),
            Self::StepDependencyCycle { steps } => format!(
                "Steps {} wait for one another; they are assumed to run one after another.",
                order_list(steps)
            ),
            Self::NotExercised { last: None } => "The plan has never been exercised.".to_owned(),
            Self::NotExercised { last: Some(last) } => format!(
                "The plan was last exercised on {}, longer ago than the exercise period allows.",
                last.format("%Y-%m-%d")
            ),
        }
    }
}

/// Everything that stands between the service and a recovery within its objectives. Empty for
/// a healthy service. Gaps that only make sense with a plan (unrecovered CIs, step order,
/// exercises) are left out when there is no plan: `NoPlan` already says it all.
pub fn analyse_gaps(input: ServiceContinuityInput<'_>) -> Vec<Gap> {
    let mut gaps = Vec::new();
    if input.bia.is_none() {
        gaps.push(Gap::NoImpactAnalysis);
    }
    if input.plan.is_none() {
        gaps.push(Gap::NoPlan);
    }

    let recovered: HashSet<&str> = input
        .plan
        .map(|plan| plan.steps.iter().flat_map(|step| step.recovers.iter().map(String::as_str)).collect())
        .unwrap_or_default();
    let mut seen: HashSet<&str> = HashSet::new();
    for ci in input.dependencies {
        if !seen.insert(ci.as_str()) {
            continue;
        }
        if input.plan.is_some() && !recovered.contains(ci.as_str()) {
            gaps.push(Gap::UnrecoveredDependency { ci: ci.clone() });
        }
        if !input.data_cis.contains(ci) {
            continue;
        }
        match input.backups.get(ci) {
            None => gaps.push(Gap::NoBackup { ci: ci.clone() }),
            Some(policy) => {
                if let Some(bia) = input.bia
                    && policy.interval > bia.rpo
                {
                    gaps.push(Gap::BackupIntervalExceedsRpo {
                        ci: ci.clone(),
                        interval: policy.interval,
                        rpo: bia.rpo,
                    });
                }
            }
        }
    }

    if let Some(plan) = input.plan {
        let estimate = estimate_recovery(plan, input.deps);
        if let Some(bia) = input.bia
            && estimate.total > bia.rto
        {
            gaps.push(Gap::RtoNotMet { estimated: estimate.total, rto: bia.rto });
        }
        gaps.extend(estimate.order_violations.into_iter().map(Gap::StepOrder));
        gaps.extend(estimate.dependency_cycles.into_iter().map(|steps| Gap::StepDependencyCycle { steps }));
        let exercised_recently = plan
            .last_exercised
            .is_some_and(|last| input.now.signed_duration_since(last) <= input.exercise_period);
        if !exercised_recently {
            gaps.push(Gap::NotExercised { last: plan.last_exercised });
        }
    }
    gaps
}

// ---------------------------------------------------------------------------------------------
// Exercises
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExerciseResult {
    /// How long the exercise took to bring the service back.
    pub achieved_recovery: TimeDelta,
    /// How much data (as time before the simulated incident) was lost.
    pub data_loss: TimeDelta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExerciseAssessment {
    pub rto_met: bool,
    pub rpo_met: bool,
    /// rto - achieved recovery; negative when the RTO was missed.
    pub rto_margin: TimeDelta,
    /// rpo - data loss; negative when the RPO was missed.
    pub rpo_margin: TimeDelta,
}

/// Compares an exercise's outcome with the objectives of the analysis.
pub fn assess_exercise(
    bia: &BusinessImpact,
    result: &ExerciseResult,
) -> Result<ExerciseAssessment, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    if result.achieved_recovery < TimeDelta::zero() {
        violations.push(FieldViolation::new("achieved_recovery", NOT_NEGATIVE));
    }
    if result.data_loss < TimeDelta::zero() {
        violations.push(FieldViolation::new("data_loss", NOT_NEGATIVE));
    }
    into_result(violations)?;
    Ok(ExerciseAssessment {
        rto_met: result.achieved_recovery <= bia.rto,
        rpo_met: result.data_loss <= bia.rpo,
        rto_margin: saturating_sub(bia.rto, result.achieved_recovery),
        rpo_margin: saturating_sub(bia.rpo, result.data_loss),
    })
}

// ---------------------------------------------------------------------------------------------
// Invocation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    Pending,
    InProgress,
    Done,
    Skipped,
    Failed,
}

impl StepState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Done => "DONE",
            Self::Skipped => "SKIPPED",
            Self::Failed => "FAILED",
        }
    }

    /// The states a step in this state may move to.
    pub fn allowed_next(self) -> Vec<StepState> {
        match self {
            Self::Pending => vec![Self::InProgress, Self::Skipped],
            Self::InProgress => vec![Self::Done, Self::Failed],
            // A failed step is retried; giving up on it is not a state of the step.
            Self::Failed => vec![Self::InProgress],
            Self::Done | Self::Skipped => Vec::new(),
        }
    }

    /// Whether dependent steps may go ahead: a skipped step is not waited for.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Skipped)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProgress {
    pub order: u32,
    pub state: StepState,
    /// When the current attempt started (a retry restarts it).
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

impl StepProgress {
    pub fn pending(order: u32) -> Self {
        Self { order, state: StepState::Pending, started: None, finished: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {} cannot move from {} to {}; allowed: {}", .order, .from, .to, state_list(.allowed))]
pub struct IllegalStepTransition {
    pub order: u32,
    pub from: StepState,
    pub to: StepState,
    pub allowed: Vec<StepState>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepTransitionError {
    #[error(transparent)]
    Illegal(#[from] IllegalStepTransition),
    /// The clock of the caller went backwards; recording it would make durations negative.
    #[error("step {order} cannot end at {at} before it started at {started}")]
    EndsBeforeStart { order: u32, started: DateTime<Utc>, at: DateTime<Utc> },
}

/// Moves a step to `to` at `at`: Pending -> InProgress | Skipped, InProgress -> Done | Failed,
/// Failed -> InProgress (a retry, which restarts `started`); Done and Skipped are final.
pub fn transition_step(
    current: &StepProgress,
    to: StepState,
    at: DateTime<Utc>,
) -> Result<StepProgress, StepTransitionError> {
    let allowed = current.state.allowed_next();
    if !allowed.contains(&to) {
        return Err(IllegalStepTransition { order: current.order, from: current.state, to, allowed }.into());
    }
    let next = match to {
        StepState::InProgress => StepProgress { state: to, started: Some(at), finished: None, ..*current },
        StepState::Skipped => StepProgress { state: to, finished: Some(at), ..*current },
        StepState::Done | StepState::Failed => {
            if let Some(started) = current.started
                && at < started
            {
                return Err(StepTransitionError::EndsBeforeStart { order: current.order, started, at });
            }
            StepProgress { state: to, finished: Some(at), ..*current }
        }
        // Not in any allowed list, so unreachable; kept total without a panic.
        StepState::Pending => StepProgress { state: to, ..*current },
    };
    Ok(next)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartBlocked {
    #[error("the plan has no step {0}")]
    UnknownStep(u32),
    /// Orders of the unfinished steps it waits for (directly or through other steps).
    #[error("waiting for steps {}", order_list(.0))]
    WaitingFor(Vec<u32>),
}

/// Whether the step may start now: every step it waits for is Done or Skipped. Steps missing
/// from `progress` count as pending. The step's own state is `transition_step`'s concern.
pub fn can_start(
    plan: &ContinuityPlan,
    deps: &HashMap<String, Vec<String>>,
    progress: &[StepProgress],
    order: u32,
) -> Result<(), StartBlocked> {
    let graph = StepGraph::build(plan, deps);
    let index = graph.index_of(plan, order).ok_or(StartBlocked::UnknownStep(order))?;
    let states = states_by_order(progress);
    let unfinished: BTreeSet<u32> = graph
        .all_prerequisites(index)
        .into_iter()
        .map(|prerequisite| plan.steps[prerequisite].order)
        .filter(|prerequisite| !state_of(&states, *prerequisite).is_finished())
        .collect();
    if unfinished.is_empty() {
        Ok(())
    } else {
        Err(StartBlocked::WaitingFor(unfinished.into_iter().collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationStatus {
    /// Time since the disaster was declared.
    pub elapsed: TimeDelta,
    /// Critical path over the unfinished steps, from now.
    pub remaining_estimate: TimeDelta,
    /// now + remaining; once every step is finished, when the last one finished.
    pub expected_recovery_at: DateTime<Utc>,
    /// declared_at + RTO, when an RTO is known.
    pub rto_deadline: Option<DateTime<Utc>>,
    /// Expected recovery no later than the RTO deadline (true when there is no RTO).
    pub on_track: bool,
    /// Steps Done or Skipped.
    pub steps_done: usize,
    pub steps_total: usize,
    /// Orders of the unfinished steps on the remaining critical path.
    pub remaining_critical_path: Vec<u32>,
}

/// Where an invoked plan stands. Unfinished steps count their full expected time (a failed
/// step will be retried); steps in progress count what is left of it, never below zero.
pub fn invocation_eta(
    plan: &ContinuityPlan,
    deps: &HashMap<String, Vec<String>>,
    progress: &[StepProgress],
    declared_at: DateTime<Utc>,
    now: DateTime<Utc>,
    rto: Option<TimeDelta>,
) -> InvocationStatus {
    let zero = TimeDelta::zero();
    let graph = StepGraph::build(plan, deps);
    let states = states_by_order(progress);
    let remaining: Vec<TimeDelta> = plan
        .steps
        .iter()
        .map(|step| {
            let expected = step.expected.max(zero);
            let Some(step_progress) = states.get(&step.order) else {
                return expected;
            };
            match step_progress.state {
                StepState::Done | StepState::Skipped => zero,
                StepState::Pending | StepState::Failed => expected,
                StepState::InProgress => {
                    let spent = step_progress
                        .started
                        .map_or(zero, |started| now.signed_duration_since(started).max(zero));
                    saturating_sub(expected, spent).max(zero)
                }
            }
        })
        .collect();
    let (remaining_estimate, path) = graph.critical_path(&remaining);

    let finished: Vec<&PlanStep> =
        plan.steps.iter().filter(|step| state_of(&states, step.order).is_finished()).collect();
    let all_finished = !plan.steps.is_empty() && finished.len() == plan.steps.len();
    let last_finish = finished.iter().filter_map(|step| states.get(&step.order)?.finished).max();
    let expected_recovery_at = match last_finish {
        Some(at) if all_finished => at,
        _ => now.checked_add_signed(remaining_estimate).unwrap_or(DateTime::<Utc>::MAX_UTC),
    };
    let rto_deadline = rto.map(|rto| {
        declared_at.checked_add_signed(rto).unwrap_or(if rto < zero {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    });
    InvocationStatus {
        elapsed: now.signed_duration_since(declared_at).max(zero),
        remaining_estimate,
        expected_recovery_at,
        rto_deadline,
        on_track: rto_deadline.is_none_or(|deadline| expected_recovery_at <= deadline),
        steps_done: finished.len(),
        steps_total: plan.steps.len(),
        remaining_critical_path: path
            .into_iter()
            .map(|index| plan.steps[index].order)
            .filter(|&order| !state_of(&states, order).is_finished())
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn into_result(violations: Vec<FieldViolation>) -> Result<(), Vec<FieldViolation>> {
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

/// The first progress record of each order (a duplicate later in the list is ignored).
fn states_by_order(progress: &[StepProgress]) -> HashMap<u32, &StepProgress> {
    let mut states = HashMap::new();
    for step_progress in progress {
        states.entry(step_progress.order).or_insert(step_progress);
    }
    states
}

fn state_of(states: &HashMap<u32, &StepProgress>, order: u32) -> StepState {
    states.get(&order).map_or(StepState::Pending, |step_progress| step_progress.state)
}

// Durations come from user input, and `TimeDelta + TimeDelta` panics on overflow.
fn saturating_add(left: TimeDelta, right: TimeDelta) -> TimeDelta {
    left.checked_add(&right).unwrap_or(if right < TimeDelta::zero() {
        TimeDelta::MIN
    } else {
        TimeDelta::MAX
    })
}

fn saturating_sub(left: TimeDelta, right: TimeDelta) -> TimeDelta {
    left.checked_sub(&right).unwrap_or(if right < TimeDelta::zero() {
        TimeDelta::MAX
    } else {
        TimeDelta::MIN
    })
}

/// "1d 4h", "2h 30m", "45s", "0s".
fn human_duration(duration: TimeDelta) -> String {
    let seconds = duration.num_seconds().unsigned_abs();
    let units = [(seconds / 86_400, "d"), (seconds % 86_400 / 3_600, "h"), (seconds % 3_600 / 60, "m")];
    let mut parts: Vec<String> =
        units.iter().filter(|(value, _)| *value > 0).map(|(value, unit)| format!("{value}{unit}")).collect();
    let rest = seconds % 60;
    if rest > 0 || parts.is_empty() {
        parts.push(format!("{rest}s"));
    }
    let sign = if duration < TimeDelta::zero() { "-" } else { "" };
    format!("{sign}{}", parts.join(" "))
}

fn order_list(orders: &[u32]) -> String {
    orders.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn state_list(states: &[StepState]) -> String {
    if states.is_empty() {
        "none".to_owned()
    } else {
        states.iter().map(|state| state.name()).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn hours(count: i64) -> TimeDelta {
        TimeDelta::hours(count)
    }

    fn minutes(count: i64) -> TimeDelta {
        TimeDelta::minutes(count)
    }

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
    }

    fn impact(after: TimeDelta, level: ImpactLevel) -> ImpactStep {
        ImpactStep { after, level, financial_per_hour: None, description: format!("{level:?}") }
    }

    fn bia(rto: TimeDelta, rpo: TimeDelta, mtd: TimeDelta) -> BusinessImpact {
        BusinessImpact {
            business_service: "payroll".to_owned(),
            criticality: Criticality::High,
            rto,
            rpo,
            mtd,
            impact_over_time: vec![
                impact(TimeDelta::zero(), ImpactLevel::Low),
                impact(hours(4), ImpactLevel::High),
                impact(hours(24), ImpactLevel::Severe),
            ],
        }
    }

    fn step(order: u32, title: &str, expected: TimeDelta, recovers: &[&str]) -> PlanStep {
        PlanStep {
            order,
            title: title.to_owned(),
            owner: "ops".to_owned(),
            expected,
            recovers: recovers.iter().map(|ci| (*ci).to_owned()).collect(),
        }
    }

    fn plan(steps: Vec<PlanStep>) -> ContinuityPlan {
        ContinuityPlan {
            business_service: "payroll".to_owned(),
            strategy: RecoveryStrategy::IntermediateRecovery,
            steps,
            last_exercised: None,
        }
    }

    fn dependency_map(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(ci, providers)| ((*ci).to_owned(), providers.iter().map(|p| (*p).to_owned()).collect()))
            .collect()
    }

    fn fields(result: Result<(), Vec<FieldViolation>>) -> Vec<String> {
        result.err().unwrap_or_default().into_iter().map(|v| v.field).collect()
    }

    /// storage <- db <- app <- web, and cache <- app as a second branch; notify has no CI.
    fn chain_plan() -> ContinuityPlan {
        plan(vec![
            step(1, "Restore storage", hours(1), &["storage"]),
            step(2, "Restore database", hours(2), &["db"]),
            step(3, "Rebuild cache", minutes(210), &["cache"]),
            step(4, "Start application", hours(1), &["app"]),
            step(5, "Open web tier", minutes(30), &["web"]),
            step(6, "Notify users", minutes(10), &[]),
        ])
    }

    fn chain_deps() -> HashMap<String, Vec<String>> {
        dependency_map(&[("db", &["storage"]), ("app", &["db", "cache"]), ("web", &["app"])])
    }

    // --- business impact analysis ------------------------------------------------------------

    #[test]
    fn valid_bia_passes() {
        assert_eq!(validate_bia(&bia(hours(8), hours(4), hours(24))), Ok(()));
    }

    #[test]
    fn negative_objectives_are_rejected() {
        let result = validate_bia(&bia(hours(-1), hours(-2), hours(-3)));
        let violations = result.clone().err().unwrap_or_default();
        assert_eq!(fields(result), ["rto", "rpo", "mtd"]);
        assert!(violations.iter().all(|v| v.description == "must not be negative"));
    }

    #[test]
    fn rto_beyond_mtd_is_rejected() {
        let result = validate_bia(&bia(hours(30), hours(4), hours(24)));
        let violations = result.clone().err().unwrap_or_default();
        assert_eq!(fields(result), ["rto"]);
        assert!(violations[0].description.contains("mtd"));
    }

    #[test]
    fn impact_steps_must_grow_over_time() {
        let mut analysis = bia(hours(8), hours(4), hours(24));
        analysis.impact_over_time = vec![
            impact(TimeDelta::zero(), ImpactLevel::Low),
            impact(hours(4), ImpactLevel::High),
            impact(hours(2), ImpactLevel::Moderate),
            impact(hours(2), ImpactLevel::Severe),
        ];
        assert_eq!(
            fields(validate_bia(&analysis)),
            ["impact_over_time[2].after", "impact_over_time[2].level", "impact_over_time[3].after"]
        );
    }

    #[test]
    fn negative_impact_figures_are_rejected() {
        let mut analysis = bia(hours(8), hours(4), hours(24));
        analysis.impact_over_time = vec![ImpactStep {
            after: hours(-1),
            level: ImpactLevel::Low,
            financial_per_hour: Some(Decimal::new(-5, 0)),
            description: String::new(),
        }];
        assert_eq!(
            fields(validate_bia(&analysis)),
            ["impact_over_time[0].after", "impact_over_time[0].financial_per_hour"]
        );
    }

    // --- plans ---------------------------------------------------------------------------------

    #[test]
    fn valid_plan_passes() {
        assert_eq!(validate_plan(&chain_plan()), Ok(()));
    }

    #[test]
    fn plan_without_steps_is_rejected() {
        assert_eq!(fields(validate_plan(&plan(Vec::new()))), ["steps"]);
    }

    #[test]
    fn plan_step_problems_are_all_reported() {
        let bad = plan(vec![step(1, "Restore database", hours(1), &["db"]), step(1, "  ", hours(-1), &[""])]);
        assert_eq!(
            fields(validate_plan(&bad)),
            ["steps[1].order", "steps[1].title", "steps[1].expected", "steps[1].recovers[0]"]
        );
    }

    // --- recovery estimate ---------------------------------------------------------------------

    #[test]
    fn estimate_follows_the_longest_branch() {
        // db branch ends at 3h, cache at 3h30; app then runs to 4h30 and web to 5h.
        let estimate = estimate_recovery(&chain_plan(), &chain_deps());
        assert_eq!(estimate.total, hours(5));
        assert_eq!(estimate.critical_path, [3, 4, 5]);
        assert!(estimate.order_violations.is_empty());
        assert!(estimate.dependency_cycles.is_empty());
    }

    #[test]
    fn estimate_switches_branch_when_the_other_is_longer() {
        let mut quick_cache = chain_plan();
        quick_cache.steps[2].expected = hours(1);
        let estimate = estimate_recovery(&quick_cache, &chain_deps());
        // storage 1h + db 2h + app 1h + web 30m.
        assert_eq!(estimate.total, minutes(270));
        assert_eq!(estimate.critical_path, [1, 2, 4, 5]);
    }

    #[test]
    fn steps_without_relations_run_in_parallel() {
        let independent = plan(vec![
            step(1, "Restore mail", hours(2), &["mail"]),
            step(2, "Restore chat", hours(3), &["chat"]),
        ]);
        let estimate = estimate_recovery(&independent, &HashMap::new());
        assert_eq!(estimate.total, hours(3));
        assert_eq!(estimate.critical_path, [2]);
    }

    #[test]
    fn order_violation_is_detected_and_the_dependency_still_respected() {
        let reversed = plan(vec![
            step(1, "Start application", hours(1), &["app"]),
            step(2, "Restore database", hours(2), &["db"]),
        ]);
        let estimate = estimate_recovery(&reversed, &dependency_map(&[("app", &["db"])]));
        assert_eq!(
            estimate.order_violations,
            [OrderViolation {
                step: 1,
                depends_on_step: 2,
                ci: "app".to_owned(),
                dependency: "db".to_owned(),
            }]
        );
        assert_eq!(estimate.total, hours(3));
        assert_eq!(estimate.critical_path, [2, 1]);
    }

    #[test]
    fn unrecovered_cis_are_walked_through() {
        // Nobody recovers the load balancer, yet the web tier still needs the application.
        let steps = plan(vec![
            step(1, "Open web tier", minutes(30), &["web"]),
            step(2, "Start application", hours(1), &["app"]),
        ]);
        let deps = dependency_map(&[("web", &["lb"]), ("lb", &["app"])]);
        let estimate = estimate_recovery(&steps, &deps);
        assert_eq!(estimate.total, minutes(90));
        assert_eq!(estimate.order_violations.len(), 1);
        assert_eq!(estimate.order_violations[0].ci, "web");
        assert_eq!(estimate.order_violations[0].dependency, "app");
    }

    #[test]
    fn step_cycle_terminates_and_runs_in_plan_order() {
        let cyclic = plan(vec![
            step(1, "Restore a", hours(1), &["a"]),
            step(2, "Restore b", hours(2), &["b"]),
            step(3, "Restore c", minutes(30), &["c"]),
            step(4, "Restore x and y", minutes(10), &["x", "y"]),
        ]);
        let deps =
            dependency_map(&[("a", &["b"]), ("b", &["a"]), ("c", &["a"]), ("x", &["y"]), ("y", &["x"])]);
        let estimate = estimate_recovery(&cyclic, &deps);
        assert_eq!(estimate.dependency_cycles, [vec![1, 2]]);
        // 1 then 2 (3h); 3 only waits for 1 (ends at 1h30).
        assert_eq!(estimate.total, hours(3));
        assert_eq!(estimate.critical_path, [1, 2]);
        let pairs: Vec<(u32, u32)> =
            estimate.order_violations.iter().map(|v| (v.step, v.depends_on_step)).collect();
        assert_eq!(pairs, [(1, 2)]);
    }

    #[test]
    fn three_step_cycle_is_one_group() {
        let cyclic = plan(vec![
            step(1, "a", hours(1), &["a"]),
            step(2, "b", hours(1), &["b"]),
            step(3, "c", hours(1), &["c"]),
            step(4, "d", hours(1), &["d"]),
        ]);
        let deps = dependency_map(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["c"])]);
        let estimate = estimate_recovery(&cyclic, &deps);
        assert_eq!(estimate.dependency_cycles, [vec![1, 2, 3]]);
        // The cycle runs 1, 2, 3 in turn; d waits for c.
        assert_eq!(estimate.total, hours(4));
        assert_eq!(estimate.critical_path, [1, 2, 3, 4]);
    }

    // --- gap analysis --------------------------------------------------------------------------

    struct Fixture {
        bia: BusinessImpact,
        plan: ContinuityPlan,
        dependencies: Vec<String>,
        deps: HashMap<String, Vec<String>>,
        backups: HashMap<String, BackupPolicy>,
        data_cis: HashSet<String>,
    }

    fn healthy() -> Fixture {
        let mut exercised = chain_plan();
        exercised.last_exercised = Some(at(1, 0, 0));
        Fixture {
            bia: bia(hours(8), hours(4), hours(24)),
            plan: exercised,
            dependencies: ["web", "app", "db", "cache", "storage"].map(str::to_owned).to_vec(),
            deps: chain_deps(),
            backups: [
                ("db".to_owned(), BackupPolicy { interval: hours(1) }),
                ("storage".to_owned(), BackupPolicy { interval: hours(4) }),
            ]
            .into_iter()
            .collect(),
            data_cis: ["db", "storage"].map(str::to_owned).into_iter().collect(),
        }
    }

    fn input(fixture: &Fixture) -> ServiceContinuityInput<'_> {
        ServiceContinuityInput {
            business_service: "payroll",
            bia: Some(&fixture.bia),
            plan: Some(&fixture.plan),
            dependencies: &fixture.dependencies,
            deps: &fixture.deps,
            backups: &fixture.backups,
            data_cis: &fixture.data_cis,
            now: at(20, 12, 0),
            exercise_period: TimeDelta::days(180),
        }
    }

    #[test]
    fn healthy_service_has_no_gaps() {
        let fixture = healthy();
        let gaps = analyse_gaps(input(&fixture));
        assert!(gaps.is_empty(), "{gaps:?}");
    }

    #[test]
    fn missing_analysis_and_plan_are_gaps() {
        let fixture = healthy();
        let gaps = analyse_gaps(ServiceContinuityInput { bia: None, plan: None, ..input(&fixture) });
        assert_eq!(gaps, [Gap::NoImpactAnalysis, Gap::NoPlan]);
        assert_eq!(gaps[1].code(), "NO_PLAN");
    }

    #[test]
    fn unrecovered_dependency_is_a_gap() {
        let mut fixture = healthy();
        fixture.plan.steps.retain(|step| step.order != 5);
        assert_eq!(analyse_gaps(input(&fixture)), [Gap::UnrecoveredDependency { ci: "web".to_owned() }]);
    }

    #[test]
    fn data_ci_without_backup_is_a_gap() {
        let mut fixture = healthy();
        fixture.backups.remove("db");
        // cache holds no data, so its missing backup is not a gap.
        assert_eq!(analyse_gaps(input(&fixture)), [Gap::NoBackup { ci: "db".to_owned() }]);
    }

    #[test]
    fn backup_interval_beyond_rpo_is_a_gap() {
        let mut fixture = healthy();
        fixture.backups.insert("storage".to_owned(), BackupPolicy { interval: hours(24) });
        let gaps = analyse_gaps(input(&fixture));
        assert_eq!(
            gaps,
            [Gap::BackupIntervalExceedsRpo { ci: "storage".to_owned(), interval: hours(24), rpo: hours(4) }]
        );
        assert_eq!(gaps[0].code(), "BACKUP_INTERVAL_EXCEEDS_RPO");
        assert!(gaps[0].describe().contains("every 1d"));
    }

    #[test]
    fn plan_slower_than_rto_is_a_gap() {
        let mut fixture = healthy();
        fixture.bia.rto = hours(4);
        let gaps = analyse_gaps(input(&fixture));
        assert_eq!(gaps, [Gap::RtoNotMet { estimated: hours(5), rto: hours(4) }]);
        assert_eq!(
            gaps[0].describe(),
            "The plan is estimated to take 5h, longer than the recovery time objective of 4h."
        );
    }

    #[test]
    fn stale_or_missing_exercise_is_a_gap() {
        let mut fixture = healthy();
        fixture.plan.last_exercised = None;
        assert_eq!(analyse_gaps(input(&fixture)), [Gap::NotExercised { last: None }]);

        let stale = at(20, 12, 0) - TimeDelta::days(200);
        fixture.plan.last_exercised = Some(stale);
        let gaps = analyse_gaps(input(&fixture));
        assert_eq!(gaps, [Gap::NotExercised { last: Some(stale) }]);
        assert!(gaps[0].describe().contains("2025-"));
    }

    #[test]
    fn misordered_step_is_a_gap() {
        let mut fixture = healthy();
        fixture.plan.steps[4].order = 0;
        let gaps = analyse_gaps(input(&fixture));
        assert_eq!(
            gaps,
            [Gap::StepOrder(OrderViolation {
                step: 0,
                depends_on_step: 4,
                ci: "web".to_owned(),
                dependency: "app".to_owned(),
            })]
        );
        assert_eq!(gaps[0].code(), "STEP_ORDER");
    }

    #[test]
    fn every_gap_has_a_code_and_a_description() {
        let gaps = [
            Gap::NoImpactAnalysis,
            Gap::NoPlan,
            Gap::UnrecoveredDependency { ci: "web".to_owned() },
            Gap::NoBackup { ci: "db".to_owned() },
            Gap::BackupIntervalExceedsRpo { ci: "db".to_owned(), interval: hours(6), rpo: hours(4) },
            Gap::RtoNotMet { estimated: hours(5), rto: hours(4) },
            Gap::StepDependencyCycle { steps: vec![1, 2] },
            Gap::NotExercised { last: None },
        ];
        let codes: HashSet<&str> = gaps.iter().map(Gap::code).collect();
        assert_eq!(codes.len(), gaps.len());
        for gap in &gaps {
            assert!(gap.describe().ends_with('.'), "{gap:?}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(minutes(150)), "2h 30m");
        assert_eq!(human_duration(hours(28)), "1d 4h");
        assert_eq!(human_duration(TimeDelta::zero()), "0s");
        assert_eq!(human_duration(-minutes(45)), "-45m");
    }

    // --- exercises -----------------------------------------------------------------------------

    #[test]
    fn exercise_within_objectives_is_met() {
        let result = ExerciseResult { achieved_recovery: hours(6), data_loss: hours(1) };
        let assessment = assess_exercise(&bia(hours(8), hours(4), hours(24)), &result);
        assert_eq!(
            assessment,
            Ok(ExerciseAssessment {
                rto_met: true,
                rpo_met: true,
                rto_margin: hours(2),
                rpo_margin: hours(3),
            })
        );
    }

    #[test]
    fn exercise_beyond_objectives_is_missed() {
        let result = ExerciseResult { achieved_recovery: hours(9), data_loss: hours(5) };
        let assessment = assess_exercise(&bia(hours(8), hours(4), hours(24)), &result);
        assert_eq!(
            assessment,
            Ok(ExerciseAssessment {
                rto_met: false,
                rpo_met: false,
                rto_margin: hours(-1),
                rpo_margin: hours(-1),
            })
        );
    }

    #[test]
    fn negative_exercise_figures_are_rejected() {
        let result = ExerciseResult { achieved_recovery: hours(-1), data_loss: minutes(-5) };
        let assessment = assess_exercise(&bia(hours(8), hours(4), hours(24)), &result);
        let fields: Vec<String> = assessment.err().unwrap_or_default().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["achieved_recovery", "data_loss"]);
    }

    // --- invocation ----------------------------------------------------------------------------

    #[test]
    fn legal_transitions_record_times() {
        let started =
            transition_step(&StepProgress::pending(2), StepState::InProgress, at(10, 1, 0)).unwrap();
        assert_eq!(started.state, StepState::InProgress);
        assert_eq!(started.started, Some(at(10, 1, 0)));
        let done = transition_step(&started, StepState::Done, at(10, 2, 0)).unwrap();
        assert_eq!(
            done,
            StepProgress {
                order: 2,
                state: StepState::Done,
                started: Some(at(10, 1, 0)),
                finished: Some(at(10, 2, 0)),
            }
        );
        let skipped = transition_step(&StepProgress::pending(3), StepState::Skipped, at(10, 1, 0)).unwrap();
        assert_eq!(skipped.finished, Some(at(10, 1, 0)));
    }

    #[test]
    fn failed_step_can_be_retried() {
        let running =
            transition_step(&StepProgress::pending(1), StepState::InProgress, at(10, 1, 0)).unwrap();
        let failed = transition_step(&running, StepState::Failed, at(10, 2, 0)).unwrap();
        let retried = transition_step(&failed, StepState::InProgress, at(10, 3, 0)).unwrap();
        assert_eq!(retried.state, StepState::InProgress);
        assert_eq!(retried.started, Some(at(10, 3, 0)));
        assert_eq!(retried.finished, None);
    }

    #[test]
    fn illegal_transition_lists_the_allowed_states() {
        let error = transition_step(&StepProgress::pending(4), StepState::Done, at(10, 1, 0));
        assert_eq!(
            error,
            Err(StepTransitionError::Illegal(IllegalStepTransition {
                order: 4,
                from: StepState::Pending,
                to: StepState::Done,
                allowed: vec![StepState::InProgress, StepState::Skipped],
            }))
        );
        let finished = StepProgress { state: StepState::Done, ..StepProgress::pending(4) };
        let error = transition_step(&finished, StepState::InProgress, at(10, 1, 0)).unwrap_err();
        assert_eq!(error.to_string(), "step 4 cannot move from DONE to IN_PROGRESS; allowed: none");
    }

    #[test]
    fn step_cannot_end_before_it_started() {
        let running =
            transition_step(&StepProgress::pending(1), StepState::InProgress, at(10, 2, 0)).unwrap();
        assert!(matches!(
            transition_step(&running, StepState::Done, at(10, 1, 0)),
            Err(StepTransitionError::EndsBeforeStart { order: 1, .. })
        ));
    }

    fn progress(order: u32, state: StepState) -> StepProgress {
        StepProgress { state, ..StepProgress::pending(order) }
    }

    #[test]
    fn can_start_waits_for_every_prerequisite() {
        let plan = chain_plan();
        let deps = chain_deps();
        assert_eq!(can_start(&plan, &deps, &[], 5), Err(StartBlocked::WaitingFor(vec![1, 2, 3, 4])));
        assert_eq!(can_start(&plan, &deps, &[], 1), Ok(()));
        assert_eq!(can_start(&plan, &deps, &[], 6), Ok(()));
        assert_eq!(can_start(&plan, &deps, &[], 99), Err(StartBlocked::UnknownStep(99)));

        let mut states = vec![
            progress(1, StepState::Done),
            progress(2, StepState::InProgress),
            progress(3, StepState::Skipped),
        ];
        assert_eq!(can_start(&plan, &deps, &states, 4), Err(StartBlocked::WaitingFor(vec![2])));
        states[1] = progress(2, StepState::Done);
        assert_eq!(can_start(&plan, &deps, &states, 4), Ok(()));
        states.push(progress(4, StepState::Failed));
        assert_eq!(can_start(&plan, &deps, &states, 5), Err(StartBlocked::WaitingFor(vec![4])));
    }

    fn ran(
        order: u32,
        state: StepState,
        started: DateTime<Utc>,
        finished: Option<DateTime<Utc>>,
    ) -> StepProgress {
        StepProgress { order, state, started: Some(started), finished }
    }

    fn live_progress() -> Vec<StepProgress> {
        vec![
            ran(1, StepState::Done, at(10, 0, 0), Some(at(10, 1, 0))),
            ran(2, StepState::InProgress, at(10, 0, 30), None),
            ran(3, StepState::Done, at(10, 0, 0), Some(at(10, 1, 50))),
            progress(6, StepState::Skipped),
        ]
    }

    #[test]
    fn eta_counts_what_is_left_on_the_critical_path() {
        // db has 30m left of 2h, then app 1h and web 30m.
        let status = invocation_eta(
            &chain_plan(),
            &chain_deps(),
            &live_progress(),
            at(10, 0, 0),
            at(10, 2, 0),
            Some(hours(5)),
        );
        assert_eq!(
            status,
            InvocationStatus {
                elapsed: hours(2),
                remaining_estimate: hours(2),
                expected_recovery_at: at(10, 4, 0),
                rto_deadline: Some(at(10, 5, 0)),
                on_track: true,
                steps_done: 3,
                steps_total: 6,
                remaining_critical_path: vec![2, 4, 5],
            }
        );
        let tight = invocation_eta(
            &chain_plan(),
            &chain_deps(),
            &live_progress(),
            at(10, 0, 0),
            at(10, 2, 0),
            Some(hours(3)),
        );
        assert!(!tight.on_track);
    }

    #[test]
    fn overrunning_step_counts_as_nothing_left() {
        let status =
            invocation_eta(&chain_plan(), &chain_deps(), &live_progress(), at(10, 0, 0), at(10, 4, 0), None);
        assert_eq!(status.remaining_estimate, minutes(90));
        assert_eq!(status.expected_recovery_at, at(10, 5, 30));
        assert_eq!(status.rto_deadline, None);
        assert!(status.on_track);
    }

    #[test]
    fn finished_invocation_reports_when_it_finished() {
        let done: Vec<StepProgress> =
            (1..=6).map(|order| ran(order, StepState::Done, at(10, 0, 0), Some(at(10, 2, order)))).collect();
        let status =
            invocation_eta(&chain_plan(), &chain_deps(), &done, at(10, 0, 0), at(10, 9, 0), Some(hours(3)));
        assert_eq!(status.remaining_estimate, TimeDelta::zero());
        assert_eq!(status.expected_recovery_at, at(10, 2, 6));
        assert!(status.on_track);
        assert_eq!(status.steps_done, 6);
        assert!(status.remaining_critical_path.is_empty());
    }
}
