//! Hostile input through the gateway (issue 14): every public unary and client-streaming RPC,
//! called as an admin with an empty message, answers with a clear client-side status — never
//! INTERNAL, UNKNOWN or UNAVAILABLE, and never hangs; bytes that are no protobuf message get the
//! gRPC library's own answer (INTERNAL, a decode error) without a handler running. The RPCs come
//! from the descriptor set, so none is forgotten. Oversized strings (in creates and in every other
//! RPC that takes text), messages over the size limit and text that is not UTF-8 are refused, and
//! nothing is written ([`Stored`] compares what a caller can see before and after).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet, MethodDescriptorProto};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, ImportConfigurationItemsRequest, ImportRow,
    ListConfigurationItemsRequest, import_configuration_items_request, import_row,
};
use itsm_proto::delivery::capacity_service_client::CapacityServiceClient;
use itsm_proto::delivery::finance_service_client::FinanceServiceClient;
use itsm_proto::delivery::{ImportBillingDataRequest, RecordCapacitySamplesRequest};
use itsm_proto::events::GetFeedInfoRequest;
use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::incident::ListIncidentsRequest;
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_runtime::testing::TestBackend;

/// How long an answer may take before the call counts as hanging.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// Longer than every text limit we set (the longest, a changeset's message or a CAB meeting's
/// minutes, is 64 KiB).
const HUGE_TEXT: usize = 200 * 1024;
/// Larger than the largest message a server accepts (`server.max_message_bytes`, 4 MiB).
const HUGE_MESSAGE: usize = 5 * 1024 * 1024;

/// Sends bytes as they are and keeps the answer's bytes: any method can be called with any body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Calls `/{service}/{method}` through `channel` with `body` as the request message: the
/// answer's bytes or its status, or `None` when no answer came within [`ANSWER_WITHIN`].
async fn call_raw(
    channel: &Channel,
    token: &str,
    service: &str,
    method: &str,
    body: Vec<u8>,
) -> Option<Result<Vec<u8>, tonic::Status>> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
    let call = client.unary(authed(body, token), path, RawCodec);
    tokio::time::timeout(ANSWER_WITHIN, call).await.ok().map(|answer| answer.map(tonic::Response::into_inner))
}

/// Whether `status` is the gRPC library's answer to a request it could not decode (tonic-prost
/// maps prost's `DecodeError` to INTERNAL "failed to decode Protobuf message: …").
fn is_decode_error(status: &tonic::Status) -> bool {
    status.code() == Code::Internal && status.message().contains("decod")
}

/// The fields the `google.rpc.BadRequest` of a status names.
fn violation_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The suite with the per-principal rate limit out of the way: these tests make hundreds of
/// calls in a few seconds, and the limit is not what they test.
async fn start_unthrottled(backend: TestBackend) -> Suite {
    Suite::start_with(backend, |gateway| {
        gateway.gateway.rate_limit_per_second = 100_000;
        gateway.gateway.rate_limit_burst = 100_000;
    })
    .await
    .unwrap()
}

/// The contracts the services were built from.
fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(itsm_proto::FILE_DESCRIPTOR_SET).unwrap()
}

/// Every top-level message of `set` by the name fields refer to it with
/// (`.itsm.cmdb.v1.ConfigurationItem`, `.google.protobuf.FieldMask`).
fn messages_by_name(set: &FileDescriptorSet) -> HashMap<String, &DescriptorProto> {
    set.file
        .iter()
        .flat_map(|f| f.message_type.iter().map(move |m| (format!(".{}.{}", f.package(), m.name()), m)))
        .collect()
}

/// Every RPC of a public service, with the service's full name.
fn public_rpcs(set: &FileDescriptorSet) -> Vec<(String, &MethodDescriptorProto)> {
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if itsm_proto::PUBLIC_SERVICES.iter().any(|(s, _)| *s == full) {
                rpcs.extend(service.method.iter().map(|m| (full.clone(), m)));
            }
        }
    }
    rpcs
}

/// The number of `message`'s field `name`, if it has one.
fn field_number(message: &DescriptorProto, name: &str) -> Option<u32> {
    message.field.iter().find(|f| f.name() == name).map(|f| u32::try_from(f.number()).unwrap())
}

/// (service, method) of every public RPC a single request can be sent to.
fn public_methods() -> Vec<(String, String)> {
    let set = descriptor_set();
    public_rpcs(&set)
        .into_iter()
        // Server streams (event feeds) answer with a stream, not one message.
        .filter(|(_, method)| !method.server_streaming())
        .map(|(service, method)| (service, method.name().to_string()))
        .collect()
}

async fn empty_messages_get_client_errors(backend: TestBackend) {
    // Hundreds of calls in a few seconds: the per-principal rate limit is not what is tested.
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let methods = public_methods();
    assert!(methods.len() > 150, "{} methods", methods.len());
    let mut bad = Vec::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for (service, method) in &methods {
        let code = match call_raw(&channel, &admin, service, method, Vec::new()).await {
            None => {
                bad.push(format!("{service}/{method}: no answer in 15 s"));
                continue;
            }
            Some(Ok(_)) => Code::Ok,
            Some(Err(status)) => {
                if matches!(
                    status.code(),
                    Code::Internal | Code::Unknown | Code::Unavailable | Code::DataLoss
                ) {
                    bad.push(format!("{service}/{method}: {:?} {}", status.code(), status.message()));
                }
                status.code()
            }
        };
        assert_ne!(code, Code::Unimplemented, "{service}/{method} is routed but not built");
        // Bytes that are no protobuf message: the library's own answer, no handler, no hang.
        match call_raw(&channel, &admin, service, method, vec![0xff, 0xff, 0xff]).await {
            None => bad.push(format!("{service}/{method}: garbage got no answer in 15 s")),
            Some(Ok(_)) => bad.push(format!("{service}/{method}: garbage was accepted")),
            Some(Err(status)) => {
                if !is_decode_error(&status) {
                    bad.push(format!(
                        "{service}/{method}: garbage got {:?} {}",
                        status.code(),
                        status.message()
                    ));
                }
            }
        }
        *codes.entry(format!("{code:?}")).or_default() += 1;
    }
    eprintln!("{} RPCs, answers to an empty message: {codes:?}", methods.len());
    // Most RPCs need something named or set: the handlers ran and validated.
    assert!(codes.get("InvalidArgument").copied().unwrap_or(0) > methods.len() / 2, "{codes:?}");
    assert!(bad.is_empty(), "{} RPCs answered an empty message badly:\n{}", bad.len(), bad.join("\n"));
}

/// A public List* RPC with the field numbers of its request's paging and filter fields and of
/// its response's records and next page token.
struct ListMethod {
    service: String,
    method: String,
    page_size: Option<u32>,
    page_token: Option<u32>,
    filter: Option<u32>,
    /// The response's repeated message fields: the records of the page.
    items: Vec<u32>,
    next_page_token: Option<u32>,
}

/// Builds a hostile request body for a list RPC (None: the request has no such field).
type HostileBody<'a> = Box<dyn Fn(&ListMethod) -> Option<Vec<u8>> + 'a>;

fn list_methods() -> Vec<ListMethod> {
    let set = descriptor_set();
    let messages = messages_by_name(&set);
    let mut out = Vec::new();
    for (service, method) in public_rpcs(&set) {
        if !method.name().starts_with("List") || method.server_streaming() {
            continue;
        }
        let Some(&input) = messages.get(method.input_type()) else { continue };
        let output = messages.get(method.output_type());
        let items: Vec<u32> = output
            .map(|o| {
                o.field
                    .iter()
                    .filter(|f| f.label() == Label::Repeated && f.r#type() == Type::Message)
                    .map(|f| u32::try_from(f.number()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ListMethod {
            method: method.name().to_string(),
            page_size: field_number(input, "page_size"),
            page_token: field_number(input, "page_token"),
            filter: field_number(input, "filter"),
            items,
            next_page_token: output.and_then(|o| field_number(o, "next_page_token")),
            service,
        });
    }
    out
}

impl ListMethod {
    /// How many records the list shows the caller, page by page; the status code when it does not
    /// answer an empty request (it needs a parent or a filter).
    async fn count(&self, channel: &Channel, token: &str) -> Result<usize, Code> {
        let (service, method) = (&self.service, &self.method);
        let mut count = 0;
        let mut page_token = String::new();
        for _ in 0..100 {
            let mut body = Vec::new();
            if let Some(field) = self.page_token.filter(|_| !page_token.is_empty()) {
                prost::encoding::string::encode(field, &page_token, &mut body);
            }
            let page = match call_raw(channel, token, service, method, body).await {
                None => panic!("{service}/{method}: no answer in 15 s"),
                Some(Err(status)) => return Err(status.code()),
                Some(Ok(page)) => page,
            };
            let (records, next) = read_page(&page, &self.items, self.next_page_token);
            count += records;
            if next.is_empty() || self.page_token.is_none() {
                return Ok(count);
            }
            page_token = next;
        }
        panic!("{service}/{method}: more than 100 pages")
    }
}

/// The number of `items` fields in an encoded list response, and its next page token.
fn read_page(page: &[u8], items: &[u32], next_page_token: Option<u32>) -> (usize, String) {
    use prost::encoding::{DecodeContext, decode_key, skip_field, string};
    let mut buf = page;
    let (mut count, mut token) = (0, String::new());
    while buf.has_remaining() {
        let (number, wire_type) = decode_key(&mut buf).unwrap();
        if Some(number) == next_page_token {
            string::merge(wire_type, &mut token, &mut buf, DecodeContext::default()).unwrap();
        } else {
            count += usize::from(items.contains(&number));
            skip_field(wire_type, number, &mut buf, DecodeContext::default()).unwrap();
        }
    }
    (count, token)
}

/// What the suite has stored, as far as a caller can see it: the head of every service's event
/// feed (a write of a record with history appends its event in the same transaction) and how many
/// records every public list shows (whole-message documents write no event). Two equal
/// snapshots around refused calls mean that none of them wrote anything.
#[derive(Debug)]
struct Stored {
    feed_heads: BTreeMap<&'static str, i64>,
    /// Records per list (`service/method`); the code of a list that an empty request cannot read.
    records: BTreeMap<String, Result<usize, Code>>,
}

impl Stored {
    async fn read(suite: &Suite, channel: &Channel, token: &str) -> Self {
        let mut feed_heads = BTreeMap::new();
        for (name, server) in &suite.services {
            // The feed is no public service: asked directly, as the services follow each other.
            let direct = itsm_runtime::testing::internal_channel(&server.url()).await.unwrap();
            let request = itsm_runtime::testing::with_context(GetFeedInfoRequest {}, "acme", "root");
            let head = EventServiceClient::new(direct).get_feed_info(request).await.unwrap();
            feed_heads.insert(*name, head.into_inner().last_sequence);
        }
        let mut records = BTreeMap::new();
        for list in list_methods() {
            // The audit log records every call, refused ones too: that is what it is for.
            if list.service == "itsm.gateway.v1.AuditService" {
                continue;
            }
            let count = list.count(channel, token).await;
            records.insert(format!("{}/{}", list.service, list.method), count);
        }
        Self { feed_heads, records }
    }

    /// How many records `service/method` lists; panics when an empty request cannot read it.
    fn records_of(&self, list: &str) -> usize {
        match self.records.get(list) {
            Some(Ok(count)) => *count,
            other => panic!("{list} is not counted: {other:?}"),
        }
    }

    /// What differs in `later`, one line per feed or list.
    fn changes(&self, later: &Stored) -> Vec<String> {
        let mut changes = Vec::new();
        for (service, head) in &later.feed_heads {
            let before = self.feed_heads.get(service);
            if before != Some(head) {
                changes.push(format!("{service}'s event feed: {before:?} -> {head}"));
            }
        }
        for (list, records) in &later.records {
            let before = self.records.get(list);
            if before != Some(records) {
                changes.push(format!("{list}: {before:?} -> {records:?}"));
            }
        }
        changes
    }
}

async fn hostile_listing_requests_get_client_errors(backend: TestBackend) {
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let lists = list_methods();
    assert!(lists.len() > 40, "{} list methods", lists.len());
    let deep = format!("{}display_name = \"x\"{}", "(".repeat(5_000), ")".repeat(5_000));
    let long_or = vec!["display_name = \"x\""; 20_000].join(" OR ");
    let cases: Vec<(&str, HostileBody)> = vec![
        (
            "SQL injection in the filter",
            Box::new(|m: &ListMethod| {
                let f = m.filter;
                let mut buf = Vec::new();
                prost::encoding::string::encode(
                    f?,
                    &"name = \"x' OR '1'='1\"; DROP TABLE changes; --".to_string(),
                    &mut buf,
                );
                Some(buf)
            }),
        ),
        (
            "filter nested 5,000 deep",
            Box::new(|m: &ListMethod| {
                let f = m.filter;
                let mut buf = Vec::new();
                prost::encoding::string::encode(f?, &deep, &mut buf);
                Some(buf)
            }),
        ),
        (
            "20,000 ORs",
            Box::new(|m: &ListMethod| {
                let f = m.filter;
                let mut buf = Vec::new();
                prost::encoding::string::encode(f?, &long_or, &mut buf);
                Some(buf)
            }),
        ),
        (
            "tampered page token",
            Box::new(|m: &ListMethod| {
                let t = m.page_token;
                let mut buf = Vec::new();
                prost::encoding::string::encode(t?, &"eyJrZXkiOlsiYSIsImIiXX0.forged".to_string(), &mut buf);
                Some(buf)
            }),
        ),
        (
            "negative page size",
            Box::new(|m: &ListMethod| {
                let p = m.page_size;
                let mut buf = Vec::new();
                prost::encoding::int32::encode(p?, &-5, &mut buf);
                Some(buf)
            }),
        ),
    ];
    let mut bad = Vec::new();
    let mut answered = 0;
    for list in &lists {
        let (service, method) = (&list.service, &list.method);
        for (what, build) in &cases {
            let Some(body) = build(list) else { continue };
            match call_raw(&channel, &admin, service, method, body).await {
                None => bad.push(format!("{service}/{method} {what}: no answer in 15 s")),
                Some(Ok(_)) => bad.push(format!("{service}/{method} {what}: accepted")),
                Some(Err(status)) if status.code() == Code::InvalidArgument => answered += 1,
                Some(Err(status)) => {
                    bad.push(format!("{service}/{method} {what}: {:?} {}", status.code(), status.message()));
                }
            }
        }
    }
    // A huge page size is cut to the largest page (AIP-158), not refused and not obeyed: the
    // answer is what the same request without it gets (OK, or INVALID_ARGUMENT for a missing
    // parent), in time.
    let mut huge_ok = 0;
    for list in &lists {
        let (service, method) = (&list.service, &list.method);
        let Some(field) = list.page_size else { continue };
        let mut body = Vec::new();
        prost::encoding::int32::encode(field, &i32::MAX, &mut body);
        let plain = call_raw(&channel, &admin, service, method, Vec::new()).await;
        let huge = call_raw(&channel, &admin, service, method, body).await;
        match (plain, huge) {
            (_, None) => bad.push(format!("{service}/{method} page_size {}: no answer in 15 s", i32::MAX)),
            (Some(Ok(_)), Some(Ok(_))) => huge_ok += 1,
            (Some(Err(a)), Some(Err(b))) if a.code() == b.code() && a.code() == Code::InvalidArgument => {}
            (plain, Some(huge)) => bad.push(format!(
                "{service}/{method} page_size {}: {:?}, without it {:?}",
                i32::MAX,
                huge.map(|_| "OK").map_err(|s| s.code()),
                plain.map(|r| r.map(|_| "OK").map_err(|s| s.code()))
            )),
        }
    }
    eprintln!("{} list RPCs, {answered} hostile requests refused as INVALID_ARGUMENT", lists.len());
    eprintln!("{huge_ok} list RPCs answered a page size of {} with a page", i32::MAX);
    assert!(bad.is_empty(), "{} hostile listing requests answered badly:\n{}", bad.len(), bad.join("\n"));
    assert!(answered > 100, "{answered}");
    assert!(huge_ok > 20, "{huge_ok}");
}

/// A public Create* RPC whose request holds its resource as a message field.
struct CreateMethod {
    service: String,
    method: String,
    /// The request's field number for the resource.
    resource_field: u32,
    /// The resource's single string fields.
    strings: Vec<u32>,
}

fn create_methods() -> Vec<CreateMethod> {
    let set = descriptor_set();
    let messages = messages_by_name(&set);
    let mut out = Vec::new();
    for (service, method) in public_rpcs(&set) {
        if !method.name().starts_with("Create") || method.client_streaming() {
            continue;
        }
        let Some(input) = messages.get(method.input_type()) else { continue };
        let Some(resource) = input.field.iter().find(|f| f.r#type() == Type::Message) else { continue };
        let Some(body) = messages.get(resource.type_name()) else { continue };
        let strings: Vec<u32> = body
            .field
            .iter()
            .filter(|f| f.r#type() == Type::String && f.label() != Label::Repeated)
            .map(|f| u32::try_from(f.number()).unwrap())
            .collect();
        if !strings.is_empty() {
            out.push(CreateMethod {
                service,
                method: method.name().to_string(),
                resource_field: u32::try_from(resource.number()).unwrap(),
                strings,
            });
        }
    }
    out
}

async fn oversized_strings_are_refused(backend: TestBackend) {
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let creates = create_methods();
    assert!(creates.len() > 20, "{} create methods", creates.len());
    // 200 KiB in every string field of the resource: above every text limit we set.
    let huge = "x".repeat(HUGE_TEXT);
    let mut bad = Vec::new();
    for create in &creates {
        let (service, method) = (&create.service, &create.method);
        let mut resource = Vec::new();
        for number in &create.strings {
            prost::encoding::string::encode(*number, &huge, &mut resource);
        }
        let mut body = Vec::new();
        prost::encoding::bytes::encode(create.resource_field, &resource, &mut body);
        match call_raw(&channel, &admin, service, method, body).await {
            None => bad.push(format!("{service}/{method}: no answer in 15 s")),
            Some(Ok(_)) => bad.push(format!("{service}/{method}: 200 KiB strings were stored")),
            Some(Err(status)) if status.code() == Code::InvalidArgument => {}
            Some(Err(status)) => {
                bad.push(format!("{service}/{method}: {:?} {}", status.code(), status.message()));
            }
        }
    }
    eprintln!("{} create RPCs refused 200 KiB strings", creates.len());
    assert!(bad.is_empty(), "{} creates answered 200 KiB strings badly:\n{}", bad.len(), bad.join("\n"));
}

/// A public unary RPC that is neither a create, a list nor a get — updates, deletes and custom
/// methods (Resolve*, Escalate*, Approve*, Import*, …) — with its request's string fields.
struct OtherMethod {
    service: String,
    method: String,
    strings: Vec<StringField>,
}

/// `(None, n)`: string field `n` of a request; `(Some(n), m)`: string field `m` of the message in
/// the request's field `n` (the resource an update carries, the paths of its update mask).
type StringField = (Option<u32>, u32);

fn other_methods() -> Vec<OtherMethod> {
    let set = descriptor_set();
    let messages = messages_by_name(&set);
    let mut out = Vec::new();
    for (service, method) in public_rpcs(&set) {
        let name = method.name();
        let standard = ["Create", "List", "Get"].iter().any(|prefix| name.starts_with(prefix));
        if standard || method.client_streaming() || method.server_streaming() {
            continue;
        }
        let Some(input) = messages.get(method.input_type()) else { continue };
        let strings = string_fields(input, &messages);
        if !strings.is_empty() {
            out.push(OtherMethod { service, method: name.to_string(), strings });
        }
    }
    out
}

/// The string fields of `request` and of the messages it holds directly (repeated ones too).
fn string_fields(
    request: &DescriptorProto,
    messages: &HashMap<String, &DescriptorProto>,
) -> Vec<StringField> {
    let number = |f: &prost_types::FieldDescriptorProto| u32::try_from(f.number()).unwrap();
    let mut fields = Vec::new();
    for field in &request.field {
        match field.r#type() {
            Type::String => fields.push((None, number(field))),
            Type::Message => {
                let Some(nested) = messages.get(field.type_name()) else { continue };
                for inner in nested.field.iter().filter(|f| f.r#type() == Type::String) {
                    fields.push((Some(number(field)), number(inner)));
                }
            }
            _ => {}
        }
    }
    fields
}

/// An encoded request with `text` in each of `fields`; a repeated field gets it as its one
/// element, a message field one message holding all of its strings.
fn request_with_text(fields: &[StringField], text: &str) -> Vec<u8> {
    let text = text.to_string();
    let mut body = Vec::new();
    let mut nested: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for &(outer, number) in fields {
        match outer {
            None => prost::encoding::string::encode(number, &text, &mut body),
            Some(outer) => prost::encoding::string::encode(number, &text, nested.entry(outer).or_default()),
        }
    }
    for (outer, message) in &nested {
        prost::encoding::bytes::encode(*outer, message, &mut body);
    }
    body
}

async fn oversized_strings_in_other_rpcs_are_refused(backend: TestBackend) {
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let methods = other_methods();
    assert!(methods.len() > 60, "{} methods", methods.len());
    let limit = itsm_runtime::Settings::default().server.max_message_bytes;
    let before = Stored::read(&suite, &channel, &admin).await;
    let mut bad = Vec::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for OtherMethod { service, method, strings } in &methods {
        // 200 KiB in each, names included (a 200 KiB name names nothing); less where the request
        // would pass the message size limit, which oversized_whole_messages_are_refused tests.
        let size = HUGE_TEXT.min((limit - 256 * 1024) / strings.len());
        let fields = strings.len();
        assert!(size > 64 * 1024, "{service}/{method}: {fields} string fields, too many for this test");
        let body = request_with_text(strings, &"x".repeat(size));
        let code = match call_raw(&channel, &admin, service, method, body).await {
            None => {
                bad.push(format!("{service}/{method}: no answer in 15 s"));
                continue;
            }
            Some(Ok(_)) => {
                bad.push(format!("{service}/{method}: accepted {size}-byte strings"));
                Code::Ok
            }
            Some(Err(status)) => {
                let code = status.code();
                if !matches!(code, Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition) {
                    bad.push(format!("{service}/{method}: {code:?} {}", status.message()));
                }
                code
            }
        };
        *codes.entry(format!("{code:?}")).or_default() += 1;
    }
    let count = methods.len();
    eprintln!("{count} RPCs other than creates, lists and gets, answers to 200 KiB strings: {codes:?}");
    let after = Stored::read(&suite, &channel, &admin).await;
    assert!(bad.is_empty(), "{} RPCs answered 200 KiB strings badly:\n{}", bad.len(), bad.join("\n"));
    let written = before.changes(&after);
    assert!(written.is_empty(), "refused calls wrote:\n{}", written.join("\n"));
}

/// Waits for `call` to be refused with `code` within [`ANSWER_WITHIN`], and returns the status.
async fn assert_refused<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    code: Code,
) -> tonic::Status {
    match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Err(_) => panic!("{what}: no answer in 15 s"),
        Ok(Ok(_)) => panic!("{what}: accepted"),
        Ok(Err(status)) => {
            assert_eq!(status.code(), code, "{what}: {}", status.message());
            status
        }
    }
}

/// A small call on the channel an oversized call went through: it is still served.
async fn assert_still_served(cmdb: &mut CmdbServiceClient<Channel>, token: &str, after: &str) {
    let call = cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), token));
    match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Err(_) => panic!("after {after}: a small call got no answer in 15 s"),
        Ok(Err(status)) => {
            panic!("after {after}: a small call failed: {:?} {}", status.code(), status.message())
        }
        Ok(Ok(_)) => {}
    }
}

async fn oversized_whole_messages_are_refused(backend: TestBackend) {
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    // The gateway and every service take `server.max_message_bytes` (default 4 MiB) from settings.
    assert!(itsm_runtime::Settings::default().server.max_message_bytes < HUGE_MESSAGE);
    let before = Stored::read(&suite, &channel, &admin).await;
    // A fresh suite: a CI the refused calls stored would show.
    assert_eq!(before.records_of("itsm.cmdb.v1.CmdbService/ListConfigurationItems"), 0);
    let huge = "x".repeat(HUGE_MESSAGE);
    let big_item = ConfigurationItem {
        display_name: "big".into(),
        ci_class: "application".into(),
        description: huge.clone(),
        ..Default::default()
    };
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let mut capacity = CapacityServiceClient::new(channel.clone());

    // Unary calls: the gateway reads the request whole (a write for its audit log, a read to be
    // able to retry it, as `gateway.read_retries` is 2 by default) and stops at the limit.
    let create = cmdb.create_configuration_item(authed(
        CreateConfigurationItemRequest {
            configuration_item: Some(big_item.clone()),
            request_id: uuid::Uuid::new_v4().to_string(),
        },
        &admin,
    ));
    assert_refused("a 5 MiB CreateConfigurationItem", create, Code::ResourceExhausted).await;
    assert_still_served(&mut cmdb, &admin, "a 5 MiB create").await;
    let list = incidents
        .list_incidents(authed(ListIncidentsRequest { filter: huge.clone(), ..Default::default() }, &admin));
    assert_refused("a 5 MiB ListIncidents", list, Code::ResourceExhausted).await;
    assert_still_served(&mut cmdb, &admin, "a 5 MiB list").await;

    // Client streams pass through the gateway as they come; the service's tonic refuses the
    // message from its length prefix (codec/decode.rs: OUT_OF_RANGE "decoded message length too
    // large"), and the handler passes the stream's error on.
    let row = ImportConfigurationItemsRequest {
        message: Some(import_configuration_items_request::Message::Row(ImportRow {
            row_id: "big".into(),
            kind: Some(import_row::Kind::ConfigurationItem(big_item)),
        })),
    };
    let import = cmdb.import_configuration_items(authed(tokio_stream::iter(vec![row]), &admin));
    let status = assert_refused("a 5 MiB ImportConfigurationItems message", import, Code::OutOfRange).await;
    assert!(status.message().contains("message length too large"), "{}", status.message());
    assert_still_served(&mut cmdb, &admin, "a 5 MiB import message").await;
    let samples = RecordCapacitySamplesRequest { capacity_resource: huge, samples: Vec::new() };
    let record = capacity.record_capacity_samples(authed(tokio_stream::iter(vec![samples]), &admin));
    let status = assert_refused("a 5 MiB RecordCapacitySamples message", record, Code::OutOfRange).await;
    assert!(status.message().contains("message length too large"), "{}", status.message());
    assert_still_served(&mut cmdb, &admin, "a 5 MiB samples message").await;

    let after = Stored::read(&suite, &channel, &admin).await;
    let written = before.changes(&after);
    assert!(written.is_empty(), "refused calls wrote:\n{}", written.join("\n"));
}

/// Every mandatory FOCUS 1.0 column (the same in 1.1 and 1.2) and a resource id.
const FOCUS_HEADER: &str = "BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,\
BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,\
ContractedCost,EffectiveCost,InvoiceIssuerName,ListCost,PricingQuantity,PricingUnit,ProviderName,\
PublisherName,ServiceCategory,ServiceName,ResourceId";
/// A valid row under [`FOCUS_HEADER`].
const FOCUS_ROW: &str = "10.00,acct-1,Main,USD,2024-10-01 00:00:00,\
2024-09-01 00:00:00,Usage,NULL,VM hours,2024-09-02 00:00:00,2024-09-01 00:00:00,\
10.00,9.50,ExampleCloud,12.00,24,Hours,ExampleCloud,\
ExampleCloud,Compute,Virtual Machines,vm-1";

async fn invalid_utf8_where_bytes_are_accepted(backend: TestBackend) {
    let suite = start_unthrottled(backend).await;
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut finance = FinanceServiceClient::new(channel.clone());
    let before = Stored::read(&suite, &channel, &admin).await;
    // What an import would create.
    assert_eq!(before.records_of("itsm.delivery.v1.FinanceService/ListCostItems"), 0);
    let import = |csv: Vec<u8>| ImportBillingDataRequest {
        csv,
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };

    // ImportBillingDataRequest.csv is `bytes`: a file that is not UTF-8 text from its header on is
    // refused whole, and the violation names the field.
    let not_text: [(&str, Vec<u8>); 3] = [
        ("a UTF-16 byte order mark and a broken sequence", vec![0xff, 0xfe, b'a', 0xc3, 0x28]),
        ("a lone continuation byte", b"Billed\x80Cost,BillingCurrency\n".to_vec()),
        ("a truncated 3-byte sequence", b"BilledCost,Billing\xe2\x82\n".to_vec()),
    ];
    for (what, csv) in not_text {
        let call = finance.import_billing_data(authed(import(csv), &admin));
        let status = assert_refused(what, call, Code::InvalidArgument).await;
        assert_eq!(violation_fields(&status), ["csv"], "{what}: {}", status.message());
    }

    // A valid header and a row with one cell that is not UTF-8: the import reads row by row
    // (one bad line does not block a month of billing data), so the row is rejected in the
    // report with its line and column, and not stored.
    assert_eq!(FOCUS_HEADER.split(',').count(), FOCUS_ROW.split(',').count());
    let column = FOCUS_HEADER.split(',').position(|c| c == "ServiceName").unwrap();
    let mut cells: Vec<Vec<u8>> = FOCUS_ROW.split(',').map(|cell| cell.as_bytes().to_vec()).collect();
    cells[column] = b"Virtual \xffMachines".to_vec();
    let mut csv = format!("{FOCUS_HEADER}\n").into_bytes();
    csv.extend(cells.join(&b','));
    csv.push(b'\n');
    let call = finance.import_billing_data(authed(import(csv), &admin));
    let report = tokio::time::timeout(ANSWER_WITHIN, call)
        .await
        .expect("a file with a row that is not UTF-8: no answer in 15 s")
        .unwrap_or_else(|s| panic!("a file with a row that is not UTF-8: {:?} {}", s.code(), s.message()))
        .into_inner();
    assert_eq!((report.data_rows, report.matched_rows), (1, 0), "{report:?}");
    assert!(report.unmatched.is_empty(), "stored unassigned: {:?}", report.unmatched);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    let rejected = &report.rejected[0];
    assert_eq!(rejected.line, 2);
    assert!(
        rejected.reason.contains("ServiceName") && rejected.reason.contains("UTF-8"),
        "{}",
        rejected.reason
    );

    // A `string` field must hold UTF-8 (protobuf spec): the library refuses the message before a
    // handler runs, as it refuses bytes that are no message. Hand-encoded, as prost cannot
    // encode such a string: an otherwise valid create whose resource's description (field 4,
    // length-delimited: tag 0x22) is not UTF-8, and one whose request_id (field 2: 0x12) is not.
    let not_utf8 = [0xff, 0xfe, b'a', 0xc3, 0x28];
    let valid = ConfigurationItem {
        display_name: "not-utf8".into(),
        ci_class: "application".into(),
        ..Default::default()
    };
    let mut item = valid.encode_to_vec();
    item.extend([0x22_u8, 5]);
    item.extend(not_utf8);
    let mut in_resource = vec![0x0a_u8]; // configuration_item: field 1, length-delimited
    prost::encoding::encode_varint(item.len() as u64, &mut in_resource);
    in_resource.extend(&item);
    let mut in_request =
        CreateConfigurationItemRequest { configuration_item: Some(valid), request_id: String::new() }
            .encode_to_vec();
    in_request.extend([0x12_u8, 5]);
    in_request.extend(not_utf8);
    for (what, body) in [("configuration_item.description", in_resource), ("request_id", in_request)] {
        match call_raw(&channel, &admin, "itsm.cmdb.v1.CmdbService", "CreateConfigurationItem", body).await {
            None => panic!("{what} not UTF-8: no answer in 15 s"),
            Some(Ok(_)) => panic!("{what} not UTF-8 was accepted"),
            Some(Err(status)) => assert!(
                is_decode_error(&status) && status.message().contains("UTF-8"),
                "{what} not UTF-8: {:?} {}",
                status.code(),
                status.message()
            ),
        }
    }

    let after = Stored::read(&suite, &channel, &admin).await;
    let written = before.changes(&after);
    assert!(written.is_empty(), "refused input wrote:\n{}", written.join("\n"));
}

itsm_runtime::db_tests!(
    empty_messages_get_client_errors,
    hostile_listing_requests_get_client_errors,
    oversized_strings_are_refused,
    oversized_strings_in_other_rpcs_are_refused,
    oversized_whole_messages_are_refused,
    invalid_utf8_where_bytes_are_accepted
);
