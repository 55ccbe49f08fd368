//! Apps: programs in containers that join a node's network namespace
//! (traffic generators, servers, clients, daemons).

use std::time::Duration;

/// The image with alpy's traffic tools (`ping`, `iperf3`, `curl`, `nc`,
/// `nginx`, `tcpdump`, `python3`), built by `images/build`.
pub const TOOLS_IMAGE: &str = "alpy/tools";

/// How long a background app must keep running after its start to count
/// as started (see [`App::startup_grace`]).
pub const DEFAULT_STARTUP_GRACE: Duration = Duration::from_millis(200);

/// A program to run in a container that joins a node's namespace.
///
/// ```
/// use alpy::App;
/// let server = App::tools(["iperf3", "-s"]).name("iperf-server");
/// let custom = App::new("acme/bgpd:1.4").cmd(["bgpd", "-f"]).cap("NET_ADMIN");
/// # let _ = (server, custom);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct App {
    pub(crate) image: String,
    pub(crate) name: Option<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) cap_add: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) binds: Vec<String>,
    pub(crate) startup_grace: Duration,
}

impl App {
    /// The image it runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Its host bind mounts (`host:container`), if any.
    pub fn binds(&self) -> &[String] {
        &self.binds
    }

    /// The capabilities it adds.
    pub fn caps(&self) -> &[String] {
        &self.cap_add
    }
}

impl App {
    /// An app from `image` with its default command.
    pub fn new(image: &str) -> Self {
        App {
            image: image.to_string(),
            name: None,
            cmd: Vec::new(),
            cap_add: Vec::new(),
            env: Vec::new(),
            binds: Vec::new(),
            startup_grace: DEFAULT_STARTUP_GRACE,
        }
    }

    /// An app from [`TOOLS_IMAGE`] running `cmd`.
    pub fn tools<I, S>(cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        App::new(TOOLS_IMAGE).cmd(cmd)
    }

    /// Names the app: its container is `alpy-<run>-<node>-<name>` and its
    /// log `<node>-<name>.log`. Default: `app<N>`, counted per node.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Sets the command.
    pub fn cmd<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a capability (e.g. `NET_ADMIN` for `tc`).
    pub fn cap(mut self, cap: &str) -> Self {
        self.cap_add.push(cap.to_string());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Adds a bind mount `host:container[:ro]`.
    pub fn bind(mut self, spec: &str) -> Self {
        self.binds.push(spec.to_string());
        self
    }

    /// How long a background app ([`crate::net::Node::spawn_app`]) must
    /// keep running to count as started: one that exits sooner is an error
    /// carrying its exit code and last log lines. Default
    /// [`DEFAULT_STARTUP_GRACE`]; zero checks only that it started.
    pub fn startup_grace(mut self, grace: Duration) -> Self {
        self.startup_grace = grace;
        self
    }
}
