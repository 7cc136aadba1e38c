//! The README's commands, run as written against a fresh dev cluster on free
//! ports: `scripts/test-readme` with the binary this harness built (its
//! header says which blocks run and the little that differs from typing
//! them). Here so that the README's test command, and so CI, runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agora_e2e::{agora_bin, run_with_deadline};

#[test]
fn readme_commands_run_as_written() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-readme");
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|out| out.status.success()),
        "python3 not found; install it: apt-get install -y python3"
    );
    let mut command = Command::new("python3");
    command.arg(&script).arg(agora_bin());
    // The script's own deadlines (a minute for the cluster, two for each
    // block) end it well within this one.
    let output = run_with_deadline(command, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status
    );
    assert!(
        stdout.contains("test-readme: passed"),
        "the script did not say it passed:\n{stdout}\n{stderr}"
    );
}
