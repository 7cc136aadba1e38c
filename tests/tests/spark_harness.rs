//! The Spark harness against Spark itself, no Agora: the count job through
//! `spark-submit` on Spark's standalone cluster manager (its workers and
//! executors run from the executor package, which proves the package is
//! enough for an executor, PySpark workers included), the file server, and
//! the package's contents.
//!
//! Needs Java 17 and `target/spark-venv` with `pyspark==3.5.7` (`.ci/run`
//! installs both); fails with the install command when they are missing.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use agora_e2e::spark::{
    FileServer, PACKAGE_DIR, SparkEnv, StandaloneCluster, StandaloneOptions, parse_count,
    write_count_job, write_test_input,
};
use agora_e2e::{http_get, http_raw, http_request, run_with_deadline};
use anyhow::{Context, ensure};

const INPUT_LINES: usize = 20_000;

#[test]
fn count_job_on_standalone_from_the_executor_package() -> anyhow::Result<()> {
    let started = Instant::now();
    let env = SparkEnv::locate()?;
    eprintln!(
        "spark home {}, {} ({})",
        env.home.display(),
        env.java.display(),
        env.java_version
    );

    let package = env.executor_package()?;
    check_package(&package)?;
    let executor_home = env.executor_home()?;
    eprintln!("package ready after {:?}", started.elapsed());

    let work = tempfile::tempdir()?;
    let (input, expected) = write_test_input(work.path(), INPUT_LINES)?;
    ensure!(
        expected > 0 && expected < INPUT_LINES,
        "the input mixes lines with and without 'a' ({expected} of {INPUT_LINES} have one)"
    );
    let job = write_count_job(work.path())?;

    let mut options = StandaloneOptions::new(2, 1, "1g");
    options.worker_home = Some(executor_home);
    let cluster = StandaloneCluster::start_with(&env, &options)?;
    eprintln!("standalone cluster up after {:?}", started.elapsed());

    let mut submit = env.submit_command();
    submit
        .arg("--master")
        .arg(cluster.master_url())
        .args([
            "--conf",
            "spark.executor.memory=512m",
            "--conf",
            "spark.executor.cores=1",
            "--conf",
            "spark.cores.max=2",
        ])
        .arg(&job)
        .arg(&input);
    let submitted = Instant::now();
    let output = run_with_deadline(submit, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("spark-submit took {:?}", submitted.elapsed());
    ensure!(
        output.status.success(),
        "spark-submit failed ({}); stdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let count = parse_count(&stdout)
        .with_context(|| format!("no COUNT= line; stdout:\n{stdout}\nstderr:\n{stderr}"))?;
    assert_eq!(count, expected, "Spark's count against the Rust count");

    // Both workers ran one executor for the application, its JVM on the
    // package's jars, and it ran PySpark workers (with the package's
    // python/lib on their PYTHONPATH).
    let apps = cluster.master_json()?["completedapps"].clone();
    eprintln!("completed applications: {apps}");
    let package_jars = format!("{PACKAGE_DIR}/jars/*");
    for n in 0..2 {
        let worker_dir = cluster.dir.path().join(format!("worker-{n}"));
        let apps: Vec<_> = std::fs::read_dir(&worker_dir)
            .with_context(|| format!("worker {n}'s work dir"))?
            .flatten()
            .map(|e| e.path())
            .collect();
        ensure!(apps.len() == 1, "worker {n} ran executors of {apps:?}");
        let executors: Vec<_> = std::fs::read_dir(&apps[0])?.flatten().collect();
        ensure!(
            executors.len() == 1,
            "worker {n} ran {} executors",
            executors.len()
        );
        let log = std::fs::read_to_string(executors[0].path().join("stderr"))
            .with_context(|| format!("worker {n}'s executor stderr"))?;
        ensure!(
            log.lines()
                .next()
                .is_some_and(|command| command.contains(&package_jars)),
            "worker {n}'s executor did not run from the package:\n{log}"
        );
        ensure!(
            log.contains("PythonRunner"),
            "worker {n}'s executor ran no Python worker:\n{log}"
        );
    }

    file_server_serves_and_refuses(work.path())?;
    eprintln!("test done after {:?}", started.elapsed());
    Ok(())
}

/// The package has one top-level directory with what an executor runs,
/// and none of the jars left out.
fn check_package(package: &std::path::Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(package)?.len();
    eprintln!("package {} ({} MB)", package.display(), size / 1_000_000);
    let mut list = Command::new("tar");
    list.arg("-tzf").arg(package);
    let output = run_with_deadline(list, Duration::from_secs(120));
    ensure!(
        output.status.success(),
        "tar -tzf {} failed",
        package.display()
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    let entries: BTreeSet<&str> = listing.lines().collect();
    let tops: BTreeSet<&str> = entries.iter().filter_map(|e| e.split('/').next()).collect();
    ensure!(
        tops == BTreeSet::from([PACKAGE_DIR]),
        "top-level entries {tops:?}"
    );
    for needed in [
        "bin/spark-class",
        "bin/load-spark-env.sh",
        "bin/find-spark-home",
        "jars/spark-core_2.12-3.5.7.jar",
        "jars/scala-library-2.12.18.jar",
        "jars/hadoop-client-api-3.3.4.jar",
        "python/lib/pyspark.zip",
    ] {
        let entry = format!("{PACKAGE_DIR}/{needed}");
        ensure!(
            entries.contains(entry.as_str()),
            "the package lacks {entry}"
        );
    }
    let jars = entries
        .iter()
        .filter(|e| e.starts_with(&format!("{PACKAGE_DIR}/jars/")) && e.ends_with(".jar"))
        .count();
    ensure!(jars > 100, "the package has only {jars} jars");
    ensure!(
        !entries
            .iter()
            .any(|e| e.contains("rocksdbjni") || e.contains("/hive-")),
        "the package holds a jar it should leave out"
    );
    Ok(())
}

fn file_server_serves_and_refuses(dir: &std::path::Path) -> anyhow::Result<()> {
    let served = dir.join("served");
    std::fs::create_dir(&served)?;
    let content = "some bytes\nfor an agent\n";
    std::fs::write(served.join("hello.txt"), content)?;
    std::fs::write(dir.join("secret.txt"), "not to be served")?;
    let server = FileServer::start(&served)?;
    assert_eq!(
        server.url("hello.txt"),
        format!("http://127.0.0.1:{}/hello.txt", server.port())
    );

    let (code, body) = http_get(server.port(), "/hello.txt")?;
    assert_eq!((code, body.as_str()), (200, content));
    let (code, body) = http_request(server.port(), "HEAD", "/hello.txt", None)?;
    assert_eq!((code, body.as_str()), (200, ""), "HEAD has no body");
    assert_eq!(server.requests("/hello.txt"), 2);
    assert_eq!(server.requests("hello.txt"), 2);

    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/",
        "/.hidden",
    ] {
        // As written: an HTTP client would resolve the dots before sending.
        let (code, _) = http_raw(
            server.port(),
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )?;
        assert_eq!(code, 400, "GET {path}");
    }
    let (code, _) = http_get(server.port(), "/missing.txt")?;
    assert_eq!(code, 404);
    let (code, _) = http_request(server.port(), "PUT", "/hello.txt", Some("x"))?;
    assert_eq!(code, 405);
    assert_eq!(server.requests("/hello.txt"), 3);

    let port = server.port();
    drop(server);
    ensure!(
        http_get(port, "/hello.txt").is_err(),
        "the file server still answers after it was dropped"
    );
    Ok(())
}

/// `spark-submit` is a JVM that starts Python: `run_with_deadline` must
/// leave no process of the command behind, whether the command outlives
/// its deadline or exits leaving a child (which would also hold the output
/// pipes open).
#[test]
fn run_with_deadline_kills_the_whole_process_group() -> anyhow::Result<()> {
    for (script, deadline) in [
        ("sleep 300 & echo $!; wait", Duration::from_secs(1)),
        ("sleep 300 & echo $!", Duration::from_secs(120)),
    ] {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let started = Instant::now();
        let output = run_with_deadline(command, deadline);
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{script:?} took {:?}",
            started.elapsed()
        );
        let child: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .with_context(|| format!("{script:?} printed its child's pid"))?;
        agora_e2e::wait_for(
            &format!("{script:?}'s child {child} to be gone"),
            Duration::from_secs(30),
            || {
                let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
                // Gone, or a zombie about to be reaped by init.
                stat.is_none_or(|s| s.contains(") Z ")).then_some(())
            },
        )?;
    }
    Ok(())
}
