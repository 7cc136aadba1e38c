use std::sync::Arc;

use super::super::test_views::{self, task};
use super::super::{FrameworkView, SharedList, TaskView};

fn framework(tasks: SharedList<TaskView>) -> FrameworkView {
    test_views::framework("fw-1", tasks.clone(), tasks)
}

#[test]
fn a_list_is_the_json_of_its_tasks_and_each_is_made_once() {
    let tasks: SharedList<TaskView> =
        vec![task("a", "TASK_RUNNING"), task("b", "TASK_STAGING")].into();
    let plain: Vec<TaskView> = tasks.iter().cloned().collect();
    let expected = serde_json::to_value(&plain).expect("plain");
    assert!(tasks.iter().all(|t| !t.json.is_made()));

    // What a body takes from each view: its JSON, made the first time.
    let first: Vec<&str> = tasks
        .iter()
        .map(|t| super::json_of(t).expect("json"))
        .collect();
    assert!(tasks.iter().all(|t| t.json.is_made()));
    let again: Vec<&str> = tasks
        .iter()
        .map(|t| super::json_of(t).expect("json"))
        .collect();
    for ((first, again), view) in first.iter().zip(&again).zip(&plain) {
        assert!(std::ptr::eq(*first, *again), "made once, kept");
        assert_eq!(*first, serde_json::to_string(view).expect("serializes"));
    }
    // A whole serialization of the list is the same JSON.
    let value = serde_json::to_value(framework(tasks.clone())).expect("whole");
    assert_eq!(value["tasks"], expected);
    assert_eq!(value["completed_tasks"], expected);
}

#[test]
fn a_changed_task_is_a_new_view_with_its_own_json() {
    let before = Arc::new(task("a", "TASK_RUNNING"));
    let mut tasks = SharedList::from_arcs([before.clone()]);
    super::json_of(before.as_ref()).expect("json");
    assert!(before.json.is_made());

    // What the read model does: a new view in its place. A copy starts
    // without the JSON, so an edited copy cannot carry the old one.
    let mut changed = (*before).clone();
    assert!(!changed.json.is_made());
    changed.state = "TASK_FINISHED";
    tasks.get_mut(0).expect("one task").clone_from(&changed);
    let json = super::json_of(tasks.get(0).expect("one task")).expect("json");
    let json: serde_json::Value = serde_json::from_str(json).expect("valid json");
    assert_eq!(json["state"], "TASK_FINISHED");
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
