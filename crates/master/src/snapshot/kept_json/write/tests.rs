use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;
use proptest::prelude::*;

use std::sync::Arc;

use crate::snapshot::{AgentView, TaskFixed, TaskView};

/// Strings as they come: plain ids, and any text at all (quotes,
/// backslashes, control characters, non-ASCII).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.:_-]{0,24}",
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{7f}a é]{0,8}",
    ]
}

/// Numbers as they come: resource amounts and times, and any `f64`
/// (NaN, infinities, -0.0, subnormals).
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..100_000).prop_map(|n| f64::from(n) / 1000.0),
        Just(1_733_430_000.123_456),
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
    ]
}

fn summary() -> impl Strategy<Value = BTreeMap<String, SummaryValue>> {
    proptest::collection::btree_map(
        text(),
        prop_oneof![
            number().prop_map(SummaryValue::Number),
            text().prop_map(SummaryValue::Text)
        ],
        0..5,
    )
}

/// The `&'static str` fields take one of a few values.
fn state() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "TASK_RUNNING",
        "TASK_UNREACHABLE",
        "",
        "odd \"state\"\n",
    ])
}

prop_compose! {
    fn task_view()(
        ids in proptest::collection::vec(text(), 6),
        state in state(),
        resources in summary(),
        message in proptest::option::of(text()),
        status_time in proptest::option::of(number()),
        healthy in proptest::option::of(any::<bool>()),
        user in proptest::option::of(text()),
    ) -> TaskView {
        TaskView {
            fixed: Arc::new(TaskFixed {
                id: agora_core::TaskId::new(ids[0].clone()),
                name: agora_core::SmallText::from(ids[1].clone()),
                framework_id: agora_core::FrameworkId::new(ids[2].clone()),
                agent_id: agora_core::AgentId::new(ids[3].clone()),
                executor_id: agora_core::ExecutorId::new(ids[4].clone()),
                role: agora_core::SmallText::from(ids[5].clone()),
                resources: resources.into(),
                user,
            }),
            state,
            message,
            status_time,
            healthy,
        }
    }
}

prop_compose! {
    fn agent_view()(
        ids in proptest::collection::vec(text(), 3),
        resources in summary(),
        used in summary(),
        free in summary(),
        attributes in proptest::collection::btree_map(text(), text(), 0..4),
        active in any::<bool>(),
        status in state(),
        unreachable_since in proptest::option::of(number()),
        registered_time in number(),
    ) -> AgentView {
        AgentView {
            id: ids[0].clone(),
            hostname: ids[1].clone(),
            address: ids[2].clone(),
            resources,
            used,
            free,
            attributes,
            active,
            status,
            unreachable_since,
            registered_time,
        }
    }
}

/// What `write` writes of `view`, as text, beside its serialization.
fn written_and_serialized<T: serde::Serialize>(
    view: &T,
    write: fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
) -> (String, String) {
    let mut written = Vec::new();
    write(view, &mut written).expect("writes");
    let serialized = serde_json::to_vec(view).expect("serializes");
    (
        String::from_utf8_lossy(&written).into_owned(),
        String::from_utf8_lossy(&serialized).into_owned(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_tasks_json_is_its_serialization(task in task_view()) {
        let (written, serialized) = written_and_serialized(&task, super::task);
        prop_assert_eq!(written, serialized);
    }

    #[test]
    fn an_agents_json_is_its_serialization(agent in agent_view()) {
        let (written, serialized) = written_and_serialized(&agent, super::agent);
        prop_assert_eq!(written, serialized);
    }
}

/// The fixtures the other tests use, fields set and strings that need
/// escaping, are written as serialized too; and what is appended leaves
/// what was before it alone.
#[test]
fn the_test_views_are_written_as_serialized_after_what_was_there() {
    let task = crate::snapshot::test_views::task("t \"1\"", "TASK_RUNNING");
    let agent = crate::snapshot::test_views::agent("a\\1");
    let mut written = b"[".to_vec();
    super::task(&task, &mut written).expect("writes");
    written.push(b',');
    super::agent(&agent, &mut written).expect("writes");
    written.push(b']');
    let expected = format!(
        "[{},{}]",
        serde_json::to_string(&task).expect("task"),
        serde_json::to_string(&agent).expect("agent")
    );
    assert_eq!(String::from_utf8(written).expect("utf-8"), expected);
}
