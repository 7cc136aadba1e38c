//! Snapshots of what `agora` tells a user without a cluster: each command's
//! `--help`, and the one-line error of each command line it refuses.
//!
//! The expected text is checked in under `tests/snapshots/`; a difference
//! fails the test and shows both. After a deliberate change, rewrite them
//! with `AGORA_UPDATE_SNAPSHOTS=1 cargo test -p agora-cli --test help` and
//! read the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `agora` binary of this build with `args`, without any `AGORA_*`
/// variable of the caller's (clap would show their values in the help and
/// read them as flags).
fn agora(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGORA_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().expect("the agora binary runs")
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

/// Compares `actual` with the snapshot `name`, or rewrites the snapshot
/// when `AGORA_UPDATE_SNAPSHOTS=1`.
fn check_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("AGORA_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("snapshot written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with AGORA_UPDATE_SNAPSHOTS=1 cargo test -p agora-cli --test help",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             --- whole output ---\n{actual}\n\
             (after a deliberate change: AGORA_UPDATE_SNAPSHOTS=1 cargo test -p agora-cli --test help)",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn each_commands_help_is_as_checked_in() {
    for command in ["", "master", "agent", "dev", "run", "kill", "teardown"] {
        let args: Vec<&str> = [command, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let output = agora(&args);
        assert!(output.status.success(), "agora {args:?}: {output:?}");
        assert!(output.stderr.is_empty(), "agora {args:?}: {output:?}");
        let name = if command.is_empty() {
            "help".to_owned()
        } else {
            format!("help-{command}")
        };
        check_snapshot(&name, &String::from_utf8_lossy(&output.stdout));
    }
}

/// Command lines refused before anything starts, each with its exit
/// status and its one line on stderr.
const REFUSED: &[&[&str]] = &[
    &["frobnicate"],
    &[
        "run",
        "--mastr",
        "127.0.0.1:5050",
        "--name",
        "x",
        "--command",
        "true",
    ],
    &["run", "--master", "127.0.0.1:5050"],
    &["master", "--port", "high"],
    &["master", "--allocation-interval", "0"],
    &[
        "agent",
        "--master",
        "127.0.0.1:5050",
        "--work-dir",
        "never-created",
        "--resources",
        "cpus:abc",
    ],
    &[
        "agent",
        "--master",
        "127.0.0.1:5050",
        "--work-dir",
        "never-created",
        "--resources",
        "cpu:4",
    ],
    &[
        "agent",
        "--master",
        "127.0.0.1:5050",
        "--work-dir",
        "never-created",
        "--resources",
        "cpus 4",
    ],
    &["dev", "--agents", "0"],
    &[
        "run",
        "--master",
        "127.0.0.1:5050",
        "--name",
        "x",
        "--command",
        "true",
        "--cpus",
        "0",
    ],
    &[
        "run",
        "--master",
        "127.0.0.1:5050",
        "--name",
        "x",
        "--command",
        "true",
        "--health-delay",
        "5",
    ],
    &["kill", "--master", "ftp://127.0.0.1:5050", "x-0"],
];

#[test]
fn each_refused_command_line_is_one_line_as_checked_in() {
    let mut transcript = String::new();
    for args in REFUSED {
        let output = agora(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.stdout.is_empty(),
            "agora {args:?} printed on stdout: {output:?}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "agora {args:?}: not one line: {stderr}"
        );
        assert!(stderr.starts_with("agora: "), "agora {args:?}: {stderr}");
        let code = output.status.code().expect("exited, not killed");
        assert_ne!(code, 0, "agora {args:?} succeeded");
        transcript.push_str(&format!(
            "$ agora {}\n{stderr}exit {code}\n\n",
            args.join(" ")
        ));
    }
    check_snapshot("refused", &transcript);
    assert!(
        !Path::new("never-created").exists(),
        "a refused agent created its work dir"
    );
}
