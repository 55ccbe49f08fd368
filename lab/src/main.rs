//! `alpy-lab`: a lab manager for alpy test beds on a shared host.
//!
//! ```text
//! alpy-lab serve --config lab/lab.example.toml [--listen 127.0.0.1:8300] [--log-json]
//! alpy-lab token create ci-runner --config lab.toml   # prints the token once
//! alpy-lab token create alice --role operator --config lab.toml
//! ```
//!
//! State lives in SQLite (WAL) under the configuration's `state_dir`; a
//! restart loses no session, queue entry or lab. See the README's
//! "alpy-lab" section and `/openapi.json`.

use error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod api;
mod auth;
mod board_jobs;
mod board_remote;
mod board_script;
mod boards_api;
mod config;
mod dashboard;
mod db;
mod error;
mod events;
mod events_api;
mod housekeeping;
mod lab_api;
mod lab_board;
mod lab_destroy;
mod lab_logs;
mod labs;
mod openapi;
mod operator;
mod remote;
mod remote_apps;
mod safety;
mod serve;
mod watch;
mod wire;

/// alpy-lab: sessions in a FIFO queue, heartbeats, reference-counted test
/// beds on a shared host.
#[derive(Parser)]
#[command(name = "alpy-lab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    ///
    /// Example: `alpy-lab serve --config lab/lab.example.toml`.
    Serve {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Listen here instead of the configuration's address (port 0: any
        /// free port; the address is printed).
        #[arg(long)]
        listen: Option<String>,
        /// Log one JSON object per line (fields: session, topology, lab,
        /// bed, ...) for a log collector, instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Print the API's OpenAPI document (what `/openapi.json` serves), to
    /// generate a client without a running server.
    ///
    /// Example: `alpy-lab openapi > alpy-lab.openapi.json`.
    Openapi,
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token, store its hash in the configuration, print it once.
    ///
    /// Example: `alpy-lab token create ci-runner --config lab.toml`.
    Create {
        /// Who the token is for.
        name: String,
        /// viewer (read-only, no session ids or host paths), user (the
        /// default: sessions and labs), or operator (destroy any lab, end
        /// any session, reorder the queue).
        #[arg(long, default_value = "user")]
        role: config::Role,
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token {
            command: TokenCommand::Create { name, role, config },
        } => match config::create_token(&config, &name, role) {
            Ok(token) => {
                println!("{token}");
                eprintln!("alpy-lab: {role} token {name:?} stored (as its SHA-256) in {}; it is shown only now", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("alpy-lab token create: error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Openapi => {
            let (_, doc) = api::routes();
            match doc.to_pretty_json() {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("alpy-lab openapi: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            log_json,
        } => {
            let logs = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "alpy_lab=info".into()),
                )
                .with_writer(std::io::stderr);
            if log_json {
                logs.json().init();
            } else {
                logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .init();
            }
            match serve(&config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("alpy-lab serve: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(path: &std::path::Path, listen: Option<String>) -> Result<(), Error> {
    let mut cfg = config::Config::load(path)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let tls = cfg.tls.as_ref().map(serve::acceptor).transpose()?;
    std::fs::create_dir_all(cfg.state_dir.join("labs"))
        .map_err(Error::io(format!("create {}", cfg.state_dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Uploads, lab logs and the database: the server's user only.
        std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(format!("chmod {}", cfg.state_dir.display())))?;
    }
    let busy = std::time::Duration::from_millis(cfg.limits.db_busy_ms);
    let events = Arc::new(events::Bus::new(cfg.limits.event_history));
    let db = db::Db::open(&cfg.state_dir.join("alpy-lab.sqlite"), busy, events)?;
    let journal = db.journal_mode()?;
    if journal != "wal" {
        return Err(Error::Refused(format!(
            "the database is in {journal} mode, not WAL"
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(Error::io("start the async runtime"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(Error::io(format!("listen on {}", cfg.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("read the listening address"))?;
        serve::check_listen(&cfg, &addr)?;
        let store_hashes = {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || api::hash_store(&cfg))
                .await
                .map_err(|e| Error::Refused(format!("hashing the store failed: {e}")))?
        };
        let header_timeout = std::time::Duration::from_secs_f64(cfg.timeouts.header_s);
        let max_connections = cfg.limits.max_connections;
        let app = Arc::new(api::App {
            cfg,
            db: Arc::new(db),
            wake: tokio::sync::Notify::new(),
            store_hashes,
            openapi: std::sync::OnceLock::new(),
            closing: tokio::sync::watch::channel(false).0,
            streams: Default::default(),
            board_scripts: Default::default(),
            board_streams: Default::default(),
        });
        housekeeping::reap_at_start(&app).await;
        app.db.events().emit(
            alpy::lab::wire::EventType::Health,
            alpy::lab::wire::EventAction::Started,
            db::SERVER,
            "server",
            &[
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("max_labs", app.cfg.limits.max_labs.to_string()),
            ],
        );
        tokio::spawn(housekeeping::run(Arc::clone(&app)));
        tokio::spawn(board_jobs::run(Arc::clone(&app)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, tls = tls.is_some(), tokens = app.cfg.tokens.len(), max_labs = app.cfg.limits.max_labs, "serving");
        println!("alpy-lab: listening on {scheme}://{addr}");
        let closing = app.closing.clone();
        let shutdown = async {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                },
                Err(e) => {
                    tracing::warn!("no SIGTERM handler ({e}): stop with Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutting down; labs keep running (their supervisors own them)");
            closing.send_replace(true);
        };
        serve::serve(
            listener,
            api::router(app),
            tls,
            header_timeout,
            max_connections,
            shutdown,
        )
        .await;
        Ok(())
    })
}
