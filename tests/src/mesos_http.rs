//! A raw HTTP/1.1 client for Mesos' v1 HTTP APIs, for tests that must see
//! what travels on the wire: status lines, headers, and each chunk of a
//! chunked RecordIO stream as it arrives (Mesos clients such as pymesos and
//! mesos-framework depend on one record per chunk). It stays on a bare socket
//! rather than `reqwest`, whose bodies hide where chunks begin and end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// One response: status, headers (names lower-cased), and either the whole
/// body or, for a chunked stream, the connection to read chunks from.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    length: Option<usize>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body (for non-streaming answers).
    pub fn body(mut self) -> anyhow::Result<Vec<u8>> {
        if self.chunked {
            let mut all = Vec::new();
            while let Some(chunk) = self.next_chunk()? {
                all.extend(chunk);
            }
            return Ok(all);
        }
        let mut body = Vec::new();
        match self.length {
            Some(n) => {
                body.resize(n, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok(body)
    }

    pub fn text(self) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&self.body()?).into_owned())
    }

    /// The next chunk of a chunked body, exactly as framed on the wire;
    /// `None` at the last (empty) chunk.
    pub fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if !self.chunked {
            bail!("the response is not chunked");
        }
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size_text = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size line {line:?}"))?;
        let mut data = vec![0; size];
        self.reader.read_exact(&mut data)?;
        let mut crlf = [0; 2];
        self.reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            bail!("chunk not followed by CRLF");
        }
        Ok((size > 0).then_some(data))
    }

    /// The next RecordIO record, checking that it fills its chunk exactly:
    /// `<decimal length>\n<length bytes>`.
    pub fn next_record(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(chunk) = self.next_chunk()? else {
            return Ok(None);
        };
        let newline = chunk
            .iter()
            .position(|b| *b == b'\n')
            .context("record without a length line")?;
        let length: usize = std::str::from_utf8(&chunk[..newline])?.parse()?;
        let record = chunk[newline + 1..].to_vec();
        if record.len() != length {
            bail!(
                "a chunk must hold exactly one record: header says {length} bytes, chunk holds {}",
                record.len()
            );
        }
        Ok(Some(record))
    }
}

/// Sends one request on a new connection and reads the status and headers.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    Ok(Response {
        status,
        headers,
        reader,
        chunked,
        length,
    })
}

/// A JSON POST to a Mesos API endpoint, with `Mesos-Stream-Id` when given.
pub fn post_json(
    port: u16,
    path: &str,
    stream_id: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<Response> {
    let body = serde_json::to_vec(body)?;
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    if let Some(id) = stream_id {
        headers.push(("Mesos-Stream-Id", id));
    }
    request(port, "POST", path, &headers, &body)
}
