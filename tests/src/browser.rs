//! A small WebDriver client for the UI's browser tests: starts
//! `chromedriver` on a free 127.0.0.1 port, opens one headless Chromium
//! session with a fresh profile, and drives it over the W3C WebDriver
//! protocol (JSON over HTTP/1.1). Dropping a [`Browser`] ends the session
//! and kills, by pid, the chromedriver and the Chromium processes it started.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One headless Chromium, driven through its own chromedriver.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
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
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let log_file = std::fs::File::create(&log)?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting chromedriver")?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        wait_for("chromedriver ready", Duration::from_secs(30), || {
            browser
                .request("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        })?;
        let user_data = browser.profile.path().join("profile");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
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
                    },
                },
            },
        });
        let answer = browser.request("POST", "/session", Some(&capabilities))?;
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .context("no session id in the new session's answer")?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver command; returns the answer's JSON, or an error with
    /// WebDriver's message for a non-2xx status.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let (head, payload) = read_response(&mut stream)?;
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .context("no status code")?
            .parse()?;
        let value: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        if !(200..300).contains(&code) {
            bail!(
                "webdriver {method} {path}: {code} {}",
                value["value"]["message"]
            );
        }
        Ok(value)
    }

    fn command(&self, method: &str, what: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let path = format!("/session/{}{what}", self.session);
        Ok(self.request(method, &path, body)?["value"].take())
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command("POST", "/url", Some(&json!({ "url": url })))?;
        Ok(())
    }

    pub fn current_url(&self) -> anyhow::Result<String> {
        Ok(self
            .command("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
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
        let encoded = self.command("GET", "/screenshot", None)?;
        let png = base64_decode(encoded.as_str().context("screenshot is not a string")?)?;
        let dir = screenshot_dir()?;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Resizes the window (for the narrow-layout check).
    pub fn set_window(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.request("DELETE", &path, None);
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

/// Reads one response: chromedriver says `Connection: close` but keeps the
/// connection open, so the body ends by its length, not by end of stream.
fn read_response(stream: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    let started = Instant::now();
    let mut header_end = None;
    while started.elapsed() < Duration::from_secs(120) {
        if header_end.is_none() {
            header_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        }
        if let Some(end) = header_end {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let body = &raw[end + 4..];
            if head.contains("transfer-encoding:") && head.contains("chunked") {
                if body.ends_with(b"0\r\n\r\n") {
                    return Ok((head, dechunk(body)?));
                }
            } else if let Some(length) = content_length(&head)
                && body.len() >= length
            {
                return Ok((head, body[..length].to_vec()));
            }
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            let end = header_end.context("connection closed before the http header ended")?;
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            return Ok((head, raw[end + 4..].to_vec()));
        }
        raw.extend_from_slice(&buffer[..n]);
    }
    bail!("no complete http response within 120 s")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).context("short chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
    bail!("chunked body did not end")
}

/// Standard base64 (WebDriver's screenshot encoding).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            other => bail!("not base64: byte {other}"),
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8=").expect("valid"), b"hello");
        assert_eq!(base64_decode("AAEC/w==").expect("valid"), [0, 1, 2, 255]);
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(body).expect("valid"), b"hello world");
    }
}
