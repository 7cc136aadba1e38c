//! The fetcher: archives (tar and zip) with arbitrary entry names, types and link targets,
//! fetched with `file://` URIs and arbitrary `output_file` names, one after another into one
//! sandbox (so a symlink an earlier archive left can try to redirect a later one).
//!
//! Invariant: nothing is created or changed outside the sandbox, and every landed path is
//! inside it.
//!
//! Safety of the machine that fuzzes: the sandbox lies `DEPTH` directories below a scratch
//! directory, absolute link targets are re-rooted under the scratch directory's `canary`, and
//! a relative target keeps at most `MAX_UP` `..` components: a broken extractor then writes
//! inside the scratch directory (where the check finds it), not over the machine's files.
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use agora_fetcher::{FetchUri, FetcherConfig, fetch_all};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
}

#[derive(Debug)]
struct Entry {
    name: String,
    kind: Kind,
    target: String,
    data: Vec<u8>,
    mode: u32,
}

#[derive(Debug, Default)]
struct Fetch {
    zip: bool,
    output_file: Option<String>,
    entries: Vec<Entry>,
}

/// The input, a line per item, fields split by tabs (easy to write seeds for, and to mutate):
/// `tar` or `zip`, optionally `\t<output_file>`, starts an archive; then its entries:
/// `f\t<name>[\t<octal mode>]` a file (its content is its name), `d\t<name>` a directory,
/// `l\t<name>\t<target>` a symlink, `h\t<name>\t<target>` a hard link. Anything else is
/// ignored.
fn parse(text: &str) -> Vec<Fetch> {
    let mut fetches: Vec<Fetch> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let head = fields.next().unwrap_or_default();
        let name = fields.next().unwrap_or_default().to_string();
        let third = fields.next().unwrap_or_default().to_string();
        let kind = match head {
            "tar" | "zip" => {
                fetches.push(Fetch {
                    zip: head == "zip",
                    output_file: (!name.is_empty()).then_some(name),
                    entries: Vec::new(),
                });
                continue;
            }
            "f" => Kind::File,
            "d" => Kind::Dir,
            "l" => Kind::Symlink,
            "h" => Kind::HardLink,
            _ => continue,
        };
        let Some(fetch) = fetches.last_mut() else {
            continue;
        };
        let mode = match kind {
            Kind::File => u32::from_str_radix(&third, 8).unwrap_or(0o644),
            _ => 0o755,
        };
        fetch.entries.push(Entry {
            data: name.as_bytes().to_vec(),
            name,
            kind,
            target: third,
            mode,
        });
    }
    fetches
}

/// Directories between the scratch root and the sandbox.
const DEPTH: usize = 32;
/// The most `..` components a relative link target keeps.
const MAX_UP: usize = 6;

struct Scratch {
    /// The scratch root: everything the fetches may touch is below it.
    root: PathBuf,
    /// The sandbox, `DEPTH` directories below `root`.
    sandbox: PathBuf,
    runtime: tokio::runtime::Runtime,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root = tempfile::tempdir().expect("temp dir").keep();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        fs::create_dir_all(root.join("canary")).expect("canary");
        let mut sandbox = root.clone();
        for i in 0..DEPTH {
            sandbox.push(format!("d{i}"));
        }
        sandbox.push("sandbox");
        Scratch {
            root,
            sandbox,
            runtime,
        }
    })
}

/// A link target the fuzzer chose, made harmless for the machine (see the module's doc).
fn link_target(scratch: &Scratch, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return scratch
            .root
            .join("canary")
            .join(absolute.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned();
    }
    let mut up = 0;
    let kept: PathBuf = Path::new(target)
        .components()
        .filter(|c| {
            if matches!(c, Component::ParentDir) {
                up += 1;
                return up <= MAX_UP;
            }
            true
        })
        .collect();
    kept.to_string_lossy().into_owned()
}

/// Copies `value` into a fixed-size header field (truncating), as a raw archive would hold it.
fn set_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn tar_bytes(scratch: &Scratch, entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (kind, data): (tar::EntryType, &[u8]) = match entry.kind {
            Kind::File => (tar::EntryType::Regular, &entry.data),
            Kind::Dir => (tar::EntryType::Directory, &[]),
            Kind::Symlink => (tar::EntryType::Symlink, &[]),
            Kind::HardLink => (tar::EntryType::Link, &[]),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(entry.mode & 0o7777);
        // Raw bytes: the builder's own checks (`set_path`) would refuse the interesting names.
        let old = header.as_old_mut();
        set_field(&mut old.name, entry.name.as_bytes());
        let target = link_target(scratch, &entry.target);
        set_field(&mut old.linkname, target.as_bytes());
        header.set_cksum();
        if builder.append(&header, data).is_err() {
            break;
        }
    }
    builder.into_inner().unwrap_or_default()
}

fn zip_bytes(scratch: &Scratch, entries: &[Entry]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(entry.mode & 0o7777);
        let written = match entry.kind {
            Kind::File | Kind::HardLink => zip
                .start_file(entry.name.as_str(), options)
                .and_then(|()| zip.write_all(&entry.data).map_err(Into::into)),
            Kind::Dir => zip.add_directory(entry.name.as_str(), options),
            Kind::Symlink => zip.add_symlink(
                entry.name.as_str(),
                link_target(scratch, &entry.target),
                options,
            ),
        };
        if written.is_err() {
            break;
        }
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// Every path under `dir` but `skip` (symlinks are not followed).
fn tree(dir: &Path, skip: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        out.insert(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tree(&path, skip, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fetches = parse(text);
    if fetches.is_empty() || fetches.len() > 3 {
        return;
    }
    let scratch = scratch();
    let root = &scratch.root;
    let sandbox = scratch.sandbox.clone();
    let src = root.join("src");
    let _ = fs::remove_dir_all(&sandbox);
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&sandbox).expect("sandbox");
    fs::create_dir_all(&src).expect("src");

    let mut uris = Vec::new();
    for (i, fetch) in fetches.iter().enumerate() {
        let (name, bytes) = if fetch.zip {
            (format!("{i}.zip"), zip_bytes(scratch, &fetch.entries))
        } else {
            (format!("{i}.tar"), tar_bytes(scratch, &fetch.entries))
        };
        let path = src.join(name);
        fs::write(&path, bytes).expect("archive");
        let mut uri = FetchUri::new(format!("file://{}", path.display()));
        uri.output_file = fetch.output_file.clone();
        uris.push(uri);
    }
    let mut before = BTreeSet::new();
    tree(root, &sandbox, &mut before);

    let config = FetcherConfig {
        max_extract_bytes: 1 << 20,
        ..FetcherConfig::default()
    };
    let mut log = Vec::new();
    let landed = scratch
        .runtime
        .block_on(fetch_all(&uris, &sandbox, &config, &mut log));
    if let Ok(landed) = landed {
        for path in landed {
            assert!(
                path.starts_with(&sandbox),
                "landed outside: {}",
                path.display()
            );
        }
    }

    let mut after = BTreeSet::new();
    tree(root, &sandbox, &mut after);
    let added: Vec<_> = after.difference(&before).collect();
    assert!(added.is_empty(), "written outside the sandbox: {added:?}");
    let canary = fs::read_dir(root.join("canary"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(canary, 0, "written into the canary directory");
});
