//! Framework reservations (`state/launch.rs`): the RESERVE and UNRESERVE
//! offer operations.

use super::*;

pub(super) fn accept_ops(
    framework_id: &FrameworkId,
    offer: &pb::Offer,
    operations: Vec<pb::offer::Operation>,
) -> sched::Call {
    sched::Call {
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer_id(offer)],
            operations,
            filters: Some(pb::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..base_call(framework_id, CallType::Accept)
    }
}

pub(super) fn reserve_op(resources: &str) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Reserve as i32),
        reserve: Some(pb::offer::operation::Reserve {
            source: Vec::new(),
            resources: res(resources).to_proto(None),
        }),
        ..Default::default()
    }
}

pub(super) fn unreserve_op(resources: &str) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Unreserve as i32),
        unreserve: Some(pb::offer::operation::Unreserve {
            resources: res(resources).to_proto(None),
        }),
        ..Default::default()
    }
}

fn launch_op(task: pb::TaskInfo) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Launch as i32),
        launch: Some(pb::offer::operation::Launch {
            task_infos: vec![task],
        }),
        ..Default::default()
    }
}

fn in_role(name: &str, role: &str) -> pb::FrameworkInfo {
    let mut info = framework_info(name);
    info.roles = vec![role.into()];
    info
}

#[test]
fn a_framework_reserves_for_its_role_launches_on_the_reservation_and_unreserves() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let ops = h.subscribe_ok(10, in_role("ops-fw", "ops"));
    let offer = h.one_offer(&ops);
    let out = h.call_ok(
        &ops,
        accept_ops(
            &ops.id,
            &offer,
            vec![
                reserve_op("cpus(ops):1;mem(ops):256"),
                launch_op(command_task(
                    "t1",
                    &agent,
                    "cpus(ops, dynamic):0.5;mem(ops, dynamic):128",
                )),
            ],
        ),
    );
    assert_eq!(run_tasks(&out).len(), 1);
    assert_eq!(
        h.master.agents[&agent].total,
        res("cpus:1;mem:768;cpus(ops, dynamic):1;mem(ops, dynamic):256")
    );
    let writes = registry_writes(&out);
    assert_eq!(
        writes.len(),
        1,
        "the reservation is kept with the agent's registry entry"
    );
    assert!(
        writes[0].resources.contains("cpus(ops, dynamic):1"),
        "{}",
        writes[0].resources
    );

    // Another role is never offered the reserved part.
    let dev = h.subscribe_ok(11, in_role("dev-fw", "dev"));
    let out = h.allocate();
    for offer in offers_to(&out, dev.conn) {
        assert!(
            !offer_resources(&offer).to_string().contains("(ops"),
            "{offer:?}"
        );
    }
    let mut held: Vec<pb::Offer> = offers_to(&out, ops.conn);
    // The reserving framework's task ends; it unreserves what it holds.
    h.agent_says(
        1,
        status_update(&ops.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    h.call_ok(&ops, ack_call(&ops.id, &agent, "t1", uuid(1)));
    // The reservation may come back in more than one offer: accept them together.
    let wanted = res("cpus(ops, dynamic):1;mem(ops, dynamic):256");
    for _ in 0..4 {
        held.extend(offers_to(&h.allocate(), ops.conn));
        let mut pool = Resources::new();
        for o in &held {
            pool.add(&offer_resources(o));
        }
        if pool.contains(&wanted) {
            break;
        }
        h.advance(6.0);
    }
    let ids: Vec<pb::OfferId> = held.iter().map(offer_id).collect();
    let mut call = accept_ops(
        &ops.id,
        &held[0],
        vec![unreserve_op("cpus(ops):1;mem(ops):256")],
    );
    if let Some(accept) = call.accept.as_mut() {
        accept.offer_ids = ids;
    }
    h.call_ok(&ops, call);
    assert_eq!(h.master.agents[&agent].total, res("cpus:2;mem:1024"));
}

#[test]
fn bad_reservations_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let star = h.subscribe_framework(10, "star");
    let offer = h.one_offer(&star);
    let (result, _) = h.call(
        &star,
        accept_ops(&star.id, &offer, vec![reserve_op("cpus(ops):1")]),
    );
    assert_error(result, ErrKind::InvalidArgument, "role '*'");
    let ops = h.subscribe_ok(11, in_role("ops-fw", "ops"));
    h.framework_gone(10);
    let offer = h.one_offer(&ops);
    for (op, needle) in [
        (
            reserve_op("cpus(dev):1"),
            "must all be reserved for role 'ops'",
        ),
        (reserve_op("cpus(ops):5"), "remain in the offers"),
        (unreserve_op("cpus(ops):1"), "remain in the offers"),
    ] {
        let before = h.master.agents[&agent].total.clone();
        let (result, out) = h.call(&ops, accept_ops(&ops.id, &offer, vec![op]));
        assert_error(result, ErrKind::InvalidArgument, needle);
        assert!(registry_writes(&out).is_empty());
        assert_eq!(h.master.agents[&agent].total, before);
        assert!(
            h.master
                .offers
                .contains_key(&agora_core::OfferId::new(offer_id(&offer).value))
        );
    }
}
