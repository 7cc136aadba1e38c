//! The UI's browser tests drive one headless Chromium through `fantoccini`:
//! [`Browser`] starts `chromedriver` on a free 127.0.0.1 port, opens a
//! session with a fresh profile, and offers the few synchronous commands the
//! tests use (each runs on the browser's own current-thread runtime).
//! Dropping a [`Browser`] ends the session and kills, by pid, the
//! chromedriver and the Chromium processes it started.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::wd::Capabilities;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One headless Chromium, driven through its own chromedriver.
pub struct Browser {
    /// The WebDriver session; `None` only while it is being closed.
    client: Option<fantoccini::Client>,
    /// Runs the session's commands: the tests are synchronous. `None`
    /// only once dropped.
    runtime: Option<tokio::runtime::Runtime>,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a 1280x900 headless Chromium session.
    pub fn start() -> anyhow::Result<Browser> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).exists() {
                bail!(
                    "{path} is missing: install the Debian packages chromium and chromium-driver"
                );
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the browser's runtime")?;
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let log_file = std::fs::File::create(&log)?;
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting chromedriver")?;
        // chromedriver listens once it is ready to open sessions.
        let listening = wait_for("chromedriver ready", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        if let Err(e) = listening {
            let _ = driver.kill();
            let _ = driver.wait();
            return Err(e);
        }
        let user_data = profile.path().join("profile");
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            }),
        );
        let session = block_on(&runtime, async {
            fantoccini::ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
        });
        // From here on, dropping the browser cleans up whatever started.
        let mut browser = Browser {
            client: None,
            runtime: Some(runtime),
            driver,
            profile,
        };
        browser.client = Some(session.context("opening a chromedriver session")?);
        Ok(browser)
    }

    /// Runs one WebDriver command to its end.
    fn run<T, F>(
        &self,
        what: &str,
        command: impl FnOnce(fantoccini::Client) -> F,
    ) -> anyhow::Result<T>
    where
        F: Future<Output = Result<T, fantoccini::error::CmdError>> + Send,
        T: Send,
    {
        let (Some(client), Some(runtime)) = (self.client.clone(), self.runtime.as_ref()) else {
            bail!("webdriver {what}: the session is closed");
        };
        block_on(runtime, command(client)).with_context(|| format!("webdriver {what}"))
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.run("goto", |c| async move { c.goto(url).await })
    }

    pub fn current_url(&self) -> anyhow::Result<String> {
        let url = self.run("current url", |c| async move { c.current_url().await })?;
        Ok(url.to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        let args = args.to_vec();
        self.run("execute", |c| async move { c.execute(script, args).await })
    }

    /// The text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let value = self.execute(
            "const el = document.querySelector(arguments[0]); return el ? el.textContent : null;",
            &[json!(css)],
        )?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Polls `script` until it returns something other than null or false,
    /// or the deadline passes.
    pub fn wait_script(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: &[Value],
    ) -> anyhow::Result<Value> {
        wait_for(what, timeout, || {
            self.execute(script, args)
                .ok()
                .filter(|v| !v.is_null() && *v != Value::Bool(false))
        })
    }

    /// Saves a PNG of the viewport as `target/ui-screenshots/<name>.png`
    /// (in the target directory of the running test) and returns its path.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.run("screenshot", |c| async move { c.screenshot().await })?;
        let dir = screenshot_dir()?;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Resizes the window (for the narrow-layout check).
    pub fn set_window(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.run("set window size", |c| async move {
            c.set_window_size(width, height).await
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if let Some(client) = self.client.take() {
                // Bounded: a wedged chromedriver must not hang the test.
                let close =
                    async { tokio::time::timeout(Duration::from_secs(10), client.close()).await };
                let _ = block_on(&runtime, close);
            }
            // Without waiting: dropping a runtime may not block when the
            // caller is itself on a runtime (an async test).
            runtime.shutdown_background();
        }
        // Chromium processes that outlived the session: those started with
        // this browser's own profile directory.
        let marker = self.profile.path().to_string_lossy().into_owned();
        for pid in pids_with_argument(&marker) {
            kill(pid);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Runs `future` to its end on `runtime`. A caller on a runtime thread (an
/// async test) must not block that thread's runtime, so the future then
/// runs on a plain thread of its own while the caller waits.
fn block_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `target/ui-screenshots`: the test binary is `target/<profile>/deps/<name>`.
fn screenshot_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .context("test binary lives in target/<profile>/deps")?;
    Ok(target.join("ui-screenshots"))
}

fn pids_with_argument(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
