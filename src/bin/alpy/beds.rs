//! The subcommands that stand beds up and reach them: `up` (with its
//! supervisor), `ls`, `capture`.

use alpy::internal::supervisor::protocol::{Reply, Request};

/// Stands a bed up in a supervisor process and returns once it is ready.
pub(crate) fn up(
    file: &std::path::Path,
    timeout: u64,
    json: bool,
    events: bool,
) -> alpy::Result<()> {
    use std::os::unix::process::CommandExt;
    let id = alpy::internal::run::RunId::new().to_string();
    let dir = alpy::internal::supervisor::registry::bed_dir(&id)?;
    let log_path = dir.join("supervisor.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| alpy::Error::io(format!("create {}", log_path.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| alpy::Error::io("clone the log", e))?;
    let exe = std::env::current_exe().map_err(|e| alpy::Error::io("find the alpy binary", e))?;
    let file = std::fs::canonicalize(file)
        .map_err(|e| alpy::Error::io(format!("find {}", file.display()), e))?;
    if alpy::settings::Settings::from_env().lab_url().is_some() {
        // `alpy up` stands beds up on this host (it is what a lab server
        // runs): a test's remote switch must not send it elsewhere.
        eprintln!(
            "alpy up: {} is set; ignored here: `alpy up` stands the bed up on this host",
            alpy::lab::URL_VAR
        );
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["supervise", "--id", &id, "--timeout", &timeout.to_string()])
        .arg(&file)
        .env_remove(alpy::lab::URL_VAR)
        .env_remove(alpy::lab::TOKEN_VAR)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid(2) is async-signal-safe. The supervisor must outlive
    // this command and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| alpy::Error::io("start the supervisor", e))?;
    eprintln!(
        "alpy up: standing up {} (supervisor pid {}, log {})",
        file.display(),
        child.id(),
        log_path.display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut progress = Progress::new(&dir.join(alpy::journal::FILE), events);
    loop {
        progress.show();
        if let Ok(info) = alpy::internal::supervisor::registry::find(&id) {
            progress.show();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
                return Ok(());
            }
            println!("bed {} ({}) is up", info.id, info.name);
            println!("  artifacts:  {}", info.artifacts.display());
            println!("  console:    alpy console {}   (detach: Ctrl-])", info.id);
            for (node, _) in &info.nodes {
                println!("  a node:     alpy exec {} {node} -- ip addr", info.id);
            }
            println!("  take down:  alpy down {}", info.id);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Its last steps (the one that failed) before the files go.
            progress.show();
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(alpy::Error::CommandFailed {
                what: format!("standing up {}", file.display()),
                status: status.to_string(),
                output: alpy::internal::util::tail_lines(&text, 20),
            });
        }
        if std::time::Instant::now() >= deadline {
            progress.show();
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(alpy::Error::Timeout {
                what: format!("{} to come up", file.display()),
                timeout: std::time::Duration::from_secs(timeout),
                tail: alpy::internal::util::tail_lines(
                    &std::fs::read_to_string(&log_path).unwrap_or_default(),
                    20,
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The supervisor's steps (`Create 2 nodes... done (0.23 s)`), shown on
/// stderr as they reach its events file (the bed's journal, teed), so a
/// slow boot is seen to progress.
struct Progress {
    path: std::path::PathBuf,
    /// Print each step's entry as its JSON line (`alpy up --events`).
    as_events: bool,
    events: Option<std::io::BufReader<std::fs::File>>,
    /// A line read in part (bytes: it may end inside a character).
    partial: Vec<u8>,
}

impl Progress {
    fn new(path: &std::path::Path, as_events: bool) -> Progress {
        Progress {
            path: path.to_path_buf(),
            as_events,
            events: None,
            partial: Vec::new(),
        }
    }

    /// Prints the steps written since the last call.
    fn show(&mut self) {
        use std::io::BufRead;
        if self.events.is_none() {
            // The supervisor creates it when it starts.
            self.events = std::fs::File::open(&self.path)
                .ok()
                .map(std::io::BufReader::new);
        }
        let Some(events) = self.events.as_mut() else {
            return;
        };
        while let Ok(n) = events.read_until(b'\n', &mut self.partial) {
            if n == 0 || !self.partial.ends_with(b"\n") {
                break; // the rest of a line comes later
            }
            if let Ok(entry) = serde_json::from_slice::<alpy::journal::Entry>(&self.partial) {
                match entry.event.step_line() {
                    Some(_) if self.as_events => {
                        eprint!("{}", String::from_utf8_lossy(&self.partial));
                    }
                    Some(step) => eprintln!("alpy up: {step}"),
                    None => {}
                }
            }
            self.partial.clear();
        }
    }
}

/// The supervisor: owns the bed until `alpy down`.
pub(crate) fn supervise(id: &str, file: &std::path::Path, timeout: u64) -> alpy::Result<()> {
    alpy::logging::init();
    let dir = alpy::internal::supervisor::registry::bed_dir(id)?;
    // `alpy up` follows the bed's steps there while it comes up.
    alpy::journal::tee(&dir.join(alpy::journal::FILE))?;
    let mut t = alpy::TestBed::from_topology(file, std::time::Duration::from_secs(timeout))?;
    let info = alpy::internal::supervisor::registry::BedInfo::of(&t, id, file.to_path_buf());
    let mut published = alpy::internal::supervisor::registry::Published::new(&dir, &mut t, &info)?;
    // Up: `alpy up` has what it follows; the bed's own journal goes on.
    alpy::journal::untee();
    log::info!("bed {id} is up; waiting for `alpy down {id}`");
    let mut control = alpy::internal::supervisor::control::Control::new();
    let reply = published.serve_until_down(|request| control.answer(&mut t, request));
    published.unshare_console();
    let apps = control.close();
    let closed = t.close().and(apps);
    published.withdraw();
    if let Ok(mut s) = reply {
        use std::io::Write;
        let done = match &closed {
            Ok(()) => Reply::Ok {
                value: serde_json::Value::Null,
            },
            Err(e) => Reply::Error {
                error: e.to_string(),
            },
        };
        let _ = writeln!(s, "{}", serde_json::to_string(&done).unwrap_or_default());
    }
    closed
}

/// Copies link `link`'s pcap file to standard output as it grows.
pub(crate) fn capture(id: &str, link: &str, seconds: Option<f64>) -> alpy::Result<()> {
    use std::io::{Read, Write};
    let info = alpy::internal::supervisor::registry::find(id)?;
    let index = info.index_of(link, "link", true)?;

    let path = info.capture_path(index)?;
    let mut f = std::fs::File::open(&path)
        .map_err(|e| alpy::Error::io(format!("open {}", path.display()), e))?;
    let registry_entry = alpy::internal::supervisor::registry::registry_dir().join(&info.id);
    let deadline =
        seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s));
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| alpy::Error::io(format!("read {}", path.display()), e))?;
        if n > 0 {
            if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                return Ok(()); // the reader went away
            }
            continue;
        }
        let over = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if over || !registry_entry.exists() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The machine a command names first, if its first word is one of the
/// bed's machines: (machine, the other words).
fn machine_and_rest<'w>(
    info: &alpy::internal::supervisor::registry::BedInfo,
    words: &'w [String],
    min_rest: usize,
) -> (Option<&'w str>, &'w [String]) {
    match words.split_first() {
        Some((first, rest))
            if rest.len() >= min_rest && info.machines.iter().any(|m| &m.name == first) =>
        {
            (Some(first.as_str()), rest)
        }
        _ => (None, words),
    }
}

/// The error for words that do not fit `usage`, naming the machines.
fn bad_words(
    info: &alpy::internal::supervisor::registry::BedInfo,
    words: &[String],
    usage: &str,
) -> alpy::Error {
    let machines: Vec<&str> = info.machines.iter().map(|m| m.name.as_str()).collect();
    alpy::Error::Config(format!(
        "expected {usage}, got {words:?} (machines: {})",
        machines.join(", ")
    ))
}

/// QMP `command` on `machine` (the DUT if `None`) through bed `info`'s
/// supervisor: its `return`, as JSON text.
fn qmp_request(
    info: &alpy::internal::supervisor::registry::BedInfo,
    machine: Option<&str>,
    command: &str,
    arguments: Option<&str>,
) -> alpy::Result<String> {
    let arguments = arguments
        .map(|a| {
            serde_json::from_str::<serde_json::Value>(a).map_err(|e| {
                alpy::Error::Config(format!(
                    "QMP arguments must be a JSON object, like '{{\"device\": \"n0\"}}': {e}"
                ))
            })
        })
        .transpose()?;
    let request = Request::Qmp {
        machine: machine.map(str::to_string),
        command: command.to_string(),
        arguments,
    };
    alpy::internal::supervisor::registry::request(info, &request).map(|v| v.to_string())
}

/// `alpy qmp ID [MACHINE] COMMAND [ARGUMENTS]`: the command's `return`.
pub(crate) fn qmp(id: &str, words: &[String]) -> alpy::Result<String> {
    let info = alpy::internal::supervisor::registry::find(id)?;
    let (machine, rest) = machine_and_rest(&info, words, 1);
    // `r9 query-status` is a machine that is not there, not a command
    // with arguments (those are a JSON object).
    let is_args = |a: &str| a.trim_start().starts_with('{');
    if let (None, [first, second, ..]) = (machine, words) {
        if words.len() == 3 || !is_args(second) {
            info.machine_index(Some(first))?;
        }
    }
    let (command, arguments) = match rest {
        [c] => (c, None),
        [c, a] => (c, Some(a.as_str())),
        _ => {
            return Err(bad_words(
                &info,
                words,
                "[MACHINE] COMMAND [ARGUMENTS-JSON]",
            ))
        }
    };
    info.machine_index(machine)?;
    qmp_request(&info, machine, command, arguments)
}

/// `alpy power ID [MACHINE] on|off|cycle|status`.
pub(crate) fn power(id: &str, words: &[String]) -> alpy::Result<String> {
    let info = alpy::internal::supervisor::registry::find(id)?;
    let (machine, rest) = machine_and_rest(&info, words, 1);
    if let (None, [first, _]) = (machine, words) {
        info.machine_index(Some(first))?;
    }
    let command = match rest {
        [a] if a == "on" => "cont",
        [a] if a == "off" => "system_powerdown",
        [a] if a == "cycle" => "system_reset",
        [a] if a == "status" => "query-status",
        _ => return Err(bad_words(&info, words, "[MACHINE] on|off|cycle|status")),
    };
    info.machine_index(machine)?;
    qmp_request(&info, machine, command, None)
}

pub(crate) fn ls(json: bool) {
    let beds = alpy::internal::supervisor::registry::list();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&beds).unwrap_or_default()
        );
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "{:<12} {:<16} {:>8} {:>7}  {:<6} {:<16} artifacts",
        "id", "name", "owner", "age", "state", "machines"
    );
    for b in &beds {
        let machines: Vec<&str> = b.machines.iter().map(|m| m.name.as_str()).collect();
        println!(
            "{:<12} {:<16} {:>8} {:>6}s  {:<6} {:<16} {}",
            b.id,
            b.name,
            b.supervisor_pid,
            now.saturating_sub(b.started),
            b.state,
            machines.join(","),
            b.artifacts.display()
        );
    }
}
