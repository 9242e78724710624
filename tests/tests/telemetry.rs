//! One trace per request: an incident created through the gateway with two CIs is exported, to
//! an in-process OTLP receiver, as one trace holding the gateway's span, the incident service's,
//! the CMDB call and its SQL, and the delivery service's consumer span linked to it. Metrics
//! arrive too, and the JSON logs of the request carry its trace id and no credential.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, GetIncidentRequest, Incident};
use itsm_runtime::config::LogFormat;
use itsm_runtime::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use itsm_runtime::telemetry::TelemetryGuard;
use itsm_runtime::testing::{TEST_INTERNAL_TOKEN, TestBackend, settings_for};

/// Log lines written by the suite, in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Telemetry is process-wide: both backends' tests share one receiver and one subscriber.
struct Telemetry {
    receiver: OtlpReceiver,
    logs: LogBuffer,
    _guard: TelemetryGuard,
}

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let receiver = OtlpReceiver::start(true).unwrap();
        let logs = LogBuffer::default();
        let mut settings = settings_for("sqlite::memory:");
        settings.telemetry.otlp_endpoint = receiver.endpoint().to_string();
        settings.telemetry.metrics_interval_ms = 200;
        settings.telemetry.export_delay_ms = 50;
        settings.log.format = LogFormat::Json;
        settings.log.level = "info,itsm_runtime::access=debug".into();
        let guard = itsm_runtime::telemetry::init_with_writer(&settings, "itsm-e2e", logs.clone());
        Telemetry { receiver, logs, _guard: guard }
    })
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

/// Whether `span` descends from the span `ancestor` (through parents within `trace`).
fn descends_from(trace: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut current = span.parent_span_id.clone();
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        match trace.iter().find(|s| s.span_id == current) {
            Some(parent) => current = parent.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// What the trace of the request must hold; `None` when all is there, else what is missing.
fn missing(spans: &[ReceivedSpan], trace_id: &str, incident_name: &str) -> Option<String> {
    let trace: Vec<ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect();
    let create = "itsm.incident.v1.IncidentService/CreateIncident";
    let Some(gateway) = trace.iter().find(|s| s.service == "itsm-gateway" && s.name == create && s.kind == 2)
    else {
        return Some("the gateway's server span".into());
    };
    let Some(incident) =
        trace.iter().find(|s| s.service == "itsm-incident" && s.name == create && s.kind == 2)
    else {
        return Some("the incident service's server span".into());
    };
    assert_eq!(incident.parent_span_id, gateway.span_id, "the incident span is the gateway span's child");
    assert_eq!(gateway.attribute("rpc.system"), Some("grpc"));
    assert_eq!(gateway.attribute("rpc.service"), Some("itsm.incident.v1.IncidentService"));
    assert_eq!(gateway.attribute("rpc.method"), Some("CreateIncident"));
    assert_eq!(gateway.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(incident.attribute("itsm.tenant"), Some("acme"));
    assert_eq!(
        gateway.attribute("itsm.resource"),
        Some(incident_name),
        "the write's record and human number"
    );
    let number = incident_name.rsplit('/').next();
    assert_eq!(gateway.attribute("itsm.number"), number);
    assert_eq!(incident.attribute("itsm.number"), number, "the service's span of the create has the number");
    assert!(incident.attribute("server.address").is_some(), "{:?}", incident.attributes);
    let cmdb = trace
        .iter()
        .find(|s| s.service == "itsm-cmdb" && s.kind == 2 && s.name.starts_with("itsm.cmdb.v1.CmdbService/"));
    let Some(cmdb) = cmdb else { return Some("the CMDB's server span".into()) };
    assert!(descends_from(&trace, cmdb, &incident.span_id), "the CMDB call is made by the incident service");
    let sql = trace.iter().find(|s| {
        s.service == "itsm-incident"
            && s.attribute("db.system").is_some_and(|d| d == "sqlite" || d == "postgresql")
            && s.attribute("db.query.text").is_some_and(|q| q.contains("INSERT INTO"))
    });
    let Some(sql) = sql else { return Some("the incident service's SQL span".into()) };
    assert!(descends_from(&trace, sql, &incident.span_id), "SQL runs under the incident service's span");
    assert!(!sql.attributes.contains_key("db.statement"), "db.statement is renamed db.query.text");
    let in_trace: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let consumer = spans.iter().find(|s| {
        s.service == "itsm-delivery"
            && s.kind == 5
            && s.links.iter().any(|(t, id)| t == trace_id && in_trace.contains(id.as_str()))
    });
    let Some(consumer) = consumer else { return Some("the delivery consumer's linked span".into()) };
    assert!(consumer.name.starts_with("consume itsm.incident.v1.IncidentChanged"), "{}", consumer.name);
    assert_eq!(consumer.attribute("messaging.destination.name"), Some("delivery/incident-events"));
    None
}

async fn one_trace_per_request(backend: TestBackend) {
    let telemetry = telemetry();
    let suite =
        Suite::start_tuned(backend, |_, settings| settings.telemetry.metrics_interval_ms = 200, |_| {})
            .await
            .unwrap();
    let alice = suite.token("alice", "acme", &["agent", "change-manager"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);

    let mut cis = Vec::new();
    for name in ["web-01", "db-01"] {
        let ci =
            ConfigurationItem { display_name: name.into(), ci_class: "server".into(), ..Default::default() };
        let request =
            CreateConfigurationItemRequest { configuration_item: Some(ci), request_id: String::new() };
        cis.push(cmdb.create_configuration_item(authed(request, &alice)).await.unwrap().into_inner().name);
    }

    // The client starts the trace: its id is known, and the gateway continues it.
    let trace_id = random_hex(32);
    let mut request = authed(
        CreateIncidentRequest {
            incident: Some(Incident {
                short_description: "Checkout is slow".into(),
                configuration_items: cis,
                impact: 1,
                urgency: 2,
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &alice,
    );
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{trace_id}-{}-01", random_hex(16)).parse().unwrap());
    let incident = incidents.create_incident(request).await.unwrap().into_inner();
    assert!(!incident.name.is_empty());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        itsm_runtime::telemetry::flush(Duration::from_secs(5));
        let spans = telemetry.receiver.spans();
        match missing(&spans, &trace_id, &incident.name) {
            None => break,
            Some(what) => {
                let seen: BTreeSet<String> = spans
                    .iter()
                    .filter(|s| s.trace_id == trace_id)
                    .map(|s| format!("{} {} kind {}", s.service, s.name, s.kind))
                    .collect();
                assert!(tokio::time::Instant::now() < deadline, "missing {what}; the trace holds {seen:#?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A read names its record on the gateway's span and on the service's.
    let read_trace = random_hex(32);
    let mut request = authed(GetIncidentRequest { name: incident.name.clone() }, &alice);
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{read_trace}-{}-01", random_hex(16)).parse().unwrap());
    incidents.get_incident(request).await.unwrap();
    let number = incident.name.rsplit('/').next().map(str::to_string);
    loop {
        itsm_runtime::telemetry::flush(Duration::from_secs(5));
        let spans = telemetry.receiver.spans();
        let named: BTreeSet<(String, Option<String>, Option<String>)> = spans
            .iter()
            .filter(|s| s.trace_id == read_trace && s.kind == 2)
            .map(|s| {
                let attribute = |key: &str| s.attribute(key).map(str::to_string);
                (s.service.clone(), attribute("itsm.resource"), attribute("itsm.number"))
            })
            .collect();
        let expected: BTreeSet<_> = ["itsm-gateway", "itsm-incident"]
            .into_iter()
            .map(|service| (service.to_string(), Some(incident.name.clone()), number.clone()))
            .collect();
        if expected.is_subset(&named) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the read's server spans: {named:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Metrics: RED per method from the gateway and the service, the pool, the consumer's delay
    // and the open incidents by priority.
    let wanted = [
        ("itsm-gateway", "rpc.server.call.duration"),
        ("itsm-incident", "rpc.server.call.duration"),
        ("itsm-incident", "db.client.connection.count"),
        ("itsm-delivery", "itsm.events.consumer.delay"),
        ("itsm-incident", "itsm.incidents.open"),
    ];
    loop {
        itsm_runtime::telemetry::flush(Duration::from_secs(5));
        let got: BTreeSet<(String, String)> =
            telemetry.receiver.metrics().into_iter().map(|m| (m.service, m.name)).collect();
        let absent: Vec<_> =
            wanted.iter().filter(|(s, n)| !got.contains(&((*s).to_string(), (*n).to_string()))).collect();
        let open_p2 = telemetry.receiver.value("itsm-incident", "itsm.incidents.open", "itsm.priority=P2");
        if absent.is_empty() && open_p2.is_some_and(|v| v >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics missing: {absent:?}, open P2 incidents {open_p2:?}; received {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(itsm_runtime::telemetry::dropped_spans(), 0, "the export queue never overflowed");

    // Logs: JSON lines, the request's access lines carry its trace id, and no credential.
    let logs = telemetry.logs.text();
    let lines: Vec<serde_json::Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty() && lines.len() == logs.lines().count(), "every log line is JSON");
    let traced: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["trace_id"].as_str() == Some(trace_id.as_str())).collect();
    assert!(
        traced.iter().any(|l| l["span"]["rpc.service"] == "itsm.incident.v1.IncidentService"
            && l["message"] == "call finished"
            && l["span_id"].as_str().is_some_and(|s| s.len() == 16)),
        "the request's access lines carry its trace id: {traced:#?}"
    );
    assert!(!logs.contains(&alice), "the bearer token is never logged");
    assert!(!logs.contains(TEST_INTERNAL_TOKEN), "the internal token is never logged");
    assert!(!logs.to_lowercase().contains("bearer "), "no authorization header is logged");
}

itsm_runtime::db_tests!(one_trace_per_request);
