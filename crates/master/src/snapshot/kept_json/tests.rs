use std::sync::Arc;

use super::super::test_views::{self, task};
use super::super::{FrameworkView, SharedList, TaskView};
use super::KeepsJson as _;

fn framework(tasks: SharedList<TaskView>) -> FrameworkView {
    test_views::framework("fw-1", tasks.clone(), tasks)
}

/// A task's JSON as a body takes it ([`super::KeepsJson`]).
fn appended(task: &TaskView) -> String {
    let mut out = Vec::new();
    task.append_json(&mut out).expect("json");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_list_is_the_json_of_its_tasks_and_each_fixed_part_is_made_once() {
    let tasks: SharedList<TaskView> =
        vec![task("a", "TASK_RUNNING"), task("b", "TASK_STAGING")].into();
    let plain: Vec<TaskView> = tasks.iter().cloned().collect();
    let expected = serde_json::to_value(&plain).expect("plain");
    assert!(tasks.iter().all(|t| !t.fixed.json.is_made()));

    // What a body takes from each view: its JSON, its fixed part's made
    // the first time and kept.
    for view in &tasks {
        assert_eq!(
            appended(view),
            serde_json::to_string(view).expect("serializes")
        );
    }
    assert!(tasks.iter().all(|t| t.fixed.json.is_made()));
    let kept: Vec<&str> = tasks
        .iter()
        .map(|t| super::json_of(t.fixed.as_ref()).expect("json"))
        .collect();
    for (view, kept) in tasks.iter().zip(&kept) {
        assert_eq!(appended(view), serde_json::to_string(view).expect("again"));
        let again = super::json_of(view.fixed.as_ref()).expect("json");
        assert!(std::ptr::eq(*kept, again), "made once, kept");
    }
    // A whole serialization of the list is the same JSON.
    let value = serde_json::to_value(framework(tasks.clone())).expect("whole");
    assert_eq!(value["tasks"], expected);
    assert_eq!(value["completed_tasks"], expected);
}

#[test]
fn a_status_update_writes_its_fields_around_the_fixed_part_kept() {
    let before = Arc::new(task("a", "TASK_RUNNING"));
    let mut tasks = SharedList::from_arcs([before.clone()]);
    appended(&before);
    let kept = super::json_of(before.fixed.as_ref()).expect("json");

    // What the read model does: a new view in its place, sharing the
    // fixed part while the task's launch fields are the same.
    let mut changed = (*before).clone();
    changed.state = "TASK_FINISHED";
    changed.message = Some("done \"now\"".to_owned());
    changed.status_time = Some(1001.5);
    tasks.upsert(Arc::new(changed));
    let after = tasks.get(0).expect("one task");
    assert!(Arc::ptr_eq(&after.fixed, &before.fixed));
    let json = appended(after);
    assert_eq!(json, serde_json::to_string(after).expect("serializes"));
    let json: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(json["state"], "TASK_FINISHED");
    assert_eq!(json["message"], "done \"now\"");
    assert_eq!(json["status_time"], 1001.5);
    assert_eq!(json["name"], "name \"a\"");
    let again = super::json_of(after.fixed.as_ref()).expect("json");
    assert!(
        std::ptr::eq(kept, again),
        "the fixed part's JSON is not made again"
    );
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
