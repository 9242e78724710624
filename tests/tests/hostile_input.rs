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

itsm_runtime::db_tests!(empty_messages_get_client_errors);
