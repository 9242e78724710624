//! The web console's lists at enterprise size (issue 15), on PostgreSQL: the whole suite with the
//! console, `--cis` CIs seeded into the CMDB and `--tickets` open tickets into the service desk,
//! and two of the console's lists loaded over plain HTTP as a browser loads them — signed in
//! through the sign-in form, the session in its cookie: the CMDB search (`/cmdb`) and the agent
//! workspace's queue of the user's groups (`/agent/queue?view=group`). Page 1 is the baseline;
//! the deep page is reached by following each page's "Next" link, the address a user would
//! click, and timed the same way, so the ratio shows whether a page deep in a million records
//! costs what the first one does through the console as well as through the API
//! (`itsm bench cmdb`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Value};

use itsm_e2e::Suite;
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{CreateSupportGroupRequest, SupportGroup};
use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::numbers;
use itsm_runtime::testing::TestBackend;
use itsm_service_desk::convert::TICKET_NUMBER;

use super::Latency;
use super::cmdb::{TENANT, seed_cis};

/// A list of the console that the benchmark pages through.
struct Listing {
    /// Page 1's address: the list in its default order, as a user first opens it.
    first_page: &'static str,
    /// What each row of the list starts with in the page's HTML (counted on every load).
    row_marker: &'static str,
    /// Rows a page shows. Every page loaded is checked against it, so a change in the console
    /// fails the benchmark loudly.
    page_size: usize,
    /// Text a complete page shows besides its rows (a part filled by another call, which the
    /// console leaves out when that call fails), so a half-failed page is never timed.
    must_show: Option<&'static str>,
    /// How the order reads in the report.
    order: &'static str,
}

/// The CMDB search in the console's default order: no `order_by`, which the CMDB serves by
/// display name, then id. Rows: `templates/cmdb/search.html`; page size: `PAGE_SIZE` in
/// services/console/src/cmdb.rs.
const CMDB_SEARCH: Listing = Listing {
    first_page: "/cmdb",
    row_marker: "<tr id=\"row-",
    page_size: 25,
    must_show: None,
    order: "the console's default (no `order_by`): display name A to Z, then id",
};

/// The agent queue "My groups" (`view=group`, `Queue::MY_GROUPS`), in the only order queues
/// have. Each row's ticket link is `<a id="queue-{number}"` (`templates/agent/queue.html`; the
/// heading and the table have ids starting `queue` too, but are no `<a>`); page size:
/// `PAGE_SIZE` in services/console/src/agent.rs.
const AGENT_QUEUE: Listing = Listing {
    first_page: "/agent/queue?view=group",
    row_marker: "<a id=\"queue-",
    page_size: 25,
    // The group's name comes from ListSupportGroups, a second call of the page.
    must_show: Some(GROUP_NAME),
    order: "the queue's: priority P1 to P5 then unclassified, oldest first within each",
};

/// The support group the benchmark's user works in (its queue is measured).
const GROUP_NAME: &str = "Bench queue";

/// The session cookie and the sign-in form's CSRF cookie (`services/console/src/session.rs`).
const SESSION_COOKIE: &str = "itsm_session";
const LOGIN_CSRF_COOKIE: &str = "itsm_login_csrf";
/// Untimed loads of a page before its timed ones (connection, plan and buffer caches).
const WARM_UP: usize = 5;
/// The signed-in user: the subject of the token, and so the member of the seeded tickets' group.
const USER: &str = "bench";
/// Ticket rows of one seeding INSERT: about 250 bytes of SQL and 120 of parameters each, so a
/// statement stays under `db::STATEMENT_BUDGET` (128 KiB).
const TICKET_ROWS_PER_INSERT: usize = 300;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleBenchArgs {
    /// CIs seeded into the CMDB (direct SQL).
    #[arg(long, default_value_t = 1_000_000)]
    pub cis: usize,
    /// Open tickets seeded into the service desk (direct SQL), all in the signed-in user's group.
    #[arg(long, default_value_t = 1_000_000)]
    pub tickets: usize,
    /// Timed loads of page 1 and of the deep page each, after a warm-up.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// The deep page compared with page 1, in each list (25 rows a page, as the console shows
    /// them).
    #[arg(long, default_value_t = 10_000)]
    pub deep_page: usize,
    /// Small sizes that finish in seconds (the test suite runs this so the benchmark never rots).
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

impl ConsoleBenchArgs {
    pub fn smoke() -> Self {
        Self { cis: 3_000, tickets: 3_000, iterations: 20, deep_page: 50, smoke: true, json: None }
    }

    fn effective(&self) -> Self {
        if self.smoke { Self { json: self.json.clone(), ..Self::smoke() } } else { self.clone() }
    }
}

/// Page 1 and a deep page of one list.
#[derive(Debug, serde::Serialize)]
pub struct ListRun {
    /// Page 1's address.
    pub first_page: &'static str,
    /// Rows on every page loaded.
    pub page_size: usize,
    /// The order the pages are listed in.
    pub order: &'static str,
    pub deep_page: usize,
    /// Page 1, the baseline.
    pub page_first: Latency,
    /// Page `deep_page`, at the address its predecessor's "Next" link gave.
    pub page_deep: Latency,
    /// p50 of the deep page / p50 of page 1.
    pub paging_ratio: f64,
    /// Pages loaded while following "Next" from page 1 to the deep page (page 1 included, the
    /// deep page not).
    pub walk_pages: usize,
    pub walk_seconds: f64,
    pub walk_pages_per_second: f64,
    /// Length of the deep page's address: it carries the API's token of the page and the trail of
    /// earlier tokens the "Previous" link needs (at most 10).
    pub deep_address_bytes: usize,
}

impl ListRun {
    /// The list's rows of the report's table; `what` says what the list holds.
    fn markdown(&self, what: &str) -> String {
        let met = if self.paging_ratio <= 1.5 { "met" } else { "missed" };
        format!(
            "| console `{}` page {} vs page 1 ({} rows a page; order: {}; {what}) | p50 {:.2} ms, p99 {:.2} ms | page 1 p50 {:.2} ms, p99 {:.2} ms | {:.2} (p50) | ≤ 1.5: {met} |\n\
             | walk from page 1 following \"Next\" (each page checked: 200, {} rows) | {} pages in {:.1} s, {:.0} pages/s | | | |\n\
             | the deep page's address | {} bytes | | | |\n",
            self.first_page,
            self.deep_page,
            self.page_size,
            self.order,
            self.page_deep.p50_ms,
            self.page_deep.p99_ms,
            self.page_first.p50_ms,
            self.page_first.p99_ms,
            self.paging_ratio,
            self.page_size,
            self.walk_pages,
            self.walk_seconds,
            self.walk_pages_per_second,
            self.deep_address_bytes,
        )
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ConsoleReport {
    pub cis: usize,
    pub seed_seconds: f64,
    pub tickets: usize,
    pub ticket_seed_seconds: f64,
    /// The CMDB search (`/cmdb`).
    pub cmdb_search: ListRun,
    /// The agent queue of the user's groups (`/agent/queue?view=group`).
    pub agent_queue: ListRun,
}

impl ConsoleReport {
    pub fn markdown(&self) -> String {
        let queue_holds =
            format!("{} open tickets of the user's one group, unassigned, without SLA clocks", self.tickets);
        format!(
            "| measure | figure | baseline (same run) | ratio | target |\n|---|---|---|---|---|\n\
             {}{}\
             | seeding CIs (direct SQL, multi-row INSERT) | {} CIs in {:.0} s | | | |\n\
             | seeding tickets (direct SQL, multi-row INSERT) | {} tickets in {:.0} s | | | |\n",
            self.cmdb_search.markdown("all CIs of the tenant"),
            self.agent_queue.markdown(&queue_holds),
            self.cis,
            self.seed_seconds,
            self.tickets,
            self.ticket_seed_seconds,
        )
    }
}

pub async fn run(args: &ConsoleBenchArgs) -> Result<ConsoleReport, String> {
    let args = args.effective();
    if args.deep_page < 2 {
        return Err("--deep-page must be at least 2".into());
    }
    let lists = [(&CMDB_SEARCH, args.cis, "--cis"), (&AGENT_QUEUE, args.tickets, "--tickets")];
    for (listing, records, flag) in lists {
        let needed = args.deep_page.saturating_mul(listing.page_size);
        if needed > records {
            return Err(format!(
                "a full page {} of {} rows of {} needs at least {needed} records; raise {flag} or lower \
                 --deep-page",
                args.deep_page, listing.page_size, listing.first_page
            ));
        }
    }
    eprintln!("suite: starting every service and the console on PostgreSQL");
    // One user walking thousands of pages would be throttled by the gateway's per-principal rate
    // limit (50/s by default); this measures the console's pages, not the limiter.
    let suite = Suite::start_with_console_tuned(TestBackend::Postgres, |gateway| {
        gateway.gateway.rate_limit_per_second = 0;
    })
    .await
    .map_err(|e| format!("start the suite: {e}"))?;
    let console = suite.console_url().ok_or_else(|| "the suite runs no console".to_string())?;
    let cmdb_database =
        suite.database_url("cmdb").ok_or_else(|| "the suite has no CMDB database".to_string())?;
    let desk_database = suite
        .database_url("service-desk")
        .ok_or_else(|| "the suite has no service desk database".to_string())?;
    // The seeded records belong to TENANT; the token names it. Valid long enough for a 1 M run.
    let token = suite
        .token_valid_for(USER, TENANT, &["admin"], chrono::Duration::hours(12))
        .map_err(|e| e.to_string())?;

    eprintln!("seed: {} CIs (direct SQL into the CMDB's database)", args.cis);
    let started = Instant::now();
    let raw =
        Database::connect(cmdb_database).await.map_err(|e| format!("connect the CMDB database: {e}"))?;
    seed_cis(&raw, args.cis).await?;
    raw.execute_unprepared("ANALYZE configuration_items").await.map_err(|e| e.to_string())?;
    let _ = raw.close().await;
    let seed_seconds = started.elapsed().as_secs_f64();

    // The queue "My groups" lists the tickets of the groups the caller is a member of (the desk
    // reads `group_members` for the token's subject): one group with the user in it, created
    // through the API as an administrator would, so it is a group the desk wrote itself.
    let channel = suite.gateway_channel().await.map_err(|e| format!("connect the gateway: {e}"))?;
    let group = SupportGroup {
        display_name: GROUP_NAME.into(),
        tier: 1,
        members: vec![USER.into()],
        ..Default::default()
    };
    let request = CreateSupportGroupRequest { support_group: Some(group), request_id: String::new() };
    let group = ServiceDeskServiceClient::new(channel)
        .create_support_group(itsm_e2e::authed(request, &token))
        .await
        .map_err(|status| format!("create the support group: {}", status.message()))?
        .into_inner();

    eprintln!("seed: {} open tickets (direct SQL into the service desk's database)", args.tickets);
    let started = Instant::now();
    let raw = Database::connect(desk_database)
        .await
        .map_err(|e| format!("connect the service desk database: {e}"))?;
    seed_tickets(&raw, &group.name, args.tickets).await?;
    raw.execute_unprepared("ANALYZE tickets").await.map_err(|e| e.to_string())?;
    let _ = raw.close().await;
    let ticket_seed_seconds = started.elapsed().as_secs_f64();

    // Redirects are not followed: the session cookie comes with the sign-in's 303, and a page
    // answered with a redirect (to sign in again) must fail the run, not be timed.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    eprintln!("sign-in: through the console's sign-in form");
    let session = sign_in(&http, &console, &token).await?;
    let pages = Pages { http: &http, console: &console, session: &session };

    let cmdb_search = pages.measure(&CMDB_SEARCH, args.deep_page, args.iterations).await?;
    // The queue page asks the desk for the page (ListQueue) and for the group names
    // (ListSupportGroups). The "SLA due" column is the ticket's own `sla_due_time`, no call of
    // its own; seeded tickets have no SLA clocks, so it shows "—" here.
    let agent_queue = pages.measure(&AGENT_QUEUE, args.deep_page, args.iterations).await?;

    drop(suite);
    let report = ConsoleReport {
        cis: args.cis,
        seed_seconds,
        tickets: args.tickets,
        ticket_seed_seconds,
        cmdb_search,
        agent_queue,
    };
    if let Some(file) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(report)
}

/// Takes `n` numbers from the tenant's ticket sequence (the counter `numbers::next` advances) and
/// returns the first. The seeded tickets get numbers the desk could have given (`REQ0000001` …),
/// and a ticket created later gets one after them, never a seeded one's (`tickets_by_number` is
/// unique per tenant).
async fn reserve_ticket_numbers(db: &DatabaseConnection, n: usize) -> Result<i64, String> {
    let count = i64::try_from(n).map_err(|e| format!("{n} tickets: {e}"))?;
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO number_sequences (tenant_id, prefix, last_value) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, prefix) DO UPDATE SET last_value = number_sequences.last_value + $3 \
             RETURNING last_value",
            [TENANT.into(), TICKET_NUMBER.into(), count.into()],
        ))
        .await
        .map_err(|e| format!("reserve ticket numbers: {e}"))?
        .ok_or_else(|| "reserve ticket numbers: the sequence returned no row".to_string())?;
    let last: i64 = row.try_get("", "last_value").map_err(|e| format!("reserve ticket numbers: {e}"))?;
    Ok(last - count + 1)
}

/// A backlog's spread of priorities: few P1, most P2-P4, one in five unclassified (0, which the
/// queue puts last).
fn seeded_priority(i: usize) -> i32 {
    match i % 20 {
        0 => 1,
        1..=3 => 2,
        4..=8 => 3,
        9..=12 => 4,
        13..=15 => 5,
        _ => 0,
    }
}

/// NEW, IN_PROGRESS and PENDING (1, 2, 3) as 3 : 3 : 1. Seven and twenty are coprime, so every
/// priority comes in every state.
fn seeded_state(i: usize) -> i32 {
    match i % 7 {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    }
}

/// Inserts `n` open, unassigned tickets of [`TENANT`] in `group` (a group's resource name) with
/// direct SQL, one opened a second up to now, oldest first. Every column of `tickets` is NOT NULL
/// (services/service-desk/src/migration.rs, the only migration that touches the table) and
/// gets what `Repository::create_ticket` would write: tier 1 as the group's, empty lists and
/// objects as JSON, and the queue key by the desk's formula (priority rank, 9 when
/// unclassified, then the open time). A classified ticket is an incident ticket (type 1) with
/// the impact and urgency of its priority under the default matrix; its incident is not linked.
async fn seed_tickets(db: &DatabaseConnection, group: &str, n: usize) -> Result<(), String> {
    let backend = db.get_database_backend();
    let first_number = reserve_ticket_numbers(db, n).await?;
    let now = now_micros();
    let mut at = 0;
    while at < n {
        let stop = (at + TICKET_ROWS_PER_INSERT).min(n);
        let mut sql = String::from(
            "INSERT INTO tickets (id, tenant_id, number, channel, requester, organisation, category, \
             short_description, description, ticket_type, state, support_group, tier, assignee, incident, \
             business_service, configuration_items, impact, urgency, priority, resolution_notes, open_time, \
             first_response_time, resolve_time, close_time, escalation_count, tier_time, max_tier, \
             survey_score, survey_comment, catalog_item, variables, request_state, approver, sla_due_time, \
             sla_clocks, escalation_reason, queue_key, version, create_time, update_time, creator, updater) \
             VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity((stop - at) * 4);
        for (k, i) in (at..stop).enumerate() {
            let p = k * 4;
            let priority = seeded_priority(i);
            let state = seeded_state(i);
            // Under the default matrix (priority = impact + urgency - 1); a service request has
            // neither.
            let (ticket_type, impact, urgency) =
                if priority == 0 { (2, 0, 0) } else { (1, priority.min(3), priority - priority.min(3) + 1) };
            let open_time = now - (n - i) as i64 * 1_000_000;
            let rank = if priority == 0 { 9 } else { priority };
            if k > 0 {
                sql.push(',');
            }
            // 43 values, in the order of the column list above.
            sql.push_str(&format!(
                "(${id_at}, '{TENANT}', ${number_at}, 5, 'seed', '', 'bench', 'Seeded ticket', '', \
                 {ticket_type}, {state}, ${group_at}, 1, '', '', '', '[]', {impact}, {urgency}, {priority}, \
                 '', {open_time}, 0, 0, 0, 0, {open_time}, 1, 0, '', '', '{{}}', 0, '', 0, \
                 '{{}}', '', ${key_at}, 1, {open_time}, {open_time}, 'seed', 'seed')",
                id_at = p + 1,
                number_at = p + 2,
                group_at = p + 3,
                key_at = p + 4,
            ));
            values.extend([
                uuid::Uuid::now_v7().to_string().into(),
                numbers::format_number(TICKET_NUMBER, first_number + i as i64).into(),
                group.into(),
                format!("{rank}:{open_time:020}").into(),
            ]);
        }
        db.execute_raw(stmt(backend, &sql, values)).await.map_err(|e| format!("seed tickets: {e}"))?;
        at = stop;
    }
    Ok(())
}

/// Signs in as a browser does: GET the sign-in page (which sets its CSRF cookie), POST its form
/// back with the token, and keep the session cookie of the answer. Returns the `Cookie` header
/// value every page load sends.
async fn sign_in(http: &reqwest::Client, console: &str, token: &str) -> Result<String, String> {
    let response = http
        .get(format!("{console}/login?next=%2Fcmdb"))
        .send()
        .await
        .map_err(|e| format!("GET /login: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET /login: HTTP {}", response.status()));
    }
    let csrf_cookie = cookie_in(response.headers(), LOGIN_CSRF_COOKIE)
        .ok_or_else(|| "the sign-in page set no CSRF cookie".to_string())?;
    let html = response.text().await.map_err(|e| format!("GET /login: {e}"))?;
    let csrf = input_value(&html, "csrf").ok_or_else(|| "the sign-in form has no csrf field".to_string())?;
    let next = input_value(&html, "next").ok_or_else(|| "the sign-in form has no next field".to_string())?;
    let response = http
        .post(format!("{console}/login"))
        .header(COOKIE, csrf_cookie.as_str())
        .form(&[("csrf", csrf.as_str()), ("next", next.as_str()), ("token", token)])
        .send()
        .await
        .map_err(|e| format!("POST /login: {e}"))?;
    if response.status() != StatusCode::SEE_OTHER {
        return Err(format!("sign-in refused: HTTP {}", response.status()));
    }
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if location != CMDB_SEARCH.first_page {
        return Err(format!("sign-in went to `{location}`, not to {}", CMDB_SEARCH.first_page));
    }
    cookie_in(response.headers(), SESSION_COOKIE)
        .ok_or_else(|| "the sign-in set no session cookie".to_string())
}

/// Page loads of the signed-in console.
struct Pages<'a> {
    http: &'a reqwest::Client,
    console: &'a str,
    /// The `Cookie` header with the session.
    session: &'a str,
}

impl Pages<'_> {
    /// GETs `path` (page `page` of `listing`) and returns how long the whole page took (status,
    /// headers and body) and its HTML. Fails unless it is a 200 with a full page of rows, so an
    /// error page or a redirect to sign in is never timed as a page.
    async fn load(&self, listing: &Listing, path: &str, page: usize) -> Result<(Duration, String), String> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.console))
            .header(COOKIE, self.session)
            .send()
            .await
            .map_err(|e| format!("page {page}: {e}"))?;
        let status = response.status();
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let html = response.text().await.map_err(|e| format!("page {page}: {e}"))?;
        let elapsed = started.elapsed();
        if status != StatusCode::OK {
            let to = location.map(|to| format!(" to {}", shortened(&to))).unwrap_or_default();
            return Err(format!("page {page} ({}): HTTP {status}{to}", shortened(path)));
        }
        let rows = html.matches(listing.row_marker).count();
        if rows != listing.page_size {
            return Err(format!("page {page} ({}): {rows} rows, not {}", shortened(path), listing.page_size));
        }
        if let Some(text) = listing.must_show
            && !html.contains(text)
        {
            return Err(format!("page {page} ({}): {text:?} missing", shortened(path)));
        }
        Ok((elapsed, html))
    }

    /// Loads `path` [`WARM_UP`] times untimed, then `iterations` times timed.
    async fn time(
        &self,
        listing: &Listing,
        path: &str,
        page: usize,
        iterations: usize,
    ) -> Result<Latency, String> {
        for _ in 0..WARM_UP {
            self.load(listing, path, page).await?;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            samples.push(self.load(listing, path, page).await?.0);
        }
        Ok(Latency::of(&mut samples))
    }

    /// Times page 1 of `listing`, follows "Next" from it to page `deep_page` and times that one.
    async fn measure(
        &self,
        listing: &Listing,
        deep_page: usize,
        iterations: usize,
    ) -> Result<ListRun, String> {
        let list = listing.first_page;
        eprintln!("{list}: page 1, {iterations} loads");
        let page_first = self.time(listing, list, 1, iterations).await?;

        eprintln!("{list}: following \"Next\" to page {deep_page}");
        let started = Instant::now();
        let mut path = list.to_string();
        for page in 1..deep_page {
            let (_, html) = self.load(listing, &path, page).await?;
            path = next_link(&html).ok_or_else(|| {
                format!("{list}: page {page} has no \"Next\" link; seed more records or lower --deep-page")
            })?;
            if page % 1_000 == 0 {
                eprintln!("{list}: page {page} of {deep_page}");
            }
        }
        let walk_seconds = started.elapsed().as_secs_f64();
        let walk_pages = deep_page - 1;

        eprintln!("{list}: page {deep_page}, {iterations} loads");
        let page_deep = self.time(listing, &path, deep_page, iterations).await?;
        Ok(ListRun {
            first_page: list,
            page_size: listing.page_size,
            order: listing.order,
            deep_page,
            paging_ratio: page_deep.p50_ms / page_first.p50_ms.max(f64::MIN_POSITIVE),
            page_first,
            page_deep,
            walk_pages,
            walk_seconds,
            walk_pages_per_second: walk_pages as f64 / walk_seconds.max(f64::MIN_POSITIVE),
            deep_address_bytes: path.len(),
        })
    }
}

/// The start of `address` for an error message (a deep page's address is kilobytes of tokens).
fn shortened(address: &str) -> &str {
    address.get(..80).unwrap_or(address)
}

/// The `name=value` pair of the cookie `name` that `headers` set (a removal, with an empty value,
/// does not count).
fn cookie_in(headers: &HeaderMap, name: &str) -> Option<String> {
    for value in headers.get_all(SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or_default().trim();
        if let Some((key, value)) = pair.split_once('=')
            && key == name
            && !value.is_empty()
        {
            return Some(pair.to_string());
        }
    }
    None
}

/// The value of the form input named `name` (`<input … name="csrf" value="…">`), unescaped.
fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html_unescape(&html[start..end]))
}

/// The address of the page's "Next" link (`<a id="page-next" … href="…">`), unescaped: `None`
/// on the last page.
fn next_link(html: &str) -> Option<String> {
    let at = html.find("id=\"page-next\"")?;
    let tag = &html[at..at + html[at..].find('>')?];
    let start = tag.find("href=\"")? + "href=\"".len();
    let end = start + tag[start..].find('"')?;
    Some(html_unescape(&tag[start..end]))
}

/// `text` with HTML character references replaced: the named ones the templates' escaping can
/// write and numeric ones (askama writes `&` in an attribute as `&#38;`). Anything else stays.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| entity_char(&rest[1..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an HTML character reference (without `&` and `;`) stands for.
fn entity_char(entity: &str) -> Option<char> {
    match entity {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = entity.strip_prefix('#')?;
            let code = match number.strip_prefix('x').or_else(|| number.strip_prefix('X')) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_next_link_is_read_from_the_pager_and_unescaped() {
        let html = r#"<nav class="pager" aria-label="Pages">
  <a id="page-previous" rel="prev" href="/cmdb?page=A&#38;trail=Z">← Previous</a>
  <a id="page-next" rel="next" href="/cmdb?page=B-_x&#38;trail=Z.A">Next →</a>
</nav>"#;
        assert_eq!(next_link(html).as_deref(), Some("/cmdb?page=B-_x&trail=Z.A"));
        assert_eq!(next_link(r#"<a id="page-previous" href="/cmdb">x</a>"#), None);
    }

    #[test]
    fn character_references_are_replaced_and_stray_ampersands_kept() {
        assert_eq!(html_unescape("a&#38;b&amp;c&#x2F;d&quot;&#39;"), "a&b&c/d\"'");
        assert_eq!(html_unescape("x & y &unknown; &#zz;"), "x & y &unknown; &#zz;");
        assert_eq!(html_unescape("no references"), "no references");
    }

    #[test]
    fn form_inputs_and_cookies_are_found_by_name() {
        let html = r#"<input type="hidden" name="csrf" value="ab12">
            <input type="hidden" name="next" value="/cmdb">"#;
        assert_eq!(input_value(html, "csrf").as_deref(), Some("ab12"));
        assert_eq!(input_value(html, "next").as_deref(), Some("/cmdb"));
        assert_eq!(input_value(html, "token"), None);

        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("itsm_login_csrf=; Path=/login; Max-Age=0"));
        headers.append(SET_COOKIE, HeaderValue::from_static("itsm_session=S3cr3t; HttpOnly; Path=/"));
        assert_eq!(cookie_in(&headers, SESSION_COOKIE).as_deref(), Some("itsm_session=S3cr3t"));
        assert_eq!(cookie_in(&headers, LOGIN_CSRF_COOKIE), None);
    }

    /// The benchmark's smoke mode, run by the test suite so the benchmark never rots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn console_benchmark_smoke() {
        let report = run(&ConsoleBenchArgs::smoke()).await.unwrap();
        assert_eq!((report.cis, report.tickets), (3_000, 3_000));
        for (list, measured) in [(&CMDB_SEARCH, &report.cmdb_search), (&AGENT_QUEUE, &report.agent_queue)] {
            assert_eq!((measured.page_first.count, measured.page_deep.count), (20, 20), "{measured:?}");
            assert_eq!(measured.walk_pages, 49, "{measured:?}");
            assert!(measured.paging_ratio > 0.0 && measured.walk_pages_per_second > 0.0, "{measured:?}");
            assert!(measured.deep_address_bytes > list.first_page.len(), "{measured:?}");
        }
        let table = report.markdown();
        assert!(table.contains("| console `/cmdb` page 50 vs page 1"), "{table}");
        assert!(table.contains("| console `/agent/queue?view=group` page 50 vs page 1"), "{table}");
        let seeding = "| seeding tickets (direct SQL, multi-row INSERT) | 3000 tickets in";
        assert!(table.contains(seeding), "{table}");
    }

    #[test]
    fn seeded_tickets_are_open_with_every_priority_in_every_state() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..140 {
            let (priority, state) = (seeded_priority(i), seeded_state(i));
            assert!((0..=5).contains(&priority) && (1..=3).contains(&state), "{i}: {priority} {state}");
            seen.insert((priority, state));
        }
        assert_eq!(seen.len(), 6 * 3);
    }
}
