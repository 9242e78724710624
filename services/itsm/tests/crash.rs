//! Crash (issue 14): `kill -9` of a service process in the middle of a write load, then a
//! restart on the same port and database.
//!
//! The suite runs as six `itsm serve <service>` processes, as in a cluster: every service on its
//! own PostgreSQL database, the gateway on SQLite. Four writers create incidents through the
//! gateway without pause (each on a business service with an SLA and two servers) while first
//! the incident service and then the delivery service (which runs SLA clocks from the incident
//! feed) is killed with SIGKILL and started again. What held is then checked against the
//! acknowledged writes:
//!
//! - every failed call failed with `UNAVAILABLE` — what the gateway answers for a backend it
//!   cannot reach, whose circuit is open, or whose answer broke off (`gateway/src/proxy.rs`) —
//!   and none hung; nothing was acknowledged while the incident service was dead;
//! - every acknowledged incident is stored under its acknowledged name, and a stored incident
//!   nobody was acknowledged is one whose call failed (its commit landed, its answer did not), so
//!   stored − acknowledged ≤ failed calls;
//! - the incident feed (its outbox) holds exactly one `create` event per stored incident: none
//!   lost with a committed incident, none left by a rolled-back one, none written twice;
//! - the delivery consumer `delivery/incident-events`, killed mid-stream, catches up after its
//!   restart and applies each event exactly once: one observation per event, carrying the
//!   incident state the event carried, no dead letters, one RUNNING SLA clock per stored incident;
//! - after both restarts the gateway takes writes again, and the restarted delivery service
//!   follows new events live (the new incident's clock runs, read through the gateway).
//!
//! PostgreSQL only (`ITSM_TEST_POSTGRES_URL`, default 127.0.0.1:5432): when it cannot be reached
//! the test prints that it was skipped and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, QueryResult, Statement, Value,
};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use itsm_delivery::service_level::feed::INCIDENT_CONSUMER;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    AgreementType, BusinessCalendar, CreateBusinessCalendarRequest, CreateServiceLevelAgreementRequest,
    DayHours, ListSlaClocksRequest, ServiceLevelAgreement, ServiceLevelTarget, SlaClockState, TargetMetric,
    TimeSpan,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, Incident, IncidentChanged, IncidentState, ListIncidentsRequest,
};
use itsm_runtime::testing::{TestBackend, TestDatabase};

const TENANT: &str = "acme";
const WRITERS: usize = 4;
/// The deadline every call carries (`grpc-timeout`).
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// A call still unanswered this long after it was sent counts as hung.
const NO_ANSWER: Duration = Duration::from_secs(10);
/// How long a process may take to report SERVING (migrations on PostgreSQL at first start).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writes may take to go through again after a restart.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long asynchronous work may take to converge. Longer than the usual 30 s: the killed
/// delivery process still holds its consumer's lease (15 s, `ConsumerOptions::new`), and the
/// restarted process takes the consumer over only when that lease has expired.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Event type (the payload's full protobuf name) of the incident feed.
const INCIDENT_CHANGED: &str = "itsm.incident.v1.IncidentChanged";
/// Processes in start order (`itsm serve <name>`); the gateway last.
const SERVICES: [&str; 6] = ["cmdb", "incident", "service-desk", "change", "delivery", "gateway"];
/// Each service's address setting, `ITSM__UPSTREAM__<KEY>`.
const UPSTREAMS: [(&str, &str); 5] = [
    ("service-desk", "SERVICE_DESK"),
    ("incident", "INCIDENT"),
    ("change", "CHANGE"),
    ("cmdb", "CMDB"),
    ("delivery", "DELIVERY"),
];

/// One `itsm serve <name>` process: its port and environment (kept for restarts), its log, and
/// the child while it runs. Dropping it kills the child.
struct Service {
    name: &'static str,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts the process and waits until it reports SERVING.
    async fn start(&mut self) {
        self.spawn();
        self.wait_serving().await;
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        // Logs go to a file (appended across restarts): the gateway warns once per failed call.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_itsm"))
            .args(["serve", self.name])
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited during start-up ({status}):\n{}", self.name, tail(&self.log));
            }
            if is_serving(self.port).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not report SERVING within {START_TIMEOUT:?}:\n{}",
                self.name,
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -KILL <pid>`, then reaps the process and checks that SIGKILL is what ended it.
    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -KILL {}", self.name);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{} ended with {status}, not by SIGKILL", self.name);
    }

    /// SIGTERM, as Kubernetes stops a pod.
    fn terminate(&self) {
        if let Some(child) = &self.child {
            let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            assert!(sent.success(), "kill -TERM {}", self.name);
        }
    }

    /// Waits for the process to exit after [`terminate`](Self::terminate) and checks that it
    /// stopped cleanly.
    async fn wait_stopped(&mut self, deadline: Instant) {
        let Some(mut child) = self.child.take() else { return };
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.name,
                    tail(&self.log)
                );
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop after SIGTERM:\n{}", self.name, tail(&self.log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn service<'a>(services: &'a mut [Service], name: &str) -> &'a mut Service {
    services.iter_mut().find(|s| s.name == name).unwrap()
}

/// The end of a process's log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `n` distinct free ports (all bound at once so none is handed out twice, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// `grpc.health.v1.Health/Check` on the port answers SERVING.
async fn is_serving(port: u16) -> bool {
    let check = async {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).ok()?.connect().await.ok()?;
        let mut health = HealthClient::new(channel);
        let response = health.check(HealthCheckRequest { service: String::new() }).await.ok()?;
        Some(response.get_ref().status == ServingStatus::Serving as i32)
    };
    // A restarted service binds its port before it has migrated: a connection may wait then.
    matches!(tokio::time::timeout(Duration::from_secs(3), check).await, Ok(Some(true)))
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.set_timeout(CALL_DEADLINE);
    request
}

async fn create_ci(
    cmdb: &mut CmdbServiceClient<Channel>,
    token: &str,
    display_name: &str,
    ci_class: &str,
) -> String {
    let item = ConfigurationItem {
        display_name: display_name.into(),
        ci_class: ci_class.into(),
        ..Default::default()
    };
    let request =
        CreateConfigurationItemRequest { configuration_item: Some(item), request_id: String::new() };
    cmdb.create_configuration_item(authed(request, token)).await.unwrap().into_inner().name
}

/// Through the gateway: a business service and two servers, a calendar open around the clock,
/// and an active SLA on the business service with one 8-hour RESOLUTION_TIME target for
/// incidents (nothing warns or breaches during the test). Returns the business service and the
/// servers.
async fn set_up_service_level(gateway: &Channel, token: &str) -> (String, Vec<String>) {
    let mut cmdb = CmdbServiceClient::new(gateway.clone());
    let shop = create_ci(&mut cmdb, token, "crash-shop", "business_service").await;
    let servers = vec![
        create_ci(&mut cmdb, token, "crash-web-1", "server").await,
        create_ci(&mut cmdb, token, "crash-db-1", "server").await,
    ];
    let mut levels = ServiceLevelServiceClient::new(gateway.clone());
    let every_day: Vec<DayHours> = (1..=7)
        .map(|day| DayHours { day, spans: vec![TimeSpan { start: "00:00".into(), end: "24:00".into() }] })
        .collect();
    let calendar = CreateBusinessCalendarRequest {
        business_calendar: Some(BusinessCalendar {
            display_name: "crash-always".into(),
            time_zone: "UTC".into(),
            weekly_hours: every_day,
            ..Default::default()
        }),
    };
    let calendar = levels.create_business_calendar(authed(calendar, token)).await.unwrap().into_inner();
    let agreement = CreateServiceLevelAgreementRequest {
        service_level_agreement: Some(ServiceLevelAgreement {
            display_name: "crash-sla".into(),
            r#type: AgreementType::Sla as i32,
            business_service: shop.clone(),
            counterparty: "Crash test".into(),
            targets: vec![ServiceLevelTarget {
                metric: TargetMetric::ResolutionTime as i32,
                condition: r#"record_type = "incident""#.into(),
                duration: Some(prost_types::Duration { seconds: 8 * 3600, nanos: 0 }),
                calendar: calendar.name,
                ..Default::default()
            }],
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    levels.create_service_level_agreement(authed(agreement, token)).await.unwrap();
    (shop, servers)
}

fn new_incident(
    short_description: &str,
    business_service: &str,
    servers: &[String],
) -> CreateIncidentRequest {
    CreateIncidentRequest {
        incident: Some(Incident {
            short_description: short_description.into(),
            business_service: business_service.into(),
            configuration_items: servers.to_vec(),
            ..Default::default()
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// How a CreateIncident ended.
#[derive(Debug)]
enum Outcome {
    /// OK, with the incident's name.
    Acknowledged(String),
    Failed(Code, String),
    /// No answer within [`NO_ANSWER`].
    NoAnswer,
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Acknowledged(_) => "OK".into(),
            Outcome::Failed(code, _) => format!("{code:?}"),
            Outcome::NoAnswer => "no answer".into(),
        }
    }
}

async fn create_incident(
    client: &mut IncidentServiceClient<Channel>,
    token: &str,
    request: CreateIncidentRequest,
) -> Outcome {
    match tokio::time::timeout(NO_ANSWER, client.create_incident(authed(request, token))).await {
        Ok(Ok(response)) => Outcome::Acknowledged(response.into_inner().name),
        Ok(Err(status)) => Outcome::Failed(status.code(), status.message().to_string()),
        Err(_) => Outcome::NoAnswer,
    }
}

/// One create of the load: its unique short description, when it was sent and answered, and how
/// it ended.
struct Call {
    short_description: String,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

/// What the writers share with the test: when to stop, and when the latest acknowledged call
/// was sent (µs after `base`, plus one; 0 = none yet), so the test can wait for writes to go
/// through again after a restart.
struct Load {
    stop: AtomicBool,
    base: Instant,
    latest_acknowledged_sent: AtomicU64,
}

impl Load {
    fn new() -> Self {
        Self {
            stop: AtomicBool::new(false),
            base: Instant::now(),
            latest_acknowledged_sent: AtomicU64::new(0),
        }
    }

    fn mark(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64 + 1
    }

    fn acknowledged(&self, sent: Instant) {
        self.latest_acknowledged_sent.fetch_max(self.mark(sent), Ordering::SeqCst);
    }

    /// Waits until a call sent at or after `since` has been acknowledged.
    async fn wait_for_write_sent_after(&self, since: Instant, what: &str) {
        let deadline = Instant::now() + RESUME_TIMEOUT;
        while self.latest_acknowledged_sent.load(Ordering::SeqCst) < self.mark(since) {
            assert!(Instant::now() < deadline, "no write went through within {RESUME_TIMEOUT:?} {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every incident of the tenant, page by page, through the gateway.
async fn list_all_incidents(client: &mut IncidentServiceClient<Channel>, token: &str) -> Vec<Incident> {
    let mut incidents = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListIncidentsRequest { page_size: 500, page_token, ..Default::default() };
        let page = client.list_incidents(authed(request, token)).await.unwrap().into_inner();
        incidents.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return incidents;
        }
        page_token = page.next_page_token;
    }
}

async fn rows(
    db: &DatabaseConnection,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await.unwrap()
}

/// An `IncidentChanged` event as the incident service's outbox holds it.
struct FeedEvent {
    sequence: i64,
    event_id: String,
    resource_name: String,
    changed: IncidentChanged,
}

/// The incident feed, read from the incident database's outbox, oldest first.
async fn incident_events(db: &DatabaseConnection) -> Vec<FeedEvent> {
    let found = rows(
        db,
        "SELECT sequence, event_id, resource_name, payload FROM outbox \
         WHERE event_type = $1 ORDER BY sequence",
        [Value::from(INCIDENT_CHANGED)],
    )
    .await;
    found
        .iter()
        .map(|row| {
            // Decoded as the feed serves it (an `Any`): this crate uses prost only through it.
            let payload = prost_types::Any {
                type_url: format!("type.googleapis.com/{INCIDENT_CHANGED}"),
                value: row.try_get("", "payload").unwrap(),
            };
            FeedEvent {
                sequence: row.try_get("", "sequence").unwrap(),
                event_id: row.try_get("", "event_id").unwrap(),
                resource_name: row.try_get("", "resource_name").unwrap(),
                changed: payload.to_msg::<IncidentChanged>().unwrap(),
            }
        })
        .collect()
}

/// The state the delivery service records for an event (as `IncidentFeed::handle` derives it).
fn observed_state(changed: &IncidentChanged) -> String {
    if changed.action == "delete" {
        return "CANCELLED".into();
    }
    let state = changed.incident.as_ref().map_or(0, |i| i.state);
    IncidentState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("INCIDENT_STATE_").to_string())
        .unwrap_or_default()
}

/// Waits until the consumer's cursor (in the consumer's own database) has reached `head`.
async fn wait_for_cursor(db: &DatabaseConnection, consumer: &str, head: i64) -> i64 {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let cursor = itsm_runtime::consumer::cursor_of(db, consumer).await.unwrap();
        if cursor >= head {
            return cursor;
        }
        assert!(
            Instant::now() < deadline,
            "{consumer} is at sequence {cursor} of {head} after {CONVERGE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_write_and_applies_no_event_twice() {
    let cmdb_db = match TestDatabase::create(TestBackend::Postgres).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("skipped: the crash test needs PostgreSQL ({err})");
            return;
        }
    };
    let incident_db = cmdb_db.another().await.unwrap();
    let desk_db = cmdb_db.another().await.unwrap();
    let change_db = cmdb_db.another().await.unwrap();
    let delivery_db = cmdb_db.another().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gateway_db = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let database_urls =
        [&cmdb_db.url, &incident_db.url, &desk_db.url, &change_db.url, &delivery_db.url, &gateway_db];

    // One environment for all, as a Helm release would give them: shared secrets, every
    // service's address, no rate limit, a quick SLA sweep and a short open circuit (the gateway
    // tries a restarted backend again after 0.5 s instead of 5 s).
    let ports: HashMap<&str, u16> = SERVICES.into_iter().zip(free_ports(SERVICES.len())).collect();
    let jwt_secret = format!("crash-jwt-{}", uuid::Uuid::new_v4().simple());
    let mut common: Vec<(String, String)> = vec![
        ("ITSM__AUTH__INTERNAL_TOKEN".into(), format!("crash-internal-{}", uuid::Uuid::new_v4().simple())),
        ("ITSM__AUTH__JWT_SECRET".into(), jwt_secret.clone()),
        ("ITSM__PAGING__TOKEN_SECRET".into(), format!("crash-paging-{}", uuid::Uuid::new_v4().simple())),
        ("ITSM__DATABASE__MIGRATE_ON_START".into(), "true".into()),
        ("ITSM__GATEWAY__RATE_LIMIT_PER_SECOND".into(), "0".into()),
        ("ITSM__GATEWAY__CIRCUIT_OPEN_MS".into(), "500".into()),
        ("ITSM__DELIVERY__SLA_SWEEP_INTERVAL_MS".into(), "200".into()),
        ("ITSM__SERVER__SHUTDOWN_GRACE_MS".into(), "2000".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    for (name, key) in UPSTREAMS {
        common.push((format!("ITSM__UPSTREAM__{key}"), format!("http://127.0.0.1:{}", ports[name])));
    }
    let mut services: Vec<Service> = SERVICES
        .into_iter()
        .zip(database_urls)
        .map(|(name, url)| {
            let mut env = common.clone();
            env.push(("ITSM__SERVER__LISTEN_ADDR".into(), format!("127.0.0.1:{}", ports[name])));
            env.push(("ITSM__DATABASE__URL".into(), url.clone()));
            Service { name, port: ports[name], env, log: dir.path().join(format!("{name}.log")), child: None }
        })
        .collect();
    for process in &mut services {
        process.spawn();
    }
    for process in &mut services {
        process.wait_serving().await;
    }

    let gateway = Endpoint::from_shared(format!("http://127.0.0.1:{}", ports["gateway"]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = itsm_gateway::auth::mint_token(
        &jwt_secret,
        "itsm",
        "itsm",
        "crash-admin",
        TENANT,
        &["admin".to_string()],
        chrono::Duration::hours(1),
    )
    .unwrap();
    let (shop, servers) = set_up_service_level(&gateway, &token).await;

    // The load: each writer creates incidents without pause until told to stop, every call with a
    // unique short description and a fresh request_id. A refused call can be quick, so a writer
    // waits a little after one instead of spinning while a service is down.
    let load = Arc::new(Load::new());
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut client = IncidentServiceClient::new(gateway.clone());
            let (load, token, shop, servers) =
                (Arc::clone(&load), token.clone(), shop.clone(), servers.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !load.stop.load(Ordering::SeqCst) {
                    let short_description = format!("crash load w{writer} n{}", calls.len());
                    let request = new_incident(&short_description, &shop, &servers);
                    let started = Instant::now();
                    let outcome = create_incident(&mut client, &token, request).await;
                    let ended = Instant::now();
                    if matches!(outcome, Outcome::Acknowledged(_)) {
                        load.acknowledged(started);
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    calls.push(Call { short_description, started, ended, outcome });
                }
                calls
            })
        })
        .collect();

    // kill -9 the incident service in the middle of the load; start it again 1 s later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.wait_for_write_sent_after(load.base, "at the start of the load").await;
    service(&mut services, "incident").kill9();
    let incident_killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let incident_restarting = Instant::now();
    service(&mut services, "incident").start().await;
    let incident_back = Instant::now();

    // Then the delivery service, while its consumer is applying the incident feed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.wait_for_write_sent_after(incident_back, "after the incident service restarted").await;
    service(&mut services, "delivery").kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    service(&mut services, "delivery").start().await;
    let delivery_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.wait_for_write_sent_after(delivery_back, "after the delivery service restarted").await;
    load.stop.store(true, Ordering::SeqCst);
    let mut calls: Vec<Call> = Vec::new();
    for writer in writers {
        calls.extend(writer.await.unwrap());
    }

    // (a) Every failed call is UNAVAILABLE: the gateway answers that when it cannot reach the
    // backend (connection refused or reset), while the backend's circuit is open, and when a
    // backend's answer breaks off mid-call (`read_whole`). None hung; nothing was acknowledged
    // while the incident service was dead, and the kill did interrupt the load.
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        *codes.entry(call.outcome.label()).or_default() += 1;
    }
    eprintln!("{} calls: {codes:?}", calls.len());
    let wrong: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(code, message) if *code != Code::Unavailable => {
                Some(format!("{}: {code:?} {message}", c.short_description))
            }
            Outcome::NoAnswer => Some(format!("{}: no answer within {NO_ANSWER:?}", c.short_description)),
            _ => None,
        })
        .collect();
    assert!(wrong.is_empty(), "failed calls must be UNAVAILABLE; answers: {codes:?}\n{}", wrong.join("\n"));
    let acknowledged_while_dead: Vec<&str> = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Acknowledged(_)))
        .filter(|c| c.started >= incident_killed && c.ended <= incident_restarting)
        .map(|c| c.short_description.as_str())
        .collect();
    assert!(
        acknowledged_while_dead.is_empty(),
        "acknowledged while the incident service was dead: {acknowledged_while_dead:?}"
    );
    let failed_while_dead = calls
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Acknowledged(_)))
        .filter(|c| c.started >= incident_killed && c.started < incident_restarting)
        .count();
    assert!(failed_while_dead > 0, "no call failed while the incident service was dead: {codes:?}");

    // (b) Every acknowledged incident is stored under its acknowledged name; what is stored
    // beyond that comes from failed calls whose commit landed but whose answer was lost.
    let acknowledged: HashMap<&str, &str> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Acknowledged(name) => Some((c.short_description.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let failed: HashSet<&str> = calls
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Acknowledged(_)))
        .map(|c| c.short_description.as_str())
        .collect();
    let mut incidents = IncidentServiceClient::new(gateway.clone());
    let stored = list_all_incidents(&mut incidents, &token).await;
    let stored_by_description: HashMap<&str, &str> =
        stored.iter().map(|i| (i.short_description.as_str(), i.name.as_str())).collect();
    assert_eq!(stored_by_description.len(), stored.len(), "one call's incident is stored twice");
    let lost: Vec<(&str, &str)> = acknowledged
        .iter()
        .filter(|(description, name)| stored_by_description.get(*description) != Some(*name))
        .map(|(description, name)| (*description, *name))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged incidents are not stored as acknowledged: {lost:?}",
        lost.len()
    );
    let unexplained: Vec<&str> = stored_by_description
        .keys()
        .filter(|d| !acknowledged.contains_key(*d) && !failed.contains(*d))
        .copied()
        .collect();
    assert!(unexplained.is_empty(), "stored incidents nobody tried to create: {unexplained:?}");
    let unacknowledged = stored.len() - acknowledged.len();
    assert!(
        unacknowledged <= failed.len(),
        "{unacknowledged} stored incidents were not acknowledged, more than the {} failed calls",
        failed.len()
    );

    // (c) The incident feed: exactly one create event per stored incident.
    let incident_sql = Database::connect(incident_db.url.as_str()).await.unwrap();
    let events = incident_events(&incident_sql).await;
    let mut creates: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        let named = event.changed.incident.as_ref().map(|i| i.name.as_str());
        assert_eq!(
            named,
            Some(event.resource_name.as_str()),
            "event {} names another incident",
            event.event_id
        );
        if event.changed.action == "create" {
            *creates.entry(event.resource_name.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<(&&str, &usize)> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "create events written more than once: {twice:?}");
    let stored_names: HashSet<&str> = stored.iter().map(|i| i.name.as_str()).collect();
    let without_event: Vec<&&str> = stored_names.iter().filter(|n| !creates.contains_key(**n)).collect();
    assert!(without_event.is_empty(), "stored incidents without a create event: {without_event:?}");
    let without_incident: Vec<&&str> = creates.keys().filter(|n| !stored_names.contains(**n)).collect();
    assert!(
        without_incident.is_empty(),
        "create events of incidents that are not stored: {without_incident:?}"
    );

    // (d) The delivery consumer caught up and applied each event exactly once. Its cursor is
    // advanced in the same transaction as its writes; it follows IncidentChanged only, so it
    // ends at the last of those.
    let delivery_sql = Database::connect(delivery_db.url.as_str()).await.unwrap();
    let head = events.last().map_or(0, |e| e.sequence);
    let cursor = wait_for_cursor(&delivery_sql, INCIDENT_CONSUMER, head).await;
    assert_eq!(cursor, head, "{INCIDENT_CONSUMER} is past the last incident event");
    let by_event: HashMap<&str, &FeedEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let observations = rows(
        &delivery_sql,
        "SELECT event_id, record, state FROM record_observations WHERE record LIKE 'incidents/%'",
        [],
    )
    .await;
    let mut applied: HashMap<String, usize> = HashMap::new();
    let mut mismatched = Vec::new();
    for row in &observations {
        let event_id: String = row.try_get("", "event_id").unwrap();
        let record: String = row.try_get("", "record").unwrap();
        let state: String = row.try_get("", "state").unwrap();
        match by_event.get(event_id.as_str()) {
            None => {
                mismatched.push(format!("{event_id} ({record}): observed, but the feed has no such event"));
            }
            Some(event) if record != event.resource_name || state != observed_state(&event.changed) => {
                mismatched.push(format!(
                    "{event_id}: observed {record} {state}, the event carried {} {}",
                    event.resource_name,
                    observed_state(&event.changed)
                ));
            }
            Some(_) => {}
        }
        *applied.entry(event_id).or_default() += 1;
    }
    assert!(mismatched.is_empty(), "observations that do not match the feed:\n{}", mismatched.join("\n"));
    let applied_twice: Vec<(&String, &usize)> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(applied_twice.is_empty(), "events applied more than once: {applied_twice:?}");
    let not_applied: Vec<&str> =
        events.iter().map(|e| e.event_id.as_str()).filter(|id| !applied.contains_key(*id)).collect();
    assert!(
        not_applied.is_empty(),
        "{} incident events were never applied: {not_applied:?}",
        not_applied.len()
    );
    let dead_letters =
        rows(&delivery_sql, "SELECT consumer, sequence, event_id, error FROM consumer_dead_letters", [])
            .await;
    let dead_letters: Vec<String> = dead_letters
        .iter()
        .map(|row| {
            let consumer: String = row.try_get("", "consumer").unwrap();
            let sequence: i64 = row.try_get("", "sequence").unwrap();
            let error: String = row.try_get("", "error").unwrap();
            format!("{consumer} #{sequence}: {error}")
        })
        .collect();
    assert!(dead_letters.is_empty(), "events parked as dead letters:\n{}", dead_letters.join("\n"));
    let clocks = rows(&delivery_sql, "SELECT record, state FROM sla_clocks", []).await;
    let mut clocks_by_record: HashMap<String, Vec<i32>> = HashMap::new();
    for row in &clocks {
        let record: String = row.try_get("", "record").unwrap();
        clocks_by_record.entry(record).or_default().push(row.try_get("", "state").unwrap());
    }
    let running = SlaClockState::Running as i32;
    let wrong_clocks: Vec<String> = stored_names
        .iter()
        .filter(|name| clocks_by_record.get(**name).map(Vec::as_slice) != Some(&[running][..]))
        .map(|name| format!("{name}: clock states {:?}", clocks_by_record.get(*name)))
        .collect();
    assert!(
        wrong_clocks.is_empty(),
        "stored incidents without exactly one RUNNING SLA clock:\n{}",
        wrong_clocks.join("\n")
    );
    let stray_clocks: Vec<&String> =
        clocks_by_record.keys().filter(|r| !stored_names.contains(r.as_str())).collect();
    assert!(stray_clocks.is_empty(), "SLA clocks of records that are not stored: {stray_clocks:?}");
    eprintln!(
        "{} acknowledged, {} stored ({unacknowledged} from failed calls); {} incident events, \
         {} observations, {} SLA clocks; {INCIDENT_CONSUMER} at {cursor}",
        acknowledged.len(),
        stored.len(),
        events.len(),
        observations.len(),
        clocks.len()
    );

    // (e) After both restarts the gateway takes a new incident, and the restarted delivery
    // service follows it live: its clock runs, read through the gateway.
    let after =
        create_incident(&mut incidents, &token, new_incident("crash after both restarts", &shop, &servers))
            .await;
    let Outcome::Acknowledged(name) = &after else { panic!("create after both restarts: {after:?}") };
    let mut levels = ServiceLevelServiceClient::new(gateway.clone());
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let request = ListSlaClocksRequest {
            page_size: 10,
            filter: format!("record = \"{name}\""),
            ..Default::default()
        };
        let answer = levels.list_sla_clocks(authed(request, &token)).await;
        let states: Option<Vec<i32>> =
            answer.as_ref().ok().map(|r| r.get_ref().sla_clocks.iter().map(|c| c.state).collect());
        if states.as_deref() == Some(&[running][..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} has no running SLA clock after {CONVERGE_TIMEOUT:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    incident_sql.close().await.unwrap();
    delivery_sql.close().await.unwrap();
    drop((incidents, levels, gateway));

    // Every process, restarted or not, stops cleanly on SIGTERM.
    for process in &services {
        process.terminate();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for process in &mut services {
        process.wait_stopped(deadline).await;
    }
}
