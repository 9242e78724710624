//! Attainment: how many measured clocks met their target, per target and per customer.

use std::collections::BTreeMap;

use itsm_proto::delivery::SlaClockState;

use crate::entity::clock;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub measured: i32,
    pub met: i32,
    pub breached: i32,
}

impl Counts {
    fn add(&mut self, state: i32) {
        self.measured += 1;
        if state == SlaClockState::Met as i32 {
            self.met += 1;
        } else {
            self.breached += 1;
        }
    }

    /// met / measured in percent; 100 when nothing was measured (nothing was missed).
    pub fn percent(&self) -> f64 {
        if self.measured == 0 { 100.0 } else { f64::from(self.met) * 100.0 / f64::from(self.measured) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCounts {
    pub agreement: String,
    pub target_index: i32,
    pub metric: i32,
    pub business_service: String,
    pub counts: Counts,
}

pub struct Attainment {
    pub targets: Vec<TargetCounts>,
    /// By customer ("" = records without one).
    pub customers: BTreeMap<String, Counts>,
}

/// Counts measured clocks (MET or BREACHED) per target and per customer.
pub fn attainment(clocks: &[clock::Model]) -> Attainment {
    let mut targets: BTreeMap<(String, i32), TargetCounts> = BTreeMap::new();
    let mut customers: BTreeMap<String, Counts> = BTreeMap::new();
    for c in clocks {
        targets
            .entry((c.agreement_id.clone(), c.target_index))
            .or_insert_with(|| TargetCounts {
                agreement: c.agreement_id.clone(),
                target_index: c.target_index,
                metric: c.metric,
                business_service: c.business_service.clone(),
                counts: Counts::default(),
            })
            .counts
            .add(c.state);
        customers.entry(c.customer.clone()).or_default().add(c.state);
    }
    Attainment { targets: targets.into_values().collect(), customers }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(agreement: &str, state: SlaClockState, customer: &str) -> clock::Model {
        clock::Model {
            id: String::new(),
            tenant_id: String::new(),
            agreement_id: agreement.into(),
            target_index: 0,
            metric: 2,
            record: String::new(),
            business_service: "s".into(),
            state: state as i32,
            priority: 3,
            start_time: 0,
            due_time: 0,
            stop_time: 0,
            breach_time: 0,
            elapsed_ms: 0,
            target_ms: 0,
            warnings: "[]".into(),
            warned: "[]".into(),
            breach_emitted: 0,
            next_alert_time: 0,
            stale: 0,
            version: 1,
            create_time: 0,
            update_time: 0,
            customer: customer.into(),
        }
    }

    #[test]
    fn counts_per_target_and_customer() {
        let clocks = [
            clock("gold", SlaClockState::Met, "acme"),
            clock("gold", SlaClockState::Met, "acme"),
            clock("gold", SlaClockState::Breached, "globex"),
            clock("silver", SlaClockState::Breached, "acme"),
        ];
        let a = attainment(&clocks);
        assert_eq!(a.targets.len(), 2);
        let gold = &a.targets[0].counts;
        assert_eq!((gold.measured, gold.met, gold.breached), (3, 2, 1));
        assert!((gold.percent() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.customers["acme"], Counts { measured: 3, met: 2, breached: 1 });
        assert_eq!(a.customers["globex"].percent(), 0.0);
        assert_eq!(Counts::default().percent(), 100.0);
    }
}
