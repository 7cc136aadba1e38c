//! A scheduler `Call` in protobuf, as `POST /api/v1/scheduler` (and the gRPC API) receives it.
//!
//! Invariants: a decoded call encodes to protobuf that decodes to the same call; its JSON
//! form (what the master logs and answers with) decodes back to a message with the same JSON.
#![no_main]

use agora_mesos_http::Media;

use agora_proto::v1::scheduler::Call;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(call) = agora_mesos_http::decode::<Call>(Media::Protobuf, data) else {
        return;
    };
    let bytes = agora_mesos_http::encode(Media::Protobuf, &call);
    let again: Call =
        agora_mesos_http::decode(Media::Protobuf, &bytes).expect("re-encoded call decodes");
    assert_eq!(
        bytes,
        again.encode_to_vec(),
        "protobuf round trip changed the call"
    );

    let json = agora_mesos_http::encode(Media::Json, &call);
    let from_json: Call = agora_mesos_http::decode(Media::Json, &json).unwrap_or_else(|e| {
        panic!(
            "JSON of a protobuf call does not decode: {e}: {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        json,
        agora_mesos_http::encode(Media::Json, &from_json),
        "protobuf -> JSON -> protobuf changed the call"
    );
});
