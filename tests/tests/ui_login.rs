//! The web UI with authentication on, in a real headless Chromium: a master
//! with credentials that authenticates reads and changes, and ACLs under
//! which `ops` may kill and tear down while `viewer` may only look. The
//! page shows its own login form (the browser never pops its Basic dialog:
//! WebDriver would be stuck behind it), refuses a wrong secret, shows the
//! cluster to whoever logs in, offers Kill and Teardown only to `ops`, shows
//! the master's 403 when the hidden button is used anyway, keeps the
//! credential out of web storage and cookies, and forgets it on log out.

use std::time::Duration;

use agora_e2e::auth::{basic, get_json_as, write_credentials};
use agora_e2e::browser::Browser;
use agora_e2e::{Cluster, Proc, all_tasks, http_raw, wait_for};
use serde_json::{Value, json};

const RESOURCES: &str = "cpus:2;mem:1024;disk:1024";
const DEADLINE: Duration = Duration::from_secs(30);

const OPS_SECRET: &str = "ops-s3cret-7f1c";
const VIEWER_SECRET: &str = "viewer-s3cret-92ab";
const ENG_SECRET: &str = "eng-s3cret-5d0e";

/// `ops` may kill tasks of `eng`'s frameworks and tear down any framework;
/// nobody else may do either. Views are left permissive.
const ACLS: &str = r#"{
    "kill_tasks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"values": ["eng"]}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
    "teardown_frameworks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}]
}"#;

fn ui(port: u16, hash: &str) -> String {
    format!("http://127.0.0.1:{port}/{hash}")
}

/// What the page shows, for failure messages.
fn shown(browser: &Browser) -> String {
    browser
        .execute("return document.body.innerText;", &[])
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits until `script` returns something other than null or false.
fn wait_page(browser: &Browser, what: &str, script: &str, args: &[Value]) -> Value {
    browser
        .wait_script(what, DEADLINE, script, args)
        .unwrap_or_else(|e| panic!("{e}; the page shows: {}", shown(browser)))
}

/// Waits until the element matching `css` is shown and reads `text`.
fn wait_text(browser: &Browser, css: &str, text: &str) {
    wait_page(
        browser,
        &format!("{css} to read {text:?}"),
        "const el = document.querySelector(arguments[0]);
         return !!el && el.offsetParent !== null && el.textContent.trim() === arguments[1];",
        &[json!(css), json!(text)],
    );
}

/// Waits until the task page shows the task in `state`.
fn wait_task_state(browser: &Browser, state: &str) {
    wait_page(
        browser,
        &format!("the task page to show {state}"),
        "const el = document.querySelector('#task-state [data-state]');
         return !!el && el.dataset.state === arguments[0];",
        &[json!(state)],
    );
}

/// Waits for the login form to be up.
fn wait_login_form(browser: &Browser) {
    wait_page(
        browser,
        "the login form",
        "return !document.getElementById('login').hidden
             && document.getElementById('view').hidden
             && document.activeElement !== null;",
        &[],
    );
}

/// Fills the login form and submits it.
fn log_in(browser: &Browser, principal: &str, secret: &str) {
    browser
        .execute(
            "document.getElementById('login-principal').value = arguments[0];
             document.getElementById('login-secret').value = arguments[1];
             document.getElementById('login-submit').click();",
            &[json!(principal), json!(secret)],
        )
        .expect("the form is filled and sent");
}

/// Whether the action `id` (kill, teardown) offers its button.
fn action_offered(browser: &Browser, id: &str) -> bool {
    browser
        .execute(
            "const el = document.getElementById(arguments[0] + '-controls');
             return !!el && !el.hidden;",
            &[json!(id)],
        )
        .expect("script runs")
        == Value::Bool(true)
}

/// Everything the page could have kept between loads.
fn stored(browser: &Browser) -> String {
    browser
        .execute(
            "const all = s => Array.from({length: s.length}, (_, i) => s.key(i) + '=' + s.getItem(s.key(i)));
             return JSON.stringify({local: all(localStorage), session: all(sessionStorage),
                                    cookie: document.cookie});",
            &[],
        )
        .expect("script runs")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A GET of `path`, optionally as the page's script; (status, whether the
/// answer has a `WWW-Authenticate` challenge).
fn challenge(port: u16, path: &str, from_script: bool) -> (u16, bool) {
    let xhr = if from_script {
        "X-Requested-With: XMLHttpRequest\r\n"
    } else {
        ""
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{xhr}\r\n");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut stream, &mut raw).expect("answer");
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.contains("\r\nwww-authenticate:"))
}

#[test]
fn the_ui_logs_in_and_offers_only_what_the_acls_allow() {
    let mut cluster = Cluster::start_with_master(0, RESOURCES, |dir| {
        let credentials = write_credentials(
            &dir.join("credentials.json"),
            &[
                ("ops", OPS_SECRET),
                ("viewer", VIEWER_SECRET),
                ("eng", ENG_SECRET),
            ],
        );
        let acls = dir.join("acls.json");
        std::fs::write(&acls, ACLS).expect("acls file");
        vec![
            "--credentials".into(),
            credentials.display().to_string(),
            "--authenticate-http-readonly".into(),
            "--authenticate-http-readwrite".into(),
            "--acls".into(),
            acls.display().to_string(),
        ]
    })
    .expect("master starts");
    cluster.add_agent(0, RESOURCES);
    let port = cluster.master_port;
    let ops = basic("ops", OPS_SECRET);

    // The page and its assets load without credentials; its data does not.
    for path in ["/", "/ui/app.js", "/ui/app.css"] {
        let (status, _) = http_raw(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
        .expect("asset");
        assert_eq!(status, 200, "{path}");
    }
    // Mesos' clients still get the challenge; the page's script does not.
    assert_eq!(challenge(port, "/api/master", false), (401, true));
    assert_eq!(challenge(port, "/api/master", true), (401, false));

    // A framework of `eng` with one running task.
    let secret_file = cluster.dir.path().join("eng-secret");
    std::fs::write(&secret_file, format!("{ENG_SECRET}\n")).expect("secret file");
    let secret_path = secret_file.display().to_string();
    let master = cluster.master_address();
    let run = Proc::spawn(
        &[
            "run",
            "--master",
            &master,
            "--principal",
            "eng",
            "--secret-file",
            &secret_path,
            "--name",
            "guarded",
            "--command",
            "sleep 600",
            "--cpus",
            "0.25",
            "--mem",
            "32",
        ],
        cluster.dir.path().join("run-guarded.log"),
    );
    let task = wait_for("the task to run", DEADLINE, || {
        let state = get_json_as(port, "/state", &ops).ok()?;
        all_tasks(&state)
            .into_iter()
            .find(|t| t["state"] == "TASK_RUNNING")
    })
    .unwrap_or_else(|e| panic!("{e}; agora run says: {}", run.log_text()));
    let task_id = task["id"].as_str().expect("task id").to_string();
    let framework_id = task["framework_id"]
        .as_str()
        .expect("framework id")
        .to_string();
    let task_page = format!("#/tasks/{framework_id}/{task_id}");
    let framework_page = format!("#/frameworks/{framework_id}");

    let browser = Browser::start().expect("headless chromium starts");
    browser.goto(&ui(port, "#/")).expect("the page loads");
    // The page's own form, not the browser's dialog (WebDriver commands
    // would fail behind one).
    wait_login_form(&browser);
    browser.screenshot("login-form").expect("screenshot");

    // A wrong secret is refused, and the form stays.
    log_in(&browser, "viewer", "not-the-secret");
    wait_text(&browser, "#login-error", "Wrong principal or secret.");
    wait_login_form(&browser);
    browser.screenshot("login-refused").expect("screenshot");

    // `viewer` sees the cluster, but is offered neither Kill nor Teardown.
    log_in(&browser, "viewer", VIEWER_SECRET);
    wait_text(&browser, "#who-name", "Logged in as viewer");
    wait_text(&browser, "#agents-active", "1");
    // A reload forgets the credential: log in again.
    browser.execute("location.reload();", &[]).expect("reload");
    wait_login_form(&browser);
    log_in(&browser, "viewer", VIEWER_SECRET);
    wait_text(&browser, "#who-name", "Logged in as viewer");
    browser
        .execute("location.hash = arguments[0];", &[json!(task_page)])
        .expect("task page");
    wait_task_state(&browser, "TASK_RUNNING");
    assert!(!action_offered(&browser, "kill"), "{}", shown(&browser));
    // The sandbox comes through the master's files relay with the credential.
    wait_page(
        &browser,
        "the sandbox listing",
        "return document.querySelector('#sandbox [data-file=\"stdout\"]') !== null;",
        &[],
    );
    // Bypassing the page: the master refuses, and the page says why.
    browser
        .execute(
            "document.getElementById('kill-controls').hidden = false;
             document.getElementById('kill-button').click();
             document.getElementById('kill-yes').click();",
            &[],
        )
        .expect("the hidden button is used");
    wait_page(
        &browser,
        "the master's refusal",
        "const t = document.getElementById('kill-status').textContent;
         return t.includes('403') && t.includes(\"principal 'viewer' is not authorized\");",
        &[],
    );
    browser
        .screenshot("viewer-kill-refused")
        .expect("screenshot");
    browser
        .execute("location.hash = arguments[0];", &[json!(framework_page)])
        .expect("framework page");
    wait_page(
        &browser,
        "the framework page",
        "return document.getElementById('fw-name').textContent === 'guarded';",
        &[],
    );
    assert!(!action_offered(&browser, "teardown"), "{}", shown(&browser));

    // The credential is nowhere but in the script's memory.
    let kept = stored(&browser);
    for secret in [VIEWER_SECRET, "Basic ", "dmlld2Vy"] {
        assert!(!kept.contains(secret), "{kept}");
    }
    assert_eq!(
        kept, r#"{"local":[],"session":[],"cookie":""}"#,
        "nothing kept"
    );

    // Log out: back to the form.
    browser
        .execute("document.getElementById('logout').click();", &[])
        .expect("log out");
    wait_login_form(&browser);
    wait_page(
        &browser,
        "the logged-out top bar",
        "return document.getElementById('logout').hidden;",
        &[],
    );

    // `ops` is offered both, and Kill works.
    log_in(&browser, "ops", OPS_SECRET);
    wait_text(&browser, "#who-name", "Logged in as ops");
    wait_page(
        &browser,
        "the framework page for ops",
        "return document.getElementById('fw-name').textContent === 'guarded';",
        &[],
    );
    wait_page(
        &browser,
        "Teardown offered to ops",
        "return !document.getElementById('teardown-controls').hidden;",
        &[],
    );
    browser
        .execute("location.hash = arguments[0];", &[json!(task_page)])
        .expect("task page");
    wait_task_state(&browser, "TASK_RUNNING");
    wait_page(
        &browser,
        "Kill offered to ops",
        "return !document.getElementById('kill-controls').hidden;",
        &[],
    );
    browser.screenshot("ops-kill-offered").expect("screenshot");
    browser
        .execute(
            "document.getElementById('kill-button').click();
             document.getElementById('kill-yes').click();",
            &[],
        )
        .expect("kill");
    wait_for("the task to be killed", DEADLINE, || {
        let state = get_json_as(port, "/state", &ops).ok()?;
        all_tasks(&state)
            .into_iter()
            .find(|t| t["id"] == task_id.as_str() && t["state"] == "TASK_KILLED")
    })
    .unwrap_or_else(|e| panic!("{e}; the page shows: {}", shown(&browser)));
    wait_task_state(&browser, "TASK_KILLED");

    // The secrets never reached the master's log.
    let log = cluster.master.log_text();
    for secret in [OPS_SECRET, VIEWER_SECRET, ENG_SECRET] {
        assert!(!log.contains(secret), "a secret is in the master's log");
    }
}
