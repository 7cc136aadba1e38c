//! The web UI in a real headless Chromium (Debian `chromium` and
//! `chromium-driver`), against real clusters: the dashboard shows the
//! agents, a task started with `agora run` appears on the tasks page, its
//! `stdout` is readable through the master and grows live, and a follower
//! sends the browser to the leader. Each test saves screenshots under
//! `target/ui-screenshots/`.

use std::time::{Duration, Instant};

use agora_coord::testing::ZooKeeper;
use agora_e2e::browser::Browser;
use agora_e2e::{Cluster, Proc, free_port, get_json, http_get, wait_for};
use serde_json::{Value, json};

const RESOURCES: &str = "cpus:2;mem:2048;disk:4096";
const DEADLINE: Duration = Duration::from_secs(30);

fn ui(port: u16, hash: &str) -> String {
    format!("http://127.0.0.1:{port}/{hash}")
}

/// Waits until the element matching `css` has exactly `text` (trimmed).
fn wait_text(browser: &Browser, css: &str, text: &str) -> Value {
    browser
        .wait_script(
            &format!("{css} to read {text:?}"),
            DEADLINE,
            "const el = document.querySelector(arguments[0]);
             return el && el.textContent.trim() === arguments[1] ? el.textContent : null;",
            &[json!(css), json!(text)],
        )
        .unwrap_or_else(|e| {
            let shown = browser.text("main").ok().flatten().unwrap_or_default();
            panic!("{e}; the page shows: {shown}")
        })
}

/// Whether the page scrolls sideways (a broken layout at this width).
fn overflows_horizontally(browser: &Browser) -> bool {
    browser
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            &[],
        )
        .expect("script runs")
        == Value::Bool(true)
}

#[test]
fn dashboard_shows_the_two_agents() {
    let cluster = Cluster::start(2, RESOURCES).expect("cluster starts");
    let browser = Browser::start().expect("headless chromium starts");
    browser
        .goto(&ui(cluster.master_port, "#/"))
        .expect("dashboard loads");
    wait_text(&browser, "#agents-active", "2");
    wait_text(&browser, "#agents-unreachable", "0");
    // Resources in human units: 2 agents x 2048 MB of memory.
    let dashboard = browser.text("#dash").expect("script").unwrap_or_default();
    assert!(dashboard.contains("4 GiB"), "{dashboard}");
    assert!(
        !overflows_horizontally(&browser),
        "dashboard scrolls sideways at 1280 px"
    );
    browser.screenshot("dashboard").expect("screenshot");

    browser
        .goto(&ui(cluster.master_port, "#/agents"))
        .expect("agents page");
    let rows = browser
        .wait_script(
            "two agent rows",
            DEADLINE,
            "const rows = document.querySelectorAll('tr[data-agent-id]');
             return rows.length === 2 ? rows.length : null;",
            &[],
        )
        .expect("agents listed");
    assert_eq!(rows, 2);
    browser.screenshot("agents").expect("screenshot");

    // A narrow window: the layout reflows instead of scrolling sideways.
    browser.set_window(420, 900).expect("resize");
    browser
        .goto(&ui(cluster.master_port, "#/"))
        .expect("dashboard loads");
    wait_text(&browser, "#agents-active", "2");
    assert!(
        !overflows_horizontally(&browser),
        "dashboard scrolls sideways at 420 px"
    );
    browser.screenshot("dashboard-narrow").expect("screenshot");

    // An agent goes away: what it holds is unavailable, not idle.
    browser.set_window(1280, 900).expect("resize");
    let mut cluster = cluster;
    wait_text(&browser, "#res-unavailable-cpus", "0");
    cluster.agents[1].kill();
    wait_text(&browser, "#res-unavailable-cpus", "2");
    wait_text(&browser, "#res-idle-cpus", "2");
    browser
        .screenshot("dashboard-agent-away")
        .expect("screenshot");

    // The master goes away: what is shown is marked stale, not left as if live.
    cluster.master.kill();
    browser
        .wait_script(
            "the stale banner",
            DEADLINE,
            "const b = document.querySelector('#banner.stale');
             return b && !b.hidden && b.textContent.startsWith('Stale') ? b.textContent : null;",
            &[],
        )
        .expect("stale data is marked");
    browser.screenshot("dashboard-stale").expect("screenshot");
}

#[test]
fn a_task_appears_and_its_stdout_grows_live() {
    let cluster = Cluster::start(2, RESOURCES).expect("cluster starts");
    // A task that prints a line every 200 ms for a minute.
    let _run = Proc::spawn(
        &[
            "run",
            "--master",
            &cluster.master_address(),
            "--name",
            "ui-live",
            "--command",
            "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); sleep 0.2; done",
            "--cpus",
            "0.5",
            "--mem",
            "64",
        ],
        cluster.dir.path().join("run.log"),
    );
    let task = wait_for("the task running", DEADLINE, || {
        let page = get_json(
            cluster.master_port,
            "/api/tasks?q=ui-live&state=TASK_RUNNING",
        )
        .ok()?;
        page["items"].get(0).cloned()
    })
    .expect("agora run starts its task");
    let task_id = task["id"].as_str().expect("task id").to_string();
    let framework_id = task["framework_id"]
        .as_str()
        .expect("framework id")
        .to_string();

    let browser = Browser::start().expect("headless chromium starts");
    browser
        .goto(&ui(cluster.master_port, "#/tasks?q=ui-live"))
        .expect("tasks page");
    browser
        .wait_script(
            "the task's row",
            DEADLINE,
            "const row = document.querySelector(`tr[data-task-id=\"${arguments[0]}\"]`);
             return row && row.querySelector('[data-state=TASK_RUNNING]') ? true : null;",
            &[json!(task_id)],
        )
        .expect("the task is listed as running");
    browser.screenshot("tasks").expect("screenshot");

    browser
        .goto(&ui(
            cluster.master_port,
            &format!("#/tasks/{framework_id}/{task_id}"),
        ))
        .expect("task page");
    let count_lines = "const log = document.querySelector('#log');
         if (!log) return null;
         const n = (log.textContent.match(/^line-\\d+$/gm) || []).length;
         return n >= arguments[0] ? n : null;";
    let first = browser
        .wait_script(
            "stdout in the log viewer",
            DEADLINE,
            count_lines,
            &[json!(1)],
        )
        .unwrap_or_else(|e| {
            let status = browser.text("#log-status").ok().flatten();
            panic!("{e}; log viewer status: {status:?}")
        })
        .as_u64()
        .expect("a count");
    // Following the end: more lines arrive without a reload.
    let started = Instant::now();
    let later = browser
        .wait_script(
            "stdout growing in the log viewer",
            DEADLINE,
            count_lines,
            &[json!(first + 5)],
        )
        .expect("the log grows live")
        .as_u64()
        .expect("a count");
    assert!(later >= first + 5, "{first} then {later}");
    assert!(started.elapsed() < DEADLINE);
    // The last line shown is the newest: the viewer follows the end.
    let tail = browser
        .execute(
            "const lines = document.querySelector('#log').textContent.trim().split('\\n');
             return lines[lines.length - 1];",
            &[],
        )
        .expect("script runs");
    assert!(
        tail.as_str().is_some_and(|l| l.starts_with("line-")),
        "{tail}"
    );
    // The sandbox listing shows the files, through the master.
    browser
        .wait_script(
            "the sandbox listing",
            DEADLINE,
            "return document.querySelector('#sandbox [data-file=\"stdout\"]') ? true : null;",
            &[],
        )
        .unwrap_or_else(|e| {
            let _ = browser.screenshot("log-viewer-failed");
            let shown = browser.text("#sandbox").ok().flatten();
            panic!("{e}; the sandbox shows: {shown:?}")
        });
    browser
        .execute(
            "document.querySelector('#viewer-card').scrollIntoView();",
            &[],
        )
        .expect("script runs");
    browser.screenshot("log-viewer").expect("screenshot");
    assert_no_page_error(&browser);

    // The other pages render the task's framework, agent, role and offers.
    let agent_id = task["agent_id"].as_str().expect("agent id").to_string();
    let pages = [
        (
            "frameworks",
            "#/frameworks".to_string(),
            "tr[data-framework-id]",
        ),
        ("framework", format!("#/frameworks/{framework_id}"), ".why"),
        ("agent", format!("#/agents/{agent_id}"), "tr[data-task-id]"),
        ("roles", "#/roles".to_string(), "tr[data-role]"),
        ("offers", "#/offers".to_string(), "#list table"),
    ];
    for (name, hash, css) in pages {
        browser
            .goto(&ui(cluster.master_port, &hash))
            .expect("page loads");
        browser
            .wait_script(
                &format!("{css} on the {name} page"),
                DEADLINE,
                "return document.querySelector(arguments[0]) ? true : null;",
                &[json!(css)],
            )
            .unwrap_or_else(|e| {
                let _ = browser.screenshot(&format!("{name}-failed"));
                panic!("{e}")
            });
        assert_no_page_error(&browser);
        assert!(
            !overflows_horizontally(&browser),
            "{name} scrolls sideways at 1280 px"
        );
        browser.screenshot(name).expect("screenshot");
    }
}

/// The page reports its own script errors in an error banner.
fn assert_no_page_error(browser: &Browser) {
    let error = browser
        .execute(
            "const b = document.querySelector('#banner.error');
             return b && !b.hidden ? b.textContent : null;",
            &[],
        )
        .expect("script runs");
    assert!(error.is_null(), "the page reports an error: {error}");
}

fn start_master(dir: &std::path::Path, n: usize, port: u16, zk: &str) -> Proc {
    agora_e2e::spawn_zk_master(dir, n, port, zk, dir.join(format!("master-{n}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_the_browser_to_the_leader() {
    let zk = ZooKeeper::start()
        .await
        .expect("zookeeper starts (Debian package zookeeper)");
    let url = zk.unique_url("agora-ui").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = [free_port(), free_port()];
    let _masters: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| start_master(dir.path(), n, *port, &url))
        .collect();
    let leader = wait_for("one leading master", DEADLINE, || {
        let elected: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| get_json(*p, "/api/master").is_ok_and(|m| m["elected"] == true))
            .collect();
        match elected[..] {
            [one] => Some(one),
            _ => None,
        }
    })
    .expect("a leader is elected");
    let follower = if ports[0] == leader {
        ports[1]
    } else {
        ports[0]
    };
    wait_for("the follower to know the leader", DEADLINE, || {
        let m = get_json(follower, "/api/master").ok()?;
        (m["leader"] == format!("127.0.0.1:{leader}").as_str()).then_some(())
    })
    .expect("the follower learns who leads");
    // Without a browser: the page answers 307 to the leader, and says so.
    let (code, body) = http_get(follower, "/").expect("follower page");
    assert_eq!(code, 307, "{body}");
    assert!(body.contains(&format!("127.0.0.1:{leader}")), "{body}");

    let browser = Browser::start().expect("headless chromium starts");
    browser
        .goto(&ui(follower, "#/agents"))
        .expect("follower's UI");
    let on_leader = wait_for("the browser on the leader's UI", DEADLINE, || {
        browser
            .current_url()
            .ok()
            .filter(|u| u.starts_with(&format!("http://127.0.0.1:{leader}/")))
    })
    .expect("the browser is sent to the leader");
    assert!(on_leader.ends_with("#/agents"), "{on_leader}");
    wait_text(&browser, "h1", "Agents");
    let meta = browser
        .text("#master-meta")
        .expect("script")
        .unwrap_or_default();
    assert!(meta.contains(&format!("127.0.0.1:{leader}")), "{meta}");
    browser.screenshot("follower-redirect").expect("screenshot");
}
