//! Hostile input through the gateway (issue 14): every public unary and client-streaming RPC,
//! called as an admin with an empty message, answers with a clear client-side status — never
//! INTERNAL, UNKNOWN or UNAVAILABLE, and never hangs; bytes that are no protobuf message get the
//! gRPC library's own answer (INTERNAL, a decode error) without a handler running. The RPCs come
//! from the descriptor set, so none is forgotten.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use bytes::{Buf, BufMut};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use itsm_e2e::{Suite, authed};
use itsm_runtime::testing::TestBackend;

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

/// (service, method) of every public RPC a single request can be sent to.
fn public_methods() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(itsm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if !itsm_proto::PUBLIC_SERVICES.iter().any(|(s, _)| *s == full) {
                continue;
            }
            for method in &service.method {
                // Server streams (event feeds) answer with a stream, not one message.
                if !method.server_streaming() {
                    methods.push((full.clone(), method.name().to_string()));
                }
            }
        }
    }
    methods
}

async fn empty_messages_get_client_errors(backend: TestBackend) {
    // Hundreds of calls in a few seconds: the per-principal rate limit is not what is tested.
    let suite = Suite::start_with(backend, |gateway| {
        gateway.gateway.rate_limit_per_second = 100_000;
        gateway.gateway.rate_limit_burst = 100_000;
    })
    .await
    .unwrap();
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let methods = public_methods();
    assert!(methods.len() > 150, "{} methods", methods.len());
    let mut bad = Vec::new();
    let mut codes: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (service, method) in &methods {
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
        let call = client.unary(authed(Vec::new(), &admin), path, RawCodec);
        let code = match tokio::time::timeout(Duration::from_secs(15), call).await {
            Err(_) => {
                bad.push(format!("{service}/{method}: no answer in 15 s"));
                continue;
            }
            Ok(Ok(_)) => Code::Ok,
            Ok(Err(status)) => {
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
        let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
        client.ready().await.unwrap();
        let call = client.unary(authed(vec![0xff, 0xff, 0xff], &admin), path, RawCodec);
        match tokio::time::timeout(Duration::from_secs(15), call).await {
            Err(_) => bad.push(format!("{service}/{method}: garbage got no answer in 15 s")),
            Ok(Ok(_)) => bad.push(format!("{service}/{method}: garbage was accepted")),
            Ok(Err(status)) => {
                let parse_error = status.code() == Code::Internal && status.message().contains("decod");
                if !parse_error {
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

/// A public List* RPC with the field numbers of its request's paging and filter fields.
struct ListMethod {
    service: String,
    method: String,
    page_size: Option<u32>,
    page_token: Option<u32>,
    filter: Option<u32>,
}

/// Builds a hostile request body for a list RPC (None: the request has no such field).
type HostileBody<'a> = Box<dyn Fn(&ListMethod) -> Option<Vec<u8>> + 'a>;

fn list_methods() -> Vec<ListMethod> {
    let set = prost_types::FileDescriptorSet::decode(itsm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let messages: std::collections::HashMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter().map(move |m| (format!(".{}.{}", f.package(), m.name()), m)))
        .collect();
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if !itsm_proto::PUBLIC_SERVICES.iter().any(|(s, _)| *s == full) {
                continue;
            }
            for method in
                service.method.iter().filter(|m| m.name().starts_with("List") && !m.server_streaming())
            {
                let Some(input) = messages.get(method.input_type()) else { continue };
                let number = |name: &str| {
                    input.field.iter().find(|f| f.name() == name).map(|f| u32::try_from(f.number()).unwrap())
                };
                out.push(ListMethod {
                    service: full.clone(),
                    method: method.name().to_string(),
                    page_size: number("page_size"),
                    page_token: number("page_token"),
                    filter: number("filter"),
                });
            }
        }
    }
    out
}

async fn hostile_listing_requests_get_client_errors(backend: TestBackend) {
    let suite = Suite::start_with(backend, |gateway| {
        gateway.gateway.rate_limit_per_second = 100_000;
        gateway.gateway.rate_limit_burst = 100_000;
    })
    .await
    .unwrap();
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
            let mut client = tonic::client::Grpc::new(channel.clone());
            client.ready().await.unwrap();
            let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
            let call = client.unary(authed(body, &admin), path, RawCodec);
            match tokio::time::timeout(Duration::from_secs(15), call).await {
                Err(_) => bad.push(format!("{service}/{method} {what}: no answer in 15 s")),
                Ok(Ok(_)) => bad.push(format!("{service}/{method} {what}: accepted")),
                Ok(Err(status)) if status.code() == Code::InvalidArgument => answered += 1,
                Ok(Err(status)) => {
                    bad.push(format!("{service}/{method} {what}: {:?} {}", status.code(), status.message()));
                }
            }
        }
    }
    eprintln!("{} list RPCs, {answered} hostile requests refused as INVALID_ARGUMENT", lists.len());
    assert!(bad.is_empty(), "{} hostile listing requests answered badly:\n{}", bad.len(), bad.join("\n"));
    assert!(answered > 100, "{answered}");
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
    let set = prost_types::FileDescriptorSet::decode(itsm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let messages: std::collections::HashMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter().map(move |m| (format!(".{}.{}", f.package(), m.name()), m)))
        .collect();
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if !itsm_proto::PUBLIC_SERVICES.iter().any(|(s, _)| *s == full) {
                continue;
            }
            for method in
                service.method.iter().filter(|m| m.name().starts_with("Create") && !m.client_streaming())
            {
                let Some(input) = messages.get(method.input_type()) else { continue };
                let Some(resource) = input
                    .field
                    .iter()
                    .find(|f| f.r#type() == prost_types::field_descriptor_proto::Type::Message)
                else {
                    continue;
                };
                let Some(body) = messages.get(resource.type_name()) else { continue };
                let strings: Vec<u32> = body
                    .field
                    .iter()
                    .filter(|f| {
                        f.r#type() == prost_types::field_descriptor_proto::Type::String
                            && f.label() != prost_types::field_descriptor_proto::Label::Repeated
                    })
                    .map(|f| u32::try_from(f.number()).unwrap())
                    .collect();
                if !strings.is_empty() {
                    out.push(CreateMethod {
                        service: full.clone(),
                        method: method.name().to_string(),
                        resource_field: u32::try_from(resource.number()).unwrap(),
                        strings,
                    });
                }
            }
        }
    }
    out
}

async fn oversized_strings_are_refused(backend: TestBackend) {
    let suite = Suite::start_with(backend, |gateway| {
        gateway.gateway.rate_limit_per_second = 100_000;
        gateway.gateway.rate_limit_burst = 100_000;
    })
    .await
    .unwrap();
    let admin = suite.token("root", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let creates = create_methods();
    assert!(creates.len() > 20, "{} create methods", creates.len());
    // 200 KiB in every string field of the resource: above every text limit we set.
    let huge = "x".repeat(200 * 1024);
    let mut bad = Vec::new();
    for create in &creates {
        let (service, method) = (&create.service, &create.method);
        let mut resource = Vec::new();
        for number in &create.strings {
            prost::encoding::string::encode(*number, &huge, &mut resource);
        }
        let mut body = Vec::new();
        prost::encoding::bytes::encode(create.resource_field, &resource, &mut body);
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
        let call = client.unary(authed(body, &admin), path, RawCodec);
        match tokio::time::timeout(Duration::from_secs(15), call).await {
            Err(_) => bad.push(format!("{service}/{method}: no answer in 15 s")),
            Ok(Ok(_)) => bad.push(format!("{service}/{method}: 200 KiB strings were stored")),
            Ok(Err(status)) if status.code() == Code::InvalidArgument => {}
            Ok(Err(status)) => {
                bad.push(format!("{service}/{method}: {:?} {}", status.code(), status.message()));
            }
        }
    }
    eprintln!("{} create RPCs refused 200 KiB strings", creates.len());
    assert!(bad.is_empty(), "{} creates answered 200 KiB strings badly:\n{}", bad.len(), bad.join("\n"));
}

itsm_runtime::db_tests!(
    empty_messages_get_client_errors,
    hostile_listing_requests_get_client_errors,
    oversized_strings_are_refused
);
