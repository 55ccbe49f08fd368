//! A lab's nodes as [`NodeService`]: commands through
//! `POST /lab/nodes/{name}/exec` (output as JSON lines, then the exit
//! code), apps through `POST /lab/nodes/{name}/apps` and
//! `DELETE /lab/apps/{id}`, impairment and carrier through
//! `POST /lab/nodes/{name}/link`.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use crate::bed::remote::client::{checked, net};
use crate::error::{Error, Result};
use crate::net::{App, NodeService, Output};
use crate::output::ExitStatus;

/// The nodes of the lab a session holds.
pub(crate) struct LabNodes {
    pub(crate) http: Client,
    pub(crate) url: String,
    pub(crate) session: String,
}

impl LabNodes {
    fn with_session(&self, b: RequestBuilder) -> RequestBuilder {
        b.header("X-Session-ID", &self.session)
    }

    fn post(&self, path: &str, body: &Value) -> Result<reqwest::blocking::Response> {
        self.with_session(self.http.post(format!("{}{path}", self.url)))
            .json(body)
            .send()
            .map_err(net(path))
    }

    /// Runs `cmd` in node `node`: (exit code, stdout, stderr).
    pub(crate) fn exec(&self, node: &str, cmd: &[&str]) -> Result<(i64, String, String)> {
        self.exec_within(node, cmd, crate::net::node::COMMAND_TIMEOUT)
    }

    /// [`LabNodes::exec`], given up after `timeout` (the server stops
    /// waiting and says so).
    pub(crate) fn exec_within(
        &self,
        node: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        let body = json!({ "cmd": cmd, "timeout_s": timeout.as_secs_f64() });
        let r = self.post(&format!("/lab/nodes/{node}/exec"), &body)?;
        let text = checked(r, &format!("exec in node {node}"))?
            .text()
            .map_err(net("read exec output"))?;
        let (mut out, mut err, mut code) = (String::new(), String::new(), None);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).map_err(|e| Error::Lab {
                what: format!("exec in node {node}"),
                status: None,
                detail: format!("an output line that is not JSON ({e}): {line:?}"),
            })?;
            if let Some(s) = v["stdout"].as_str() {
                out.push_str(s);
            }
            if let Some(s) = v["stderr"].as_str() {
                err.push_str(s);
            }
            if let Some(c) = v["exit_code"].as_i64() {
                code = Some(c);
            }
            if v["timed_out"] == true {
                return Err(Error::Timeout {
                    what: format!("{cmd:?} in remote node {node}"),
                    timeout,
                    tail: format!("{out}{err}"),
                });
            }
        }
        let code = code.ok_or_else(|| Error::Lab {
            what: format!("exec in node {node}"),
            status: None,
            detail: "the answer ended without an exit code".into(),
        })?;
        Ok((code, out, err))
    }
}

fn output(code: i64, stdout: String, stderr: String) -> Output {
    Output {
        status: ExitStatus(code),
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

impl NodeService for LabNodes {
    fn execute(&self, node: &str, argv: &[&str], timeout: Duration) -> Result<Output> {
        let (code, out, err) = self.exec_within(node, argv, timeout)?;
        Ok(output(code, out, err))
    }

    fn run_app(&self, node: &str, app: &App, timeout: Duration) -> Result<Output> {
        let body = json!({ "app": app, "background": false, "timeout_s": timeout.as_secs_f64() });
        let r = self.post(&format!("/lab/nodes/{node}/apps"), &body)?;
        let v: Value = checked(r, &format!("run an app in node {node}"))?
            .json()
            .map_err(net("read the app's end"))?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let code = v["exit_code"].as_i64().ok_or_else(|| Error::Lab {
            what: "run an app".into(),
            status: None,
            detail: format!("an app's end without exit_code: {v}"),
        })?;
        Ok(output(code, text("stdout"), text("stderr")))
    }

    fn start_app(&self, node: &str, app: &App) -> Result<String> {
        let body = json!({ "app": app, "background": true });
        let r = self.post(&format!("/lab/nodes/{node}/apps"), &body)?;
        let v: Value = checked(r, &format!("start an app in node {node}"))?
            .json()
            .map_err(net("read the app's id"))?;
        v["app_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Lab {
                what: format!("start an app in node {node}"),
                status: None,
                detail: format!("a started app without app_id: {v}"),
            })
    }

    fn stop_app(&self, id: &str) -> Result<()> {
        let r = self
            .with_session(self.http.delete(format!("{}/lab/apps/{id}", self.url)))
            .send()
            .map_err(net("stop an app"))?;
        checked(r, &format!("stop app {id}")).map(drop)
    }

    fn change_link(&self, node: &str, change: &crate::net::LinkChange) -> Result<()> {
        let body = serde_json::to_value(change)
            .map_err(|e| Error::Internal(format!("encode a link change: {e}")))?;
        let r = self.post(&format!("/lab/nodes/{node}/link"), &body)?;
        checked(r, &format!("change the link of node {node}")).map(drop)
    }
}
