//! The agent's files API (`/files/browse`, `/files/read`): a requested path resolved to a file
//! under a sandbox.
//!
//! A fixed agent work dir is laid out once: one sandbox with files, a directory, and symlinks
//! that lead out of it (absolute, relative with `..`, a `runs/<id>` symlink to outside the
//! sandboxes), next to a file outside every sandbox. The input is the requested path; a
//! leading `@` stands for the work dir's `slaves` directory (its real path changes from run
//! to run). Invariants: whatever resolves is inside its sandbox, and the sandbox is the real
//! one; browsing and reading never show the outside file.
#![no_main]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use agora_agent::files::Sandboxes;
use libfuzzer_sys::fuzz_target;

/// What the file outside every sandbox holds: it must never be read through the API.
const OUTSIDE: &str = "outside-every-sandbox";

struct Layout {
    /// Keeps the directory until the process ends.
    _dir: tempfile::TempDir,
    slaves: String,
    sandbox: PathBuf,
    sandboxes: Sandboxes,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical temp dir");
        let work = root.join("work");
        let slaves = work.join("slaves");
        let runs = slaves.join("A/frameworks/F/executors/E/runs");
        let sandbox = runs.join("R");
        fs::create_dir_all(sandbox.join("sub/deeper")).expect("sandbox");
        fs::write(sandbox.join("stdout"), "hello from the task\n").expect("stdout");
        fs::write(sandbox.join("sub/deeper/file"), "inside").expect("file");
        fs::write(root.join("secret"), OUTSIDE).expect("outside file");
        fs::write(slaves.join("A/not-a-sandbox"), OUTSIDE).expect("outside file");
        symlink(root.join("secret"), sandbox.join("abs")).expect("symlink");
        symlink("../../../../../../../../secret", sandbox.join("rel")).expect("symlink");
        symlink(&root, sandbox.join("sub/up")).expect("symlink");
        symlink("stdout", sandbox.join("in")).expect("symlink");
        // A run directory that is a symlink to outside the sandboxes.
        symlink(&root, runs.join("X")).expect("symlink");
        let sandboxes = Sandboxes::new(&work);
        Layout {
            slaves: slaves.to_string_lossy().into_owned(),
            sandbox,
            sandboxes,
            _dir: dir,
        }
    })
}

fn check_inside(layout: &Layout, path: &str, target: &Path, sandbox: &Path) {
    assert_eq!(
        sandbox, layout.sandbox,
        "{path:?} resolved to another sandbox"
    );
    assert!(
        target.starts_with(sandbox),
        "{path:?} resolved outside: {}",
        target.display()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let layout = layout();
    let path = match text.strip_prefix('@') {
        Some(rest) => format!("{}{rest}", layout.slaves),
        None => text.to_string(),
    };
    let Ok(resolved) = layout.sandboxes.resolve(&path) else {
        return;
    };
    check_inside(layout, &path, &resolved.target, &resolved.sandbox);
    if let Ok(entries) = layout.sandboxes.browse(&path) {
        for entry in entries {
            assert!(!entry.path.contains(".."), "browse listed {}", entry.path);
        }
    }
    if let Ok(chunk) = layout.sandboxes.read(&path, Some(0), Some(1 << 16)) {
        assert!(
            !chunk.data.contains(OUTSIDE),
            "{path:?} read a file outside the sandbox"
        );
    }
});
