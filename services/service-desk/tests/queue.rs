//! The work queues read page by page against real servers on port 0 (CMDB, incident service,
//! service desk), on SQLite and PostgreSQL: tickets spread over groups, open and final states and
//! priorities, so a queue page is a merge of several index ranges (one per group and state) that
//! must come out in queue order, once each, whatever the page size.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashSet;

use tonic::transport::Channel;

use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::*;
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

struct Desk {
    desk: ServiceDeskServiceClient<Channel>,
    _servers: Vec<RunningServer>,
    _dbs: Vec<TestDatabase>,
}

/// The desk with the incident service it raises incidents in (which gives incident tickets
/// their priority) and the CMDB that one checks against; each only knows the servers started
/// here.
async fn start(backend: TestBackend) -> Desk {
    let mut dbs = Vec::new();
    let db = TestDatabase::create(backend).await.unwrap();
    let settings = settings_for(&db.url);
    let cmdb = RunningServer::start(move |l, s| itsm_cmdb::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    let db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&db.url);
    settings.upstream.cmdb = cmdb.url();
    let incident =
        RunningServer::start(move |l, s| itsm_incident::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    let db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&db.url);
    settings.upstream.incident = incident.url();
    let desk =
        RunningServer::start(move |l, s| itsm_service_desk::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    Desk {
        desk: ServiceDeskServiceClient::new(internal_channel(&desk.url()).await.unwrap()),
        _servers: vec![desk, incident, cmdb],
        _dbs: dbs,
    }
}

fn as_user<T>(message: T, who: &str) -> tonic::Request<T> {
    with_context(message, "acme", who)
}

impl Desk {
    async fn group(&mut self, name: &str, members: &[&str]) -> SupportGroup {
        let group = SupportGroup {
            display_name: name.into(),
            tier: 1,
            members: members.iter().map(|m| (*m).to_string()).collect(),
            ..Default::default()
        };
        self.desk
            .create_support_group(as_user(
                CreateSupportGroupRequest { support_group: Some(group), request_id: String::new() },
                "alice",
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn set_members(&mut self, group: &SupportGroup, members: &[&str]) {
        let changed = SupportGroup {
            name: group.name.clone(),
            members: members.iter().map(|m| (*m).to_string()).collect(),
            ..Default::default()
        };
        self.desk
            .update_support_group(as_user(
                UpdateSupportGroupRequest {
                    support_group: Some(changed),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["members".into()] }),
                },
                "alice",
            ))
            .await
            .unwrap();
    }

    async fn create(&mut self, ticket: Ticket) -> Ticket {
        self.desk
            .create_ticket(as_user(
                CreateTicketRequest { ticket: Some(ticket), request_id: String::new() },
                "alice",
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Changes the fields of `path` (`state` or `assignee`) to those of `ticket`.
    async fn update(&mut self, ticket: Ticket, path: &str) {
        self.desk
            .update_ticket(as_user(
                UpdateTicketRequest {
                    ticket: Some(ticket),
                    update_mask: Some(prost_types::FieldMask { paths: vec![path.into()] }),
                },
                "alice",
            ))
            .await
            .unwrap();
    }

    async fn set_state(&mut self, name: &str, state: TicketState) {
        self.update(Ticket { name: name.into(), state: state as i32, ..Default::default() }, "state").await;
    }

    async fn assign(&mut self, name: &str, who: &str) {
        let ticket = Ticket { name: name.into(), assignee: who.into(), ..Default::default() };
        self.update(ticket, "assignee").await;
    }

    async fn resolve(&mut self, name: &str) {
        self.desk
            .resolve_ticket(as_user(
                ResolveTicketRequest {
                    name: name.into(),
                    resolution_notes: "done".into(),
                    etag: String::new(),
                },
                "alice",
            ))
            .await
            .unwrap();
    }

    /// The ticket names of `queue` as `who` pages through it, `page_size` at a time, checking
    /// that every page but the last is full.
    async fn walk(&mut self, who: &str, queue: Queue, page_size: i32) -> Vec<String> {
        let mut names = Vec::new();
        let mut page_token = String::new();
        for _ in 0..200 {
            let request = ListQueueRequest { queue: queue as i32, page_size, page_token };
            let page = self.desk.list_queue(as_user(request, who)).await.unwrap().into_inner();
            assert!(page.tickets.len() <= page_size as usize, "{queue:?} of {who}: page too long");
            names.extend(page.tickets.iter().map(|t| t.name.clone()));
            if page.next_page_token.is_empty() {
                return names;
            }
            let full = page.tickets.len() == page_size as usize;
            assert!(full, "{queue:?} of {who}: a short page before the end");
            page_token = page.next_page_token;
        }
        panic!("the {queue:?} queue of {who} does not end");
    }
}

/// Queue order as the desk defines it: priority with unclassified (0) last, then open time in
/// microseconds. (The desk breaks ties by id; the test makes sure there are none.)
fn queue_order(t: &Ticket) -> (i32, i64) {
    let rank = if t.priority == 0 { 9 } else { t.priority };
    let open = t.open_time.as_ref().unwrap();
    (rank, open.seconds * 1_000_000 + i64::from(open.nanos) / 1_000)
}

fn is_open(t: &Ticket) -> bool {
    [TicketState::New, TicketState::InProgress, TicketState::Pending].iter().any(|s| *s as i32 == t.state)
}

/// Names of the tickets `keep` selects, in queue order.
fn expected(tickets: &[Ticket], keep: impl Fn(&Ticket) -> bool) -> Vec<String> {
    let mut kept: Vec<&Ticket> = tickets.iter().filter(|&t| keep(t)).collect();
    kept.sort_by_key(|t| queue_order(t));
    kept.iter().map(|t| t.name.clone()).collect()
}

/// Checks a walked queue against the expected order, saying what went wrong.
fn assert_queue(what: &str, walked: &[String], expected: &[String]) {
    let distinct: HashSet<&String> = walked.iter().collect();
    assert_eq!(distinct.len(), walked.len(), "{what}: a ticket listed twice: {walked:?}");
    assert_eq!(walked, expected, "{what}: not the open tickets in queue order");
}

async fn queues_merge_groups_and_states_in_queue_order(backend: TestBackend) {
    let mut d = start(backend).await;
    // No members yet: tickets stay unassigned and NEW until the test moves them.
    let apps = d.group("Apps", &[]).await;
    let network = d.group("Network", &[]).await;
    let other = d.group("Other", &[]).await;
    let groups = [&apps, &network, &other];

    // 42 tickets: group i % 3 and fate i % 7 (coprime, so every group meets every fate twice);
    // every fourth a service request (no priority: queued last), the rest incidents of P1-P5,
    // so queue order is not creation order.
    for i in 0..42_usize {
        let incident = i % 4 != 3;
        let ticket = Ticket {
            short_description: format!("ticket {i}"),
            category: "queue".into(),
            requester: "rita".into(),
            support_group: groups[i % 3].name.clone(),
            r#type: if incident { TicketType::Incident as i32 } else { TicketType::ServiceRequest as i32 },
            impact: if incident { 1 + (i / 2 % 3) as i32 } else { 0 },
            urgency: if incident { 1 + (i / 5 % 3) as i32 } else { 0 },
            ..Default::default()
        };
        let created = d.create(ticket).await;
        assert_eq!((created.state, created.assignee.as_str()), (TicketState::New as i32, ""), "{created:?}");
        let name = created.name;
        match i % 7 {
            0 => {}
            1 => d.set_state(&name, TicketState::InProgress).await,
            2 => {
                d.set_state(&name, TicketState::InProgress).await;
                d.set_state(&name, TicketState::Pending).await;
            }
            3 => d.assign(&name, "zoe").await,
            4 => {
                d.assign(&name, "zoe").await;
                d.set_state(&name, TicketState::Pending).await;
            }
            5 if incident => d.set_state(&name, TicketState::Cancelled).await,
            5 => {
                d.resolve(&name).await;
                d.set_state(&name, TicketState::Closed).await;
            }
            _ => {
                d.assign(&name, "zoe").await;
                if incident {
                    d.set_state(&name, TicketState::Cancelled).await;
                } else {
                    d.resolve(&name).await;
                }
            }
        }
    }
    // Ann works in Apps and Network, not in Other.
    d.set_members(&apps, &["ann"]).await;
    d.set_members(&network, &["ann"]).await;

    // Every ticket as it ended.
    let tickets = d
        .desk
        .list_tickets(as_user(ListTicketsRequest { page_size: 100, ..Default::default() }, "alice"))
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(tickets.len(), 42);
    let opened: HashSet<(i32, i64)> = tickets.iter().map(queue_order).collect();
    assert_eq!(opened.len(), tickets.len(), "two tickets share a queue position: the order is ambiguous");

    let mine = |t: &Ticket| is_open(t) && (t.support_group == apps.name || t.support_group == network.name);
    let my_groups = expected(&tickets, mine);
    let unassigned = expected(&tickets, |t| mine(t) && t.assignee.is_empty());
    let zoes = expected(&tickets, |t| is_open(t) && t.assignee == "zoe");

    // The data exercises the merge: both groups in all three open states, several priorities,
    // tickets that must not show (final states, the other group), and an order unlike creation.
    let ranges: HashSet<(&str, i32)> =
        tickets.iter().filter(|&t| mine(t)).map(|t| (t.support_group.as_str(), t.state)).collect();
    assert_eq!(ranges.len(), 6, "{ranges:?}");
    let ranks: HashSet<i32> = tickets.iter().filter(|&t| mine(t)).map(|t| queue_order(t).0).collect();
    assert!(ranks.len() >= 3, "{ranks:?}");
    assert!(tickets.iter().any(|t| !is_open(t) && t.support_group == apps.name));
    let mut by_creation = my_groups.clone();
    by_creation.sort();
    assert_ne!(by_creation, my_groups, "queue order equals creation order: the test would prove little");
    let zoe_states: HashSet<i32> =
        tickets.iter().filter(|t| is_open(t) && t.assignee == "zoe").map(|t| t.state).collect();
    assert_eq!(zoe_states.len(), 2, "IN_PROGRESS and PENDING: {zoe_states:?}");

    for page_size in [1, 3, 4, 100] {
        let walked = d.walk("ann", Queue::MyGroups, page_size).await;
        assert_queue(&format!("ann's groups, {page_size} a page"), &walked, &my_groups);
        let walked = d.walk("ann", Queue::Unassigned, page_size).await;
        assert_queue(&format!("ann's unassigned, {page_size} a page"), &walked, &unassigned);
        let walked = d.walk("zoe", Queue::Mine, page_size).await;
        assert_queue(&format!("zoe's own, {page_size} a page"), &walked, &zoes);
    }
    assert!(!unassigned.is_empty() && unassigned.len() < my_groups.len());
    // No groups: empty queues, no next page.
    assert!(d.walk("nobody", Queue::MyGroups, 3).await.is_empty());
    assert!(d.walk("nobody", Queue::Unassigned, 3).await.is_empty());
    assert!(d.walk("ann", Queue::Mine, 3).await.is_empty());

    // In 18 groups (54 ranges, past the merge's bound) ann gets the same queues from the
    // query that sorts them all.
    for k in 0..16 {
        d.group(&format!("Spare {k}"), &["ann"]).await;
    }
    for page_size in [3, 100] {
        let walked = d.walk("ann", Queue::MyGroups, page_size).await;
        assert_queue(&format!("ann's 18 groups, {page_size} a page"), &walked, &my_groups);
        let walked = d.walk("ann", Queue::Unassigned, page_size).await;
        assert_queue(&format!("ann's 18 groups unassigned, {page_size} a page"), &walked, &unassigned);
    }
}

itsm_runtime::db_tests!(queues_merge_groups_and_states_in_queue_order);
