//! What goes over a supervisor's `control.sock`: one [`Request`] per line
//! as a JSON object tagged by `op`, and one [`Reply`] per line tagged by
//! `result`. `alpy` (qmp, exec, down), alpy-lab and a kept bed's
//! supervisor all speak it through [`crate::supervisor::registry::request`].
//!
//! ```
//! use alpy::internal::supervisor::protocol::{Reply, Request};
//! let r = Request::Qmp { machine: None, command: "query-status".into(), arguments: None };
//! let line = serde_json::to_string(&r).unwrap();
//! assert_eq!(line, r#"{"op":"qmp","machine":null,"command":"query-status","arguments":null}"#);
//! let back: Request = serde_json::from_str(&line).unwrap();
//! assert_eq!(back, r);
//! let ok: Reply = serde_json::from_str(r#"{"result":"ok","value":{"status":"running"}}"#).unwrap();
//! assert_eq!(ok.into_result("bed 3f2a").unwrap()["status"], "running");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::net::{App, LinkChange};

/// A request to a bed's supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// A QMP command on a machine's QEMU (none: the first, the DUT); the
    /// reply's value is its `return`.
    Qmp {
        /// The machine's name.
        machine: Option<String>,
        /// The QMP command.
        command: String,
        /// Its arguments, a JSON object.
        arguments: Option<Value>,
    },
    /// Runs an [`App`] in a node to completion; the value is
    /// `{"exit_code", "stdout", "stderr"}`.
    AppRun {
        /// The node.
        node: String,
        /// How long it may take, in seconds.
        timeout_s: f64,
        /// The app.
        app: App,
    },
    /// Starts an [`App`] in a node in the background; the value is its id.
    AppStart {
        /// The node.
        node: String,
        /// The app.
        app: App,
    },
    /// Stops a background app and saves its log; an error if it had
    /// failed.
    AppStop {
        /// The id `AppStart` gave.
        id: String,
    },
    /// The id of a node's kept tools container (started on first use),
    /// for `docker exec` (`alpy exec`).
    Tools {
        /// The node.
        node: String,
    },
    /// A change to a node's link: impairment, carrier.
    Link {
        /// The node.
        node: String,
        /// The change.
        change: LinkChange,
    },
    /// Switches a machine (none: the DUT) off, on or through a cycle: a
    /// VM's ACPI button, `cont` or reset; a board's power switch. The
    /// value is `{"machine", "kind": "vm" | "board", "action"}`.
    Power {
        /// The machine's name.
        machine: Option<String>,
        /// What to do.
        action: PowerAction,
    },
    /// Take the bed down; the supervisor answers nothing and exits.
    Down,
}

/// What [`Request::Power`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    /// A VM's ACPI button (it shuts down); a board's port switched off.
    Off,
    /// A paused VM's vCPUs run; a board's port switched on.
    On,
    /// A VM's reset; a board's port off, then on.
    Cycle,
}

impl std::str::FromStr for PowerAction {
    type Err = Error;
    fn from_str(s: &str) -> Result<PowerAction> {
        match s {
            "off" => Ok(PowerAction::Off),
            "on" => Ok(PowerAction::On),
            "cycle" => Ok(PowerAction::Cycle),
            _ => Err(Error::Config(format!(
                "power {s:?}: expected off, on or cycle"
            ))),
        }
    }
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerAction::Off => "off",
            PowerAction::On => "on",
            PowerAction::Cycle => "cycle",
        })
    }
}

/// A supervisor's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Reply {
    /// Done; what the request gives back (`null` when nothing).
    Ok {
        /// The value.
        value: Value,
    },
    /// Refused or failed.
    Error {
        /// Why, as the bed's error said it.
        error: String,
    },
}

impl Reply {
    /// The reply to `result`.
    pub fn of(result: Result<Value>) -> Reply {
        match result {
            Ok(value) => Reply::Ok { value },
            Err(e) => Reply::Error {
                error: e.to_string(),
            },
        }
    }

    /// The value, or the supervisor's error for `bed` (which names it).
    pub fn into_result(self, bed: &str) -> Result<Value> {
        match self {
            Reply::Ok { value } => Ok(value),
            Reply::Error { error } => Err(Error::Config(format!("{bed}: {error}"))),
        }
    }
}

impl Request {
    /// The request on `line`, or why it is none (naming the known ops).
    pub fn parse(line: &str) -> Result<Request> {
        serde_json::from_str(line).map_err(|e| {
            Error::Config(format!(
                "a control request is one JSON object per line with \"op\" one of qmp, app-run, \
                 app-start, app-stop, tools, link, power, down: {e} (in {:?})",
                line.chars().take(200).collect::<String>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_go_both_ways() {
        let reqs = [
            Request::AppRun {
                node: "client".into(),
                timeout_s: 5.0,
                app: App::tools(["true"]),
            },
            Request::AppStop { id: "app1".into() },
            Request::Tools {
                node: "server".into(),
            },
            Request::Link {
                node: "client".into(),
                change: LinkChange::Clear,
            },
            Request::Power {
                machine: Some("b".into()),
                action: PowerAction::Cycle,
            },
            Request::Down,
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(Request::parse(&line).unwrap(), r, "{line}");
        }
        let e = Request::parse("qmp query-status").unwrap_err().to_string();
        assert!(
            e.contains("one JSON object per line") && e.contains("app-run"),
            "{e}"
        );
        let e = Request::parse(r#"{"op":"reboot"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("reboot"), "{e}");
        let r = Reply::of(Err(Error::Config("no node \"x\"".into())));
        let line = serde_json::to_string(&r).unwrap();
        let e = serde_json::from_str::<Reply>(&line)
            .unwrap()
            .into_result("bed 3f2a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bed 3f2a") && e.contains("no node"), "{e}");
    }
}
