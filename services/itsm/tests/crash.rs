//! Crash (issue 14): `kill -9` of a service process in the middle of a write load, then a
//! restart on the same port and database.
//!
//! The suite runs as six `itsm serve <service>` processes, as in a cluster: every service on its
//! own PostgreSQL database, the gateway on SQLite. Writers call the gateway without pause while
//! a service is killed with SIGKILL and started again 1 s later; what held is then checked
//! against the acknowledged writes. Two tests, each with a suite of its own (they take turns):
//!
//! `kill_9_under_write_load_loses_no_acknowledged_write_and_applies_no_event_twice` — four
//! writers create incidents (each on a business service with an SLA and two servers) while first
//! the incident service and then the delivery service (which runs SLA clocks from the incident
//! feed) is killed:
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
//! `kill_9_of_the_cmdb_and_the_service_desk_loses_no_history_entry_and_resolves_each_ticket_once`
//! — first the CMDB under four writers that create CIs and update their descriptions with
//! etags; then the service desk while four writers create incident tickets and resolve each
//! ticket's incident at once (the desk resolves the ticket from the incident feed):
//!
//! - CMDB: every failed call is `UNAVAILABLE`, or `ABORTED` for an update whose etag had gone
//!   stale because an earlier update of the same CI committed without its answer arriving (the
//!   history proves it: the version after the one sent holds a failed update's value); every
//!   acknowledged CI is stored under its name; each CI's history (`ListConfigurationItemHistory`,
//!   through the gateway) holds versions 1..=its stored version once each, every acknowledged
//!   update's value at the version acknowledged, no value twice and none nobody sent, so
//!   acknowledged writes ≤ entries ≤ acknowledged + failed calls; the stored value is the last
//!   acknowledged one or a later failed one's; the CMDB outbox holds exactly one
//!   `ConfigurationItemChanged` per history entry (same version, action and value);
//! - service desk: failed creates are `UNAVAILABLE`, nothing acknowledged while it was dead; every
//!   acknowledged ticket is stored, linked to its incident; the desk's consumer
//!   `service-desk/incident-events` reaches the incident feed's last event, parks nothing as a dead
//!   letter, and every ticket linked to a resolved incident is RESOLVED with that incident's
//!   notes, with exactly one `resolve` and no `reopen` history entry and one resolved notice
//!   (others are not resolved at all); each ticket's history holds versions 1..=its stored version,
//!   and the desk's outbox exactly one `TicketChanged` per entry.
//!
//! PostgreSQL only (`ITSM_TEST_POSTGRES_URL`, default 127.0.0.1:5432): when it cannot be reached
//! the tests print that they were skipped and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, QueryResult, Statement, Value,
};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use itsm_delivery::service_level::feed::INCIDENT_CONSUMER;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, ConfigurationItemChanged, CreateConfigurationItemRequest, GetConfigurationItemRequest,
    ListConfigurationItemHistoryRequest, ListConfigurationItemsRequest, UpdateConfigurationItemRequest,
};
use itsm_proto::common::HistoryEntry;
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    AgreementType, BusinessCalendar, CreateBusinessCalendarRequest, CreateServiceLevelAgreementRequest,
    DayHours, ListSlaClocksRequest, ServiceLevelAgreement, ServiceLevelTarget, SlaClockState, TargetMetric,
    TimeSpan,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, Incident, IncidentChanged, IncidentState, ListIncidentsRequest, ResolutionCode,
    ResolveIncidentRequest,
};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{
    CreateSupportGroupRequest, CreateTicketRequest, ListTicketHistoryRequest, ListTicketsRequest,
    SupportGroup, Ticket, TicketChanged, TicketState, TicketType,
};
use itsm_runtime::testing::{TestBackend, TestDatabase};
use itsm_service_desk::incident_desk::CONSUMER as DESK_CONSUMER;

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
/// How long asynchronous work may take to converge. Longer than the usual 30 s: a killed
/// process still holds its consumers' leases (15 s, `ConsumerOptions::new`), and the restarted
/// process takes a consumer over only when that lease has expired.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Event types (the payload's full protobuf name) of the feeds the tests read.
const INCIDENT_CHANGED: &str = "itsm.incident.v1.IncidentChanged";
const CI_CHANGED: &str = "itsm.cmdb.v1.ConfigurationItemChanged";
const TICKET_CHANGED: &str = "itsm.servicedesk.v1.TicketChanged";
/// The CMDB load: every `CI_CREATE_EVERY`-th call of a writer creates a CI, the others update
/// one of the writer's `CI_POOL` newest CIs in turn, so each CI sees several updates, some of
/// them across the kill.
const CI_CREATE_EVERY: usize = 8;
const CI_POOL: usize = 4;
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

/// Each test runs six processes and a write load; they take turns, so one test's load does not
/// slow the other's restarts, and the ports one picks cannot be handed to the other meanwhile.
static ONE_SUITE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// How a call ended.
#[derive(Debug)]
enum Outcome<T> {
    /// OK, with the answer.
    Acknowledged(T),
    Failed(Code, String),
    /// No answer within [`NO_ANSWER`].
    NoAnswer,
}

impl<T> Outcome<T> {
    fn label(&self) -> String {
        match self {
            Outcome::Acknowledged(_) => "OK".into(),
            Outcome::Failed(code, _) => format!("{code:?}"),
            Outcome::NoAnswer => "no answer".into(),
        }
    }

    fn acknowledged(&self) -> Option<&T> {
        match self {
            Outcome::Acknowledged(record) => Some(record),
            _ => None,
        }
    }

    fn is_acknowledged(&self) -> bool {
        matches!(self, Outcome::Acknowledged(_))
    }

    fn code(&self) -> Option<Code> {
        match self {
            Outcome::Failed(code, _) => Some(*code),
            _ => None,
        }
    }
}

/// Waits for a call's answer, at most [`NO_ANSWER`].
async fn answer<T>(call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Outcome<T> {
    match tokio::time::timeout(NO_ANSWER, call).await {
        Ok(Ok(response)) => Outcome::Acknowledged(response.into_inner()),
        Ok(Err(status)) => Outcome::Failed(status.code(), status.message().to_string()),
        Err(_) => Outcome::NoAnswer,
    }
}

/// A record a write answers with, known by its resource name.
trait Named {
    fn resource_name(&self) -> &str;
}

impl Named for Incident {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl Named for ConfigurationItem {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl Named for Ticket {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

/// One write of a load: what it wrote, unique in the run (an incident's or a ticket's short
/// description, a CI's display name, the description an update set, the notes of a resolve), the
/// record it acted on and the etag it sent (both empty for a create), when it was sent and
/// answered, and how it ended.
struct Call<T> {
    key: String,
    target: String,
    etag: String,
    started: Instant,
    ended: Instant,
    outcome: Outcome<T>,
}

impl<T> Call<T> {
    async fn create(
        key: String,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Self {
        Self::update(key, String::new(), String::new(), call).await
    }

    async fn update(
        key: String,
        target: String,
        etag: String,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Self {
        let started = Instant::now();
        let outcome = answer(call).await;
        Self { key, target, etag, started, ended: Instant::now(), outcome }
    }
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

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    fn mark(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64 + 1
    }

    /// After a call of the load: notes it when it was acknowledged; after a refused one (which
    /// can be quick) waits a little, so a writer does not spin while a service is down.
    async fn pace<T>(&self, call: &Call<T>) {
        if call.outcome.is_acknowledged() {
            self.latest_acknowledged_sent.fetch_max(self.mark(call.started), Ordering::SeqCst);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a call sent at or after `since` has been acknowledged.
    async fn wait_for_write_sent_after(&self, since: Instant, what: &str) {
        let deadline = Instant::now() + RESUME_TIMEOUT;
        while self.latest_acknowledged_sent.load(Ordering::SeqCst) < self.mark(since) {
            assert!(Instant::now() < deadline, "no write went through within {RESUME_TIMEOUT:?} {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps the load on for 2 s after `service` came back and until a write sent after that
    /// went through, then stops the writers and returns what each of them sent.
    async fn finish<C>(&self, writers: Vec<JoinHandle<C>>, back: Instant, service: &str) -> Vec<C> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.wait_for_write_sent_after(back, &format!("after {service} restarted")).await;
        self.stop.store(true, Ordering::SeqCst);
        let mut sent = Vec::new();
        for writer in writers {
            sent.push(writer.await.unwrap());
        }
        sent
    }
}

/// When a killed service was down: killed, started again, and SERVING again.
struct Outage {
    killed: Instant,
    restarting: Instant,
    back: Instant,
}

/// The six processes, their databases and an admin token for the gateway.
struct Suite {
    /// Declared first, so the processes are killed before their databases are dropped.
    services: Vec<Service>,
    /// Each service's PostgreSQL database (the gateway's is a SQLite file in `_dir`).
    databases: HashMap<&'static str, TestDatabase>,
    _dir: tempfile::TempDir,
    gateway: Channel,
    token: String,
}

impl Suite {
    /// Creates the databases, starts every process and waits until each reports SERVING.
    /// `None` when PostgreSQL cannot be reached (the test then passes as skipped).
    async fn start() -> Option<Self> {
        let cmdb_db = match TestDatabase::create(TestBackend::Postgres).await {
            Ok(db) => db,
            Err(err) => {
                eprintln!("skipped: the crash test needs PostgreSQL ({err})");
                return None;
            }
        };
        let mut databases = HashMap::new();
        for name in ["incident", "service-desk", "change", "delivery"] {
            databases.insert(name, cmdb_db.another().await.unwrap());
        }
        databases.insert("cmdb", cmdb_db);
        let dir = tempfile::tempdir().unwrap();
        let gateway_db = format!("sqlite://{}", dir.path().join("gateway.db").display());

        // One environment for all, as a Helm release would give them: shared secrets, every
        // service's address, no rate limit, a quick SLA sweep and a short open circuit (the
        // gateway tries a restarted backend again after 0.5 s instead of 5 s).
        let ports: HashMap<&str, u16> = SERVICES.into_iter().zip(free_ports(SERVICES.len())).collect();
        let jwt_secret = format!("crash-jwt-{}", uuid::Uuid::new_v4().simple());
        let mut common: Vec<(String, String)> = vec![
            (
                "ITSM__AUTH__INTERNAL_TOKEN".into(),
                format!("crash-internal-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("ITSM__AUTH__JWT_SECRET".into(), jwt_secret.clone()),
            ("ITSM__PAGING__TOKEN_SECRET".into(), format!("crash-paging-{}", uuid::Uuid::new_v4().simple())),
            ("ITSM__DATABASE__MIGRATE_ON_START".into(), "true".into()),
            ("ITSM__GATEWAY__RATE_LIMIT_PER_SECOND".into(), "0".into()),
            ("ITSM__GATEWAY__CIRCUIT_OPEN_MS".into(), "500".into()),
            ("ITSM__DELIVERY__SLA_SWEEP_INTERVAL_MS".into(), "200".into()),
            ("ITSM__SERVER__SHUTDOWN_GRACE_MS".into(), "2000".into()),
            ("ITSM__CONSOLE__ENABLED".into(), "false".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        for (name, key) in UPSTREAMS {
            common.push((format!("ITSM__UPSTREAM__{key}"), format!("http://127.0.0.1:{}", ports[name])));
        }
        let mut services: Vec<Service> = SERVICES
            .into_iter()
            .map(|name| {
                let url = databases.get(name).map_or_else(|| gateway_db.clone(), |db| db.url.clone());
                let mut env = common.clone();
                env.push(("ITSM__SERVER__LISTEN_ADDR".into(), format!("127.0.0.1:{}", ports[name])));
                env.push(("ITSM__DATABASE__URL".into(), url));
                Service {
                    name,
                    port: ports[name],
                    env,
                    log: dir.path().join(format!("{name}.log")),
                    child: None,
                }
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
        Some(Self { services, databases, _dir: dir, gateway, token })
    }

    fn service(&mut self, name: &str) -> &mut Service {
        self.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    /// A connection to the service's own database, to read what it stored.
    async fn database(&self, name: &str) -> DatabaseConnection {
        Database::connect(self.databases[name].url.as_str()).await.unwrap()
    }

    /// Once the load is in full swing (1.5 s, and a write sent after `since` went through),
    /// kills `name` with SIGKILL and starts it again 1 s later on the same port and database.
    async fn kill_under_load(&mut self, load: &Load, name: &str, since: Instant) -> Outage {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        load.wait_for_write_sent_after(since, &format!("before {name} was killed")).await;
        let process = self.service(name);
        process.kill9();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarting = Instant::now();
        process.start().await;
        Outage { killed, restarting, back: Instant::now() }
    }

    /// Stops every process with SIGTERM, as Kubernetes stops a pod, and checks that each,
    /// restarted or not, exits 0. The caller has dropped its own clients of the gateway.
    async fn stop(self) {
        let Suite { mut services, gateway, .. } = self;
        drop(gateway);
        for process in &services {
            process.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for process in &mut services {
            process.wait_stopped(deadline).await;
        }
    }
}

/// Counts the calls' answers by code and prints them; panics unless every call was answered and
/// every one that failed failed with `UNAVAILABLE` or is `excused`.
fn check_failures<T>(
    what: &str,
    calls: &[Call<T>],
    excused: impl Fn(&Call<T>) -> bool,
) -> BTreeMap<String, usize> {
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        *codes.entry(call.outcome.label()).or_default() += 1;
    }
    eprintln!("{what}: {} calls: {codes:?}", calls.len());
    let wrong: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(code, message) if *code != Code::Unavailable && !excused(c) => {
                Some(format!("{} {}: {code:?} {message}", c.key, c.target))
            }
            Outcome::NoAnswer => Some(format!("{}: no answer within {NO_ANSWER:?}", c.key)),
            _ => None,
        })
        .collect();
    assert!(wrong.is_empty(), "failed {what} must be UNAVAILABLE; answers: {codes:?}\n{}", wrong.join("\n"));
    codes
}

/// Nothing was acknowledged while `service` was dead, and the kill did interrupt the load.
fn check_outage<T>(calls: &[Call<T>], outage: &Outage, service: &str) {
    let acknowledged_while_dead: Vec<&str> = calls
        .iter()
        .filter(|c| c.outcome.is_acknowledged())
        .filter(|c| c.started >= outage.killed && c.ended <= outage.restarting)
        .map(|c| c.key.as_str())
        .collect();
    assert!(
        acknowledged_while_dead.is_empty(),
        "acknowledged while {service} was dead: {acknowledged_while_dead:?}"
    );
    let failed_while_dead = calls
        .iter()
        .filter(|c| !c.outcome.is_acknowledged())
        .filter(|c| c.started >= outage.killed && c.started < outage.restarting)
        .count();
    assert!(failed_while_dead > 0, "no call failed while {service} was dead");
}

/// Key → resource name of every acknowledged create.
fn acknowledged_names<'a, T: Named + 'a>(
    calls: impl IntoIterator<Item = &'a Call<T>>,
) -> HashMap<&'a str, &'a str> {
    calls
        .into_iter()
        .filter_map(|c| c.outcome.acknowledged().map(|record| (c.key.as_str(), record.resource_name())))
        .collect()
}

/// Keys of the calls that were not acknowledged.
fn failed_keys<'a, T: 'a>(calls: impl IntoIterator<Item = &'a Call<T>>) -> HashSet<&'a str> {
    calls.into_iter().filter(|c| !c.outcome.is_acknowledged()).map(|c| c.key.as_str()).collect()
}

/// Checks the stored records (key, resource name) against the creates: every acknowledged
/// record is stored under its acknowledged name; what is stored beyond that comes from failed
/// calls whose commit landed but whose answer was lost. Returns how many those are.
fn check_creates(
    what: &str,
    acknowledged: &HashMap<&str, &str>,
    failed: &HashSet<&str>,
    stored: &[(&str, &str)],
) -> usize {
    let stored_by_key: HashMap<&str, &str> = stored.iter().copied().collect();
    assert_eq!(stored_by_key.len(), stored.len(), "one call's {what} is stored twice");
    let lost: Vec<(&str, &str)> = acknowledged
        .iter()
        .filter(|(key, name)| stored_by_key.get(*key) != Some(*name))
        .map(|(key, name)| (*key, *name))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged {what}s are not stored as acknowledged: {lost:?}", lost.len());
    let unexplained: Vec<&str> = stored_by_key
        .keys()
        .filter(|key| !acknowledged.contains_key(*key) && !failed.contains(*key))
        .copied()
        .collect();
    assert!(unexplained.is_empty(), "stored {what}s nobody tried to create: {unexplained:?}");
    let unacknowledged = stored.len() - acknowledged.len();
    assert!(
        unacknowledged <= failed.len(),
        "{unacknowledged} stored {what}s were not acknowledged, more than the {} failed calls",
        failed.len()
    );
    unacknowledged
}

/// Problems with one record's changes, each given as (version, what changed): its history holds
/// versions 1..=`version` once each, in order, starting with its creation, and its feed holds
/// exactly one event per history entry, telling the same change.
fn check_changes(
    record: &str,
    version: i64,
    history: &[(i64, String)],
    events: &[(i64, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let versions: Vec<i64> = history.iter().map(|(v, _)| *v).collect();
    if versions != (1..=version).collect::<Vec<i64>>() {
        problems.push(format!("{record} is at version {version}; its history has versions {versions:?}"));
    }
    if !history.first().is_some_and(|(_, change)| change.starts_with("create")) {
        problems.push(format!("{record}: its history does not start with its creation: {history:?}"));
    }
    let mut recorded = history.to_vec();
    let mut fed = events.to_vec();
    recorded.sort();
    fed.sort();
    if fed != recorded {
        problems.push(format!("{record}: the feed tells {fed:?}, the history {recorded:?}"));
    }
    problems
}

/// The version an etag (`W/"<version>"`) stands for.
fn version_of(etag: &str) -> i64 {
    etag.trim_start_matches("W/\"")
        .trim_end_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("etag {etag:?} is not W/\"<version>\""))
}

/// Every item of a paged list: `page` answers one page (items, next page token) for a token.
async fn all_pages<T, P>(mut page: impl FnMut(String) -> P) -> Vec<T>
where
    P: Future<Output = (Vec<T>, String)>,
{
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let (found, next_page_token) = page(page_token).await;
        items.extend(found);
        if next_page_token.is_empty() {
            return items;
        }
        page_token = next_page_token;
    }
}

/// Every incident of the tenant, through the gateway.
async fn list_all_incidents(gateway: &Channel, token: &str) -> Vec<Incident> {
    all_pages(|page_token| {
        let mut client = IncidentServiceClient::new(gateway.clone());
        let request =
            authed(ListIncidentsRequest { page_size: 500, page_token, ..Default::default() }, token);
        async move {
            let page = client.list_incidents(request).await.unwrap().into_inner();
            (page.incidents, page.next_page_token)
        }
    })
    .await
}

/// Every CI of the tenant, through the gateway.
async fn list_all_cis(gateway: &Channel, token: &str) -> Vec<ConfigurationItem> {
    all_pages(|page_token| {
        let mut client = CmdbServiceClient::new(gateway.clone());
        let request =
            authed(ListConfigurationItemsRequest { page_size: 500, page_token, ..Default::default() }, token);
        async move {
            let page = client.list_configuration_items(request).await.unwrap().into_inner();
            (page.configuration_items, page.next_page_token)
        }
    })
    .await
}

/// Every ticket of the tenant, through the gateway.
async fn list_all_tickets(gateway: &Channel, token: &str) -> Vec<Ticket> {
    all_pages(|page_token| {
        let mut client = ServiceDeskServiceClient::new(gateway.clone());
        let request = authed(ListTicketsRequest { page_size: 500, page_token, ..Default::default() }, token);
        async move {
            let page = client.list_tickets(request).await.unwrap().into_inner();
            (page.tickets, page.next_page_token)
        }
    })
    .await
}

/// A CI's whole history (`ListConfigurationItemHistory`), oldest first, through the gateway.
async fn ci_history(gateway: &Channel, token: &str, name: &str) -> Vec<HistoryEntry> {
    all_pages(|page_token| {
        let mut client = CmdbServiceClient::new(gateway.clone());
        let request =
            ListConfigurationItemHistoryRequest { name: name.to_string(), page_size: 500, page_token };
        let request = authed(request, token);
        async move {
            let page = client.list_configuration_item_history(request).await.unwrap().into_inner();
            (page.entries, page.next_page_token)
        }
    })
    .await
}

/// A ticket's whole history (`ListTicketHistory`), oldest first, through the gateway.
async fn ticket_history(gateway: &Channel, token: &str, name: &str) -> Vec<HistoryEntry> {
    all_pages(|page_token| {
        let mut client = ServiceDeskServiceClient::new(gateway.clone());
        let request = ListTicketHistoryRequest { parent: name.to_string(), page_size: 500, page_token };
        let request = authed(request, token);
        async move {
            let page = client.list_ticket_history(request).await.unwrap().into_inner();
            let changes: Vec<HistoryEntry> =
                page.entries.into_iter().filter_map(|entry| entry.change).collect();
            (changes, page.next_page_token)
        }
    })
    .await
}

/// An event as a service's outbox holds it.
struct FeedEvent<M> {
    sequence: i64,
    event_id: String,
    resource_name: String,
    changed: M,
}

/// A service's feed of one event type, read from its database's outbox, oldest first; `decode`
/// reads the payload as the feed serves it (an `Any`: this crate uses prost only through it).
async fn outbox_events<M, E: std::fmt::Debug>(
    db: &DatabaseConnection,
    event_type: &str,
    decode: impl Fn(&prost_types::Any) -> Result<M, E>,
) -> Vec<FeedEvent<M>> {
    let found = rows(
        db,
        "SELECT sequence, event_id, resource_name, payload FROM outbox \
         WHERE event_type = $1 ORDER BY sequence",
        [Value::from(event_type)],
    )
    .await;
    found
        .iter()
        .map(|row| {
            let payload = prost_types::Any {
                type_url: format!("type.googleapis.com/{event_type}"),
                value: row.try_get("", "payload").unwrap(),
            };
            FeedEvent {
                sequence: row.try_get("", "sequence").unwrap(),
                event_id: row.try_get("", "event_id").unwrap(),
                resource_name: row.try_get("", "resource_name").unwrap(),
                changed: decode(&payload).unwrap(),
            }
        })
        .collect()
}

/// Resource name → the changes its feed events tell, each as (version, what changed).
fn changes_by_record<M>(
    events: &[FeedEvent<M>],
    change: impl Fn(&M) -> (i64, String),
) -> HashMap<&str, Vec<(i64, String)>> {
    let mut by_record: HashMap<&str, Vec<(i64, String)>> = HashMap::new();
    for event in events {
        by_record.entry(event.resource_name.as_str()).or_default().push(change(&event.changed));
    }
    by_record
}

/// No consumer of the service parked an event as a dead letter.
async fn check_no_dead_letters(db: &DatabaseConnection, service: &str) {
    let dead_letters =
        rows(db, "SELECT consumer, sequence, event_id, error FROM consumer_dead_letters", []).await;
    let dead_letters: Vec<String> = dead_letters
        .iter()
        .map(|row| {
            let consumer: String = row.try_get("", "consumer").unwrap();
            let sequence: i64 = row.try_get("", "sequence").unwrap();
            let error: String = row.try_get("", "error").unwrap();
            format!("{consumer} #{sequence}: {error}")
        })
        .collect();
    assert!(
        dead_letters.is_empty(),
        "events parked as dead letters in {service}:\n{}",
        dead_letters.join("\n")
    );
}

async fn rows(
    db: &DatabaseConnection,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await.unwrap()
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
    let _turn = ONE_SUITE_AT_A_TIME.lock().await;
    let Some(mut suite) = Suite::start().await else { return };
    let (gateway, token) = (suite.gateway.clone(), suite.token.clone());
    let (shop, servers) = set_up_service_level(&gateway, &token).await;

    // The load: each writer creates incidents without pause until told to stop, every call with a
    // unique short description and a fresh request_id.
    let load = Arc::new(Load::new());
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut client = IncidentServiceClient::new(gateway.clone());
            let (load, token, shop, servers) =
                (Arc::clone(&load), token.clone(), shop.clone(), servers.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while load.running() {
                    let short_description = format!("crash load w{writer} n{}", calls.len());
                    let request = new_incident(&short_description, &shop, &servers);
                    let call =
                        Call::create(short_description, client.create_incident(authed(request, &token)))
                            .await;
                    load.pace(&call).await;
                    calls.push(call);
                }
                calls
            })
        })
        .collect();

    // kill -9 the incident service in the middle of the load; start it again 1 s later. Then the
    // delivery service, while its consumer is applying the incident feed.
    let incident = suite.kill_under_load(&load, "incident", load.base).await;
    let delivery = suite.kill_under_load(&load, "delivery", incident.back).await;
    let calls: Vec<Call<Incident>> =
        load.finish(writers, delivery.back, "delivery").await.into_iter().flatten().collect();

    // (a) Every failed call is UNAVAILABLE: the gateway answers that when it cannot reach the
    // backend (connection refused or reset), while the backend's circuit is open, and when a
    // backend's answer breaks off mid-call (`read_whole`). None hung; nothing was acknowledged
    // while the incident service was dead, and the kill did interrupt the load.
    check_failures("incident creates", &calls, |_| false);
    check_outage(&calls, &incident, "the incident service");

    // (b) Every acknowledged incident is stored under its acknowledged name; what is stored
    // beyond that comes from failed calls whose commit landed but whose answer was lost.
    let acknowledged = acknowledged_names(&calls);
    let failed = failed_keys(&calls);
    let stored = list_all_incidents(&gateway, &token).await;
    let stored_keys: Vec<(&str, &str)> =
        stored.iter().map(|i| (i.short_description.as_str(), i.name.as_str())).collect();
    let unacknowledged = check_creates("incident", &acknowledged, &failed, &stored_keys);

    // (c) The incident feed: exactly one create event per stored incident.
    let incident_sql = suite.database("incident").await;
    let events =
        outbox_events(&incident_sql, INCIDENT_CHANGED, prost_types::Any::to_msg::<IncidentChanged>).await;
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
    let delivery_sql = suite.database("delivery").await;
    let head = events.last().map_or(0, |e| e.sequence);
    let cursor = wait_for_cursor(&delivery_sql, INCIDENT_CONSUMER, head).await;
    assert_eq!(cursor, head, "{INCIDENT_CONSUMER} is past the last incident event");
    let by_event: HashMap<&str, &FeedEvent<IncidentChanged>> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
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
    check_no_dead_letters(&delivery_sql, "delivery").await;
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
    let mut incidents = IncidentServiceClient::new(gateway.clone());
    let request = new_incident("crash after both restarts", &shop, &servers);
    let after = answer(incidents.create_incident(authed(request, &token))).await;
    let Outcome::Acknowledged(created) = &after else { panic!("create after both restarts: {after:?}") };
    let name = &created.name;
    let mut levels = ServiceLevelServiceClient::new(gateway.clone());
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let request = ListSlaClocksRequest {
            page_size: 10,
            filter: format!("record = \"{name}\""),
            ..Default::default()
        };
        let listed = levels.list_sla_clocks(authed(request, &token)).await;
        let states: Option<Vec<i32>> =
            listed.as_ref().ok().map(|r| r.get_ref().sla_clocks.iter().map(|c| c.state).collect());
        if states.as_deref() == Some(&[running][..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} has no running SLA clock after {CONVERGE_TIMEOUT:?}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    incident_sql.close().await.unwrap();
    delivery_sql.close().await.unwrap();
    drop((incidents, levels, gateway));
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_cmdb_and_the_service_desk_loses_no_history_entry_and_resolves_each_ticket_once() {
    let _turn = ONE_SUITE_AT_A_TIME.lock().await;
    let Some(mut suite) = Suite::start().await else { return };
    kill_the_cmdb_under_ci_writes(&mut suite).await;
    kill_the_service_desk_while_tickets_follow_incidents(&mut suite).await;
    suite.stop().await;
}

/// One writer of the CMDB load, until the load stops: every `CI_CREATE_EVERY`-th call creates a
/// CI (unique display name, fresh request_id), the others set the description of one of its
/// `CI_POOL` newest CIs to a unique value, sending the etag it last saw. An update that failed
/// may have committed without its answer arriving; then the etag the writer holds is stale, the
/// next update of that CI is ABORTED, and the writer reads the CI again for its etag.
async fn write_cis(
    writer: usize,
    mut cmdb: CmdbServiceClient<Channel>,
    load: Arc<Load>,
    token: String,
) -> Vec<Call<ConfigurationItem>> {
    // The writer's CIs: (name, etag to send).
    let mut owned: Vec<(String, String)> = Vec::new();
    let mut calls = Vec::new();
    while load.running() {
        let n = calls.len();
        let key = format!("crash-ci w{writer} n{n}");
        let call = if owned.is_empty() || n % CI_CREATE_EVERY == 0 {
            let item = ConfigurationItem {
                display_name: key.clone(),
                ci_class: "server".into(),
                ..Default::default()
            };
            let request = CreateConfigurationItemRequest {
                configuration_item: Some(item),
                request_id: uuid::Uuid::new_v4().to_string(),
            };
            let call = Call::create(key, cmdb.create_configuration_item(authed(request, &token))).await;
            if let Some(created) = call.outcome.acknowledged() {
                owned.push((created.name.clone(), created.etag.clone()));
            }
            call
        } else {
            let index = owned.len() - 1 - n % owned.len().min(CI_POOL);
            let (name, etag) = &mut owned[index];
            let item = ConfigurationItem {
                name: name.clone(),
                description: key.clone(),
                etag: etag.clone(),
                ..Default::default()
            };
            let request = UpdateConfigurationItemRequest {
                configuration_item: Some(item),
                update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
            };
            let update = cmdb.update_configuration_item(authed(request, &token));
            let call = Call::update(key, name.clone(), etag.clone(), update).await;
            match &call.outcome {
                Outcome::Acknowledged(updated) => updated.etag.clone_into(etag),
                Outcome::Failed(Code::Aborted, _) => {
                    let request = GetConfigurationItemRequest { name: name.clone(), read_time: None };
                    if let Outcome::Acknowledged(current) =
                        answer(cmdb.get_configuration_item(authed(request, &token))).await
                    {
                        *etag = current.etag;
                    }
                }
                _ => {}
            }
            call
        };
        load.pace(&call).await;
        calls.push(call);
    }
    calls
}

/// The description a CI history entry set (its `description` change, JSON-decoded; "" when it
/// set none).
fn description_set(entry: &HistoryEntry) -> String {
    entry
        .changes
        .iter()
        .find(|change| change.field == "description")
        .map(|change| {
            serde_json::from_str::<String>(&change.new_value).unwrap_or_else(|_| change.new_value.clone())
        })
        .unwrap_or_default()
}

/// Problems with one stored CI against the updates the load sent it (in the order sent) and the
/// changes its feed tells, each as (version, "action description"): see [`check_changes`]; every
/// acknowledged update's value is in the history at the version acknowledged; every update entry
/// sets a value some update of this CI sent, and no value is recorded twice; so acknowledged
/// writes ≤ entries ≤ acknowledged writes + failed calls. The CI holds what its newest entry
/// set: the last acknowledged update's value or a later failed update's.
fn check_ci(
    ci: &ConfigurationItem,
    history: &[HistoryEntry],
    updates: &[&Call<ConfigurationItem>],
    fed: &[(i64, String)],
) -> Vec<String> {
    let name = ci.name.as_str();
    let changes: Vec<(i64, &str, String)> =
        history.iter().map(|e| (e.version, e.action.as_str(), description_set(e))).collect();
    let told: Vec<(i64, String)> = changes.iter().map(|(v, a, d)| (*v, format!("{a} {d:?}"))).collect();
    let mut problems = check_changes(name, version_of(&ci.etag), &told, fed);

    let acknowledged: HashMap<&str, i64> = updates
        .iter()
        .filter_map(|c| c.outcome.acknowledged().map(|u| (c.key.as_str(), version_of(&u.etag))))
        .collect();
    let failed: HashSet<&str> =
        updates.iter().filter(|c| !c.outcome.is_acknowledged()).map(|c| c.key.as_str()).collect();
    let mut recorded: HashMap<&str, usize> = HashMap::new();
    for (version, action, description) in &changes {
        if *action != "update" {
            continue;
        }
        if !acknowledged.contains_key(description.as_str()) && !failed.contains(description.as_str()) {
            problems.push(format!("{name} v{version} sets {description:?}, which no update of it sent"));
        }
        *recorded.entry(description.as_str()).or_default() += 1;
    }
    for (description, times) in &recorded {
        if *times > 1 {
            problems.push(format!("{name}: {description:?} is recorded {times} times"));
        }
    }
    for (description, version) in &acknowledged {
        if !changes.iter().any(|(v, a, d)| v == version && *a == "update" && d.as_str() == *description) {
            problems.push(format!(
                "{name}: the acknowledged update {description:?} (v{version}) is not in its history"
            ));
        }
    }
    let acknowledged_writes = 1 + acknowledged.len();
    if history.len() < acknowledged_writes || history.len() > acknowledged_writes + failed.len() {
        problems.push(format!(
            "{name}: {} history entries for {acknowledged_writes} acknowledged writes and {} failed calls",
            history.len(),
            failed.len()
        ));
    }

    let last_acknowledged = updates.iter().rposition(|c| c.outcome.is_acknowledged());
    let mut may_hold: Vec<&str> = match last_acknowledged {
        Some(i) => vec![updates[i].key.as_str()],
        None => vec![""],
    };
    let later = last_acknowledged.map_or(0, |i| i + 1);
    may_hold.extend(updates[later..].iter().filter(|c| !c.outcome.is_acknowledged()).map(|c| c.key.as_str()));
    if !may_hold.contains(&ci.description.as_str()) {
        problems.push(format!(
            "{name} holds {:?}; the last acknowledged update or a later failed one set one of {may_hold:?}",
            ci.description
        ));
    }
    let newest = changes.last().map(|(_, _, d)| d.as_str());
    if newest != Some(ci.description.as_str()) {
        problems.push(format!("{name} holds {:?}, its newest history entry set {newest:?}", ci.description));
    }
    problems
}

/// Part one of the second test: the CMDB killed under CI creates and updates.
async fn kill_the_cmdb_under_ci_writes(suite: &mut Suite) {
    let (gateway, token) = (suite.gateway.clone(), suite.token.clone());
    let load = Arc::new(Load::new());
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let cmdb = CmdbServiceClient::new(gateway.clone());
            tokio::spawn(write_cis(writer, cmdb, Arc::clone(&load), token.clone()))
        })
        .collect();
    let outage = suite.kill_under_load(&load, "cmdb", load.base).await;
    let calls: Vec<Call<ConfigurationItem>> =
        load.finish(writers, outage.back, "cmdb").await.into_iter().flatten().collect();
    let (creates, updates): (Vec<&Call<ConfigurationItem>>, Vec<&Call<ConfigurationItem>>) =
        calls.iter().partition(|c| c.target.is_empty());

    // Every acknowledged CI is stored under its name; the others stored come from failed creates.
    let acknowledged = acknowledged_names(creates.iter().copied());
    let failed = failed_keys(creates.iter().copied());
    let stored = list_all_cis(&gateway, &token).await;
    let stored_keys: Vec<(&str, &str)> =
        stored.iter().map(|ci| (ci.display_name.as_str(), ci.name.as_str())).collect();
    let unacknowledged = check_creates("CI", &acknowledged, &failed, &stored_keys);

    // Each stored CI's history, read through the gateway, against the updates sent to it and
    // against the CMDB's feed (its outbox).
    let cmdb_sql = suite.database("cmdb").await;
    let events =
        outbox_events(&cmdb_sql, CI_CHANGED, prost_types::Any::to_msg::<ConfigurationItemChanged>).await;
    let fed = changes_by_record(&events, |changed| {
        let item = changed.configuration_item.as_ref();
        let description = item.map(|i| i.description.as_str()).unwrap_or_default();
        (item.map_or(0, |i| version_of(&i.etag)), format!("{} {description:?}", changed.action))
    });
    let mut updates_of: HashMap<&str, Vec<&Call<ConfigurationItem>>> = HashMap::new();
    for call in updates.iter().copied() {
        updates_of.entry(call.target.as_str()).or_default().push(call);
    }
    let mut histories: HashMap<&str, Vec<HistoryEntry>> = HashMap::new();
    let mut problems = Vec::new();
    for ci in &stored {
        let history = ci_history(&gateway, &token, &ci.name).await;
        let sent = updates_of.get(ci.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let told = fed.get(ci.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        problems.extend(check_ci(ci, &history, sent, told));
        histories.insert(ci.name.as_str(), history);
    }
    assert!(
        problems.is_empty(),
        "CMDB history or feed does not match the acknowledged writes:\n{}",
        problems.join("\n")
    );
    let stray: Vec<&&str> = fed.keys().filter(|name| !histories.contains_key(**name)).collect();
    assert!(stray.is_empty(), "CMDB events of CIs that are not stored: {stray:?}");

    // Every failed call is UNAVAILABLE, or ABORTED for a stale etag: one update of the CI
    // committed without its answer arriving, and the writer sent the etag from before it. The
    // writers share no CI and send one call at a time, so nothing else can move a CI's version
    // under a writer; the history proves the commit: the version after the one sent holds a
    // failed update's value.
    let failed_updates = failed_keys(updates.iter().copied());
    let stale_etag = |call: &Call<ConfigurationItem>| {
        !call.target.is_empty()
            && histories.get(call.target.as_str()).into_iter().flatten().any(|entry| {
                entry.version == version_of(&call.etag) + 1
                    && entry.action == "update"
                    && failed_updates.contains(description_set(entry).as_str())
            })
    };
    let codes =
        check_failures("CMDB writes", &calls, |c| c.outcome.code() == Some(Code::Aborted) && stale_etag(c));
    check_outage(&calls, &outage, "the CMDB");
    let entries: usize = histories.values().map(Vec::len).sum();
    eprintln!(
        "CMDB killed: {} calls {codes:?}; {} CIs acknowledged, {} stored ({unacknowledged} from failed \
         calls); {} of {} updates acknowledged; {entries} history entries, {} events",
        calls.len(),
        acknowledged.len(),
        stored.len(),
        updates.iter().filter(|c| c.outcome.is_acknowledged()).count(),
        updates.len(),
        events.len()
    );
    cmdb_sql.close().await.unwrap();
}

/// What one writer of the ticket load sent: its ticket creates and the resolves of their incidents.
#[derive(Default)]
struct TicketWrites {
    creates: Vec<Call<Ticket>>,
    resolves: Vec<Call<Incident>>,
}

/// One writer of the ticket load, until the load stops: creates an incident ticket (unique
/// short description, fresh request_id; the desk raises its incident before it answers) and,
/// when that is acknowledged, resolves the ticket's incident through the gateway at once with
/// unique notes.
async fn write_tickets(
    writer: usize,
    mut desk: ServiceDeskServiceClient<Channel>,
    mut incidents: IncidentServiceClient<Channel>,
    load: Arc<Load>,
    token: String,
    group: String,
) -> TicketWrites {
    let mut sent = TicketWrites::default();
    while load.running() {
        let key = format!("crash ticket w{writer} n{}", sent.creates.len());
        let ticket = Ticket {
            short_description: key.clone(),
            r#type: TicketType::Incident as i32,
            support_group: group.clone(),
            ..Default::default()
        };
        let request =
            CreateTicketRequest { ticket: Some(ticket), request_id: uuid::Uuid::new_v4().to_string() };
        let create = Call::create(key, desk.create_ticket(authed(request, &token))).await;
        load.pace(&create).await;
        let incident = create.outcome.acknowledged().map(|t| t.incident.clone()).unwrap_or_default();
        if !incident.is_empty() {
            let notes = format!("fixed for {}", create.key);
            let request = ResolveIncidentRequest {
                name: incident.clone(),
                resolution_code: ResolutionCode::SolvedPermanently as i32,
                resolution_notes: notes.clone(),
                etag: String::new(),
            };
            let resolve = incidents.resolve_incident(authed(request, &token));
            sent.resolves.push(Call::update(notes, incident, String::new(), resolve).await);
        }
        sent.creates.push(create);
    }
    sent
}

/// Part two of the second test: the service desk killed while writers create incident tickets
/// and resolve their incidents, so its consumer of the incident feed is killed mid-stream.
async fn kill_the_service_desk_while_tickets_follow_incidents(suite: &mut Suite) {
    let (gateway, token) = (suite.gateway.clone(), suite.token.clone());
    let mut desk = ServiceDeskServiceClient::new(gateway.clone());
    // A tier-1 group with one member: a ticket routed there is IN_PROGRESS and its incident
    // ASSIGNED, from which it can be resolved.
    let group = CreateSupportGroupRequest {
        support_group: Some(SupportGroup {
            display_name: "crash-desk".into(),
            tier: 1,
            members: vec!["crash-agent".into()],
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let group = desk.create_support_group(authed(group, &token)).await.unwrap().into_inner().name;
    let load = Arc::new(Load::new());
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let desk = ServiceDeskServiceClient::new(gateway.clone());
            let incidents = IncidentServiceClient::new(gateway.clone());
            let writes =
                write_tickets(writer, desk, incidents, Arc::clone(&load), token.clone(), group.clone());
            tokio::spawn(writes)
        })
        .collect();
    let outage = suite.kill_under_load(&load, "service-desk", load.base).await;
    let mut creates: Vec<Call<Ticket>> = Vec::new();
    let mut resolves: Vec<Call<Incident>> = Vec::new();
    for writes in load.finish(writers, outage.back, "service-desk").await {
        creates.extend(writes.creates);
        resolves.extend(writes.resolves);
    }

    // Failed creates are UNAVAILABLE, none acknowledged while the desk was dead; the resolves go
    // to the incident service, which stayed up. An acknowledged ticket names its incident.
    let codes = check_failures("ticket creates", &creates, |_| false);
    let resolve_codes = check_failures("incident resolves", &resolves, |_| false);
    check_outage(&creates, &outage, "the service desk");
    let unlinked: Vec<&str> = creates
        .iter()
        .filter(|c| c.outcome.acknowledged().is_some_and(|t| t.incident.is_empty()))
        .map(|c| c.key.as_str())
        .collect();
    assert!(unlinked.is_empty(), "acknowledged incident tickets without their incident: {unlinked:?}");

    // Every acknowledged ticket is stored under its name, still linked to its incident.
    let acknowledged = acknowledged_names(&creates);
    let failed = failed_keys(&creates);
    let stored = list_all_tickets(&gateway, &token).await;
    let stored_keys: Vec<(&str, &str)> =
        stored.iter().map(|t| (t.short_description.as_str(), t.name.as_str())).collect();
    let unacknowledged = check_creates("ticket", &acknowledged, &failed, &stored_keys);
    let stored_by_name: HashMap<&str, &Ticket> = stored.iter().map(|t| (t.name.as_str(), t)).collect();
    let relinked: Vec<&str> = creates
        .iter()
        .filter_map(|c| c.outcome.acknowledged())
        .filter(|t| {
            stored_by_name.get(t.name.as_str()).map(|s| s.incident.as_str()) != Some(t.incident.as_str())
        })
        .map(|t| t.name.as_str())
        .collect();
    assert!(relinked.is_empty(), "acknowledged tickets stored with another incident: {relinked:?}");

    // The incident feed: which incidents were resolved, with which notes; every acknowledged
    // resolve is there.
    let incident_sql = suite.database("incident").await;
    let events =
        outbox_events(&incident_sql, INCIDENT_CHANGED, prost_types::Any::to_msg::<IncidentChanged>).await;
    let head = events.last().map_or(0, |e| e.sequence);
    let resolved: HashMap<&str, &str> = events
        .iter()
        .filter_map(|e| e.changed.incident.as_ref())
        .filter(|i| i.state == IncidentState::Resolved as i32)
        .map(|i| (i.name.as_str(), i.resolution_notes.as_str()))
        .collect();
    let not_fed: Vec<&str> = resolves
        .iter()
        .filter(|c| c.outcome.is_acknowledged())
        .filter(|c| resolved.get(c.target.as_str()) != Some(&c.key.as_str()))
        .map(|c| c.target.as_str())
        .collect();
    assert!(not_fed.is_empty(), "acknowledged resolves missing from the incident feed: {not_fed:?}");

    // The desk's consumer, killed mid-stream, takes its lease over after the restart and reaches
    // the feed's last event (its cursor moves in the same transaction as the ticket it changes).
    let desk_sql = suite.database("service-desk").await;
    let cursor = wait_for_cursor(&desk_sql, DESK_CONSUMER, head).await;
    assert_eq!(cursor, head, "{DESK_CONSUMER} is past the last incident event");
    check_no_dead_letters(&desk_sql, "the service desk").await;
    // The tickets as the consumer left them: read again now that it has caught up (the list
    // above was taken while it may still have been applying the last resolves).
    let settled = list_all_tickets(&gateway, &token).await;
    assert_eq!(settled.len(), stored.len(), "no ticket appears or goes while the consumer catches up");

    // Each ticket: its history against its feed (the desk's outbox), and its state against its
    // incident's. The handler resolves an open ticket and leaves a resolved one alone, so an event
    // applied twice leaves no trace by itself; an older event applied again after the resolve
    // would (an IN_PROGRESS incident reopens the ticket, and its resolve resolves it again), as
    // would a second `ticket_resolved` notice (written with the resolve, in the same transaction).
    let ticket_events =
        outbox_events(&desk_sql, TICKET_CHANGED, prost_types::Any::to_msg::<TicketChanged>).await;
    let fed = changes_by_record(&ticket_events, |changed| {
        (changed.ticket.as_ref().map_or(0, |t| version_of(&t.etag)), changed.action.clone())
    });
    let notices =
        rows(&desk_sql, "SELECT ticket FROM notifications WHERE kind = $1", [Value::from("ticket_resolved")])
            .await;
    let mut resolved_notices: HashMap<String, usize> = HashMap::new();
    for row in &notices {
        *resolved_notices.entry(row.try_get::<String>("", "ticket").unwrap()).or_default() += 1;
    }
    let mut problems = Vec::new();
    let mut resolved_tickets = 0;
    for ticket in &settled {
        let history = ticket_history(&gateway, &token, &ticket.name).await;
        let changes: Vec<(i64, String)> = history.iter().map(|e| (e.version, e.action.clone())).collect();
        let told = fed.get(ticket.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        problems.extend(check_changes(&ticket.name, version_of(&ticket.etag), &changes, told));
        let resolutions = changes.iter().filter(|(_, action)| action.as_str() == "resolve").count();
        let reopenings = changes.iter().filter(|(_, action)| action.as_str() == "reopen").count();
        let noticed = resolved_notices.get(&ticket.name).copied().unwrap_or(0);
        let state = TicketState::try_from(ticket.state).as_ref().map_or("?", TicketState::as_str_name);
        let is_resolved = ticket.state == TicketState::Resolved as i32;
        if let Some(notes) = resolved.get(ticket.incident.as_str()) {
            resolved_tickets += 1;
            if !is_resolved
                || ticket.resolution_notes != *notes
                || (resolutions, reopenings, noticed) != (1, 0, 1)
            {
                problems.push(format!(
                    "{} (resolved {}): {state}, notes {:?}; {resolutions} resolve and {reopenings} reopen \
                     entries, {noticed} resolved notices",
                    ticket.name, ticket.incident, ticket.resolution_notes
                ));
            }
        } else if is_resolved || resolutions + reopenings + noticed > 0 {
            problems.push(format!(
                "{} (incident {:?} not resolved): {state}; {resolutions} resolve and {reopenings} reopen \
                 entries, {noticed} resolved notices",
                ticket.name, ticket.incident
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "tickets that do not follow their incidents exactly once:\n{}",
        problems.join("\n")
    );
    let stray: Vec<&&str> = fed.keys().filter(|name| !stored_by_name.contains_key(**name)).collect();
    assert!(stray.is_empty(), "ticket events of tickets that are not stored: {stray:?}");
    eprintln!(
        "service desk killed: {} ticket creates {codes:?}, {} resolves {resolve_codes:?}; {} tickets \
         acknowledged, {} stored ({unacknowledged} from failed calls); {} incidents resolved, \
         {resolved_tickets} tickets resolved once each; {} ticket events; {DESK_CONSUMER} at {cursor}",
        creates.len(),
        resolves.len(),
        acknowledged.len(),
        stored.len(),
        resolved.len(),
        ticket_events.len()
    );
    incident_sql.close().await.unwrap();
    desk_sql.close().await.unwrap();
}
