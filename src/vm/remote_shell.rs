//! A remote shell on the serial console: run programs and get their exit
//! codes and output, upload text and binary files, upload and run scripts.
//!
//! [`RemoteShell::attach`] turns terminal echo off (which also turns off
//! busybox's and bash's line editing, so long lines are never wrapped or
//! redrawn) and sets a private prompt. Each command is followed by a marker
//! carrying its exit code, so output and status are read exactly.

use std::cell::RefCell;
use std::time::Duration;

use base64::Engine;

use crate::commands::Commands;
use crate::error::{Error, Result};
use crate::output::{ExitStatus, Output};
use crate::run::RunId;
use crate::util::shell_quote;
use crate::vm::console::{Console, Pattern};

/// A shell on a console. Borrow the console for as long as you use it;
/// keep its [`ShellState`] to come back later without attaching again.
pub struct RemoteShell<'c> {
    /// In a cell: the [`Commands`] verbs take `&self`.
    console: RefCell<&'c mut Console>,
    state: ShellState,
}

impl ShellState {
    /// A shell whose private prompt is `prompt` (set by an earlier
    /// [`RemoteShell::attach`], e.g. before a saved state was taken).
    pub fn from_prompt(prompt: &str, timeout: Duration) -> ShellState {
        ShellState {
            prompt: prompt.to_string(),
            timeout,
            raw_ok: None,
        }
    }

    /// The private prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }
}

/// What a [`RemoteShell`] set up on the guest's shell (its private prompt)
/// and learned about it: enough to use it again with
/// [`RemoteShell::resume`], without typing `stty` and `PS1` again.
#[derive(Debug, Clone)]
pub struct ShellState {
    prompt: String,
    timeout: Duration,
    /// Whether raw binary uploads work here (probed on first use).
    raw_ok: Option<bool>,
}

/// Bytes of binary payload per here-document line (base64 of 57 bytes is a
/// 76-character line, well under the tty's 4095-byte line limit).
const B64_CHUNK: usize = 57 * 64;

impl<'c> RemoteShell<'c> {
    /// Takes over a shell that is at its prompt: turns echo off and sets a
    /// private prompt, then waits for that prompt.
    pub fn attach(console: &'c mut Console) -> Result<Self> {
        let tag = RunId::new();
        let prompt = format!("@alpy-{tag}# ");
        let timeout = console.timeout();
        // The prompt is split by quotes in what we type, so the terminal's
        // echo of this line can never match it.
        console.send_line(&format!(
            "stty -echo 2>/dev/null; set +o emacs +o vi 2>/dev/null; PS2=''; PS1='@alpy-{tag}''# '"
        ))?;
        console.expect(&Pattern::exact(&prompt), timeout)?;
        Ok(RemoteShell {
            console: RefCell::new(console),
            state: ShellState {
                prompt,
                timeout,
                raw_ok: None,
            },
        })
    }

    /// Uses a shell attached before (its prompt is still set).
    pub fn resume(console: &'c mut Console, state: ShellState) -> Self {
        RemoteShell {
            console: RefCell::new(console),
            state,
        }
    }

    /// The shell kept in `kept`: attached on first use (and kept there),
    /// resumed after. What a machine or a board calls for its `shell()`.
    pub fn attach_once(console: &'c mut Console, kept: &mut Option<ShellState>) -> Result<Self> {
        match kept {
            Some(s) => Ok(RemoteShell::resume(console, s.clone())),
            None => {
                let shell = RemoteShell::attach(console)?;
                *kept = Some(shell.state());
                Ok(shell)
            }
        }
    }

    /// What to keep to [`RemoteShell::resume`] later.
    pub fn state(&self) -> ShellState {
        self.state.clone()
    }

    /// Sets the deadline for each command.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.state.timeout = timeout;
    }

    /// The console underneath.
    pub fn console(&mut self) -> &mut Console {
        self.console.get_mut()
    }

    /// [`Commands::execute_within`] under its earlier name.
    pub fn execute_with_timeout(&self, command: &str, timeout: Duration) -> Result<Output> {
        self.execute_within(command, timeout)
    }

    /// Writes `text` to `path` in the guest with a here-document. Text with
    /// control characters (which the terminal would interpret) is sent as
    /// binary instead.
    pub fn upload_text(&mut self, path: &str, text: &str) -> Result<()> {
        let has_controls = text
            .bytes()
            .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f);
        let has_long_line = text.lines().any(|l| l.len() > 1000);
        if has_controls || has_long_line {
            return self.upload_binary(path, text.as_bytes());
        }
        let delim = format!("ALPY_EOF_{}", RunId::new());
        // `head -c` keeps the exact size: the here-document always adds a
        // final newline.
        let mut body = format!(
            "head -c {} > {} <<'{delim}'\n",
            text.len(),
            shell_quote(path)
        );
        body.push_str(text);
        if !text.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&delim);
        self.send_script_and_check(&body, &format!("upload of {path}"))
    }

    /// Writes `data` to `path` in the guest. Bytes go raw (the terminal is
    /// switched to raw mode for the transfer, so every byte value passes
    /// untouched and nothing is spent on encoding); a guest without `stty`
    /// and `head` gets base64 instead.
    pub fn upload_binary(&mut self, path: &str, data: &[u8]) -> Result<()> {
        if self.state.raw_ok.is_none() {
            let probe = self.execute("command -v stty >/dev/null && command -v head >/dev/null")?;
            self.state.raw_ok = Some(probe.status.success());
        }
        if self.state.raw_ok == Some(true) {
            self.upload_raw(path, data)
        } else {
            self.upload_base64(path, data)
        }
    }

    fn upload_raw(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let timeout = self.state.timeout.max(Duration::from_secs(60));
        // The marker is split by quotes in what we type, so only the
        // printf's output can match it; data is sent only once the
        // terminal is raw, since bytes that arrive earlier get cooked.
        self.console.get_mut().send_line(&format!(
            "stty raw -echo && printf '@alpy-''raw@' && head -c {} > {}; rc=$?; stty -raw -echo; [ $rc = 0 ]",
            data.len(),
            shell_quote(path)
        ))?;
        self.console
            .get_mut()
            .expect(&Pattern::exact("@alpy-raw@"), timeout)?;
        self.console.get_mut().send_quiet(data)?;
        self.console
            .get_mut()
            .expect(&Pattern::exact(&self.state.prompt), timeout)?;
        self.check_last_status(&format!("upload of {path}"))
    }

    /// Writes `data` to `path` in the guest, base64-encoded in transit.
    pub fn upload_base64(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let delim = format!("ALPY_EOF_{}", RunId::new());
        let mut body = format!("base64 -d > {} <<'{delim}'\n", shell_quote(path));
        let b64 = base64::engine::general_purpose::STANDARD;
        for chunk in data.chunks(B64_CHUNK) {
            let enc = b64.encode(chunk);
            for line in enc.as_bytes().chunks(76) {
                body.push_str(std::str::from_utf8(line).unwrap_or_default());
                body.push('\n');
            }
        }
        body.push_str(&delim);
        self.send_script_and_check(&body, &format!("upload of {path}"))
    }

    /// Sends a multi-line shell text, then checks its exit code.
    fn send_script_and_check(&mut self, body: &str, what: &str) -> Result<()> {
        let timeout = self.state.timeout.max(Duration::from_secs(60));
        self.console.get_mut().send(body.as_bytes())?;
        self.console.get_mut().send("\n")?;
        // The here-document command prints the prompt when it finishes.
        self.console
            .get_mut()
            .expect(&Pattern::exact(&self.state.prompt), timeout)?;
        self.check_last_status(what)
    }

    /// Fails unless the last command exited 0.
    fn check_last_status(&mut self, what: &str) -> Result<()> {
        let out = self.execute("echo $?")?;
        match out.stdout_str().trim() {
            "0" => Ok(()),
            code => Err(Error::CommandFailed {
                what: what.to_string(),
                status: format!("exit code {code}"),
                output: String::new(),
            }),
        }
    }

    /// Uploads `script` to a temporary file and runs it with `sh`, passing
    /// `args` (shell-quoted).
    pub fn upload_and_run(&mut self, script: &str, args: &[&str]) -> Result<Output> {
        let path = format!("/tmp/alpy-script-{}.sh", RunId::new());
        self.upload_text(&path, script)?;
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let out = self.execute(&format!("sh {path} {}", quoted.join(" ")))?;
        self.execute(&format!("rm -f {path}"))?;
        Ok(out)
    }
}

/// The guest's commands, typed at its console shell. Output is what the
/// command printed on both streams, in [`Output::stdout`].
impl Commands for RemoteShell<'_> {
    fn target(&self) -> String {
        "the guest".into()
    }

    fn command_timeout(&self) -> Duration {
        self.state.timeout
    }

    fn log_scope(&self) -> Option<u64> {
        self.console.borrow().log_scope()
    }

    fn output_mark(&self) -> Option<u64> {
        Some(self.console.borrow().mark())
    }

    fn output_besides(&self, mark: u64, cmd: &str) -> Option<String> {
        let console = self.console.borrow();
        let since = lines_besides(&console.output_since(mark), cmd, &self.state.prompt);
        if !since.is_empty() {
            return Some(since);
        }
        // Nothing came during the wait: a service that failed at boot
        // said so before the shell attached. Show that part instead.
        let all = console.output_since(0);
        let boot = all.rfind(ATTACH_MARK).map_or("", |at| &all[..at]);
        let boot = lines_besides(boot, cmd, &self.state.prompt);
        Some(if boot.is_empty() {
            boot
        } else {
            format!(
                "(nothing during the wait; before the shell attached, the console showed:)\n{boot}"
            )
        })
    }

    fn execute_within(&self, command: &str, timeout: Duration) -> Result<Output> {
        if command.contains('\n') {
            return Err(Error::Config(
                "a command is one line; upload a script for more (RemoteShell::upload_and_run)"
                    .into(),
            ));
        }
        let mut console = self.console.borrow_mut();
        // `%d` where the marker expects digits: the command line itself can
        // never match the marker.
        // A command sent to the background (`daemon &`) takes no `;`
        // after it: `&;` is a syntax error.
        let trimmed = command.trim_end();
        let background =
            trimmed.ends_with('&') && !trimmed.ends_with("&&") && !trimmed.ends_with("\\&");
        let sep = if background { " " } else { "; " };
        console.send_line(&format!("{trimmed}{sep}printf '\\n@rc@%d@rc@\\n' \"$?\""))?;
        let done = console.expect(&Pattern::regex(r"\r?\n@rc@(\d+)@rc@\r?\n")?, timeout)?;
        console.expect(&Pattern::exact(&self.state.prompt), timeout)?;
        let code = done
            .group(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error::Internal("bad exit code marker".into()))?;
        Ok(Output {
            status: ExitStatus(code),
            stdout: done.before_str().replace("\r\n", "\n").into_bytes(),
            stderr: Vec::new(),
        })
    }
}

/// The start of the line [`RemoteShell::attach`] sends: where a console's
/// boot output ends.
const ATTACH_MARK: &str = "stty -echo 2>/dev/null";

/// The lines of console `text` that are not a command exchange: not the
/// echo of `cmd`, its exit-code marker or a `prompt` before them; each
/// once, the last 15, trimmed, control bytes escaped.
fn lines_besides(text: &str, cmd: &str, prompt: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        // What follows a prompt on its line (a message that came while
        // the shell waited) counts; the prompt does not.
        let line = match prompt.trim() {
            "" => line,
            p => line.trim_start().strip_prefix(p).unwrap_or(line),
        }
        .trim();
        let ours = line.is_empty() || line.contains(cmd.trim()) || line.contains("@rc@");
        if ours {
            continue;
        }
        let shown: String = line.chars().flat_map(char::escape_debug).collect();
        seen.retain(|l| *l != shown);
        seen.push(shown);
    }
    let start = seen.len().saturating_sub(15);
    seen[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::lines_besides;

    #[test]
    fn a_wait_shows_the_lines_that_are_not_its_own() {
        let text = "test -e /x; printf '\\n@rc@%d@rc@\\n' \"$?\"\r\n\r\n@rc@1@rc@\r\nguest# \
                    dnsmasq: failed to open pidfile\r\ntest -e /x; printf ..\r\n@rc@1@rc@\r\nguest# \
                    dnsmasq: failed to open pidfile\r\n\x1b[0m\r\n";
        let shown = lines_besides(text, "test -e /x", "guest# ");
        assert_eq!(shown, "dnsmasq: failed to open pidfile\n\\u{1b}[0m");
    }
}
