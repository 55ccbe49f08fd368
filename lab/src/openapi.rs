//! The OpenAPI document served at `/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, codes: &[(&str, &str)], session: bool, token: bool) -> Value {
    let mut responses = serde_json::Map::new();
    let auth = [
        ("401", "no valid token"),
        ("403", "the token's role may not"),
    ];
    let shared = if token { &auth[..] } else { &[] };
    for (code, what) in codes.iter().chain(shared) {
        responses.insert((*code).into(), json!({ "description": what }));
    }
    let mut o = json!({ "summary": summary, "responses": responses });
    if session {
        o["parameters"] = json!([{ "name": "X-Session-ID", "in": "header", "required": true, "schema": { "type": "string" } }]);
    }
    if token {
        o["security"] = json!([{ "bearer": [] }]);
    }
    o
}

/// The document.
pub fn document() -> Value {
    let locked = ("423", "the session is not the active one");
    let lab = |s: &str, ok: (&str, &str)| {
        op(
            s,
            &[
                ok,
                ("400", "bad input"),
                ("404", "no such session or nothing held"),
                locked,
            ],
            true,
            true,
        )
    };
    json!({
        "openapi": "3.0.3",
        "info": { "title": "alpy-lab", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Sessions in a FIFO queue, heartbeats, and reference-counted alpy test beds on a shared host." },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/session": { "post": op("Create a session (joins the queue); user or operator tokens", &[("201", "session_id, handle, status, position"), ("429", "the token has limits.max_sessions_per_token live sessions")], false, true) },
            "/session/{id}": {
                "get": op("One of the token's sessions: status and position", &[("200", "the session"), ("404", "no such session for this token")], false, true),
                "delete": op("End one of the token's sessions (releases its lab)", &[("204", "ended"), ("404", "no such session for this token"), ("409", "ended already")], false, true)
            },
            "/active-session": { "get": op("The active session, by handle (no id)", &[("200", "the session"), ("404", "none is active")], false, true) },
            "/session/heartbeat": { "post": op("Keep one of the token's sessions alive", &[("204", "noted"), ("404", "no such live session for this token")], true, true) },
            "/store": { "get": op("The image store: name, sha256 and size of each file", &[("200", "files")], false, true) },
            "/queue": { "get": op("Sessions (handles, no ids) and labs (host paths for operators only)", &[("200", "sessions and labs")], false, true) },
            "/lab": {
                "post": lab("Acquire a lab: multipart topology, extra_files, reuse=true", ("200", "the lab (reused or stood up)")),
                "get": lab("The session's lab", ("200", "the lab")),
                "delete": lab("Destroy the session's lab (?force=true if others hold it)", ("202", "being destroyed"))
            },
            "/lab/devices": { "get": lab("Nodes, links and the console of the lab", ("200", "devices")) },
            "/lab/release": { "post": lab("Release the session's hold (reference count down)", ("200", "lab id and refcount")) },
            "/lab/console": { "get": lab("A machine's serial console, both ways (WebSocket); ?machine=NAME, default the first (404 names the machines)", ("101", "switching protocols")) },
            "/lab/nodes/{name}/exec": { "post": lab("Run {\"cmd\": [..]} in a node: JSON lines of output, then the exit code", ("200", "application/x-ndjson")) },
            "/lab/links/{name}/pcap": { "get": lab("A link's capture: live while the bed runs (?follow=false: as it is now)", ("200", "application/vnd.tcpdump.pcap")) },
            "/lab/qmp": { "post": lab("{\"execute\": .., \"arguments\": .., \"machine\": ..} to a machine's QEMU (default the first): an allow-listed command (403 names the list)", ("200", "QMP's return")) },
            "/lab/power/{action}": { "post": lab("off, on or cycle; ?machine=NAME, default the first", ("200", "QMP's return")) },
            "/lab/nodes/{name}/apps": { "post": lab("{\"app\": alpy App, \"background\": bool, \"timeout_s\": s}: 201 {\"app_id\"} in the background, else 200 {\"exit_code\", \"stdout\", \"stderr\"}; allow-listed images only", ("200", "the app's end")) },
            "/lab/nodes/{name}/link": { "post": lab("A node's link: {\"change\": \"impair\", \"direction\": \"to_dut|to_node|both\", \"impairment\": {..}}, {\"change\": \"clear\"} or {\"change\": \"carrier\", \"up\": bool}", ("204", "done")) },
            "/lab/logs": { "get": lab("The lab bed's logs: {\"files\": [{\"name\", \"size\"}]} (*.log of its artifacts)", ("200", "the list")) },
            "/lab/logs/{name}": { "get": lab("One log of the lab's bed", ("200", "text/plain")) },
            "/lab/apps/{id}": { "delete": lab("Stop a background app (409 if it had failed)", ("204", "stopped")) },
            "/labs/{id}": { "delete": op("Operator: destroy any lab", &[("202", "being destroyed"), ("404", "no such lab"), ("409", "held by others without force")], false, true) },
            "/sessions/{handle}": { "delete": op("Operator: end any session, by handle", &[("204", "ended"), ("404", "no live session with that handle")], false, true) },
            "/sessions/{handle}/position": { "post": op("Operator: move a waiting session to {\"position\": N}", &[("200", "its new position"), ("404", "no live session with that handle"), ("409", "not waiting")], false, true) },
            "/healthz": { "get": op("Liveness (no token)", &[("204", "alive")], false, false) },
            "/metrics": { "get": op("Prometheus metrics", &[("200", "text/plain")], false, true) },
            "/openapi.json": { "get": op("This document", &[("200", "OpenAPI 3.0")], false, true) }
        }
    })
}
