//! Issue 17: what `agora` says when it cannot do what it was asked, run as a
//! user runs it: one line on stderr, `agora: ` first, saying what is wrong
//! and what to do, and the documented exit status. Command lines refused
//! before anything starts (a bad flag, a bad `--resources`) are checked
//! word for word by the cli crate's snapshot test (`crates/cli/tests/help.rs`);
//! here are the errors that need a port, a master or a cluster, and the
//! warning a likely typo in an agent's `--resources` gets.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use agora_e2e::{Cluster, agora_bin, free_port, run_with_deadline};

/// Runs `agora` with `args` (its logs at their default level) and returns
/// its output once it exits.
fn agora(args: &[&str]) -> Output {
    let mut command = Command::new(agora_bin());
    command.args(args).env_remove("AGORA_LOG");
    run_with_deadline(command, Duration::from_secs(60))
}

/// The one line `output` has on stderr, after checking that it is one line
/// with the prefix, that nothing went to stdout, and the exit status.
fn one_line(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {stdout}"
    );
    assert!(stdout.is_empty(), "stdout: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("agora: "), "{stderr}");
    lines[0].to_owned()
}

#[test]
fn a_port_in_use_names_the_flags_that_move_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = taken.local_addr().expect("address").port().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let work_dir = dir.path().join("agent");
    let work_dir = work_dir.to_str().expect("utf-8 path");
    let expected = format!(
        "agora: cannot listen on 127.0.0.1:{port}: the port is in use (another agora, or another \
         program): stop it, or choose another port with --port (or another address with --ip)"
    );
    let dev_dir = dir.path().join("dev");
    let dev_dir = dev_dir.to_str().expect("utf-8 path");
    for args in [
        vec!["master", "--port", &port],
        vec![
            "agent",
            "--master",
            "127.0.0.1:5050",
            "--work-dir",
            work_dir,
            "--port",
            &port,
        ],
        vec!["dev", "--port", &port, "--work-dir", dev_dir],
    ] {
        let line = one_line(&agora(&args), 1);
        assert_eq!(line, expected, "agora {args:?}");
    }
}

#[test]
fn an_unreachable_master_says_what_to_check() {
    // Free a moment ago: nothing listens there.
    let master = format!("127.0.0.1:{}", free_port());
    let hint = "; check that a master runs there and --master names it (--timeout waits longer)";
    let run = one_line(
        &agora(&[
            "run",
            "--master",
            &master,
            "--name",
            "x",
            "--command",
            "true",
            "--timeout",
            "1",
        ]),
        2,
    );
    assert!(
        run.starts_with(&format!(
            "agora: could not subscribe to master at {master} within 1s: "
        )),
        "{run}"
    );
    assert!(run.ends_with(hint), "{run}");
    for args in [
        vec!["kill", "--master", &master, "--timeout", "1", "x-0"],
        vec!["teardown", "--master", &master, "--timeout", "1", "x"],
    ] {
        let line = one_line(&agora(&args), 2);
        assert!(
            line.starts_with(&format!(
                "agora: cannot reach the leading master at {master} within 1 s: "
            )),
            "agora {args:?}: {line}"
        );
        assert!(line.ends_with(hint), "agora {args:?}: {line}");
    }
}

#[test]
fn a_task_bigger_than_every_agent_names_the_largest_agent_and_the_flags() {
    let cluster = Cluster::start(2, "cpus:1;mem:256").expect("cluster");
    let output = cluster.run(&["--name", "big", "--command", "true", "--cpus", "4"]);
    let line = one_line(&output, 1);
    assert_eq!(
        line,
        "agora: no agent can ever fit a task of cpus:4;mem:32 (largest agent: cpus:1;mem:256): \
         ask for less with --cpus, --mem, --disk or --ports, or add a bigger agent"
    );
}

#[test]
fn a_resource_name_one_edit_from_a_known_one_is_a_warning_and_still_advertised() {
    let cluster = Cluster::start(1, "cpsu:2;cpus:1;mem:256").expect("cluster");
    let state = cluster
        .wait_state("the agent's custom resource", |state| {
            state["agents"][0]["resources"]["cpsu"].as_f64() == Some(2.0)
        })
        .expect("the typo is advertised as a custom resource");
    assert_eq!(state["agents"][0]["resources"]["cpus"].as_f64(), Some(1.0));
    let log = cluster.agents[0].log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.iter().any(|l| l.contains(
            "--resources: 'cpsu' is not a known resource and is advertised as a custom one; \
             did you mean 'cpus'?"
        )),
        "{log}"
    );
    // The well-known names given are not warned about.
    assert!(
        !warnings.iter().any(|l| l.contains("'cpus' is not")),
        "{log}"
    );
}
