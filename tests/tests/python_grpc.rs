//! A framework in another language, from our `.proto` files alone: stock
//! `protoc` (PyPI's `grpcio-tools`) generates Python stubs from `proto/`,
//! and `tests/python/grpc_framework.py` runs `echo hi` on a real master and
//! agent through them: SUBSCRIBE, OFFERS, ACCEPT with a LAUNCH, ACKNOWLEDGE
//! of every update, TASK_FINISHED, TEARDOWN.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agora_e2e::spark::workspace_root;
use agora_e2e::{Cluster, run_with_deadline};

/// The pinned `grpcio-tools` (also in `.ci/run`).
const INSTALL: &str = "install it into the project virtualenv from the workspace root: \
     `target/spark-venv/bin/pip install grpcio-tools==1.85.1` (create the virtualenv first with \
     `python3 -m venv target/spark-venv` if needed; `.ci/run` does all of this)";

/// The project virtualenv's Python, with `grpc_tools` and `grpc` importable.
fn python() -> PathBuf {
    let venv = std::env::var_os("AGORA_SPARK_VENV")
        .map_or_else(|| workspace_root().join("target/spark-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no virtualenv: {} does not exist; {INSTALL}",
        python.display()
    );
    let mut probe = Command::new(&python);
    probe.args(["-c", "import grpc, grpc_tools.protoc"]);
    let output = run_with_deadline(probe, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "{} cannot import grpc_tools ({}): {}; {INSTALL}",
        python.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    python
}

/// Every `.proto` file under `dir`, sorted.
fn protos(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("proto dir readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs stock protoc over all of `proto/` into `out`; panics with its
/// complaint if it refuses a file.
fn generate_stubs(python: &Path, out: &Path) {
    let root = workspace_root().join("proto");
    let files = protos(&root);
    assert!(
        files.len() >= 8,
        "too few protos under {}: {files:?}",
        root.display()
    );
    let mut protoc = Command::new(python);
    protoc
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("--proto_path={}", root.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&files);
    let output = run_with_deadline(protoc, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "stock protoc refused proto/ ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for stub in [
        "agora/v1/scheduler_pb2.py",
        "agora/v1/scheduler_pb2_grpc.py",
        "agora/v1/mesos_pb2.py",
        "agora/v1/master_pb2.py",
    ] {
        assert!(out.join(stub).exists(), "protoc wrote no {stub}");
    }
}

#[test]
fn python_framework_over_stock_protoc_stubs_runs_a_task() {
    let python = python();
    let cluster = Cluster::start(1, "cpus:2;mem:1024").expect("cluster starts");
    let stubs = cluster.dir.path().join("python-stubs");
    std::fs::create_dir_all(&stubs).expect("stub dir");
    generate_stubs(&python, &stubs);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/grpc_framework.py");
    let mut framework = Command::new(&python);
    framework
        .arg(&script)
        .arg("--stubs")
        .arg(&stubs)
        .args(["--master", &cluster.master_address(), "--deadline", "90"])
        // The stubs and grpc come from --stubs and the virtualenv only.
        .env_remove("PYTHONPATH");
    let output = run_with_deadline(framework, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let context = format!(
        "exit {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{context}"))
        })
        .collect();
    assert!(output.status.success(), "the framework failed\n{context}");
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"subscribed"), "{context}");
    assert_eq!(kinds.last(), Some(&"teardown"), "{context}");
    assert!(kinds.contains(&"offers"), "{context}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "launched").count(),
        1,
        "{context}"
    );

    let updates: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "update" && l["task_id"] == "python-echo-hi")
        .collect();
    let states: Vec<&str> = updates.iter().filter_map(|u| u["state"].as_str()).collect();
    assert_eq!(states.last(), Some(&"TASK_FINISHED"), "{context}");
    assert!(
        states
            .iter()
            .all(|s| ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"].contains(s)),
        "unexpected states {states:?}\n{context}"
    );
    assert!(
        updates.iter().all(|u| u["acknowledged"] == true),
        "an agent's update came without a uuid to acknowledge\n{context}"
    );

    // The master saw the same: the task finished, and the framework is gone.
    let framework_id = lines[0]["framework_id"].as_str().expect("framework id");
    cluster
        .wait_state("the framework torn down and its task finished", |state| {
            let active = state["frameworks"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["id"] == framework_id);
            let finished = agora_e2e::all_tasks(state)
                .iter()
                .any(|t| t["id"] == "python-echo-hi" && t["state"] == "TASK_FINISHED");
            !active && finished
        })
        .expect("master's /state agrees");
}
