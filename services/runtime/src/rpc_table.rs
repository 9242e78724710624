//! What the suite knows about each RPC from the protobuf descriptors: whether its request or
//! response streams (the gateway buffers only unary messages, for retries and the audit log),
//! and how to find the resource a call acted on (the `itsm.resource` of its spans).

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};

#[derive(Clone, Debug)]
pub struct MethodInfo {
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Methods by path (`/itsm.cmdb.v1.CmdbService/GetConfigurationItem`).
#[derive(Clone, Debug, Default)]
pub struct RpcTable {
    by_path: HashMap<String, MethodInfo>,
}

impl RpcTable {
    /// The table of every service in the suite's descriptor set.
    pub fn of_suite() -> Result<Self, prost_reflect::DescriptorError> {
        let pool = DescriptorPool::decode(itsm_proto::FILE_DESCRIPTOR_SET)?;
        let mut by_path = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                by_path.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    MethodInfo {
                        input: method.input(),
                        output: method.output(),
                        client_streaming: method.is_client_streaming(),
                        server_streaming: method.is_server_streaming(),
                    },
                );
            }
        }
        Ok(Self { by_path })
    }

    /// The suite's table, decoded once. None only if the compiled-in descriptor set is broken,
    /// which a unit test rules out.
    pub fn suite() -> Option<&'static RpcTable> {
        static TABLE: std::sync::OnceLock<Option<RpcTable>> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| RpcTable::of_suite().ok()).as_ref()
    }

    pub fn get(&self, path: &str) -> Option<&MethodInfo> {
        self.by_path.get(path)
    }
}

/// The message in one uncompressed gRPC frame (flag byte, 4-byte length, message).
pub fn decode_frame(descriptor: &MessageDescriptor, frame: &[u8]) -> Option<DynamicMessage> {
    let (&compressed, rest) = frame.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let message = rest.get(4..4 + len)?;
    DynamicMessage::decode(descriptor.clone(), message).ok()
}

/// The resource a call acted on: the response's `name` when it is a resource (creates and custom
/// methods return the record), else the request's `name`, the `name` of the resource an update
/// carries, or the `parent` a create was made under.
pub fn resource_name(request: Option<&DynamicMessage>, response: Option<&DynamicMessage>) -> String {
    let text = |message: &DynamicMessage, field: &str| {
        message
            .get_field_by_name(field)
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    };
    let nested_name = |message: &DynamicMessage| {
        message.descriptor().fields().find_map(|field| {
            if field.is_list() || field.is_map() || !message.has_field(&field) {
                return None;
            }
            match message.get_field(&field).as_ref() {
                Value::Message(inner) => text(inner, "name"),
                _ => None,
            }
        })
    };
    response
        .and_then(|r| text(r, "name"))
        .or_else(|| request.and_then(|r| text(r, "name")))
        .or_else(|| request.and_then(nested_name))
        .or_else(|| request.and_then(|r| text(r, "parent")))
        .unwrap_or_default()
}

/// Records the resource a call names on its span: `itsm.resource` and, when the name ends in a
/// human number, `itsm.number`.
pub fn record_resource(span: &tracing::Span, resource: &str) {
    if resource.is_empty() {
        return;
    }
    span.record("itsm.resource", resource);
    if let Some(number) = crate::numbers::number_in(resource) {
        span.record("itsm.number", number);
    }
}

/// The largest first message [`ResourceProbe`] decodes; a bigger one (an import batch) is
/// passed on without naming a resource.
const PROBE_LIMIT: usize = 64 * 1024;

/// A request body that passes its data on untouched and, once the first gRPC message is in,
/// records the resource it names on the call's span. Used only while spans are exported, so
/// an untraced call pays nothing.
pub struct ResourceProbe<B> {
    inner: B,
    input: MessageDescriptor,
    span: tracing::Span,
    /// The first frame so far; None once it has been looked at (or was not worth it).
    first: Option<bytes::BytesMut>,
}

impl<B> ResourceProbe<B> {
    pub fn new(inner: B, input: MessageDescriptor, span: tracing::Span) -> Self {
        Self { inner, input, span, first: Some(bytes::BytesMut::new()) }
    }

    fn look(&mut self, data: &[u8]) {
        let Some(first) = self.first.as_mut() else { return };
        first.extend_from_slice(data);
        if first.len() < 5 {
            return;
        }
        let len = u32::from_be_bytes([first[1], first[2], first[3], first[4]]) as usize;
        if first[0] != 0 || len > PROBE_LIMIT {
            self.first = None;
            return;
        }
        if first.len() >= 5 + len {
            if let Some(message) = decode_frame(&self.input, first) {
                record_resource(&self.span, &resource_name(Some(&message), None));
            }
            self.first = None;
        }
    }
}

impl<B> http_body::Body for ResourceProbe<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.look(data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn frame(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn every_public_service_is_in_the_table() {
        let table = RpcTable::of_suite().unwrap();
        for (service, _) in itsm_proto::PUBLIC_SERVICES {
            assert!(
                table.by_path.keys().any(|p| p.starts_with(&format!("/{service}/"))),
                "{service} has no methods in the descriptor set"
            );
        }
        let get = table.get("/itsm.incident.v1.IncidentService/GetIncident").unwrap();
        assert!(!get.client_streaming && !get.server_streaming);
    }

    #[test]
    fn resource_comes_from_response_then_request_name_nested_name_parent() {
        let table = RpcTable::of_suite().unwrap();
        let update = table.get("/itsm.incident.v1.IncidentService/UpdateIncident").unwrap();
        let request = itsm_proto::incident::UpdateIncidentRequest {
            incident: Some(itsm_proto::incident::Incident {
                name: "incidents/INC0000042".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let decoded = decode_frame(&update.input, &frame(&request)).unwrap();
        assert_eq!(resource_name(Some(&decoded), None), "incidents/INC0000042");

        let resolve = table.get("/itsm.incident.v1.IncidentService/ResolveIncident").unwrap();
        let request = itsm_proto::incident::ResolveIncidentRequest {
            name: "incidents/INC0000007".into(),
            ..Default::default()
        };
        let decoded = decode_frame(&resolve.input, &frame(&request)).unwrap();
        assert_eq!(resource_name(Some(&decoded), None), "incidents/INC0000007");

        let create = table.get("/itsm.incident.v1.IncidentService/CreateIncident").unwrap();
        let response =
            itsm_proto::incident::Incident { name: "incidents/INC0000099".into(), ..Default::default() };
        let decoded_response = decode_frame(&create.output, &frame(&response)).unwrap();
        let request =
            decode_frame(&create.input, &frame(&itsm_proto::incident::CreateIncidentRequest::default()));
        assert_eq!(resource_name(request.as_ref(), Some(&decoded_response)), "incidents/INC0000099");
        assert_eq!(resource_name(request.as_ref(), None), "", "a failed create names nothing");
    }

    #[test]
    fn compressed_or_truncated_frames_are_not_decoded() {
        let table = RpcTable::of_suite().unwrap();
        let get = table.get("/itsm.incident.v1.IncidentService/GetIncident").unwrap();
        let mut bytes = frame(&itsm_proto::incident::GetIncidentRequest { name: "incidents/INC1".into() });
        assert!(decode_frame(&get.input, &bytes).is_some());
        bytes[0] = 1;
        assert!(decode_frame(&get.input, &bytes).is_none());
        assert!(decode_frame(&get.input, &bytes[..3]).is_none());
    }
}
