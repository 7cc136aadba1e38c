//! What a web page on another site can make an operator's browser do to a
//! cluster: nothing that changes it, and no reading through JSONP or CORS.
//! Real master and agent; the requests are the ones a browser would send
//! (its `Origin` and `Sec-Fetch-Site` headers), made from the test.

use std::time::Duration;

use agora_e2e::{Cluster, get_json, http_raw, http_request, wait_for};

const QUOTA: &str = r#"{"role":"eng","guarantee":"cpus:0.5"}"#;

fn post(port: u16, path: &str, content_type: &str, extra: &str, body: &str) -> (u16, String) {
    http_raw(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("answered")
}

fn quotas(port: u16) -> serde_json::Value {
    get_json(port, "/quota").expect("GET /quota")["quotas"].clone()
}

#[test]
fn another_site_cannot_change_or_read_the_cluster_through_a_browser() {
    let cluster = Cluster::start(1, "cpus:2;mem:1024").expect("cluster");
    let port = cluster.master_port;

    // A form or text/plain post (no preflight in a browser) is not taken as
    // JSON: 415, and no quota appears.
    let (code, text) = post(port, "/quota", "text/plain", "", QUOTA);
    assert_eq!(code, 415, "{text}");
    let (code, _) = post(
        port,
        "/quota",
        "application/x-www-form-urlencoded",
        "",
        QUOTA,
    );
    assert_eq!(code, 415);

    // JSON from another origin, or one a browser marks cross-site: 403.
    let (code, text) = post(
        port,
        "/quota",
        "application/json",
        "Origin: http://evil.example\r\n",
        QUOTA,
    );
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("another origin"), "{text}");
    let (code, _) = post(
        port,
        "/master/teardown",
        "application/x-www-form-urlencoded",
        "Sec-Fetch-Site: cross-site\r\n",
        "frameworkId=x",
    );
    assert_eq!(code, 403);
    assert_eq!(quotas(port), serde_json::json!([]), "nothing changed");

    // The cluster's own page (same origin) and clients that are not browsers
    // still change things.
    let (code, text) = post(
        port,
        "/quota",
        "application/json",
        &format!("Origin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\n"),
        QUOTA,
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(quotas(port)[0]["role"], "eng");
    let (code, text) = http_request(port, "DELETE", "/quota/eng", None).expect("DELETE");
    assert_eq!(code, 200, "{text}");

    // JSONP is for the cluster's own pages: refused to another site.
    let jsonp = |fetch_site: &str| {
        http_raw(
            port,
            &format!(
                "GET /master/state?jsonp=cb HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Sec-Fetch-Site: {fetch_site}\r\nConnection: close\r\n\r\n"
            ),
        )
        .expect("answered")
    };
    assert_eq!(jsonp("cross-site").0, 403);
    let (code, body) = jsonp("same-origin");
    assert_eq!(code, 200);
    assert!(body.starts_with("cb("), "{body}");

    // No CORS grant on the UI's JSON.
    let head = head_of(port, "/api/overview", "Origin: http://evil.example\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );

    // The agent's port refuses the same (its operator API changes things).
    let agent_port = agent_port(&cluster);
    let (code, text) = post(
        agent_port,
        "/api/v1",
        "application/json",
        "Origin: http://evil.example\r\n",
        r#"{"type":"GET_HEALTH"}"#,
    );
    assert_eq!(code, 403, "{text}");
    let (code, _) = post(
        agent_port,
        "/api/v1",
        "application/json",
        "",
        r#"{"type":"GET_HEALTH"}"#,
    );
    assert_eq!(code, 200);
}

/// The response head (status line and headers) of a GET.
fn head_of(port: u16, path: &str, extra: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The port of the cluster's only agent, from the master's `/state`.
fn agent_port(cluster: &Cluster) -> u16 {
    wait_for("the agent in /state", Duration::from_secs(30), || {
        let state = cluster.state().ok()?;
        let agent = state["agents"].as_array()?.first()?.clone();
        let address = agent["address"].as_str()?;
        address.rsplit_once(':')?.1.parse().ok()
    })
    .expect("agent port")
}
