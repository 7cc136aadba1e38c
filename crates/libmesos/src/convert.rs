//! Mesos v0 messages (what Java speaks) to and from Agora's v1 types.
//!
//! Agora's `proto/agora/v1` keeps Mesos' field numbers and wire types, so a
//! message converts by encoding it as one type and decoding it as the other
//! ([`Pair`]). That is only sound while the two schemas agree field by field:
//! `tests/schema_pairs.rs` checks every pair declared here, so a renumbered
//! or retyped field fails a test instead of corrupting a message. The few
//! places where the schemas really differ are converted by hand below:
//! task status reasons (those Mesos 1.4 lacks), RESERVE operations, and what
//! Agora cannot honour (container images).
//!
//! Required v0 fields are plain values in the generated code, so encoding a
//! v0 message always writes them: whatever leaves here passes Java's
//! `parseFrom`.

use agora_proto::mesos_v0 as v0;
use agora_proto::v1;
use prost::Message;

/// Why a message could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The bytes are not a valid encoding of the message.
    #[error("malformed {message}: {source}")]
    Decode {
        /// The message type, e.g. `mesos.TaskInfo`.
        message: &'static str,
        /// The decoder's complaint.
        source: prost::DecodeError,
    },
    /// The message asks for something Agora does not do.
    #[error("{0}")]
    Unsupported(String),
}

/// A v1 message whose v0 counterpart has the same field numbers and wire
/// types for every field both declare.
pub trait Pair: Message + Default {
    /// The Mesos v0 message.
    type V0: Message + Default;
    /// The v0 message's full name, for errors.
    const V0_NAME: &'static str;
}

macro_rules! pairs {
    ($($v1:ty => $v0:ty, $v1_name:literal => $name:literal;)*) => {
        $(impl Pair for $v1 {
            type V0 = $v0;
            const V0_NAME: &'static str = $name;
        })*
        /// The (v1, v0) full protobuf names of every [`Pair`], for the
        /// schema test.
        pub const PAIRS: &[(&str, &str)] = &[$(($v1_name, $name)),*];
    };
}

pairs! {
    v1::FrameworkId => v0::FrameworkId, "agora.v1.FrameworkID" => "mesos.FrameworkID";
    v1::OfferId => v0::OfferId, "agora.v1.OfferID" => "mesos.OfferID";
    v1::AgentId => v0::SlaveId, "agora.v1.AgentID" => "mesos.SlaveID";
    v1::TaskId => v0::TaskId, "agora.v1.TaskID" => "mesos.TaskID";
    v1::ExecutorId => v0::ExecutorId, "agora.v1.ExecutorID" => "mesos.ExecutorID";
    v1::MasterInfo => v0::MasterInfo, "agora.v1.MasterInfo" => "mesos.MasterInfo";
    v1::AgentInfo => v0::SlaveInfo, "agora.v1.AgentInfo" => "mesos.SlaveInfo";
    v1::Offer => v0::Offer, "agora.v1.Offer" => "mesos.Offer";
    v1::TaskInfo => v0::TaskInfo, "agora.v1.TaskInfo" => "mesos.TaskInfo";
    v1::TaskStatus => v0::TaskStatus, "agora.v1.TaskStatus" => "mesos.TaskStatus";
    v1::ExecutorInfo => v0::ExecutorInfo, "agora.v1.ExecutorInfo" => "mesos.ExecutorInfo";
    v1::FrameworkInfo => v0::FrameworkInfo, "agora.v1.FrameworkInfo" => "mesos.FrameworkInfo";
    v1::Filters => v0::Filters, "agora.v1.Filters" => "mesos.Filters";
    v1::Resource => v0::Resource, "agora.v1.Resource" => "mesos.Resource";
}

/// Re-reads `from`'s encoding as `To`.
fn transcode<To: Message + Default>(
    from: &impl Message,
    message: &'static str,
) -> Result<To, ConvertError> {
    To::decode(from.encode_to_vec().as_slice())
        .map_err(|source| ConvertError::Decode { message, source })
}

/// Decodes a v0 message from the bytes Java's `toByteArray` gave.
pub fn decode_v0<T: Pair>(bytes: &[u8]) -> Result<T::V0, ConvertError> {
    T::V0::decode(bytes).map_err(|source| ConvertError::Decode {
        message: T::V0_NAME,
        source,
    })
}

/// The v0 form of an Agora message (for Java).
pub fn to_v0<T: Pair>(message: &T) -> Result<T::V0, ConvertError> {
    transcode(message, T::V0_NAME)
}

/// The Agora form of a v0 message (from Java).
pub fn from_v0<T: Pair>(message: &T::V0) -> Result<T, ConvertError> {
    transcode(message, T::V0_NAME)
}

/// A task status for Java: reasons mapped to Mesos 1.4's numbers, and the
/// agent filled in from `known_agent` when the update lacks it (Spark looks
/// every update's agent up).
pub fn status_to_v0(
    status: &v1::TaskStatus,
    known_agent: Option<&v1::AgentId>,
) -> Result<v0::TaskStatus, ConvertError> {
    let mut out: v0::TaskStatus = to_v0(status)?;
    out.reason = status.reason.and_then(reason_to_v0);
    if out.slave_id.is_none() {
        out.slave_id = known_agent.map(|a| v0::SlaveId {
            value: a.value.clone(),
        });
    }
    Ok(out)
}

/// A task status from Java (an executor's update).
pub fn status_from_v0(status: &v0::TaskStatus) -> Result<v1::TaskStatus, ConvertError> {
    let mut out: v1::TaskStatus = from_v0(status)?;
    out.reason = status.reason.and_then(reason_from_v0);
    Ok(out)
}

/// A reason for Java: the reasons Mesos 1.4 lacks become the nearest it has
/// (or none); the rest share Mesos' numbers.
fn reason_to_v0(reason: i32) -> Option<i32> {
    use v0::task_status::Reason as R0;
    use v1::task_status::Reason as R1;
    let v1_reason = R1::try_from(reason).ok()?;
    Some(match v1_reason {
        R1::FetcherFailed => R0::ContainerLaunchFailed as i32,
        // Mesos 1.4 has no "agent re-registered"; the message says it.
        R1::AgentReregistered => return None,
        // The rest share Mesos' numbers.
        other => {
            let n = other as i32;
            R0::try_from(n).ok()? as i32
        }
    })
}

/// A reason from Java: every Mesos 1.4 reason has Agora's number; one
/// Agora does not know is dropped.
fn reason_from_v0(reason: i32) -> Option<i32> {
    use v1::task_status::Reason as R1;
    R1::try_from(reason).ok().map(|r| r as i32)
}

/// A task to launch, from Java. Refuses container images: Agora runs tasks
/// on the agent's own filesystem, and silently running a task meant for an
/// image on the host would be worse than failing it.
pub fn task_from_v0(task: &v0::TaskInfo) -> Result<v1::TaskInfo, ConvertError> {
    refuse_images(task.container.as_ref(), &task.task_id.value)?;
    if let Some(executor) = &task.executor {
        refuse_images(executor.container.as_ref(), &task.task_id.value)?;
    }
    from_v0(task)
}

fn refuse_images(container: Option<&v0::ContainerInfo>, task: &str) -> Result<(), ConvertError> {
    let Some(container) = container else {
        return Ok(());
    };
    if let Some(docker) = &container.docker {
        return Err(ConvertError::Unsupported(format!(
            "task {task} asks for the docker image {:?}; Agora runs tasks without container images",
            docker.image
        )));
    }
    if container.r#type() == v0::container_info::Type::Docker {
        return Err(ConvertError::Unsupported(format!(
            "task {task} asks for the docker containerizer; Agora runs tasks without container images"
        )));
    }
    if container.mesos.as_ref().is_some_and(|m| m.image.is_some()) {
        return Err(ConvertError::Unsupported(format!(
            "task {task} asks for a container image; Agora runs tasks without container images"
        )));
    }
    Ok(())
}

/// An offer operation from Java.
///
/// Mesos 1.4's RESERVE names only the resources with their new reservation;
/// Agora's also names the source (the same resources as offered, without
/// it), derived here by dropping the last reservation of each resource.
pub fn operation_from_v0(
    operation: &v0::offer::Operation,
) -> Result<v1::offer::Operation, ConvertError> {
    use v0::offer::operation::Type as T0;
    use v1::offer::operation as op1;
    let resources = |list: &[v0::Resource]| -> Result<Vec<v1::Resource>, ConvertError> {
        list.iter().map(from_v0::<v1::Resource>).collect()
    };
    let kind = operation.r#type();
    let mut out = v1::offer::Operation {
        r#type: Some(kind as i32),
        ..Default::default()
    };
    match kind {
        T0::Launch => {
            let tasks = operation
                .launch
                .as_ref()
                .map(|l| l.task_infos.iter().map(task_from_v0).collect())
                .transpose()?
                .unwrap_or_default();
            out.launch = Some(op1::Launch { task_infos: tasks });
        }
        T0::Reserve => {
            let wanted = resources(
                operation
                    .reserve
                    .as_ref()
                    .map(|r| r.resources.as_slice())
                    .unwrap_or_default(),
            )?;
            let source = wanted
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.reservations.pop();
                    r
                })
                .collect();
            out.reserve = Some(op1::Reserve {
                source,
                resources: wanted,
            });
        }
        T0::Unreserve => {
            let list = resources(
                operation
                    .unreserve
                    .as_ref()
                    .map(|r| r.resources.as_slice())
                    .unwrap_or_default(),
            )?;
            out.unreserve = Some(op1::Unreserve { resources: list });
        }
        other => {
            return Err(ConvertError::Unsupported(format!(
                "offer operation {} is not supported by Agora",
                other.as_str_name()
            )));
        }
    }
    Ok(out)
}

/// The task ids an operation would launch (to report them lost when the
/// operation cannot be sent).
pub fn launched_tasks(operation: &v1::offer::Operation) -> Vec<(v1::TaskId, Option<v1::AgentId>)> {
    operation
        .launch
        .iter()
        .flat_map(|l| &l.task_infos)
        .filter_map(|t| Some((t.task_id.clone()?, t.agent_id.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
