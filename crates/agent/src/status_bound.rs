//! Bounds on what an executor may put into a status update, applied where
//! the agent takes the update in: whatever an executor sends, the update the
//! agent checkpoints and forwards stays well under the gRPC message limit,
//! so it can never break the agent's session to the master (or the
//! master's to the framework, which wraps it once more).

use agora_proto::v1 as pb;
use prost::Message;

/// The longest `TaskStatus.message` forwarded; longer ones are cut (at a
/// character boundary) and marked.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 64 * 1024;

/// The largest encoded update forwarded: a quarter of the gRPC message
/// limit, leaving room for the envelopes around it. An update whose `data`
/// would take it past this loses its `data` (with a note in its message):
/// its state still reaches the framework.
pub const MAX_STATUS_BYTES: usize = agora_net::MAX_MESSAGE_BYTES / 4;

/// Cuts `status` down to the bounds; returns what was cut, for a warning.
pub fn bound_status(status: &mut pb::TaskStatus) -> Option<String> {
    let mut cut = Vec::new();
    if let Some(message) = &mut status.message
        && message.len() > MAX_STATUS_MESSAGE_BYTES
    {
        let original = message.len();
        let mut end = MAX_STATUS_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(&format!(
            " [truncated by the agent: {original} bytes, over the {MAX_STATUS_MESSAGE_BYTES}-byte limit]"
        ));
        cut.push(format!("message of {original} bytes truncated"));
    }
    if status.encoded_len() > MAX_STATUS_BYTES
        && let Some(data) = status.data.take()
    {
        let note = format!(
            "[data of {} bytes dropped by the agent: the update would exceed {MAX_STATUS_BYTES} bytes]",
            data.len()
        );
        status.message = Some(match status.message.take() {
            Some(message) if !message.is_empty() => format!("{message} {note}"),
            _ => note,
        });
        cut.push(format!("data of {} bytes dropped", data.len()));
    }
    (!cut.is_empty()).then(|| cut.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(message: &str, data: usize) -> pb::TaskStatus {
        pb::TaskStatus {
            task_id: Some(pb::TaskId { value: "t1".into() }),
            state: Some(pb::TaskState::TaskFinished as i32),
            message: Some(message.into()),
            data: (data > 0).then(|| vec![7; data]),
            uuid: Some(vec![1; 16]),
            ..Default::default()
        }
    }

    #[test]
    fn a_small_update_is_left_alone() {
        let mut small = status("done", 1024);
        let before = small.clone();
        assert_eq!(bound_status(&mut small), None);
        assert_eq!(small, before);
    }

    #[test]
    fn a_long_message_is_truncated_at_a_character_boundary_and_marked() {
        // Multi-byte characters straddle the cut.
        let mut long = status(&"é".repeat(MAX_STATUS_MESSAGE_BYTES), 0);
        assert!(bound_status(&mut long).is_some());
        let message = long.message.unwrap_or_default();
        assert!(
            message.len() < MAX_STATUS_MESSAGE_BYTES + 200,
            "{}",
            message.len()
        );
        assert!(message.contains("truncated by the agent"), "{message}");
    }

    #[test]
    fn data_that_would_break_the_session_is_dropped_and_the_state_kept() {
        let mut big = status("done", agora_net::MAX_MESSAGE_BYTES);
        let cut = bound_status(&mut big).expect("something was cut");
        assert!(cut.contains("data"), "{cut}");
        assert_eq!(big.data, None);
        assert_eq!(big.state, Some(pb::TaskState::TaskFinished as i32));
        assert!(big.encoded_len() <= MAX_STATUS_BYTES);
        let message = big.message.unwrap_or_default();
        assert!(message.starts_with("done ["), "{message}");
        assert!(message.contains("dropped by the agent"), "{message}");
    }
}
