//! Operator control (TEARDOWN, KILL_TASK, MARK_AGENT_GONE) and the
//! framework's SHUTDOWN of an executor.

use super::*;

impl Harness {
    fn control(&mut self, call: OperatorCall) -> (Result<(), OperatorError>, Vec<Effect>) {
        let mut out = Vec::new();
        let result = self.master.operator(self.now(), call, &mut out);
        (result, out)
    }
}

fn kill_by_operator(
    task_id: &str,
    framework_id: Option<&FrameworkId>,
    reason: &str,
) -> OperatorCall {
    OperatorCall::KillTask {
        framework_id: framework_id.map(ToString::to_string),
        task_id: task_id.into(),
        reason: Some(reason.into()),
    }
}

fn kill_tasks(effects: &[Effect], conn: ConnId) -> Vec<master_message::KillTask> {
    agent_messages(effects, conn)
        .into_iter()
        .filter_map(|m| match m {
            master_message::Kind::KillTask(kill) => Some(kill),
            _ => None,
        })
        .collect()
}

#[test]
fn an_operator_kill_reaches_the_agent_with_who_asked_and_why() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );

    let (result, out) = h.control(kill_by_operator("t1", None, "runaway job"));
    assert_eq!(result, Ok(()));
    let kills = kill_tasks(&out, 1);
    assert_eq!(kills.len(), 1, "{out:?}");
    assert_eq!(kills[0].task_id, Some(pb::TaskId { value: "t1".into() }));
    assert_eq!(kills[0].framework_id, fw.id.to_field());
    assert_eq!(
        kills[0].message.as_deref(),
        Some("killed by an operator: runaway job")
    );

    // A framework's own kill says so too.
    let out = h.call_ok(&fw, kill_call(&fw.id, "t1"));
    assert_eq!(
        kill_tasks(&out, 1)[0].message.as_deref(),
        Some("killed by the framework")
    );
}

#[test]
fn an_operator_kill_of_an_unknown_ambiguous_or_invalid_task_changes_nothing() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:4;mem:1024");
    let one = h.subscribe_framework(10, "one");
    let two = h.subscribe_framework(11, "two");
    let offer = h.one_offer(&one);
    launch_one(
        &mut h,
        &one,
        &offer,
        command_task("same", &agent, "cpus:1;mem:128"),
    );
    let offer = h.one_offer(&two);
    launch_one(
        &mut h,
        &two,
        &offer,
        command_task("same", &agent, "cpus:1;mem:128"),
    );

    let (result, out) = h.control(kill_by_operator("nope", None, "x"));
    assert!(
        matches!(result, Err(OperatorError::NotFound(_))),
        "{result:?}"
    );
    assert!(out.is_empty());

    let (result, out) = h.control(kill_by_operator("same", None, "x"));
    let Err(OperatorError::Invalid(why)) = result else {
        panic!("expected ambiguity, got {result:?}");
    };
    assert!(
        why.contains(one.id.as_str()) && why.contains(two.id.as_str()),
        "{why}"
    );
    assert!(out.is_empty());

    let (result, out) = h.control(kill_by_operator("same", Some(&two.id), "x"));
    assert_eq!(result, Ok(()));
    assert_eq!(kill_tasks(&out, 1)[0].framework_id, two.id.to_field());

    let (result, out) = h.control(kill_by_operator("../etc", None, "x"));
    assert!(
        matches!(result, Err(OperatorError::Invalid(_))),
        "{result:?}"
    );
    assert!(out.is_empty());

    let (result, _) = h.control(kill_by_operator("same", None, &"r".repeat(2000)));
    assert!(
        matches!(result, Err(OperatorError::Invalid(_))),
        "{result:?}"
    );
}

#[test]
fn an_operator_teardown_removes_the_framework_and_kills_its_tasks() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );

    let (result, out) = h.control(OperatorCall::Teardown {
        framework_id: fw.id.to_string(),
    });
    assert_eq!(result, Ok(()));
    assert!(
        error_messages_to(&out, fw.conn)
            .iter()
            .any(|m| m.contains("removed")),
        "{out:?}"
    );
    assert!(
        agent_messages(&out, 1)
            .iter()
            .any(|m| matches!(m, master_message::Kind::ShutdownFramework(_)))
    );
    assert!(!h.master.frameworks.contains_key(&fw.id));

    // Again: it is gone, and the call says so without changing anything.
    let (result, out) = h.control(OperatorCall::Teardown {
        framework_id: fw.id.to_string(),
    });
    assert!(
        matches!(result, Err(OperatorError::NotFound(_))),
        "{result:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn an_agent_marked_gone_by_an_operator_reports_its_tasks_gone_by_operator() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_ok(10, partition_aware(framework_info("fw")));
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );

    let (result, out) = h.control(OperatorCall::MarkAgentGone {
        agent_id: agent.to_string(),
    });
    assert_eq!(result, Ok(()));
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskGoneByOperator);
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Registry(entry) if matches!(entry.state, RegistryAgentState::Gone { .. })
    )));

    // Idempotent; an unknown agent is refused.
    let (result, out) = h.control(OperatorCall::MarkAgentGone {
        agent_id: agent.to_string(),
    });
    assert_eq!(result, Ok(()));
    assert!(out.is_empty());
    let (result, _) = h.control(OperatorCall::MarkAgentGone {
        agent_id: "m1-S99".into(),
    });
    assert!(
        matches!(result, Err(OperatorError::NotFound(_))),
        "{result:?}"
    );
}

#[test]
fn a_framework_shutdown_of_an_executor_reaches_its_agent() {
    let (mut h, agent, fw, _offer) = one_agent_one_offer();
    let mut call = base_call(&fw.id, CallType::Shutdown);
    call.shutdown = Some(sched::call::Shutdown {
        executor_id: Some(pb::ExecutorId { value: "e1".into() }),
        agent_id: agent.to_field(),
    });
    let out = h.call_ok(&fw, call);
    match &agent_messages(&out, 1)[..] {
        [master_message::Kind::ShutdownExecutor(s)] => {
            assert_eq!(s.framework_id, fw.id.to_field());
            assert_eq!(s.executor_id, Some(pb::ExecutorId { value: "e1".into() }));
        }
        other => panic!("expected ShutdownExecutor, got {other:?}"),
    }

    // Without an executor id it is refused.
    let mut call = base_call(&fw.id, CallType::Shutdown);
    call.shutdown = Some(sched::call::Shutdown {
        executor_id: None,
        agent_id: agent.to_field(),
    });
    let result = h.call(&fw, call).0;
    assert!(
        matches!(result, Err(CallError::InvalidArgument(_))),
        "{result:?}"
    );
}
