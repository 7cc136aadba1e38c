//! A tiny HTTP server for the fetcher's tests and benchmark, and archive builders.
//!
//! Routes: `/files/<name>` serves a registered body with a `Content-Length`;
//! `/chunked/<name>` streams it without one; `/stall/<name>` sends headers and the first
//! 16 bytes, then nothing; `/slow/<name>` sends it in 8 parts 50 ms apart (a slow network, so
//! that concurrent fetchers really overlap). Every request is counted per path.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Default)]
struct State {
    files: Arc<Mutex<HashMap<String, Bytes>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

pub struct Server {
    pub addr: SocketAddr,
    state: State,
}

impl Server {
    pub async fn start() -> Server {
        let state = State::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, state }
    }

    pub fn add(&self, name: &str, body: Vec<u8>) {
        self.state
            .files
            .lock()
            .expect("files lock")
            .insert(name.to_owned(), Bytes::from(body));
    }

    /// `http://127.0.0.1:<port>/files/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/files/{name}", self.addr)
    }

    pub fn url_at(&self, route: &str, name: &str) -> String {
        format!("http://{}/{route}/{name}", self.addr)
    }

    /// Requests seen for `/files/<name>`.
    pub fn count(&self, name: &str) -> usize {
        self.count_path(&format!("/files/{name}"))
    }

    pub fn count_path(&self, path: &str) -> usize {
        self.state
            .counts
            .lock()
            .expect("counts lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve(axum::extract::State(state): axum::extract::State<State>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    *state
        .counts
        .lock()
        .expect("counts lock")
        .entry(path.clone())
        .or_default() += 1;
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (route, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(body) = state.files.lock().expect("files lock").get(name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match route {
        "files" => body.into_response(),
        "chunked" => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(4096)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures::stream::iter(chunks)).into_response()
        }
        "slow" => {
            let part = body.len().div_ceil(8).max(1);
            let stream = futures::stream::unfold(0usize, move |at| {
                let body = body.clone();
                async move {
                    if at >= body.len() {
                        return None;
                    }
                    if at > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    let end = (at + part).min(body.len());
                    Some((Ok::<_, std::io::Error>(body.slice(at..end)), end))
                }
            });
            Body::from_stream(stream).into_response()
        }
        "stall" => {
            let first = body.slice(..body.len().min(16));
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(first)])
                .chain(futures::stream::pending());
            Body::from_stream(stream).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

use futures::StreamExt as _;

/// One file to put in an archive.
pub struct Entry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, entry.path, entry.data)
            .expect("append tar entry");
    }
    builder.into_inner().expect("finish tar")
}

/// A tar with a single entry whose name is written raw, bypassing the builder's checks.
pub fn tar_raw_name(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    {
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).expect("append raw entry");
    builder.into_inner().expect("finish tar")
}

/// A tar holding one symlink `name -> target`.
pub fn tar_symlink(name: &str, target: &Path) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_link(&mut header, name, target)
        .expect("append symlink");
    builder.into_inner().expect("finish tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip finish")
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    enc.write_all(data).expect("bzip2");
    enc.finish().expect("bzip2 finish")
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(data), &mut out).expect("xz");
    out
}

pub fn zip(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(entry.mode);
        writer.start_file(entry.path, options).expect("zip entry");
        writer.write_all(entry.data).expect("zip data");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// Pseudo-random bytes that do not compress to nothing (xorshift; deterministic).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The modification time every entry of [`package`] carries.
pub const PACKAGE_MTIME: u64 = 1_700_000_000;

/// A package as a framework ships its executor: `pkg/` with a script (0755), a data file
/// (0640), a nested directory, and a symlink `pkg/current -> bin`, every entry dated
/// [`PACKAGE_MTIME`].
pub fn package(marker: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(PACKAGE_MTIME);
        match link {
            Some(target) => builder
                .append_link(&mut header, path, target)
                .expect("append link"),
            None => builder
                .append_data(&mut header, path, data)
                .expect("append entry"),
        }
    };
    add("pkg/", tar::EntryType::Directory, 0o755, b"", None);
    add("pkg/bin/", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "pkg/bin/run",
        tar::EntryType::Regular,
        0o755,
        b"#!/bin/sh\necho run\n",
        None,
    );
    add("pkg/lib/deep/", tar::EntryType::Directory, 0o750, b"", None);
    add(
        "pkg/lib/deep/marker",
        tar::EntryType::Regular,
        0o640,
        marker,
        None,
    );
    add(
        "pkg/current",
        tar::EntryType::Symlink,
        0o777,
        b"",
        Some("bin"),
    );
    gzip(&builder.into_inner().expect("finish tar"))
}
