//! The `alpy` command: tools around test beds.
//!
//! ```text
//! alpy doctor                      # is this machine ready? one line per requirement
//! alpy doctor --json               # the same as JSON
//! alpy gc                          # remove what dead runs left, and say what
//! alpy up topologies/forward.toml  # stand a bed up; it stays until `alpy down`
//! alpy ls                          # this user's beds
//! alpy exec ID client -- ping -c 1 192.168.2.2
//! alpy exec -it ID client -- bash  # a shell in the node's namespace
//! alpy console ID                  # the DUT's serial console; Ctrl-] detaches
//! alpy qmp ID query-status
//! alpy capture ID client | tcpdump -n -r -
//! alpy down ID                     # or --all
//! alpy graph topologies/forward.toml -o forward.dot [--svg forward.svg]
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod attach;
mod beds;
mod image;
mod lab;
mod tools;

use attach::{console, exec};
use beds::{capture, ls, supervise, up};
use tools::{gc, graph};

/// alpy: a test harness for network virtual appliances.
#[derive(Parser)]
#[command(name = "alpy", version, about, after_help = alpy::settings::help())]
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
    /// Example: `alpy up topologies/forward.toml`, or
    /// `ID=$(alpy up --json topologies/forward.toml | jq -r .id)`.
    ///
    /// Artifacts (logs, captures, report.html) go to
    /// `$ALPY_ARTIFACTS/<bed>-<run>`; unset, to `<target>/alpy/` of the
    /// cargo build this `alpy` came from, else the temporary directory.
    /// Not the current directory: set ALPY_ARTIFACTS=$PWD/artifacts to
    /// have them here.
    Up {
        /// The topology file.
        file: std::path::PathBuf,
        /// How long the bed may take to come up, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Print the bed's description (id, nodes, artifacts, console) as JSON.
        #[arg(long)]
        json: bool,
        /// Show progress on stderr as the bed's typed step events (one
        /// events.jsonl entry per line) instead of text: for programs
        /// (alpy-lab reads them).
        #[arg(long)]
        events: bool,
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
    /// output streams as it comes, and it exits with the command's code.
    ///
    /// Example: `alpy exec 3f2a9c client -- ping -c 1 192.168.2.2`, or
    /// `alpy exec -it 3f2a9c client -- bash` for a shell there.
    Exec {
        /// Send standard input to the command (until it ends).
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal (standard input must be one).
        #[arg(short, long)]
        tty: bool,
        /// The bed's id (a unique prefix will do).
        id: String,
        /// The node's name (its link's name, or node<i>).
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Attach this terminal to a bed's serial console (the DUT's), until
    /// the escape key (Ctrl-] by default) or the end of input. Everything
    /// the console prints reaches every attached client, the bed's log and
    /// console.log; only one client types at a time (the first to type,
    /// until it detaches).
    ///
    /// Example: `alpy console 3f2a9c`, `alpy console --read-only 3f2a9c`,
    /// or `alpy console 3f2a9c r2` for machine r2 of a bed of several.
    Console {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// The machine (default: the first, the DUT).
        machine: Option<String>,
        /// Only watch: never type.
        #[arg(long)]
        read_only: bool,
        /// The key that detaches: ^] (default), ^A .. ^Z, or ctrl-x.
        #[arg(long, default_value = "^]")]
        escape: String,
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
    /// Send a QMP command to a machine's QEMU (the DUT's unless a machine
    /// is named first); prints the JSON it returns.
    ///
    /// Example: `alpy qmp 3f2a9c query-status`,
    /// `alpy qmp 3f2a9c set_link '{"name": "nic1", "up": false}'`, or
    /// `alpy qmp 3f2a9c r1 query-status` for machine r1.
    Qmp {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// [MACHINE] COMMAND [ARGUMENTS-JSON]
        #[arg(required = true, num_args = 1..=3)]
        words: Vec<String>,
    },
    /// Power a machine (the DUT unless named) on (resume), off (the ACPI
    /// button), cycle (reset), or show its status.
    ///
    /// Example: `alpy power 3f2a9c status`, or `alpy power 3f2a9c r2 cycle`.
    Power {
        /// The bed's id (a unique prefix will do).
        id: String,
        /// [MACHINE] on|off|cycle|status
        #[arg(required = true, num_args = 1..=2)]
        words: Vec<String>,
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
    /// A lab server (alpy-lab): its state (`status`, `queue`), and the
    /// operator's actions (`destroy`, `end`, `move`). The server and token
    /// come from --url and --token, else REMOTE_LAB_URL and
    /// REMOTE_LAB_TOKEN; --json prints the API's own shapes.
    ///
    /// Example: `alpy lab status`, `alpy lab move 0123456789ab 1`, or
    /// `alpy lab destroy 3f2a9c... --force`.
    Lab {
        #[command(flatten)]
        target: lab::Target,
        #[command(subcommand)]
        what: lab::LabCommand,
    },
    /// Build appliance images from TOML recipes (Debian packages, files,
    /// kernel modules, a login): `alpy image build RECIPE`.
    Image {
        #[command(subcommand)]
        what: image::ImageCommand,
    },
    /// Draw a topology file as a Graphviz graph (DOT), and as SVG (drawn
    /// by alpy itself: no Graphviz needed; every bed also writes its
    /// artifacts' topology.svg).
    ///
    /// Example: `alpy graph topologies/forward.toml --svg forward.svg`.
    Graph {
        /// The topology file.
        file: std::path::PathBuf,
        /// Write the DOT here (default: standard output).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Also draw it into this SVG file.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
    },
    /// Write a bed's report.html again from its artifacts directory (a
    /// killed run's is marked killed), or with --suite, one page for every
    /// bed under an artifacts root.
    ///
    /// Example: `alpy report target/alpy/forward-a285bd7441`;
    /// `alpy report --suite target/alpy --html suite.html`.
    Report {
        /// A bed's artifacts directory, or with --suite an artifacts root.
        dir: std::path::PathBuf,
        /// DIR is a root: write a suite page of all its beds.
        #[arg(long)]
        suite: bool,
        /// Where the suite page goes (default: DIR/index.html).
        #[arg(long)]
        html: Option<std::path::PathBuf>,
    },
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
        Command::Up {
            file,
            timeout,
            json,
            events,
        } => match up(&file, timeout, json, events) {
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
        Command::Exec {
            interactive,
            tty,
            id,
            node,
            cmd,
        } => match exec(&id, &node, &cmd, interactive, tty) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => fail("exec", &e),
        },
        Command::Console {
            id,
            machine,
            read_only,
            escape,
        } => match console(&id, machine.as_deref(), read_only, &escape) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("console", &e),
        },
        Command::Down { id, all } => {
            let beds = match (&id, all) {
                (_, true) => Ok(alpy::internal::supervisor::registry::list()),
                (Some(id), false) => {
                    alpy::internal::supervisor::registry::find(id).map(|b| vec![b])
                }
                (None, false) => Err(alpy::Error::Config("say which bed (an id) or --all".into())),
            };
            let mut code = ExitCode::SUCCESS;
            match beds {
                Ok(beds) => {
                    for b in beds {
                        match alpy::internal::supervisor::registry::down(
                            &b,
                            std::time::Duration::from_secs(120),
                        ) {
                            Ok(()) => println!("bed {} is down", b.id),
                            Err(e) => code = fail("down", &e),
                        }
                    }
                }
                Err(e) => code = fail("down", &e),
            }
            code
        }
        Command::Qmp { id, words } => match beds::qmp(&id, &words) {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("qmp", &e),
        },
        Command::Power { id, words } => match beds::power(&id, &words) {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("power", &e),
        },
        Command::Capture { id, link, seconds } => match capture(&id, &link, seconds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("capture", &e),
        },
        Command::Lab { target, what } => match lab::run(target, what) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("lab", &e),
        },
        Command::Report { dir, suite, html } => match report(&dir, suite, html) {
            Ok(page) => {
                println!("{}", page.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail("report", &e),
        },
        Command::Image { what } => image::run(what),
        Command::Graph { file, output, svg } => {
            match graph(&file, output.as_deref(), svg.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("graph", &e),
            }
        }
    }
}

/// `alpy report`: a bed's page, or a suite page of a root's beds.
fn report(
    dir: &std::path::Path,
    suite: bool,
    html: Option<std::path::PathBuf>,
) -> alpy::Result<std::path::PathBuf> {
    if !suite {
        if html.is_some() {
            return Err(alpy::Error::Config(
                "--html names the suite page: use it with --suite (a bed's page is always \
                 DIR/report.html)"
                    .into(),
            ));
        }
        if !dir.join(alpy::journal::FILE).is_file() {
            return Err(alpy::Error::NotFound {
                what: format!("{} in {}", alpy::journal::FILE, dir.display()),
                hint: "give a bed's artifacts directory (a bed of this alpy writes events.jsonl \
                       there), or --suite with an artifacts root"
                    .into(),
            });
        }
        if alpy::report::running(dir) {
            return Err(alpy::Error::Config(format!(
                "the bed in {} is still running: its report.html is written when it closes",
                dir.display()
            )));
        }
        return alpy::report::write(dir);
    }
    let tests = alpy::report::suite::from_root(dir)?;
    if tests.is_empty() {
        return Err(alpy::Error::NotFound {
            what: format!(
                "a bed directory (with {}) under {}",
                alpy::journal::FILE,
                dir.display()
            ),
            hint: "give the artifacts root the tests wrote to (ALPY_ARTIFACTS, or target/alpy)"
                .into(),
        });
    }
    let page = html.unwrap_or_else(|| dir.join("index.html"));
    let title = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "suite".into());
    alpy::report::suite::write(&page, &title, &tests)?;
    Ok(page)
}
