//! The SDK's example framework, run for real against a two-agent cluster.

use std::fmt::Write as _;
use std::time::Duration;

use agora_e2e::{Cluster, all_tasks, run_with_deadline, sdk_example};

#[test]
fn count_lines_example_counts_across_agents() {
    let cluster = Cluster::start(2, "cpus:2;mem:1024").expect("cluster starts");
    let mut text = String::new();
    let mut expected = 0;
    for i in 0..997 {
        // Roughly a third of the lines contain an 'a'.
        let line = if i % 3 == 0 {
            format!("line {i} has an a")
        } else {
            format!("line {i} without")
        };
        if line.contains('a') {
            expected += 1;
        }
        writeln!(text, "{line}").expect("write to string");
    }
    let file = cluster.dir.path().join("input.txt");
    std::fs::write(&file, text).expect("input written");

    let mut command = std::process::Command::new(sdk_example("count_lines"));
    command.args([
        "--master",
        &cluster.master_address(),
        "--file",
        file.to_str().expect("utf-8 path"),
        "--chunks",
        "6",
    ]);
    let output = run_with_deadline(command, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("lines containing 'a': {expected}")),
        "expected {expected}: {stdout}"
    );
    let state = cluster.state().expect("state");
    let agents: std::collections::BTreeSet<String> = all_tasks(&state)
        .iter()
        .filter_map(|t| t["agent_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(agents.len(), 2, "chunks ran on both agents");
}
