//! The `alpy` command: tools around test beds.
//!
//! ```text
//! alpy doctor                      # is this machine ready? one line per requirement
//! alpy doctor --json               # the same as JSON
//! alpy gc                          # remove what dead runs left, and say what
//! alpy up topologies/forward.toml  # stand a bed up; it stays until `alpy down`
//! alpy ls                          # this user's beds
//! alpy exec ID client -- ping -c 1 192.168.2.2
//! alpy qmp ID query-status
//! alpy capture ID client | tcpdump -n -r -
//! alpy down ID                     # or --all
//! alpy graph topologies/forward.toml -o forward.dot [--svg forward.svg]
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// alpy: a test harness for network virtual appliances.
#[derive(Parser)]
#[command(name = "alpy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that this machine can run test beds, and say how to fix what
    /// is missing. Exits 1 when a needed item fails (warnings do not count).
    ///
    /// Example: `alpy doctor`, or `alpy doctor --json | jq '.checks[]'`.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the containers and temporary directories of runs whose owner
    /// process is dead (the reaper every test bed also runs), and list them.
    ///
    /// Example: `alpy gc`, or `alpy gc --json`.
    Gc {
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stand up the test bed of a topology file and keep it running until
    /// `alpy down`: prints its id, how to reach its nodes, its artifacts.
    ///
    /// Example: `alpy up topologies/forward.toml`.
    Up {
        /// The topology file.
        file: std::path::PathBuf,
        /// How long the bed may take to come up, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// The supervisor of a bed stood up by `alpy up` (not for direct use).
    #[command(hide = true)]
    Supervise {
        /// The bed's id.
        #[arg(long)]
        id: String,
        /// Boot timeout, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The topology file.
        file: std::path::PathBuf,
    },
    /// List this user's test beds stood up by `alpy up`.
    ///
    /// Example: `alpy ls`, or `alpy ls --json`.
    Ls {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a node's network namespace (in a tools container);
    /// exits with the command's code.
    ///
    /// Example: `alpy exec 3f2a9c client -- ping -c 1 192.168.2.2`.
    Exec {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// The node's name (its link's name, or node<i>).
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Take a bed (or all of this user's beds) down; waits until it is gone.
    ///
    /// Example: `alpy down 3f2a9c`, or `alpy down --all`.
    Down {
        /// The bed's id (a unique prefix will do).
        id: Option<String>,
        /// Every bed of this user.
        #[arg(long)]
        all: bool,
    },
    /// Send a QMP command to a bed's QEMU; prints the JSON it returns.
    ///
    /// Example: `alpy qmp 3f2a9c query-status`, or
    /// `alpy qmp 3f2a9c set_link '{"name": "nic1", "up": false}'`.
    Qmp {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// The QMP command.
        command: String,
        /// Its arguments, as a JSON object.
        arguments: Option<String>,
    },
    /// Follow a link's capture live, as pcap on standard output (pipe it
    /// into `tcpdump -r -` or Wireshark), until the bed goes down or the
    /// reader goes away.
    ///
    /// Example: `alpy capture 3f2a9c client | tcpdump -n -r -`.
    Capture {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// The link: its name, or its index.
        link: String,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Draw a topology file as a Graphviz graph (DOT), and as SVG where
    /// Graphviz's `dot` is installed.
    ///
    /// Example: `alpy graph topologies/forward.toml --svg forward.svg`.
    Graph {
        /// The topology file.
        file: std::path::PathBuf,
        /// Write the DOT here (default: standard output).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Also render it to this SVG file (needs `dot`, Debian package graphviz).
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
    },
}

fn gc(json: bool) -> alpy::Result<()> {
    let docker = alpy::net::Docker::connect()?;
    let reaped = alpy::bed::reap::reap(&docker)?;
    if json {
        let v = serde_json::json!({
            "containers": reaped.containers,
            "dirs": reaped.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    for c in &reaped.containers {
        println!("removed container {c}");
    }
    for d in &reaped.dirs {
        println!("removed directory {}", d.display());
    }
    println!(
        "alpy gc: removed {} container(s) and {} directory(ies) of dead runs",
        reaped.containers.len(),
        reaped.dirs.len()
    );
    Ok(())
}

fn graph(
    file: &std::path::Path,
    output: Option<&std::path::Path>,
    svg: Option<&std::path::Path>,
) -> alpy::Result<()> {
    let dot = alpy::bed::topology::Topology::load(file)?.dot();
    match output {
        Some(p) => std::fs::write(p, &dot)
            .map_err(|e| alpy::Error::io(format!("write {}", p.display()), e))?,
        None => print!("{dot}"),
    }
    if let Some(svg) = svg {
        use std::io::Write;
        let mut child = std::process::Command::new("dot")
            .args(["-Tsvg", "-o"])
            .arg(svg)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| alpy::Error::io("run Graphviz's dot (apt-get install graphviz)", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(dot.as_bytes())
                .map_err(|e| alpy::Error::io("feed dot", e))?;
        }
        let status = child
            .wait()
            .map_err(|e| alpy::Error::io("wait for dot", e))?;
        if !status.success() {
            return Err(alpy::Error::CommandFailed {
                what: format!("dot -Tsvg -o {}", svg.display()),
                status: status.to_string(),
                output: String::new(),
            });
        }
    }
    Ok(())
}

/// Stands a bed up in a supervisor process and returns once it is ready.
fn up(file: &std::path::Path, timeout: u64) -> alpy::Result<()> {
    use std::os::unix::process::CommandExt;
    let id = alpy::run::RunId::new().to_string();
    let dir = alpy::bed::registry::bed_dir(&id)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| alpy::Error::io(format!("create {}", dir.display()), e))?;
    let log_path = dir.join("supervisor.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| alpy::Error::io(format!("create {}", log_path.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| alpy::Error::io("clone the log", e))?;
    let exe = std::env::current_exe().map_err(|e| alpy::Error::io("find the alpy binary", e))?;
    let file = std::fs::canonicalize(file)
        .map_err(|e| alpy::Error::io(format!("find {}", file.display()), e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["supervise", "--id", &id, "--timeout", &timeout.to_string()])
        .arg(&file)
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
    loop {
        if let Ok(info) = alpy::bed::registry::find(&id) {
            println!("bed {} ({}) is up", info.id, info.name);
            println!("  artifacts:  {}", info.artifacts.display());
            for (node, _) in &info.nodes {
                println!("  a node:     alpy exec {} {node} -- ip addr", info.id);
            }
            println!("  take down:  alpy down {}", info.id);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(alpy::Error::CommandFailed {
                what: format!("standing up {}", file.display()),
                status: status.to_string(),
                output: alpy::util::tail_lines(&text, 20),
            });
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(alpy::Error::Timeout {
                what: format!("{} to come up", file.display()),
                timeout: std::time::Duration::from_secs(timeout),
                tail: alpy::util::tail_lines(
                    &std::fs::read_to_string(&log_path).unwrap_or_default(),
                    20,
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The supervisor: owns the bed until `alpy down`.
fn supervise(id: &str, file: &std::path::Path, timeout: u64) -> alpy::Result<()> {
    alpy::logging::init();
    let dir = alpy::bed::registry::bed_dir(id)?;
    let t = alpy::TestBed::from_topology(file, std::time::Duration::from_secs(timeout))?;
    let nodes = t
        .bed
        .nodes_info()
        .into_iter()
        .collect::<Vec<(String, String)>>();
    let info = alpy::bed::registry::BedInfo {
        id: id.to_string(),
        name: t.bed.name().to_string(),
        topology: file.to_path_buf(),
        supervisor_pid: std::process::id(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        artifacts: t.bed.artifacts_dir().to_path_buf(),
        nodes,
    };
    let published = alpy::bed::registry::Published::new(&dir, &info)?;
    log::info!("bed {id} is up; waiting for `alpy down {id}`");
    let mut t = t;
    let reply = published.serve_until_down(|line| {
        let Some(rest) = line.strip_prefix("qmp ") else {
            return Err(alpy::Error::Config(format!(
                "unknown command {line:?} (known: qmp, down)"
            )));
        };
        let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let args: Option<serde_json::Value> = if args.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(args).map_err(|e| {
                alpy::Error::Config(format!("QMP arguments must be a JSON object: {e}"))
            })?)
        };
        Ok(t.bed.qmp()?.execute(command, args)?.to_string())
    });
    let closed = t.close();
    published.withdraw();
    if let Ok(mut s) = reply {
        use std::io::Write;
        let _ = writeln!(s, "{}", if closed.is_ok() { "ok" } else { "error" });
    }
    closed
}

/// Runs a command in a node's namespace (in a tools container) and exits
/// with its code.
fn exec(id: &str, node: &str, cmd: &[String]) -> alpy::Result<i32> {
    let info = alpy::bed::registry::find(id)?;
    let (_, container) =
        info.nodes
            .iter()
            .find(|(n, _)| n == node)
            .ok_or_else(|| alpy::Error::NotFound {
                what: format!("node {node} of bed {}", info.id),
                hint: format!(
                    "its nodes are {}",
                    info.nodes
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
    let docker = alpy::net::Docker::connect()?;
    let run = alpy::run::RunId::new();
    let spec = alpy::net::docker::ContainerSpec {
        image: alpy::TOOLS_IMAGE.into(),
        name: run.name("exec"),
        cmd: cmd.to_vec(),
        network_mode: Some(format!("container:{container}")),
        cap_add: vec!["NET_ADMIN".into(), "NET_RAW".into()],
        labels: alpy::run::owner_labels(&run),
        ..Default::default()
    };
    let mut c = alpy::net::Container::run(&docker, &spec, None)?;
    let out = c.wait(std::time::Duration::from_secs(3600))?;
    c.close()?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    Ok(out.status.code() as i32)
}

/// Copies link `link`'s pcap file to standard output as it grows.
fn capture(id: &str, link: &str, seconds: Option<f64>) -> alpy::Result<()> {
    use std::io::{Read, Write};
    let info = alpy::bed::registry::find(id)?;
    let index = info
        .nodes
        .iter()
        .position(|(n, _)| n == link)
        .or_else(|| link.parse::<usize>().ok().filter(|i| *i < info.nodes.len()))
        .ok_or_else(|| alpy::Error::NotFound {
            what: format!("link {link} of bed {}", info.id),
            hint: format!(
                "its links are {}",
                info.nodes
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    let path = info.artifacts.join(format!("link{index}.pcap"));
    let mut f = std::fs::File::open(&path)
        .map_err(|e| alpy::Error::io(format!("open {}", path.display()), e))?;
    let registry_entry = alpy::bed::registry::registry_dir().join(&info.id);
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

fn ls(json: bool) {
    let beds = alpy::bed::registry::list();
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
        "{:<12} {:<16} {:>8} {:>7}  artifacts",
        "id", "name", "owner", "age"
    );
    for b in &beds {
        println!(
            "{:<12} {:<16} {:>8} {:>6}s  {}",
            b.id,
            b.name,
            b.supervisor_pid,
            now.saturating_sub(b.started),
            b.artifacts.display()
        );
    }
}

/// Prints an error the way the other subcommands do and fails.
fn fail(what: &str, e: &alpy::Error) -> ExitCode {
    eprintln!("alpy {what}: error: {e}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { json } => {
            let report = alpy::doctor::run(&alpy::doctor::Options::default());
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("alpy doctor: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.render());
            }
            if report.ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Gc { json } => match gc(json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("gc", &e),
        },
        Command::Up { file, timeout } => match up(&file, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("up", &e),
        },
        Command::Supervise { id, timeout, file } => match supervise(&id, &file, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("supervise", &e),
        },
        Command::Ls { json } => {
            ls(json);
            ExitCode::SUCCESS
        }
        Command::Exec { id, node, cmd } => match exec(&id, &node, &cmd) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => fail("exec", &e),
        },
        Command::Down { id, all } => {
            let beds = match (&id, all) {
                (_, true) => Ok(alpy::bed::registry::list()),
                (Some(id), false) => alpy::bed::registry::find(id).map(|b| vec![b]),
                (None, false) => Err(alpy::Error::Config("say which bed (an id) or --all".into())),
            };
            let mut code = ExitCode::SUCCESS;
            match beds {
                Ok(beds) => {
                    for b in beds {
                        match alpy::bed::registry::down(&b, std::time::Duration::from_secs(120)) {
                            Ok(()) => println!("bed {} is down", b.id),
                            Err(e) => code = fail("down", &e),
                        }
                    }
                }
                Err(e) => code = fail("down", &e),
            }
            code
        }
        Command::Qmp {
            id,
            command,
            arguments,
        } => {
            let line = format!("qmp {command} {}", arguments.unwrap_or_default());
            match alpy::bed::registry::find(&id)
                .and_then(|b| alpy::bed::registry::request(&b, line.trim_end()))
            {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("qmp", &e),
            }
        }
        Command::Capture { id, link, seconds } => match capture(&id, &link, seconds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("capture", &e),
        },
        Command::Graph { file, output, svg } => {
            match graph(&file, output.as_deref(), svg.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("graph", &e),
            }
        }
    }
}
