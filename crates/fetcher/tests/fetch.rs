//! The fetcher against a local HTTP server: formats, cache, limits, and sandbox safety.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agora_fetcher::{FetchError, FetchUri, FetcherConfig, cache_stats, fetch_all};
use support::{Entry, Server};

const SCRIPT: &[u8] = b"#!/bin/sh\necho hello from agora\n";

async fn fetch(
    uris: &[FetchUri],
    sandbox: &Path,
    config: &FetcherConfig,
) -> (Result<Vec<std::path::PathBuf>, FetchError>, String) {
    let mut log = Vec::new();
    let result = fetch_all(uris, sandbox, config, &mut log).await;
    (result, String::from_utf8_lossy(&log).into_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn tar_gz_over_http_extracts_a_script_that_runs() {
    let server = Server::start().await;
    let archive = support::gzip(&support::tar(&[Entry {
        path: "bin/run.sh",
        mode: 0o755,
        data: SCRIPT,
    }]));
    server.add("pkg.tar.gz", archive);
    let sandbox = tempfile::tempdir().expect("tempdir");

    let (result, log) = fetch(
        &[FetchUri::new(server.url("pkg.tar.gz"))],
        sandbox.path(),
        &FetcherConfig::default(),
    )
    .await;

    let landed = result.expect("fetch");
    assert_eq!(landed, vec![sandbox.path().join("pkg.tar.gz")]);
    assert!(landed[0].exists(), "the archive stays, as in mesos");
    let script = sandbox.path().join("bin/run.sh");
    assert_eq!(mode(&script), 0o755);
    let output = std::process::Command::new(&script)
        .output()
        .expect("run the script");
    assert!(output.status.success());
    assert_eq!(output.stdout, b"hello from agora\n");
    assert!(log.contains("fetching http://"), "{log}");
    assert!(log.contains("downloaded"), "{log}");
    assert!(log.contains("extracted 1 entries"), "{log}");
}

#[tokio::test]
async fn every_archive_format_extracts_with_exec_bits() {
    let server = Server::start().await;
    let entries = [
        Entry {
            path: "d/run.sh",
            mode: 0o755,
            data: SCRIPT,
        },
        Entry {
            path: "d/data.txt",
            mode: 0o644,
            data: b"data",
        },
    ];
    let tar = support::tar(&entries);
    let archives = [
        ("a.tar", tar.clone()),
        ("a.tgz", support::gzip(&tar)),
        ("a.tar.bz2", support::bzip2(&tar)),
        ("a.tbz2", support::bzip2(&tar)),
        ("a.tar.xz", support::xz(&tar)),
        ("a.txz", support::xz(&tar)),
        ("a.zip", support::zip(&entries)),
    ];
    for (name, bytes) in archives {
        server.add(name, bytes);
        let sandbox = tempfile::tempdir().expect("tempdir");
        let (result, log) = fetch(
            &[FetchUri::new(server.url(name))],
            sandbox.path(),
            &FetcherConfig::default(),
        )
        .await;
        result.unwrap_or_else(|e| panic!("{name}: {e}\n{log}"));
        let dir = sandbox.path().join("d");
        assert_eq!(
            std::fs::read(dir.join("data.txt")).expect(name),
            b"data",
            "{name}"
        );
        assert_eq!(
            std::fs::read(dir.join("run.sh")).expect(name),
            SCRIPT,
            "{name}"
        );
        assert_eq!(mode(&dir.join("run.sh")), 0o755, "{name}");
        assert_eq!(mode(&dir.join("data.txt")), 0o644, "{name}");
    }

    // A lone .gz is gunzipped beside itself.
    server.add("notes.txt.gz", support::gzip(b"plain notes"));
    let sandbox = tempfile::tempdir().expect("tempdir");
    let (result, _) = fetch(
        &[FetchUri::new(server.url("notes.txt.gz"))],
        sandbox.path(),
        &FetcherConfig::default(),
    )
    .await;
    result.expect("fetch .gz");
    assert_eq!(
        std::fs::read(sandbox.path().join("notes.txt")).expect("gunzipped"),
        b"plain notes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_fetchers_download_once() {
    let server = Server::start().await;
    let body = support::gzip(&support::tar(&[Entry {
        path: "spark/bin/spark-class",
        mode: 0o755,
        data: &support::noise(256 * 1024, 7),
    }]));
    server.add("spark.tgz", body);
    let cache = tempfile::tempdir().expect("cache dir");
    let config = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..FetcherConfig::default()
    };
    // The slow route keeps the first download going while the others queue on the lock.
    let uri = FetchUri {
        cache: true,
        ..FetchUri::new(server.url_at("slow", "spark.tgz"))
    };
    let root = tempfile::tempdir().expect("sandboxes");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let sandbox = root.path().join(format!("s{i}"));
        std::fs::create_dir(&sandbox).expect("sandbox");
        let (uri, config) = (uri.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            fetch_all(&[uri], &sandbox, &config, &mut log)
                .await
                .map(|_| sandbox)
        }));
    }
    let mut hits = 0;
    for task in tasks {
        let sandbox = task.await.expect("join").expect("fetch");
        assert_eq!(mode(&sandbox.join("spark/bin/spark-class")), 0o755);
        assert!(sandbox.join("spark.tgz").exists());
        hits += 1;
    }
    assert_eq!(hits, 20);
    assert_eq!(
        server.count_path("/slow/spark.tgz"),
        1,
        "one download for twenty fetchers"
    );
    assert_eq!(cache_stats(&config).entries, 1);
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted_within_the_bound() {
    let server = Server::start().await;
    for name in ["a.bin", "b.bin", "c.bin"] {
        server.add(
            name,
            support::noise(1000, name.len() as u64 + name.as_bytes()[0] as u64),
        );
    }
    server.add("huge.bin", support::noise(3000, 3));
    let cache = tempfile::tempdir().expect("cache dir");
    let config = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        cache_max_bytes: 2500,
        ..FetcherConfig::default()
    };
    let cached = |name: &str| FetchUri {
        cache: true,
        ..FetchUri::new(server.url(name))
    };
    let sandbox = tempfile::tempdir().expect("sandbox");
    for name in ["a.bin", "b.bin", "c.bin"] {
        let (result, log) = fetch(&[cached(name)], sandbox.path(), &config).await;
        result.unwrap_or_else(|e| panic!("{e}\n{log}"));
        assert!(cache_stats(&config).bytes <= 2500);
    }
    let stats = cache_stats(&config);
    assert_eq!((stats.entries, stats.bytes), (2, 2000));

    // b and c are cached, a was evicted (the oldest).
    let (result, _) = fetch(&[cached("b.bin"), cached("c.bin")], sandbox.path(), &config).await;
    result.expect("refetch");
    assert_eq!((server.count("b.bin"), server.count("c.bin")), (1, 1));
    let (result, _) = fetch(&[cached("a.bin")], sandbox.path(), &config).await;
    result.expect("refetch a");
    assert_eq!(server.count("a.bin"), 2);
    assert!(cache_stats(&config).bytes <= 2500);

    // An entry larger than the whole cache is delivered but not cached.
    let before = cache_stats(&config);
    let (result, _) = fetch(&[cached("huge.bin")], sandbox.path(), &config).await;
    result.expect("huge");
    assert_eq!(
        std::fs::read(sandbox.path().join("huge.bin"))
            .expect("huge")
            .len(),
        3000
    );
    assert_eq!(cache_stats(&config), before);
}

#[tokio::test]
async fn corrupt_cache_entry_falls_back_to_a_download() {
    let server = Server::start().await;
    server.add("x.bin", b"good bytes".to_vec());
    let cache = tempfile::tempdir().expect("cache dir");
    let config = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..FetcherConfig::default()
    };
    let uri = FetchUri {
        cache: true,
        ..FetchUri::new(server.url("x.bin"))
    };
    let sandbox = tempfile::tempdir().expect("sandbox");
    fetch(std::slice::from_ref(&uri), sandbox.path(), &config)
        .await
        .0
        .expect("first");
    // Truncate every entry behind the cache's back.
    for name in listing(&cache.path().join("entries")) {
        if !name.contains('.') {
            std::fs::write(cache.path().join("entries").join(name), b"bad").expect("corrupt");
        }
    }
    let sandbox2 = tempfile::tempdir().expect("sandbox");
    fetch(&[uri], sandbox2.path(), &config)
        .await
        .0
        .expect("second");
    assert_eq!(
        std::fs::read(sandbox2.path().join("x.bin")).expect("read"),
        b"good bytes"
    );
    assert_eq!(server.count("x.bin"), 2);
}

#[tokio::test]
async fn connection_refused_names_the_uri_quickly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let uri = format!("http://127.0.0.1:{port}/x.tgz");
    let sandbox = tempfile::tempdir().expect("sandbox");
    let started = Instant::now();
    let (result, log) = fetch(
        &[FetchUri::new(&uri)],
        sandbox.path(),
        &FetcherConfig::default(),
    )
    .await;
    let err = result.expect_err("closed port");
    // Refused at once, not left to the stall timeout (60 s) as a silent
    // server would be.
    assert!(started.elapsed() < FetcherConfig::default().stall_timeout);
    assert_eq!(
        err.to_string(),
        format!("fetching {uri}: connection refused")
    );
    assert_eq!(err.uri(), uri);
    assert!(log.contains("connection refused"), "{log}");
    assert_eq!(
        listing(sandbox.path()),
        Vec::<String>::new(),
        "no partial file"
    );
}

#[tokio::test]
async fn a_stalled_download_fails_after_the_stall_timeout() {
    let server = Server::start().await;
    server.add("slow.bin", support::noise(1 << 16, 5));
    let config = FetcherConfig {
        stall_timeout: Duration::from_millis(300),
        ..FetcherConfig::default()
    };
    let sandbox = tempfile::tempdir().expect("sandbox");
    let started = Instant::now();
    let (result, _) = fetch(
        &[FetchUri::new(server.url_at("stall", "slow.bin"))],
        sandbox.path(),
        &config,
    )
    .await;
    let elapsed = started.elapsed();
    let err = result.expect_err("stall");
    assert!(matches!(err, FetchError::Stalled { .. }), "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(
        listing(sandbox.path()),
        Vec::<String>::new(),
        "no partial file"
    );
}

#[tokio::test]
async fn downloads_over_the_size_limit_fail() {
    let server = Server::start().await;
    server.add("big.bin", support::noise(20_000, 9));
    let config = FetcherConfig {
        max_download_bytes: Some(10_000),
        ..FetcherConfig::default()
    };
    let sandbox = tempfile::tempdir().expect("sandbox");
    // By Content-Length, and by counting a body without one.
    for uri in [server.url("big.bin"), server.url_at("chunked", "big.bin")] {
        let (result, _) = fetch(&[FetchUri::new(&uri)], sandbox.path(), &config).await;
        let err = result.expect_err("too large");
        assert!(
            matches!(err, FetchError::TooLarge { limit: 10_000, .. }),
            "{err}"
        );
    }
    assert_eq!(listing(sandbox.path()), Vec::<String>::new());
    // Under the limit, the chunked route works.
    server.add("small.bin", support::noise(5_000, 9));
    let (result, _) = fetch(
        &[FetchUri::new(server.url_at("chunked", "small.bin"))],
        sandbox.path(),
        &config,
    )
    .await;
    result.expect("small");
    assert_eq!(
        std::fs::read(sandbox.path().join("small.bin"))
            .expect("small")
            .len(),
        5_000
    );
}

/// A compression bomb (a few KiB that inflate to 16 MiB of zeros) in each format is stopped at
/// the extraction cap, and what it had written is removed; what was in the sandbox before stays.
#[tokio::test]
async fn compression_bombs_stop_at_the_extract_cap_and_leave_nothing() {
    let server = Server::start().await;
    let zeros = vec![0u8; 16 << 20];
    let entry = |path| Entry {
        path,
        mode: 0o644,
        data: &zeros,
    };
    let bombs = [
        (
            "bomb.tar.gz",
            support::gzip(&support::tar(&[entry("out/zeros")])),
        ),
        ("bomb.gz", support::gzip(&zeros)),
        ("bomb.zip", support::zip(&[entry("out/zeros")])),
    ];
    let config = FetcherConfig {
        max_extract_bytes: 1 << 20,
        ..FetcherConfig::default()
    };
    for (name, body) in bombs {
        assert!(
            body.len() < 1 << 20,
            "{name} is a bomb: {} bytes",
            body.len()
        );
        server.add(name, body);
        let sandbox = tempfile::tempdir().expect("sandbox");
        std::fs::write(sandbox.path().join("stdout"), b"kept").expect("stdout");
        let (result, log) =
            fetch(&[FetchUri::new(server.url(name))], sandbox.path(), &config).await;
        let err = result.expect_err("a bomb must not extract");
        assert!(
            matches!(err, FetchError::Extract { .. })
                && err.to_string().contains("limit of 1048576 bytes"),
            "{name}: {err}\n{log}"
        );
        // The downloaded archive stays (as Mesos keeps it); its output does not.
        assert_eq!(
            listing(sandbox.path()),
            vec![name.to_string(), "stdout".to_string()],
            "{name}"
        );
    }
    // The default cap lets ordinary archives through.
    server.add(
        "ok.tar.gz",
        support::gzip(&support::tar(&[entry("out/zeros")])),
    );
    let sandbox = tempfile::tempdir().expect("sandbox");
    let (result, log) = fetch(
        &[FetchUri::new(server.url("ok.tar.gz"))],
        sandbox.path(),
        &FetcherConfig::default(),
    )
    .await;
    result.expect(&log);
    assert_eq!(
        std::fs::metadata(sandbox.path().join("out/zeros"))
            .expect("extracted")
            .len(),
        16 << 20
    );
}

#[tokio::test]
async fn output_file_cannot_leave_the_sandbox() {
    let server = Server::start().await;
    server.add("x.bin", b"x".to_vec());
    let root = tempfile::tempdir().expect("root");
    let sandbox = root.path().join("sandbox");
    std::fs::create_dir(&sandbox).expect("sandbox");
    let escape = root.path().join("escaped");
    for output in [
        "../escaped",
        "a/../../escaped",
        escape.to_str().expect("utf-8"),
    ] {
        let uri = FetchUri {
            output_file: Some(output.to_owned()),
            ..FetchUri::new(server.url("x.bin"))
        };
        let (result, _) = fetch(&[uri], &sandbox, &FetcherConfig::default()).await;
        let err = result.expect_err(output);
        assert!(matches!(err, FetchError::InvalidUri { .. }), "{err}");
    }
    assert_eq!(listing(root.path()), vec!["sandbox".to_owned()]);
    assert_eq!(server.count("x.bin"), 0, "rejected before any download");

    // A symlink out of the sandbox, extracted by an earlier URI, does not redirect a later one.
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    server.add("link.tar", support::tar_symlink("lib", &outside));
    let through = FetchUri {
        output_file: Some("lib/sub/x.bin".to_owned()),
        ..FetchUri::new(server.url("x.bin"))
    };
    let (result, _) = fetch(
        &[FetchUri::new(server.url("link.tar")), through],
        &sandbox,
        &FetcherConfig::default(),
    )
    .await;
    let err = result.expect_err("through a symlink");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(listing(&outside), Vec::<String>::new());

    // A relative output_file with directories is fine.
    let uri = FetchUri {
        output_file: Some("conf/renamed.bin".to_owned()),
        ..FetchUri::new(server.url("x.bin"))
    };
    let (result, _) = fetch(&[uri], &sandbox, &FetcherConfig::default()).await;
    assert_eq!(
        result.expect("renamed"),
        vec![sandbox.join("conf/renamed.bin")]
    );
}

#[tokio::test]
async fn archive_entries_cannot_leave_the_sandbox() {
    let server = Server::start().await;
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let absolute = elsewhere.path().join("abs-evil");
    server.add("evil.tar", support::tar_raw_name("../evil", b"pwned"));
    server.add(
        "evil.tgz",
        support::gzip(&support::tar_raw_name("../evil", b"pwned")),
    );
    server.add(
        "abs.tar",
        support::tar_raw_name(absolute.to_str().expect("utf-8 temp path"), b"pwned"),
    );
    server.add(
        "evil.zip",
        support::zip(&[Entry {
            path: "../evil",
            mode: 0o644,
            data: b"pwned",
        }]),
    );
    for name in ["evil.tar", "evil.tgz", "abs.tar", "evil.zip"] {
        let root = tempfile::tempdir().expect("root");
        let sandbox = root.path().join("sandbox");
        std::fs::create_dir(&sandbox).expect("sandbox");
        let (result, _) = fetch(
            &[FetchUri::new(server.url(name))],
            &sandbox,
            &FetcherConfig::default(),
        )
        .await;
        let err = result.expect_err(name);
        assert!(matches!(err, FetchError::Extract { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(listing(root.path()), vec!["sandbox".to_owned()], "{name}");
    }
    assert!(!absolute.exists());
}

#[tokio::test]
async fn executable_sets_0755_and_skips_extraction() {
    let server = Server::start().await;
    server.add(
        "tool.tgz",
        support::gzip(&support::tar(&[Entry {
            path: "inner",
            mode: 0o644,
            data: b"i",
        }])),
    );
    let sandbox = tempfile::tempdir().expect("sandbox");
    let uri = FetchUri {
        executable: true,
        ..FetchUri::new(server.url("tool.tgz"))
    };
    let (result, _) = fetch(&[uri], sandbox.path(), &FetcherConfig::default()).await;
    result.expect("fetch");
    assert_eq!(mode(&sandbox.path().join("tool.tgz")), 0o755);
    assert!(!sandbox.path().join("inner").exists());

    // extract: false also leaves the archive alone.
    let sandbox = tempfile::tempdir().expect("sandbox");
    let uri = FetchUri {
        extract: false,
        ..FetchUri::new(server.url("tool.tgz"))
    };
    fetch(&[uri], sandbox.path(), &FetcherConfig::default())
        .await
        .0
        .expect("fetch");
    assert_eq!(listing(sandbox.path()), vec!["tool.tgz".to_owned()]);
}

#[tokio::test]
async fn local_files_are_copied_in_order() {
    let src = tempfile::tempdir().expect("src");
    std::fs::write(src.path().join("a.txt"), b"a").expect("write");
    std::fs::write(src.path().join("b.txt"), b"b").expect("write");
    std::fs::write(
        src.path().join("c.tgz"),
        support::gzip(&support::tar(&[Entry {
            path: "c",
            mode: 0o644,
            data: b"c",
        }])),
    )
    .expect("write");
    let sandbox = tempfile::tempdir().expect("sandbox");
    let config = FetcherConfig {
        frameworks_home: Some(src.path().to_owned()),
        ..FetcherConfig::default()
    };
    let uris = [
        FetchUri::new(format!("file://{}", src.path().join("a.txt").display())),
        FetchUri::new(src.path().join("b.txt").display().to_string()),
        FetchUri::new("c.tgz"),
    ];
    let (result, _) = fetch(&uris, sandbox.path(), &config).await;
    let landed = result.expect("copy");
    assert_eq!(landed.len(), 3);
    assert_eq!(listing(sandbox.path()), ["a.txt", "b.txt", "c", "c.tgz"]);
    assert_eq!(std::fs::read(sandbox.path().join("c")).expect("c"), b"c");

    // Without a frameworks home a relative path is an error; so is a missing file.
    let (result, _) = fetch(
        &[FetchUri::new("c.tgz")],
        sandbox.path(),
        &FetcherConfig::default(),
    )
    .await;
    assert!(matches!(result, Err(FetchError::InvalidUri { .. })));
    let missing = src.path().join("missing.txt").display().to_string();
    let (result, _) = fetch(&[FetchUri::new(&missing)], sandbox.path(), &config).await;
    assert!(matches!(result, Err(FetchError::Io { .. })));
}

#[tokio::test]
async fn bad_schemes_and_statuses_are_errors() {
    let server = Server::start().await;
    let sandbox = tempfile::tempdir().expect("sandbox");
    let config = FetcherConfig::default();
    let (result, _) = fetch(&[FetchUri::new("hdfs://nn/x.tgz")], sandbox.path(), &config).await;
    let err = result.expect_err("hdfs");
    assert_eq!(
        err.to_string(),
        "fetching hdfs://nn/x.tgz: unsupported scheme \"hdfs\""
    );
    let missing = server.url("nothing.tgz");
    let (result, _) = fetch(&[FetchUri::new(&missing)], sandbox.path(), &config).await;
    let err = result.expect_err("404");
    assert_eq!(
        err.to_string(),
        format!("fetching {missing}: http status 404")
    );
    let (result, _) = fetch(
        &[FetchUri::new(format!("http://{}/", server.addr))],
        sandbox.path(),
        &config,
    )
    .await;
    assert!(matches!(result, Err(FetchError::InvalidUri { .. })));
}

/// A task's user fetches local files with its own rights, through the cache
/// too: what root put in the cache for itself is never handed to `nobody`,
/// and a setuid source is copied without its setuid bit.
#[tokio::test]
async fn local_files_are_read_as_the_task_user_and_the_cache_is_per_user() {
    // Only root can act as another user: without it this test could not
    // show anything, so it fails.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (it fetches as the user 'nobody'): run the suite as root, as .ci/run does"
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "root only").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let program = dir.path().join("tool");
    std::fs::write(&program, SCRIPT).expect("write");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let cache = dir.path().join("cache");
    let config = FetcherConfig {
        cache_dir: Some(cache),
        ..FetcherConfig::default()
    };
    let cached = |path: &Path| FetchUri {
        cache: true,
        ..FetchUri::new(format!("file://{}", path.display()))
    };
    let nobody = agora_fetcher::FetchUser {
        uid: 65534,
        gid: 65534,
    };
    let fetch_as = |user: Option<agora_fetcher::FetchUser>, sandbox: std::path::PathBuf| {
        let uris = vec![cached(&secret), cached(&program)];
        let config = config.clone();
        async move {
            let mut log = Vec::new();
            agora_fetcher::fetch_all_as(&uris, &sandbox, &config, user, &mut log).await
        }
    };

    // Root fetches both (and fills the cache).
    let root_sandbox = tempfile::tempdir().expect("sandbox");
    fetch_as(None, root_sandbox.path().to_path_buf())
        .await
        .expect("root may read both");
    assert_eq!(
        std::fs::read_to_string(root_sandbox.path().join("secret.txt")).expect("read"),
        "root only"
    );
    let full_mode = std::fs::metadata(root_sandbox.path().join("tool"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(full_mode & 0o7000, 0, "no setuid bit on the copy");

    // nobody may not: neither directly nor from root's cache entry.
    let nobody_sandbox = tempfile::tempdir().expect("sandbox");
    let err = fetch_as(Some(nobody), nobody_sandbox.path().to_path_buf())
        .await
        .expect_err("nobody may not read the secret");
    assert!(
        err.to_string().to_lowercase().contains("permission denied"),
        "{err}"
    );
    assert!(!nobody_sandbox.path().join("secret.txt").exists());

    // What nobody may read, it fetches.
    let nobody_sandbox = tempfile::tempdir().expect("sandbox");
    let uris = vec![cached(&program)];
    let mut log = Vec::new();
    agora_fetcher::fetch_all_as(
        &uris,
        nobody_sandbox.path(),
        &config,
        Some(nobody),
        &mut log,
    )
    .await
    .expect("nobody may read the tool");
    let full_mode = std::fs::metadata(nobody_sandbox.path().join("tool"))
        .expect("fetched")
        .permissions()
        .mode();
    assert_eq!(full_mode & 0o7000, 0, "no setuid bit on the copy");
}

/// The key directory of the one tree in `cache` (the cache's layout: `trees/<key>/`).
fn only_tree(cache: &Path) -> std::path::PathBuf {
    let trees: Vec<_> = listing(&cache.join("trees"))
        .into_iter()
        .filter(|name| !name.contains('.'))
        .collect();
    assert_eq!(trees.len(), 1, "one tree: {trees:?}");
    cache.join("trees").join(&trees[0])
}

/// What an extracted package holds, checked as a task would see it.
fn assert_package(sandbox: &Path, marker: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    let pkg = sandbox.join("pkg");
    assert_eq!(mode(&pkg.join("bin/run")), 0o755);
    assert_eq!(mode(&pkg.join("lib/deep/marker")), 0o640);
    assert_eq!(mode(&pkg.join("lib/deep")), 0o750);
    assert_eq!(
        std::fs::read(pkg.join("lib/deep/marker")).expect("marker"),
        marker
    );
    let link = std::fs::symlink_metadata(pkg.join("current")).expect("link");
    assert!(link.file_type().is_symlink(), "pkg/current is a link");
    assert_eq!(
        std::fs::read_link(pkg.join("current")).expect("link"),
        Path::new("bin")
    );
    let mtime = std::fs::metadata(pkg.join("lib/deep/marker"))
        .expect("marker")
        .mtime();
    assert_eq!(mtime as u64, support::PACKAGE_MTIME);
    let output = std::process::Command::new(pkg.join("current/run"))
        .output()
        .expect("run the script");
    assert_eq!(output.stdout, b"run\n");
}

/// A server with `pkg.tgz` (`support::package(b"original")`), an empty cache directory, a
/// config using it, and the package's URI marked `cache`.
async fn package_in_a_cache() -> (Server, tempfile::TempDir, FetcherConfig, FetchUri) {
    let server = Server::start().await;
    server.add("pkg.tgz", support::package(b"original"));
    let cache = tempfile::tempdir().expect("cache dir");
    let config = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..FetcherConfig::default()
    };
    let uri = FetchUri {
        cache: true,
        ..FetchUri::new(server.url("pkg.tgz"))
    };
    (server, cache, config, uri)
}

#[tokio::test]
async fn a_cached_archive_is_extracted_once_per_agent_and_each_sandbox_gets_its_own_copy() {
    let (server, cache, config, uri) = package_in_a_cache().await;
    let root = tempfile::tempdir().expect("sandboxes");
    let sandbox = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).expect("sandbox");
        dir
    };

    // The first fetch downloads, extracts once into the cache and copies that tree.
    let first = sandbox("first");
    let (result, log) = fetch(std::slice::from_ref(&uri), &first, &config).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("from the agent's extracted copy"), "{log}");
    assert_package(&first, b"original");
    assert!(
        first.join("pkg.tgz").exists(),
        "the archive stays, as in Mesos"
    );
    let tree = only_tree(cache.path());

    // A sandbox's copy is its own: a task changing its files changes no other sandbox's.
    std::fs::write(first.join("pkg/lib/deep/marker"), b"changed by a task").expect("write");
    let second = sandbox("second");
    let (result, log) = fetch(std::slice::from_ref(&uri), &second, &config).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_package(&second, b"original");

    // The next fetches copy the tree, not extract the archive: what the tree holds is what
    // they get (changed here behind the cache's back, which nothing else does).
    std::fs::write(tree.join("pkg/lib/deep/marker"), b"from the tree").expect("write");
    let third = sandbox("third");
    let (result, log) = fetch(std::slice::from_ref(&uri), &third, &config).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(
        std::fs::read(third.join("pkg/lib/deep/marker")).expect("marker"),
        b"from the tree"
    );
    assert_eq!(server.count("pkg.tgz"), 1, "one download");

    // An entry downloaded again (here: its old one gone) gets a tree of its own.
    for name in listing(&cache.path().join("entries")) {
        std::fs::remove_file(cache.path().join("entries").join(name)).expect("remove entry");
    }
    let fourth = sandbox("fourth");
    let (result, log) = fetch(std::slice::from_ref(&uri), &fourth, &config).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(server.count("pkg.tgz"), 2);
    assert_package(&fourth, b"original");
}

#[tokio::test]
async fn a_sandbox_that_holds_a_name_of_the_tree_is_extracted_into_with_the_usual_checks() {
    let (_server, cache, config, uri) = package_in_a_cache().await;
    let warm = tempfile::tempdir().expect("sandbox");
    fetch(std::slice::from_ref(&uri), warm.path(), &config)
        .await
        .0
        .expect("first fetch");
    only_tree(cache.path());

    // `pkg` in this sandbox is a link out of it (an earlier URI's archive put it there): the
    // tree is not copied, and the extraction refuses to write through the link.
    let root = tempfile::tempdir().expect("root");
    let outside = root.path().join("outside");
    let sandbox = root.path().join("sandbox");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::create_dir(&sandbox).expect("sandbox");
    std::os::unix::fs::symlink(&outside, sandbox.join("pkg")).expect("link");
    let (result, log) = fetch(std::slice::from_ref(&uri), &sandbox, &config).await;
    assert!(log.contains("cannot be used"), "{log}");
    let err = result.expect_err("written through a link");
    assert!(matches!(err, FetchError::Extract { .. }), "{err}");
    assert!(listing(&outside).is_empty(), "nothing written outside");
}

#[tokio::test]
async fn an_archive_and_its_tree_count_against_the_cache_bound() {
    let server = Server::start().await;
    // Incompressible, so that the archive and its tree are each about 4,000 bytes.
    let (big, other_big) = (support::noise(4000, 11), support::noise(4000, 12));
    server.add("big.tgz", support::package(&big));
    server.add("other.tgz", support::package(&other_big));
    let cache = tempfile::tempdir().expect("cache dir");
    let cached = |name: &str| FetchUri {
        cache: true,
        ..FetchUri::new(server.url(name))
    };

    // Room for the archive, not for it and its tree: the tree is not kept, and no fetch
    // extracts it into the cache again.
    let tight = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        cache_max_bytes: 6000,
        ..FetcherConfig::default()
    };
    for _ in 0..2 {
        let sandbox = tempfile::tempdir().expect("sandbox");
        let (result, log) = fetch(&[cached("big.tgz")], sandbox.path(), &tight).await;
        result.unwrap_or_else(|e| panic!("{e}\n{log}"));
        assert!(log.contains("too large to keep"), "{log}");
        assert_package(sandbox.path(), &big);
    }
    let kept: Vec<_> = listing(&cache.path().join("trees"))
        .into_iter()
        .filter(|name| !name.contains('.'))
        .collect();
    assert!(kept.is_empty(), "no tree kept: {kept:?}");

    // With room for one archive and its tree (not two), the next archive's evicts both.
    let roomy = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        cache_max_bytes: 12_000,
        ..FetcherConfig::default()
    };
    let other = tempfile::tempdir().expect("sandbox");
    let sandbox = tempfile::tempdir().expect("sandbox");
    let (result, log) = fetch(&[cached("big.tgz")], sandbox.path(), &roomy).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("from the agent's extracted copy"), "{log}");
    let big_tree = only_tree(cache.path());
    let (result, log) = fetch(&[cached("other.tgz")], other.path(), &roomy).await;
    result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_package(other.path(), &other_big);
    assert!(
        !big_tree.exists(),
        "the older archive's tree is evicted with it"
    );
    assert_eq!(cache_stats(&roomy).entries, 1);
    only_tree(cache.path());
}
