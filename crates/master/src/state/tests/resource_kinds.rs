//! A resource name has one type across the cluster: an agent (or a task it
//! reports) that gives a name another type is refused at registration, so
//! no sum across agents meets a conflict that `Resources::add` would skip.

use super::*;

fn refusal(out: &[Effect], conn: ConnId) -> String {
    match &agent_messages(out, conn)[..] {
        [master_message::Kind::Refused(r)] => r.message.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_agent_giving_a_resource_another_type_than_the_cluster_is_refused() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:2;mem:64;licenses:{x,y}");
    let (id, out) = h.register(
        2,
        register_msg(agent_info("a2", "cpus:2;mem:64;licenses:3")),
    );
    assert_eq!(id, None);
    let message = refusal(&out, 2);
    assert!(
        message.contains("'licenses' is a scalar, but a set on the other agents"),
        "{message}"
    );
    assert_eq!(h.master.agents.len(), 1);
    // The same name with the cluster's type is fine, and the cluster sums agree.
    h.register_agent(3, "a3", "cpus:2;mem:64;licenses:{z}");
    let mut total = Resources::new();
    for agent in h.master.agents.values() {
        total.try_add(&agent.total).expect("agents agree on types");
    }
    assert_eq!(total, res("cpus:4;mem:128;licenses:{x,y,z}"));
}

#[test]
fn a_reported_task_giving_a_resource_another_type_than_its_agent_is_refused() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:64;slots:[1-4]");
    let fw = h.subscribe_framework(10, "fw");
    h.agent_gone(1);
    let mut register = register_msg(agent_info("a1", "cpus:2;mem:64;slots:[1-4]"));
    register.agent_info.as_mut().expect("info").id = Some(agent.to_proto());
    register.tasks = vec![reported_task(
        "t1",
        &fw.id,
        &agent,
        pb::TaskState::TaskRunning,
        "cpus:1;slots:2",
    )];
    let (id, out) = h.register(2, register);
    assert_eq!(id, None);
    let message = refusal(&out, 2);
    assert!(
        message.contains("reported task t1 gives resource 'slots'"),
        "{message}"
    );
}
