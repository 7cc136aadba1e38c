use std::collections::BTreeSet;
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

use crate::{Allocation, Allocator, AllocatorError, DrfAllocator, NoOfferReason, Quota};

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources")
}

/// Reserved resources as an operator's or framework's RESERVE makes them.
fn dynamic(text: &str) -> Resources {
    res(text).as_dynamic()
}

fn roles(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn agent(n: u32) -> AgentId {
    AgentId::new(format!("a{n}"))
}

fn framework(n: u32) -> FrameworkId {
    FrameworkId::new(format!("f{n}"))
}

const T0: Duration = Duration::from_secs(100);

fn new() -> DrfAllocator {
    DrfAllocator::with_seed(7)
}

fn cpus_of(allocs: &[Allocation], role: &str) -> f64 {
    allocs
        .iter()
        .filter(|a| a.role == role)
        .map(|a| a.resources.scalar_value("cpus"))
        .sum()
}

#[test]
fn each_agent_goes_to_one_framework_and_shares_even_out() {
    let mut alloc = new();
    for n in 0..4 {
        alloc.add_agent(agent(n), res("cpus:2;mem:1024"), &[]);
    }
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["*"]), BTreeSet::new());
    let allocations = alloc.allocate(T0);
    assert_eq!(allocations.len(), 4);
    let to_f1 = allocations
        .iter()
        .filter(|a| a.framework_id == framework(1))
        .count();
    assert_eq!(to_f1, 2, "two frameworks split four equal agents evenly");
    assert!(alloc.allocate(T0).is_empty());
    alloc.check_invariants().unwrap();
}

#[test]
fn declined_resources_are_filtered_until_the_refusal_expires() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    let offered = alloc.allocate(T0).remove(0);
    alloc.recover(
        &agent(0),
        &framework(1),
        &offered.resources,
        Some(Duration::from_secs(5)),
        T0,
    );
    assert!(alloc.allocate(T0 + Duration::from_secs(4)).is_empty());
    let status = alloc
        .offer_status(&framework(1), "*", T0 + Duration::from_secs(4))
        .unwrap();
    assert_eq!(status.reason, Some(NoOfferReason::Filtered));
    assert_eq!(status.last_offered, Some(T0));
    assert_eq!(status.filtered_agents, 1);
    let again = alloc.allocate(T0 + Duration::from_secs(5));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, res("cpus:2;mem:1024"));
}

#[test]
fn a_filter_does_not_hold_back_more_than_was_refused() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    let offer = alloc.allocate(T0).remove(0);
    alloc.recover(
        &agent(0),
        &framework(1),
        &res("cpus:1;mem:512"),
        Some(Duration::from_secs(5)),
        T0,
    );
    assert!(alloc.allocate(T0).is_empty());
    let mut used = offer.resources.clone();
    used.subtract(&res("cpus:1;mem:512"));
    alloc.recover(&agent(0), &framework(1), &used, None, T0);
    assert_eq!(alloc.allocate(T0).len(), 1);
    alloc.check_invariants().unwrap();
}

#[test]
fn suppressed_and_inactive_frameworks_get_nothing_until_revived() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), roles(&["*"]));
    assert!(alloc.allocate(T0).is_empty());
    assert_eq!(
        alloc.offer_status(&framework(1), "*", T0).unwrap().reason,
        Some(NoOfferReason::Suppressed)
    );
    alloc.revive(&framework(1), &[]);
    alloc.set_framework_active(&framework(1), false);
    assert!(alloc.allocate(T0).is_empty());
    assert_eq!(
        alloc.offer_status(&framework(1), "*", T0).unwrap().reason,
        Some(NoOfferReason::Inactive)
    );
    alloc.set_framework_active(&framework(1), true);
    assert_eq!(
        alloc.offer_status(&framework(1), "*", T0).unwrap().reason,
        None
    );
    assert_eq!(alloc.allocate(T0).len(), 1);
}

#[test]
fn suppress_and_revive_are_per_role() {
    let mut alloc = new();
    for n in 0..4 {
        alloc.add_agent(agent(n), res("cpus:2;mem:1024"), &[]);
    }
    alloc.add_framework(framework(1), roles(&["a", "b"]), roles(&["a"]));
    let got = alloc.allocate(T0);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|a| a.role == "b"));
    for a in &got {
        alloc.recover_for_role(
            &a.agent_id,
            &a.framework_id,
            &a.role,
            &a.resources,
            Some(Duration::from_secs(60)),
            T0,
        );
    }
    // b is filtered everywhere; reviving a only does not clear b's filters.
    alloc.revive(&framework(1), &["a".to_string()]);
    let got = alloc.allocate(T0);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|a| a.role == "a"), "{got:?}");
    alloc.suppress(&framework(1), &["a".to_string()]);
    for a in &got {
        alloc.recover(&a.agent_id, &a.framework_id, &a.resources, None, T0);
    }
    assert!(alloc.allocate(T0).is_empty(), "a suppressed, b filtered");
    alloc.revive(&framework(1), &["b".to_string()]);
    assert_eq!(alloc.allocate(T0).len(), 4);
    alloc.check_invariants().unwrap();
}

#[test]
fn reserved_resources_go_only_to_their_role_subtree() {
    let mut alloc = new();
    alloc.add_agent(
        agent(0),
        res("cpus(ops):2;mem(ops):512;cpus(eng):3;mem(eng):512;cpus:1;mem:256"),
        &[],
    );
    alloc.add_framework(framework(1), roles(&["dev"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["ops"]), BTreeSet::new());
    alloc.add_framework(framework(3), roles(&["eng/ml"]), BTreeSet::new());
    let allocations = alloc.allocate(T0);
    for a in &allocations {
        let text = a.resources.to_string();
        match a.role.as_str() {
            "dev" => assert!(!text.contains('(')),
            "ops" => assert!(!text.contains("(eng)")),
            "eng/ml" => assert!(!text.contains("(ops)")),
            _ => unreachable!(),
        }
    }
    assert!(cpus_of(&allocations, "ops") >= 2.0, "{allocations:?}");
    assert!(cpus_of(&allocations, "eng/ml") >= 3.0, "{allocations:?}");
    alloc.check_invariants().unwrap();
}

#[test]
fn inactive_agents_and_removed_frameworks() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    alloc.set_agent_active(&agent(0), false);
    assert!(alloc.allocate(T0).is_empty());
    assert_eq!(
        alloc.offer_status(&framework(1), "*", T0).unwrap().reason,
        Some(NoOfferReason::NoResources)
    );
    alloc.set_agent_active(&agent(0), true);
    assert_eq!(alloc.allocate(T0).len(), 1);
    alloc.remove_framework(&framework(1));
    assert_eq!(alloc.free()[&agent(0)], res("cpus:2;mem:1024"));
    alloc.check_invariants().unwrap();
}

#[test]
fn one_allocation_per_framework_role_agent_per_cycle() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:8;mem:4096"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    assert_eq!(alloc.allocate(T0).len(), 1);
    // A task ends: freed resources are offered again, in the next cycle.
    alloc.recover(&agent(0), &framework(1), &res("cpus:1;mem:128"), None, T0);
    let again = alloc.allocate_agents(T0, &[agent(0)]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, res("cpus:1;mem:128"));
}

#[test]
fn event_driven_allocation_touches_only_the_given_agents() {
    let mut alloc = new();
    for n in 0..10 {
        alloc.add_agent(agent(n), res("cpus:2;mem:1024"), &[]);
    }
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    let got = alloc.allocate_agents(T0, &[agent(3), agent(5)]);
    let ids: BTreeSet<AgentId> = got.iter().map(|a| a.agent_id.clone()).collect();
    assert_eq!(ids, [agent(3), agent(5)].into_iter().collect());
    assert_eq!(alloc.allocate(T0).len(), 8);
}

#[test]
fn the_same_seed_gives_the_same_allocations() {
    let run = |seed| {
        let mut alloc = DrfAllocator::with_seed(seed);
        for n in 0..20 {
            alloc.add_agent(agent(n), res("cpus:2;mem:1024"), &[]);
        }
        for f in 0..5 {
            alloc.add_framework(framework(f), roles(&["*"]), BTreeSet::new());
        }
        alloc
            .allocate(T0)
            .into_iter()
            .map(|a| (a.framework_id, a.agent_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(
        run(1),
        run(2),
        "agents are visited in a seeded random order"
    );
}

/// Endless demand: every offer is used, and a random task ends each step.
fn run_endless(alloc: &mut DrfAllocator, agents: u32, steps: u32) -> Vec<Allocation> {
    let mut held: Vec<Allocation> = alloc.allocate(T0);
    let mut rng = 12345u64;
    for step in 0..steps {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if held.is_empty() {
            break;
        }
        let i = (rng >> 33) as usize % held.len();
        let done = held.swap_remove(i);
        alloc.recover_for_role(
            &done.agent_id,
            &done.framework_id,
            &done.role,
            &done.resources,
            None,
            T0,
        );
        let now = T0 + Duration::from_millis(step as u64);
        held.extend(alloc.allocate_agents(now, std::slice::from_ref(&done.agent_id)));
        if step % 50 == 0 {
            alloc.check_invariants().unwrap();
        }
    }
    let _ = agents;
    held
}

#[test]
fn weights_one_to_three_converge_to_a_quarter_and_three_quarters() {
    let mut alloc = new();
    for n in 0..40 {
        alloc.add_agent(agent(n), res("cpus:1;mem:256"), &[]);
    }
    alloc
        .set_weights(&[("a".into(), 1.0), ("b".into(), 3.0)])
        .unwrap();
    alloc.add_framework(framework(1), roles(&["a"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["b"]), BTreeSet::new());
    let held = run_endless(&mut alloc, 40, 400);
    let a = cpus_of(&held, "a");
    let b = cpus_of(&held, "b");
    assert_eq!(a + b, 40.0);
    assert!((9.0..=11.0).contains(&a), "a={a} b={b}");
    let summary = alloc.role_summaries();
    let b_row = summary.iter().find(|r| r.role == "b").unwrap();
    assert_eq!(b_row.weight, 3.0);
    assert_eq!(b_row.allocated["cpus"], b);
}

#[test]
fn hierarchical_shares_are_weighted_at_each_level() {
    let mut alloc = new();
    for n in 0..40 {
        alloc.add_agent(agent(n), res("cpus:1;mem:256"), &[]);
    }
    // eng (weight 1) vs ops (weight 1): 20/20; inside eng, ml:batch = 3:1.
    alloc.set_weights(&[("eng/ml".into(), 3.0)]).unwrap();
    alloc.add_framework(framework(1), roles(&["eng/ml"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["eng/batch"]), BTreeSet::new());
    alloc.add_framework(framework(3), roles(&["ops"]), BTreeSet::new());
    let held = run_endless(&mut alloc, 40, 400);
    let ml = cpus_of(&held, "eng/ml");
    let batch = cpus_of(&held, "eng/batch");
    let ops = cpus_of(&held, "ops");
    assert!(
        (19.0..=21.0).contains(&ops),
        "ops={ops} ml={ml} batch={batch}"
    );
    assert!(
        (14.0..=16.0).contains(&ml),
        "ops={ops} ml={ml} batch={batch}"
    );
}

#[test]
fn quota_limits_are_never_exceeded() {
    let mut alloc = new();
    for n in 0..10 {
        alloc.add_agent(agent(n), res("cpus:4;mem:4096"), &[]);
    }
    let quota = Quota {
        guarantee: Resources::new(),
        limit: res("cpus:6"),
    };
    alloc
        .update_quotas(&[("capped".into(), quota)], false)
        .unwrap();
    alloc.add_framework(framework(1), roles(&["capped"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["capped/child"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    let cpus = cpus_of(&got, "capped") + cpus_of(&got, "capped/child");
    assert_eq!(cpus, 6.0, "{got:?}");
    assert!(alloc.roles_over_limit().is_empty());
    assert_eq!(
        alloc
            .offer_status(&framework(1), "capped", T0)
            .unwrap()
            .reason,
        Some(NoOfferReason::QuotaLimit)
    );
    // Tightening below consumption needs force, and reports the role.
    let tighter = Quota {
        guarantee: Resources::new(),
        limit: res("cpus:2"),
    };
    assert!(matches!(
        alloc.update_quotas(&[("capped".into(), tighter.clone())], false),
        Err(AllocatorError::ExceedsLimit { .. })
    ));
    assert_eq!(alloc.quotas()["capped"].limit, res("cpus:6"));
    assert_eq!(
        alloc
            .update_quotas(&[("capped".into(), tighter)], true)
            .unwrap(),
        vec!["capped".to_string()]
    );
    assert!(alloc.remove_quota("capped"));
    assert!(alloc.quotas().is_empty());
}

#[test]
fn quota_updates_are_all_or_nothing() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:4;mem:4096"), &[]);
    let ok = Quota {
        guarantee: res("cpus:1"),
        limit: res("cpus:2"),
    };
    let bad = Quota {
        guarantee: res("cpus:3"),
        limit: res("cpus:2"),
    };
    assert!(
        alloc
            .update_quotas(&[("x".into(), ok.clone()), ("y".into(), bad)], false)
            .is_err()
    );
    assert!(alloc.quotas().is_empty());
    let too_much = Quota {
        guarantee: res("cpus:5"),
        limit: Resources::new(),
    };
    assert!(matches!(
        alloc.update_quotas(&[("x".into(), too_much.clone())], false),
        Err(AllocatorError::GuaranteesExceedCapacity(_))
    ));
    assert!(alloc.update_quotas(&[("x".into(), too_much)], true).is_ok());
    assert!(alloc.update_quotas(&[("*".into(), ok)], false).is_err());
}

#[test]
fn guarantees_are_held_back_for_a_role_with_demand() {
    let mut alloc = new();
    for n in 0..10 {
        alloc.add_agent(agent(n), res("cpus:4;mem:4096"), &[]);
    }
    // A greedy role arrives first and would take everything.
    alloc.add_framework(framework(1), roles(&["greedy"]), BTreeSet::new());
    let quota = Quota {
        guarantee: res("cpus:12;mem:1024"),
        limit: Resources::new(),
    };
    alloc
        .update_quotas(&[("prod".into(), quota)], false)
        .unwrap();
    // No demand from prod yet: greedy may take all.
    let got = alloc.allocate(T0);
    assert_eq!(cpus_of(&got, "greedy"), 40.0);
    for a in &got {
        alloc.recover(&a.agent_id, &a.framework_id, &a.resources, None, T0);
    }
    alloc.add_framework(framework(2), roles(&["prod"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert!(cpus_of(&got, "prod") >= 12.0, "{got:?}");
    alloc.check_invariants().unwrap();
    // Prod's guarantee stays held back while greedy's freed resources come back.
    for a in got.iter().filter(|a| a.role == "greedy") {
        alloc.recover(&a.agent_id, &a.framework_id, &a.resources, None, T0);
    }
    for a in got.iter().filter(|a| a.role == "prod") {
        alloc.recover(
            &a.agent_id,
            &a.framework_id,
            &a.resources,
            Some(Duration::from_secs(1)),
            T0,
        );
    }
    let got = alloc.allocate(T0);
    assert!(
        cpus_of(&got, "greedy") <= 28.0,
        "greedy must leave prod's 12 cpus: {got:?}"
    );
}

#[test]
fn reserve_unreserve_and_offer_operations() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:4;mem:1024"), &[]);
    alloc
        .reserve(&agent(0), &dynamic("cpus(ops):1;mem(ops):256"))
        .unwrap();
    assert!(alloc.reserve(&agent(0), &dynamic("cpus(ops):10")).is_err());
    assert!(alloc.reserve(&agent(0), &res("cpus:1")).is_err());
    alloc.add_framework(framework(1), roles(&["dev"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert_eq!(got[0].resources, res("cpus:3;mem:768"));
    alloc.add_framework(framework(2), roles(&["ops"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert_eq!(got[0].resources, dynamic("cpus(ops):1;mem(ops):256"));
    // ops turns part of its offer back into unreserved resources.
    alloc
        .update_allocation(
            &agent(0),
            &framework(2),
            "ops",
            &dynamic("cpus(ops):1"),
            &res("cpus:1"),
        )
        .unwrap();
    alloc.check_invariants().unwrap();
    let summary = alloc.role_summaries();
    let ops = summary.iter().find(|r| r.role == "ops").unwrap();
    assert_eq!(ops.reserved.get("cpus"), None);
    assert_eq!(ops.reserved["mem"], 256.0);
    alloc.recover(
        &agent(0),
        &framework(2),
        &dynamic("cpus:1;mem(ops):256"),
        None,
        T0,
    );
    alloc
        .unreserve(&agent(0), &dynamic("mem(ops):256"))
        .unwrap();
    assert_eq!(alloc.free()[&agent(0)], res("cpus:1;mem:256"));
    alloc.check_invariants().unwrap();
}

#[test]
fn why_no_offer_outranked_and_no_resources() {
    let mut alloc = new();
    alloc.add_agent(
        agent(0),
        res("cpus:2;mem:1024;cpus(ops):1;mem(ops):64"),
        &[],
    );
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert_eq!(got.len(), 1);
    alloc.add_framework(framework(2), roles(&["*"]), BTreeSet::new());
    assert_eq!(
        alloc.offer_status(&framework(2), "*", T0).unwrap().reason,
        Some(NoOfferReason::Outranked)
    );
    alloc.add_framework(framework(3), roles(&["gpu-only"]), BTreeSet::new());
    alloc.remove_agent(&agent(0));
    assert_eq!(
        alloc
            .offer_status(&framework(3), "gpu-only", T0)
            .unwrap()
            .reason,
        Some(NoOfferReason::NoResources)
    );
    assert!(alloc.offer_status(&framework(3), "other", T0).is_none());
    alloc.check_invariants().unwrap();
}

#[test]
fn adopted_tasks_count_and_unknown_frameworks_do_not_overcommit() {
    let mut alloc = new();
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    alloc.add_agent(
        agent(0),
        res("cpus:4;mem:1024"),
        &[
            (framework(1), res("cpus:1;mem:128")),
            (framework(9), res("cpus:1;mem:128")),
        ],
    );
    assert_eq!(alloc.free()[&agent(0)], res("cpus:2;mem:768"));
    alloc.recover(&agent(0), &framework(9), &res("cpus:1;mem:128"), None, T0);
    assert_eq!(alloc.free()[&agent(0)], res("cpus:3;mem:896"));
    // Recovering more than allocated is clamped.
    alloc.recover(&agent(0), &framework(1), &res("cpus:5"), None, T0);
    assert_eq!(alloc.free()[&agent(0)], res("cpus:4;mem:896"));
    alloc.check_invariants().unwrap();
}

#[test]
fn a_new_framework_is_not_starved_by_decliners() {
    // 200 frameworks, 190 declining everything with the default 5 s filter;
    // a newly subscribed framework gets an offer within two cycles.
    let mut alloc = new();
    for n in 0..50 {
        alloc.add_agent(agent(n), res("cpus:4;mem:4096"), &[]);
    }
    for f in 0..200 {
        alloc.add_framework(framework(f), roles(&["*"]), BTreeSet::new());
    }
    let mut now = T0;
    let mut held = Vec::new();
    for _ in 0..5 {
        for a in alloc.allocate(now) {
            let n: u32 = a.framework_id.as_str()[1..].parse().unwrap();
            if n < 190 {
                alloc.recover(
                    &a.agent_id,
                    &a.framework_id,
                    &a.resources,
                    Some(Duration::from_secs(5)),
                    now,
                );
            } else {
                held.push(a);
            }
        }
        now += Duration::from_secs(1);
    }
    // The ten workers finish their tasks now and then.
    for a in held.drain(..).take(10) {
        alloc.recover(&a.agent_id, &a.framework_id, &a.resources, None, now);
    }
    alloc.add_framework(framework(999), roles(&["*"]), BTreeSet::new());
    let mut got_offer = false;
    for _ in 0..2 {
        for a in alloc.allocate(now) {
            got_offer |= a.framework_id == framework(999);
        }
        now += Duration::from_secs(1);
    }
    assert!(got_offer, "the new framework is offered within two cycles");
    alloc.check_invariants().unwrap();
}

#[test]
fn updating_an_agent_keeps_allocations_and_books() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:4;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["ops"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert_eq!(got[0].resources, res("cpus:4;mem:1024"));
    alloc.recover(&agent(0), &framework(1), &res("cpus:2;mem:512"), None, T0);
    // The agent comes back with a static reservation for ops and more cpus.
    alloc.update_agent(&agent(0), res("cpus:4;mem:1024;cpus(ops):2"));
    assert_eq!(alloc.free()[&agent(0)], res("cpus:2;mem:512;cpus(ops):2"));
    let ops = alloc
        .role_summaries()
        .into_iter()
        .find(|r| r.role == "ops")
        .unwrap();
    assert_eq!(ops.reserved["cpus"], 2.0);
    assert_eq!(ops.consumed["cpus"], 4.0);
    let got = alloc.allocate_agents(T0, &[agent(0)]);
    assert_eq!(got[0].resources, res("cpus:2;mem:512;cpus(ops):2"));
    alloc.check_invariants().unwrap();
}

#[test]
fn many_reservations_on_one_agent_each_go_to_their_role() {
    let mut alloc = new();
    let mut text = String::from("cpus:8;mem:8192");
    for r in 0..50 {
        text.push_str(&format!(";cpus(r{r}):0.5;mem(r{r}):64"));
    }
    alloc.add_agent(agent(0), res(&text).as_dynamic(), &[]);
    for r in 0..50 {
        alloc.add_framework(framework(r), roles(&[&format!("r{r}")]), BTreeSet::new());
    }
    let got = alloc.allocate(T0);
    assert_eq!(got.len(), 50, "one offer per role");
    for a in &got {
        let mine = dynamic(&format!("cpus({0}):0.5;mem({0}):64", a.role));
        assert!(a.resources.contains(&mine), "{a:?}");
    }
    assert!(alloc.free()[&agent(0)].is_empty());
    for r in 0..10 {
        let role = format!("r{r}");
        let reserved = dynamic(&format!("cpus({role}):0.5"));
        alloc
            .update_allocation(&agent(0), &framework(r), &role, &reserved, &res("cpus:0.5"))
            .unwrap();
    }
    alloc.check_invariants().unwrap();
}

#[test]
fn a_role_at_its_limit_still_gets_its_reservations() {
    let mut alloc = new();
    let quota = Quota {
        guarantee: Resources::new(),
        limit: res("cpus:1;mem:64"),
    };
    alloc
        .update_quotas(&[("ops".into(), quota)], false)
        .unwrap();
    alloc.add_agent(
        agent(0),
        res("cpus(ops):2;mem(ops):128;cpus:4;mem:1024"),
        &[],
    );
    alloc.add_framework(framework(1), roles(&["ops"]), BTreeSet::new());
    let got = alloc.allocate(T0);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].resources,
        res("cpus(ops):2;mem(ops):128"),
        "no unreserved beyond the limit"
    );
    assert_eq!(
        alloc.roles_over_limit(),
        vec!["ops".to_string()],
        "the reservation alone exceeds it"
    );
    alloc.check_invariants().unwrap();
}

/// Roles are validated at the edge (`agora_core::validate_role` caps their
/// depth), but no walk over the role tree may depend on it: a role far
/// deeper than any cap, put in directly, is allocated to and removed on a
/// thread with a small stack.
#[test]
fn a_role_thousands_of_levels_deep_cannot_overflow_the_stack() {
    const DEPTH: usize = 3_000;
    let deep = vec!["r"; DEPTH].join("/");
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut alloc = new();
            alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
            alloc.add_agent(agent(1), res("cpus:2;mem:1024"), &[]);
            alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
            alloc.add_framework(framework(2), roles(&["*"]), BTreeSet::new());
            // Bypasses `add_framework`'s validation on purpose.
            let f = alloc.framework_index[&framework(2)];
            let c = alloc.framework(f).clients["*"];
            alloc.drop_client(c);
            alloc.new_client(f, &deep, false);
            assert_eq!(alloc.nodes.len(), DEPTH + 2, "root, '*' and each level");
            let allocations = alloc.allocate(T0);
            assert_eq!(allocations.len(), 2, "{allocations:?}");
            assert!(
                allocations
                    .iter()
                    .any(|a| a.framework_id == framework(2) && a.role == deep)
            );
            alloc.check_invariants().unwrap();
            assert_eq!(
                alloc
                    .offer_status(&framework(2), &deep, T0)
                    .map(|s| s.reason),
                Some(Some(NoOfferReason::Outranked))
            );
            assert_eq!(alloc.role_summaries().len(), DEPTH + 1);
            alloc.remove_framework(&framework(2));
            alloc.check_invariants().unwrap();
            assert_eq!(alloc.allocate(T0).len(), 1, "its agent goes to f1");
        })
        .expect("spawn a thread");
    worker.join().expect("no panic, no overflow");
}

/// Roles nobody uses any more leave the tree: frameworks coming and going
/// under ever new roles do not grow it, while a role an operator gave a
/// weight or a quota, or one with another framework, stays.
#[test]
fn empty_roles_are_removed() {
    let mut alloc = new();
    alloc.add_agent(agent(0), res("cpus:4;mem:4096"), &[]);
    alloc.add_framework(framework(0), roles(&["eng/web"]), BTreeSet::new());
    let size = alloc.nodes.len();
    for n in 1..200 {
        let role = format!("batch/job-{n}/run");
        alloc.add_framework(framework(n), roles(&[&role]), BTreeSet::new());
        assert_eq!(alloc.allocate(T0).len(), 1);
        alloc.check_invariants().unwrap();
        alloc.remove_framework(&framework(n));
        alloc.check_invariants().unwrap();
        assert!(!alloc.node_index.contains_key(&role));
        assert!(!alloc.node_index.contains_key("batch"), "ancestors too");
    }
    assert!(alloc.nodes.len() <= size + 3, "{} nodes", alloc.nodes.len());

    // A weighted role and a role with quota stay; so does a parent with
    // another child in use.
    alloc
        .set_weights(&[("weighted".to_string(), 2.0)])
        .expect("weights");
    alloc.add_framework(framework(300), roles(&["weighted"]), BTreeSet::new());
    alloc.add_framework(framework(301), roles(&["eng/ml"]), BTreeSet::new());
    alloc.remove_framework(&framework(300));
    alloc.remove_framework(&framework(301));
    alloc.check_invariants().unwrap();
    assert!(alloc.node_index.contains_key("weighted"));
    assert!(alloc.node_index.contains_key("eng"), "eng/web is in use");
    assert!(!alloc.node_index.contains_key("eng/ml"));
    assert_eq!(
        alloc
            .role_summaries()
            .iter()
            .map(|r| r.role.as_str())
            .collect::<Vec<_>>(),
        ["eng/web", "weighted"]
    );
    alloc.remove_framework(&framework(0));
    alloc.check_invariants().unwrap();
    assert!(!alloc.node_index.contains_key("eng"));
    assert_eq!(alloc.allocate(T0).len(), 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3))]

    /// 10,000+ agents at the per-entry maximum (1e10 units, 1e13
    /// thousandths; with the old 1e15 maximum ~9,200 of them overflowed the
    /// `i64` books). The books stay exact through adding, allocating, and
    /// removing them all.
    #[test]
    fn ten_thousand_agents_at_the_per_entry_maximum_do_not_overflow_the_books(
        agents in 9_300u32..10_500,
        below in 0u32..1_000,
    ) {
        let mut alloc = new();
        let one = Resources::parse(&format!(
            "cpus:{v};mem:{v};disk:{v};cpus(eng):{v}",
            v = 1e10 - f64::from(below)
        ))
        .expect("at the maximum");
        for n in 0..agents {
            alloc.add_agent(agent(n), one.clone(), &[]);
        }
        alloc.add_framework(framework(1), roles(&["eng"]), BTreeSet::new());
        alloc.add_framework(framework(2), roles(&["*"]), BTreeSet::new());
        alloc
            .update_quotas(&[("eng".into(), Quota { guarantee: res("cpus:1"), limit: Resources::new() })], false)
            .expect("a small guarantee fits");
        let allocations = alloc.allocate(T0);
        // Every agent is offered, to one framework or (its reservation apart) to both.
        let offered: BTreeSet<&AgentId> = allocations.iter().map(|a| &a.agent_id).collect();
        proptest::prop_assert_eq!(offered.len(), agents as usize);
        alloc.check_invariants().map_err(proptest::test_runner::TestCaseError::fail)?;
        let summaries = alloc.role_summaries();
        let eng = summaries.iter().find(|s| s.role == "eng").expect("eng");
        // Exact: every agent's reservation counted, none lost to saturation.
        let expected = f64::from(agents) * (1e10 - f64::from(below));
        proptest::prop_assert!(
            (eng.reserved["cpus"] - expected).abs() < 1.0,
            "{:?} != {expected}",
            eng.reserved
        );
        for n in 0..agents {
            alloc.remove_agent(&agent(n));
        }
        alloc.check_invariants().map_err(proptest::test_runner::TestCaseError::fail)?;
        proptest::prop_assert!(alloc.free().is_empty());
    }
}
