//! Per-principal rate limits (GCRA, from the `governor` crate): each tenant's principal gets its
//! own budget, so one noisy client cannot starve the others.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic_types::{ErrorDetails, StatusExt};

use itsm_runtime::config::GatewaySettings;

pub struct PrincipalLimits {
    limiter: Option<DefaultKeyedRateLimiter<(String, String)>>,
    clock: DefaultClock,
}

impl PrincipalLimits {
    pub fn new(settings: &GatewaySettings) -> Self {
        let limiter = NonZeroU32::new(settings.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.rate_limit_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter, clock: DefaultClock::default() }
    }

    /// `Err(RESOURCE_EXHAUSTED with RetryInfo)` when the principal is over its budget.
    pub fn admit(&self, tenant: &str, principal: &str) -> Result<(), tonic::Status> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        match limiter.check_key(&(tenant.to_string(), principal.to_string())) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1));
                Err(tonic::Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    format!("rate limit exceeded for {principal}; retry in {} ms", wait.as_millis()),
                    ErrorDetails::with_retry_info(Some(wait)),
                ))
            }
        }
    }

    /// Forgets principals that have been quiet long enough to have their full budget back.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_has_its_own_budget() {
        let limits = PrincipalLimits::new(&GatewaySettings {
            rate_limit_per_second: 1,
            rate_limit_burst: 2,
            ..Default::default()
        });
        assert!(limits.admit("acme", "alice").is_ok());
        assert!(limits.admit("acme", "alice").is_ok());
        let status = limits.admit("acme", "alice").unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let retry = status.get_error_details().retry_info().cloned().unwrap();
        assert!(retry.retry_delay.unwrap() > Duration::ZERO);
        // Others are not affected: another principal, or the same name in another tenant.
        assert!(limits.admit("acme", "bob").is_ok());
        assert!(limits.admit("globex", "alice").is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = PrincipalLimits::new(&GatewaySettings {
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            ..Default::default()
        });
        for _ in 0..1000 {
            assert!(limits.admit("acme", "alice").is_ok());
        }
    }
}
