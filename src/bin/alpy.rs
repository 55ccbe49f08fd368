//! The `alpy` command: tools around test beds.
//!
//! ```text
//! alpy doctor                      # is this machine ready? one line per requirement
//! alpy doctor --json               # the same as JSON
//! alpy gc                          # remove what dead runs left, and say what
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
        Command::Graph { file, output, svg } => {
            match graph(&file, output.as_deref(), svg.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("graph", &e),
            }
        }
    }
}
