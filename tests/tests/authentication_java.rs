//! Authentication through `libmesos.so` under Mesos' own Java bindings (as
//! Spark uses them): `MesosSchedulerDriver` constructed with a
//! `Protos.Credential` (Spark's `spark.mesos.principal`/`spark.mesos.secret`)
//! against a master that authenticates frameworks. The right secret
//! registers; a wrong one, or none, reaches the application's `error`
//! callback with the master's reason.
//!
//! Needs Java 17 (with `javac`) and the Spark virtualenv, as
//! `libmesos_java.rs` does.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agora_e2e::auth::{start_master_only, write_credentials};
use agora_e2e::spark::{SparkEnv, workspace_root};
use agora_e2e::{libmesos, run_with_deadline};

const SECRET: &str = "spark-S3cret-e15";

#[test]
fn the_java_drivers_credential_authenticates_the_framework() {
    let spark = SparkEnv::locate().expect("Java and the Spark virtualenv are installed");
    let library = libmesos();
    let cluster = start_master_only(|dir: &Path| {
        let credentials = write_credentials(&dir.join("credentials.json"), &[("spark", SECRET)]);
        vec![
            "--credentials".into(),
            credentials.display().to_string(),
            "--authenticate-frameworks".into(),
        ]
    })
    .expect("master starts");

    // Mesos' Java bindings and the test's class.
    let jar = spark
        .home
        .join("jars")
        .join("mesos-1.4.3-shaded-protobuf.jar");
    assert!(jar.exists(), "{} is missing", jar.display());
    let classes = cluster.dir.path().join("classes");
    let javac = spark.java_home.join("bin").join("javac");
    let javac = if javac.exists() {
        javac
    } else {
        "javac".into()
    };
    let mut compile = Command::new(javac);
    compile
        .arg("-cp")
        .arg(&jar)
        .arg("-d")
        .arg(&classes)
        .arg(workspace_root().join("crates/libmesos/tests/java/AuthFramework.java"));
    let output = run_with_deadline(compile, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let classpath = format!("{}:{}", jar.display(), classes.display());

    let run = |secret: Option<&str>| {
        let mut command = Command::new(&spark.java);
        command
            .arg(format!("-Dtest.master={}", cluster.master_address()))
            .arg("-Dtest.principal=spark");
        if let Some(secret) = secret {
            command.arg(format!("-Dtest.secret={secret}"));
        }
        command
            .arg("-cp")
            .arg(&classpath)
            .arg("AuthFramework")
            .env("MESOS_NATIVE_JAVA_LIBRARY", &library)
            .env("AGORA_LIBMESOS_CONNECT_TIMEOUT", "10");
        let output = run_with_deadline(command, Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (stdout, stderr)
    };

    let (stdout, stderr) = run(Some(SECRET));
    assert!(
        stdout.lines().any(|l| l.starts_with("REGISTERED ")),
        "{stdout}\n{stderr}"
    );

    let (stdout, stderr) = run(Some("not-the-secret"));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ERROR ")
                && l.contains("invalid credentials for principal 'spark'")),
        "{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("not-the-secret") && !stderr.contains("not-the-secret"));

    let (stdout, stderr) = run(None);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ERROR ") && l.contains("authentication required")),
        "{stdout}\n{stderr}"
    );

    let log = cluster.master.log_text();
    assert!(!log.contains(SECRET), "the secret is in the master's log");
}
