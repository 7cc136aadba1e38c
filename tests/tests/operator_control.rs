//! Operator control for people, end to end on real clusters: `agora kill`
//! and `agora teardown` through the master's operator API (the reason
//! reaches the TASK_KILLED message and `agora run`'s output; names resolve
//! to one framework or fail with the candidates), the agent's own operator
//! API on a running task, and the web UI's Kill and Teardown buttons in a
//! headless Chromium (confirmation first, the master's refusal shown).

use std::process::Output;
use std::time::Duration;

use agora_e2e::browser::Browser;
use agora_e2e::{Cluster, Proc, all_tasks, get_json, http_request, run_with_deadline, wait_for};
use serde_json::{Value, json};

const RESOURCES: &str = "cpus:4;mem:2048;disk:4096";
const DEADLINE: Duration = Duration::from_secs(30);

/// `agora run NAME` of one `sleep 600` task, in the background.
fn sleeper(cluster: &Cluster, name: &str) -> Proc {
    cluster.spawn_run(name, "sleep 600", &["--cpus", "0.25", "--mem", "32"])
}

/// Waits until a task with this id (of any framework) is in `state`.
fn wait_task(cluster: &Cluster, id: &str, state: &str) -> Value {
    let state_name = state.to_string();
    let found = cluster
        .wait_state(&format!("{id} in {state}"), |s| {
            all_tasks(s)
                .iter()
                .any(|t| t["id"] == id && t["state"] == state_name.as_str())
        })
        .expect("the task reaches its state");
    all_tasks(&found)
        .into_iter()
        .find(|t| t["id"] == id && t["state"] == state)
        .expect("the task is there")
}

/// Runs `agora <args> --master <the cluster>` to its end.
fn agora(cluster: &Cluster, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(agora_e2e::agora_bin());
    command
        .args(args)
        .args(["--master", &cluster.master_address(), "--timeout", "10"]);
    run_with_deadline(command, Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for a background `agora run` to end; its exit status and output.
fn run_ends(run: &mut Proc) -> (std::process::ExitStatus, String) {
    let status = wait_for("agora run to end", DEADLINE, || run.exited())
        .unwrap_or_else(|e| panic!("{e}; its output: {}", run.log_text()));
    (status, run.log_text())
}

/// The registered frameworks in `/state` with this name: their ids.
fn framework_ids(state: &Value, name: &str) -> Vec<String> {
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == name)
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn kill_and_teardown_from_the_command_line() {
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let mut sleepy = sleeper(&cluster, "sleepy");
    let mut victim = sleeper(&cluster, "victim");
    let running = wait_task(&cluster, "sleepy-0", "TASK_RUNNING");
    wait_task(&cluster, "victim-0", "TASK_RUNNING");

    // The agent's operator API shows the running task, and its sandbox's
    // files through the files API's rules.
    let state = cluster.state().expect("state");
    let agent = &state["agents"][0];
    assert_eq!(agent["id"], running["agent_id"]);
    let agent_port: u16 = agent["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the agent's port");
    let (code, body) = http_request(
        agent_port,
        "POST",
        "/api/v1",
        Some(r#"{"type":"GET_TASKS"}"#),
    )
    .expect("agent operator api");
    assert_eq!(code, 200, "{body}");
    let tasks: Value = serde_json::from_str(&body).expect("json");
    let launched = tasks["get_tasks"]["launched_tasks"]
        .as_array()
        .expect("launched tasks");
    assert!(
        launched
            .iter()
            .any(|t| t["task_id"]["value"] == "sleepy-0" && t["state"] == "TASK_RUNNING"),
        "{tasks}"
    );
    let sandbox = wait_for("sleepy-0's sandbox", DEADLINE, || {
        let path = format!(
            "/frameworks/{}/executors/sleepy-0/runs/latest",
            running["framework_id"].as_str()?
        );
        let call = json!({"type": "LIST_FILES", "list_files": {"path": path}});
        let (code, body) =
            http_request(agent_port, "POST", "/api/v1", Some(&call.to_string())).ok()?;
        (code == 200).then_some(body)
    })
    .expect("the agent lists the sandbox");
    assert!(sandbox.contains("/stdout\""), "{sandbox}");

    // Kill one task: the reason names who, and reaches the task's message.
    let killed = agora(&cluster, &["kill", "sleepy-0"]);
    assert!(
        killed.status.success(),
        "agora kill: {}{}",
        text(&killed.stdout),
        text(&killed.stderr)
    );
    assert!(
        text(&killed.stdout).contains("kill sent"),
        "{}",
        text(&killed.stdout)
    );
    let task = wait_task(&cluster, "sleepy-0", "TASK_KILLED");
    let message = task["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("killed with `agora kill` by "),
        "TASK_KILLED message: {message}"
    );
    let (status, output) = run_ends(&mut sleepy);
    assert!(!status.success(), "a killed task fails its job: {output}");
    assert!(
        output.contains("TASK_KILLED") && output.contains("killed with `agora kill` by "),
        "agora run's output: {output}"
    );

    // Refusals: a task that is no longer running, one that never was.
    for task in ["sleepy-0", "no-such-task"] {
        let refused = agora(&cluster, &["kill", task, "--reason", "tests"]);
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{}{}",
            text(&refused.stdout),
            text(&refused.stderr)
        );
        let why = text(&refused.stderr);
        assert!(
            why.contains("the master refused") && why.contains(task),
            "{why}"
        );
    }

    // Two frameworks of one name: a name is ambiguous, ids are not.
    let _twin_a = sleeper(&cluster, "twin");
    let _twin_b = sleeper(&cluster, "twin");
    let state = cluster
        .wait_state("two twin tasks running", |s| {
            all_tasks(s)
                .iter()
                .filter(|t| t["id"] == "twin-0" && t["state"] == "TASK_RUNNING")
                .count()
                == 2
        })
        .expect("both twins run");
    let twins = framework_ids(&state, "twin");
    assert_eq!(twins.len(), 2, "{twins:?}");
    let ambiguous = agora(&cluster, &["teardown", "twin"]);
    assert_eq!(ambiguous.status.code(), Some(1));
    let why = text(&ambiguous.stderr);
    assert!(
        why.contains(&twins[0]) && why.contains(&twins[1]),
        "the candidates are listed: {why}"
    );
    let ambiguous = agora(&cluster, &["kill", "twin-0"]);
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(
        text(&ambiguous.stderr).contains("several frameworks"),
        "{}",
        text(&ambiguous.stderr)
    );
    let one = agora(
        &cluster,
        &[
            "kill",
            "twin-0",
            "--framework",
            &twins[0],
            "--reason",
            "one twin",
        ],
    );
    assert!(one.status.success(), "{}", text(&one.stderr));
    let state = cluster
        .wait_state("one twin killed", |s| {
            all_tasks(s).iter().any(|t| {
                t["framework_id"] == twins[0].as_str()
                    && t["state"] == "TASK_KILLED"
                    && t["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("one twin"))
            })
        })
        .expect("the named twin is killed");
    assert!(
        all_tasks(&state)
            .iter()
            .any(|t| { t["framework_id"] == twins[1].as_str() && t["state"] == "TASK_RUNNING" }),
        "the other twin runs on"
    );
    // The killed twin's `agora run` ends its own framework; the other is
    // torn down by id.
    let done = agora(&cluster, &["teardown", &twins[1]]);
    assert!(done.status.success(), "{}", text(&done.stderr));

    // Teardown by name: the framework goes, and its task is killed.
    let victim_id = framework_ids(&cluster.state().expect("state"), "victim");
    assert_eq!(victim_id.len(), 1);
    let torn = agora(&cluster, &["teardown", "victim"]);
    assert!(
        torn.status.success(),
        "agora teardown: {}{}",
        text(&torn.stdout),
        text(&torn.stderr)
    );
    assert!(
        text(&torn.stdout).contains(&victim_id[0]),
        "{}",
        text(&torn.stdout)
    );
    let state = cluster
        .wait_state("victim removed", |s| {
            framework_ids(s, "victim").is_empty()
                && s["completed_frameworks"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|f| f["id"] == victim_id[0].as_str()))
        })
        .expect("the framework is removed");
    assert!(
        all_tasks(&state)
            .iter()
            .any(|t| t["id"] == "victim-0" && t["state"] == "TASK_KILLED"),
        "{state}"
    );
    let (status, output) = run_ends(&mut victim);
    assert!(!status.success(), "{output}");

    // Gone already, or never there: non-zero, with the reason.
    let again = agora(&cluster, &["teardown", "victim"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("completed already"),
        "{}",
        text(&again.stderr)
    );
    let unknown = agora(&cluster, &["teardown", "nothing-is-called-this"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("nothing-is-called-this"),
        "{}",
        text(&unknown.stderr)
    );
}

fn ui(port: u16, hash: &str) -> String {
    format!("http://127.0.0.1:{port}/{hash}")
}

/// Waits until `script` returns something other than null or false; on a
/// timeout, saves a screenshot and says what the page shows.
fn wait_page(browser: &Browser, name: &str, what: &str, script: &str) -> Value {
    browser
        .wait_script(what, DEADLINE, script, &[])
        .unwrap_or_else(|e| {
            let _ = browser.screenshot(&format!("{name}-failed"));
            let shown = browser.text("main").ok().flatten().unwrap_or_default();
            panic!("{e}; the page shows: {shown}")
        })
}

fn click(browser: &Browser, css: &str) {
    let clicked = browser
        .execute(
            "const el = document.querySelector(arguments[0]);
             if (!el) return false;
             el.click();
             return true;",
            &[json!(css)],
        )
        .expect("script runs");
    assert_eq!(clicked, Value::Bool(true), "{css} is on the page");
}

/// Whether the element is shown (neither it nor an ancestor hidden).
fn shown(browser: &Browser, css: &str) -> bool {
    browser
        .execute(
            "const el = document.querySelector(arguments[0]);
             return !!el && el.offsetParent !== null;",
            &[json!(css)],
        )
        .expect("script runs")
        == Value::Bool(true)
}

#[test]
fn the_web_ui_kills_a_task_and_tears_frameworks_down() {
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let _target = sleeper(&cluster, "ui-target");
    let _doomed = sleeper(&cluster, "ui-doomed");
    let _raced = sleeper(&cluster, "ui-raced");
    let task = wait_task(&cluster, "ui-target-0", "TASK_RUNNING");
    wait_task(&cluster, "ui-doomed-0", "TASK_RUNNING");
    wait_task(&cluster, "ui-raced-0", "TASK_RUNNING");
    let framework_id = task["framework_id"].as_str().expect("framework id");
    let port = cluster.master_port;

    let browser = Browser::start().expect("headless chromium starts");
    browser
        .goto(&ui(port, &format!("#/tasks/{framework_id}/ui-target-0")))
        .expect("task page");
    wait_page(
        &browser,
        "kill",
        "the Kill button",
        "const b = document.querySelector('#kill-button');
         return b && b.offsetParent !== null ? true : null;",
    );
    // The first click only asks.
    click(&browser, "#kill-button");
    assert!(shown(&browser, "#kill-confirm"), "the question is asked");
    assert!(!shown(&browser, "#kill-button"));
    browser.screenshot("kill-confirm").expect("screenshot");
    // Cancel asks again next time; nothing was sent.
    click(&browser, "#kill-no");
    assert!(shown(&browser, "#kill-button") && !shown(&browser, "#kill-confirm"));
    click(&browser, "#kill-button");
    click(&browser, "#kill-yes");
    wait_page(
        &browser,
        "kill",
        "the task shown killed, with the reason",
        "const killed = document.querySelector('#task-state [data-state=TASK_KILLED]');
         const detail = document.querySelector('#detail');
         return killed && detail && detail.textContent.includes('killed from the web UI') ? true : null;",
    );
    // A killed task has nothing to kill: the button goes, the status stays.
    assert!(!shown(&browser, "#kill-button"));
    let status = browser
        .text("#kill-status")
        .expect("script")
        .unwrap_or_default();
    assert!(status.contains("Kill sent"), "{status}");
    browser.screenshot("kill-done").expect("screenshot");
    let killed = wait_task(&cluster, "ui-target-0", "TASK_KILLED");
    assert!(
        killed["message"]
            .as_str()
            .is_some_and(|m| m.contains("killed from the web UI")),
        "{killed}"
    );

    // Teardown from a framework's page.
    let state = cluster.state().expect("state");
    let doomed = framework_ids(&state, "ui-doomed");
    assert_eq!(doomed.len(), 1);
    browser
        .goto(&ui(port, &format!("#/frameworks/{}", doomed[0])))
        .expect("framework page");
    wait_page(
        &browser,
        "teardown",
        "the Teardown button",
        "const b = document.querySelector('#teardown-button');
         return b && b.offsetParent !== null ? true : null;",
    );
    click(&browser, "#teardown-button");
    assert!(shown(&browser, "#teardown-confirm"));
    click(&browser, "#teardown-yes");
    wait_page(
        &browser,
        "teardown",
        "the framework shown completed",
        "const d = document.querySelector('#detail [data-state=completed]');
         const b = document.querySelector('#teardown-button');
         return d && b && b.offsetParent === null ? true : null;",
    );
    cluster
        .wait_state("ui-doomed removed", |s| {
            framework_ids(s, "ui-doomed").is_empty()
                && all_tasks(s)
                    .iter()
                    .any(|t| t["id"] == "ui-doomed-0" && t["state"] == "TASK_KILLED")
        })
        .expect("the framework is torn down");
    browser.screenshot("teardown-done").expect("screenshot");

    // A refusal is shown: the framework goes (by the command line) while
    // the page asks; confirming then is refused by the master.
    let raced = framework_ids(&cluster.state().expect("state"), "ui-raced");
    assert_eq!(raced.len(), 1);
    browser
        .goto(&ui(port, &format!("#/frameworks/{}", raced[0])))
        .expect("framework page");
    wait_page(
        &browser,
        "refused",
        "the Teardown button",
        "const b = document.querySelector('#teardown-button');
         return b && b.offsetParent !== null ? true : null;",
    );
    click(&browser, "#teardown-button");
    let gone = agora(&cluster, &["teardown", &raced[0]]);
    assert!(gone.status.success(), "{}", text(&gone.stderr));
    click(&browser, "#teardown-yes");
    let status = wait_page(
        &browser,
        "refused",
        "the master's refusal",
        "const s = document.querySelector('#teardown-status');
         return s && s.textContent.includes('refused') ? s.textContent : null;",
    );
    assert!(
        status.as_str().is_some_and(|s| s.contains(&raced[0])),
        "the master's message is shown: {status}"
    );
    browser.screenshot("teardown-refused").expect("screenshot");
    // The page reports no script error.
    let error = browser
        .execute(
            "const b = document.querySelector('#banner.error');
             return b && !b.hidden ? b.textContent : null;",
            &[],
        )
        .expect("script runs");
    assert!(error.is_null(), "the page reports an error: {error}");
    // The UI's API agrees: the target task is killed with the UI's reason.
    let page = get_json(port, "/api/tasks?q=ui-target&state=TASK_KILLED").expect("tasks api");
    assert_eq!(page["items"][0]["id"], "ui-target-0", "{page}");
}
