//! Delivers notifications to webhooks: a POST with a JSON body, signed with HMAC-SHA256 of the
//! body under the webhook's secret, retried with exponential backoff until it is accepted (2xx)
//! or the attempts run out. Receivers de-duplicate by the `X-ITSM-Delivery` id.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use itsm_runtime::Error;
use itsm_runtime::config::ServiceDeskSettings;
use itsm_runtime::db::now_micros;

use crate::repo::Repository;
use crate::repo::notifications::DueDelivery;

/// Longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot be reached.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// When attempt number `attempts` (1-based, just failed) is retried: `base * 2^(attempts-1)`,
/// capped; `None` when it was the last.
pub fn retry_delay_ms(settings: &ServiceDeskSettings, attempts: u32) -> Option<u64> {
    if attempts >= settings.webhook_max_attempts {
        return None;
    }
    let factor = 1u64 << (attempts.saturating_sub(1)).min(20);
    Some(settings.webhook_backoff_ms.saturating_mul(factor).min(MAX_BACKOFF_MS))
}

pub struct Deliverer {
    pub repo: Repository,
    pub settings: ServiceDeskSettings,
    pub wake: Arc<Notify>,
    pub client: reqwest::Client,
}

/// The HTTP client deliveries use: the configured timeout, no redirects (a receiver that moved
/// must be re-registered, not followed blindly).
pub fn http_client(settings: &ServiceDeskSettings) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Internal(format!("webhook client: {e}")))
}

impl Deliverer {
    pub fn new(repo: Repository, settings: ServiceDeskSettings, client: reqwest::Client) -> Self {
        Self { wake: repo.deliveries.clone(), repo, settings, client }
    }

    /// Works due deliveries until `stop`.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let interval = Duration::from_millis(self.settings.delivery_interval_ms);
        loop {
            if let Err(err) = self.round().await {
                tracing::warn!(error = %err, "webhook deliveries interrupted; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass over the deliveries due now.
    pub async fn round(&self) -> Result<usize, Error> {
        let due = self.repo.due_deliveries(now_micros(), 50).await?;
        let count = due.len();
        for item in due {
            let outcome = self.attempt(&item).await;
            let attempts = u32::try_from(item.delivery.attempts + 1).unwrap_or(u32::MAX);
            let retry_at = match &outcome {
                Ok(()) => None,
                Err(_) => {
                    retry_delay_ms(&self.settings, attempts).map(|ms| now_micros() + (ms as i64) * 1000)
                }
            };
            if let Err(error) = &outcome {
                tracing::info!(delivery = %item.delivery.id, attempts, %error, "webhook delivery failed");
            }
            self.repo.record_attempt(&item.delivery, outcome, retry_at).await?;
        }
        Ok(count)
    }

    async fn attempt(&self, item: &DueDelivery) -> Result<(), String> {
        let n = &item.notification;
        let body = serde_json::json!({
            "id": n.id,
            "kind": n.kind,
            "recipient": n.recipient,
            "subject": n.subject,
            "body": n.body,
            "ticket": n.ticket,
            "tenant": n.tenant_id,
            "create_time": chrono::DateTime::from_timestamp_micros(n.create_time).map(|t| t.to_rfc3339()),
        })
        .to_string();
        let response = self
            .client
            .post(&item.webhook.url)
            .header("content-type", "application/json")
            .header("x-itsm-delivery", &item.delivery.id)
            .header("x-itsm-event", &n.kind)
            .header("x-itsm-signature", signature(&item.webhook.secret, body.as_bytes()))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_stops() {
        let settings =
            ServiceDeskSettings { webhook_max_attempts: 4, webhook_backoff_ms: 100, ..Default::default() };
        assert_eq!(retry_delay_ms(&settings, 1), Some(100));
        assert_eq!(retry_delay_ms(&settings, 2), Some(200));
        assert_eq!(retry_delay_ms(&settings, 3), Some(400));
        assert_eq!(retry_delay_ms(&settings, 4), None);
        let long = ServiceDeskSettings {
            webhook_max_attempts: 100,
            webhook_backoff_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(retry_delay_ms(&long, 50), Some(MAX_BACKOFF_MS));
    }
}
