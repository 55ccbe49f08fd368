//! Traffic in the nodes: iperf3 servers and clients, HTTP backends and
//! clients, ping. All run from the `alpy/tools` image.

use std::net::IpAddr;
use std::time::Duration;

use alpy::net::{Container, Node};
use alpy::{App, Commands, Error, Result};

const APP_TIMEOUT: Duration = Duration::from_secs(120);
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until something in `node` listens on TCP `port`.
pub fn wait_listening(node: &Node, port: u16) -> Result<()> {
    node.wait_for_listener(port, LISTEN_TIMEOUT)
}

/// Starts `iperf3 -s -1` (one test, then exit) in `node`, ready to accept.
pub fn iperf3_server(node: &Node) -> Result<Container> {
    let c = node.spawn_app(&App::tools(["iperf3", "-s", "-1"]).name("iperf3-server"))?;
    wait_listening(node, 5201)?;
    Ok(c)
}

/// What an iperf3 client measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Iperf3Result {
    /// Throughput seen by the receiver, bit/s.
    pub received_bps: f64,
    /// Throughput of the sender, bit/s.
    pub sent_bps: f64,
    /// TCP retransmissions.
    pub retransmits: u64,
}

/// Parses `iperf3 -J` output.
pub fn parse_iperf3(json: &str) -> Result<Iperf3Result> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Config(format!("iperf3 -J output is not JSON ({e}): {json}")))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(Error::Config(format!("iperf3 failed: {err}")));
    }
    let end = &v["end"];
    let num = |x: &serde_json::Value| {
        x.as_f64()
            .ok_or_else(|| Error::Config(format!("iperf3 -J lacks a figure: {x}")))
    };
    Ok(Iperf3Result {
        received_bps: num(&end["sum_received"]["bits_per_second"])?,
        sent_bps: num(&end["sum_sent"]["bits_per_second"])?,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

/// Runs an iperf3 TCP client in `node` towards `server` for `seconds`.
pub fn iperf3_client(node: &Node, server: IpAddr, seconds: u32) -> Result<Iperf3Result> {
    let server = server.to_string();
    let app = App::tools(["iperf3", "-c", &server, "-t", &seconds.to_string(), "-J"]);
    let out = node.run_app(&app.name("iperf3-client"), APP_TIMEOUT)?;
    // iperf3 -J reports its errors in the JSON, with a non-zero exit.
    parse_iperf3(&out.stdout_str())
}

/// Starts an HTTP server in `node` that answers `body` on every `port`.
pub fn http_backend(node: &Node, body: &str, ports: &[u16]) -> Result<Container> {
    let listens: String = ports.iter().map(|p| format!("listen {p};")).collect();
    let conf = format!(
        "pid /tmp/nginx.pid; error_log stderr; events {{}} http {{ access_log off; \
         server {{ {listens} location / {{ return 200 '{body}\\n'; }} }} }}"
    );
    let app = App::tools([
        "sh",
        "-c",
        "printf '%s' \"$0\" > /tmp/n.conf && exec nginx -c /tmp/n.conf -g 'daemon off;'",
        &conf,
    ]);
    let c = node.spawn_app(&app.name("http"))?;
    for p in ports {
        wait_listening(node, *p)?;
    }
    Ok(c)
}

/// Fetches `url` `count` times from `node` (curl, 3 s limit each); returns
/// one line per request: the body, or `ERROR <curl exit code>`.
pub fn http_get_many(node: &Node, url: &str, count: u32) -> Result<Vec<String>> {
    let out = node.execute(&format!(
        "for i in $(seq {count}); do curl -s --max-time 3 '{url}' || echo \"ERROR $?\"; done"
    ))?;
    Ok(out.stdout_str().lines().map(str::to_string).collect())
}

/// Pings `addr` `count` times from `node` (0.2 s apart); the status says
/// whether any reply came.
pub fn ping(node: &Node, addr: IpAddr, count: u32) -> Result<alpy::net::Output> {
    node.execute(&format!("ping -c {count} -i 0.2 -W 3 {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iperf3_json() {
        let j = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":1.05e6,"retransmits":3},"sum_received":{"bits_per_second":9.8e5}}}"#;
        let r = parse_iperf3(j).unwrap();
        assert_eq!(r.received_bps, 9.8e5);
        assert_eq!(r.retransmits, 3);
        let e = parse_iperf3(r#"{"start":{},"end":{},"error":"unable to connect to server"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unable to connect"));
    }
}
