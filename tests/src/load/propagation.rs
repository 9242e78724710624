//! Scenarios 5 and 6: how fast a change travels between services over their event feeds.
//!
//! 5. An incident's state change (IN_PROGRESS <-> ON_HOLD) until service level management has
//!    paused or resumed its SLA clock, at a paced rate (1,000 changes/s unless told otherwise).
//! 6. A ticket classified as an incident, the incident resolved, until the service desk has
//!    resolved the ticket: the whole round trip, and the last hop (incident -> ticket) alone.
//!
//! Arrival is observed on the producing service's own event feed (as its consumers see it),
//! not by polling a Get/List call from the client.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::transport::Channel;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    AgreementType, BusinessCalendar, CreateBusinessCalendarRequest, CreateServiceLevelAgreementRequest,
    DayHours, ListSlaClocksRequest, ServiceLevelAgreement, ServiceLevelTarget, SlaClockChanged, TargetMetric,
    TimeSpan,
};
use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::events::{GetFeedInfoRequest, WatchEventsRequest, WatchEventsResponse};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, Incident, IncidentState, OnHoldReason, ResolutionCode, ResolveIncidentRequest,
    UpdateIncidentRequest,
};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{
    ClassifyTicketRequest, CreateSupportGroupRequest, CreateTicketRequest, SupportGroup, Ticket,
    TicketChanged, TicketState, TicketType,
};
use itsm_runtime::context::INTERNAL_TOKEN_HEADER;
use itsm_runtime::testing::{TEST_INTERNAL_TOKEN, internal_channel};

use super::scenarios::{TENANT, connect};
use super::{LoadOptions, LoadResult, Recorder};
use crate::{Suite, authed};

// `itsm bench load` finds scenario 5's result by the prefix "event propagation".
const STATE_SCENARIO: &str = "event propagation: incident state -> SLA clock";
const ROUND_TRIP_SCENARIO: &str = "ticket -> incident -> resolved -> ticket resolved (round trip)";
const TICKET_HOP_SCENARIO: &str = "incident resolved -> ticket resolved (propagation)";

/// Most incidents scenario 5 spreads its changes over (each toggles on its own schedule).
const MAX_INCIDENTS: usize = 200;
/// Scenario 5's pace when the options name none.
const DEFAULT_RATE: f64 = 1000.0;
/// How long after the offered load's time limit late events are still waited for.
const GRACE: Duration = Duration::from_secs(10);
/// Longest any single call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one ticket round trip of scenario 6 may take before it counts as failed.
const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the set-up waits for the SLA clocks of scenario 5's incidents to run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Aborts a background task when dropped, so every return path (errors included) stops the
/// feed watcher instead of leaving it streaming after the scenario.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One RPC with a time limit; a failure becomes a message naming the call and the status code.
async fn rpc<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("{what}: no answer within {} s", CALL_TIMEOUT.as_secs())),
    }
}

/// A request to a service's internal API (its event feed), carrying the internal token the
/// suite's services are started with.
fn internal<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = TEST_INTERNAL_TOKEN.parse() {
        request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, value);
    }
    request
}

/// A feed being watched: the stream, and the client whose connection carries it (kept with the
/// stream so the connection lives as long as the watch).
type Watch = (EventServiceClient<Channel>, Streaming<WatchEventsResponse>);

/// Opens `service`'s event feed at its current head, filtered to `event_type`. The stream is
/// open when this returns, and it starts right after the head, so nothing committed from now on
/// is missed however late the watcher reads it.
async fn watch_from_head(suite: &Suite, service: &str, event_type: String) -> Result<Watch, String> {
    let url = suite.service(service).ok_or_else(|| format!("the suite has no {service} service"))?.url();
    let channel = internal_channel(&url).await.map_err(|e| e.to_string())?;
    let mut feed = EventServiceClient::new(channel);
    let head = rpc("GetFeedInfo", feed.get_feed_info(internal(GetFeedInfoRequest {}))).await?.last_sequence;
    let request = WatchEventsRequest { after_sequence: head, types: vec![event_type] };
    let stream = rpc("WatchEvents", feed.watch_events(internal(request))).await?;
    Ok((feed, stream))
}

/// Open around the clock, so the clocks count every second and pause only when told to.
fn every_day() -> Vec<DayHours> {
    (1..=7)
        .map(|day| DayHours { day, spans: vec![TimeSpan { start: "00:00".into(), end: "24:00".into() }] })
        .collect()
}

/// An UpdateIncident that moves `name` to ON_HOLD (awaiting the caller) or back to IN_PROGRESS.
/// No etag: an empty one skips the concurrency check, and each incident has one writer anyway.
fn toggle(name: &str, to_hold: bool) -> UpdateIncidentRequest {
    let (state, reason, paths) = if to_hold {
        (
            IncidentState::OnHold,
            OnHoldReason::AwaitingCaller,
            vec!["state".to_string(), "on_hold_reason".to_string()],
        )
    } else {
        (IncidentState::InProgress, OnHoldReason::Unspecified, vec!["state".to_string()])
    };
    UpdateIncidentRequest {
        incident: Some(Incident {
            name: name.to_string(),
            state: state as i32,
            on_hold_reason: reason as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    }
}

/// Waits until every incident in `records` has a RUNNING clock on `business_service`.
async fn wait_for_running_clocks(
    levels: &mut ServiceLevelServiceClient<Channel>,
    token: &str,
    business_service: &str,
    records: &HashMap<String, usize>,
) -> Result<(), String> {
    let filter = format!("business_service = \"{business_service}\" AND state = \"RUNNING\"");
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let mut running = HashSet::new();
        let mut page_token = String::new();
        loop {
            let request = ListSlaClocksRequest {
                page_size: 1000,
                page_token,
                filter: filter.clone(),
                order_by: String::new(),
            };
            let page = rpc("ListSlaClocks", levels.list_sla_clocks(authed(request, token))).await?;
            running.extend(page.sla_clocks.into_iter().map(|c| c.record).filter(|r| records.contains_key(r)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if running.len() == records.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{STATE_SCENARIO}: only {} of {} incidents have a RUNNING SLA clock after {} s",
                running.len(),
                records.len(),
                SETUP_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One state change of scenario 5: when it was sent, and when UpdateIncident answered OK.
struct Change {
    sent: Instant,
    returned: Result<Instant, String>,
}

/// Scenario 5: incident state change -> SLA clock paused or resumed, paced at `options.rate`
/// (default 1,000/s) with at most `options.concurrency` updates in flight. Latency runs from
/// UpdateIncident's answer to the matching `SlaClockChanged` pause/resume on the delivery feed.
pub async fn event_propagation(suite: &Suite, options: &LoadOptions) -> Result<LoadResult, String> {
    let token = suite.token("bench", TENANT, &["admin"]).map_err(|e| e.to_string())?;
    let channels = connect(&suite.gateway.url(), options.connections).await?;
    let setup = channels.first().cloned().ok_or("no gateway connection")?;
    let mut cmdb = CmdbServiceClient::new(setup.clone());
    let mut levels = ServiceLevelServiceClient::new(setup.clone());
    let mut incidents = IncidentServiceClient::new(setup);
    // Names unique to this run: display names are unique per tenant, and a fresh business service
    // keeps other runs' clocks out of the ListSlaClocks wait below.
    let run = uuid::Uuid::new_v4().simple().to_string();

    let service = CreateConfigurationItemRequest {
        configuration_item: Some(ConfigurationItem {
            display_name: format!("bench-propagation-{run}"),
            ci_class: "business_service".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let shop =
        rpc("CreateConfigurationItem", cmdb.create_configuration_item(authed(service, &token))).await?.name;
    let calendar = CreateBusinessCalendarRequest {
        business_calendar: Some(BusinessCalendar {
            display_name: format!("bench-always-{run}"),
            time_zone: "UTC".into(),
            weekly_hours: every_day(),
            ..Default::default()
        }),
    };
    let calendar =
        rpc("CreateBusinessCalendar", levels.create_business_calendar(authed(calendar, &token))).await?;
    // Eight hours to resolve: nothing warns or breaches during the run, so the only clock
    // events are the pauses and resumes being measured (and the starts of the set-up).
    let agreement = CreateServiceLevelAgreementRequest {
        service_level_agreement: Some(ServiceLevelAgreement {
            display_name: format!("bench-propagation-{run}"),
            r#type: AgreementType::Sla as i32,
            business_service: shop.clone(),
            counterparty: "Benchmark".into(),
            targets: vec![ServiceLevelTarget {
                metric: TargetMetric::ResolutionTime as i32,
                condition: r#"record_type = "incident""#.into(),
                duration: Some(prost_types::Duration { seconds: 8 * 3600, nanos: 0 }),
                calendar: calendar.name.clone(),
                ..Default::default()
            }],
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    rpc("CreateServiceLevelAgreement", levels.create_service_level_agreement(authed(agreement, &token)))
        .await?;

    // The incidents: created with a group (so ASSIGNED, not NEW), then taken IN_PROGRESS, from
    // where Update may toggle them ON_HOLD and back.
    let n = options.requests.clamp(1, MAX_INCIDENTS);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let create = CreateIncidentRequest {
            incident: Some(Incident {
                short_description: format!("Propagation benchmark incident {i}"),
                business_service: shop.clone(),
                impact: 3,
                urgency: 3,
                assignment_group: "supportGroups/bench".into(),
                assignee: "bench".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        };
        let created = rpc("CreateIncident", incidents.create_incident(authed(create, &token))).await?;
        rpc("UpdateIncident", incidents.update_incident(authed(toggle(&created.name, false), &token)))
            .await?;
        names.push(created.name);
    }
    let index: HashMap<String, usize> = names.iter().enumerate().map(|(i, name)| (name.clone(), i)).collect();
    wait_for_running_clocks(&mut levels, &token, &shop, &index).await?;

    // The watcher stamps each pause/resume the moment it arrives and hands it on; matching
    // happens after the load, so the channel only has to buffer.
    let full_name = <SlaClockChanged as prost::Name>::full_name();
    let (feed, mut stream) = watch_from_head(suite, "delivery", full_name).await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, Instant)>();
    let watcher = AbortOnDrop(tokio::spawn(async move {
        let _feed = feed;
        while let Ok(Some(message)) = stream.message().await {
            let arrived = Instant::now();
            let Some(payload) = message.event.and_then(|e| e.payload) else { continue };
            let Ok(changed) = SlaClockChanged::decode(payload.value.as_slice()) else { continue };
            if changed.action != "pause" && changed.action != "resume" {
                continue;
            }
            if let Some(clock) = changed.clock
                && seen_tx.send((clock.record, arrived)).is_err()
            {
                break;
            }
        }
    }));

    // The load: change k goes to incident k % n at started + k / rate. One task per incident
    // sends that incident's changes in order, each after the previous one answered, so an
    // incident never has two changes in flight and its events come in the order of its changes.
    let rate = options.rate.filter(|r| *r > 0.0).unwrap_or(DEFAULT_RATE);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let requests = options.requests;
    let started = Instant::now();
    let stop_sending = started + options.duration;
    let mut workers = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let mut client = IncidentServiceClient::new(channels[i % channels.len()].clone());
        let (name, token, semaphore) = (name.clone(), token.clone(), semaphore.clone());
        workers.push(tokio::spawn(async move {
            let mut changes = Vec::new();
            let mut on_hold = false;
            for k in (i..requests).step_by(n) {
                let at = started + interval.mul_f64(k as f64);
                if at >= stop_sending {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let Ok(_permit) = semaphore.acquire().await else { break };
                let sent = Instant::now();
                let update = client.update_incident(authed(toggle(&name, !on_hold), &token));
                let returned = rpc("UpdateIncident", update).await.map(|_| Instant::now());
                // A failed update left the state as it was: the next change tries the same move.
                if returned.is_ok() {
                    on_hold = !on_hold;
                }
                changes.push(Change { sent, returned });
            }
            changes
        }));
    }

    // Per incident, the answer times of its successful changes, in order.
    let mut answered: Vec<Vec<Instant>> = vec![Vec::new(); n];
    let (mut errors, mut first_error) = (0u64, String::new());
    let (mut first_sent, mut last_sent) = (None::<Instant>, None::<Instant>);
    for (i, worker) in workers.into_iter().enumerate() {
        let changes = worker.await.map_err(|e| format!("{STATE_SCENARIO}: worker failed: {e}"))?;
        for change in changes {
            first_sent = Some(first_sent.map_or(change.sent, |t| t.min(change.sent)));
            last_sent = Some(last_sent.map_or(change.sent, |t| t.max(change.sent)));
            match change.returned {
                Ok(at) => answered[i].push(at),
                Err(err) => {
                    errors += 1;
                    if first_error.is_empty() {
                        first_error = err;
                    }
                }
            }
        }
    }

    // Collect arrivals until each successful change has its event or time is up. The k-th
    // pause/resume of an incident belongs to its k-th successful change.
    let expected: usize = answered.iter().map(Vec::len).sum();
    let mut arrivals: Vec<Vec<Instant>> = vec![Vec::new(); n];
    let mut matched = 0usize;
    let mut feed_ended = false;
    let give_up = started + options.duration + GRACE;
    while matched < expected {
        let left = give_up.saturating_duration_since(Instant::now());
        let next = match tokio::time::timeout(left, seen.recv()).await {
            Ok(Some(event)) => Some(event),
            Ok(None) => {
                feed_ended = true;
                None
            }
            // Time is up: only what is already buffered still counts (arrival times were
            // stamped by the watcher, so buffering does not change them).
            Err(_) => seen.try_recv().ok(),
        };
        let Some((record, at)) = next else { break };
        if let Some(&i) = index.get(&record) {
            arrivals[i].push(at);
            if arrivals[i].len() <= answered[i].len() {
                matched += 1;
            }
        }
    }
    drop(watcher);

    let mut recorder = Recorder::new();
    let mut unmatched = 0u64;
    for (returns, seen_at) in answered.iter().zip(&arrivals) {
        for (k, returned) in returns.iter().enumerate() {
            match seen_at.get(k) {
                // Saturating: an event may be stamped before the client has read the answer.
                Some(arrived) => recorder.record(arrived.saturating_duration_since(*returned)),
                None => unmatched += 1,
            }
        }
    }
    if unmatched > 0 {
        let why = if feed_ended {
            "the delivery feed stream ended".to_string()
        } else {
            format!("waited until {} s after the time limit", GRACE.as_secs())
        };
        let missing = format!(
            "{unmatched} of {expected} state changes never showed as a pause/resume on the SLA clock feed ({why})"
        );
        first_error = if first_error.is_empty() {
            missing
        } else {
            format!("{missing}; first update error: {first_error}")
        };
        errors += unmatched;
    }
    let seconds = match (first_sent, last_sent) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    // Report the pace actually used (the default when the options named none).
    let reported = LoadOptions { rate: Some(rate), ..options.clone() };
    Ok(LoadResult::from_recorder(STATE_SCENARIO, &reported, &recorder, errors, first_error, seconds))
}

/// Waiting iterations of scenario 6, by ticket name: the watcher hands each the moment its
/// ticket was seen RESOLVED on the service desk's feed.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

/// What every iteration of scenario 6 shares.
#[derive(Clone)]
struct RoundTrip {
    channels: Vec<Channel>,
    token: String,
    /// The tier-1 group tickets go to (named, so routing rules of other runs do not matter);
    /// the incident raised from the ticket inherits it and starts ASSIGNED, so it can be resolved.
    support_group: String,
    waiters: Waiters,
}

impl RoundTrip {
    /// One ticket: create, classify as an incident, resolve the incident, wait for the ticket to
    /// be resolved. Returns (create -> ticket resolved, resolve -> ticket resolved).
    async fn run(&self, connection: usize) -> Result<(Duration, Duration), String> {
        let channel = self.channels[connection % self.channels.len()].clone();
        let mut desk = ServiceDeskServiceClient::new(channel.clone());
        let mut incidents = IncidentServiceClient::new(channel);
        let started = Instant::now();
        let create = CreateTicketRequest {
            ticket: Some(Ticket {
                short_description: "Round-trip benchmark: the invoice export fails".into(),
                requester: "bench-requester".into(),
                support_group: self.support_group.clone(),
                impact: 3,
                urgency: 3,
                ..Default::default()
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let ticket = rpc("CreateTicket", desk.create_ticket(authed(create, &self.token))).await?;
        let classify = ClassifyTicketRequest {
            name: ticket.name.clone(),
            r#type: TicketType::Incident as i32,
            category: "bench".into(),
            ..Default::default()
        };
        let classified = rpc("ClassifyTicket", desk.classify_ticket(authed(classify, &self.token))).await?;
        if classified.incident.is_empty() {
            return Err(format!("ClassifyTicket: {} raised no incident", ticket.name));
        }
        // Registered before the resolve, so an event that overtakes the answer is not lost.
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| "the waiters' lock is poisoned".to_string())?
            .insert(ticket.name.clone(), tx);
        let resolving = Instant::now();
        let resolve = ResolveIncidentRequest {
            name: classified.incident.clone(),
            resolution_code: ResolutionCode::SolvedPermanently as i32,
            resolution_notes: "Restarted the export job".into(),
            etag: String::new(),
        };
        if let Err(err) =
            rpc("ResolveIncident", incidents.resolve_incident(authed(resolve, &self.token))).await
        {
            self.forget(&ticket.name);
            return Err(err);
        }
        let left = ITERATION_TIMEOUT.saturating_sub(started.elapsed());
        let arrived = match tokio::time::timeout(left, rx).await {
            Ok(Ok(at)) => at,
            Ok(Err(_)) => return Err(format!("{}: the service desk feed watcher stopped", ticket.name)),
            Err(_) => {
                self.forget(&ticket.name);
                return Err(format!(
                    "{} was not seen RESOLVED within {} s of its creation",
                    ticket.name,
                    ITERATION_TIMEOUT.as_secs()
                ));
            }
        };
        Ok((arrived.saturating_duration_since(started), arrived.saturating_duration_since(resolving)))
    }

    fn forget(&self, ticket: &str) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.remove(ticket);
        }
    }

    /// `run` within the per-iteration limit (the calls before the wait count against it too).
    async fn timed(&self, connection: usize) -> Result<(Duration, Duration), String> {
        match tokio::time::timeout(ITERATION_TIMEOUT, self.run(connection)).await {
            Ok(result) => result,
            Err(_) => Err(format!("a round trip took over {} s", ITERATION_TIMEOUT.as_secs())),
        }
    }
}

/// Scenario 6: ticket -> incident -> resolved -> ticket resolved, closed loop with
/// `options.concurrency` workers. Returns (the whole round trip, the incident -> ticket hop).
pub async fn ticket_round_trip(
    suite: &Suite,
    options: &LoadOptions,
) -> Result<(LoadResult, LoadResult), String> {
    let token =
        suite.token("bench", TENANT, &["agent", "tier1", "tier2", "admin"]).map_err(|e| e.to_string())?;
    let channels = connect(&suite.gateway.url(), options.connections).await?;
    let mut desk = ServiceDeskServiceClient::new(channels.first().cloned().ok_or("no gateway connection")?);
    // Display names are unique per tenant: this run's own groups.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut support_group = String::new();
    for (tier, member) in [(1, "bench-agent-1"), (2, "bench-agent-2")] {
        let group = CreateSupportGroupRequest {
            support_group: Some(SupportGroup {
                display_name: format!("bench-tier{tier}-{run}"),
                tier,
                members: vec![member.into()],
                ..Default::default()
            }),
            request_id: String::new(),
        };
        let created = rpc("CreateSupportGroup", desk.create_support_group(authed(group, &token))).await?;
        if tier == 1 {
            support_group = created.name;
        }
    }

    let full_name = <TicketChanged as prost::Name>::full_name();
    let (feed, mut stream) = watch_from_head(suite, "service-desk", full_name).await?;
    let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
    let watcher = {
        let waiters = waiters.clone();
        AbortOnDrop(tokio::spawn(async move {
            let _feed = feed;
            while let Ok(Some(message)) = stream.message().await {
                let arrived = Instant::now();
                let Some(payload) = message.event.and_then(|e| e.payload) else { continue };
                let Ok(changed) = TicketChanged::decode(payload.value.as_slice()) else { continue };
                let Some(ticket) = changed.ticket else { continue };
                if ticket.state != TicketState::Resolved as i32 {
                    continue;
                }
                // No waiter: another run's ticket, a late event after a timeout, or a repeat.
                let waiter = waiters.lock().ok().and_then(|mut w| w.remove(&ticket.name));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(arrived);
                }
            }
        }))
    };

    let fixture = RoundTrip { channels, token, support_group, waiters };
    // Warm-up: connections, statement plans, caches; failures stop the scenario, times are dropped.
    for i in 0..options.warmup {
        fixture
            .timed(i)
            .await
            .map_err(|e| format!("{ROUND_TRIP_SCENARIO}: warm-up round trip failed: {e}"))?;
    }

    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::with_capacity(options.concurrency.max(1));
    for worker in 0..options.concurrency.max(1) {
        let (fixture, issued) = (fixture.clone(), issued.clone());
        let requests = options.requests;
        workers.push(tokio::spawn(async move {
            let (mut whole, mut hop) = (Recorder::new(), Recorder::new());
            let (mut errors, mut first_error) = (0u64, String::new());
            while Instant::now() < deadline {
                let k = issued.fetch_add(1, Ordering::Relaxed);
                if k >= requests {
                    break;
                }
                match fixture.timed(k + worker).await {
                    Ok((round_trip, propagation)) => {
                        whole.record(round_trip);
                        hop.record(propagation);
                    }
                    Err(err) => {
                        errors += 1;
                        if first_error.is_empty() {
                            first_error = err;
                        }
                    }
                }
            }
            (whole, hop, errors, first_error)
        }));
    }
    let (mut whole, mut hop) = (Recorder::new(), Recorder::new());
    let (mut errors, mut first_error) = (0u64, String::new());
    for worker in workers {
        let (w, h, e, f) = worker.await.map_err(|e| format!("{ROUND_TRIP_SCENARIO}: worker failed: {e}"))?;
        whole.add(&w);
        hop.add(&h);
        errors += e;
        if first_error.is_empty() {
            first_error = f;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(watcher);
    // Closed loop whatever the options say about pacing.
    let reported = LoadOptions { rate: None, ..options.clone() };
    Ok((
        LoadResult::from_recorder(
            ROUND_TRIP_SCENARIO,
            &reported,
            &whole,
            errors,
            first_error.clone(),
            seconds,
        ),
        LoadResult::from_recorder(TICKET_HOP_SCENARIO, &reported, &hop, errors, first_error, seconds),
    ))
}
