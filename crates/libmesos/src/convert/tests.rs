use super::*;
use proptest::prelude::*;

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: Some(v1::value::Type::Scalar as i32),
        scalar: Some(v1::value::Scalar { value }),
        role: Some("*".into()),
        allocation_info: Some(v1::resource::AllocationInfo {
            role: Some("*".into()),
        }),
        ..Default::default()
    }
}

fn offer() -> v1::Offer {
    v1::Offer {
        id: Some(v1::OfferId {
            value: "o-1".into(),
        }),
        framework_id: Some(v1::FrameworkId {
            value: "f-1".into(),
        }),
        agent_id: Some(v1::AgentId {
            value: "a-1".into(),
        }),
        hostname: "host-1".into(),
        resources: vec![
            scalar("cpus", 2.0),
            scalar("mem", 4096.0),
            v1::Resource {
                name: "ports".into(),
                r#type: Some(v1::value::Type::Ranges as i32),
                ranges: Some(v1::value::Ranges {
                    range: vec![v1::value::Range {
                        begin: 31000,
                        end: 32000,
                    }],
                }),
                ..Default::default()
            },
        ],
        attributes: vec![v1::Attribute {
            name: "rack".into(),
            r#type: Some(v1::value::Type::Text as i32),
            text: Some(v1::value::Text { value: "r1".into() }),
            ..Default::default()
        }],
        allocation_info: Some(v1::resource::AllocationInfo {
            role: Some("*".into()),
        }),
        ..Default::default()
    }
}

/// Every field number present in an encoding (top level only).
fn top_level_fields(bytes: &[u8]) -> Vec<u32> {
    let mut buf = bytes;
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = prost::encoding::decode_key(&mut buf).expect("valid key");
        fields.push(tag);
        prost::encoding::skip_field(wire, tag, &mut buf, Default::default()).expect("skippable");
    }
    fields
}

#[test]
fn offer_round_trips_and_keeps_required_fields() {
    let original = offer();
    let v0_offer = to_v0(&original).expect("converts");
    assert_eq!(v0_offer.slave_id.value, "a-1");
    assert_eq!(v0_offer.hostname, "host-1");
    assert_eq!(v0_offer.resources.len(), 3);
    assert_eq!(v0_offer.resources[0].r#type(), v0::value::Type::Scalar);
    assert_eq!(v0_offer.resources[2].r#type(), v0::value::Type::Ranges);
    let back: v1::Offer = from_v0(&v0_offer).expect("converts back");
    assert_eq!(back, original);
}

#[test]
fn required_fields_are_encoded_even_when_empty_or_zero() {
    // Agora's proto3 omits zero values; Java's parser demands required ones.
    let bare = v1::Offer {
        id: Some(v1::OfferId::default()),
        framework_id: Some(v1::FrameworkId::default()),
        agent_id: Some(v1::AgentId::default()),
        resources: vec![scalar("cpus", 0.0)],
        ..Default::default()
    };
    assert!(!top_level_fields(&bare.encode_to_vec()).contains(&4));
    let encoded = to_v0(&bare).expect("converts").encode_to_vec();
    let fields = top_level_fields(&encoded);
    for required in [1, 2, 3, 4] {
        assert!(fields.contains(&required), "field {required} missing");
    }
    // The resource's required `type` (SCALAR = 0) is written too.
    let resource = to_v0(&bare.resources[0]).expect("converts").encode_to_vec();
    let fields = top_level_fields(&resource);
    assert!(fields.contains(&1) && fields.contains(&2), "{fields:?}");

    let status = v1::TaskStatus {
        task_id: Some(v1::TaskId { value: "t".into() }),
        state: Some(v1::TaskState::TaskStarting as i32),
        ..Default::default()
    };
    let encoded = status_to_v0(&status, None)
        .expect("converts")
        .encode_to_vec();
    assert!(top_level_fields(&encoded).contains(&2), "state is required");
}

#[test]
fn missing_required_message_becomes_empty_not_absent() {
    // An Agora offer without an agent id still yields a parseable v0 offer;
    // the gap is visible (empty id) rather than a Java parse failure.
    let mut o = offer();
    o.agent_id = None;
    let v0_offer = to_v0(&o).expect("converts");
    assert_eq!(v0_offer.slave_id.value, "");
}

#[test]
fn status_fills_agent_and_maps_reasons() {
    let status = v1::TaskStatus {
        task_id: Some(v1::TaskId { value: "0".into() }),
        state: Some(v1::TaskState::TaskFailed as i32),
        reason: Some(v1::task_status::Reason::FetcherFailed as i32),
        uuid: Some(vec![1, 2, 3]),
        ..Default::default()
    };
    let agent = v1::AgentId {
        value: "a-9".into(),
    };
    let out = status_to_v0(&status, Some(&agent)).expect("converts");
    assert_eq!(out.slave_id.as_ref().map(|s| s.value.as_str()), Some("a-9"));
    assert_eq!(out.state(), v0::TaskState::TaskFailed);
    assert_eq!(
        out.reason(),
        v0::task_status::Reason::ContainerLaunchFailed,
        "Agora's fetcher failure is Mesos' launch failure"
    );
    assert_eq!(out.uuid.as_deref(), Some(&[1u8, 2, 3][..]));

    let health = v1::TaskStatus {
        reason: Some(v1::task_status::Reason::TaskHealthCheckStatusUpdated as i32),
        ..status.clone()
    };
    let out = status_to_v0(&health, None).expect("converts");
    assert_eq!(
        out.reason(),
        v0::task_status::Reason::TaskHealthCheckStatusUpdated
    );
    let back = status_from_v0(&out).expect("converts back");
    assert_eq!(back.reason, health.reason);

    let rereg = v1::TaskStatus {
        reason: Some(v1::task_status::Reason::AgentReregistered as i32),
        ..status
    };
    assert_eq!(status_to_v0(&rereg, None).expect("converts").reason, None);
}

#[test]
fn agent_in_update_wins_over_the_known_one() {
    let status = v1::TaskStatus {
        task_id: Some(v1::TaskId { value: "0".into() }),
        agent_id: Some(v1::AgentId {
            value: "real".into(),
        }),
        ..Default::default()
    };
    let known = v1::AgentId {
        value: "stale".into(),
    };
    let out = status_to_v0(&status, Some(&known)).expect("converts");
    assert_eq!(out.slave_id.map(|s| s.value).as_deref(), Some("real"));
}

fn spark_task() -> v0::TaskInfo {
    v0::TaskInfo {
        name: "app 0".into(),
        task_id: v0::TaskId { value: "0".into() },
        slave_id: v0::SlaveId {
            value: "a-1".into(),
        },
        resources: vec![v0::Resource {
            name: "cpus".into(),
            r#type: v0::value::Type::Scalar as i32,
            scalar: Some(v0::value::Scalar { value: 2.0 }),
            role: Some("*".into()),
            ..Default::default()
        }],
        command: Some(v0::CommandInfo {
            uris: vec![v0::command_info::Uri {
                value: "http://127.0.0.1:1/spark-3.5.7-bin-agora.tgz".into(),
                cache: Some(false),
                ..Default::default()
            }],
            value: Some("cd spark-3*; ./bin/spark-class x".into()),
            environment: Some(v0::Environment {
                variables: vec![v0::environment::Variable {
                    name: "SPARK_USER".into(),
                    value: Some("root".into()),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        container: Some(v0::ContainerInfo {
            r#type: v0::container_info::Type::Mesos as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn spark_executor_task_converts() {
    let task = task_from_v0(&spark_task()).expect("converts");
    assert_eq!(
        task.agent_id.as_ref().map(|a| a.value.as_str()),
        Some("a-1")
    );
    let command = task.command.expect("command");
    assert_eq!(
        command.shell, None,
        "unset stays unset: Agora defaults it to true"
    );
    assert_eq!(command.uris[0].extract, None);
    assert_eq!(command.uris[0].cache, Some(false));
    assert_eq!(
        command.environment.expect("env").variables[0]
            .value
            .as_deref(),
        Some("root")
    );
}

#[test]
fn container_images_are_refused() {
    let mut task = spark_task();
    task.container = Some(v0::ContainerInfo {
        r#type: v0::container_info::Type::Docker as i32,
        docker: Some(v0::container_info::DockerInfo {
            image: "spark:3.5".into(),
        }),
        ..Default::default()
    });
    let err = task_from_v0(&task).expect_err("refused");
    assert!(err.to_string().contains("spark:3.5"), "{err}");

    let mut task = spark_task();
    task.container = Some(v0::ContainerInfo {
        r#type: v0::container_info::Type::Mesos as i32,
        mesos: Some(v0::container_info::MesosInfo {
            image: Some(v0::Image {
                r#type: v0::image::Type::Docker as i32,
            }),
        }),
        ..Default::default()
    });
    assert!(task_from_v0(&task).is_err());
}

#[test]
fn launch_operation_converts_and_lists_its_tasks() {
    let op = v0::offer::Operation {
        r#type: Some(v0::offer::operation::Type::Launch as i32),
        launch: Some(v0::offer::operation::Launch {
            task_infos: vec![spark_task()],
        }),
        ..Default::default()
    };
    let out = operation_from_v0(&op).expect("converts");
    let tasks = launched_tasks(&out);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].0.value, "0");
    assert_eq!(tasks[0].1.as_ref().map(|a| a.value.as_str()), Some("a-1"));

    let create = v0::offer::Operation {
        r#type: Some(v0::offer::operation::Type::Create as i32),
        ..Default::default()
    };
    assert!(matches!(
        operation_from_v0(&create),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn garbage_bytes_are_an_error_not_a_panic() {
    let err = decode_v0::<v1::TaskInfo>(&[0xff, 0xff, 0xff]).expect_err("garbage");
    assert!(err.to_string().contains("mesos.TaskInfo"), "{err}");
}

#[test]
fn framework_info_from_spark_keeps_zero_failover() {
    let info = v0::FrameworkInfo {
        user: "root".into(),
        name: "Spark shell".into(),
        failover_timeout: Some(0.0),
        hostname: Some("localhost".into()),
        ..Default::default()
    };
    let bytes = info.encode_to_vec();
    let decoded = decode_v0::<v1::FrameworkInfo>(&bytes).expect("decodes");
    let out: v1::FrameworkInfo = from_v0(&decoded).expect("converts");
    assert_eq!(out.failover_timeout, Some(0.0));
    assert_eq!(out.name, "Spark shell");
    assert_eq!(
        out.role, None,
        "unset role stays unset (Agora reads it as *)"
    );
}

proptest! {
    #[test]
    fn task_status_round_trips(
        task in "[a-z0-9-]{1,20}",
        agent in proptest::option::of("[a-z0-9-]{1,20}"),
        state in prop::sample::select(vec![
            v1::TaskState::TaskStaging, v1::TaskState::TaskStarting, v1::TaskState::TaskRunning,
            v1::TaskState::TaskFinished, v1::TaskState::TaskFailed, v1::TaskState::TaskKilled,
            v1::TaskState::TaskLost, v1::TaskState::TaskError, v1::TaskState::TaskDropped,
        ]),
        message in proptest::option::of(".{0,40}"),
        uuid in proptest::option::of(proptest::collection::vec(any::<u8>(), 16)),
        timestamp in proptest::option::of(0.0f64..2e9),
    ) {
        let status = v1::TaskStatus {
            task_id: Some(v1::TaskId { value: task }),
            state: Some(state as i32),
            message,
            agent_id: agent.map(|value| v1::AgentId { value }),
            uuid,
            timestamp,
            ..Default::default()
        };
        let there = status_to_v0(&status, None).expect("converts");
        let bytes = there.encode_to_vec();
        let parsed = v0::TaskStatus::decode(bytes.as_slice()).expect("parses");
        let back = status_from_v0(&parsed).expect("converts back");
        prop_assert_eq!(back, status);
    }

    #[test]
    fn scalar_resources_round_trip(name in "[a-z]{1,8}", value in 0.0f64..1e9) {
        let r = scalar(&name, value);
        let back: v1::Resource = from_v0(&to_v0(&r).expect("to")).expect("from");
        prop_assert_eq!(back, r);
    }
}
