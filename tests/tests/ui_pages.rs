//! The web UI's pages as a Mesos user reads them, in a real headless
//! Chromium (Debian `chromium` and `chromium-driver`) against real
//! clusters: a task page is titled by the task's id with its name beside
//! it and a breadcrumb with no empty segment; agents read
//! `hostname:port (id)`; lists are sorted and every column sorts by a click
//! on its header, an order the live refreshes keep; a finished task's
//! output reads as complete (no "Follow", no live dot) and an empty file
//! says it is empty; an agent that went away is explained at the top of
//! the task page; a completed framework shows when it ended and no "why no
//! offer". Every page is saved wide (1400 px) and narrow (400 px) under
//! `target/ui-screenshots/`, after checking that it does not scroll
//! sideways and reports no script error.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_e2e::browser::Browser;
use agora_e2e::{Cluster, Proc, get_json, wait_for};
use serde_json::{Value, json};

const RESOURCES: &str = "cpus:2;mem:2048;disk:4096";
const DEADLINE: Duration = Duration::from_secs(30);
const WIDE: (u32, u32) = (1400, 1000);
const NARROW: (u32, u32) = (400, 900);

fn ui(port: u16, hash: &str) -> String {
    format!("http://127.0.0.1:{port}/{hash}")
}

/// Starts `agora run` for one task (or `instances` of it) named `name`.
fn run(cluster: &Cluster, name: &str, command: &str, instances: u32) -> Proc {
    let instances = instances.to_string();
    cluster.spawn_run(
        name,
        command,
        &["--instances", &instances, "--cpus", "0.1", "--mem", "32"],
    )
}

/// The master's tasks named `name`, once `ready` holds for `count` of them.
fn tasks_named(
    cluster: &Cluster,
    name: &str,
    count: usize,
    ready: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    wait_for(&format!("{count} tasks {name}"), DEADLINE, || {
        let page = get_json(cluster.master_port, &format!("/api/tasks?q={name}")).ok()?;
        let items: Vec<Value> = page["items"]
            .as_array()?
            .iter()
            .filter(|t| t["name"] == name && ready(t))
            .cloned()
            .collect();
        (items.len() == count).then_some(items)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn finished(task: &Value) -> bool {
    task["state"] == "TASK_FINISHED"
}

fn id_of(value: &Value, field: &str) -> String {
    value[field].as_str().expect("an id").to_string()
}

/// Polls `script` until it returns something other than null or false.
fn wait(browser: &Browser, what: &str, script: &str, args: &[Value]) -> Value {
    browser
        .wait_script(what, DEADLINE, script, args)
        .unwrap_or_else(|e| {
            let _ = browser.screenshot(&format!("failed-{}", what.replace(' ', "-")));
            let shown = browser.text("main").ok().flatten().unwrap_or_default();
            panic!("{e}; the page shows: {shown}")
        })
}

/// Waits until `css` matches a visible element.
fn wait_visible(browser: &Browser, css: &str) -> Value {
    wait(
        browser,
        &format!("{css} shown"),
        "const el = document.querySelector(arguments[0]);
         return el && el.offsetParent !== null ? el.textContent.trim() : null;",
        &[json!(css)],
    )
}

fn run_js(browser: &Browser, script: &str, args: &[Value]) -> Value {
    browser.execute(script, args).expect("script runs")
}

/// The page's own error banner is down and nothing scrolls sideways.
fn assert_page_sound(browser: &Browser, name: &str) {
    let error = run_js(
        browser,
        "const b = document.querySelector('#banner.error');
         return b && !b.hidden ? b.textContent : null;",
        &[],
    );
    assert!(
        error.is_null(),
        "{name}: the page reports an error: {error}"
    );
    let sideways = run_js(
        browser,
        "return document.documentElement.scrollWidth > window.innerWidth + 1
           ? [document.documentElement.scrollWidth, window.innerWidth] : null;",
        &[],
    );
    assert!(
        sideways.is_null(),
        "{name}: the page scrolls sideways: {sideways}"
    );
}

/// Opens `hash`, waits for `ready` (CSS selectors, each shown) and saves
/// the page wide and narrow as `<name>-wide.png` and `<name>-narrow.png`.
fn shoot(browser: &Browser, port: u16, hash: &str, ready: &[&str], name: &str) {
    browser.set_window(WIDE.0, WIDE.1).expect("resize");
    browser.goto(&ui(port, hash)).expect("page loads");
    for (label, (width, height)) in [("wide", WIDE), ("narrow", NARROW)] {
        browser.set_window(width, height).expect("resize");
        for css in ready {
            wait_visible(browser, css);
        }
        assert_page_sound(browser, &format!("{name} at {width} px"));
        browser
            .screenshot(&format!("{name}-{label}"))
            .expect("screenshot");
    }
    browser.set_window(WIDE.0, WIDE.1).expect("resize");
}

/// Every agent label on the page: `[agent id, its text, its title]`.
fn agent_labels(browser: &Browser) -> Vec<(String, String, String)> {
    let labels = run_js(
        browser,
        "return [...document.querySelectorAll('[data-agent-link]')].map(a => [
           a.dataset.agentLink, a.textContent.trim().replace(/\\s+/g, ' '),
           (a.querySelector('.agent-id') || {}).title || '']);",
        &[],
    );
    labels
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            let part = |i: usize| l[i].as_str().unwrap_or_default().to_string();
            (part(0), part(1), part(2))
        })
        .collect()
}

/// Each label reads `hostname:port (id)`, the id shortened to its end and
/// whole in the title, the address the master's for that agent.
fn assert_agent_labels(browser: &Browser, addresses: &BTreeMap<String, String>, page: &str) {
    let labels = agent_labels(browser);
    assert!(!labels.is_empty(), "{page}: no agent labels");
    for (id, text, title) in labels {
        let address = addresses
            .get(&id)
            .unwrap_or_else(|| panic!("{page}: unknown agent {id}"));
        let tail = &id[id.len().saturating_sub(12)..];
        let expected = if id.len() > 18 {
            format!("{address} (…{tail})")
        } else {
            format!("{address} ({id})")
        };
        assert_eq!(text, expected, "{page}: agent {id}");
        assert_eq!(title, id, "{page}: the title holds the whole id");
    }
}

fn agent_addresses(cluster: &Cluster) -> BTreeMap<String, String> {
    let agents = get_json(cluster.master_port, "/api/agents").expect("agents");
    agents["items"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| (id_of(a, "id"), id_of(a, "address")))
        .collect()
}

#[test]
fn finished_tasks_agents_and_a_completed_framework_read_plainly() {
    let cluster = Cluster::start(2, RESOURCES).expect("cluster starts");
    // Two instances with one name, as a field guide's job has; and a task
    // that writes nothing.
    let _count = run(&cluster, "countlines", "echo counted; echo oops >&2", 2);
    let _silent = run(&cluster, "silent", "true", 1);
    let counted = tasks_named(&cluster, "countlines", 2, finished);
    let silent = tasks_named(&cluster, "silent", 1, finished).remove(0);
    let framework_id = id_of(&counted[0], "framework_id");
    // Its scheduler ends with its tasks: the framework completes.
    wait_for("the framework completed", DEADLINE, || {
        let f = get_json(
            cluster.master_port,
            &format!("/api/frameworks/{framework_id}"),
        )
        .ok()?;
        (f["framework"]["status"] == "completed").then_some(f)
    })
    .expect("agora run's framework completes");
    let addresses = agent_addresses(&cluster);
    assert_eq!(addresses.len(), 2);
    let port = cluster.master_port;
    let browser = Browser::start().expect("headless chromium starts");
    browser.set_window(WIDE.0, WIDE.1).expect("resize");

    // A task page: its id is the title, its name beside it, and the
    // breadcrumb names the framework.
    for task in &counted {
        let task_id = id_of(task, "id");
        browser
            .goto(&ui(port, &format!("#/tasks/{framework_id}/{task_id}")))
            .expect("task page");
        wait(
            &browser,
            "the task's heading",
            "const h = document.querySelector('#task-title');
             const n = document.querySelector('#task-name');
             return h && n && n.textContent === 'countlines' ? h.textContent : null;",
            &[],
        );
        assert_eq!(
            browser.text("#task-title").expect("script"),
            Some(task_id.clone())
        );
        let title = run_js(&browser, "return document.title;", &[]);
        assert_eq!(title, json!(format!("Agora · Task {task_id}")));
        let crumbs = run_js(
            &browser,
            "return document.querySelector('.crumbs').textContent.replace(/\\s+/g, ' ').trim();",
            &[],
        );
        assert_eq!(
            crumbs,
            json!(format!("Tasks › countlines › {task_id}")),
            "the breadcrumb names the framework and the task"
        );
        // Complete output: all of stdout, no "Follow", no live dot.
        wait(
            &browser,
            "stdout in the viewer",
            "const log = document.querySelector('#log');
             return log && log.textContent.includes('counted') ? true : null;",
            &[],
        );
        let viewer = wait(
            &browser,
            "the viewer marked complete",
            "const c = document.querySelector('#log-complete');
             return c && !c.hidden ? {
               follow: document.querySelector('#log-follow-label').offsetParent !== null,
               live: document.querySelector('#log-dot').classList.contains('live'),
               status: document.querySelector('#log-status').textContent,
             } : null;",
            &[],
        );
        assert_eq!(viewer["follow"], false, "{viewer}");
        assert_eq!(viewer["live"], false, "{viewer}");
        assert!(
            viewer["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("stdout: complete")),
            "{viewer}"
        );
        assert_agent_labels(&browser, &addresses, "task page");
        // The sandbox lists its files too.
        wait(
            &browser,
            "the sandbox listing",
            "return document.querySelector('#sandbox [data-file=stdout]') ? true : null;",
            &[],
        );
    }
    browser
        .screenshot("task-finished-wide")
        .expect("screenshot");
    // stderr, a click away, is complete too.
    run_js(
        &browser,
        "document.querySelector('#log-tabs [data-log=stderr]').click();",
        &[],
    );
    wait(
        &browser,
        "stderr in the viewer",
        "const log = document.querySelector('#log');
         return log && log.textContent.includes('oops') ? true : null;",
        &[],
    );

    // An empty stdout says so instead of showing a bare box.
    let silent_id = id_of(&silent, "id");
    let silent_framework = id_of(&silent, "framework_id");
    let hash = format!("#/tasks/{silent_framework}/{silent_id}");
    browser.goto(&ui(port, &hash)).expect("task page");
    let empty = wait_visible(&browser, "#log-empty");
    assert_eq!(empty, json!("stdout is empty."));
    let log_shown = run_js(
        &browser,
        "return document.querySelector('#log').offsetParent !== null;",
        &[],
    );
    assert_eq!(log_shown, json!(false), "no bare black box");
    shoot(
        &browser,
        port,
        &hash,
        &["#log-empty", "#sandbox [data-file=stdout]"],
        "task-empty-stdout",
    );

    // The completed framework: when it ended, and no offer explanation.
    let hash = format!("#/frameworks/{framework_id}");
    browser.goto(&ui(port, &hash)).expect("framework page");
    let ended = wait_visible(&browser, "#fw-ended");
    assert!(
        ended.as_str().is_some_and(|e| e.ends_with("UTC)")),
        "the end time: {ended}"
    );
    let why = run_js(
        &browser,
        "return [document.querySelector('#why-card'), document.querySelector('.why')]
           .filter(Boolean).length;",
        &[],
    );
    assert_eq!(why, json!(0), "a completed framework explains no offers");
    assert_eq!(
        browser.text("#crumb-fw").expect("script"),
        Some("countlines".to_string())
    );
    shoot(&browser, port, &hash, &["#fw-ended"], "framework-completed");

    // Agents everywhere as hostname:port (id).
    for (hash, ready, name) in [
        ("#/tasks", "tr[data-task-id]", "tasks"),
        ("#/agents", "tr[data-agent-id]", "agents"),
    ] {
        browser.goto(&ui(port, hash)).expect("page loads");
        wait_visible(&browser, ready);
        assert_agent_labels(&browser, &addresses, name);
    }
    // Two agents on one host read apart.
    let texts: Vec<String> = agent_labels(&browser).into_iter().map(|l| l.1).collect();
    assert_eq!(texts.len(), 2);
    assert_ne!(texts[0], texts[1]);

    // The state filter says what the badges say.
    browser.goto(&ui(port, "#/tasks")).expect("tasks page");
    wait_visible(&browser, "#f-state");
    let killed = run_js(
        &browser,
        "return document.querySelector('#f-state option[value=TASK_KILLED]').textContent;",
        &[],
    );
    assert_eq!(killed, json!("killed"));
    // The cluster has a name, not only the master's IP address.
    let master = get_json(port, "/api/master").expect("master");
    let cluster_name = master["cluster"].as_str().expect("a cluster name");
    assert!(
        cluster_name.parse::<std::net::IpAddr>().is_err(),
        "cluster name {cluster_name}"
    );
    let meta = wait_visible(&browser, "#master-meta");
    assert!(
        meta.as_str().is_some_and(
            |m| m.starts_with(&format!("cluster {cluster_name} · leader 127.0.0.1:{port}"))
        ),
        "{meta}"
    );

    // Search boxes show their whole placeholder, wide and narrow.
    for (width, height) in [WIDE, NARROW] {
        browser.set_window(width, height).expect("resize");
        for hash in ["#/frameworks", "#/tasks", "#/agents"] {
            browser.goto(&ui(port, hash)).expect("page loads");
            wait_visible(&browser, "#f-q");
            let fits = run_js(
                &browser,
                "const input = document.querySelector('#f-q');
                 const style = getComputedStyle(input);
                 const ctx = document.createElement('canvas').getContext('2d');
                 ctx.font = style.font;
                 const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                 const need = ctx.measureText(input.placeholder).width;
                 return need <= room ? true : [input.placeholder, need, room];",
                &[],
            );
            assert_eq!(fits, json!(true), "{hash} at {width} px: {fits}");
        }
    }

    // Every page, wide and narrow.
    let agent_id = id_of(&counted[0], "agent_id");
    let task_hash = format!("#/tasks/{framework_id}/{}", id_of(&counted[0], "id"));
    let agent_hash = format!("#/agents/{agent_id}");
    for (hash, ready, name) in [
        ("#/", "#agents-active", "dashboard"),
        ("#/agents", "tr[data-agent-id]", "agents"),
        (agent_hash.as_str(), "#detail .kv", "agent"),
        ("#/frameworks", "tr[data-framework-id]", "frameworks"),
        ("#/tasks", "tr[data-task-id]", "tasks"),
        (
            task_hash.as_str(),
            "#sandbox [data-file=stdout]",
            "task-finished",
        ),
        ("#/roles", "#list table", "roles"),
        ("#/offers", "#list table", "offers"),
    ] {
        shoot(&browser, port, hash, &[ready, "#view table"], name);
    }
    // The agent page is titled hostname:port, its id beside.
    browser.goto(&ui(port, &agent_hash)).expect("agent page");
    wait_visible(&browser, "#detail .kv");
    assert_eq!(
        browser.text("#agent-title").expect("script"),
        Some(addresses[&agent_id].clone())
    );
    assert_eq!(
        browser.text("#agent-sub").expect("script"),
        Some(agent_id.clone())
    );
}

/// The rows' texts in column `column` (0-based) of the first list.
const COLUMN: &str = "return [...document.querySelectorAll(arguments[0])]
   .map(row => row.children[arguments[1]].textContent.trim());";

/// Clicks the sort button of column `key` in the table of `param`.
fn click_sort(browser: &Browser, param: &str, key: &str) {
    let clicked = run_js(
        browser,
        "const b = document.querySelector(`button[data-sort-param=\"${arguments[0]}\"][data-sort-key=\"${arguments[1]}\"]`);
         if (!b) return false;
         b.click();
         return true;",
        &[json!(param), json!(key)],
    );
    assert_eq!(clicked, json!(true), "no sort button for {key}");
}

/// Waits until the header of `key` says `order` and the rows (`rows`, a
/// CSS selector; cell `column`) are sorted that way by `compare`, and
/// returns the cells.
fn wait_sorted(
    browser: &Browser,
    rows: &str,
    column: usize,
    key: &str,
    order: &str,
    numeric: bool,
) -> Vec<String> {
    let cells = wait(
        browser,
        &format!("rows sorted by {key} {order}"),
        "const [rows, column, key, order, numeric] = arguments;
         const b = document.querySelector(`button[data-sort-key=\"${key}\"]`);
         if (!b || b.closest('th').getAttribute('aria-sort') !== order) return null;
         const cells = [...document.querySelectorAll(rows)].map(r => r.children[column].textContent.trim());
         if (cells.length < 2) return null;
         const value = c => numeric ? parseFloat(c.replace(/[^0-9.]/g, '')) : c.toLowerCase();
         for (let i = 1; i < cells.length; i++) {
           const [a, b2] = [value(cells[i - 1]), value(cells[i])];
           if (order === 'ascending' ? a > b2 : a < b2) return null;
         }
         return cells;",
        &[
            json!(rows),
            json!(column),
            json!(key),
            json!(order),
            json!(numeric),
        ],
    );
    cells
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn lists_sort_by_a_click_on_any_header_and_keep_the_order_live() {
    let cluster = Cluster::start(2, RESOURCES).expect("cluster starts");
    let port = cluster.master_port;
    // Names out of order, on both agents.
    let mut runs = Vec::new();
    for name in ["bravo", "delta", "alpha", "charlie"] {
        runs.push(run(&cluster, name, "sleep 600", 1));
    }
    for name in ["bravo", "delta", "alpha", "charlie"] {
        tasks_named(&cluster, name, 1, |t| t["state"] == "TASK_RUNNING");
    }
    let browser = Browser::start().expect("headless chromium starts");
    browser.set_window(WIDE.0, WIDE.1).expect("resize");

    // Tasks: newest update first by default, as the header says.
    browser.goto(&ui(port, "#/tasks")).expect("tasks page");
    wait_visible(&browser, "tr[data-task-id]");
    let default = run_js(
        &browser,
        "const th = document.querySelector('th[aria-sort]:not([aria-sort=none])');
         return th ? [th.textContent.trim(), th.getAttribute('aria-sort')] : null;",
        &[],
    );
    assert_eq!(default, json!(["Updated▼", "descending"]));
    let api_order: Vec<String> = get_json(port, "/api/tasks").expect("tasks")["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| id_of(t, "name"))
        .collect();
    let shown = run_js(&browser, COLUMN, &[json!("tr[data-task-id]"), json!(1)]);
    assert_eq!(shown, json!(api_order), "the page shows the master's order");

    // A click sorts by name, A to Z; a second reverses it.
    click_sort(&browser, "sort", "name");
    let names = wait_sorted(&browser, "tr[data-task-id]", 1, "name", "ascending", false);
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"]);
    assert!(
        browser
            .current_url()
            .expect("url")
            .ends_with("#/tasks?sort=name")
    );
    click_sort(&browser, "sort", "name");
    let names = wait_sorted(&browser, "tr[data-task-id]", 1, "name", "descending", false);
    assert_eq!(names, ["delta", "charlie", "bravo", "alpha"]);

    // The header is a button (Tab reaches it, Enter and Space press it);
    // a live refresh keeps the order and the keyboard focus on it.
    let focusable = run_js(
        &browser,
        "const b = document.querySelector('button[data-sort-key=name]');
         b.focus();
         return b.tagName === 'BUTTON' && b.tabIndex === 0 && document.activeElement === b;",
        &[],
    );
    assert_eq!(focusable, json!(true));
    let _echo = run(&cluster, "echo", "sleep 600", 1);
    let names = wait(
        &browser,
        "the new task listed",
        "const cells = [...document.querySelectorAll('tr[data-task-id]')]
           .map(r => r.children[1].textContent.trim());
         return cells.includes('echo') ? cells : null;",
        &[],
    );
    assert_eq!(
        names,
        json!(["echo", "delta", "charlie", "bravo", "alpha"]),
        "the refresh kept the order"
    );
    let focus = run_js(
        &browser,
        "const a = document.activeElement;
         return a && a.dataset ? a.dataset.sortKey || null : null;",
        &[],
    );
    assert_eq!(focus, json!("name"), "the refresh kept the focus");
    // Numbers sort largest first on the first click.
    click_sort(&browser, "sort", "cpus");
    wait_sorted(&browser, "tr[data-task-id]", 5, "cpus", "descending", true);
    browser.screenshot("tasks-sorted-wide").expect("screenshot");

    // Agents: by hostname:port by default; a click reverses.
    browser.goto(&ui(port, "#/agents")).expect("agents page");
    let ascending = wait_sorted(
        &browser,
        "tr[data-agent-id]",
        0,
        "hostname",
        "ascending",
        false,
    );
    click_sort(&browser, "sort", "hostname");
    let descending = wait_sorted(
        &browser,
        "tr[data-agent-id]",
        0,
        "hostname",
        "descending",
        false,
    );
    assert_eq!(
        descending,
        ascending.iter().rev().cloned().collect::<Vec<_>>()
    );
    click_sort(&browser, "sort", "tasks");
    wait_sorted(
        &browser,
        "tr[data-agent-id]",
        6,
        "tasks",
        "descending",
        true,
    );

    // Frameworks: newest first by default; by name on a click.
    browser
        .goto(&ui(port, "#/frameworks"))
        .expect("frameworks page");
    wait_visible(&browser, "tr[data-framework-id]");
    let default = run_js(
        &browser,
        "return document.querySelector('button[data-sort-key=registered]').closest('th').getAttribute('aria-sort');",
        &[],
    );
    assert_eq!(default, json!("descending"));
    click_sort(&browser, "sort", "name");
    let names = wait_sorted(
        &browser,
        "tr[data-framework-id]",
        1,
        "name",
        "ascending",
        false,
    );
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "echo"]);
    browser
        .screenshot("frameworks-sorted-wide")
        .expect("screenshot");

    // Roles (sorted in the page): by allocation, then back by name.
    browser.goto(&ui(port, "#/roles")).expect("roles page");
    wait_visible(&browser, "tr[data-role]");
    wait_visible(
        &browser,
        "th[aria-sort=ascending] button[data-sort-key=name]",
    );
    click_sort(&browser, "sort", "allocated");
    wait_visible(
        &browser,
        "th[aria-sort=descending] button[data-sort-key=allocated]",
    );
    click_sort(&browser, "sort", "name");
    wait_visible(
        &browser,
        "th[aria-sort=ascending] button[data-sort-key=name]",
    );
}

#[test]
fn an_agent_that_went_away_is_explained_at_the_top_of_the_task_page() {
    let mut cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let port = cluster.master_port;
    let _run = run(&cluster, "steady", "echo started; sleep 600", 1);
    let task = tasks_named(&cluster, "steady", 1, |t| t["state"] == "TASK_RUNNING").remove(0);
    let hash = format!(
        "#/tasks/{}/{}",
        id_of(&task, "framework_id"),
        id_of(&task, "id")
    );
    let browser = Browser::start().expect("headless chromium starts");
    browser.set_window(WIDE.0, WIDE.1).expect("resize");
    browser.goto(&ui(port, &hash)).expect("task page");
    // While the task runs: followed live, and no notice.
    wait(
        &browser,
        "stdout followed",
        "const log = document.querySelector('#log');
         const dot = document.querySelector('#log-dot');
         return log && log.textContent.includes('started') && dot.classList.contains('live') ? true : null;",
        &[],
    );
    assert_eq!(
        run_js(
            &browser,
            "return document.querySelector('#agent-notice').hidden;",
            &[]
        ),
        json!(true)
    );
    shoot(
        &browser,
        port,
        &hash,
        &["#log-dot.live", "#sandbox [data-file=stdout]"],
        "task-running",
    );

    cluster.agents[0].kill();
    // The page that was open says so, and stops showing the log as live.
    wait_visible(&browser, "#agent-notice");
    wait(
        &browser,
        "the live dot off",
        "return document.querySelector('#log-dot').classList.contains('live') ? null : true;",
        &[],
    );
    for (width, height) in [WIDE, NARROW] {
        browser.set_window(width, height).expect("resize");
        // A fresh load of the page, as someone opening it now.
        browser.goto("about:blank").expect("blank page");
        browser.goto(&ui(port, &hash)).expect("task page");
        let notice = wait_visible(&browser, "#agent-notice");
        let text = notice.as_str().unwrap_or_default();
        assert!(
            text.starts_with("The agent 127.0.0.1:") && text.contains("cannot be read"),
            "{text}"
        );
        // At the top: above the viewer, in the first screenful.
        let place = run_js(
            &browser,
            "const n = document.querySelector('#agent-notice').getBoundingClientRect();
             const v = document.querySelector('#viewer-card').getBoundingClientRect();
             return { above: n.bottom <= v.top, visible: n.bottom <= window.innerHeight, top: n.top };",
            &[],
        );
        assert_eq!(place["above"], true, "{place} at {width} px");
        assert_eq!(place["visible"], true, "{place} at {width} px");
        assert_page_sound(&browser, &format!("task page, agent away, {width} px"));
        let label = if width == WIDE.0 { "wide" } else { "narrow" };
        browser
            .screenshot(&format!("task-agent-away-{label}"))
            .expect("screenshot");
    }
}
