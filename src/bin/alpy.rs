//! The `alpy` command: tools around test beds.
//!
//! ```text
//! alpy doctor          # is this machine ready? one line per requirement
//! alpy doctor --json   # the same as JSON
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
    }
}
