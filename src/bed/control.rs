//! What a bed's supervisor answers on its control socket (besides `down`,
//! which [`crate::bed::registry::Published`] handles): one command per
//! line, one answer per line (`ok [VALUE]` or `error WHY`).
//!
//! - `qmp COMMAND [JSON-ARGUMENTS]`: QMP on the DUT's QEMU; its `return`.
//! - `machine-qmp MACHINE COMMAND [JSON-ARGUMENTS]`: QMP on machine
//!   `MACHINE`'s QEMU.
//! - `app-run NODE TIMEOUT_S APP-JSON`: runs an [`App`] in node `NODE` to
//!   completion; `{"exit_code":N,"stdout":..,"stderr":..}`.
//! - `app-start NODE APP-JSON`: starts an app in the background; its id.
//! - `app-stop ID`: stops it, saves its log; an error if it had failed.
//! - `tools NODE`: the id of node `NODE`'s kept tools container (started on
//!   first use), for `docker exec` (`alpy exec`).
//! - `link NODE CHANGE-JSON`: a [`crate::net::LinkChange`] on node `NODE`'s
//!   link (impairment, carrier).
//!
//! Apps started here belong to the bed: they run under its owner, log into
//! its artifacts, and are stopped when the bed goes down.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::bed::testbed::TestBed;
use crate::error::{Error, Result};
use crate::net::{App, Container};

/// The supervisor's state between commands: the apps it started.
#[derive(Default)]
pub struct Control {
    apps: BTreeMap<String, Container>,
    started: usize,
}

impl Control {
    /// No apps yet.
    pub fn new() -> Control {
        Control::default()
    }

    /// Answers one command line for `bed`.
    pub fn answer(&mut self, bed: &mut TestBed, line: &str) -> Result<String> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "qmp" => qmp(bed, None, rest),
            "machine-qmp" => {
                let (machine, rest) = split(rest, "machine-qmp MACHINE COMMAND [JSON]")?;
                qmp(bed, Some(machine), rest)
            }
            "tools" => bed.node(rest.trim())?.tools_container_id(),
            "link" => {
                let (node, change) = split(rest, "link NODE CHANGE-JSON")?;
                let change: crate::net::LinkChange = serde_json::from_str(change)
                    .map_err(|e| Error::Config(format!("a link change as JSON: {e}")))?;
                bed.node(node)?.change_link(&change).map(|()| String::new())
            }
            "app-run" => {
                let (node, rest) = split(rest, "app-run NODE TIMEOUT_S APP-JSON")?;
                let (secs, app) = split(rest, "app-run NODE TIMEOUT_S APP-JSON")?;
                let secs: f64 = secs
                    .parse()
                    .map_err(|_| Error::Config(format!("app-run: bad timeout {secs:?}")))?;
                let out = bed
                    .node(node)?
                    .run_app(&parse_app(app)?, Duration::from_secs_f64(secs.max(0.0)))?;
                Ok(json!({
                    "exit_code": out.status.code(),
                    "stdout": out.stdout_str(),
                    "stderr": out.stderr_str(),
                })
                .to_string())
            }
            "app-start" => {
                let (node, app) = split(rest, "app-start NODE APP-JSON")?;
                let c = bed.node(node)?.spawn_app(&parse_app(app)?)?;
                self.started += 1;
                let id = format!("app{}", self.started);
                self.apps.insert(id.clone(), c);
                Ok(id)
            }
            "app-stop" => {
                let c = self
                    .apps
                    .remove(rest.trim())
                    .ok_or_else(|| Error::NotFound {
                        what: format!("app {rest:?}"),
                        hint: format!(
                            "running here: {}",
                            self.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                c.close().map(|()| String::new())
            }
            _ => Err(Error::Config(format!(
                "unknown command {line:?} (known: qmp, machine-qmp, app-run, app-start, app-stop, tools, link, down)"
            ))),
        }
    }

    /// Stops the apps still running; the first error.
    pub fn close(&mut self) -> Result<()> {
        let mut first = Ok(());
        for (_, c) in std::mem::take(&mut self.apps) {
            if let Err(e) = c.close() {
                log::warn!(target: "alpy::control", "stopping an app: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

fn split<'a>(s: &'a str, usage: &str) -> Result<(&'a str, &'a str)> {
    s.split_once(' ')
        .ok_or_else(|| Error::Config(format!("expected {usage}, got {s:?}")))
}

fn parse_app(text: &str) -> Result<App> {
    serde_json::from_str(text).map_err(|e| Error::Config(format!("an app as JSON: {e}")))
}

fn qmp(bed: &mut TestBed, machine: Option<&str>, rest: &str) -> Result<String> {
    let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let args = if args.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(args)
                .map_err(|e| Error::Config(format!("QMP arguments must be a JSON object: {e}")))?,
        )
    };
    let qmp = match machine {
        Some(m) => bed.machine(m)?.qmp()?,
        None => bed.qmp()?,
    };
    Ok(qmp.execute(command, args)?.to_string())
}
