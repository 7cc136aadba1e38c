//! A scheduler `Call` in Mesos' JSON mapping, as `POST /api/v1/scheduler` receives it.
//!
//! Invariant: a body that decodes re-encodes to JSON that decodes to a message with the same
//! JSON and the same protobuf encoding (the mapping is stable after one trip).
#![no_main]

use agora_mesos_http::Media;

use agora_proto::v1::scheduler::Call;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(call) = agora_mesos_http::decode::<Call>(Media::Json, data) else {
        return;
    };
    let json = agora_mesos_http::encode(Media::Json, &call);
    let again: Call = agora_mesos_http::decode(Media::Json, &json).unwrap_or_else(|e| {
        panic!(
            "re-encoded call does not decode: {e}: {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        json,
        agora_mesos_http::encode(Media::Json, &again),
        "JSON not stable after a round trip"
    );
    assert_eq!(
        call.encode_to_vec(),
        again.encode_to_vec(),
        "JSON round trip changed the message: {}",
        String::from_utf8_lossy(&json)
    );
    assert!(!json.contains(&b'\n'), "encoded JSON holds a newline");
});
