//! Nodes: one Docker container per DUT link, owning the network namespace
//! that holds the link's tap (`eth0`); apps that join it; the verbs a test
//! uses on a node (`succeed`, `execute`, `wait_until_succeeds`,
//! `wait_for_open_port`).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::addr::{Mac, ToIpAddr};
use crate::error::{Error, Result};
use crate::net::app::App;
use crate::net::container::Container;
use crate::net::docker::{ContainerSpec, Docker, Output};
use crate::net::helper::{Helper, TapJob};
use crate::net::impair::{Direction, Impairment, Relay};
use crate::net::link::{default_mac, Link};
use crate::net::netns::{self, NetCmd, NetMode};
use crate::net::watchdog::Watchdog;
use crate::net::{TAP_NAME, TOOLS_IMAGE};
use crate::run::{owner_labels, RunId};
use crate::util::{join_scoped, lock, shell_quote};

/// The image of node containers.
pub const NODE_IMAGE: &str = "alpy/node";
/// How long one command on a node may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What all nodes of a test bed share.
struct Shared {
    docker: Arc<Docker>,
    run: RunId,
    mode: NetMode,
    log_dir: Option<PathBuf>,
    /// Helper mode only.
    helper: Option<Helper>,
}

impl Shared {
    fn log_file(&self, name: &str) -> Option<PathBuf> {
        self.log_dir.as_ref().map(|d| d.join(format!("{name}.log")))
    }

    fn spec(&self, image: &str, name: String, cmd: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            image: image.to_string(),
            name,
            cmd,
            labels: owner_labels(&self.run),
            ..Default::default()
        }
    }

    /// Runs commands in node `pid`'s namespace, by whichever mode.
    fn in_node(&self, pid: i32, cmds: Vec<NetCmd>) -> Result<()> {
        match &self.helper {
            None => netns::in_netns(pid, move || netns::run_here(&cmds)),
            Some(h) => h.in_node(pid, &cmds),
        }
    }
}

/// The nodes of one test bed. Close them with [`Nodes::close`].
pub struct Nodes {
    /// Removes the run's containers if this process dies (disarmed on close).
    watchdog: Option<Watchdog>,
    shared: Arc<Shared>,
    nodes: Vec<Node>,
    closed: bool,
    containers_took: Duration,
    taps_took: Duration,
}

/// One node: a container whose namespace holds the link's tap.
pub struct Node {
    index: usize,
    name: String,
    container: Option<Container>,
    pid: i32,
    mac: Mac,
    tap: Option<OwnedFd>,
    /// With [`Link::relay`]: the relay and the socket end QEMU gets.
    relay: Option<(Relay, OwnedFd)>,
    /// A tools container in the node's namespace for `execute` and friends,
    /// started on first use.
    shell: Mutex<Option<Container>>,
    /// Apps started so far, by default name counter.
    apps: Mutex<HashMap<String, usize>>,
    shared: Arc<Shared>,
}

/// Options for [`Nodes::create`].
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Direct or helper; `None` means [`NetMode::detect`].
    pub mode: Option<NetMode>,
    /// Where container logs go (`<name>.log`).
    pub log_dir: Option<PathBuf>,
    /// The node image (default [`NODE_IMAGE`]).
    pub image: Option<String>,
}

/// The node name of link `i`: the link's name, else `node<i>`.
fn node_name(links: &[Link], i: usize) -> String {
    links
        .get(i)
        .and_then(|l| l.link_name.clone())
        .unwrap_or_else(|| format!("node{i}"))
}

impl Nodes {
    /// Creates one node per link, concurrently, each with its tap `eth0`
    /// up and configured.
    pub fn create(
        docker: &Arc<Docker>,
        run: &RunId,
        links: &[Link],
        opts: &NodeOptions,
    ) -> Result<Nodes> {
        for (i, l) in links.iter().enumerate() {
            l.check(i)?;
            if let Some(j) = (0..i).find(|&j| node_name(links, j) == node_name(links, i)) {
                return Err(Error::Config(format!(
                    "links {j} and {i} are both named {:?}: link names must differ",
                    node_name(links, i)
                )));
            }
        }
        let mode = match opts.mode {
            Some(m) => m,
            None => NetMode::detect()?,
        };
        let log = opts.log_dir.as_ref().map(|d| d.join("watchdog.log"));
        let mut watchdog = Watchdog::start(run, log.as_deref())?;
        let shared = Arc::new(Shared {
            docker: Arc::clone(docker),
            run: run.clone(),
            mode,
            log_dir: opts.log_dir.clone(),
            helper: match mode {
                NetMode::Direct => None,
                NetMode::Helper => Some(Helper::new(docker, run)?),
            },
        });
        if let Some(h) = &shared.helper {
            watchdog.guard_path(h.dir())?;
        }
        log::info!(target: "alpy::node", "creating {} nodes ({mode:?})", links.len());
        let t0 = std::time::Instant::now();
        // Containers first, all at once (the helper too, if needed).
        let containers: Vec<Result<(Container, i32)>> = std::thread::scope(|s| {
            let helper = shared
                .helper
                .as_ref()
                .map(|h| s.spawn(move || h.ensure_started()));
            let handles: Vec<_> = (0..links.len())
                .map(|i| {
                    let shared = &shared;
                    s.spawn(move || {
                        let name = node_name(links, i);
                        let mut spec = shared.spec(
                            opts.image.as_deref().unwrap_or(NODE_IMAGE),
                            shared.run.name(&name),
                            vec!["sleep".into(), "infinity".into()],
                        );
                        spec.network_mode = Some("none".into());
                        spec.minimal = true;
                        spec.labels.insert("alpy.role".into(), "node".into());
                        let c = Container::run(
                            &shared.docker,
                            &spec,
                            shared.log_file(&name).as_deref(),
                        )?;
                        let pid = c.pid()?;
                        Ok((c, pid))
                    })
                })
                .collect();
            let mut out: Vec<Result<(Container, i32)>> = handles
                .into_iter()
                .map(|h| join_scoped(h, "a node thread"))
                .collect();
            if let Some(h) = helper {
                if let Err(e) = join_scoped(h, "the helper thread") {
                    out.push(Err(e));
                }
            }
            out
        });
        let mut nodes = Nodes {
            watchdog: Some(watchdog),
            shared: Arc::clone(&shared),
            nodes: Vec::new(),
            closed: false,
            containers_took: Duration::ZERO,
            taps_took: Duration::ZERO,
        };
        let mut first_err = None;
        for (i, c) in containers.into_iter().enumerate() {
            match c {
                Ok((c, pid)) => nodes.nodes.push(Node {
                    index: i,
                    name: node_name(links, i),
                    pid,
                    mac: links
                        .get(i)
                        .and_then(|l| l.mac)
                        .unwrap_or_else(|| default_mac(run, i, false)),
                    container: Some(c),
                    tap: None,
                    relay: None,
                    shell: Mutex::new(None),
                    apps: Mutex::new(HashMap::new()),
                    shared: Arc::clone(&shared),
                }),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            // `nodes` drops here and removes what was created.
            return Err(e);
        }
        nodes.containers_took = t0.elapsed();
        let t1 = std::time::Instant::now();
        nodes.make_taps(links)?;
        for (n, link) in nodes.nodes.iter_mut().zip(links) {
            if link.relay {
                let (dut_end, relay_end) = std::os::unix::net::UnixDatagram::pair()
                    .map_err(|e| Error::io("create a relay socket pair", e))?;
                let relay = Relay::start(n.tap_dup()?, relay_end.into(), &n.name)?;
                n.relay = Some((relay, dut_end.into()));
            }
        }
        nodes.taps_took = t1.elapsed();
        Ok(nodes)
    }

    fn make_taps(&mut self, links: &[Link]) -> Result<()> {
        if let Some(helper) = &self.shared.helper {
            let jobs: Vec<TapJob> = self
                .nodes
                .iter()
                .zip(links)
                .map(|(n, l)| TapJob {
                    index: n.index,
                    pid: n.pid,
                    cmds: l.commands(n.mac),
                })
                .collect();
            for (tag, fd) in helper.make_taps(&jobs)? {
                let node = self.nodes.get_mut(tag).ok_or_else(|| {
                    Error::Internal(format!("the helper sent a tap for unknown node {tag}"))
                })?;
                node.tap = Some(fd);
            }
            return Ok(());
        }
        for (n, link) in self.nodes.iter_mut().zip(links) {
            let cmds = link.commands(n.mac);
            let fd = netns::in_netns(n.pid, move || {
                let fd = netns::open_tap(TAP_NAME)?;
                netns::run_here(&cmds)?;
                Ok(fd)
            })?;
            n.tap = Some(fd);
        }
        Ok(())
    }

    /// How long creating the containers took, and then the taps with their
    /// configuration.
    pub fn timings(&self) -> (Duration, Duration) {
        (self.containers_took, self.taps_took)
    }

    /// The PID of the run's watchdog (see [`crate::net::watchdog`]).
    pub fn watchdog_pid(&self) -> Option<u32> {
        self.watchdog.as_ref().and_then(Watchdog::pid)
    }

    /// How namespace work is done for these nodes.
    pub fn mode(&self) -> NetMode {
        self.shared.mode
    }

    /// Node `i`, or [`Error::NotFound`] naming the nodes there are.
    pub fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .ok_or_else(|| self.not_found(&i.to_string()))
    }

    /// The node called `name` (its link's name, or `node<i>`).
    pub fn by_name(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| self.not_found(&format!("{name:?}")))
    }

    fn not_found(&self, what: &str) -> Error {
        let names: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.index, n.name))
            .collect();
        Error::NotFound {
            what: format!("node {what}"),
            hint: format!("this test bed has {}", names.join(", ")),
        }
    }

    /// All nodes.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Removes all nodes (concurrently) and the helper; returns the first
    /// error.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        self.close_all()
    }

    fn close_all(&mut self) -> Result<()> {
        let nodes = std::mem::take(&mut self.nodes);
        let mut results: Vec<Result<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = nodes
                .into_iter()
                .map(|n| s.spawn(move || n.close()))
                .collect();
            hs.into_iter()
                .map(|h| join_scoped(h, "a node close thread"))
                .collect()
        });
        if let Some(h) = &self.shared.helper {
            results.push(h.close());
        }
        let all = results.into_iter().collect::<Result<Vec<()>>>().map(drop);
        // Disarmed only once everything is gone: if closing failed, the
        // watchdog (and after it the reaper) still has the run's labels.
        if all.is_ok() {
            if let Some(w) = self.watchdog.take() {
                w.disarm()?;
            }
        }
        all
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.close_all() {
                log::warn!(target: "alpy::node", "closing nodes: {e}");
            }
        }
    }
}

impl Node {
    fn container(&self) -> Result<&Container> {
        self.container
            .as_ref()
            .ok_or_else(|| Error::Closed(format!("node {}", self.name)))
    }

    /// The link index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's name: its link's name, or `node<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node container's name (`alpy-<run>-<node>`).
    pub fn container_name(&self) -> &str {
        self.container.as_ref().map_or("", |c| c.name())
    }

    /// The node container's id.
    pub fn id(&self) -> &str {
        self.container.as_ref().map_or("", |c| c.id())
    }

    /// The host PID of the process owning the namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The MAC of the node's `eth0`.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The tap's fd (QEMU inherits it; tests may read and write frames).
    pub fn tap(&self) -> Option<BorrowedFd<'_>> {
        self.tap.as_ref().map(|f| f.as_fd())
    }

    /// What QEMU's NIC for this link uses: the tap, or with
    /// [`Link::relay`] the relay's datagram socket (`true`).
    pub fn dut_end(&self) -> Option<(BorrowedFd<'_>, bool)> {
        match &self.relay {
            Some((_, fd)) => Some((fd.as_fd(), true)),
            None => self.tap().map(|t| (t, false)),
        }
    }

    /// The link's relay, with [`Link::relay`].
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref().map(|(r, _)| r)
    }

    /// A duplicate of the tap's fd.
    pub fn tap_dup(&self) -> Result<OwnedFd> {
        match &self.tap {
            Some(f) => netns::dup(f),
            None => Err(Error::Closed(format!("the tap of node {}", self.name))),
        }
    }

    fn app_spec(&self, app: &App) -> Result<ContainerSpec> {
        let app_name = match &app.name {
            Some(n) => n.clone(),
            None => {
                let mut counts = lock(&self.apps);
                let n = counts.entry(String::new()).or_insert(0);
                *n += 1;
                format!("app{}", *n - 1)
            }
        };
        let mut spec = self.shared.spec(
            &app.image,
            self.shared.run.name(&format!("{}-{app_name}", self.name)),
            app.cmd.clone(),
        );
        spec.network_mode = Some(format!("container:{}", self.container()?.id()));
        spec.cap_add = app.cap_add.clone();
        spec.env = app.env.clone();
        spec.binds = app.binds.clone();
        spec.labels.insert("alpy.role".into(), "app".into());
        spec.labels.insert("alpy.node".into(), self.name.clone());
        Ok(spec)
    }

    fn app_log(&self, spec: &ContainerSpec) -> Option<PathBuf> {
        // `alpy-<run>-<node>-<app>` → `<node>-<app>.log`
        let short = spec.name.splitn(3, '-').nth(2).unwrap_or(&spec.name);
        self.shared.log_file(short)
    }

    /// Runs an app in this node's namespace to completion; returns its exit
    /// status and output (check it with [`Output::checked`]).
    pub fn run_app(&self, app: &App, timeout: Duration) -> Result<Output> {
        let spec = self.app_spec(app)?;
        let mut c = Container::run(&self.shared.docker, &spec, self.app_log(&spec).as_deref())?;
        let out = c.wait(timeout);
        c.close()?;
        out
    }

    /// Starts an app in this node's namespace in the background. Close the
    /// returned guard to stop it and collect its logs. An app that exits
    /// within its [`App::startup_grace`] is an error with its exit code and
    /// last log lines.
    pub fn spawn_app(&self, app: &App) -> Result<Container> {
        let spec = self.app_spec(app)?;
        let c = Container::run(&self.shared.docker, &spec, self.app_log(&spec).as_deref())?;
        c.ensure_running_for(app.startup_grace)?;
        Ok(c)
    }

    /// Runs `cmd` (a shell command line) in the node's namespace, in a tools
    /// container kept for these calls; returns its status and output,
    /// whatever the status.
    ///
    /// ```no_run
    /// # fn f(bed: &alpy::TestBed) -> alpy::Result<()> {
    /// let out = bed.node(0)?.execute("ping -c 1 -W 2 192.168.2.2")?;
    /// println!("{} {}", out.status, out.stdout_str());
    /// # Ok(()) }
    /// ```
    pub fn execute(&self, cmd: &str) -> Result<Output> {
        let mut guard = lock(&self.shell);
        if guard.is_none() {
            let mut app = App::new(TOOLS_IMAGE)
                .name("sh")
                .cmd(["sleep", "infinity"])
                .cap("NET_ADMIN")
                .cap("NET_RAW");
            app.startup_grace = Duration::ZERO;
            *guard = Some(self.spawn_app(&app)?);
        }
        let shell = guard
            .as_ref()
            .ok_or_else(|| Error::Internal("the node's shell container is gone".into()))?;
        log::debug!(target: "alpy::node", "[{}] $ {cmd}", self.name);
        let out = shell.exec(&["sh", "-c", cmd], COMMAND_TIMEOUT)?;
        log::debug!(target: "alpy::node", "[{}] {} ({} bytes out)", self.name, out.status, out.stdout.len());
        Ok(out)
    }

    /// Runs `cmd` like [`Node::execute`] and returns its standard output;
    /// a non-zero exit is [`Error::CommandFailed`] with the output's tail.
    pub fn succeed(&self, cmd: &str) -> Result<String> {
        let out = self
            .execute(cmd)?
            .checked(&format!("`{cmd}` on node {}", self.name))?;
        Ok(out.stdout_str())
    }

    /// Retries `cmd` until it succeeds (returns its standard output) or
    /// `timeout` passes (the error quotes the last failure).
    pub fn wait_until_succeeds(&self, cmd: &str, timeout: Duration) -> Result<String> {
        crate::wait::wait_until(
            &format!("`{cmd}` to succeed on node {}", self.name),
            timeout,
            || self.succeed(cmd),
        )
    }

    /// Waits until something in this node's namespace listens on TCP
    /// `port`, without connecting to it (a one-shot server such as
    /// `iperf3 -s -1` would take a probe connection for its one client).
    pub fn wait_for_listener(&self, port: u16, timeout: Duration) -> Result<()> {
        let cmd = format!("ss -Hltn 'sport = :{port}' | grep -q .");
        self.wait_until_succeeds(&cmd, timeout).map(drop)
    }

    /// Waits until `addr:port` accepts TCP connections from this node (it
    /// connects: see [`Node::wait_for_listener`] for one-shot servers).
    pub fn wait_for_open_port(
        &self,
        addr: impl ToIpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<()> {
        let addr = addr.to_ip_addr()?;
        let cmd = format!("nc -z -w 1 {} {port}", shell_quote(&addr.to_string()));
        self.wait_until_succeeds(&cmd, timeout).map(drop)
    }

    /// Runs `ip`/`tc` commands in the node's namespace.
    pub fn configure(&self, cmds: Vec<NetCmd>) -> Result<()> {
        self.shared.in_node(self.pid, cmds)
    }

    /// Applies delay, jitter, loss and rate to what the node sends to the
    /// DUT (replacing any earlier impairment): in the link's relay if it has
    /// one, else with `tc` on `eth0`.
    pub fn impair(&self, imp: &Impairment) -> Result<()> {
        self.impair_direction(Direction::ToDut, imp)
    }

    /// Applies an impairment to one direction of the link, or to both.
    /// Frames towards the node can only be shaped by the link's relay
    /// ([`Link::relay`]).
    pub fn impair_direction(&self, dir: Direction, imp: &Impairment) -> Result<()> {
        if let Some(r) = self.relay() {
            r.set_direction(dir, imp);
            return Ok(());
        }
        if dir != Direction::ToDut {
            return Err(Error::Config(format!(
                "impairing frames towards node {} needs the link's relay: build it with Link::relay()",
                self.name
            )));
        }
        let cmds = imp.commands();
        if cmds.is_empty() {
            return self.clear_impairment();
        }
        self.configure(cmds).map_err(|e| match e {
            Error::Net(m) | Error::CommandFailed { output: m, .. }
                if m.contains("qdisc kind is unknown") =>
            {
                Error::Net(format!(
                    "the host kernel has no netem (CONFIG_NET_SCH_NETEM): {imp:?} needs it; \
                     build the link with Link::relay() instead ({m})"
                ))
            }
            e => e,
        })
    }

    /// Removes any impairment, in both directions.
    pub fn clear_impairment(&self) -> Result<()> {
        if let Some(r) = self.relay() {
            r.set_direction(Direction::Both, &Impairment::default());
            return Ok(());
        }
        // `replace` with the default qdisc is idempotent, unlike `del`.
        self.configure(vec![NetCmd::tc(&format!(
            "qdisc replace dev {TAP_NAME} root pfifo"
        ))])
    }

    /// Sets `eth0` up or down (seen from the node side).
    pub fn set_link(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.configure(vec![NetCmd::ip(&format!(
            "link set dev {TAP_NAME} {state}"
        ))])
    }

    /// Stops the relay and the shell container, closes the tap fd and
    /// removes the container.
    pub fn close(mut self) -> Result<()> {
        let shell = lock(&self.shell).take().map_or(Ok(()), Container::close);
        let relayed = match self.relay.take() {
            Some((r, _)) => r.close(),
            None => Ok(()),
        };
        self.tap = None;
        let removed = match self.container.take() {
            Some(c) => c.close(),
            None => Ok(()),
        };
        shell.and(relayed).and(removed)
    }
}
