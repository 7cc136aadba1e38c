//! `Resources`: Mesos' text form (`--resources`, operator requests) and the protobuf/JSON
//! form (`Resource` messages in calls, Mesos' JSON mapping).
//!
//! The first byte picks the form. Invariants: text that parses prints to text that parses to
//! the same resources; resources that convert from protobuf convert back to protobuf and
//! again to the same resources; Mesos' JSON views of any parsed resources serialize.
#![no_main]

use agora_core::resources::{Resources, mesos_json};
use agora_mesos_http::Media;

use agora_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;

fn check(resources: &Resources) {
    let printed = resources.to_string();
    let again = Resources::parse(&printed)
        .unwrap_or_else(|e| panic!("printed resources {printed:?} do not parse: {e}"));
    assert_eq!(resources, &again, "text round trip of {printed:?}");

    let proto = resources.to_proto(None);
    let back = Resources::from_proto(&proto)
        .unwrap_or_else(|e| panic!("to_proto of {printed:?} does not convert back: {e}"));
    assert_eq!(resources, &back, "protobuf round trip of {printed:?}");

    serde_json::to_vec(&mesos_json::full(resources)).expect("full resources serialize");
    let summary = resources.summary();
    serde_json::to_vec(&mesos_json::Flat(&summary)).expect("flat resources serialize");
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    if form % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest)
            && let Ok(resources) = Resources::parse(text)
        {
            check(&resources);
        }
    } else if let Ok(info) = agora_mesos_http::decode::<pb::AgentInfo>(Media::Json, rest)
        && let Ok(resources) = Resources::from_proto(&info.resources)
    {
        check(&resources);
    }
});
