//! A program in a container with its standard streams attached to the
//! caller's, as `docker exec -i [-t]` does: what `alpy exec` runs.

use std::io::{Read, Write};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::net::docker::{map_err, Docker};

/// How to attach: standard input, and a terminal of a size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    /// Forward the caller's standard input until it ends.
    pub stdin: bool,
    /// Give the program a terminal of (rows, columns); its output then
    /// comes as one stream.
    pub tty: Option<(u16, u16)>,
}

impl Docker {
    /// Runs `cmd` in running container `id`: output is written to `stdout`
    /// and `stderr` as it arrives; with `attach.stdin`, `stdin` is sent to
    /// the program until it ends (then the program sees end of input).
    /// Returns the program's exit code. There is no deadline: the program
    /// runs until it exits (interrupt the caller to stop it).
    pub fn exec_attached(
        &self,
        id: &str,
        cmd: &[String],
        attach: Attach,
        stdin: impl Read + Send + 'static,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<i64> {
        let what = format!("exec {:?} in container {id}", cmd.join(" "));
        let fail = |e: bollard::errors::Error| map_err(&what, e);
        let api = self.api().clone();
        let config = ExecConfig {
            attach_stdin: Some(attach.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(attach.tty.is_some()),
            console_size: attach
                .tty
                .map(|(r, c)| vec![usize::from(r), usize::from(c)]),
            env: attach.tty.map(|_| vec!["TERM=xterm".to_string()]),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        self.block_on(async {
            let exec = api.create_exec(id, config).await.map_err(fail)?;
            let options = StartExecOptions {
                detach: false,
                tty: attach.tty.is_some(),
                output_capacity: None,
            };
            let StartExecResults::Attached {
                mut output,
                mut input,
            } = api
                .start_exec(&exec.id, Some(options))
                .await
                .map_err(fail)?
            else {
                return Err(Error::Internal(format!(
                    "exec in container {id}: the engine detached"
                )));
            };
            let forwarder = if attach.stdin {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
                // Blocking reads of our standard input, in a thread of its
                // own; it ends with the process if the input never does.
                std::thread::spawn(move || forward_input(stdin, &tx));
                Some(tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
                            return;
                        }
                    }
                    let _ = input.shutdown().await;
                }))
            } else {
                drop(input);
                None
            };
            while let Some(item) = output.next().await {
                let written = match item.map_err(fail)? {
                    LogOutput::StdErr { message } => {
                        stderr.write_all(&message).and_then(|_| stderr.flush())
                    }
                    other => stdout
                        .write_all(&other.into_bytes())
                        .and_then(|_| stdout.flush()),
                };
                if written.is_err() {
                    break; // our reader went away
                }
            }
            if let Some(f) = forwarder {
                f.abort();
            }
            let info = api.inspect_exec(&exec.id).await.map_err(fail)?;
            Ok(info.exit_code.unwrap_or(-1))
        })
    }
}

fn forward_input(mut stdin: impl Read, tx: &tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return, // dropping tx ends the input
            Ok(n) => {
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        }
    }
}
