//! The agent's files API (`/files/browse`, `/files/read`, `/files/download`),
//! Mesos' semantics, confined to the sandboxes under `<work_dir>/slaves/`.
//!
//! A path is either a real path inside a sandbox
//! (`<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<run>[/...]`)
//! or Mesos' virtual path `/frameworks/<fw>/executors/<ex>/runs/<run|latest>[/...]`.
//! `/files/browse` and `/files/read` also answer JSONP (`?jsonp=<callback>`), as
//! Mesos' web UI reads them.
//!
//! Confinement, in order: the path is decoded once (by the query parser,
//! never again here); any `..` component is refused (403); the sandbox the
//! path names is found lexically; both it and the target are canonicalized
//! and the target must stay inside the sandbox (a symlink out of it: 403);
//! and what is finally opened is checked again through `/proc/self/fd`, so a
//! directory swapped for a symlink between the check and the open is caught.
//! Files are opened without following a final symlink and without blocking
//! (a FIFO in a sandbox cannot hang a request); only regular files are read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests;

/// The most one `/files/read` returns.
pub const MAX_READ_LENGTH: u64 = 1024 * 1024;
/// Entries one `/files/browse` lists at most (a bound, not a page).
pub const MAX_BROWSE_ENTRIES: usize = 100_000;
const DOWNLOAD_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl FilesError {
    pub fn status(&self) -> StatusCode {
        match self {
            FilesError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FilesError::Forbidden(_) => StatusCode::FORBIDDEN,
            FilesError::NotFound(_) => StatusCode::NOT_FOUND,
            FilesError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An I/O error on `path`: missing things are 404, refused ones 403.
    fn io(path: &Path, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match source.kind() {
            ErrorKind::NotFound | ErrorKind::NotADirectory => {
                FilesError::NotFound(format!("no such file or directory: {}", path.display()))
            }
            ErrorKind::PermissionDenied => {
                FilesError::Forbidden(format!("permission denied: {}", path.display()))
            }
            // ELOOP: a symlink where none may be (opened with O_NOFOLLOW).
            _ if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                FilesError::Forbidden(format!("{} is a symlink", path.display()))
            }
            _ => FilesError::Io {
                path: path.display().to_string(),
                source,
            },
        }
    }
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        if let FilesError::Io { .. } = &self {
            tracing::warn!(error = %self, "files api i/o error");
        }
        (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// One entry of `/files/browse`, Mesos' `FileInfo` JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub nlink: u64,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// As `ls -l` shows it: `-rw-r--r--`, `drwxr-x---`, `lrwxrwxrwx`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
}

/// The answer of `/files/read`: `data` starts at byte `offset`. `length` is
/// how many bytes of the file `data` stands for (it can differ from the
/// length of `data` once invalid UTF-8 is replaced): the next read starts at
/// `offset + length`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadChunk {
    pub data: String,
    pub offset: u64,
    pub length: u64,
}

/// A path resolved inside one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The path as the caller named it, normalized; entries listed under it
    /// are named `<display>/<name>`, in the same (real or virtual) namespace.
    pub display: String,
    /// The sandbox, canonical.
    pub sandbox: PathBuf,
    /// The target, canonical, inside `sandbox`.
    pub target: PathBuf,
}

/// The sandboxes of one agent's work dir.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    /// `<work_dir>/slaves`, absolute (not canonicalized: it may not exist yet).
    slaves: PathBuf,
}

/// Components of a sandbox below `slaves/`: `<agent>/frameworks/<fw>/executors/<ex>/runs/<run>`.
const SANDBOX_DEPTH: usize = 7;

fn is_sandbox_shape(parts: &[&str]) -> bool {
    parts.len() >= SANDBOX_DEPTH
        && parts[1] == "frameworks"
        && parts[3] == "executors"
        && parts[5] == "runs"
}

/// Splits an absolute path into its components, refusing `..` anywhere.
fn components(path: &str) -> Result<Vec<&str>, FilesError> {
    if path.is_empty() {
        return Err(FilesError::BadRequest(
            "the 'path' parameter is required".into(),
        ));
    }
    if path.contains('\0') {
        return Err(FilesError::BadRequest("the path holds a NUL byte".into()));
    }
    if !path.starts_with('/') {
        return Err(FilesError::BadRequest(
            "the path must be absolute: a sandbox path or /frameworks/<id>/executors/<id>/runs/latest"
                .into(),
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(FilesError::Forbidden(
                    "'..' is not allowed in a path".into(),
                ));
            }
            part => parts.push(part),
        }
    }
    Ok(parts)
}

fn canonical(path: &Path) -> Result<PathBuf, FilesError> {
    std::fs::canonicalize(path).map_err(|e| FilesError::io(path, e))
}

/// When a run directory was made: its birth time where the file system
/// keeps one, else its modification time.
fn run_started(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    meta.created().or_else(|_| meta.modified()).ok()
}

impl Sandboxes {
    pub fn new(work_dir: &Path) -> Self {
        let slaves = std::path::absolute(work_dir.join("slaves"))
            .unwrap_or_else(|_| work_dir.join("slaves"));
        Sandboxes { slaves }
    }

    /// Resolves `path` (decoded once already) to a file or directory inside a sandbox.
    pub fn resolve(&self, path: &str) -> Result<Resolved, FilesError> {
        let parts = components(path)?;
        let slaves = canonical(&self.slaves)?;
        let (display, sandbox, rest) = if parts.first() == Some(&"frameworks") {
            let (sandbox, rest) = self.virtual_sandbox(&slaves, &parts)?;
            (format!("/{}", parts.join("/")), sandbox, rest)
        } else {
            let requested: PathBuf = std::iter::once("/").chain(parts.iter().copied()).collect();
            let relative = requested
                .strip_prefix(&self.slaves)
                .or_else(|_| requested.strip_prefix(&slaves))
                .map_err(|_| {
                    FilesError::Forbidden(format!(
                        "{} is outside the agent's sandboxes",
                        requested.display()
                    ))
                })?;
            let below: Vec<&str> = relative.iter().filter_map(|c| c.to_str()).collect();
            if below.len() != relative.iter().count() || !is_sandbox_shape(&below) {
                return Err(FilesError::Forbidden(format!(
                    "{} is not inside a sandbox",
                    requested.display()
                )));
            }
            let sandbox: PathBuf = below[..SANDBOX_DEPTH].iter().collect();
            let rest: Vec<String> = below[SANDBOX_DEPTH..]
                .iter()
                .map(|s| s.to_string())
                .collect();
            (requested.display().to_string(), slaves.join(sandbox), rest)
        };
        let sandbox = canonical(&sandbox)?;
        // The sandbox itself must not lead elsewhere (a `runs/<x>` symlink out).
        let inside = sandbox
            .strip_prefix(&slaves)
            .ok()
            .map(|rel| rel.iter().filter_map(|c| c.to_str()).collect::<Vec<_>>())
            .is_some_and(|rel| rel.len() == SANDBOX_DEPTH && is_sandbox_shape(&rel));
        if !inside {
            return Err(FilesError::Forbidden(format!(
                "{path} does not lead to a sandbox"
            )));
        }
        let target = canonical(&sandbox.join(rest.iter().collect::<PathBuf>()))?;
        if !target.starts_with(&sandbox) {
            return Err(FilesError::Forbidden(format!(
                "{path} leads out of its sandbox"
            )));
        }
        Ok(Resolved {
            display: display.trim_end_matches('/').to_string(),
            sandbox,
            target,
        })
    }

    /// `/frameworks/<fw>/executors/<ex>/runs/<run|latest>[/rest]`: the run
    /// directory (lexical, under the canonical `slaves`) and the rest. The
    /// framework id names the agent dir it is under (framework ids are
    /// unique across agents' ids: they hold the master's id).
    fn virtual_sandbox(
        &self,
        slaves: &Path,
        parts: &[&str],
    ) -> Result<(PathBuf, Vec<String>), FilesError> {
        if parts.len() < 6 || parts[2] != "executors" || parts[4] != "runs" {
            return Err(FilesError::NotFound(
                "a virtual path is /frameworks/<id>/executors/<id>/runs/<id|latest>[/...]".into(),
            ));
        }
        let (framework, executor, run) = (parts[1], parts[3], parts[5]);
        let rest = parts[6..].iter().map(|s| s.to_string()).collect();
        let agents = std::fs::read_dir(slaves).map_err(|e| FilesError::io(slaves, e))?;
        let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
        for agent in agents.flatten().take(MAX_BROWSE_ENTRIES) {
            let runs = agent
                .path()
                .join("frameworks")
                .join(framework)
                .join("executors")
                .join(executor)
                .join("runs");
            if run != "latest" {
                let dir = runs.join(run);
                if dir.is_dir() {
                    return Ok((dir, rest));
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&runs) else {
                continue;
            };
            for entry in entries.flatten().take(MAX_BROWSE_ENTRIES) {
                let dir = entry.path();
                if entry.file_name() == "latest" || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let started = run_started(&dir).unwrap_or(std::time::UNIX_EPOCH);
                // Newest first; ties broken by name so the choice is stable.
                if best
                    .as_ref()
                    .is_none_or(|(at, path)| (started, &dir) > (*at, path))
                {
                    best = Some((started, dir));
                }
            }
        }
        match best {
            Some((_, dir)) => Ok((dir, rest)),
            None => Err(FilesError::NotFound(format!(
                "no run of executor {executor} of framework {framework} on this agent"
            ))),
        }
    }

    /// Opens what `resolved` names without following a final symlink or
    /// blocking, then checks what was opened is still inside its sandbox.
    fn open_checked(resolved: &Resolved, directory: bool) -> Result<File, FilesError> {
        let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if directory {
            flags |= OFlags::DIRECTORY;
        }
        let fd = rustix::fs::open(&resolved.target, flags, Mode::empty())
            .map_err(|e| FilesError::io(&resolved.target, e.into()))?;
        let file = File::from(fd);
        if let Ok(opened) = std::fs::read_link(proc_fd(&file))
            && !opened.starts_with(&resolved.sandbox)
        {
            return Err(FilesError::Forbidden(format!(
                "{} leads out of its sandbox",
                resolved.display
            )));
        }
        Ok(file)
    }

    /// `/files/browse`: a directory's entries (or a file's own entry), sorted by path.
    pub fn browse(&self, path: &str) -> Result<Vec<FileInfo>, FilesError> {
        let resolved = self.resolve(path)?;
        let meta = std::fs::symlink_metadata(&resolved.target)
            .map_err(|e| FilesError::io(&resolved.target, e))?;
        if !meta.is_dir() {
            return Ok(vec![file_info(resolved.display.clone(), &meta)]);
        }
        let dir = Self::open_checked(&resolved, true)?;
        // List through the descriptor checked above, not the path again.
        let listed = if Path::new("/proc/self/fd").is_dir() {
            proc_fd(&dir)
        } else {
            resolved.target.clone()
        };
        let entries = std::fs::read_dir(&listed).map_err(|e| FilesError::io(&listed, e))?;
        let mut infos = Vec::new();
        for entry in entries.flatten().take(MAX_BROWSE_ENTRIES) {
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            infos.push(file_info(format!("{}/{name}", resolved.display), &meta));
        }
        infos.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(infos)
    }

    /// Opens a regular file for reading; directories and other special files are refused.
    fn open_regular(&self, path: &str) -> Result<(Resolved, File, u64), FilesError> {
        let resolved = self.resolve(path)?;
        if resolved.target.is_dir() {
            return Err(FilesError::BadRequest(format!(
                "{} is a directory",
                resolved.display
            )));
        }
        let file = Self::open_checked(&resolved, false)?;
        let meta = file
            .metadata()
            .map_err(|e| FilesError::io(&resolved.target, e))?;
        if !meta.is_file() {
            return Err(FilesError::BadRequest(format!(
                "{} is not a regular file",
                resolved.display
            )));
        }
        Ok((resolved, file, meta.len()))
    }

    /// `/files/read`. `offset` -1, or neither `offset` nor `length`: no data,
    /// and the file's size as the offset (where a viewer following the end
    /// starts). `length` -1 or absent: up to [`MAX_READ_LENGTH`].
    pub fn read(
        &self,
        path: &str,
        offset: Option<i64>,
        length: Option<i64>,
    ) -> Result<ReadChunk, FilesError> {
        if offset.is_some_and(|o| o < -1) {
            return Err(FilesError::BadRequest("offset must be >= -1".into()));
        }
        if length.is_some_and(|l| l < -1) {
            return Err(FilesError::BadRequest("length must be >= -1".into()));
        }
        let (resolved, mut file, size) = self.open_regular(path)?;
        let offset = match (offset, length) {
            (Some(-1), _) | (None, None) => {
                return Ok(ReadChunk {
                    data: String::new(),
                    offset: size,
                    length: 0,
                });
            }
            (Some(offset), _) => offset.unsigned_abs(),
            (None, Some(_)) => 0,
        };
        let length = match length {
            Some(length) if length >= 0 => length.unsigned_abs().min(MAX_READ_LENGTH),
            _ => MAX_READ_LENGTH,
        };
        if offset >= size || length == 0 {
            return Ok(ReadChunk {
                data: String::new(),
                offset,
                length: 0,
            });
        }
        let io = |e| FilesError::io(&resolved.target, e);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(length.min(size - offset))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let (data, consumed) = text(bytes);
        Ok(ReadChunk {
            data,
            offset,
            length: consumed as u64,
        })
    }

    /// `/files/download`: the open file, its size, and its name.
    pub fn open_download(&self, path: &str) -> Result<(File, u64, String), FilesError> {
        let (resolved, file, size) = self.open_regular(path)?;
        let name = resolved
            .target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".into());
        Ok((file, size, name))
    }
}

fn proc_fd(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Bytes as JSON text, and how many of them it stands for. A multi-byte
/// character cut by the end of the chunk is left for the next read; other
/// invalid bytes become U+FFFD.
fn text(bytes: Vec<u8>) -> (String, usize) {
    match String::from_utf8(bytes) {
        Ok(text) => {
            let n = text.len();
            (text, n)
        }
        Err(e) => {
            let utf8 = e.utf8_error();
            let bytes = e.into_bytes();
            let valid = utf8.valid_up_to();
            if utf8.error_len().is_none() && valid > 0 {
                let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
                (text, valid)
            } else {
                (String::from_utf8_lossy(&bytes).into_owned(), bytes.len())
            }
        }
    }
}

fn file_info(path: String, meta: &std::fs::Metadata) -> FileInfo {
    FileInfo {
        path,
        nlink: meta.nlink(),
        size: meta.size(),
        mtime: meta.mtime(),
        mode: mode_string(meta),
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

/// `ls -l`'s mode column.
pub fn mode_string(meta: &std::fs::Metadata) -> String {
    let kind = meta.file_type();
    let first = if kind.is_dir() {
        'd'
    } else if kind.is_symlink() {
        'l'
    } else if kind.is_char_device() {
        'c'
    } else if kind.is_block_device() {
        'b'
    } else if kind.is_fifo() {
        'p'
    } else if kind.is_socket() {
        's'
    } else {
        '-'
    };
    permissions_string(first, meta.mode())
}

/// `rwx` triplets of `mode` after the type character, with setuid, setgid and sticky bits.
pub fn permissions_string(first: char, mode: u32) -> String {
    let mut out = String::with_capacity(10);
    out.push(first);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, (bit, set_exec, set_no_exec)) in special.into_iter().enumerate() {
        let shift = 6 - 3 * i;
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        out.push(match (mode & bit != 0, exec) {
            (true, true) => set_exec,
            (true, false) => set_no_exec,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The files API routes, for the agent's HTTP router.
pub fn router(work_dir: &Path) -> Router {
    Router::new()
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
        .route("/files/download", get(download))
        .with_state(Arc::new(Sandboxes::new(work_dir)))
}

fn params(query: Params) -> Result<HashMap<String, String>, FilesError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| FilesError::BadRequest(format!("invalid query: {e}")))
}

fn path_param(query: &HashMap<String, String>) -> Result<String, FilesError> {
    query
        .get("path")
        .cloned()
        .ok_or_else(|| FilesError::BadRequest("the 'path' parameter is required".into()))
}

/// An optional integer parameter; anything else present is a 400.
pub fn int_param(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, FilesError> {
    match query.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| FilesError::BadRequest(format!("'{name}' must be an integer"))),
    }
}

/// Runs blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(FilesError::Io {
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// `value` as JSON, or as JSONP when the query has `jsonp` (Mesos' web UI
/// browses sandboxes that way).
fn json_reply(value: &impl Serialize, query: &HashMap<String, String>) -> Response {
    match serde_json::to_vec(value) {
        Ok(json) => {
            agora_net::jsonp::respond(Bytes::from(json), query.get("jsonp").map(String::as_str))
        }
        Err(e) => FilesError::Io {
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        }
        .into_response(),
    }
}

async fn browse(State(sandboxes): State<Arc<Sandboxes>>, query: Params) -> Response {
    let query = match params(query) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let path = path_param(&query)?;
        blocking(move || sandboxes.browse(&path)).await
    }
    .await;
    match result {
        Ok(infos) => json_reply(&infos, &query),
        Err(e) => e.into_response(),
    }
}

async fn read(State(sandboxes): State<Arc<Sandboxes>>, query: Params) -> Response {
    let query = match params(query) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let path = path_param(&query)?;
        let offset = int_param(&query, "offset")?;
        let length = int_param(&query, "length")?;
        blocking(move || sandboxes.read(&path, offset, length)).await
    }
    .await;
    match result {
        Ok(chunk) => json_reply(&chunk, &query),
        Err(e) => e.into_response(),
    }
}

async fn download(State(sandboxes): State<Arc<Sandboxes>>, query: Params) -> Response {
    let result = async {
        let path = path_param(&params(query)?)?;
        blocking(move || sandboxes.open_download(&path)).await
    }
    .await;
    let (file, size, name) = match result {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    // The file as it was when opened: `size` bytes, even if it grows meanwhile.
    let reader = tokio::fs::File::from_std(file).take(size);
    // Ends at the end of the file, or after the first error (the client
    // then sees a body shorter than its Content-Length).
    let stream = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buffer = vec![0u8; DOWNLOAD_CHUNK];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(buffer)),
                    Some(reader),
                ))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let safe_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
