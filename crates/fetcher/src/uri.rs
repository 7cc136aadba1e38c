//! Turning a URI into a source to read from and a path in the sandbox to write to.
//!
//! Invariant: every path this module hands out for the sandbox is the sandbox joined with
//! plain (`Normal`) components only, so nothing is written outside it by construction.

use std::path::{Component, Path, PathBuf};

use crate::FetchError;

/// Where the bytes of a URI come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `http://` or `https://`.
    Http(reqwest::Url),
    /// `file://` or a plain path, already made absolute.
    Local(PathBuf),
}

/// Parses `uri`, resolving relative plain paths against `frameworks_home`.
pub(crate) fn parse(uri: &str, frameworks_home: Option<&Path>) -> Result<Source, FetchError> {
    let trimmed = uri.trim();
    if trimmed.is_empty() {
        return Err(FetchError::invalid(uri, "empty uri"));
    }
    if let Some((scheme, rest)) = trimmed.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => reqwest::Url::parse(trimmed)
                .map(Source::Http)
                .map_err(|e| FetchError::invalid(uri, format!("invalid url: {e}"))),
            // `file:///abs/path`; a host part (`file://host/path`) is not supported.
            "file" if rest.starts_with('/') => Ok(Source::Local(PathBuf::from(rest))),
            "file" => Err(FetchError::invalid(
                uri,
                "file uri must hold an absolute path",
            )),
            _ => Err(FetchError::UnsupportedScheme {
                uri: uri.to_owned(),
                scheme: scheme.to_owned(),
            }),
        };
    }
    let path = Path::new(trimmed);
    if path.is_absolute() {
        return Ok(Source::Local(path.to_owned()));
    }
    match frameworks_home {
        Some(home) => Ok(Source::Local(home.join(path))),
        None => Err(FetchError::invalid(
            uri,
            "relative path and no frameworks home configured",
        )),
    }
}

/// The file name a source lands under when no `output_file` is given.
pub(crate) fn basename(uri: &str, source: &Source) -> Result<String, FetchError> {
    let name = match source {
        Source::Http(url) => url
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or("")
            .to_owned(),
        Source::Local(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    check_file_name(&name).map_err(|reason| FetchError::invalid(uri, reason))?;
    Ok(name)
}

/// A file name that is one plain path component.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("no usable file name in uri (got {name:?})"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!("file name {name:?} contains '/' or NUL"));
    }
    Ok(())
}

/// The path inside `sandbox` for `output_file`: relative, plain components only.
pub(crate) fn output_path(
    uri: &str,
    sandbox: &Path,
    output_file: &str,
) -> Result<PathBuf, FetchError> {
    let rel = Path::new(output_file);
    if output_file.is_empty() || output_file.contains('\0') {
        return Err(FetchError::invalid(uri, "empty or invalid output_file"));
    }
    let mut out = sandbox.to_path_buf();
    let mut pushed = false;
    for component in rel.components() {
        match component {
            Component::Normal(part) => {
                out.push(part);
                pushed = true;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(FetchError::invalid(
                    uri,
                    format!("output_file {output_file:?} contains '..'"),
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(FetchError::invalid(
                    uri,
                    format!("output_file {output_file:?} must be a relative path"),
                ));
            }
        }
    }
    if !pushed || output_file.ends_with('/') {
        return Err(FetchError::invalid(
            uri,
            format!("output_file {output_file:?} names no file"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert!(matches!(parse("http://h/a.tgz", None), Ok(Source::Http(_))));
        assert!(matches!(
            parse("HTTPS://h/a.tgz", None),
            Ok(Source::Http(_))
        ));
        assert_eq!(
            parse("file:///srv/x", None).expect("file uri"),
            Source::Local(PathBuf::from("/srv/x"))
        );
        assert_eq!(
            parse("/srv/x", None).expect("plain path"),
            Source::Local(PathBuf::from("/srv/x"))
        );
        assert!(matches!(
            parse("hdfs://nn/x", None),
            Err(FetchError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse("file://host/x", None),
            Err(FetchError::InvalidUri { .. })
        ));
        assert!(matches!(
            parse("rel/x", None),
            Err(FetchError::InvalidUri { .. })
        ));
        assert_eq!(
            parse("rel/x", Some(Path::new("/home"))).expect("resolved"),
            Source::Local(PathBuf::from("/home/rel/x"))
        );
        assert!(parse("  ", None).is_err());
    }

    #[test]
    fn basenames() {
        let name = |u: &str| basename(u, &parse(u, None).expect("parses"));
        assert_eq!(name("http://h/a/b.tgz?x=1#f").expect("name"), "b.tgz");
        assert_eq!(name("/srv/a/run.sh").expect("name"), "run.sh");
        assert!(name("http://h/").is_err());
        assert!(name("http://h").is_err());
        assert!(name("http://h/a/..").is_err());
        assert!(name("/").is_err());
    }

    #[test]
    fn output_paths() {
        let sb = Path::new("/sb");
        assert_eq!(
            output_path("u", sb, "a/b.txt").expect("ok"),
            PathBuf::from("/sb/a/b.txt")
        );
        assert_eq!(
            output_path("u", sb, "./b").expect("ok"),
            PathBuf::from("/sb/b")
        );
        for bad in ["../x", "a/../../x", "/etc/passwd", "", ".", "a/"] {
            assert!(output_path("u", sb, bad).is_err(), "{bad} accepted");
        }
    }
}
