//! Each view's JSON made once, and the lists a body leaves to be filled
//! from what was made before.
//!
//! `/state` at 100,000 tasks is mostly task and agent rows, and a body
//! made per published snapshot would serialize them all again though few
//! changed. An agent's view ([`AgentView`]) keeps its JSON the first time
//! a body needs it, and so does a task's fixed part ([`TaskFixed`]), which
//! the task's successive views share: a task's view writes only what a
//! status update changes around it. A view that changes is a new view
//! (the read model replaces views, never edits them: `SharedList` has no
//! way to edit an item outside tests), and a fixed part is shared only
//! while its fields stay equal, so a kept JSON is never stale. The JSON is
//! written field by field ([`write`]): the same bytes as the views'
//! `Serialize`, about a third cheaper to make.
//!
//! [`with_holes`] goes further for the bodies `state_body.rs` makes: it
//! serializes a snapshot with each kept list written as `[]` and its place
//! noted, so that the lists' bytes can be put in from chunks made for an
//! earlier body rather than copied again.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::OnceLock;

use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

use super::{AgentView, SharedList, TaskFixed, TaskView};

/// A view's JSON, made at most once. Not part of the view's value: equal
/// whatever it holds, and a copy of a view starts without it.
#[derive(Default)]
pub struct Once(OnceLock<Box<str>>);

impl Once {
    /// The JSON `make` makes, made on the first call only.
    fn get_or_make(
        &self,
        make: impl FnOnce() -> serde_json::Result<Box<str>>,
    ) -> serde_json::Result<&str> {
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

/// Something whose JSON is made once and kept: an agent's view, a task's
/// fixed part.
trait Kept {
    fn kept(&self) -> &Once;
    /// Appends its JSON to `out` ([`write`]).
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

impl Kept for TaskFixed {
    fn kept(&self) -> &Once {
        &self.json
    }
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write::task_fixed(self, out)
    }
}

impl Kept for AgentView {
    fn kept(&self) -> &Once {
        &self.json
    }
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write::agent(self, out)
    }
}

/// Room for a kept JSON (a task's fixed part is about 150 bytes, an
/// agent's view 600).
const VIEW_JSON: usize = 512;

/// The kept JSON, made now if it was not.
fn json_of<T: Kept>(view: &T) -> serde_json::Result<&str> {
    view.kept().get_or_make(|| {
        let mut json = Vec::with_capacity(VIEW_JSON);
        view.write_json(&mut json)?;
        String::from_utf8(json)
            .map(String::into_boxed_str)
            .map_err(serde_json::Error::custom)
    })
}

/// A view in a kept list, whose JSON a body takes from what it keeps.
pub trait KeepsJson: Serialize + Sized {
    /// Appends its JSON to `out`: the same bytes as its `Serialize`, the
    /// kept part copied (made first if it was not).
    fn append_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// A list of such views, as a hole names it.
    fn listed(list: &SharedList<Self>) -> Listed;
}

/// A task's view keeps no JSON of its own: its fixed part's is copied and
/// the few fields a status update changes are written, so a task whose
/// state changed costs a body little more than one that did not.
impl KeepsJson for TaskView {
    fn append_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'{');
        out.extend_from_slice(json_of(self.fixed.as_ref())?.as_bytes());
        write::task_state(self, out)?;
        out.push(b'}');
        Ok(())
    }
    fn listed(list: &SharedList<Self>) -> Listed {
        Listed::Tasks(list.clone())
    }
}

impl KeepsJson for AgentView {
    fn append_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(json_of(self)?.as_bytes());
        Ok(())
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
