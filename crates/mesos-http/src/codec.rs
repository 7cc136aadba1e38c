//! Messages from and to request and response bodies, in protobuf or in Mesos' JSON mapping.
//!
//! JSON goes through `prost-reflect`: the typed message is transcoded to a `DynamicMessage`
//! of the same descriptor (found by `prost::Name::full_name` in agora-proto's descriptor
//! set), which serde writes or reads. The options below make that Mesos' mapping (stout's),
//! not proto3's canonical JSON.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

use crate::Media;

/// Why a body could not be decoded. All answer HTTP 400, as in Mesos; the last two cannot
/// happen with agora-proto's own types (tests load every API message's descriptor).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// Not JSON, or JSON whose values do not fit the message's fields.
    #[error("failed to parse JSON: {0}")]
    Json(String),
    /// Valid JSON, but not an object.
    #[error("failed to parse JSON: expected a JSON object")]
    NotAnObject,
    /// Not a valid protobuf encoding of the message.
    #[error("failed to decode protobuf: {0}")]
    Protobuf(prost::DecodeError),
    /// The JSON parsed but the result does not convert into the message type (e.g. nested
    /// deeper than protobuf decoding allows).
    #[error("failed to convert JSON into {message_type}: {source}")]
    Convert {
        /// The message's protobuf full name.
        message_type: String,
        /// What prost refused.
        source: prost::DecodeError,
    },
    /// The message type is not in agora-proto's descriptor set.
    #[error("no descriptor for message type {0}")]
    UnknownMessage(String),
    /// agora-proto's descriptor set does not load.
    #[error("invalid descriptor set: {0}")]
    Descriptors(String),
}

impl CodecError {
    /// The HTTP status of a body that fails to decode: always 400, as in Mesos.
    pub fn status(&self) -> u16 {
        400
    }
}

/// agora-proto's descriptors, loaded once. An error is kept rather than a panic: the bytes
/// come from the build, so tests catch it, and no request should be able to crash a server.
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(agora_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
});

/// Input: unknown keys are ignored, and so are unknown enum names (the field stays unset,
/// or the element is left out of a repeated field), as Mesos does for optional fields.
const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);

/// Output: proto field names, enum names, 64-bit integers as JSON numbers, and only the
/// fields that are set: a field with explicit presence (message, proto3 `optional`) when
/// present even at its zero value, any other when not at its default, a repeated field
/// when non-empty.
const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .use_enum_numbers(false)
    .stringify_64_bit_integers(false)
    .skip_default_fields(true);

fn descriptor<M: Name>() -> Result<MessageDescriptor, CodecError> {
    let pool = POOL
        .as_ref()
        .map_err(|e| CodecError::Descriptors(e.clone()))?;
    let name = M::full_name();
    pool.get_message_by_name(&name)
        .ok_or(CodecError::UnknownMessage(name))
}

/// Decodes a request body of type `media` into `M` (a message of agora-proto).
///
/// JSON input follows Mesos: proto field names (lowerCamel names are accepted too), unknown
/// keys ignored, `null` meaning unset, enums by name (numbers also accepted), numbers also
/// as strings, `"Infinity"`, `"-Infinity"` and `"NaN"` for doubles, bytes in base64
/// (standard or URL-safe, padded or not). The body must be one JSON object.
pub fn decode<M: Message + Default + Name>(media: Media, body: &[u8]) -> Result<M, CodecError> {
    match media {
        Media::Protobuf => M::decode(body).map_err(CodecError::Protobuf),
        Media::Json => decode_json(body),
    }
}

fn decode_json<M: Message + Default + Name>(body: &[u8]) -> Result<M, CodecError> {
    // Refused up front for a clearer message than serde's "expected a map".
    if body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        != Some(&b'{')
    {
        // Still report a syntax error as one.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(CodecError::Json(e.to_string()));
        }
        return Err(CodecError::NotAnObject);
    }
    let descriptor = descriptor::<M>()?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // Tracks where an error happened, so the message names the field
    // (`subscribe.framework_info.capabilities[0].type: ...`).
    let mut track = serde_path_to_error::Track::new();
    let dynamic = DynamicMessage::deserialize_with_options(
        descriptor,
        serde_path_to_error::Deserializer::new(&mut deserializer, &mut track),
        &DESERIALIZE,
    )
    .map_err(|error| {
        let path = track.path();
        if path.iter().next().is_some() {
            CodecError::Json(format!("{path}: {error}"))
        } else {
            CodecError::Json(error.to_string())
        }
    })?;
    deserializer
        .end()
        .map_err(|e| CodecError::Json(e.to_string()))?;
    dynamic
        .transcode_to::<M>()
        .map_err(|source| CodecError::Convert {
            message_type: M::full_name(),
            source,
        })
}

/// Encodes `message` as `media`.
///
/// JSON is one line with no newline anywhere (clients split records on `'\n'`; newlines in
/// strings are escaped), in Mesos' mapping: proto field names, enums by name, int64/uint64
/// as numbers, bytes in standard base64, doubles as numbers (`15.0`; non-finite ones as
/// `"Infinity"`, `"-Infinity"`, `"NaN"`), and only the fields that are set: a field with
/// explicit presence (message, proto3 `optional`) whenever present, even at zero; any other
/// when not at its default; a repeated field when non-empty.
///
/// For a type that is not in agora-proto's descriptor set (a programming error, not
/// something a request can cause) it logs an error and returns `{}`.
pub fn encode<M: Message + Name>(media: Media, message: &M) -> Vec<u8> {
    match media {
        Media::Protobuf => message.encode_to_vec(),
        Media::Json => encode_json(message).unwrap_or_else(|error| {
            tracing::error!(%error, message_type = %M::full_name(), "cannot encode message as json");
            b"{}".to_vec()
        }),
    }
}

fn encode_json<M: Message + Name>(message: &M) -> Result<Vec<u8>, CodecError> {
    let mut dynamic = DynamicMessage::new(descriptor::<M>()?);
    dynamic
        .transcode_from(message)
        .map_err(|source| CodecError::Convert {
            message_type: M::full_name(),
            source,
        })?;
    let mut out = Vec::with_capacity(message.encoded_len() * 2 + 16);
    let mut serializer = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(&mut serializer, &SERIALIZE)
        .map_err(|e| CodecError::Json(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
