//! The canonical protobuf JSON mapping of contract messages, for the generic
//! adapter (JSON in) and for people reading cases and events (JSON out).

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::v1::Envelope;

/// A JSON document that is not a valid message of the contract.
#[derive(Debug)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

/// The contract's descriptors (every message of `handoff.v1`), for reflection.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into this crate is valid")
    })
}

/// Reads an Envelope from its canonical protobuf JSON form (camelCase or snake_case field names).
pub fn envelope_from_json(value: &serde_json::Value) -> Result<Envelope, JsonError> {
    let desc = pool()
        .get_message_by_name("handoff.v1.Envelope")
        .ok_or_else(|| JsonError("contract has no handoff.v1.Envelope".into()))?;
    let dynamic = DynamicMessage::deserialize(desc, value)
        .map_err(|e| JsonError(format!("not an event envelope: {e}")))?;
    Envelope::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| JsonError(format!("envelope does not re-encode: {e}")))
}

/// Writes any contract message as canonical protobuf JSON (snake_case names, enums by name).
pub fn to_json<M: Message>(message: &M, full_name: &str) -> serde_json::Value {
    let Some(desc) = pool().get_message_by_name(full_name) else {
        return serde_json::Value::Null;
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, message.encode_to_vec().as_slice()) else {
        return serde_json::Value::Null;
    };
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(serde_json::Value::Null)
}
