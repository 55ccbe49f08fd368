//! The OpenAPI document served at `/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, codes: &[(&str, &str)], session: bool, token: bool) -> Value {
    let mut responses = serde_json::Map::new();
    for (code, what) in codes {
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
            false,
        )
    };
    json!({
        "openapi": "3.0.3",
        "info": { "title": "alpy-lab", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Sessions in a FIFO queue, heartbeats, and reference-counted alpy test beds on a shared host." },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/session": { "post": op("Create a session (joins the queue)", &[("201", "session_id, status, position"), ("401", "no valid token")], false, true) },
            "/session/{id}": {
                "get": op("A session's status and position", &[("200", "the session"), ("404", "no such session")], false, false),
                "delete": op("End a session (releases its lab)", &[("204", "ended"), ("404", "no such session"), ("409", "ended already")], false, false)
            },
            "/active-session": { "get": op("The active session", &[("200", "the session"), ("404", "none is active")], false, false) },
            "/session/heartbeat": { "post": op("Keep a session alive", &[("204", "noted"), ("404", "no such live session")], true, false) },
            "/store": { "get": op("The image store: name, sha256 and size of each file", &[("200", "files"), ("401", "no valid token")], false, true) },
            "/queue": { "get": op("Sessions and labs", &[("200", "sessions and labs"), ("401", "no valid token")], false, true) },
            "/lab": {
                "post": lab("Acquire a lab: multipart topology, extra_files, reuse=true", ("200", "the lab (reused or stood up)")),
                "get": lab("The session's lab", ("200", "the lab")),
                "delete": lab("Destroy the session's lab (?force=true if others hold it)", ("202", "being destroyed"))
            },
            "/lab/devices": { "get": lab("Nodes, links and the console of the lab", ("200", "devices")) },
            "/lab/release": { "post": lab("Release the session's hold (reference count down)", ("200", "lab id and refcount")) },
            "/lab/console": { "get": lab("The DUT's serial console, both ways (WebSocket)", ("101", "switching protocols")) },
            "/lab/nodes/{name}/exec": { "post": lab("Run {\"cmd\": [..]} in a node: JSON lines of output, then the exit code", ("200", "application/x-ndjson")) },
            "/lab/links/{name}/pcap": { "get": lab("A link's capture: live while the bed runs (?follow=false: as it is now)", ("200", "application/vnd.tcpdump.pcap")) },
            "/lab/qmp": { "post": lab("{\"execute\": .., \"arguments\": ..} to the bed's QEMU", ("200", "QMP's return")) },
            "/lab/power/{action}": { "post": lab("off, on or cycle", ("200", "QMP's return")) },
            "/lab/nodes/{name}/apps": { "post": lab("{\"app\": alpy App, \"background\": bool, \"timeout_s\": s}: 201 {\"app_id\"} in the background, else 200 {\"exit_code\", \"stdout\", \"stderr\"}; allow-listed images only", ("200", "the app's end")) },
            "/lab/apps/{id}": { "delete": lab("Stop a background app (409 if it had failed)", ("204", "stopped")) },
            "/labs/{id}": { "delete": op("Destroy any lab (an operator's call)", &[("202", "being destroyed"), ("401", "no valid token"), ("404", "no such lab"), ("409", "held by others without force")], false, true) },
            "/healthz": { "get": op("Liveness", &[("204", "alive")], false, false) },
            "/metrics": { "get": op("Prometheus metrics", &[("200", "text/plain")], false, false) }
        }
    })
}
