//! Operator calls (weights, quota, reservations), their registry effects and
//! recovery, event-driven allocation, "why no offer?", and starvation with
//! the real allocator.

use super::*;
use agora_allocator::Quota;

fn in_role(name: &str, role: &str) -> pb::FrameworkInfo {
    let mut info = framework_info(name);
    info.roles = vec![role.into()];
    info
}

fn quota(guarantee: &str, limit: &str) -> Quota {
    Quota {
        guarantee: res(guarantee),
        limit: res(limit),
    }
}

impl Harness {
    fn operator(&mut self, call: OperatorCall) -> (Result<(), OperatorError>, Vec<Effect>) {
        let mut out = Vec::new();
        let result = self.master.operator(self.now(), call, &mut out);
        (result, out)
    }

    fn set_weights(&mut self, weights: &[(&str, f64)]) -> (Result<(), OperatorError>, Vec<Effect>) {
        self.operator(OperatorCall::SetWeights(
            weights.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
        ))
    }

    fn set_quota(
        &mut self,
        role: &str,
        q: Quota,
        force: bool,
    ) -> (Result<(), OperatorError>, Vec<Effect>) {
        self.operator(OperatorCall::UpdateQuotas {
            quotas: vec![(role.to_string(), q)],
            force,
        })
    }

    fn reserve(
        &mut self,
        agent: &AgentId,
        resources: &str,
        reserve: bool,
    ) -> (Result<(), OperatorError>, Vec<Effect>) {
        let agent_id = agent.to_string();
        let resources = res(resources);
        self.operator(if reserve {
            OperatorCall::Reserve {
                agent_id,
                resources,
            }
        } else {
            OperatorCall::Unreserve {
                agent_id,
                resources,
            }
        })
    }

    fn pending(&mut self) -> (Option<usize>, Vec<Effect>) {
        let mut out = Vec::new();
        let visited = self.master.allocate_pending(self.now(), &mut out);
        (visited, out)
    }
}

fn policy_writes(effects: &[Effect]) -> Vec<RegistryPolicy> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RegistryPolicy(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn is_invalid(result: &Result<(), OperatorError>) -> bool {
    matches!(result, Err(OperatorError::Invalid(_)))
}

// ---------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------

#[test]
fn weights_are_validated_all_or_nothing() {
    let mut h = Harness::new();
    for bad in [
        vec![("a", 2.0), ("b", 0.0)],
        vec![("a", 2.0), ("b", -1.0)],
        vec![("a", f64::NAN)],
        vec![("a", f64::INFINITY)],
        vec![("a", 2.0), ("bad role", 1.0)],
        vec![("*", 2.0)],
        vec![("a", 2.0), ("a", 3.0)],
        vec![],
    ] {
        let (result, out) = h.set_weights(&bad);
        assert!(is_invalid(&result), "{bad:?}: {result:?}");
        assert!(out.is_empty(), "{bad:?}: nothing written: {out:?}");
        assert!(h.master.weights().is_empty(), "{bad:?}: nothing applied");
    }
    assert!(!h.master.needs_allocation());
}

#[test]
fn weights_are_applied_persisted_and_trigger_a_full_cycle() {
    let mut h = Harness::new();
    let (result, out) = h.set_weights(&[("a", 1.0), ("eng/ml", 3.0)]);
    result.expect("weights set");
    let expected: BTreeMap<String, f64> = [("a".to_string(), 1.0), ("eng/ml".to_string(), 3.0)]
        .into_iter()
        .collect();
    assert_eq!(h.master.weights(), expected);
    assert_eq!(
        policy_writes(&out),
        vec![RegistryPolicy::Weights(expected.clone())]
    );
    assert_eq!(RegistryPolicy::Weights(expected).key(), "weights");
    assert!(h.master.needs_allocation());
    let (visited, _) = h.pending();
    assert_eq!(visited, None, "a weight change runs a full cycle");

    // A later call changes only the roles it names; the whole map is written.
    let (result, out) = h.set_weights(&[("a", 2.0)]);
    result.expect("weights set");
    match &policy_writes(&out)[..] {
        [RegistryPolicy::Weights(w)] => {
            assert_eq!(w.get("a"), Some(&2.0));
            assert_eq!(w.get("eng/ml"), Some(&3.0));
        }
        other => panic!("expected the weights written: {other:?}"),
    }
}

#[test]
fn weights_steer_the_split_between_two_hungry_roles() {
    let mut h = Harness::new();
    let agents: Vec<AgentId> = (0..8)
        .map(|n| h.register_agent(n + 1, &format!("a{n}"), "cpus:1;mem:1024"))
        .collect();
    assert_eq!(agents.len(), 8);
    h.set_weights(&[("a", 1.0), ("b", 3.0)]).0.expect("weights");
    let fa = h.subscribe_ok(10, in_role("fa", "a"));
    let fb = h.subscribe_ok(11, in_role("fb", "b"));
    // Both keep everything they are offered (they hold the offers).
    let out = h.allocate();
    let cpus = |offers: &[pb::Offer]| -> f64 {
        offers
            .iter()
            .map(|o| offer_resources(o).scalar_value("cpus"))
            .sum()
    };
    let (a, b) = (
        cpus(&offers_to(&out, fa.conn)),
        cpus(&offers_to(&out, fb.conn)),
    );
    assert_eq!(a + b, 8.0);
    assert_eq!((a, b), (2.0, 6.0), "1:3 of 8 agents");
}

// ---------------------------------------------------------------------------
// Quota
// ---------------------------------------------------------------------------

#[test]
fn quota_is_validated_all_or_nothing() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:4;mem:1024");
    let cases = [
        ("*", quota("", "cpus:1")),
        ("bad role", quota("", "cpus:1")),
        ("a", quota("cpus(a):1", "")),
        ("a", quota("", "ports:[1-2]")),
        ("a", quota("cpus:2", "cpus:1")),
    ];
    for (role, q) in cases {
        let (result, out) = h.set_quota(role, q.clone(), true);
        assert!(is_invalid(&result), "{role} {q:?}: {result:?}");
        assert!(out.is_empty());
    }
    // Two quotas, the second invalid: neither is applied.
    let (result, out) = h.operator(OperatorCall::UpdateQuotas {
        quotas: vec![
            ("a".into(), quota("cpus:1", "cpus:2")),
            ("b".into(), quota("cpus:3", "cpus:2")),
        ],
        force: false,
    });
    assert!(is_invalid(&result), "{result:?}");
    assert!(out.is_empty());
    assert!(h.master.quotas().is_empty());
    // Guarantees beyond the cluster need force.
    let (result, _) = h.set_quota("a", quota("cpus:10", ""), false);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "{result:?}"
    );
    assert!(h.master.quotas().is_empty());
    h.set_quota("a", quota("cpus:10", ""), true)
        .0
        .expect("forced");
    assert_eq!(h.master.quotas()["a"], quota("cpus:10", ""));
}

#[test]
fn quota_is_persisted_and_removed() {
    let mut h = Harness::new();
    let (result, out) = h.set_quota("eng/ml", quota("cpus:1", "cpus:2;mem:512"), true);
    result.expect("quota set");
    let written = policy_writes(&out);
    assert_eq!(written.len(), 1);
    let key = written[0].key();
    assert_eq!(key, quota_key("eng/ml"));
    assert!(key.starts_with(QUOTA_KEY_PREFIX));
    assert!(
        key.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
        "{key}"
    );
    match &written[0] {
        RegistryPolicy::Quota {
            role,
            quota: Some(q),
        } => {
            assert_eq!(role, "eng/ml");
            assert_eq!(res(&q.guarantee), res("cpus:1"));
            assert_eq!(res(&q.limit), res("cpus:2;mem:512"));
        }
        other => panic!("expected a quota write: {other:?}"),
    }

    let (result, out) = h.operator(OperatorCall::RemoveQuota("nope".into()));
    assert!(
        matches!(result, Err(OperatorError::NotFound(_))),
        "{result:?}"
    );
    assert!(out.is_empty());
    let (result, out) = h.operator(OperatorCall::RemoveQuota("eng/ml".into()));
    result.expect("removed");
    assert_eq!(
        policy_writes(&out),
        vec![RegistryPolicy::Quota {
            role: "eng/ml".into(),
            quota: None
        }]
    );
    assert!(h.master.quotas().is_empty());
}

#[test]
fn tightening_a_limit_rescinds_offers_of_roles_now_over_it() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:4;mem:1024");
    let fa = h.subscribe_ok(10, in_role("fa", "a"));
    let offer = h.one_offer(&fa);
    assert_eq!(offer_resources(&offer), res("cpus:4;mem:1024"));

    // Without force: refused, the offer stays.
    let (result, out) = h.set_quota("a", quota("", "cpus:1"), false);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "{result:?}"
    );
    assert!(out.is_empty());
    assert_eq!(h.master.offers.len(), 1);

    // With force: applied, and the offer is rescinded.
    let (result, out) = h.set_quota("a", quota("", "cpus:1"), true);
    result.expect("forced");
    assert_eq!(rescinds_to(&out, fa.conn), vec![offer_id(&offer).value]);
    assert!(h.master.offers.is_empty());
    // What it is offered next stays within the limit.
    let offers = h.offers_for(&fa);
    let cpus: f64 = offers
        .iter()
        .map(|o| offer_resources(o).scalar_value("cpus"))
        .sum();
    assert!(cpus > 0.0 && cpus <= 1.0, "{offers:?}");
}

// ---------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------

#[test]
fn operator_reservations_change_the_agents_books_and_go_only_to_their_role() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:4;mem:1024");

    let unknown = AgentId::new("m1-S99");
    let (result, _) = h.reserve(&unknown, "cpus(ops):1", true);
    assert!(
        matches!(result, Err(OperatorError::NotFound(_))),
        "{result:?}"
    );
    let (result, _) = h.reserve(&agent, "cpus:1", true);
    assert!(is_invalid(&result), "unreserved resources: {result:?}");
    let (result, out) = h.reserve(&agent, "cpus(ops):8", true);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "more than is free: {result:?}"
    );
    assert!(out.is_empty());
    assert_eq!(h.master.agents[&agent].total, res("cpus:4;mem:1024"));

    let (result, out) = h.reserve(&agent, "cpus(ops):2;mem(ops):512", true);
    result.expect("reserved");
    let reserved_total = res("cpus:2;cpus(ops, dynamic):2;mem:512;mem(ops, dynamic):512");
    assert_eq!(h.master.agents[&agent].total, reserved_total);
    let writes = registry_writes(&out);
    assert_eq!(writes.len(), 1, "{out:?}");
    assert_eq!(res(&writes[0].resources), reserved_total);
    assert_eq!(h.free(&agent), reserved_total);

    // A framework in another role is offered only the unreserved part.
    let other = h.subscribe_ok(10, in_role("other", "dev"));
    let offer = h.one_offer(&other);
    assert_eq!(offer_resources(&offer), res("cpus:2;mem:512"));
    h.framework_gone(10);
    // One in `ops` gets the reservation too.
    let ops = h.subscribe_ok(11, in_role("ops", "ops"));
    let offer = h.one_offer(&ops);
    assert_eq!(offer_resources(&offer), reserved_total);
    h.call_ok(&ops, decline_call(&ops.id, &[offer_id(&offer)], Some(0.0)));
    h.call_ok(&ops, base_call(&ops.id, CallType::Suppress));

    // Unreserve: the books go back.
    let (result, out) = h.reserve(&agent, "cpus(ops):2;mem(ops):512", false);
    result.expect("unreserved");
    assert_eq!(h.master.agents[&agent].total, res("cpus:4;mem:1024"));
    assert_eq!(
        res(&registry_writes(&out)[0].resources),
        res("cpus:4;mem:1024")
    );
    let (result, _) = h.reserve(&agent, "cpus(ops):1", false);
    assert!(
        matches!(result, Err(OperatorError::Conflict(_))),
        "nothing reserved left: {result:?}"
    );
}

// ---------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------

#[test]
fn recovery_restores_weights_quotas_and_reservations() {
    let mut h = Harness::with_master_id("m2");
    h.master.recover(
        h.now(),
        vec![RegistryAgent {
            id: "m1-S0".into(),
            hostname: "a0".into(),
            port: 5051,
            resources: "cpus:2;cpus(ops):2;mem:1024".into(),
            state: RegistryAgentState::Admitted,
        }],
        Duration::from_secs(600),
    );
    h.master.recover_policy(
        [("a".to_string(), 3.0)].into_iter().collect(),
        vec![
            RegistryQuota {
                role: "b".into(),
                guarantee: "cpus:100".into(),
                limit: "cpus:200".into(),
            },
            RegistryQuota {
                role: "broken".into(),
                guarantee: "cpus:".into(),
                limit: String::new(),
            },
        ],
    );
    assert_eq!(h.master.weights().get("a"), Some(&3.0));
    let quotas = h.master.quotas();
    assert_eq!(quotas.len(), 1, "the unreadable one is skipped: {quotas:?}");
    assert_eq!(quotas["b"], quota("cpus:100", "cpus:200"));

    // The agent comes back advertising its flags: it keeps the reservation.
    let mut back = register_msg(agent_info("a0", "cpus:4;mem:1024"));
    let id = AgentId::new("m1-S0");
    back.agent_info.as_mut().expect("info").id = id.to_field();
    let (registered, _) = h.register(1, back);
    assert_eq!(registered, Some(id.clone()));
    assert_eq!(
        h.master.agents[&id].total,
        res("cpus:2;cpus(ops):2;mem:1024")
    );
}

// ---------------------------------------------------------------------------
// Event-driven allocation
// ---------------------------------------------------------------------------

#[test]
fn freed_resources_are_offered_again_from_just_their_agent() {
    let mut h = Harness::new();
    let a1 = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let a2 = h.register_agent(2, "a2", "cpus:2;mem:1024");
    let (visited, _) = h.pending();
    assert_eq!(visited, Some(2), "new agents are the affected ones");
    let fw = h.subscribe_framework(10, "fw");
    let (visited, out) = h.pending();
    assert_eq!(visited, None, "a subscription runs a full cycle");
    let offers = offers_to(&out, fw.conn);
    assert_eq!(offers.len(), 2);
    assert!(!h.master.needs_allocation());

    // A decline frees one agent: only that agent is offered again.
    let on_a1 = offers
        .iter()
        .find(|o| o.agent_id == a1.to_field())
        .expect("offer on a1");
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(on_a1)], Some(0.0)));
    assert!(h.master.needs_allocation());
    let (visited, out) = h.pending();
    assert_eq!(visited, Some(1));
    let again = offers_to(&out, fw.conn);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].agent_id, a1.to_field());

    // Nothing pending: nothing to do.
    let (visited, out) = h.pending();
    assert_eq!(visited, Some(0));
    assert!(out.is_empty());

    // A task ending frees its agent.
    let on_a2 = offers
        .iter()
        .find(|o| o.agent_id == a2.to_field())
        .expect("offer on a2");
    launch_one(
        &mut h,
        &fw,
        on_a2,
        command_task("t1", &a2, "cpus:1;mem:128"),
    );
    let (visited, out) = h.pending();
    assert_eq!(visited, Some(1), "the remainder of the accept");
    assert_eq!(offers_to(&out, fw.conn).len(), 1);
    h.agent_says(
        2,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    let (visited, _) = h.pending();
    assert_eq!(visited, Some(1));
}

// ---------------------------------------------------------------------------
// Why no offer?
// ---------------------------------------------------------------------------

#[test]
fn why_no_offer_names_suppressed_and_filtered_frameworks() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:2;mem:1024");
    let busy = h.subscribe_ok(10, in_role("busy", "a"));
    let quiet = h.subscribe_ok(11, in_role("quiet", "b"));
    h.call_ok(&quiet, base_call(&quiet.id, CallType::Suppress));
    let offer = h.one_offer(&busy);
    h.call_ok(
        &busy,
        decline_call(&busy.id, &[offer_id(&offer)], Some(60.0)),
    );
    h.advance(2.0);
    assert!(h.master.refresh_offer_status(h.now()));
    assert!(
        !h.master.refresh_offer_status(h.now()),
        "at most once per interval"
    );
    let (table, _) = h.master.offer_status();
    let busy_status = &table[&(busy.id.clone(), "a".to_string())];
    assert_eq!(busy_status.reason, Some("filtered"));
    assert_eq!(busy_status.filtered_agents, 1);
    assert_eq!(busy_status.last_offered, Some(Duration::ZERO));
    let quiet_status = &table[&(quiet.id.clone(), "b".to_string())];
    assert_eq!(quiet_status.reason, Some("suppressed"));
    assert_eq!(quiet_status.last_offered, None);

    let snapshot = h.master.snapshot(WALL_EPOCH, WALL_EPOCH + 2.5);
    let state = serde_json::to_value(&snapshot).expect("json");
    let frameworks = state["frameworks"].as_array().expect("frameworks");
    let busy_json = frameworks
        .iter()
        .find(|f| f["id"] == busy.id.as_str())
        .expect("busy in /state");
    assert_eq!(
        busy_json["offer_status"],
        serde_json::json!([{
            "role": "a",
            "last_offered_secs_ago": 2.5,
            "reason": "filtered",
            "filtered_agents": 1,
        }])
    );
    let quiet_json = frameworks
        .iter()
        .find(|f| f["id"] == quiet.id.as_str())
        .expect("quiet in /state");
    assert_eq!(quiet_json["offer_status"][0]["reason"], "suppressed");
    assert!(quiet_json["offer_status"][0]["last_offered_secs_ago"].is_null());
    assert!(state.get("roles").is_none(), "/roles is not part of /state");
}

/// A refresh asks the allocator about a few (framework, role)s per call
/// (each a pass over the agents), so no publish pays for all of them; the
/// table readers see is replaced whole, once every one was looked at.
#[test]
fn why_no_offer_is_refreshed_a_few_frameworks_per_call() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:2;mem:1024");
    let count = crate::state::OFFER_STATUS_ASKS * 2 + 1;
    let frameworks: Vec<_> = (0..count)
        .map(|i| {
            let fw = h.subscribe_ok(10 + i as u64, in_role(&format!("fw{i}"), "r"));
            h.call_ok(&fw, base_call(&fw.id, CallType::Suppress));
            fw
        })
        .collect();
    h.advance(2.0);
    let mut calls = 1;
    while !h.master.refresh_offer_status(h.now()) {
        let (table, _) = h.master.offer_status();
        assert!(table.is_empty(), "the table is replaced only when done");
        calls += 1;
        assert!(calls <= count, "every call asks about some");
    }
    assert_eq!(
        calls,
        3,
        "{count} asks, {} per call",
        crate::state::OFFER_STATUS_ASKS
    );
    let (table, _) = h.master.offer_status();
    for fw in &frameworks {
        assert_eq!(
            table[&(fw.id.clone(), "r".to_string())].reason,
            Some("suppressed")
        );
    }
}

#[test]
fn roles_view_has_the_documented_shape() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:4;mem:1024");
    h.set_weights(&[("a", 2.0)]).0.expect("weights");
    h.set_quota("a", quota("cpus:1", "cpus:3"), false)
        .0
        .expect("quota");
    h.reserve(&agent, "cpus(a):1", true).0.expect("reserve");
    let fw = h.subscribe_ok(10, in_role("fw", "a"));
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus(a, dynamic):1;mem:128"),
    );
    let _ = h.pending();
    h.advance(5.0);
    h.master.refresh_offer_status(h.now());
    let snapshot = h.master.snapshot(WALL_EPOCH, WALL_EPOCH + 5.0);
    let roles = serde_json::to_value(&snapshot.roles).expect("json");
    let a = roles
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == "a")
        .expect("role a")
        .clone();
    let keys: BTreeSet<&str> = a
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "weight",
            "quota",
            "allocated",
            "offered",
            "reserved",
            "consumed",
            "frameworks",
            "offer_status"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(a["weight"], 2.0);
    assert_eq!(
        a["quota"],
        serde_json::json!({"guarantee": {"cpus": 1.0}, "limit": {"cpus": 3.0}})
    );
    assert_eq!(a["reserved"], serde_json::json!({"cpus": 1.0}));
    assert_eq!(a["frameworks"], serde_json::json!([fw.id.as_str()]));
    // The task's cpus(a):1 plus whatever is offered now, within the limit.
    let allocated = a["allocated"]["cpus"].as_f64().expect("allocated cpus");
    let offered = a["offered"]["cpus"].as_f64().unwrap_or(0.0);
    assert!((1.0..=3.0).contains(&allocated), "{a}");
    assert!((allocated - offered - 1.0).abs() < 1e-9, "{a}");
    let status = &a["offer_status"][0];
    assert_eq!(status["framework_id"], fw.id.as_str());
    assert!(status.get("reason").is_some() && status.get("last_offered_secs_ago").is_some());

    let quotas = serde_json::to_value(&snapshot.quotas).expect("json");
    assert_eq!(quotas[0]["role"], "a");
    assert_eq!(quotas[0]["limit"], serde_json::json!({"cpus": 3.0}));
    let weights = serde_json::to_value(&snapshot.weights).expect("json");
    assert_eq!(weights, serde_json::json!([{"role": "a", "weight": 2.0}]));
}

// ---------------------------------------------------------------------------
// Starvation
// ---------------------------------------------------------------------------

/// 200 frameworks: 190 decline everything with the default filter (5 s), 10
/// launch one task on their first offer and decline the rest alike. One
/// allocation cycle a second, with event-driven allocation after every batch
/// of answers as the shell does it. A framework subscribing at the moment
/// the filters expire (the worst moment: everybody is offered again) gets an
/// offer within two allocation cycles.
#[test]
fn a_new_framework_is_offered_within_two_cycles_among_200_decliners() {
    let mut h = Harness::new();
    let agents: Vec<AgentId> = (0..20)
        .map(|n| h.register_agent(n + 1, &format!("a{n}"), "cpus:8;mem:8192"))
        .collect();
    let frameworks: Vec<Fw> = (0..200)
        .map(|n| h.subscribe_framework(1000 + n, &format!("fw{n}")))
        .collect();
    let mut launched = BTreeSet::new();

    // Answers every offer in `out` as the frameworks would, then runs the
    // event-driven allocations that follow, until quiet. Returns in which
    // round (0: `out` itself) `watch` was first offered something.
    let answer = |h: &mut Harness,
                  launched: &mut BTreeSet<ConnId>,
                  mut out: Vec<Effect>,
                  watch: Option<ConnId>|
     -> Option<usize> {
        let mut seen = None;
        for round in 0..5000 {
            if seen.is_none() && watch.is_some_and(|c| !offers_to(&out, c).is_empty()) {
                seen = Some(round);
            }
            let mut any = false;
            for (n, fw) in frameworks.iter().enumerate() {
                for offer in offers_to(&out, fw.conn) {
                    any = true;
                    if n < 10 && launched.insert(fw.conn) {
                        let agent = AgentId::from_field(&offer.agent_id).expect("agent id");
                        let task = command_task(&format!("t{n}"), &agent, "cpus:1;mem:256");
                        h.call_ok(
                            fw,
                            launch_call(&fw.id, &[offer_id(&offer)], vec![task], None),
                        );
                    } else {
                        h.call_ok(fw, decline_call(&fw.id, &[offer_id(&offer)], None));
                    }
                }
            }
            if !any {
                return seen;
            }
            out = h.pending().1;
        }
        panic!("event-driven allocation did not settle");
    };

    // Steady state: a few cycles, the filters set from t=0 expire from t=5.
    let first = h.allocate();
    answer(&mut h, &mut launched, first, None);
    for _ in 0..4 {
        h.advance(1.0);
        let out = h.allocate();
        answer(&mut h, &mut launched, out, None);
    }
    assert_eq!(launched.len(), 10, "the ten busy frameworks launched");
    h.advance(1.0);
    // t=5: the filters expire, and the newcomer arrives in the same batch.
    let newcomer = h.subscribe_framework(5000, "newcomer");
    // The subscription's own (full) cycle, as the shell runs it at once.
    let (visited, out) = h.pending();
    assert_eq!(visited, None);
    let offered = offers_to(&out, newcomer.conn);
    if offered.is_empty() {
        // Then the next periodic cycle, with the event-driven ones between.
        let between = answer(&mut h, &mut launched, out, Some(newcomer.conn));
        h.advance(1.0);
        let out = h.allocate();
        let second = offers_to(&out, newcomer.conn);
        assert!(
            between.is_some() || !second.is_empty(),
            "no offer to the newcomer within two cycles"
        );
    }
    assert_eq!(agents.len(), 20);
}
