//! A task's and an agent's JSON written field by field.
//!
//! Every poll of `/state` while tasks change serializes the views that
//! changed since the last body (1,500 tasks a poll in a placement at
//! 15,000 tasks/s), and the first body after a quiet spell serializes them
//! all. Through serde's derive each field name is escaped again per view,
//! and each string scanned byte by byte for escapes. Here the field names
//! are written as the constants they are, and a string is copied whole
//! once a check finds nothing in it to escape.
//!
//! *Invariant:* the bytes are exactly the views' compact `serde_json`
//! serialization (their `Serialize`), field for field; a proptest
//! holds every view shape to it. A field added to a view must be added
//! here in the same place.

use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;

use crate::snapshot::{AgentView, TaskFixed, TaskView};

type Out = Vec<u8>;

/// `task`'s JSON, appended to `out`: its fixed part's fields
/// ([`task_fixed`]) and its changing ones ([`task_state`]) in braces.
#[cfg(test)]
pub(super) fn task(task: &TaskView, out: &mut Out) -> serde_json::Result<()> {
    out.push(b'{');
    task_fixed(&task.fixed, out)?;
    task_state(task, out)?;
    out.push(b'}');
    Ok(())
}

/// The fixed part's fields, without braces: what a task's view keeps from
/// one status update to the next (`TaskFixed::json`).
pub(super) fn task_fixed(fixed: &TaskFixed, out: &mut Out) -> serde_json::Result<()> {
    out.extend_from_slice(b"\"id\":");
    string(out, fixed.id.as_str())?;
    out.extend_from_slice(b",\"name\":");
    string(out, &fixed.name)?;
    out.extend_from_slice(b",\"framework_id\":");
    string(out, fixed.framework_id.as_str())?;
    out.extend_from_slice(b",\"agent_id\":");
    string(out, fixed.agent_id.as_str())?;
    out.extend_from_slice(b",\"executor_id\":");
    string(out, fixed.executor_id.as_str())?;
    out.extend_from_slice(b",\"role\":");
    string(out, &fixed.role)?;
    out.extend_from_slice(b",\"resources\":");
    summary(out, &fixed.resources)?;
    if let Some(user) = &fixed.user {
        out.extend_from_slice(b",\"user\":");
        string(out, user)?;
    }
    Ok(())
}

/// The changing fields, each after a comma: they follow the fixed part's.
pub(super) fn task_state(task: &TaskView, out: &mut Out) -> serde_json::Result<()> {
    out.extend_from_slice(b",\"state\":");
    string(out, task.state)?;
    out.extend_from_slice(b",\"message\":");
    match &task.message {
        Some(message) => string(out, message)?,
        None => null(out),
    }
    out.extend_from_slice(b",\"status_time\":");
    optional_number(out, task.status_time)?;
    out.extend_from_slice(b",\"healthy\":");
    match task.healthy {
        Some(healthy) => boolean(out, healthy),
        None => null(out),
    }
    Ok(())
}

/// `agent`'s JSON, appended to `out`.
pub(super) fn agent(agent: &AgentView, out: &mut Out) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"id\":");
    string(out, &agent.id)?;
    out.extend_from_slice(b",\"hostname\":");
    string(out, &agent.hostname)?;
    out.extend_from_slice(b",\"address\":");
    string(out, &agent.address)?;
    out.extend_from_slice(b",\"resources\":");
    summary(out, &agent.resources)?;
    out.extend_from_slice(b",\"used\":");
    summary(out, &agent.used)?;
    out.extend_from_slice(b",\"free\":");
    summary(out, &agent.free)?;
    out.extend_from_slice(b",\"attributes\":{");
    for (i, (name, value)) in agent.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name)?;
        out.push(b':');
        string(out, value)?;
    }
    out.extend_from_slice(b"},\"active\":");
    boolean(out, agent.active);
    out.extend_from_slice(b",\"status\":");
    string(out, agent.status)?;
    out.extend_from_slice(b",\"unreachable_since\":");
    optional_number(out, agent.unreachable_since)?;
    out.extend_from_slice(b",\"registered_time\":");
    number(out, agent.registered_time)?;
    out.push(b'}');
    Ok(())
}

/// A string, quoted; escaped by serde_json itself when anything in it
/// needs escaping (a quote, a backslash, a control character).
fn string(out: &mut Out, s: &str) -> serde_json::Result<()> {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// Whether any byte needs escaping in a JSON string. Every byte is looked
/// at, without stopping at the first: a loop with no early exit is one the
/// compiler turns into vector instructions, and nearly every string here
/// (ids, names, states) needs none.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// A number as serde_json writes an `f64` (`null` when not finite).
fn number(out: &mut Out, n: f64) -> serde_json::Result<()> {
    serde_json::to_writer(out, &n)
}

fn optional_number(out: &mut Out, n: Option<f64>) -> serde_json::Result<()> {
    match n {
        Some(n) => number(out, n),
        None => {
            null(out);
            Ok(())
        }
    }
}

fn boolean(out: &mut Out, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn null(out: &mut Out) {
    out.extend_from_slice(b"null");
}

/// A resources summary: an object of numbers and texts (`SummaryValue` is
/// untagged).
fn summary(out: &mut Out, values: &BTreeMap<String, SummaryValue>) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (name, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name)?;
        out.push(b':');
        match value {
            SummaryValue::Number(n) => number(out, *n)?,
            SummaryValue::Text(text) => string(out, text)?,
        }
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests;
