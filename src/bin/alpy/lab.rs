//! `alpy lab`: a lab server's state and the operator's actions, for
//! people, through [`alpy::lab::LabServer`] (the `alpy::lab` client is
//! for tests).

use alpy::lab::wire::{Boards, Queue, SessionStatus};
use alpy::lab::LabServer;
use clap::{Args, Subcommand};

/// Which server, with which token.
#[derive(Args, Debug)]
pub(crate) struct Target {
    /// The server (default: REMOTE_LAB_URL).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The API token (default: REMOTE_LAB_TOKEN).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Print JSON (the API's own shapes).
    #[arg(long, global = true)]
    json: bool,
}

/// What to ask of the lab server.
#[derive(Subcommand, Debug)]
pub(crate) enum LabCommand {
    /// Sessions and labs at a glance.
    Status,
    /// The live sessions, active first, then the queue in order.
    #[command(alias = "sessions")]
    Queue,
    /// Follow the server's events as they happen (sessions, labs,
    /// boards), after those it still keeps; Ctrl-C stops.
    Events {
        /// Start after this event's id (default: every event kept).
        #[arg(long)]
        since: Option<u64>,
        /// Stop after this many events (default: follow until stopped).
        #[arg(long)]
        count: Option<usize>,
        /// Also the server's periodic health checks (every 5 s while
        /// sessions exist).
        #[arg(long)]
        health: bool,
    },
    /// The boards the lab lends: class, tags, ports, state (and why a
    /// board is offline).
    Boards,
    /// Operator: take a board offline (it is not lent until it is back
    /// online).
    Offline {
        /// The board (`alpy lab boards` lists them).
        board: String,
        /// Why, for everyone who lists the boards.
        #[arg(long)]
        reason: String,
    },
    /// Operator: put a board back online.
    Online {
        /// The board.
        board: String,
    },
    /// Operator: run a board's health check now (its class's
    /// health_check); a failed check takes it offline.
    Check {
        /// The board.
        board: String,
    },
    /// Reserve a board of a class and run a command while holding it: it
    /// gets ALPY_LAB_SESSION and ALPY_LAB_BOARD (for `alpy lab ssh-proxy`),
    /// and the board goes back when it ends, or when this process dies
    /// (its heartbeats stop). Exits with the command's status.
    Reserve {
        /// The board's class (`alpy lab boards` lists them).
        class: String,
        /// A tag the board must have (again for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// How long to wait in the queue, in seconds.
        #[arg(long, default_value_t = 3600)]
        wait: u64,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Your reserved board's SSH port through the lab, on standard input
    /// and output: for OpenSSH's ProxyCommand, as in
    /// `ssh -o ProxyCommand='alpy lab ssh-proxy fw-1' root@fw-1`.
    SshProxy {
        /// The board your session holds.
        board: String,
        /// The session that holds it (default: ALPY_LAB_SESSION).
        #[arg(long)]
        session: Option<String>,
    },
    /// Operator: destroy a lab.
    Destroy {
        /// The lab's id (`alpy lab status` lists them).
        lab_id: String,
        /// Even if sessions hold it.
        #[arg(long)]
        force: bool,
    },
    /// Operator: end a session, by its handle (`alpy lab queue`).
    End {
        /// The session's handle.
        handle: String,
    },
    /// Operator: move a waiting session to a place in the queue.
    Move {
        /// The session's handle.
        handle: String,
        /// The place to move it to (1 = next).
        position: u32,
    },
}

/// `alpy lab ...`.
pub(crate) fn run(target: Target, what: LabCommand) -> alpy::Result<()> {
    let lab = LabServer::from_args_or_env(target.url, target.token)?;
    let json = target.json;
    match what {
        LabCommand::Status => {
            let q = lab.queue()?;
            if json {
                return print_json(&q);
            }
            status(lab.url(), &q);
        }
        LabCommand::Queue => {
            let q = lab.queue()?;
            if json {
                return print_json(&q.sessions);
            }
            queue(&q);
        }
        LabCommand::Events {
            since,
            count,
            health,
        } => follow(&lab, since, count, json, health)?,
        LabCommand::Boards => {
            let b = lab.boards()?;
            if json {
                return print_json(&b);
            }
            boards(&b);
        }
        LabCommand::Offline { board, reason } => {
            let b = lab.board_offline(&board, &reason)?;
            if json {
                return print_json(&b);
            }
            println!(
                "board {} is offline: {}",
                b.name,
                b.reason.unwrap_or_default()
            );
        }
        LabCommand::Online { board } => {
            let b = lab.board_online(&board)?;
            if json {
                return print_json(&b);
            }
            println!("board {} is online", b.name);
        }
        LabCommand::Check { board } => {
            let c = lab.board_check(&board)?;
            if json {
                return print_json(&c);
            }
            let verdict = if c.passed { "passed" } else { "failed" };
            println!(
                "board {}: health check {verdict}; it is {}",
                c.board, c.state
            );
            if !c.output.is_empty() {
                println!("{}", c.output);
            }
            if !c.passed {
                return Err(alpy::Error::Lab {
                    what: format!("health-check board {}", c.board),
                    status: None,
                    detail: format!("it failed, and the board is {}", c.state),
                });
            }
        }
        LabCommand::Reserve {
            class,
            tags,
            wait,
            command,
        } => {
            let code = reserve(&lab, class, tags, wait, &command)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        LabCommand::SshProxy { board, session } => {
            let session = session
                .or_else(|| std::env::var(SESSION_VAR).ok())
                .ok_or_else(|| {
                    alpy::Error::Config(format!(
                        "give --session or set {SESSION_VAR} to the id of the session that \
                         holds board {board}"
                    ))
                })?;
            ssh_proxy(&lab, &session, &board)?;
        }
        LabCommand::Destroy { lab_id, force } => {
            let d = lab.destroy_lab(&lab_id, force)?;
            if json {
                return print_json(&d);
            }
            println!("lab {} is being destroyed", d.lab_id);
        }
        LabCommand::End { handle } => {
            lab.end_session(&handle)?;
            println!("session {handle} ended");
        }
        LabCommand::Move { handle, position } => {
            let m = lab.move_session(&handle, position)?;
            if json {
                return print_json(&m);
            }
            println!("session {} is now at position {}", m.handle, m.position);
        }
    }
    Ok(())
}

/// `alpy lab events`: prints each event (or, with `json`, each as a JSON
/// line) until `count` are printed or stdout closes. A stream the server
/// ends (it stopped, or this follower fell behind), and a server that
/// does not answer or answers 5xx (restarting), are followed again from
/// the last event seen, backing off to 10 s; a refusal (4xx) ends it.
fn follow(
    lab: &LabServer,
    since: Option<u64>,
    count: Option<usize>,
    json: bool,
    health: bool,
) -> alpy::Result<()> {
    use alpy::lab::wire::{EventAction, EventType, Followed};
    use std::io::Write;
    let mut left = count.unwrap_or(usize::MAX);
    let mut last = since;
    let mut out = std::io::stdout();
    let mut pause = std::time::Duration::from_secs(1);
    while left > 0 {
        let followed = lab.events(last, |f| {
            let e = match f {
                Followed::Missed => {
                    eprintln!("alpy lab events: events were missed (the server's history no longer holds them, or it restarted)");
                    return true;
                }
                Followed::Event(e) => e,
            };
            last = Some(e.id);
            if e.kind == EventType::Health && e.action == EventAction::Passed && !health {
                return true;
            }
            let line = if json {
                serde_json::to_string(&e).unwrap_or_default()
            } else {
                format!("{} {e}", utc_clock(e.time))
            };
            left -= 1;
            // A closed pipe (`| head`) ends it.
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                left = 0;
            }
            left > 0
        });
        match followed {
            Ok(true) => break,
            Ok(false) if left == 0 => break,
            Ok(false) => {
                eprintln!("alpy lab events: the server ended the stream; following again");
                pause = std::time::Duration::from_secs(1);
            }
            Err(alpy::Error::Lab { status, detail, .. }) if status.is_none_or(|s| s >= 500) => {
                eprintln!(
                    "alpy lab events: {detail}; trying again in {} s",
                    pause.as_secs()
                );
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
    Ok(())
}

/// Reserves a board of `class` with `tags`, runs `command` while holding
/// it, lets it go; the command's exit code.
fn reserve(
    lab: &LabServer,
    class: String,
    tags: Vec<String>,
    wait: u64,
    command: &[String],
) -> alpy::Result<i32> {
    let want = alpy::lab::wire::BoardRequest {
        class: Some(class),
        tags,
    };
    let client = alpy::lab::LabClient::reserve_board(lab.url(), lab.token(), &want)?;
    client.wait_active(std::time::Duration::from_secs(wait))?;
    let info = client.info()?;
    let board = info.board.unwrap_or_default();
    eprintln!(
        "alpy lab: board {board} reserved by session {} (it goes back when the command ends)",
        info.handle
    );
    let (program, args) = command
        .split_first()
        .ok_or_else(|| alpy::Error::Config("give the command to run after --".into()))?;
    let status = std::process::Command::new(program)
        .args(args)
        .env(SESSION_VAR, client.session_id())
        .env("ALPY_LAB_BOARD", &board)
        .env(alpy::lab::URL_VAR, lab.url())
        .env(alpy::lab::TOKEN_VAR, lab.token())
        .status()
        .map_err(|e| alpy::Error::io(format!("run {program}"), e));
    // The board goes back whatever became of the command.
    let closed = client.close();
    let status = status?;
    closed?;
    Ok(status.code().unwrap_or(1))
}

/// Where `alpy lab ssh-proxy` finds its session's id.
const SESSION_VAR: &str = "ALPY_LAB_SESSION";

/// Copies standard input to board `board`'s SSH port through the lab,
/// and what comes back to standard output, until either side ends.
fn ssh_proxy(lab: &LabServer, session: &str, board: &str) -> alpy::Result<()> {
    use std::io::{Read, Write};
    let tunnel = lab.board_stream(session, board, alpy::lab::BoardStream::Ssh)?;
    let mut to_board = tunnel
        .socket()
        .try_clone()
        .map_err(|e| alpy::Error::io("clone the tunnel's socket", e))?;
    // Standard input in a thread of its own: a read of it cannot be cut.
    std::thread::Builder::new()
        .name("ssh-proxy-in".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_board);
            let _ = to_board.shutdown(std::net::Shutdown::Write);
        })
        .map_err(|e| alpy::Error::io("spawn the input copy", e))?;
    let mut from_board = tunnel.socket();
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16384];
    loop {
        match from_board.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(alpy::Error::io("read from the tunnel", e)),
        }
    }
    tunnel.close()
}

fn print_json<T: serde::Serialize>(v: &T) -> alpy::Result<()> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| alpy::Error::Internal(format!("print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn status(url: &str, q: &Queue) {
    let active = q
        .sessions
        .iter()
        .filter(|s| s.status == SessionStatus::Active)
        .count();
    println!(
        "{url}: {active} active session(s), {} waiting, {} lab(s)",
        q.sessions.len() - active,
        q.labs.len()
    );
    for l in &q.labs {
        println!(
            "  lab {}  {:<16} {:<10} held by {}",
            l.lab_id, l.name, l.status, l.refcount
        );
    }
}

fn queue(q: &Queue) {
    println!(
        "{:<4} {:<14} {:<8} {:<12} lab",
        "pos", "session", "status", "owner"
    );
    for s in &q.sessions {
        println!(
            "{:<4} {:<14} {:<8} {:<12} {}",
            s.position,
            s.handle,
            s.status,
            s.owner,
            s.lab_id.as_deref().unwrap_or("-")
        );
    }
}

fn boards(b: &Boards) {
    println!(
        "{:<16} {:<16} {:<8} {:<5} {:<20} {:<14} {:<9} {:<5} reason",
        "board", "class", "state", "ports", "tags", "held by", "running", "lent"
    );
    for x in &b.boards {
        println!(
            "{:<16} {:<16} {:<8} {:<5} {:<20} {:<14} {:<9} {:<5} {}",
            x.name,
            x.class,
            x.state,
            x.ports,
            x.tags.join(","),
            x.holder.as_deref().unwrap_or("-"),
            x.busy.map_or("-", |j| j.as_str()),
            x.lent_since_check,
            x.reason.as_deref().unwrap_or("-")
        );
    }
}

/// `HH:MM:SS` (UTC) of `secs` since the epoch.
fn utc_clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}
