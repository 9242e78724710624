//! Channels to the other services (`upstream.*` settings). An empty address means "not
//! configured": callers answer `UNAVAILABLE` for the calls that need it, and consumers of that
//! service's feed do not start.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// A lazily connected channel to `url` (`None` when it is empty); `field` names the setting in
/// the error for a malformed address.
pub fn channel(url: &str, field: &str) -> Result<Option<Channel>, Error> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(field, e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .http2_keep_alive_interval(Duration::from_secs(30));
    Ok(Some(endpoint.connect_lazy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_is_not_configured_and_garbage_names_the_setting() {
        assert!(channel("  ", "upstream.cmdb").unwrap().is_none());
        assert!(channel("http://127.0.0.1:1", "upstream.cmdb").unwrap().is_some());
        let err = channel("not a url", "upstream.cmdb").unwrap_err();
        assert!(err.to_string().contains("upstream.cmdb"), "{err}");
    }
}
