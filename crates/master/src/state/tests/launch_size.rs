//! A launch whose message to the agent would be larger than a gRPC message
//! may be is refused at ACCEPT, never forwarded to break the agent's session.

use super::*;

#[test]
fn a_launch_too_large_for_one_message_is_refused_with_task_error() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut task = command_task("big", &agent, "cpus:1");
    task.data = Some(vec![b'x'; agora_net::MAX_MESSAGE_BYTES]);
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![task], None),
        ErrKind::InvalidArgument,
        "launch message would be",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["big"],
    );
    // The offer is still good for a task that fits.
    launch_one(&mut h, &fw, &offer, command_task("small", &agent, "cpus:1"));
}

#[test]
fn the_launch_size_is_the_encoded_size_of_the_message_sent() {
    use prost::Message as _;
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut task = command_task("t1", &agent, "cpus:1");
    task.data = Some(vec![b'x'; 300]);
    let out = launch_one(&mut h, &fw, &offer, task);
    let (_, run_task) = run_tasks(&out).pop().expect("one RunTask");
    let message = MasterMessage {
        kind: Some(master_message::Kind::RunTask(run_task.clone())),
    };
    let framework = run_task.framework.as_ref().expect("framework");
    let task = run_task.task.as_ref().expect("task");
    assert_eq!(
        super::super::launch::run_task_len(framework, task),
        message.encoded_len()
    );
}
