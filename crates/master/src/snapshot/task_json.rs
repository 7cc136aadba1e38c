//! Each task's JSON made once: `/state` at 100,000 tasks is mostly task
//! rows, and a body made per published snapshot would serialize them all
//! again though few changed. A [`TaskView`] keeps its JSON the first time a
//! body needs it; a task that changes is a new view (the read model
//! replaces views, never edits them: `SharedList` has no way to edit an
//! item outside tests), so a kept JSON is never stale, and a body costs the
//! changed tasks' serialization plus a copy of the rest.

use std::fmt;
use std::sync::OnceLock;

use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use super::{SharedList, TaskView};

/// A view's JSON, made at most once. Not part of the view's value: equal
/// whatever it holds, and a copy of a view starts without it.
#[derive(Default)]
pub struct Once(OnceLock<Box<RawValue>>);

impl Once {
    /// The JSON `make` makes, made on the first call only.
    fn get_or_make(
        &self,
        make: impl FnOnce() -> serde_json::Result<Box<RawValue>>,
    ) -> serde_json::Result<&RawValue> {
        if let Some(json) = self.0.get() {
            return Ok(json);
        }
        let json = make()?;
        Ok(self.0.get_or_init(|| json))
    }

    /// Whether the JSON was made (for tests).
    pub fn is_made(&self) -> bool {
        self.0.get().is_some()
    }
}

impl Clone for Once {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Once {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_made() { "made" } else { "not made" })
    }
}

/// One task, as its kept JSON.
struct Kept<'a>(&'a TaskView);

impl Serialize for Kept<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        let json = view
            .json
            .get_or_make(|| serde_json::value::to_raw_value(view))
            .map_err(S::Error::custom)?;
        json.serialize(serializer)
    }
}

/// A task list (`serialize_with` of a framework's lists): the same JSON as
/// the list's own serialization, each task's made once.
pub(super) fn list<S: Serializer>(
    tasks: &SharedList<TaskView>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(tasks.len()))?;
    for task in tasks {
        seq.serialize_element(&Kept(task))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests;
