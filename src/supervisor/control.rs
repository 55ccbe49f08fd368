//! How a bed's supervisor answers the [`Request`]s on its control socket
//! (besides [`Request::Down`], which
//! [`crate::supervisor::registry::Published`] handles): QMP on a machine,
//! apps run to completion or in the background, a node's tools container,
//! and changes to a node's link.
//!
//! Apps started here belong to the bed: they run under its owner, log into
//! its artifacts, and are stopped when the bed goes down.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bed::testbed::TestBed;
use crate::error::{Error, Result};
use crate::net::Container;
use crate::supervisor::protocol::Request;

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

    /// Answers `request` for `bed`: the reply's value.
    pub fn answer(&mut self, bed: &mut TestBed, request: Request) -> Result<Value> {
        match request {
            Request::Qmp {
                machine,
                command,
                arguments,
            } => {
                let qmp = match machine {
                    Some(m) => bed.machine(&m)?.qmp()?,
                    None => bed.qmp()?,
                };
                qmp.execute(&command, arguments)
            }
            Request::Power { machine, action } => {
                let m = match machine {
                    Some(m) => bed.machine(&m)?,
                    None => bed.dut_mut()?,
                };
                m.switch_power(action)
            }
            Request::Tools { node } => bed.node(&node)?.tools_container_id().map(Value::from),
            Request::Link { node, change } => {
                bed.node(&node)?.change_link(&change).map(|()| Value::Null)
            }
            Request::AppRun {
                node,
                timeout_s,
                app,
            } => {
                let out = bed
                    .node(&node)?
                    .run_app(&app, Duration::from_secs_f64(timeout_s.max(0.0)))?;
                Ok(json!({
                    "exit_code": out.status.code(),
                    "stdout": out.stdout_str(),
                    "stderr": out.stderr_str(),
                }))
            }
            Request::AppStart { node, app } => {
                let c = bed.node(&node)?.spawn_app(&app)?;
                self.started += 1;
                let id = format!("app{}", self.started);
                self.apps.insert(id.clone(), c);
                Ok(Value::from(id))
            }
            Request::AppStop { id } => {
                let c = self.apps.remove(&id).ok_or_else(|| Error::NotFound {
                    what: format!("app {id:?}"),
                    hint: format!(
                        "running here: {}",
                        self.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })?;
                c.close().map(|()| Value::Null)
            }
            Request::Down => Err(Error::Internal(
                "down is the control socket's own request, not the bed's".into(),
            )),
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
