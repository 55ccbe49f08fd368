//! A board's script (its class's setup or teardown script, or health
//! check): a command (no shell), run with the board's attributes in its
//! environment, in its own process group, which is killed past its time
//! and once it ends (a child left holding the output goes too). Both
//! outputs are read at once, each keeping its end; what it printed is the
//! reason a failure gives.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use alpy::lab::wire::BoardJob;

use crate::config::BoardClass;

/// How much of each output is kept.
const KEEP: usize = 4096;

/// How a script went: passed, and what it printed or why it did not end.
pub struct Outcome {
    /// Exit status 0 within its time.
    pub passed: bool,
    /// The end of its output, or why it failed to run or end.
    pub output: String,
}

/// The console's address as a script reads it: `tcp:HOST:PORT`,
/// `telnet:HOST:PORT`, `rfc2217:HOST:PORT` or `serial:PATH`.
fn console_address(board: &alpy::board::BoardSpec) -> String {
    use alpy::board::console::ConsolePort;
    match board.console.port() {
        ConsolePort::Tcp(a) => format!("tcp:{a}"),
        ConsolePort::Telnet(a) => format!("telnet:{a}"),
        ConsolePort::Rfc2217 { addr, .. } => format!("rfc2217:{addr}"),
        ConsolePort::Serial { path, .. } => format!("serial:{}", path.display()),
    }
}

/// Reads `from` to its end, keeping the last [`KEEP`] bytes.
async fn keep_end(from: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut from) = from else {
        return Vec::new();
    };
    let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    let from = kept.len().saturating_sub(KEEP);
    kept.split_off(from)
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// What `job` is called in messages.
fn called(job: BoardJob) -> &'static str {
    match job {
        BoardJob::Setup => "the setup script",
        BoardJob::Teardown => "the teardown script",
        BoardJob::Check => "the health check",
    }
}

/// The variable that marks a script (and what it starts) as this
/// server's: its value names the server's state directory.
const MARK: &str = "ALPY_LAB_SCRIPT_OF";

/// This server's mark, from its state directory.
pub fn mark_of(state_dir: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes())[..8])
}

/// Kills what scripts of an earlier run of this server left running (the
/// server died; their process groups did not): every process whose
/// environment carries this server's mark. How many were killed.
pub fn kill_left_over(mark: &str) -> usize {
    let want = format!("{MARK}={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    killed
}

/// Runs `class`'s `job` for `board` (reserved by the session with handle
/// `session`, for a setup or teardown), marked as this server's (`mark`).
pub async fn run(
    board: &alpy::board::BoardSpec,
    class: &BoardClass,
    job: BoardJob,
    session: Option<&str>,
    mark: &str,
) -> Outcome {
    let (argv, timeout_s) = class.job(job);
    let what = called(job);
    let Some((program, args)) = argv.split_first() else {
        return Outcome {
            passed: false,
            output: format!("class {} has no {}", class.name, BoardClass::key(job)),
        };
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_clear();
    for keep in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("ALPY_BOARD", &board.name)
        .env("ALPY_BOARD_CLASS", &board.class)
        .env("ALPY_BOARD_TAGS", board.tags.join(","))
        .env(
            "ALPY_BOARD_PORTS",
            board
                .ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("ALPY_BOARD_CONSOLE", console_address(board))
        .env("ALPY_BOARD_JOB", job.as_str())
        .env("ALPY_SESSION", session.unwrap_or_default())
        .env(MARK, mark)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                passed: false,
                output: format!("{what} {program:?} did not start: {e}"),
            }
        }
    };
    let pid = child.id();
    let out = tokio::spawn(keep_end(child.stdout.take()));
    let err = tokio::spawn(keep_end(child.stderr.take()));
    let limit = Duration::from_secs_f64(timeout_s);
    let ended = tokio::time::timeout(limit, child.wait()).await;
    // Its whole group, in every case: a child it left would hold the
    // output open (and the board) after it.
    kill_group(pid);
    let mut text = Vec::new();
    for part in [out, err] {
        if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(2), part).await {
            text.extend_from_slice(&bytes);
        }
    }
    match ended {
        Ok(Ok(status)) => Outcome {
            passed: status.success(),
            output: format!("{}{}", tail(&text), exit_note(&status)),
        },
        Ok(Err(e)) => Outcome {
            passed: false,
            output: format!("waiting for {what} failed: {e}"),
        },
        Err(_) => Outcome {
            passed: false,
            output: format!(
                "{what} did not end within {:.0} s ({}){}",
                limit.as_secs_f64(),
                match job {
                    BoardJob::Check => "health_check_timeout_s",
                    _ => "script_timeout_s",
                },
                if text.is_empty() {
                    String::new()
                } else {
                    format!("; it printed: {}", tail(&text))
                }
            ),
        },
    }
}

/// The last [`KEEP`] bytes of `text`, trimmed.
fn tail(text: &[u8]) -> String {
    let from = text.len().saturating_sub(KEEP);
    String::from_utf8_lossy(&text[from..]).trim().to_string()
}

fn exit_note(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => String::new(),
        (Some(c), _) => format!(" (exit status {c})"),
        (None, Some(s)) => format!(" (killed by signal {s})"),
        (None, None) => " (ended)".into(),
    }
}
