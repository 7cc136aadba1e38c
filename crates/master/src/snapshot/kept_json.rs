//! Each row's JSON written once, and the lists a body leaves to be filled
//! from what was made before.
//!
//! `/state` at 100,000 tasks is mostly task and agent rows, and a body
//! made per published snapshot would serialize them all again though few
//! changed. A body keeps the rows it wrote (`state_body.rs`), and the next
//! copies the row of every view that did not change. A task's successive
//! views share its fixed part ([`TaskFixed`]), whose fields begin the
//! task's row: a task whose state changed copies that beginning from its
//! last row and writes only what a status update changes after it
//! ([`KeepsJson::append_row`]). A view that changes is a new view (the
//! read model replaces views, never edits them: `SharedList` has no way to
//! edit an item outside tests), and a fixed part is shared only while its
//! fields stay equal, so a copied row or beginning is never stale. The
//! JSON is written field by field ([`write`]): the same bytes as the
//! views' `Serialize`, about a third cheaper to make.
//!
//! Nothing is kept beside the rows: an earlier version kept each fixed
//! part's and each agent's JSON in the view as well, which cost a body an
//! allocation per new view (and the page faults of fresh memory), a copy
//! out of it, and the master about 25 MB more at 100,000 tasks.
//!
//! [`with_holes`] goes further for the bodies `state_body.rs` makes: it
//! serializes a snapshot with each kept list written as `[]` and its place
//! noted, so that the lists' bytes can be put in from chunks made for an
//! earlier body rather than copied again.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

use super::{AgentView, SharedList, TaskView};

/// A view in a kept list, whose row a body writes once and later copies.
pub trait KeepsJson: Serialize + Sized {
    /// The address of what begins its row and that a later view may share
    /// (a task's fixed part; an agent's view, itself): a row found by it
    /// in an earlier body begins with the same bytes as this view's.
    fn shared(&self) -> usize;
    /// Appends its row to `out`: a comma, then its JSON (the same bytes as
    /// its `Serialize`). `shared`, when given, is the beginning of a row
    /// that an earlier body wrote for a view with the same [`shared`]
    /// part, copied instead of written. Returns that beginning's length in
    /// what it appended.
    ///
    /// [`shared`]: KeepsJson::shared
    fn append_row(&self, shared: Option<&[u8]>, out: &mut Vec<u8>) -> serde_json::Result<usize>;
    /// A list of such views, as a hole names it.
    fn listed(list: &SharedList<Self>) -> Listed;
}

/// A task's row begins with its fixed part's fields, which its successive
/// views share, so a task whose state changed costs a body little more
/// than one that did not: the beginning is copied and the few fields a
/// status update changes are written.
impl KeepsJson for TaskView {
    fn shared(&self) -> usize {
        Arc::as_ptr(&self.fixed) as usize
    }
    fn append_row(&self, shared: Option<&[u8]>, out: &mut Vec<u8>) -> serde_json::Result<usize> {
        let start = out.len();
        match shared {
            Some(beginning) => out.extend_from_slice(beginning),
            None => {
                out.extend_from_slice(b",{");
                write::task_fixed(&self.fixed, out)?;
            }
        }
        let beginning = out.len() - start;
        write::task_state(self, out)?;
        out.push(b'}');
        Ok(beginning)
    }
    fn listed(list: &SharedList<Self>) -> Listed {
        Listed::Tasks(list.clone())
    }
}

/// An agent's view shares nothing with the next: its row is copied whole
/// while the view is the same, and written whole when it changed.
impl KeepsJson for AgentView {
    fn shared(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
    fn append_row(&self, shared: Option<&[u8]>, out: &mut Vec<u8>) -> serde_json::Result<usize> {
        let start = out.len();
        match shared {
            Some(row) => out.extend_from_slice(row),
            None => {
                out.push(b',');
                write::agent(self, out)?;
            }
        }
        Ok(out.len() - start)
    }
    fn listed(list: &SharedList<Self>) -> Listed {
        Listed::Agents(list.clone())
    }
}

/// A kept list (`serialize_with` of the snapshot's agents and of a
/// framework's tasks): the same JSON as the list's own serialization;
/// inside [`with_holes`], `[]` and its place noted (the bodies made from
/// holes use what each view keeps, [`KeepsJson`]; serialized whole, for
/// tests and benches, the views are serialized afresh).
pub(super) fn list<S: Serializer, T: KeepsJson>(
    items: &SharedList<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if recording() {
        // No length: serde_json writes `[` now and `]` at the end, so
        // the hole is between the two.
        let seq = serializer.serialize_seq(None)?;
        record(T::listed(items));
        return seq.end();
    }
    let mut seq = serializer.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(item)?;
    }
    seq.end()
}

/// A kept list left out of a body.
pub enum Listed {
    Tasks(SharedList<TaskView>),
    Agents(SharedList<AgentView>),
    /// Tasks in Mesos' shape (`/master/state`), those of `part` only.
    MesosTasks(SharedList<TaskView>, TaskPart),
    /// Agents in Mesos' shape (`/master/state`'s `slaves`).
    MesosAgents(SharedList<AgentView>),
}

/// Which tasks of a list a hole in Mesos' shape shows: Mesos splits a
/// framework's live tasks by whether their agent is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskPart {
    /// The tasks that are not `TASK_UNREACHABLE`.
    Reachable,
    /// The `TASK_UNREACHABLE` ones.
    Unreachable,
    /// Every task of the list (a framework's completed tasks).
    All,
}

impl TaskPart {
    /// Whether `task` is shown in this part.
    pub fn shows(self, task: &TaskView) -> bool {
        let unreachable = task.state == "TASK_UNREACHABLE";
        match self {
            Self::Reachable => !unreachable,
            Self::Unreachable => unreachable,
            Self::All => true,
        }
    }
}

/// Serializes a list another way than `kept_json::list` (Mesos' shape of
/// its tasks): inside [`with_holes`], `[]` and the place of `listed`
/// noted; otherwise `write`'s JSON.
pub(crate) fn list_or_hole<S: Serializer>(
    serializer: S,
    listed: impl FnOnce() -> Listed,
    write: impl FnOnce(S) -> Result<S::Ok, S::Error>,
) -> Result<S::Ok, S::Error> {
    if recording() {
        let seq = serializer.serialize_seq(None)?;
        record(listed());
        return seq.end();
    }
    write(serializer)
}

/// Where a list goes: its items' JSON, comma-separated, belongs at byte
/// `at` of the body (just after the list's `[`).
pub struct Hole {
    pub at: usize,
    pub list: Listed,
}

/// The body being serialized on this thread by [`with_holes`], if any.
struct Recording {
    json: Vec<u8>,
    holes: Vec<Hole>,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

fn recording() -> bool {
    RECORDING.with(|r| r.borrow().is_some())
}

fn record(list: Listed) {
    RECORDING.with(|r| {
        if let Some(recording) = r.borrow_mut().as_mut() {
            let at = recording.json.len();
            recording.holes.push(Hole { at, list });
        }
    });
}

/// Where serde_json writes while recording: the recording's buffer.
struct RecordingWriter;

impl io::Write for RecordingWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        RECORDING.with(|r| match r.borrow_mut().as_mut() {
            Some(recording) => {
                recording.json.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            None => Err(io::Error::other("no body is being recorded")),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends the recording however serialization ends (an error, a panic).
struct EndRecording;

impl Drop for EndRecording {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
    }
}

/// `value`'s JSON with every kept list in it written `[]`, and the holes
/// those lists leave, in the order of the body.
pub fn with_holes<T: Serialize>(
    value: &T,
    capacity: usize,
) -> serde_json::Result<(Vec<u8>, Vec<Hole>)> {
    let nested = RECORDING.with(|r| {
        let mut r = r.borrow_mut();
        let nested = r.is_some();
        if !nested {
            *r = Some(Recording {
                json: Vec::with_capacity(capacity),
                holes: Vec::new(),
            });
        }
        nested
    });
    if nested {
        return Err(serde_json::Error::custom(
            "a body with holes is already being made on this thread",
        ));
    }
    let end = EndRecording;
    serde_json::to_writer(RecordingWriter, value)?;
    let recording = RECORDING.with(|r| r.borrow_mut().take());
    drop(end);
    let recording =
        recording.ok_or_else(|| serde_json::Error::custom("the body's recording was lost"))?;
    Ok((recording.json, recording.holes))
}

mod write;

#[cfg(test)]
mod tests;
