//! Harness for running unmodified Apache Spark (PyPI `pyspark==3.5.7`, Java
//! 17) in end-to-end tests and benchmarks: the Spark installation
//! ([`SparkEnv`]), the tarball a Spark executor is started from
//! ([`SparkEnv::executor_package`]), a file server agents fetch it from
//! ([`FileServer`]), the count job and its input, and Spark's own standalone
//! cluster manager ([`StandaloneCluster`]) as the baseline.
//!
//! Everything listens on 127.0.0.1 only, every wait is a condition with a
//! deadline, and every process started here runs in a process group of its
//! own that is killed, by its id, when its owner is dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::{Sweeper, free_port, get_json, run_with_deadline, wait_for};

/// The Spark release the harness is written against.
pub const SPARK_VERSION: &str = "3.5.7";
/// The executor package's top-level directory. Spark's Mesos backend runs
/// `cd spark-3*; ./bin/spark-class ...` in the sandbox it was extracted in
/// (the URI's last segment up to its first dot, then `*`).
pub const PACKAGE_DIR: &str = "spark-3.5.7-bin-agora";
/// The executor package's file name.
pub const PACKAGE_FILE: &str = "spark-3.5.7-bin-agora.tgz";

/// How to install what the harness needs, for the error messages.
const INSTALL_JAVA: &str = "install Java 17: `apt-get install -y openjdk-17-jdk-headless` (or set JAVA_HOME \
     to a JDK/JRE 17)";
const INSTALL_VENV: &str = "create the Spark virtualenv from the workspace root: \
     `python3 -m venv target/spark-venv && target/spark-venv/bin/pip install pyspark==3.5.7` \
     (if `python3 -m venv` fails: `apt-get install -y python3-venv` first; `.ci/run` does all \
     of this)";

/// Environment variables never passed on from the caller to a Spark command:
/// they would point Spark elsewhere than the harness means (another
/// SPARK_HOME, conf dir, Python, Hadoop config or native Mesos library).
/// Every `SPARK_*` and `PYSPARK_*` variable is removed as well.
const SCRUBBED: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "HADOOP_CONF_DIR",
    "YARN_CONF_DIR",
    "MESOS_NATIVE_JAVA_LIBRARY",
    "MESOS_NATIVE_LIBRARY",
    "_JAVA_OPTIONS",
    "JAVA_TOOL_OPTIONS",
];

/// Jars of SPARK_HOME/jars left out of the executor package (prefixes of
/// file names), and why an executor can do without them: an executor's
/// class path is `jars/*`, so a missing jar matters only when a class of it
/// is loaded, and these are loaded only by other processes or by features
/// the harness does not use. What stays: Spark core/SQL/streaming/ML/graph,
/// Hadoop's client (`textFile` reads through Hadoop input formats), Scala and
/// the REPL (spark-shell's executors load the REPL's classes), the Mesos
/// jars, and python/lib (pyspark.zip and py4j, the PYTHONPATH of PySpark's
/// workers).
pub const LEFT_OUT_JARS: &[(&str, &str)] = &[
    // ~59 MB, the largest jar: RocksDB backs the driver's on-disk UI store,
    // the external shuffle service's DB and Structured Streaming's RocksDB
    // state store; none runs in an executor here.
    (
        "rocksdbjni-",
        "RocksDB: driver UI store, shuffle service, streaming state store",
    ),
    // Hive support (`enableHiveSupport`, the thrift server, the metastore
    // and its JDO/Derby database) is a driver-side choice the harness never
    // makes; Spark SQL without it needs none of these.
    ("hive-", "Hive"),
    ("spark-hive_", "Hive"),
    ("spark-hive-thriftserver_", "Hive thrift server"),
    ("datanucleus-", "Hive metastore (JDO)"),
    ("derby-", "Hive metastore database"),
    // Other cluster managers' backends run in the driver (or YARN's AM).
    ("kubernetes-", "Kubernetes client (driver-side backend)"),
    ("spark-kubernetes_", "Kubernetes backend"),
    ("spark-yarn_", "YARN backend"),
    ("hadoop-yarn-server-web-proxy-", "YARN"),
];

/// The workspace root (the directory of the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// A Spark installation: the virtualenv with `pyspark==3.5.7`, its
/// SPARK_HOME and a working Java, plus a scratch directory (conf dir, local
/// dirs, working directory) that lives as long as this value.
pub struct SparkEnv {
    /// The virtualenv (`<workspace>/target/spark-venv`, or `AGORA_SPARK_VENV`).
    pub venv: PathBuf,
    /// The virtualenv's Python: the driver's and the PySpark workers' Python.
    pub python: PathBuf,
    /// SPARK_HOME: the installed `pyspark` package directory.
    pub home: PathBuf,
    /// The `java` that `java -version` ran.
    pub java: PathBuf,
    /// JAVA_HOME for that `java` (its real path, two levels up).
    pub java_home: PathBuf,
    /// The first line of `java -version`.
    pub java_version: String,
    /// SPARK_CONF_DIR given to every command made here (see [`write_conf`]).
    pub conf_dir: PathBuf,
    scratch: tempfile::TempDir,
}

impl SparkEnv {
    /// Finds and checks the installation. Fails (never skips) with the
    /// install command in the message when something is missing.
    pub fn locate() -> anyhow::Result<SparkEnv> {
        let venv = match std::env::var_os("AGORA_SPARK_VENV") {
            Some(v) => PathBuf::from(v),
            None => workspace_root().join("target").join("spark-venv"),
        };
        let python = venv.join("bin").join("python");
        if !python.exists() {
            bail!(
                "no Spark virtualenv: {} does not exist; {INSTALL_VENV}",
                python.display()
            );
        }
        let mut probe = Command::new(&python);
        probe.args([
            "-c",
            "import os, pyspark; print(pyspark.__version__); print(os.path.dirname(pyspark.__file__))",
        ]);
        let output = run_with_deadline(probe, Duration::from_secs(60));
        if !output.status.success() {
            bail!(
                "{} cannot import pyspark ({}): {}; {INSTALL_VENV}",
                python.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines = stdout.lines();
        let version = lines.next().unwrap_or_default().trim().to_string();
        let home = PathBuf::from(lines.next().unwrap_or_default().trim());
        if version != SPARK_VERSION {
            bail!(
                "the virtualenv {} has pyspark {version:?}, the harness needs {SPARK_VERSION}; \
                 {INSTALL_VENV}",
                venv.display()
            );
        }
        for needed in ["bin/spark-submit", "bin/spark-class", "jars"] {
            if !home.join(needed).exists() {
                bail!(
                    "SPARK_HOME {} has no {needed} (a broken pyspark install?); {INSTALL_VENV}",
                    home.display()
                );
            }
        }
        let (java, java_home, java_version) = locate_java()?;
        let scratch = tempfile::Builder::new()
            .prefix("agora-spark-")
            .tempdir()
            .context("creating the Spark scratch directory")?;
        let conf_dir = scratch.path().join("conf");
        write_conf(&conf_dir, &scratch.path().join("local"))?;
        std::fs::create_dir_all(scratch.path().join("work"))
            .context("creating the Spark working directory")?;
        Ok(SparkEnv {
            venv,
            python,
            home,
            java,
            java_home,
            java_version,
            conf_dir,
            scratch,
        })
    }

    /// The scratch directory (conf dir, local dirs, the commands' working
    /// directory); removed when this value is dropped.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// `bin/spark-submit`, with [`SparkEnv::configure`]'s environment.
    pub fn submit_command(&self) -> Command {
        self.bin_command("spark-submit")
    }

    /// `bin/spark-shell` (Scala REPL), with [`SparkEnv::configure`]'s environment.
    pub fn shell_command(&self) -> Command {
        self.bin_command("spark-shell")
    }

    /// `bin/run-example`, with [`SparkEnv::configure`]'s environment. Note:
    /// the PyPI package ships no `examples/jars`, so `run-example` itself
    /// fails with it ("Failed to find Spark examples jar"); Python examples
    /// run through [`SparkEnv::submit_command`] instead.
    pub fn run_example_command(&self) -> Command {
        self.bin_command("run-example")
    }

    /// `bin/spark-class` (a JVM class of Spark: a daemon, an executor).
    pub fn class_command(&self) -> Command {
        self.bin_command("spark-class")
    }

    fn bin_command(&self, name: &str) -> Command {
        let mut command = Command::new(self.home.join("bin").join(name));
        self.configure(&mut command, &self.home);
        command
    }

    /// Sets a command's environment for Spark: nothing of the caller's
    /// `SPARK_*`/`PYSPARK_*` (nor [`SCRUBBED`]), then SPARK_HOME =
    /// `spark_home`, JAVA_HOME, PYSPARK_PYTHON and PYSPARK_DRIVER_PYTHON =
    /// the venv's Python, SPARK_LOCAL_IP=127.0.0.1, SPARK_CONF_DIR =
    /// [`SparkEnv::conf_dir`], SPARK_LOCAL_DIRS in the scratch directory, and
    /// the scratch `work` directory as the working directory (Spark SQL
    /// writes `spark-warehouse/` and `derby.log` there). A caller may set
    /// SPARK_CONF_DIR again afterwards (e.g. a per-run conf dir).
    pub fn configure(&self, command: &mut Command, spark_home: &Path) {
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("SPARK_")
                || text.starts_with("PYSPARK_")
                || SCRUBBED.contains(&text.as_ref())
            {
                command.env_remove(&name);
            }
        }
        command
            .env("SPARK_HOME", spark_home)
            .env("JAVA_HOME", &self.java_home)
            .env("PYSPARK_PYTHON", &self.python)
            .env("PYSPARK_DRIVER_PYTHON", &self.python)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_CONF_DIR", &self.conf_dir)
            .env("SPARK_LOCAL_DIRS", self.scratch.path().join("local"))
            .current_dir(self.scratch.path().join("work"));
    }

    /// The tarball `spark-3.5.7-bin-agora.tgz` an executor is started from,
    /// built once under `<workspace>/target/spark-package/` (see
    /// [`LEFT_OUT_JARS`] for what it holds).
    pub fn executor_package(&self) -> anyhow::Result<PathBuf> {
        let dir = package_dir();
        let tarball = dir.join(PACKAGE_FILE);
        if tarball.exists() {
            return Ok(tarball);
        }
        with_package_lock(&dir, || {
            if !tarball.exists() {
                build_package(&self.home, &dir, &tarball)?;
            }
            Ok(())
        })?;
        Ok(tarball)
    }

    /// The executor package extracted (once, under
    /// `<workspace>/target/spark-package/spark-3.5.7-bin-agora/`): a
    /// SPARK_HOME holding exactly what the package holds, so that a Spark
    /// daemon (a standalone worker and its executors) run from it proves the
    /// package suffices.
    pub fn executor_home(&self) -> anyhow::Result<PathBuf> {
        let tarball = self.executor_package()?;
        let dir = package_dir();
        let home = dir.join(PACKAGE_DIR);
        let marker = home.join("bin").join("spark-class");
        if marker.exists() {
            return Ok(home);
        }
        with_package_lock(&dir, || {
            if marker.exists() {
                return Ok(());
            }
            let staging = dir.join(format!(".extract-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            std::fs::create_dir_all(&staging)
                .with_context(|| format!("creating {}", staging.display()))?;
            let mut tar = Command::new("tar");
            tar.arg("-xzf").arg(&tarball).arg("-C").arg(&staging);
            run_checked(
                tar,
                "extracting the executor package",
                Duration::from_secs(600),
            )?;
            let _ = std::fs::remove_dir_all(&home);
            std::fs::rename(staging.join(PACKAGE_DIR), &home)
                .with_context(|| format!("moving the extracted package to {}", home.display()))?;
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        })?;
        Ok(home)
    }
}

/// `java` (JAVA_HOME's if set and present, else the first on PATH), its
/// JAVA_HOME, and the first line of `java -version`.
fn locate_java() -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let from_home = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.exists());
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("java"))
                .find(|java| java.is_file())
        })
    };
    let Some(java) = from_home.or_else(on_path) else {
        bail!("no `java` on PATH (nor in JAVA_HOME); {INSTALL_JAVA}");
    };
    let mut probe = Command::new(&java);
    probe.arg("-version");
    let output = run_with_deadline(probe, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "`{} -version` failed ({}): {}; {INSTALL_JAVA}",
            java.display(),
            output.status,
            text.trim()
        );
    }
    let version = text.lines().next().unwrap_or_default().trim().to_string();
    let real =
        std::fs::canonicalize(&java).with_context(|| format!("resolving {}", java.display()))?;
    let java_home = real
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in a <java home>/bin", real.display()))?
        .to_path_buf();
    Ok((java, java_home, version))
}

/// Writes a Spark conf dir: `log4j2.properties` (INFO to stderr, each line
/// starting with the epoch milliseconds then the time of day, so that
/// [`DriverTimeline`] can place events against a clock read in Rust) and
/// `spark-defaults.conf` (the driver advertises 127.0.0.1, no console
/// progress bar, local dirs under `local_dir`).
pub fn write_conf(conf_dir: &Path, local_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(conf_dir)
        .with_context(|| format!("creating {}", conf_dir.display()))?;
    std::fs::create_dir_all(local_dir)
        .with_context(|| format!("creating {}", local_dir.display()))?;
    let log4j = "\
# Written by the agora-e2e Spark harness.
rootLogger.level = info
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{UNIX_MILLIS} %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = warn
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
";
    let defaults = format!(
        "# Written by the agora-e2e Spark harness.\n\
         spark.driver.host 127.0.0.1\n\
         spark.ui.showConsoleProgress false\n\
         spark.local.dir {}\n",
        local_dir.display()
    );
    std::fs::write(conf_dir.join("log4j2.properties"), log4j)
        .with_context(|| format!("writing {}/log4j2.properties", conf_dir.display()))?;
    std::fs::write(conf_dir.join("spark-defaults.conf"), defaults)
        .with_context(|| format!("writing {}/spark-defaults.conf", conf_dir.display()))?;
    Ok(())
}

/// `<workspace>/target/spark-package`.
fn package_dir() -> PathBuf {
    workspace_root().join("target").join("spark-package")
}

/// Runs `f` holding an exclusive lock on `<dir>/.lock`, so that test
/// processes racing to build the package build it once. Waits up to ten
/// minutes for another process's build.
fn with_package_lock(dir: &Path, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    use rustix::fs::FlockOperation;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    wait_for(
        "the lock on the Spark package directory (another process building it)",
        Duration::from_secs(600),
        || rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).ok(),
    )?;
    // Only the lock's holder builds: what a build left here is a killed
    // build's (staging trees, a partial tarball).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".build-")
                || name.starts_with(".extract-")
                || name.starts_with(&format!(".{PACKAGE_FILE}."))
            {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
    let result = f();
    let _ = rustix::fs::flock(&lock, FlockOperation::Unlock);
    result
}

/// Builds the tarball: a staging tree of symbolic links into SPARK_HOME
/// (bin/ without the Windows scripts, the kept jars, python/lib, conf/ if
/// SPARK_HOME has one: the PyPI package has none), archived with `tar
/// --dereference` and `gzip -1` into a temporary name, then renamed into
/// place.
///
/// Left out besides [`LEFT_OUT_JARS`]: sbin/ (daemon scripts: an executor
/// is started by `bin/spark-class`), the `*.cmd` scripts (Windows), and the
/// pip package's own Python sources (`pyspark/*.py`, `python/pyspark`,
/// `examples`, `data`, `licenses`): PySpark's workers import pyspark from
/// `python/lib/pyspark.zip`, which the executor puts first on their
/// PYTHONPATH. Without `find_spark_home.py` next to it, `bin/find-spark-home`
/// takes the extracted directory as SPARK_HOME, which is what an executor
/// in a sandbox needs (unless SPARK_HOME is set in its environment: then it
/// would run that installation's jars instead).
fn build_package(home: &Path, dir: &Path, tarball: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    let staging = dir.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let root = staging.join(PACKAGE_DIR);
    for sub in ["bin", "jars", "python"] {
        std::fs::create_dir_all(root.join(sub))
            .with_context(|| format!("creating {}", root.join(sub).display()))?;
    }
    let link_all = |from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool| -> anyhow::Result<()> {
        let entries =
            std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", from.display()))?;
            let name = entry.file_name();
            if keep(&name.to_string_lossy()) {
                symlink(entry.path(), to.join(&name))
                    .with_context(|| format!("linking {}", entry.path().display()))?;
            }
        }
        Ok(())
    };
    link_all(&home.join("bin"), &root.join("bin"), &|name| {
        !name.ends_with(".cmd")
    })?;
    link_all(&home.join("jars"), &root.join("jars"), &|name| {
        !LEFT_OUT_JARS
            .iter()
            .any(|(prefix, _)| name.starts_with(prefix))
    })?;
    symlink(
        home.join("python").join("lib"),
        root.join("python").join("lib"),
    )
    .context("linking python/lib")?;
    if home.join("conf").is_dir() {
        symlink(home.join("conf"), root.join("conf")).context("linking conf")?;
    }
    let partial = dir.join(format!(".{PACKAGE_FILE}.{}", std::process::id()));
    let mut tar = Command::new("tar");
    tar.args([
        "--dereference",
        "--sort=name",
        "--owner=0",
        "--group=0",
        "-I",
        "gzip -1",
        "-cf",
    ])
    .arg(&partial)
    .arg("-C")
    .arg(&staging)
    .arg(PACKAGE_DIR);
    let built = run_checked(
        tar,
        "archiving the executor package",
        Duration::from_secs(600),
    );
    let _ = std::fs::remove_dir_all(&staging);
    built?;
    std::fs::rename(&partial, tarball)
        .with_context(|| format!("moving the package to {}", tarball.display()))?;
    Ok(())
}

/// Runs a command with a deadline; an error with its stderr unless it succeeded.
fn run_checked(command: Command, what: &str, deadline: Duration) -> anyhow::Result<()> {
    let output = run_with_deadline(command, deadline);
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The count job of the Spark-on-Mesos guide: counts the lines of the file
/// given as its argument that contain the letter 'a', prints `COUNT=<n>`.
pub const COUNT_JOB: &str = r#"import sys

from pyspark import SparkContext

sc = SparkContext(appName="agora-count")
count = sc.textFile(sys.argv[1]).filter(lambda line: "a" in line).count()
print(f"COUNT={count}", flush=True)
sc.stop()
"#;

/// Writes [`COUNT_JOB`] to `<dir>/test.py`.
pub fn write_count_job(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("test.py");
    std::fs::write(&path, COUNT_JOB).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The count a job printed: the last `COUNT=<n>` line of its stdout.
pub fn parse_count(stdout: &str) -> Option<usize> {
    stdout
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("COUNT=")?.parse().ok())
}

/// The generated input's vocabulary: six of its thirty words have an 'a'.
const WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "spark",
    "mesos",
    "agent",
    "offer",
    "executor",
    "cluster",
    "resource",
    "sandbox",
    "fetch",
    "python",
    "driver",
    "kernel",
    "socket",
    "thread",
    "queue",
    "scheduler",
    "framework",
    "cpus",
    "mem",
    "disk",
    "port",
    "role",
];

/// The input's lines, seeded: the same `lines` give the same bytes.
/// Words are drawn from a vocabulary, and a word drawn with an 'a' gives
/// the line an 'a'; about a quarter of the lines have none.
fn test_lines(lines: usize) -> impl Iterator<Item = String> {
    let mut state = 0x5eed_a60a_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..lines).map(move |n| {
        let words = 3 + (next() % 8) as usize;
        let mut line = format!("{n:08}");
        for _ in 0..words {
            line.push(' ');
            line.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
        }
        line
    })
}

/// Writes a deterministic text file of `lines` lines to
/// `<dir>/input-<lines>.txt` and returns it with the number of its lines
/// that contain the letter 'a' (counted here, in Rust).
pub fn write_test_input(dir: &Path, lines: usize) -> anyhow::Result<(PathBuf, usize)> {
    let path = dir.join(format!("input-{lines}.txt"));
    let count = write_lines(&path, lines)?;
    Ok((path, count))
}

fn write_lines(path: &Path, lines: usize) -> anyhow::Result<usize> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut count = 0;
    for line in test_lines(lines) {
        if line.contains('a') {
            count += 1;
        }
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(count)
}

/// Like [`write_test_input`], but kept in `dir` across runs: the file and
/// its count (`input-<lines>.count`) are written under temporary names and
/// renamed, and reused when both are there.
pub fn cached_test_input(dir: &Path, lines: usize) -> anyhow::Result<(PathBuf, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("input-{lines}.txt"));
    let count_path = dir.join(format!("input-{lines}.count"));
    if path.exists()
        && let Ok(text) = std::fs::read_to_string(&count_path)
        && let Ok(count) = text.trim().parse()
    {
        return Ok((path, count));
    }
    let pid = std::process::id();
    let partial = dir.join(format!(".input-{lines}.txt.{pid}"));
    let count = write_lines(&partial, lines)?;
    std::fs::rename(&partial, &path).with_context(|| format!("moving to {}", path.display()))?;
    let partial_count = dir.join(format!(".input-{lines}.count.{pid}"));
    std::fs::write(&partial_count, count.to_string())
        .and_then(|()| std::fs::rename(&partial_count, &count_path))
        .with_context(|| format!("writing {}", count_path.display()))?;
    Ok((path, count))
}

/// What a driver's log (its stderr, with [`write_conf`]'s log4j pattern)
/// says about its start, in epoch milliseconds.
#[derive(Debug, Default, Clone)]
pub struct DriverTimeline {
    /// `Running Spark version ...`: the SparkContext starts.
    pub context_start_ms: Option<u64>,
    /// Each `Registered executor ...` line, in log order.
    pub executors_registered_ms: Vec<u64>,
    /// `SchedulerBackend is ready for scheduling ...`.
    pub ready_ms: Option<u64>,
}

impl DriverTimeline {
    pub fn parse(log: &str) -> DriverTimeline {
        let mut timeline = DriverTimeline::default();
        for line in log.lines() {
            let Some((stamp, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(ms) = stamp.parse::<u64>() else {
                continue;
            };
            if rest.contains("Running Spark version") && timeline.context_start_ms.is_none() {
                timeline.context_start_ms = Some(ms);
            } else if rest.contains("Registered executor") {
                timeline.executors_registered_ms.push(ms);
            } else if rest.contains("SchedulerBackend is ready for scheduling")
                && timeline.ready_ms.is_none()
            {
                timeline.ready_ms = Some(ms);
            }
        }
        timeline
    }

    /// When the `n`-th executor registered (`n` from 1).
    pub fn nth_executor_ms(&self, n: usize) -> Option<u64> {
        self.executors_registered_ms.get(n.checked_sub(1)?).copied()
    }
}

/// Milliseconds since the epoch, now (the clock log4j's `UNIX_MILLIS` reads).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 (an ephemeral port): GET and
/// HEAD of the files directly in one directory, one request per connection,
/// no listing, no path other than `/<file name>` (no `..`, no sub
/// directory, no name starting with a dot). Counts the requests per path.
/// Stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start(dir: &Path) -> anyhow::Result<FileServer> {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("the file server's directory {}", dir.display()))?;
        let listener =
            TcpListener::bind("127.0.0.1:0").context("binding the file server on 127.0.0.1")?;
        let addr = listener.local_addr().context("the file server's address")?;
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let counts = counts.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("file-server".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let dir = dir.clone();
                        let counts = counts.clone();
                        let _ = std::thread::Builder::new()
                            .name("file-server-conn".into())
                            .spawn(move || {
                                let _ = serve(stream, &dir, &counts);
                            });
                    }
                })
                .context("starting the file server's thread")?
        };
        Ok(FileServer {
            addr,
            counts,
            stop,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>/<file>`.
    pub fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.addr)
    }

    /// How many requests (any method, any answer) named this path (with or
    /// without its leading `/`; the query string is not part of it).
    pub fn requests(&self, path: &str) -> usize {
        let key = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Answers one request on a connection.
fn serve(
    stream: TcpStream,
    dir: &Path,
    counts: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(16 * 1024);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The header lines up to the blank one (bounded by the 16 KiB `take`).
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut out = stream;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(&mut out, 400, "Bad Request", None, false);
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    *counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path.to_string())
        .or_insert(0) += 1;
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return respond(&mut out, 405, "Method Not Allowed", None, false),
    };
    let Some(name) = file_name(path) else {
        return respond(&mut out, 400, "Bad Request", None, head_only);
    };
    let file = dir.join(&name);
    match File::open(&file).and_then(|f| Ok((f.metadata()?, f))) {
        Ok((meta, f)) if meta.is_file() => {
            respond(&mut out, 200, "OK", Some((meta.len(), f)), head_only)
        }
        _ => respond(&mut out, 404, "Not Found", None, head_only),
    }
}

/// The file name a request path names, if it names one plainly:
/// `/<name>`, percent-decoded, with no `/`, `\` or NUL in it and not
/// starting with a dot (so neither `..` nor hidden or partial files).
fn file_name(path: &str) -> Option<String> {
    let raw = path.strip_prefix('/')?;
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(decoded).ok()?;
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0']);
    plain.then_some(name)
}

fn respond(
    out: &mut TcpStream,
    code: u16,
    reason: &str,
    file: Option<(u64, File)>,
    head_only: bool,
) -> std::io::Result<()> {
    let (length, body) = match file {
        Some((length, f)) => (length, Some(f)),
        None => (reason.len() as u64 + 1, None),
    };
    let content_type = if body.is_some() {
        "application/octet-stream"
    } else {
        "text/plain"
    };
    write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {length}\r\nContent-Type: {content_type}\r\n\
         Connection: close\r\n\r\n"
    )?;
    if !head_only {
        match body {
            Some(mut f) => {
                std::io::copy(&mut f, out)?;
            }
            None => writeln!(out, "{reason}")?,
        }
    }
    out.flush()
}

/// A Spark daemon this harness started, in a process group of its own;
/// the group (the daemon and whatever it started: a worker's executors and
/// their Python workers) is killed when dropped.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `command` (stdin closed, stdout and stderr to `log`).
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Daemon> {
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("cloning the log file")?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited, without reaping it (its group id stays
    /// reserved until [`Daemon::kill`]).
    pub fn has_exited(&self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        !matches!(
            rustix::process::waitid(WaitId::Pid(Pid::from_child(&self.child)), options),
            Ok(None)
        )
    }

    /// Kills its process group and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = rustix::process::kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        self.child.wait().ok()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spark's standalone cluster manager: a master and workers, each a
/// `bin/spark-class` JVM on 127.0.0.1 with ephemeral ports.
pub struct StandaloneCluster {
    /// Declared first: sweeps (by pid) any process still working under the
    /// cluster's directory (executors) before the directory is removed.
    _sweeper: Sweeper,
    pub dir: tempfile::TempDir,
    pub master_port: u16,
    pub webui_port: u16,
    pub master: Daemon,
    pub workers: Vec<Daemon>,
}

/// How to start a [`StandaloneCluster`].
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    pub workers: usize,
    pub cores_per_worker: usize,
    /// Memory per worker, in Spark's syntax (`1g`, `1536m`).
    pub memory: String,
    /// SPARK_HOME of the workers (and so of their executors); `None`: the
    /// venv's. [`SparkEnv::executor_home`] runs the executors from the
    /// executor package.
    pub worker_home: Option<PathBuf>,
    /// How long the master and all workers may take to be up.
    pub timeout: Duration,
}

impl StandaloneOptions {
    pub fn new(workers: usize, cores_per_worker: usize, memory: &str) -> StandaloneOptions {
        StandaloneOptions {
            workers,
            cores_per_worker,
            memory: memory.to_string(),
            worker_home: None,
            timeout: Duration::from_secs(120),
        }
    }
}

impl StandaloneCluster {
    /// A master and `workers` workers of `cores_per_worker` cores and
    /// `memory` each, from the venv's SPARK_HOME; returns once the master
    /// lists them all ALIVE.
    pub fn start(
        env: &SparkEnv,
        workers: usize,
        cores_per_worker: usize,
        memory: &str,
    ) -> anyhow::Result<StandaloneCluster> {
        Self::start_with(
            env,
            &StandaloneOptions::new(workers, cores_per_worker, memory),
        )
    }

    pub fn start_with(
        env: &SparkEnv,
        options: &StandaloneOptions,
    ) -> anyhow::Result<StandaloneCluster> {
        let dir = tempfile::Builder::new()
            .prefix("agora-spark-standalone-")
            .tempdir()
            .context("creating the standalone cluster's directory")?;
        let root = dir.path().to_path_buf();
        let conf_dir = root.join("conf");
        let local_dir = root.join("local");
        write_conf(&conf_dir, &local_dir)?;
        let master_port = free_port();
        let webui_port = free_port();
        let command = |home: &Path, class: &str| {
            let mut command = Command::new(home.join("bin").join("spark-class"));
            env.configure(&mut command, home);
            command
                .env("SPARK_CONF_DIR", &conf_dir)
                .env("SPARK_LOCAL_DIRS", &local_dir)
                .current_dir(&root)
                .arg(class);
            command
        };
        let mut master_command = command(&env.home, "org.apache.spark.deploy.master.Master");
        master_command.args([
            "--host",
            "127.0.0.1",
            "--port",
            &master_port.to_string(),
            "--webui-port",
            &webui_port.to_string(),
        ]);
        let master = Daemon::spawn(
            "spark master",
            master_command,
            dir.path().join("master.log"),
        )?;
        let mut cluster = StandaloneCluster {
            _sweeper: Sweeper(dir.path().to_path_buf()),
            master_port,
            webui_port,
            master,
            workers: Vec::new(),
            dir,
        };
        let worker_home = options
            .worker_home
            .clone()
            .unwrap_or_else(|| env.home.clone());
        for n in 0..options.workers {
            let work_dir = cluster.dir.path().join(format!("worker-{n}"));
            std::fs::create_dir_all(&work_dir)
                .with_context(|| format!("creating {}", work_dir.display()))?;
            let mut worker_command = command(&worker_home, "org.apache.spark.deploy.worker.Worker");
            worker_command
                .arg(cluster.master_url())
                .args(["--host", "127.0.0.1", "--cores"])
                .arg(options.cores_per_worker.to_string())
                .arg("--memory")
                .arg(&options.memory)
                .arg("--webui-port")
                .arg(free_port().to_string())
                .arg("--work-dir")
                .arg(&work_dir);
            let log = cluster.dir.path().join(format!("worker-{n}.log"));
            let worker = Daemon::spawn(&format!("spark worker {n}"), worker_command, log)?;
            cluster.workers.push(worker);
        }
        cluster.wait_alive_workers(options.workers, options.timeout)?;
        Ok(cluster)
    }

    /// `spark://127.0.0.1:<port>`.
    pub fn master_url(&self) -> String {
        format!("spark://127.0.0.1:{}", self.master_port)
    }

    /// The master's `/json/` (workers, applications).
    pub fn master_json(&self) -> anyhow::Result<serde_json::Value> {
        get_json(self.webui_port, "/json/")
    }

    /// Waits until the master lists `count` ALIVE workers; fails at once
    /// if the master or a worker exits, with the end of its log.
    pub fn wait_alive_workers(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut dead = None;
        let waited = wait_for(
            &format!("{count} ALIVE workers at the standalone master"),
            timeout,
            || {
                if let Some(daemon) = std::iter::once(&self.master)
                    .chain(&self.workers)
                    .find(|d| d.has_exited())
                {
                    dead = Some(format!(
                        "{} exited; the end of {}:\n{}",
                        daemon.name,
                        daemon.log.display(),
                        daemon.log_tail(30)
                    ));
                    return Some(());
                }
                let json = self.master_json().ok()?;
                let alive = json["workers"]
                    .as_array()?
                    .iter()
                    .filter(|w| w["state"] == "ALIVE")
                    .count();
                (alive >= count).then_some(())
            },
        );
        if let Some(dead) = dead {
            bail!(dead);
        }
        waited
            .with_context(|| format!("the end of the master's log:\n{}", self.master.log_tail(30)))
    }
}

impl Drop for StandaloneCluster {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.kill();
        }
        self.master.kill();
    }
}
