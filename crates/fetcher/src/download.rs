//! Moving the bytes of one source into one local file: HTTP(S) with connect, stall and size
//! limits, or a copy of a local file.
//!
//! Callers always pass a temporary path and rename it into place afterwards, so a failed
//! transfer never leaves a half-written file under the final name.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use std::os::unix::fs::PermissionsExt as _;

use crate::as_user;
use crate::uri::Source;
use crate::{FetchError, FetchUser, FetcherConfig};

/// Connect timeout for HTTP(S), as in the brief (Mesos relies on curl's default).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Write buffer for downloads: large enough that the blocking file writes stay few.
const WRITE_BUFFER: usize = 1 << 20;

/// The HTTP client of one `fetch_all` call, built on its first download: building one loads
/// the system's root certificates, which a cache hit or a local copy should not pay for.
#[derive(Default)]
pub(crate) struct LazyClient(Option<reqwest::Client>);

impl LazyClient {
    fn get(&mut self, uri: &str) -> Result<&reqwest::Client, FetchError> {
        if self.0.is_none() {
            self.0 = Some(client(uri)?);
        }
        match &self.0 {
            Some(client) => Ok(client),
            None => Err(FetchError::Transfer {
                uri: uri.to_owned(),
                cause: "no http client".to_owned(),
            }),
        }
    }
}

fn client(uri: &str) -> Result<reqwest::Client, FetchError> {
    // One process-wide crypto provider (ring: no C toolchain beyond gcc, no aws-lc); installing
    // it twice is harmless, and if the embedding binary installed another one first, reqwest
    // uses that one. Server certificates are checked against the system's roots through
    // reqwest's rustls-platform-verifier (on Linux: the distribution's CA bundle).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| FetchError::Transfer {
            uri: uri.to_owned(),
            cause: format!("building http client: {}", cause_of(&e)),
        })
}

/// Copies `source` into `dest` (created or truncated); returns the number of bytes written.
pub(crate) async fn transfer(
    uri: &str,
    source: &Source,
    dest: &Path,
    client: &mut LazyClient,
    config: &FetcherConfig,
    user: Option<FetchUser>,
    sync: bool,
) -> Result<u64, FetchError> {
    match source {
        Source::Http(url) => download(uri, url, dest, client.get(uri)?, config, sync).await,
        Source::Local(path) => copy_local(uri, path, dest, config, user, sync).await,
    }
}

async fn download(
    uri: &str,
    url: &reqwest::Url,
    dest: &Path,
    client: &reqwest::Client,
    config: &FetcherConfig,
    sync: bool,
) -> Result<u64, FetchError> {
    let stall = config.stall_timeout;
    let stalled = || FetchError::Stalled {
        uri: uri.to_owned(),
        after: stall,
    };
    let transfer_error = |e: reqwest::Error| FetchError::Transfer {
        uri: uri.to_owned(),
        cause: cause_of(&e),
    };
    let mut response = tokio::time::timeout(stall, client.get(url.clone()).send())
        .await
        .map_err(|_| stalled())?
        .map_err(transfer_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::HttpStatus {
            uri: uri.to_owned(),
            status: status.as_u16(),
        });
    }
    let too_large = |limit| FetchError::TooLarge {
        uri: uri.to_owned(),
        limit,
    };
    if let (Some(limit), Some(len)) = (config.max_download_bytes, response.content_length())
        && len > limit
    {
        return Err(too_large(limit));
    }
    let file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| FetchError::io(uri, "creating", dest, e))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut total: u64 = 0;
    // Each chunk must arrive within the stall timeout; the loop ends when the body does.
    while let Some(chunk) = tokio::time::timeout(stall, response.chunk())
        .await
        .map_err(|_| stalled())?
        .map_err(transfer_error)?
    {
        total = total.saturating_add(chunk.len() as u64);
        if let Some(limit) = config.max_download_bytes
            && total > limit
        {
            return Err(too_large(limit));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| FetchError::io(uri, "writing", dest, e))?;
    }
    finish(uri, dest, out, sync).await?;
    Ok(total)
}

async fn finish(
    uri: &str,
    dest: &Path,
    mut out: tokio::io::BufWriter<tokio::fs::File>,
    sync: bool,
) -> Result<(), FetchError> {
    out.flush()
        .await
        .map_err(|e| FetchError::io(uri, "writing", dest, e))?;
    if sync {
        out.get_ref()
            .sync_all()
            .await
            .map_err(|e| FetchError::io(uri, "syncing", dest, e))?;
    }
    Ok(())
}

/// Copies a local file, opened with `user`'s rights (`as_user`): a file the
/// task's user may not read is not fetched. The copy is a new file with the
/// source's permission bits but never its setuid, setgid or sticky bits (a
/// setuid-root program copied by root would stay one).
async fn copy_local(
    uri: &str,
    path: &Path,
    dest: &Path,
    config: &FetcherConfig,
    user: Option<FetchUser>,
    sync: bool,
) -> Result<u64, FetchError> {
    let (src, dst) = (path.to_owned(), dest.to_owned());
    let limit = config.max_download_bytes;
    let uri_owned = uri.to_owned();
    tokio::task::spawn_blocking(move || -> Result<u64, FetchError> {
        let uri = uri_owned.as_str();
        let mut from =
            as_user::open(&src, user).map_err(|e| FetchError::io(uri, "reading", &src, e))?;
        let meta = from
            .metadata()
            .map_err(|e| FetchError::io(uri, "reading", &src, e))?;
        if !meta.is_file() {
            return Err(FetchError::invalid(
                uri,
                format!("{} is not a regular file", src.display()),
            ));
        }
        if let Some(limit) = limit
            && meta.len() > limit
        {
            return Err(FetchError::TooLarge {
                uri: uri.to_owned(),
                limit,
            });
        }
        let mut copy = || -> std::io::Result<u64> {
            let mut to = std::fs::File::create(&dst)?;
            let n = std::io::copy(&mut from, &mut to)?;
            to.set_permissions(std::fs::Permissions::from_mode(
                meta.permissions().mode() & crate::extract::KEPT_MODE_BITS,
            ))?;
            if sync {
                to.sync_all()?;
            }
            Ok(n)
        };
        copy().map_err(|e| FetchError::io(uri, "copying to", &dst, e))
    })
    .await
    .map_err(|e| FetchError::io(uri, "copying to", dest, std::io::Error::other(e)))?
}

/// A short cause for a transfer error: the innermost error of the chain, which is where the
/// useful words are (`connection refused`, a TLS alert, a DNS failure).
pub(crate) fn cause_of(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    if let Some(io) = innermost.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
            std::io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
            _ => {}
        }
    }
    if e.is_timeout() {
        return format!("timed out ({innermost})");
    }
    if e.is_connect() {
        return format!("connect failed: {innermost}");
    }
    innermost.to_string()
}
