//! Typed configuration: built-in defaults < a TOML file (`--config`) < `ITSM__SECTION__KEY`
//! environment variables. A key we do not know or a value that does not parse stops start-up with
//! one line that names the key.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use config::Source;
use serde::{Deserialize, Serialize};

/// Prefix of configuration environment variables (`ITSM__DATABASE__URL`).
pub const ENV_PREFIX: &str = "ITSM";
const ENV_SEPARATOR: &str = "__";
/// Keys whose value is a list (a comma-separated environment variable). The `config` crate
/// leaves empty lists out of the defaults, so they are named here to be known keys.
const LIST_KEYS: [&str; 1] = ["gateway.cors_allowed_origins"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub upstream: UpstreamSettings,
    pub paging: PagingSettings,
    pub incident: IncidentSettings,
    pub service_desk: ServiceDeskSettings,
    pub gateway: GatewaySettings,
    pub console: ConsoleSettings,
    pub delivery: DeliverySettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the gRPC server binds, e.g. `0.0.0.0:50055`.
    pub listen_addr: String,
    /// Deadline applied to a call that brings none of its own.
    pub request_timeout_ms: u64,
    /// Calls handled at once per connection; beyond it calls are shed (answered at once with an error).
    pub concurrency_limit: usize,
    /// Largest request or response message in bytes.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_ms: u64,
    pub acquire_timeout_ms: u64,
    /// How long start-up keeps retrying while the database cannot be reached.
    pub startup_retry_ms: u64,
    /// Run migrations when the service starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info,itsm_cmdb=debug`. `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`; empty = `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// and when that is unset too, no export.
    pub otlp_endpoint: String,
    /// Share of root traces kept (parent-based: a sampled parent is always followed).
    pub sampling_ratio: f64,
    /// `deployment.environment` resource attribute.
    pub environment: String,
    /// How often metrics are exported.
    pub metrics_interval_ms: u64,
    /// Finished spans waiting for export; when full, spans are dropped and counted
    /// (`itsm.telemetry.spans.dropped`).
    pub max_queue_size: usize,
    /// Spans sent in one export call.
    pub max_export_batch_size: usize,
    /// Longest a finished span waits before it is exported.
    pub export_delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Shared secret the gateway sends to services; services trust principal metadata only with
    /// it. Empty disables the check (never in production).
    pub internal_token: String,
    /// HS256 secret the gateway verifies bearer tokens with ("" = HS256 tokens are refused).
    pub jwt_secret: String,
    /// JSON Web Key Set file (RS256 / ES256 keys by `kid`) the gateway verifies tokens of an
    /// identity provider with; re-read when it changes ("" = none).
    pub jwks_file: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    pub service_desk: String,
    pub incident: String,
    pub change: String,
    pub cmdb: String,
    pub delivery: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagingSettings {
    /// Key that signs page tokens; replicas of a service must share it.
    pub token_secret: String,
}

/// Rules of the incident service that an organisation tunes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentSettings {
    /// Priority (1-5) by impact (rows: high, medium, low) and urgency (columns: high, medium,
    /// low), rows separated by `;`. The default is the ITIL matrix, priority = impact + urgency - 1.
    pub priority_matrix: String,
    /// Resolved incidents close by themselves after this many days (0 = never).
    pub auto_close_days: u32,
    /// How often the service looks for resolved incidents to close.
    pub auto_close_interval_ms: u64,
    /// How far back CreateIncident looks for possible duplicates.
    pub duplicate_window_hours: u32,
    /// Default window of the candidate-problem list.
    pub candidate_window_days: u32,
    /// Default least number of incidents that makes a candidate problem.
    pub candidate_min_incidents: u32,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            priority_matrix: "1,2,3; 2,3,4; 3,4,5".into(),
            auto_close_days: 7,
            auto_close_interval_ms: 60_000,
            duplicate_window_hours: 24,
            candidate_window_days: 30,
            candidate_min_incidents: 3,
        }
    }
}

/// The gateway's protection of the services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Calls per second one principal of one tenant may make on average (0 = no limit).
    pub rate_limit_per_second: u32,
    /// Calls one principal may make at once above the average.
    pub rate_limit_burst: u32,
    /// Accept gRPC-Web (HTTP/1.1, `application/grpc-web*`) from browsers beside native gRPC.
    pub grpc_web: bool,
    /// Origins a browser may call the gateway from (`https://console.example.com`); `*` allows
    /// any origin. Empty: no cross-origin calls.
    pub cors_allowed_origins: Vec<String>,
    /// Extra attempts for a read (Get/List/Search/…) that failed with UNAVAILABLE. Writes are
    /// never retried by the gateway.
    pub read_retries: u32,
    /// Retries may add at most this share of the reads of the last 10 seconds (a retry budget),
    /// so retries cannot multiply the load on a backend that is struggling.
    pub retry_budget_percent: u32,
    /// Consecutive failures to reach a backend that open its circuit: calls then fail at once
    /// with UNAVAILABLE instead of waiting for a connection that will not come.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit stays open before one trial call is let through.
    pub circuit_open_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            grpc_web: true,
            cors_allowed_origins: Vec::new(),
            read_retries: 2,
            retry_budget_percent: 20,
            circuit_failure_threshold: 5,
            circuit_open_ms: 5_000,
        }
    }
}

/// The web console the gateway serves over HTTP beside its gRPC endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console (only the gateway does).
    pub enabled: bool,
    /// Address the console's HTTP server binds, host:port with an IP.
    pub listen: String,
    /// Key the session cookies are encrypted and signed with (at least 32 characters); replicas
    /// must share it. Empty: derived from `auth.jwt_secret`.
    pub session_key: String,
    /// Mark cookies `Secure`: set it when the console is reached over HTTPS (a TLS ingress).
    pub secure_cookies: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            session_key: String::new(),
            secure_cookies: false,
        }
    }
}

/// Service delivery (service level management).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// How often SLA clocks whose warning or breach fell due, or whose agreement changed, are
    /// recomputed between events.
    pub sla_sweep_interval_ms: u64,
    /// How often capacity resources are forecast for warnings and old samples are dropped.
    pub capacity_sweep_interval_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self { sla_sweep_interval_ms: 1_000, capacity_sweep_interval_ms: 300_000 }
    }
}

/// Notification delivery of the service desk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceDeskSettings {
    /// Attempts per webhook delivery before it is marked failed.
    pub webhook_max_attempts: u32,
    /// Wait before the first retry; doubled after each failure (at most 1 hour).
    pub webhook_backoff_ms: u64,
    /// How long one delivery may take.
    pub webhook_timeout_ms: u64,
    /// How often the deliverer looks for due deliveries (it is also woken by new ones).
    pub delivery_interval_ms: u64,
    /// How often the desk looks for tickets whose group's time box ran out.
    pub time_box_interval_ms: u64,
}

impl Default for ServiceDeskSettings {
    fn default() -> Self {
        Self {
            webhook_max_attempts: 8,
            webhook_backoff_ms: 1_000,
            webhook_timeout_ms: 10_000,
            delivery_interval_ms: 1_000,
            time_box_interval_ms: 30_000,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50051".into(),
            request_timeout_ms: 30_000,
            concurrency_limit: 256,
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/itsm.db".into(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout_ms: 5_000,
            acquire_timeout_ms: 5_000,
            startup_retry_ms: 30_000,
            migrate_on_start: true,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Plain, level: "info".into() }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sampling_ratio: 1.0,
            environment: "development".into(),
            metrics_interval_ms: 60_000,
            max_queue_size: 2048,
            max_export_batch_size: 512,
            export_delay_ms: 5000,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            internal_token: String::new(),
            jwt_secret: String::new(),
            jwks_file: String::new(),
            jwt_issuer: "itsm".into(),
            jwt_audience: "itsm".into(),
        }
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            service_desk: "http://127.0.0.1:50052".into(),
            incident: "http://127.0.0.1:50053".into(),
            change: "http://127.0.0.1:50054".into(),
            cmdb: "http://127.0.0.1:50055".into(),
            delivery: "http://127.0.0.1:50056".into(),
        }
    }
}

impl Default for PagingSettings {
    fn default() -> Self {
        Self { token_secret: "itsm-development-page-token-key".into() }
    }
}

/// Start-up stops with this; its `Display` is the one line an operator reads.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: unknown key `{key}` (from {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("configuration: invalid value for `{key}`: {reason}")]
    InvalidValue { key: String, reason: String },
    #[error("configuration: {0}")]
    Source(String),
}

/// Where the environment layer reads from: the process, or a given map (tests).
pub enum EnvSource {
    Process,
    Map(HashMap<String, String>),
}

impl Settings {
    /// Loads defaults < `file` < environment, then validates.
    pub fn load(file: Option<&Path>, env: EnvSource) -> Result<Self, ConfigError> {
        let defaults =
            config::Config::try_from(&Settings::default()).map_err(|e| ConfigError::Source(e.to_string()))?;
        let known = known_keys(&defaults);

        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            let file_layer = config::Config::builder()
                .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
                .build()
                .map_err(|e| ConfigError::Source(e.to_string()))?;
            reject_unknown(&file_layer, &known, &path.display().to_string())?;
            builder = builder.add_source(file_layer);
        }
        let env_vars: HashMap<String, String> = match env {
            EnvSource::Process => std::env::vars().collect(),
            EnvSource::Map(map) => map,
        };
        let env_layer = config::Config::builder()
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    // `ITSM__GATEWAY__CORS_ALLOWED_ORIGINS=https://a.example,https://b.example`
                    .list_separator(",")
                    .with_list_parse_key(LIST_KEYS[0])
                    .source(Some(env_vars.into_iter().collect())),
            )
            .build()
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        reject_unknown(&env_layer, &known, "environment")?;
        builder = builder.add_source(env_layer);

        let merged = builder.build().map_err(|e| ConfigError::Source(e.to_string()))?;
        let settings: Settings = merged.try_deserialize().map_err(|e| invalid_from(&e))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, reason: &str| ConfigError::InvalidValue { key: key.into(), reason: reason.into() };
        if self.server.listen_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid("server.listen_addr", "expected host:port, e.g. 0.0.0.0:50051"));
        }
        if self.server.concurrency_limit == 0 {
            return Err(invalid("server.concurrency_limit", "must be at least 1"));
        }
        if self.server.max_message_bytes < 1024 {
            return Err(invalid("server.max_message_bytes", "must be at least 1024"));
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres")) {
            return Err(invalid("database.url", "expected a sqlite:// or postgres:// URL"));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.database.min_connections > self.database.max_connections {
            return Err(invalid("database.min_connections", "must not exceed database.max_connections"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.sampling_ratio) {
            return Err(invalid("telemetry.sampling_ratio", "must be between 0 and 1"));
        }
        if self.telemetry.metrics_interval_ms < 100 {
            return Err(invalid("telemetry.metrics_interval_ms", "must be at least 100"));
        }
        if self.telemetry.max_queue_size == 0 {
            return Err(invalid("telemetry.max_queue_size", "must be at least 1"));
        }
        if self.telemetry.max_export_batch_size == 0
            || self.telemetry.max_export_batch_size > self.telemetry.max_queue_size
        {
            return Err(invalid(
                "telemetry.max_export_batch_size",
                "must be between 1 and telemetry.max_queue_size",
            ));
        }
        if self.telemetry.export_delay_ms == 0 {
            return Err(invalid("telemetry.export_delay_ms", "must be at least 1"));
        }
        if self.incident.auto_close_interval_ms == 0 {
            return Err(invalid("incident.auto_close_interval_ms", "must be at least 1"));
        }
        if self.incident.candidate_min_incidents < 2 {
            return Err(invalid("incident.candidate_min_incidents", "must be at least 2"));
        }
        if self.service_desk.webhook_max_attempts == 0 {
            return Err(invalid("service_desk.webhook_max_attempts", "must be at least 1"));
        }
        if self.service_desk.delivery_interval_ms == 0
            || self.service_desk.webhook_timeout_ms == 0
            || self.service_desk.time_box_interval_ms == 0
        {
            return Err(invalid(
                "service_desk.delivery_interval_ms",
                "intervals and timeouts must be at least 1",
            ));
        }
        if self.gateway.rate_limit_per_second > 0 && self.gateway.rate_limit_burst == 0 {
            return Err(invalid("gateway.rate_limit_burst", "must be at least 1 when rate limiting is on"));
        }
        if self.gateway.circuit_failure_threshold == 0 || self.gateway.circuit_open_ms == 0 {
            return Err(invalid(
                "gateway.circuit_failure_threshold",
                "the circuit settings must be at least 1",
            ));
        }
        if self.gateway.retry_budget_percent > 100 {
            return Err(invalid("gateway.retry_budget_percent", "must be between 0 and 100"));
        }
        if let Some(origin) = self.gateway.cors_allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(invalid(
                "gateway.cors_allowed_origins",
                &format!("`{origin}` is not `*` or an origin like https://console.example.com"),
            ));
        }
        if self.console.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid("console.listen", "expected host:port, e.g. 127.0.0.1:8080"));
        }
        if !self.console.session_key.is_empty() && self.console.session_key.len() < 32 {
            return Err(invalid("console.session_key", "must be at least 32 characters (or empty)"));
        }
        if self.delivery.capacity_sweep_interval_ms == 0 {
            return Err(invalid("delivery.capacity_sweep_interval_ms", "must be at least 1"));
        }
        if self.delivery.sla_sweep_interval_ms == 0 {
            return Err(invalid("delivery.sla_sweep_interval_ms", "must be at least 1"));
        }
        if self.paging.token_secret.len() < 16 {
            return Err(invalid("paging.token_secret", "must be at least 16 characters"));
        }
        Ok(())
    }
}

/// `*`, or `scheme://host[:port]` with no path (what browsers send in `Origin`).
fn is_origin(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
        && http::HeaderValue::from_str(text).is_ok()
}

fn known_keys(defaults: &config::Config) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(table) = defaults.collect() {
        flatten("", &table, &mut keys);
    }
    keys.extend(LIST_KEYS.iter().map(ToString::to_string));
    keys
}

fn flatten(prefix: &str, table: &config::Map<String, config::Value>, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value.clone().into_table() {
            Ok(inner) => {
                out.insert(path.clone());
                flatten(&path, &inner, out);
            }
            Err(_) => {
                out.insert(path);
            }
        }
    }
}

fn reject_unknown(layer: &config::Config, known: &BTreeSet<String>, origin: &str) -> Result<(), ConfigError> {
    let table = layer.collect().map_err(|e| ConfigError::Source(e.to_string()))?;
    let mut present = BTreeSet::new();
    flatten("", &table, &mut present);
    match present.into_iter().find(|key| !known.contains(key)) {
        Some(key) => {
            let origin = if origin == "environment" {
                format!("environment variable {ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
            } else {
                origin.to_string()
            };
            Err(ConfigError::UnknownKey { key, origin })
        }
        None => Ok(()),
    }
}

/// Turns a deserialisation error (`invalid type ... for key `database.max_connections``) into
/// one line naming the key.
fn invalid_from(err: &config::ConfigError) -> ConfigError {
    let text = err.to_string();
    match text.rsplit_once(" for key `") {
        Some((reason, key)) => ConfigError::InvalidValue {
            key: key.trim_end_matches(['`', '\'']).trim_matches('"').to_string(),
            reason: reason.to_string(),
        },
        None => ConfigError::Source(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> EnvSource {
        EnvSource::Map(pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect())
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    /// The example file documents the defaults: it loads and changes nothing.
    #[test]
    fn the_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/itsm.example.toml");
        assert_eq!(Settings::load(Some(&path), env(&[])).unwrap(), Settings::default());
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let file = toml_file("[database]\nurl = \"postgres://file@localhost/db\"\nmax_connections = 7\n");
        let settings = Settings::load(Some(file.path()), env(&[])).unwrap();
        assert_eq!(settings.database.url, "postgres://file@localhost/db");
        assert_eq!(settings.database.max_connections, 7);

        let settings = Settings::load(
            Some(file.path()),
            env(&[("ITSM__DATABASE__URL", "postgres://env@localhost/db"), ("UNRELATED", "x")]),
        )
        .unwrap();
        assert_eq!(settings.database.url, "postgres://env@localhost/db");
        // The file still wins over the default for keys the environment does not set.
        assert_eq!(settings.database.max_connections, 7);
    }

    #[test]
    fn cors_origins_come_from_a_comma_separated_variable_and_are_checked() {
        let settings = Settings::load(
            None,
            env(&[(
                "ITSM__GATEWAY__CORS_ALLOWED_ORIGINS",
                "https://console.example.com,http://localhost:8080",
            )]),
        )
        .unwrap();
        assert_eq!(
            settings.gateway.cors_allowed_origins,
            vec!["https://console.example.com".to_string(), "http://localhost:8080".to_string()]
        );
        for bad in ["console.example.com", "https://console.example.com/app", "ftp://x"] {
            let err = Settings::load(None, env(&[("ITSM__GATEWAY__CORS_ALLOWED_ORIGINS", bad)])).unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key, .. } if key == "gateway.cors_allowed_origins"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn console_settings_are_checked() {
        let settings = Settings::load(
            None,
            env(&[("ITSM__CONSOLE__LISTEN", "0.0.0.0:9090"), ("ITSM__CONSOLE__SECURE_COOKIES", "true")]),
        )
        .unwrap();
        assert_eq!(settings.console.listen, "0.0.0.0:9090");
        assert!(settings.console.enabled && settings.console.secure_cookies);
        let err = Settings::load(None, env(&[("ITSM__CONSOLE__LISTEN", "localhost")])).unwrap_err();
        assert!(matches!(&err, ConfigError::InvalidValue { key, .. } if key == "console.listen"), "{err}");
        let err = Settings::load(None, env(&[("ITSM__CONSOLE__SESSION_KEY", "short")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "console.session_key"),
            "{err}"
        );
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        let err = Settings::load(None, env(&[("ITSM__DATABASE__URLL", "x")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "database.urll".into(),
                origin: "environment variable ITSM__DATABASE__URLL".into()
            }
        );
        assert!(err.to_string().contains("database.urll"));
        assert_eq!(err.to_string().lines().count(), 1);
    }

    #[test]
    fn unknown_file_key_and_section_are_rejected() {
        let file = toml_file("[server]\nlisten = \"0.0.0.0:1\"\n");
        let err = Settings::load(Some(file.path()), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "server.listen"), "{err}");

        let file = toml_file("[databse]\nurl = \"x\"\n");
        let err = Settings::load(Some(file.path()), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "databse"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load(None, env(&[("ITSM__DATABASE__MAX_CONNECTIONS", "lots")])).unwrap_err();
        assert!(err.to_string().contains("database.max_connections"), "{err}");

        let err = Settings::load(None, env(&[("ITSM__SERVER__LISTEN_ADDR", "nowhere")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidValue {
                key: "server.listen_addr".into(),
                reason: "expected host:port, e.g. 0.0.0.0:50051".into()
            }
        );

        let err = Settings::load(None, env(&[("ITSM__LOG__FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("log.format"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/itsm.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("itsm.toml"), "{err}");
    }
}
