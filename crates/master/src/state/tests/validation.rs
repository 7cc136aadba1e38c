//! Validation at the edge: numbers and names from the wire that used to
//! panic the actor or overflow its stack (issue 10, items 1, 2 and 14).

use super::*;

/// Refusals a hostile or buggy framework may send, and what each becomes.
const HOSTILE_REFUSALS: [f64; 7] = [1e19, 1.8e19, 1e300, f64::MAX, f64::INFINITY, f64::NAN, -1.0];

const YEAR: f64 = 365.0 * 24.0 * 3600.0;

#[test]
fn decline_with_any_refuse_seconds_never_panics_and_is_capped_at_a_year() {
    for refuse in HOSTILE_REFUSALS {
        let (mut h, agent, fw, offer) = one_agent_one_offer();
        h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(refuse)));
        assert_eq!(h.free(&agent), res("cpus:2;mem:1024"), "{refuse}: back");
        h.advance(4.0);
        assert!(h.offers_for(&fw).is_empty(), "{refuse}: filtered at +4 s");
        // NaN and negative mean the default 5 s; huge ones are capped at a year.
        let expires = if refuse.is_nan() || refuse < 0.0 {
            5.0
        } else {
            YEAR
        };
        h.advance(expires - 4.0 - 1.0);
        assert!(
            h.offers_for(&fw).is_empty(),
            "{refuse}: filtered until then"
        );
        h.advance(2.0);
        assert_eq!(h.offers_for(&fw).len(), 1, "{refuse}: offered again");
    }
}

#[test]
fn accept_with_any_refuse_seconds_never_panics() {
    for refuse in HOSTILE_REFUSALS {
        let (mut h, agent, fw, offer) = one_agent_one_offer();
        let task = command_task("t1", &agent, "cpus:1;mem:128");
        let out = h.call_ok(
            &fw,
            launch_call(&fw.id, &[offer_id(&offer)], vec![task], Some(refuse)),
        );
        assert_eq!(run_tasks(&out).len(), 1, "{refuse}: launched");
        h.advance(4.0);
        assert!(
            h.offers_for(&fw).is_empty(),
            "{refuse}: the remainder is refused for at least the default 5 s"
        );
    }
}

#[test]
fn subscribe_with_a_huge_or_nan_failover_timeout_is_refused_not_a_panic() {
    let mut h = Harness::new();
    for timeout in [1e300, f64::INFINITY, f64::NAN, -1.0, 1e19] {
        let info = pb::FrameworkInfo {
            failover_timeout: Some(timeout),
            ..framework_info("x")
        };
        let (result, out) = h.subscribe(10, info);
        assert!(
            matches!(&result, Err(CallError::InvalidArgument(m)) if m.contains("failover_timeout")),
            "{timeout}: {result:?}"
        );
        assert!(out.is_empty());
    }
    // The longest accepted timeout, then a disconnection: the deadline is
    // computed without overflow and the framework waits for it.
    let fw = h.subscribe_ok(
        10,
        pb::FrameworkInfo {
            failover_timeout: Some(YEAR),
            ..framework_info("x")
        },
    );
    h.framework_gone(fw.conn);
    h.advance(YEAR - 1.0);
    h.tick();
    assert!(h.master.frameworks.contains_key(&fw.id), "still waiting");
    h.advance(2.0);
    h.tick();
    assert!(!h.master.frameworks.contains_key(&fw.id), "removed");
}

#[test]
fn subscribe_with_a_ten_thousand_level_role_is_refused_with_a_clear_error() {
    let mut h = Harness::new();
    let _agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let deep = vec!["r"; 10_000].join("/");
    let too_deep = vec!["r"; agora_core::role::MAX_ROLE_DEPTH + 1].join("/");
    for (role, needle) in [(&deep, "longer than 512 bytes"), (&too_deep, "levels")] {
        for info in [
            pb::FrameworkInfo {
                role: Some(role.clone()),
                ..framework_info("deep")
            },
            pb::FrameworkInfo {
                roles: vec!["ok".into(), role.clone()],
                ..framework_info("deep")
            },
        ] {
            let (result, out) = h.subscribe(10, info);
            let Err(CallError::InvalidArgument(message)) = result else {
                panic!("refused as invalid: {result:?}");
            };
            assert!(message.contains(needle), "{message}");
            assert!(
                message.len() < 200,
                "the error quotes the role's start only"
            );
            assert!(out.is_empty());
        }
    }
    assert!(h.master.frameworks.is_empty());
    // The deepest role accepted subscribes and is offered resources.
    let deepest = vec!["r"; agora_core::role::MAX_ROLE_DEPTH].join("/");
    let fw = h.subscribe_ok(
        10,
        pb::FrameworkInfo {
            roles: vec![deepest],
            ..framework_info("deep")
        },
    );
    assert_eq!(h.offers_for(&fw).len(), 1);
}

#[test]
fn operator_calls_and_resources_refuse_deep_roles() {
    let mut h = Harness::new();
    let deep = vec!["r"; 10_000].join("/");
    let mut out = Vec::new();
    let result = h.master.operator(
        h.now(),
        OperatorCall::SetWeights(vec![(deep.clone(), 2.0)]),
        &mut out,
    );
    assert!(
        matches!(&result, Err(OperatorError::Invalid(m)) if m.contains("longer than")),
        "{result:?}"
    );
    let result = h
        .master
        .operator(h.now(), OperatorCall::RemoveQuota(deep.clone()), &mut out);
    assert!(
        matches!(result, Err(OperatorError::Invalid(_))),
        "{result:?}"
    );
    assert!(out.is_empty());
    // Reservations in an agent's `--resources` or a task's resources are
    // parsed by `Resources`, which applies the same rules.
    let err = Resources::parse(&format!("cpus({deep}):1")).expect_err("refused");
    assert!(err.to_string().contains("longer than"), "{err}");
}

fn reservation_types(offer: &pb::Offer) -> Vec<(String, Option<i32>)> {
    offer
        .resources
        .iter()
        .filter_map(|r| r.reservations.last())
        .map(|r| (r.role.clone().unwrap_or_default(), r.r#type))
        .collect()
}

#[test]
fn a_dynamic_reservation_is_reported_as_dynamic_and_unreserve_never_removes_a_static_one() {
    use pb::resource::reservation_info::Type as Kind;
    let mut h = Harness::new();
    // `cpus(ops):1` is the agent's own, static, reservation.
    let agent = h.register_agent(1, "a1", "cpus:3;cpus(ops):1;mem:1024");
    let mut out = Vec::new();
    let reserve = OperatorCall::Reserve {
        agent_id: agent.to_string(),
        resources: res("cpus(ops):1"),
    };
    h.master
        .operator(h.now(), reserve, &mut out)
        .expect("reserved");
    assert_eq!(
        h.master.agents[&agent].total,
        res("cpus:2;cpus(ops):1;cpus(ops, dynamic):1;mem:1024")
    );
    let ops = h.subscribe_ok(
        10,
        pb::FrameworkInfo {
            roles: vec!["ops".into()],
            ..framework_info("ops")
        },
    );
    let offer = h.one_offer(&ops);
    let mut kinds = reservation_types(&offer);
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("ops".to_string(), Some(Kind::Static as i32)),
            ("ops".to_string(), Some(Kind::Dynamic as i32)),
        ],
        "{offer:?}"
    );
    // A framework's UNRESERVE of both: refused, nothing changes.
    let (result, _) = h.call(
        &ops,
        accept_ops(&ops.id, &offer, vec![unreserve_op("cpus(ops):2")]),
    );
    assert!(result.is_err(), "only one cpus(ops) is dynamic: {result:?}");
    h.call_ok(&ops, decline_call(&ops.id, &[offer_id(&offer)], Some(0.0)));
    h.call_ok(&ops, base_call(&ops.id, CallType::Suppress));
    // The operator's UNRESERVE of both: refused; of one: the dynamic one goes.
    let unreserve = |text: &str| OperatorCall::Unreserve {
        agent_id: agent.to_string(),
        resources: res(text),
    };
    let result = h
        .master
        .operator(h.now(), unreserve("cpus(ops):2"), &mut out);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "{result:?}"
    );
    h.master
        .operator(h.now(), unreserve("cpus(ops):1"), &mut out)
        .expect("the dynamic one");
    let static_only = res("cpus:3;cpus(ops):1;mem:1024");
    assert_eq!(h.master.agents[&agent].total, static_only);
    let result = h
        .master
        .operator(h.now(), unreserve("cpus(ops):1"), &mut out);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "the static one stays: {result:?}"
    );
    assert_eq!(h.master.agents[&agent].total, static_only);
    // Even named as dynamic reservations do not touch the static one.
    let result = h
        .master
        .operator(h.now(), unreserve("cpus(ops, dynamic):1"), &mut out);
    assert!(result.is_err());
    assert_eq!(h.free(&agent), static_only);
}

#[test]
fn a_framework_cannot_unreserve_an_agents_static_reservation() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus(ops):2;mem(ops):512");
    let ops = h.subscribe_ok(
        10,
        pb::FrameworkInfo {
            roles: vec!["ops".into()],
            ..framework_info("ops")
        },
    );
    let offer = h.one_offer(&ops);
    let (result, out) = h.call(
        &ops,
        accept_ops(&ops.id, &offer, vec![unreserve_op("cpus(ops):1")]),
    );
    assert!(
        matches!(&result, Err(CallError::InvalidArgument(m)) if m.contains("remain in the offers")),
        "{result:?}"
    );
    assert!(registry_writes(&out).is_empty());
    assert_eq!(
        h.master.agents[&agent].total,
        res("cpus(ops):2;mem(ops):512")
    );
}
