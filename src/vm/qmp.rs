//! A QMP client: serde_json over a Unix stream.
//!
//! Every read has a deadline (the greeting included). Commands carry an
//! `id`; events that arrive while a reply is awaited are queued and can be
//! read with [`Qmp::wait_event`] or [`Qmp::take_events`].

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Default deadline for a command's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name, e.g. `SHUTDOWN`.
    pub name: String,
    /// The event's `data` member (`Null` if absent).
    pub data: Value,
    /// QEMU's time stamp in microseconds since the epoch.
    pub timestamp_us: u64,
}

/// A connected, negotiated QMP session.
pub struct Qmp {
    stream: UnixStream,
    buf: Vec<u8>,
    events: VecDeque<Event>,
    next_id: u64,
    timeout: Duration,
    greeting: Value,
}

impl Qmp {
    /// Takes a connected stream, reads the greeting and negotiates
    /// capabilities, each within `timeout`.
    pub fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self> {
        let mut qmp = Qmp {
            stream,
            buf: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            timeout,
            greeting: Value::Null,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let msg = qmp.read_message(deadline, timeout, "the QMP greeting")?;
            if msg.get("QMP").is_some() {
                qmp.greeting = msg;
                break;
            }
            qmp.queue_event(&msg)?;
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The greeting QEMU sent (with its version).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Sets the default deadline for replies.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_with_timeout(command, arguments, self.timeout)
    }

    /// Runs a command with its own deadline.
    pub fn execute_with_timeout(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            req["arguments"] = args;
        }
        let mut line = req.to_string();
        log::debug!(target: "alpy::qmp", "-> {line}");
        line.push('\n');
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| Error::QmpProtocol(format!("send {command}: {e}")))?;
        let deadline = Instant::now() + timeout;
        let what = format!("the reply to QMP command {command}");
        loop {
            let msg = self.read_message(deadline, timeout, &what)?;
            if msg.get("event").is_some() {
                self.queue_event(&msg)?;
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                log::warn!(target: "alpy::qmp", "ignoring a reply to another request: {msg}");
                continue;
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = msg.get("error") {
                let field = |k: &str| {
                    err.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(Error::Qmp {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(Error::QmpProtocol(format!(
                "reply to {command} has neither return nor error: {msg}"
            )));
        }
    }

    /// Waits for event `name`, returning it. Events queued earlier count;
    /// other events stay queued.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.events.iter().position(|e| e.name == name) {
                if let Some(ev) = self.events.remove(pos) {
                    return Ok(ev);
                }
            }
            let msg = self.read_message(deadline, timeout, &format!("QMP event {name}"))?;
            if msg.get("event").is_some() {
                self.queue_event(&msg)?;
            } else {
                log::warn!(target: "alpy::qmp", "unexpected message while waiting for {name}: {msg}");
            }
        }
    }

    /// Removes and returns every queued event.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    fn queue_event(&mut self, msg: &Value) -> Result<()> {
        let name = msg
            .get("event")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::QmpProtocol(format!("unexpected message: {msg}")))?;
        let ts = msg.get("timestamp");
        let secs = ts
            .and_then(|t| t.get("seconds"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let usecs = ts
            .and_then(|t| t.get("microseconds"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.events.push_back(Event {
            name: name.to_string(),
            data: msg.get("data").cloned().unwrap_or(Value::Null),
            timestamp_us: secs * 1_000_000 + usecs,
        });
        Ok(())
    }

    /// Reads one JSON message (a line) before `deadline`.
    fn read_message(&mut self, deadline: Instant, timeout: Duration, what: &str) -> Result<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                log::debug!(target: "alpy::qmp", "<- {text}");
                return serde_json::from_str(text).map_err(|e| {
                    Error::QmpProtocol(format!(
                        "invalid JSON while waiting for {what}: {e}: {text:?}"
                    ))
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_error(what, timeout));
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| Error::QmpProtocol(format!("set read timeout: {e}")))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::Closed(format!(
                        "QEMU closed the QMP connection while we waited for {what}{}",
                        if self.buf.is_empty() {
                            ""
                        } else {
                            " (in the middle of a message)"
                        }
                    )))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.timeout_error(what, timeout))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::QmpProtocol(format!(
                        "read while waiting for {what}: {e}"
                    )))
                }
            }
        }
    }

    fn timeout_error(&self, what: &str, timeout: Duration) -> Error {
        Error::Timeout {
            what: what.to_string(),
            timeout,
            tail: String::from_utf8_lossy(&self.buf).into_owned(),
        }
    }

    /// Starts (or resumes) the vCPUs.
    pub fn cont(&mut self) -> Result<()> {
        self.execute("cont", None).map(drop)
    }

    /// Pauses the vCPUs.
    pub fn stop(&mut self) -> Result<()> {
        self.execute("stop", None).map(drop)
    }

    /// Presses the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<()> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// Resets the machine.
    pub fn system_reset(&mut self) -> Result<()> {
        self.execute("system_reset", None).map(drop)
    }

    /// Asks QEMU to exit. QEMU may close the connection before replying,
    /// which counts as success.
    pub fn quit(&mut self) -> Result<()> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            Err(Error::Closed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The run state (`prelaunch`, `paused`, `running`, `shutdown`, ...).
    pub fn query_status(&mut self) -> Result<String> {
        let v = self.execute("query-status", None)?;
        v.get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::QmpProtocol(format!("query-status without status: {v}")))
    }

    /// Sets a NIC's link up or down as the guest sees it (`name` is the
    /// netdev or device id).
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<()> {
        self.execute("set_link", Some(json!({ "name": name, "up": up })))
            .map(drop)
    }

    /// Runs a human monitor command and returns its output.
    pub fn human_monitor_command(&mut self, command_line: &str) -> Result<String> {
        let v = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::thread;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}"#;

    /// A scripted QMP peer: for each request line it reads, it sends the
    /// next scripted chunk, with `{id}` replaced by the request's id.
    fn peer(script: Vec<&'static str>, greeting: bool) -> (UnixStream, thread::JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let h = thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            let mut r = std::io::BufReader::new(theirs);
            if greeting {
                w.write_all(format!("{GREETING}\r\n").as_bytes()).unwrap();
            }
            for reply in script {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let req: Value = serde_json::from_str(&line).unwrap();
                let id = req["id"].to_string();
                if reply == "<close>" {
                    return;
                }
                if let Some(half) = reply.strip_suffix("<close>") {
                    let _ = w.write_all(half.as_bytes());
                    return;
                }
                if reply == "<stall>" {
                    thread::sleep(Duration::from_millis(500));
                    return;
                }
                let _ = w.write_all(reply.replace("{id}", &id).as_bytes());
            }
            // Keep the connection open until the client hangs up.
            let mut rest = String::new();
            let _ = r.read_line(&mut rest);
        });
        (ours, h)
    }

    const CAPS_OK: &str = "{\"return\": {}, \"id\": {id}}\r\n";

    #[test]
    fn events_interleaved_with_replies_are_queued() {
        let (s, h) = peer(
            vec![
                CAPS_OK,
                "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 5}}\r\n{\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {\"name\": \"n0\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 6}}\r\n{\"return\": {}, \"id\": {id}}\r\n",
                "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": {id}}\r\n",
            ],
            true,
        );
        let mut q = Qmp::handshake(s, Duration::from_secs(2)).unwrap();
        q.cont().unwrap();
        assert_eq!(q.query_status().unwrap(), "running");
        let ev = q
            .wait_event("NIC_RX_FILTER_CHANGED", Duration::from_millis(10))
            .unwrap();
        assert_eq!(ev.data["name"], "n0");
        let ev = q.wait_event("RESUME", Duration::from_millis(10)).unwrap();
        assert_eq!(ev.timestamp_us, 1_000_005);
        drop(q);
        h.join().unwrap();
    }

    #[test]
    fn event_before_greeting_is_kept() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut w = theirs.try_clone().unwrap();
        w.write_all(
            b"{\"event\": \"EARLY\", \"timestamp\": {\"seconds\": 0, \"microseconds\": 0}}\n",
        )
        .unwrap();
        w.write_all(format!("{GREETING}\n").as_bytes()).unwrap();
        w.write_all(b"{\"return\": {}, \"id\": 1}\n").unwrap();
        let mut q = Qmp::handshake(ours, Duration::from_secs(2)).unwrap();
        assert_eq!(
            q.wait_event("EARLY", Duration::from_millis(10))
                .unwrap()
                .name,
            "EARLY"
        );
        drop(theirs);
    }

    #[test]
    fn error_reply_is_typed() {
        let (s, h) = peer(
            vec![
                CAPS_OK,
                "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has not been found\"}, \"id\": {id}}\n",
            ],
            true,
        );
        let mut q = Qmp::handshake(s, Duration::from_secs(2)).unwrap();
        match q.execute("foo", None) {
            Err(Error::Qmp {
                command,
                class,
                desc,
            }) => {
                assert_eq!(command, "foo");
                assert_eq!(class, "CommandNotFound");
                assert!(desc.contains("has not been found"));
            }
            other => panic!("expected a QMP error, got {other:?}"),
        }
        drop(q);
        h.join().unwrap();
    }

    #[test]
    fn stalled_peer_hits_the_deadline() {
        let (s, h) = peer(vec![CAPS_OK, "<stall>"], true);
        let mut q = Qmp::handshake(s, Duration::from_secs(2)).unwrap();
        let t0 = Instant::now();
        let err = q
            .execute_with_timeout("query-status", None, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(q);
        h.join().unwrap();
    }

    #[test]
    fn silent_peer_fails_the_greeting_deadline() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let err = Qmp::handshake(ours, Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(err.to_string().contains("QMP greeting"), "{err}");
    }

    #[test]
    fn garbage_json_is_a_protocol_error() {
        let (s, h) = peer(vec![CAPS_OK, "{\"return\": oops}\n"], true);
        let mut q = Qmp::handshake(s, Duration::from_secs(2)).unwrap();
        let err = q.execute("query-status", None).unwrap_err();
        assert!(
            matches!(&err, Error::QmpProtocol(m) if m.contains("invalid JSON")),
            "{err}"
        );
        drop(q);
        h.join().unwrap();
    }

    #[test]
    fn peer_closing_mid_reply_is_reported() {
        let (s, h) = peer(vec![CAPS_OK, "{\"return\": {\"sta<close>"], true);
        let mut q = Qmp::handshake(s, Duration::from_secs(2)).unwrap();
        let msg = q.execute("query-status", None).unwrap_err().to_string();
        h.join().unwrap();
        assert!(
            msg.contains("closed the QMP connection") && msg.contains("middle of a message"),
            "{msg}"
        );
    }
}
