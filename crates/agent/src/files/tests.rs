use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECRET: &str = "top secret contents";

struct Fixture {
    dir: tempfile::TempDir,
    sandboxes: Sandboxes,
}

impl Fixture {
    /// Two sandboxes: F1/E1 (run R1, with `stdout` and `sub/x.txt`) and
    /// F2/E2 (run R2, with `secret`); and a file outside any sandbox.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = sandbox(dir.path(), "A1", "F1", "E1", "R1");
        std::fs::create_dir_all(first.join("sub")).expect("mkdir");
        std::fs::write(first.join("stdout"), "hello world\n").expect("write");
        std::fs::write(first.join("sub/x.txt"), "x").expect("write");
        let second = sandbox(dir.path(), "A1", "F2", "E2", "R2");
        std::fs::create_dir_all(&second).expect("mkdir");
        std::fs::write(second.join("secret"), SECRET).expect("write");
        std::fs::write(dir.path().join("outside"), SECRET).expect("write");
        let sandboxes = Sandboxes::new(dir.path());
        Fixture { dir, sandboxes }
    }

    fn run(&self, framework: &str, executor: &str, run: &str) -> PathBuf {
        sandbox(self.dir.path(), "A1", framework, executor, run)
    }

    fn real(&self, rest: &str) -> String {
        format!("{}/{rest}", self.run("F1", "E1", "R1").display())
    }
}

fn sandbox(work_dir: &Path, agent: &str, framework: &str, executor: &str, run: &str) -> PathBuf {
    crate::sandbox::sandbox_path(work_dir, agent, framework, executor, run)
}

fn status(result: Result<impl std::fmt::Debug, FilesError>) -> StatusCode {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(e) => e.status(),
    }
}

#[test]
fn real_and_virtual_paths_read_the_same_file() {
    let f = Fixture::new();
    let real = f
        .sandboxes
        .read(&f.real("stdout"), Some(0), None)
        .expect("read");
    assert_eq!(real.data, "hello world\n");
    for path in [
        "/frameworks/F1/executors/E1/runs/latest/stdout",
        "/frameworks/F1/executors/E1/runs/R1/stdout",
        "//frameworks/F1/./executors/E1/runs/latest//stdout",
    ] {
        let chunk = f.sandboxes.read(path, Some(0), Some(5)).expect(path);
        assert_eq!(chunk.data, "hello", "{path}");
        assert_eq!(chunk.length, 5);
    }
}

#[test]
fn dot_dot_is_refused_everywhere() {
    let f = Fixture::new();
    for path in [
        "/frameworks/F1/executors/E1/runs/latest/../../../../F2/executors/E2/runs/R2/secret"
            .to_string(),
        "/frameworks/F1/executors/E1/runs/latest/sub/../stdout".to_string(),
        "/frameworks/F1/executors/E1/runs/..".to_string(),
        f.real("../R1/stdout"),
        f.real("../../../../../../outside"),
        // `%2e%2e` and `..%2f` as the query parser leaves them: decoded once.
        format!("{}/sub/../../R1/stdout", f.run("F1", "E1", "R1").display()),
    ] {
        assert_eq!(
            status(f.sandboxes.read(&path, Some(0), None)),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

#[test]
fn once_decoded_escapes_are_names_not_traversal() {
    // `%252e%252e` decodes once to `%2e%2e`: a (missing) file name, never `..`.
    let f = Fixture::new();
    let path = "/frameworks/F1/executors/E1/runs/latest/%2e%2e/%2e%2e/F2/secret";
    assert_eq!(
        status(f.sandboxes.read(path, Some(0), None)),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn paths_outside_sandboxes_are_refused() {
    let f = Fixture::new();
    let slaves = f.dir.path().join("slaves");
    for path in [
        "/etc/passwd".to_string(),
        f.dir.path().join("outside").display().to_string(),
        slaves.join("A1/frameworks").display().to_string(),
        slaves
            .join("A1/frameworks/F1/executors/E1/runs")
            .display()
            .to_string(),
    ] {
        assert_eq!(
            status(f.sandboxes.browse(&path)),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        status(f.sandboxes.read("stdout", Some(0), None)),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(f.sandboxes.read("", Some(0), None)),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn symlinks_out_of_a_sandbox_are_refused() {
    let f = Fixture::new();
    let run = f.run("F1", "E1", "R1");
    std::os::unix::fs::symlink("/etc/passwd", run.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("/etc", run.join("etc")).expect("symlink");
    std::os::unix::fs::symlink(f.run("F2", "E2", "R2").join("secret"), run.join("other"))
        .expect("symlink");
    std::os::unix::fs::symlink(f.run("F2", "E2", "R2"), run.join("otherdir")).expect("symlink");
    for rest in ["passwd", "etc/passwd", "other", "otherdir/secret"] {
        for path in [
            f.real(rest),
            format!("/frameworks/F1/executors/E1/runs/latest/{rest}"),
        ] {
            assert_eq!(
                status(f.sandboxes.read(&path, Some(0), None)),
                StatusCode::FORBIDDEN,
                "{path}"
            );
            assert_eq!(
                status(f.sandboxes.open_download(&path)),
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
    }
    assert_eq!(
        status(
            f.sandboxes
                .browse("/frameworks/F1/executors/E1/runs/latest/etc")
        ),
        StatusCode::FORBIDDEN
    );
    // Listed as links, never followed.
    let listing = f
        .sandboxes
        .browse("/frameworks/F1/executors/E1/runs/latest")
        .expect("browse");
    let passwd = listing
        .iter()
        .find(|i| i.path.ends_with("/passwd"))
        .expect("passwd listed");
    assert!(passwd.mode.starts_with('l'), "{passwd:?}");
}

#[test]
fn a_symlink_inside_the_sandbox_is_followed() {
    let f = Fixture::new();
    let run = f.run("F1", "E1", "R1");
    std::os::unix::fs::symlink("sub/x.txt", run.join("alias")).expect("symlink");
    let chunk = f
        .sandboxes
        .read(&f.real("alias"), Some(0), None)
        .expect("read");
    assert_eq!(chunk.data, "x");
}

#[test]
fn a_run_directory_that_is_a_symlink_out_is_refused() {
    let f = Fixture::new();
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("stdout"), SECRET).expect("write");
    std::os::unix::fs::symlink(&elsewhere, f.run("F1", "E1", "R9")).expect("symlink");
    assert_eq!(
        status(
            f.sandboxes
                .read("/frameworks/F1/executors/E1/runs/R9/stdout", Some(0), None)
        ),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(f.sandboxes.read(
            &format!("{}/stdout", f.run("F1", "E1", "R9").display()),
            Some(0),
            None
        )),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn latest_is_the_newest_run() {
    let f = Fixture::new();
    // Named so that a tie on time, broken by name, would pick the wrong one.
    let old = f.run("F3", "E3", "run-z");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("stdout"), "old").expect("write");
    let old_time = run_started(&old).expect("time");
    // Wait (bounded) until the file-system clock has moved on.
    let deadline = Instant::now() + Duration::from_secs(5);
    let probe = f.dir.path().join("probe");
    loop {
        std::fs::write(&probe, "").expect("probe");
        let now = std::fs::metadata(&probe)
            .and_then(|m| m.modified())
            .expect("mtime");
        if now > old_time {
            break;
        }
        assert!(Instant::now() < deadline, "file-system clock did not move");
        std::thread::yield_now();
    }
    let new = f.run("F3", "E3", "run-a");
    std::fs::create_dir_all(&new).expect("mkdir");
    std::fs::write(new.join("stdout"), "new").expect("write");
    let chunk = f
        .sandboxes
        .read(
            "/frameworks/F3/executors/E3/runs/latest/stdout",
            Some(0),
            None,
        )
        .expect("read");
    assert_eq!(chunk.data, "new");
    assert_eq!(
        status(f.sandboxes.read(
            "/frameworks/F3/executors/E9/runs/latest/stdout",
            Some(0),
            None
        )),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(f.sandboxes.browse("/frameworks/F3/executors/E3")),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn read_offsets_and_lengths() {
    let f = Fixture::new();
    let path = f.real("stdout");
    let size = "hello world\n".len() as u64;
    let at_end = |offset: Option<i64>, length: Option<i64>| {
        f.sandboxes.read(&path, offset, length).expect("read")
    };
    assert_eq!(at_end(Some(-1), None).offset, size);
    assert_eq!(at_end(Some(-1), None).data, "");
    assert_eq!(at_end(None, None).offset, size);
    assert_eq!(at_end(None, Some(5)).data, "hello");
    let middle = at_end(Some(6), Some(5));
    assert_eq!((middle.data.as_str(), middle.offset), ("world", 6));
    assert_eq!(at_end(Some(6), Some(-1)).data, "world\n");
    let past = at_end(Some(1000), Some(10));
    assert_eq!(
        (past.data.as_str(), past.offset, past.length),
        ("", 1000, 0)
    );
    assert_eq!(at_end(Some(0), Some(0)).data, "");
    for (offset, length) in [
        (Some(-2), None),
        (Some(0), Some(-5)),
        (Some(i64::MIN), None),
    ] {
        assert_eq!(
            status(f.sandboxes.read(&path, offset, length)),
            StatusCode::BAD_REQUEST,
            "{offset:?} {length:?}"
        );
    }
    let query: HashMap<String, String> = [
        ("offset".to_string(), "abc".to_string()),
        ("length".to_string(), " 12 ".to_string()),
    ]
    .into();
    assert_eq!(status(int_param(&query, "offset")), StatusCode::BAD_REQUEST);
    assert_eq!(int_param(&query, "length").expect("int"), Some(12));
    assert_eq!(int_param(&query, "missing").expect("int"), None);
}

#[test]
fn reads_are_capped() {
    let f = Fixture::new();
    let big = f.run("F1", "E1", "R1").join("big");
    std::fs::write(&big, vec![b'a'; (MAX_READ_LENGTH + 10) as usize]).expect("write");
    let chunk = f
        .sandboxes
        .read(&big.display().to_string(), Some(0), Some(i64::MAX))
        .expect("read");
    assert_eq!(chunk.length, MAX_READ_LENGTH);
    assert_eq!(chunk.data.len() as u64, MAX_READ_LENGTH);
}

#[test]
fn a_character_cut_by_the_chunk_end_is_left_for_the_next_read() {
    let f = Fixture::new();
    let path = f.run("F1", "E1", "R1").join("utf8");
    std::fs::write(&path, "aé").expect("write");
    let path = path.display().to_string();
    let first = f.sandboxes.read(&path, Some(0), Some(2)).expect("read");
    assert_eq!((first.data.as_str(), first.length), ("a", 1));
    let second = f.sandboxes.read(&path, Some(1), Some(2)).expect("read");
    assert_eq!(second.data, "é");
}

#[test]
fn directories_and_special_files_are_not_read() {
    let f = Fixture::new();
    let run = f.run("F1", "E1", "R1");
    assert_eq!(
        status(f.sandboxes.read(&f.real("sub"), Some(0), None)),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(f.sandboxes.open_download(&f.real("sub"))),
        StatusCode::BAD_REQUEST
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        run.join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::RUSR | Mode::WUSR,
        0,
    )
    .expect("mkfifo");
    // Opened without blocking, then refused: no writer is ever needed.
    assert_eq!(
        status(f.sandboxes.read(&f.real("fifo"), Some(0), None)),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(f.sandboxes.read(&f.real("missing"), Some(0), None)),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn browse_lists_in_the_namespace_asked() {
    let f = Fixture::new();
    let listing = f
        .sandboxes
        .browse("/frameworks/F1/executors/E1/runs/latest/")
        .expect("browse");
    let paths: Vec<&str> = listing.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/frameworks/F1/executors/E1/runs/latest/stdout",
            "/frameworks/F1/executors/E1/runs/latest/sub",
        ]
    );
    assert_eq!(listing[0].size, 12);
    assert!(listing[0].mode.starts_with('-'));
    assert!(listing[1].mode.starts_with('d'));
    let real = f.sandboxes.browse(&f.real("")).expect("browse real");
    assert_eq!(real[0].path, f.real("stdout"));
    let one = f.sandboxes.browse(&f.real("stdout")).expect("file");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].path, f.real("stdout"));
}

#[test]
fn mode_strings_match_ls() {
    assert_eq!(permissions_string('-', 0o644), "-rw-r--r--");
    assert_eq!(permissions_string('d', 0o750), "drwxr-x---");
    assert_eq!(permissions_string('-', 0o4755), "-rwsr-xr-x");
    assert_eq!(permissions_string('-', 0o2644), "-rw-r-Sr--");
    assert_eq!(permissions_string('d', 0o1777), "drwxrwxrwt");
}

/// Serves the router on 127.0.0.1 and sends one raw request (the path as
/// written, so encodings reach the server untouched).
async fn raw_get(router: Router, target: &str) -> (u16, String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    server.abort();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, head.to_string(), body.to_string())
}

#[tokio::test]
async fn http_refuses_encoded_traversal_and_serves_files() {
    let f = Fixture::new();
    std::os::unix::fs::symlink("/etc/passwd", f.run("F1", "E1", "R1").join("passwd"))
        .expect("symlink");
    let base = "/frameworks/F1/executors/E1/runs/latest";
    let escape = f.run("F1", "E1", "R1").display().to_string();
    for target in [
        format!(
            "/files/read?path={base}/%2e%2e/%2e%2e/%2e%2e/F2/executors/E2/runs/R2/secret&offset=0"
        ),
        format!(
            "/files/read?path={base}/..%2f..%2f..%2fF2%2fexecutors%2fE2%2fruns%2fR2%2fsecret&offset=0"
        ),
        format!(
            "/files/read?path={base}%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Foutside&offset=0"
        ),
        "/files/read?path=/etc/passwd&offset=0".to_string(),
        "/files/read?path=%2Fetc%2Fpasswd&offset=0".to_string(),
        format!("/files/read?path={base}/passwd&offset=0"),
        format!("/files/download?path={base}/passwd"),
        format!(
            "/files/download?path={escape}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/outside"
        ),
        format!("/files/browse?path={base}/%2e%2e"),
    ] {
        let (code, _, body) = raw_get(router(f.dir.path()), &target).await;
        assert!(code == 403 || code == 404, "{target}: {code} {body}");
        assert!(
            !body.contains(SECRET) && !body.contains("root:"),
            "{target}: {body}"
        );
        let error: serde_json::Value = serde_json::from_str(&body).expect("json error");
        assert!(error["error"].is_string(), "{body}");
    }
    let (code, _, body) = raw_get(
        router(f.dir.path()),
        &format!("/files/read?path={base}/stdout&offset=0&length=5"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let chunk: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(chunk["data"], "hello");
    assert_eq!(chunk["offset"], 0);
    let (code, _, body) = raw_get(
        router(f.dir.path()),
        &format!("/files/read?path={base}/stdout&offset=zz"),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, head, body) = raw_get(
        router(f.dir.path()),
        &format!("/files/download?path={base}/stdout"),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: attachment; filename=\"stdout\""),
        "{head}"
    );
    assert_eq!(body, "hello world\n");
    let (code, _, body) =
        raw_get(router(f.dir.path()), &format!("/files/browse?path={base}")).await;
    assert_eq!(code, 200);
    let listing: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(listing[0]["path"], format!("{base}/passwd"));
    assert_eq!(listing[0]["mode"], "lrwxrwxrwx");
    let (code, _, _) = raw_get(router(f.dir.path()), "/files/browse").await;
    assert_eq!(code, 400);
}
