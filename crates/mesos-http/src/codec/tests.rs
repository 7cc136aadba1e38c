use agora_proto::v1::scheduler::{Call, Event, call, event};
use agora_proto::v1::{
    AgentId, DurationInfo, Filters, FrameworkId, FrameworkInfo, Offer, OfferId, Resource, TaskId,
    TaskState, TaskStatus, Value, framework_info, resource, task_status, value,
};
use proptest::prelude::*;

use super::*;

fn json<M: Message + Name>(message: &M) -> String {
    String::from_utf8(encode(Media::Json, message)).unwrap()
}

fn from_json<M: Message + Default + Name>(text: &str) -> Result<M, CodecError> {
    decode(Media::Json, text.as_bytes())
}

#[test]
fn decodes_a_pymesos_subscribe() {
    let body = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"x","failover_timeout":100,"capabilities":[{"type":"MULTI_ROLE"}],"roles":["*"]}}}"#;
    let call: Call = from_json(body).unwrap();
    assert_eq!(call.r#type(), call::Type::Subscribe);
    assert_eq!(call.framework_id, None);
    let info = call.subscribe.unwrap().framework_info.unwrap();
    assert_eq!(info.user, "root");
    assert_eq!(info.name, "x");
    assert_eq!(info.failover_timeout, Some(100.0));
    assert_eq!(info.roles, vec!["*".to_string()]);
    assert_eq!(info.capabilities.len(), 1);
    assert_eq!(
        info.capabilities[0].r#type(),
        framework_info::capability::Type::MultiRole
    );
    assert_eq!(info.checkpoint, None);
    assert_eq!(info.role, None);
}

#[test]
fn unknown_keys_and_nulls_are_ignored() {
    let body = r#"{
        "type": "DECLINE",
        "framework_id": {"value": "f1", "extra": [1, {"a": null}]},
        "decline": {"offer_ids": [{"value": "o1"}], "filters": null},
        "kill": null,
        "accept": {"offer_ids": null, "operations": null},
        "no_such_field": {"deep": [true, "x", 1.5e300]},
        "subscribe": null
    }"#;
    let call: Call = from_json(body).unwrap();
    assert_eq!(call.r#type(), call::Type::Decline);
    assert_eq!(call.framework_id.unwrap().value, "f1");
    let decline = call.decline.unwrap();
    assert_eq!(decline.offer_ids, vec![OfferId { value: "o1".into() }]);
    assert_eq!(decline.filters, None);
    assert_eq!(call.kill, None);
    assert_eq!(call.subscribe, None);
    // An explicit object is present, even with only nulls in it.
    assert_eq!(call.accept, Some(call::Accept::default()));
}

#[test]
fn lower_camel_names_are_accepted_on_input_but_never_written() {
    let call: Call = from_json(r#"{"type":"TEARDOWN","frameworkId":{"value":"f1"}}"#).unwrap();
    assert_eq!(call.framework_id.as_ref().unwrap().value, "f1");
    assert_eq!(
        json(&call),
        r#"{"framework_id":{"value":"f1"},"type":"TEARDOWN"}"#
    );
}

#[test]
fn acknowledge_uuid_is_base64() {
    let uuid: Vec<u8> = (0xf0..=0xff).collect();
    let call = Call {
        framework_id: Some(FrameworkId { value: "f1".into() }),
        r#type: call::Type::Acknowledge.into(),
        acknowledge: Some(call::Acknowledge {
            agent_id: Some(AgentId { value: "a1".into() }),
            task_id: Some(TaskId { value: "t1".into() }),
            uuid: uuid.clone(),
        }),
        ..Default::default()
    };
    let text = json(&call);
    assert_eq!(
        text,
        r#"{"framework_id":{"value":"f1"},"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"a1"},"task_id":{"value":"t1"},"uuid":"8PHy8/T19vf4+fr7/P3+/w=="}}"#
    );
    assert_eq!(from_json::<Call>(&text).unwrap(), call);
    // Unpadded and URL-safe forms are accepted too.
    for encoded in [
        "8PHy8/T19vf4+fr7/P3+/w",
        "8PHy8_T19vf4-fr7_P3-_w==",
        "8PHy8_T19vf4-fr7_P3-_w",
    ] {
        let body = format!(r#"{{"type":"ACKNOWLEDGE","acknowledge":{{"uuid":"{encoded}"}}}}"#);
        let call: Call = from_json(&body).unwrap();
        assert_eq!(call.acknowledge.unwrap().uuid, uuid, "{encoded}");
    }
    let error = from_json::<Call>(r#"{"acknowledge":{"uuid":"not base64!"}}"#).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("failed to parse JSON: acknowledge.uuid: invalid base64"),
        "{error}"
    );
}

fn scalar(name: &str, amount: f64) -> Resource {
    Resource {
        name: name.into(),
        r#type: Some(value::Type::Scalar.into()),
        scalar: Some(value::Scalar { value: amount }),
        ..Default::default()
    }
}

#[test]
fn encodes_offers_in_mesos_shape() {
    let ports = Resource {
        name: "ports".into(),
        r#type: Some(value::Type::Ranges.into()),
        ranges: Some(value::Ranges {
            range: vec![
                value::Range {
                    begin: 31000,
                    end: 32000,
                },
                value::Range {
                    begin: 18446744073709551000,
                    end: 18446744073709551615,
                },
            ],
        }),
        reservations: vec![resource::ReservationInfo {
            r#type: Some(resource::reservation_info::Type::Dynamic.into()),
            role: Some("eng".into()),
            principal: None,
        }],
        ..Default::default()
    };
    let event = Event {
        r#type: event::Type::Offers.into(),
        offers: Some(event::Offers {
            offers: vec![Offer {
                id: Some(OfferId {
                    value: "m-O1".into(),
                }),
                framework_id: Some(FrameworkId { value: "f1".into() }),
                agent_id: Some(AgentId { value: "a1".into() }),
                hostname: "host\n1".into(),
                resources: vec![scalar("cpus", 15.0), scalar("mem", 0.0), ports],
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    let text = json(&event);
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(
        text,
        concat!(
            r#"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"m-O1"},"framework_id":{"value":"f1"},"#,
            r#""agent_id":{"value":"a1"},"hostname":"host\n1","resources":["#,
            // Value.Type has explicit presence, so SCALAR (its zero) is written.
            r#"{"name":"cpus","type":"SCALAR","scalar":{"value":15.0}},"#,
            r#"{"name":"mem","type":"SCALAR","scalar":{}},"#,
            r#"{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000},"#,
            r#"{"begin":18446744073709551000,"end":18446744073709551615}]},"#,
            r#""reservations":[{"role":"eng","type":"DYNAMIC"}]}]}]}}"#,
        )
    );
    assert_eq!(from_json::<Event>(&text).unwrap(), event);
}

#[test]
fn fields_with_presence_are_written_when_set_even_at_zero() {
    let status = TaskStatus {
        task_id: Some(TaskId { value: "t1".into() }),
        state: Some(TaskState::TaskStarting.into()),
        source: Some(task_status::Source::Master.into()),
        reason: Some(task_status::Reason::CommandExecutorFailed.into()),
        healthy: Some(false),
        timestamp: Some(0.0),
        message: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(
        json(&status),
        concat!(
            r#"{"task_id":{"value":"t1"},"state":"TASK_STARTING","message":"","timestamp":0.0,"#,
            r#""healthy":false,"#,
            r#""source":"SOURCE_MASTER","reason":"REASON_COMMAND_EXECUTOR_FAILED"}"#
        )
    );
    let running = TaskStatus {
        state: Some(TaskState::TaskRunning.into()),
        ..Default::default()
    };
    assert_eq!(json(&running), r#"{"state":"TASK_RUNNING"}"#);
    assert_eq!(json(&TaskStatus::default()), "{}");
}

#[test]
fn doubles_are_numbers_and_accept_strings_and_infinities() {
    assert_eq!(
        json(&Filters {
            refuse_seconds: Some(15.0)
        }),
        r#"{"refuse_seconds":15.0}"#
    );
    assert_eq!(
        json(&Filters {
            refuse_seconds: Some(0.0)
        }),
        r#"{"refuse_seconds":0.0}"#
    );
    assert_eq!(
        json(&Filters {
            refuse_seconds: Some(0.25)
        }),
        r#"{"refuse_seconds":0.25}"#
    );
    assert_eq!(
        json(&Filters {
            refuse_seconds: None
        }),
        "{}"
    );
    let cases: &[(&str, f64)] = &[
        (r#"{"refuse_seconds":5}"#, 5.0),
        (r#"{"refuse_seconds":"5.5"}"#, 5.5),
        (r#"{"refuse_seconds":"Infinity"}"#, f64::INFINITY),
        (r#"{"refuse_seconds":"-Infinity"}"#, f64::NEG_INFINITY),
    ];
    for (body, expected) in cases {
        let filters: Filters = from_json(body).unwrap();
        assert_eq!(filters.refuse_seconds, Some(*expected), "{body}");
    }
    let nan: Filters = from_json(r#"{"refuse_seconds":"NaN"}"#).unwrap();
    assert!(nan.refuse_seconds.unwrap().is_nan());
    assert_eq!(
        json(&Filters {
            refuse_seconds: Some(f64::INFINITY)
        }),
        r#"{"refuse_seconds":"Infinity"}"#
    );
}

#[test]
fn sixty_four_bit_integers_are_json_numbers_and_accept_strings() {
    let duration = DurationInfo {
        nanoseconds: 5_000_000_000,
    };
    let text = json(&duration);
    assert_eq!(text, r#"{"nanoseconds":5000000000}"#);
    assert_eq!(from_json::<DurationInfo>(&text).unwrap(), duration);
    assert_eq!(
        from_json::<DurationInfo>(r#"{"nanoseconds":"5000000000"}"#).unwrap(),
        duration
    );
    let min = DurationInfo {
        nanoseconds: i64::MIN,
    };
    assert_eq!(json(&min), r#"{"nanoseconds":-9223372036854775808}"#);
    assert_eq!(from_json::<DurationInfo>(&json(&min)).unwrap(), min);
    let error = from_json::<DurationInfo>(r#"{"nanoseconds":9223372036854775808}"#).unwrap_err();
    assert!(matches!(error, CodecError::Json(_)), "{error}");
    let error = from_json::<DurationInfo>(r#"{"nanoseconds":1.5}"#).unwrap_err();
    assert!(matches!(error, CodecError::Json(_)), "{error}");
}

#[test]
fn enums_by_name_or_number_and_unknown_names_dropped() {
    let call: Call = from_json(r#"{"type":1}"#).unwrap();
    assert_eq!(call.r#type(), call::Type::Subscribe);
    // Unknown names leave the field unset, or drop the element of a repeated field.
    let call: Call = from_json(
        r#"{"type":"NO_SUCH_CALL","subscribe":{"framework_info":{"user":"u","name":"n",
        "capabilities":[{"type":"FROM_THE_FUTURE"},{"type":"PARTITION_AWARE"}]}}}"#,
    )
    .unwrap();
    assert_eq!(call.r#type, 0);
    let capabilities = call.subscribe.unwrap().framework_info.unwrap().capabilities;
    assert_eq!(capabilities.len(), 2);
    assert_eq!(capabilities[0].r#type, None);
    assert_eq!(
        capabilities[1].r#type(),
        framework_info::capability::Type::PartitionAware
    );
    let status: TaskStatus =
        from_json(r#"{"state":"TASK_RUNNING","reason":"REASON_NEW"}"#).unwrap();
    assert_eq!(status.state(), TaskState::TaskRunning);
    assert_eq!(status.reason, None);
    // Zero-valued names decode, and the zero is then at its default.
    let resource: Resource = from_json(r#"{"name":"cpus","type":"SCALAR"}"#).unwrap();
    assert_eq!(resource.r#type(), value::Type::Scalar);
}

#[test]
fn bodies_that_are_not_one_json_object_are_refused() {
    for body in ["[]", "\"x\"", "1", "null", "true", " [{}]"] {
        assert_eq!(
            from_json::<Call>(body),
            Err(CodecError::NotAnObject),
            "{body}"
        );
    }
    for body in [
        "",
        "   ",
        "{",
        "{\"type\":",
        "{} {}",
        "{}x",
        "nul",
        "{\"type\":\"SUBSCRIBE\",}",
    ] {
        let error = from_json::<Call>(body).unwrap_err();
        assert!(matches!(error, CodecError::Json(_)), "{body}: {error:?}");
        assert!(
            error.to_string().starts_with("failed to parse JSON: "),
            "{error}"
        );
        assert_eq!(error.status(), 400);
    }
    // A field of the wrong shape names what was expected.
    let error = from_json::<Call>(r#"{"framework_id":"f1"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"failed to parse JSON: framework_id: invalid type: string "f1", expected a map at line 1 column 20"#
    );
    let error = from_json::<Call>(
        r#"{"subscribe":{"framework_info":{"capabilities":[{"type":"MULTI_ROLE"},{"type":{}}]}}}"#,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("failed to parse JSON: subscribe.framework_info.capabilities[1].type: "),
        "{error}"
    );
    let error = from_json::<Call>(r#"{"decline":{"offer_ids":[null]}}"#).unwrap_err();
    assert!(matches!(error, CodecError::Json(_)), "{error}");
}

#[test]
fn deep_nesting_does_not_crash() {
    // Under an unknown key, skipped without recursion.
    for deep in [
        format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "{{\"x\":{}1{}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        ),
    ] {
        assert_eq!(from_json::<Call>(&deep), Ok(Call::default()));
    }
    // Under a known field, refused at once.
    let deep = format!(
        "{{\"framework_id\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(from_json::<Call>(&deep), Err(CodecError::Json(_))));
    let deep = format!("{{\"x\":{}", "[".repeat(100_000));
    assert!(matches!(from_json::<Call>(&deep), Err(CodecError::Json(_))));
}

#[test]
fn protobuf_both_ways() {
    let call = Call {
        r#type: call::Type::Revive.into(),
        revive: Some(call::Revive {
            roles: vec!["eng".into()],
        }),
        ..Default::default()
    };
    let bytes = encode(Media::Protobuf, &call);
    assert_eq!(bytes, call.encode_to_vec());
    assert_eq!(decode::<Call>(Media::Protobuf, &bytes).unwrap(), call);
    let error = decode::<Call>(Media::Protobuf, b"\xff\xff\xff").unwrap_err();
    assert!(matches!(error, CodecError::Protobuf(_)));
    assert!(
        error.to_string().starts_with("failed to decode protobuf: "),
        "{error}"
    );
    assert_eq!(error.status(), 400);
}

#[test]
fn every_api_message_has_its_descriptor() {
    fn check<M: Message + Default + Name + PartialEq>() {
        assert!(descriptor::<M>().is_ok(), "{}", M::full_name());
        let text = encode(Media::Json, &M::default());
        assert_eq!(text, b"{}", "{}", M::full_name());
        assert!(decode::<M>(Media::Json, &text).unwrap() == M::default());
    }
    check::<Call>();
    check::<call::Subscribe>();
    check::<call::reconcile::Task>();
    check::<Event>();
    check::<event::Subscribed>();
    check::<agora_proto::v1::executor::Call>();
    check::<agora_proto::v1::executor::Event>();
    check::<agora_proto::v1::agent::MasterMessage>();
    check::<FrameworkInfo>();
    check::<Value>();
    // proto2, whose required fields prost always writes: only the lookup is checked.
    assert!(descriptor::<agora_proto::mesos_v0::TaskStatus>().is_ok());
}

#[test]
fn a_type_outside_the_descriptor_set_is_an_error_not_a_crash() {
    let error = from_json::<prost_types::Duration>("{}").unwrap_err();
    assert_eq!(
        error,
        CodecError::UnknownMessage("google.protobuf.Duration".into())
    );
    assert_eq!(
        encode(Media::Json, &prost_types::Duration::default()),
        b"{}"
    );
}

// Generated messages for the round-trip properties: not every field, but every kind of
// value (strings, bytes, enums with and without presence, doubles, 64-bit integers,
// nested, repeated).

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._\\-]{0,12}"
}

fn text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, control characters and non-ASCII all need escaping in JSON.
    prop_oneof![any::<String>(), "[ -~\n\t\"\\\\]{0,20}"]
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (0u32..100_000).prop_map(|n| f64::from(n) / 1000.0),
        Just(0.0),
    ]
}

fn task_state() -> impl Strategy<Value = i32> {
    (0i32..=13).prop_filter("a TaskState", |n| TaskState::try_from(*n).is_ok())
}

fn task_status() -> impl Strategy<Value = TaskStatus> {
    (
        (
            id(),
            task_state(),
            prop::option::of(text()),
            prop::option::of(0i32..=2),
        ),
        (
            prop::option::of(prop::sample::select(vec![0, 1, 8, 14, 21, 100])),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::option::of(id()),
            prop::option::of(finite()),
            prop::option::of(prop::collection::vec(any::<u8>(), 16)),
            prop::option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |((task, state, message, source), (reason, data, agent, timestamp, uuid, healthy))| {
                TaskStatus {
                    task_id: Some(TaskId { value: task }),
                    state: Some(state),
                    message,
                    source,
                    reason,
                    data,
                    agent_id: agent.map(|value| AgentId { value }),
                    timestamp,
                    uuid,
                    healthy,
                    ..Default::default()
                }
            },
        )
}

fn resource() -> impl Strategy<Value = Resource> {
    let scalar = (id(), finite()).prop_map(|(name, amount)| scalar(&name, amount));
    let ranges = (
        id(),
        prop::collection::vec((any::<u64>(), any::<u64>()), 0..4),
    )
        .prop_map(|(name, ranges)| Resource {
            name,
            r#type: Some(value::Type::Ranges.into()),
            ranges: Some(value::Ranges {
                range: ranges
                    .into_iter()
                    .map(|(begin, end)| value::Range { begin, end })
                    .collect(),
            }),
            ..Default::default()
        });
    let set = (
        id(),
        prop::collection::vec(text(), 0..4),
        prop::option::of(id()),
    )
        .prop_map(|(name, item, role)| Resource {
            name,
            r#type: Some(value::Type::Set.into()),
            set: Some(value::Set { item }),
            allocation_info: Some(resource::AllocationInfo { role }),
            ..Default::default()
        });
    prop_oneof![scalar, ranges, set]
}

fn offer() -> impl Strategy<Value = Offer> {
    (
        id(),
        id(),
        id(),
        text(),
        prop::collection::vec(resource(), 0..5),
    )
        .prop_map(|(offer, framework, agent, hostname, resources)| Offer {
            id: Some(OfferId { value: offer }),
            framework_id: Some(FrameworkId { value: framework }),
            agent_id: Some(AgentId { value: agent }),
            hostname,
            resources,
            ..Default::default()
        })
}

fn round_trips<M: Message + Default + Name + PartialEq + std::fmt::Debug>(
    message: &M,
) -> Result<(), TestCaseError> {
    for media in [Media::Json, Media::Protobuf] {
        let body = encode(media, message);
        if media == Media::Json {
            prop_assert!(!body.contains(&b'\n'));
        }
        prop_assert_eq!(&decode::<M>(media, &body).unwrap(), message);
    }
    Ok(())
}

proptest! {
    #[test]
    fn task_statuses_round_trip(status in task_status()) {
        round_trips(&status)?;
        round_trips(&Event {
            r#type: event::Type::Update.into(),
            update: Some(event::Update { status: Some(status) }),
            ..Default::default()
        })?;
    }

    #[test]
    fn offers_round_trip(offers in prop::collection::vec(offer(), 0..3)) {
        for offer in &offers {
            round_trips(offer)?;
        }
        round_trips(&Event {
            r#type: event::Type::Offers.into(),
            offers: Some(event::Offers { offers }),
            ..Default::default()
        })?;
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode::<Call>(Media::Json, &body);
        let _ = decode::<Call>(Media::Protobuf, &body);
    }

    #[test]
    fn json_like_bodies_never_panic(body in r#"[{}\[\]":,0-9a-z_ .eE+\-\\nul]{0,80}"#) {
        let _ = decode::<Event>(Media::Json, body.as_bytes());
        let _ = decode::<Call>(Media::Json, format!(r#"{{"subscribe":{body}}}"#).as_bytes());
    }
}
