//! Issue 17: `agora run` against a real cluster tells each task's state as
//! it changes (stderr: time, task, state, agent at launch, message), how
//! each ended (stdout), and a summary line; `--quiet` keeps only the end; a
//! normal end prints no warning.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::SystemTime;

use agora_e2e::Cluster;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `HH:MM:SS.mmm` as milliseconds since midnight, if `word` is one.
fn clock_millis(word: &str) -> Option<u64> {
    let (hms, millis) = word.split_once('.')?;
    let parts: Vec<u64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let millis: u64 = millis.parse().ok().filter(|_| millis.len() == 3)?;
    (*h < 24 && *m < 60 && *s < 60).then(|| ((h * 60 + m) * 60 + s) * 1000 + millis)
}

fn utc_millis_of_day(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis() % 86_400_000).expect("fits")
}

/// Progress lines per task: (time of day in ms, state, rest of the line).
fn progress(stderr: &str) -> BTreeMap<String, Vec<(u64, String, String)>> {
    let mut tasks: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    for line in stderr.lines() {
        let mut words = line.splitn(4, ' ');
        let (Some(time), Some(task), Some(state)) = (words.next(), words.next(), words.next())
        else {
            panic!("not a progress line: {line:?}\n{stderr}");
        };
        let time = clock_millis(time).unwrap_or_else(|| panic!("no time in {line:?}"));
        assert!(state.starts_with("TASK_"), "{line:?}");
        // `TASK_RUNNING: message` when the update had one.
        tasks.entry(task.to_owned()).or_default().push((
            time,
            state.trim_end_matches(':').to_owned(),
            words.next().unwrap_or_default().to_owned(),
        ));
    }
    tasks
}

/// The summary (last stdout line) as (its outcomes, its seconds).
fn summary(stdout: &str) -> (String, f64) {
    let last = stdout.lines().last().unwrap_or_default();
    let (outcomes, seconds) = last
        .rsplit_once(" in ")
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let seconds = seconds
        .strip_suffix(" s")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {last:?}"));
    (outcomes.to_owned(), seconds)
}

fn run(cluster: &Cluster, args: &[&str]) -> (Output, String, String) {
    let output = cluster.run(args);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    (output, stdout, stderr)
}

#[test]
fn each_state_change_is_told_as_it_happens_then_the_end_and_a_summary() {
    let cluster = Cluster::start(2, "cpus:1;mem:256").expect("cluster");
    let before = utc_millis_of_day(SystemTime::now());
    let (output, stdout, stderr) = run(
        &cluster,
        &["--name", "prog", "--command", "sleep 1", "--instances", "3"],
    );
    let after = utc_millis_of_day(SystemTime::now());
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("WARN"), "a normal end warns: {stderr}");

    // stdout: one line per task as it ended, then the summary.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let mut ended_on = BTreeMap::new();
    for line in &lines[..3] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            matches!(
                words.as_slice(),
                ["task", _, "TASK_FINISHED", "on", "agent", _]
            ),
            "{line:?}"
        );
        ended_on.insert(words[1].to_owned(), words[5].to_owned());
    }
    let (outcomes, seconds) = summary(&stdout);
    assert_eq!(outcomes, "3 tasks: 3 finished", "{stdout}");
    // Each task sleeps 1 s; the whole job took no longer than the test saw.
    let seen = (after + 86_400_000 - before) % 86_400_000;
    assert!(
        seconds >= 1.0 && seconds * 1000.0 <= seen as f64 + 100.0,
        "{seconds} s, test saw {seen} ms"
    );

    // stderr: each task launched on the agent it ended on, then running, in
    // order, each at a time between the test's start and end.
    let progress = progress(&stderr);
    assert_eq!(
        progress.keys().collect::<Vec<_>>(),
        ["prog-0", "prog-1", "prog-2"],
        "{stderr}"
    );
    for (task, changes) in &progress {
        let states: Vec<&str> = changes.iter().map(|(_, s, _)| s.as_str()).collect();
        assert_eq!(states.first(), Some(&"TASK_STAGING"), "{task}: {stderr}");
        assert_eq!(states.last(), Some(&"TASK_RUNNING"), "{task}: {stderr}");
        assert!(
            states
                .iter()
                .all(|s| ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"].contains(s)),
            "{task}: only the changes before the end: {stderr}"
        );
        assert_eq!(
            changes[0].2,
            format!("on agent {}", ended_on[task]),
            "{task}: {stderr}"
        );
        let times: Vec<u64> = changes.iter().map(|(t, _, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{task}: {stderr}");
        // Across midnight the clock wraps; the test then only checks order.
        if before <= after {
            assert!(
                times.iter().all(|t| (before..=after).contains(t)),
                "{task}: times outside {before}..={after}: {stderr}"
            );
        }
    }
}

#[test]
fn quiet_keeps_only_the_end_and_failures_are_counted() {
    let cluster = Cluster::start(1, "cpus:1;mem:256").expect("cluster");
    let (output, stdout, stderr) = run(
        &cluster,
        &[
            "--name",
            "fails",
            "--command",
            "exit 3",
            "--instances",
            "2",
            "--quiet",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.is_empty(), "--quiet printed progress: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines[..2] {
        assert!(
            line.starts_with("task fails-")
                && line.contains(" TASK_FAILED on agent ")
                && line.contains("command exited with status 3"),
            "{line:?}"
        );
    }
    assert_eq!(summary(&stdout).0, "2 tasks: 2 failed", "{stdout}");

    let (output, stdout, stderr) = run(&cluster, &["--name", "quiet", "--command", "true", "-q"]);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("task quiet-0 TASK_FINISHED on agent "),
        "{stdout}"
    );
    assert_eq!(summary(&stdout).0, "1 task: 1 finished", "{stdout}");
}
