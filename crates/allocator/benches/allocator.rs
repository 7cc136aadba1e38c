//! Allocator benchmarks shaped like Mesos' allocator benchmarks
//! (`hierarchical_allocator_tests.cpp` / `_benchmarks.cpp`), in-process with
//! simulated agents and frameworks. One line per scenario:
//!
//! `BENCH <scenario> agents=<n> frameworks=<m> p50_ms=<x> p99_ms=<y>`
//!
//! Run: `cargo bench -p agora-allocator`. Environment:
//! - `AGORA_BENCH_ROUNDS` (default 20): timed cycles per decline_offers row;
//! - `AGORA_BENCH_REPS` (default 200): timed re-offers per reoffer row;
//! - `AGORA_BENCH_ONLY`: run only scenarios whose name contains this text;
//! - `AGORA_BENCH_SMALL=1`: shrink every shape tenfold (smoke test).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agora_allocator::{Allocation, Allocator, DrfAllocator, Quota};
use agora_core::{AgentId, FrameworkId, Resources};

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scale(n: usize) -> usize {
    if std::env::var("AGORA_BENCH_SMALL").is_ok_and(|v| v == "1") {
        (n / 10).max(1)
    } else {
        n
    }
}

fn wanted(scenario: &str) -> bool {
    std::env::var("AGORA_BENCH_ONLY").map_or(true, |only| scenario.contains(&only))
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn report(scenario: &str, agents: usize, frameworks: usize, samples: &mut [f64]) {
    if std::env::var("AGORA_BENCH_VERBOSE").is_ok_and(|v| v == "1") {
        let text: Vec<String> = samples.iter().map(|s| format!("{s:.1}")).collect();
        eprintln!("  samples (ms, in order): {}", text.join(" "));
    }
    let p50 = percentile(samples, 50.0);
    let p99 = percentile(samples, 99.0);
    println!(
        "BENCH {scenario} agents={agents} frameworks={frameworks} p50_ms={p50:.3} p99_ms={p99:.3}"
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i}"))
}

fn framework(i: usize) -> FrameworkId {
    FrameworkId::new(format!("framework-{i}"))
}

/// Mesos' DeclineOffers shape: agents `cpus:24;mem:4096;disk:4096;ports`,
/// each partly used (`cpus:16;mem:2014;disk:1024`) by some framework; every
/// framework declines what it is offered (it does not need more) with a long
/// filter. Each timed sample is one full allocation cycle.
fn build_loaded(agents: usize, frameworks: usize) -> DrfAllocator {
    let mut alloc = DrfAllocator::with_seed(42);
    for f in 0..frameworks {
        alloc.add_framework(framework(f), ["role1".to_string()].into(), BTreeSet::new());
    }
    let used = res("cpus:16;mem:2014;disk:1024");
    for a in 0..agents {
        alloc.add_agent(
            agent(a),
            res("cpus:24;mem:4096;disk:4096;ports:[31000-32000]"),
            &[(framework(a % frameworks), used.clone())],
        );
    }
    alloc
}

fn decline_offers(agents: usize, frameworks: usize, rounds: usize) {
    let (agents, frameworks) = (scale(agents), scale(frameworks));
    let mut alloc = build_loaded(agents, frameworks);
    let refuse = Some(Duration::from_secs(24 * 3600));
    let mut now = Duration::from_secs(1);
    let mut samples = Vec::new();
    let mut offers = 0usize;
    for _ in 0..rounds {
        let start = Instant::now();
        let got = alloc.allocate(now);
        samples.push(ms(start.elapsed()));
        offers += got.len();
        for a in got {
            alloc.recover_for_role(
                &a.agent_id,
                &a.framework_id,
                &a.role,
                &a.resources,
                refuse,
                now,
            );
        }
        now += Duration::from_secs(1);
    }
    eprintln!(
        "  decline_offers {agents}x{frameworks}: {offers} offers in {rounds} cycles ({} per cycle)",
        offers / rounds.max(1)
    );
    report("decline_offers", agents, frameworks, &mut samples);
}

/// Mesos' LargeAndSmallQuota shape: agents `cpus:2;mem:2048;disk:2048`,
/// 5/6 of the roles with a small quota (`cpus:1;mem:1024;disk:1024`), 1/6
/// with a large one (4x), guarantee = limit, one framework per role. Each
/// sample is the cycle that satisfies every quota from an empty cluster.
fn quota(agents: usize, roles: usize, reps: usize) {
    let (agents, roles) = (scale(agents), scale(roles));
    let mut samples = Vec::new();
    let mut offers = 0;
    for rep in 0..reps {
        let mut alloc = DrfAllocator::with_seed(rep as u64);
        for a in 0..agents {
            alloc.add_agent(agent(a), res("cpus:2;mem:2048;disk:2048"), &[]);
        }
        let small = roles * 5 / 6;
        let quotas: Vec<(String, Quota)> = (0..roles)
            .map(|r| {
                let q = if r < small {
                    res("cpus:1;mem:1024;disk:1024")
                } else {
                    res("cpus:4;mem:4096;disk:4096")
                };
                (
                    format!("quota-role-{r}"),
                    Quota {
                        guarantee: q.clone(),
                        limit: q,
                    },
                )
            })
            .collect();
        alloc.update_quotas(&quotas, true).expect("valid quotas");
        for (r, (role, _)) in quotas.iter().enumerate() {
            alloc.add_framework(framework(r), [role.clone()].into(), BTreeSet::new());
        }
        let start = Instant::now();
        let got = alloc.allocate(Duration::from_secs(1));
        samples.push(ms(start.elapsed()));
        offers = got.len();
        let unmet = alloc
            .role_summaries()
            .iter()
            .filter(|r| {
                let q = r.quota.as_ref().expect("quota role");
                ["cpus", "mem", "disk"].iter().any(|n| {
                    r.allocated.get(*n).copied().unwrap_or(0.0) < q.guarantee.scalar_value(n)
                })
            })
            .count();
        assert_eq!(unmet, 0, "every quota is met in one cycle");
    }
    eprintln!(
        "  quota {agents} agents x {roles} roles: {offers} offers per cycle, every guarantee met"
    );
    report("quota", agents, roles, &mut samples);
}

/// Mesos' UpdateAllocation shape: one agent holding 6,400 reserved
/// resources (1,600 roles x cpus, mem, disk, ports), 1,600 frameworks (one
/// per role) holding offers for them; a sample is 20 RESERVE/UNRESERVE
/// operations applied to offered resources.
fn reserve_ops(roles: usize, reps: usize) {
    let roles = scale(roles);
    let mut text = String::from("cpus:64;mem:65536;disk:65536");
    for r in 0..roles {
        let port = 10000 + r;
        text.push_str(&format!(
            ";cpus(r{r}):0.5;mem(r{r}):128;disk(r{r}):128;ports(r{r}):[{port}-{port}]"
        ));
    }
    let mut alloc = DrfAllocator::with_seed(1);
    // Dynamic, as RESERVE makes them: static ones cannot be unreserved.
    alloc.add_agent(agent(0), res(&text).as_dynamic(), &[]);
    for r in 0..roles {
        alloc.add_framework(framework(r), [format!("r{r}")].into(), BTreeSet::new());
    }
    let setup = Instant::now();
    let got: Vec<Allocation> = alloc.allocate(Duration::from_secs(1));
    eprintln!(
        "  reserve_ops: {} offers on the agent in {:.1} ms",
        got.len(),
        ms(setup.elapsed())
    );
    let mut samples = Vec::new();
    for rep in 0..reps {
        let start = Instant::now();
        for op in 0..20 {
            // UNRESERVE part of an offer, then RESERVE it back: ten of each.
            let r = (rep * 10 + op / 2) % roles;
            let role = format!("r{r}");
            let reserved = res(&format!("cpus({role}):0.5;mem({role}):128")).as_dynamic();
            let unreserved = res("cpus:0.5;mem:128");
            let (from, to) = if op % 2 == 0 {
                (&reserved, &unreserved)
            } else {
                (&unreserved, &reserved)
            };
            alloc
                .update_allocation(&agent(0), &framework(r), &role, from, to)
                .expect("operation applies");
        }
        samples.push(ms(start.elapsed()));
    }
    report("reserve_ops", 1, roles, &mut samples);
}

/// Resources freed on one agent (a task ends) -> the new offer made by the
/// event-driven path (`recover` + `allocate_agents`), timed together.
fn reoffer(scenario: &str, agents: usize, frameworks: usize, reps: usize) {
    let (agents, frameworks) = (scale(agents), scale(frameworks));
    let mut alloc = if frameworks > 100 {
        build_loaded(agents, frameworks)
    } else {
        let mut alloc = DrfAllocator::with_seed(7);
        for f in 0..frameworks {
            alloc.add_framework(framework(f), ["*".to_string()].into(), BTreeSet::new());
        }
        for a in 0..agents {
            alloc.add_agent(
                agent(a),
                res("cpus:24;mem:4096;disk:4096;ports:[31000-32000]"),
                &[],
            );
        }
        alloc
    };
    // Everything is offered and kept (frameworks with endless work).
    let mut held: Vec<Allocation> = alloc.allocate(Duration::from_secs(1));
    let mut samples = Vec::new();
    let mut rng = 99u64;
    let mut made = 0;
    for i in 0..reps {
        if held.is_empty() {
            break;
        }
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (rng >> 33) as usize % held.len();
        let done = held.swap_remove(k);
        let now = Duration::from_secs(2) + Duration::from_millis(i as u64);
        let start = Instant::now();
        alloc.recover_for_role(
            &done.agent_id,
            &done.framework_id,
            &done.role,
            &done.resources,
            None,
            now,
        );
        let got = alloc.allocate_agents(now, std::slice::from_ref(&done.agent_id));
        samples.push(ms(start.elapsed()));
        made += got.len();
        held.extend(got);
    }
    eprintln!(
        "  {scenario} {agents}x{frameworks}: {made} re-offers in {} samples",
        samples.len()
    );
    report(scenario, agents, frameworks, &mut samples);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let rounds = env_usize("AGORA_BENCH_ROUNDS", 20);
    let reps = env_usize("AGORA_BENCH_REPS", 200);
    if wanted("decline_offers") {
        decline_offers(100, 10, rounds.max(100));
        decline_offers(10_000, 1_000, rounds);
        decline_offers(10_000, 3_000, rounds);
        decline_offers(20_000, 2_000, rounds);
    }
    if wanted("quota") {
        quota(3_000, 3_000, 5);
    }
    if wanted("reserve_ops") {
        reserve_ops(1_600, 20);
    }
    if wanted("reoffer") {
        reoffer("reoffer_idle", 100, 10, reps);
        reoffer("reoffer", 10_000, 1_000, reps);
    }
}
