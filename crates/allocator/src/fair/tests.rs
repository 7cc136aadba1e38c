use std::collections::BTreeSet;
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

use crate::{Allocator, FairAllocator};

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources")
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

#[test]
fn each_agent_goes_to_one_framework_and_shares_even_out() {
    let mut alloc = FairAllocator::new();
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
    // Everything is allocated now: nothing more to offer.
    assert!(alloc.allocate(T0).is_empty());
}

#[test]
fn declined_resources_are_filtered_until_the_refusal_expires() {
    let mut alloc = FairAllocator::new();
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
    let again = alloc.allocate(T0 + Duration::from_secs(5));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, res("cpus:2;mem:1024"));
}

#[test]
fn a_filter_does_not_hold_back_more_than_was_refused() {
    let mut alloc = FairAllocator::new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    let offer = alloc.allocate(T0).remove(0);
    // The framework uses half and declines the rest.
    alloc.recover(
        &agent(0),
        &framework(1),
        &res("cpus:1;mem:512"),
        Some(Duration::from_secs(5)),
        T0,
    );
    assert!(alloc.allocate(T0).is_empty());
    // Its task ends: the freed resources break through the filter.
    let mut used = offer.resources.clone();
    used.subtract(&res("cpus:1;mem:512"));
    alloc.recover(&agent(0), &framework(1), &used, None, T0);
    assert_eq!(alloc.allocate(T0).len(), 1);
}

#[test]
fn suppressed_and_inactive_frameworks_get_nothing_until_revived() {
    let mut alloc = FairAllocator::new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), roles(&["*"]));
    assert!(alloc.allocate(T0).is_empty());
    alloc.revive(&framework(1), &[]);
    alloc.set_framework_active(&framework(1), false);
    assert!(alloc.allocate(T0).is_empty());
    alloc.set_framework_active(&framework(1), true);
    assert_eq!(alloc.allocate(T0).len(), 1);
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut alloc = FairAllocator::new();
    alloc.add_agent(
        agent(0),
        res("cpus(ops):2;mem(ops):512;cpus:1;mem:256"),
        &[],
    );
    alloc.add_framework(framework(1), roles(&["dev"]), BTreeSet::new());
    alloc.add_framework(framework(2), roles(&["ops"]), BTreeSet::new());
    let allocations = alloc.allocate(T0);
    for a in &allocations {
        if a.role == "dev" {
            assert_eq!(a.resources.allocatable_to("dev"), a.resources);
            assert!(!a.resources.to_string().contains("(ops)"));
        }
    }
    let ops_got: f64 = allocations
        .iter()
        .filter(|a| a.role == "ops")
        .map(|a| a.resources.scalar_value("cpus"))
        .sum();
    assert!(ops_got >= 2.0, "ops gets its reservation: {allocations:?}");
}

#[test]
fn inactive_agents_and_removed_frameworks() {
    let mut alloc = FairAllocator::new();
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), &[]);
    alloc.add_framework(framework(1), roles(&["*"]), BTreeSet::new());
    alloc.set_agent_active(&agent(0), false);
    assert!(alloc.allocate(T0).is_empty());
    alloc.set_agent_active(&agent(0), true);
    assert_eq!(alloc.allocate(T0).len(), 1);
    alloc.remove_framework(&framework(1));
    assert_eq!(alloc.free()[&agent(0)], res("cpus:2;mem:1024"));
}
