use std::sync::Arc;

use super::super::test_views::{self, task};
use super::super::{FrameworkView, SharedList, TaskView};
use super::KeepsJson;

fn framework(tasks: SharedList<TaskView>) -> FrameworkView {
    test_views::framework("fw-1", tasks.clone(), tasks)
}

/// A row as a body writes it, from the beginning `shared` if given, and
/// that beginning's length.
fn row<T: KeepsJson>(view: &T, shared: Option<&[u8]>) -> (String, usize) {
    let mut out = Vec::new();
    let beginning = view.append_row(shared, &mut out).expect("json");
    (String::from_utf8(out).expect("utf-8"), beginning)
}

#[test]
fn a_row_is_a_comma_and_the_views_json() {
    let tasks: SharedList<TaskView> =
        vec![task("a", "TASK_RUNNING"), task("b", "TASK_STAGING")].into();
    let plain: Vec<TaskView> = tasks.iter().cloned().collect();
    let expected = serde_json::to_value(&plain).expect("plain");
    for view in &tasks {
        let (json, beginning) = row(view, None);
        assert_eq!(
            json,
            format!(",{}", serde_json::to_string(view).expect("json"))
        );
        // The beginning is the fixed part's fields: up to the state.
        assert!(json[beginning..].starts_with(",\"state\":"), "{json}");
    }
    let agent = test_views::agent("agent-1");
    let (json, beginning) = row(&agent, None);
    assert_eq!(
        json,
        format!(",{}", serde_json::to_string(&agent).expect("json"))
    );
    assert_eq!(beginning, json.len(), "an agent's row is all its own");
    // A whole serialization of the list is the same JSON.
    let value = serde_json::to_value(framework(tasks.clone())).expect("whole");
    assert_eq!(value["tasks"], expected);
    assert_eq!(value["completed_tasks"], expected);
}

#[test]
fn a_status_update_writes_its_fields_after_the_beginning_copied() {
    let before = Arc::new(task("a", "TASK_RUNNING"));
    let mut tasks = SharedList::from_arcs([before.clone()]);
    let (old, beginning) = row(before.as_ref(), None);

    // What the read model does: a new view in its place, sharing the
    // fixed part while the task's launch fields are the same.
    let mut changed = (*before).clone();
    changed.state = "TASK_FINISHED";
    changed.message = Some("done \"now\"".to_owned());
    changed.status_time = Some(1001.5);
    tasks.upsert(Arc::new(changed));
    let after = tasks.get(0).expect("one task");
    assert_eq!(after.shared(), before.shared(), "the fixed part is shared");
    let (json, again) = row(after, Some(&old.as_bytes()[..beginning]));
    assert_eq!(again, beginning);
    assert_eq!(json, row(after, None).0, "the same as written whole");
    assert_eq!(
        json,
        format!(",{}", serde_json::to_string(after).expect("json"))
    );
    let json: serde_json::Value = serde_json::from_str(&json[1..]).expect("valid json");
    assert_eq!(json["state"], "TASK_FINISHED");
    assert_eq!(json["message"], "done \"now\"");
    assert_eq!(json["status_time"], 1001.5);
    assert_eq!(json["name"], "name \"a\"");
}

#[test]
fn holes_are_where_the_lists_go_and_recording_ends_with_the_body() {
    let tasks: SharedList<TaskView> = vec![task("a", "TASK_RUNNING")].into();
    let (json, holes) = super::with_holes(&framework(tasks.clone()), 0).expect("holes");
    let text = String::from_utf8(json).expect("utf-8");
    assert_eq!(holes.len(), 2);
    for hole in &holes {
        assert_eq!(&text[hole.at - 1..hole.at + 1], "[]");
        assert!(matches!(&hole.list, super::Listed::Tasks(l) if l.ptr_eq(&tasks)));
    }
    assert!(text[..holes[0].at].ends_with("\"tasks\":["));
    assert!(text[..holes[1].at].ends_with("\"completed_tasks\":["));
    // Outside a recording, lists are whole again.
    let whole = serde_json::to_value(framework(tasks)).expect("whole");
    assert_eq!(whole["tasks"][0]["id"], "a");
}

/// A value that fails to serialize after a list was recorded.
struct Failing(SharedList<TaskView>);

impl serde::Serialize for Failing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        let mut seq = serializer.serialize_seq(None)?;
        seq.serialize_element(&Listed(&self.0))?;
        Err(S::Error::custom("fails on purpose"))
    }
}

struct Listed<'a>(&'a SharedList<TaskView>);

impl serde::Serialize for Listed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::list(self.0, serializer)
    }
}

#[test]
fn a_failed_body_ends_its_recording() {
    let tasks: SharedList<TaskView> = vec![task("a", "TASK_RUNNING")].into();
    let failed = super::with_holes(&Failing(tasks.clone()), 0);
    assert!(failed.is_err());
    // Not recording any more: the next body is made, and a plain
    // serialization writes its lists whole.
    let whole = serde_json::to_value(framework(tasks.clone())).expect("whole");
    assert_eq!(whole["tasks"][0]["id"], "a");
    let (_, holes) = super::with_holes(&framework(tasks), 0).expect("next body");
    assert_eq!(holes.len(), 2);
}

/// A value that tries to make a body while one is being made.
struct Nested;

impl serde::Serialize for Nested {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let inner = super::with_holes(&1u8, 0);
        match inner {
            Ok(_) => Err(S::Error::custom("a nested body was made")),
            Err(e) => serializer.serialize_str(&e.to_string()),
        }
    }
}

#[test]
fn a_body_cannot_be_made_inside_another() {
    let (json, _) = super::with_holes(&Nested, 0).expect("outer body");
    let text = String::from_utf8(json).expect("utf-8");
    assert!(text.contains("already being made"), "{text}");
}
