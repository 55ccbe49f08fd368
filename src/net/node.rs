//! One node: the Docker container owning the network namespace that holds a
//! link's tap (`eth0`); apps that join it; the verbs a test uses on a node
//! (`succeed`, `execute`, `wait_until_succeeds`, `wait_for_listener`,
//! `wait_for_open_port`); impairment and link state. [`crate::net::nodes`]
//! creates them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::addr::Mac;
use crate::commands::Commands;
use crate::error::{Error, Result};
use crate::net::app::App;
use crate::net::container::Container;
use crate::net::docker::{ContainerSpec, Docker, Output};
use crate::net::helper::Helper;
use crate::net::impair::{Direction, Impairment, Relay};
use crate::net::netns::{self, NetCmd, NetMode};
use crate::net::remote::{local_only, LinkChange, NodeService};
use crate::net::tools::Tools;
use crate::net::{TAP_NAME, TOOLS_IMAGE};
use crate::run::{owner_labels, RunId};
use crate::util::join_scoped;

/// The image of node containers.
pub const NODE_IMAGE: &str = "alpy/node";
pub use crate::commands::COMMAND_TIMEOUT;

/// What all nodes of a test bed share.
pub(crate) struct Shared {
    pub(crate) docker: Arc<Docker>,
    pub(crate) run: RunId,
    pub(crate) mode: NetMode,
    pub(crate) log_dir: Option<PathBuf>,
    /// Helper mode only.
    pub(crate) helper: Option<Helper>,
}

impl Shared {
    pub(crate) fn log_file(&self, name: &str) -> Option<PathBuf> {
        self.log_dir.as_ref().map(|d| d.join(format!("{name}.log")))
    }

    pub(crate) fn spec(&self, image: &str, name: String, cmd: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            image: image.to_string(),
            name,
            cmd,
            labels: owner_labels(&self.run),
            ..Default::default()
        }
    }

    /// Runs commands in node `pid`'s namespace, by whichever mode.
    pub(crate) fn in_node(&self, pid: i32, cmds: Vec<NetCmd>) -> Result<()> {
        match &self.helper {
            None => netns::in_netns(pid, move || netns::run_here(&cmds)),
            Some(h) => h.in_node(pid, &cmds),
        }
    }
}

/// One node: a container whose namespace holds the link's tap, here or
/// on a lab server.
pub struct Node {
    pub(crate) index: usize,
    pub(crate) name: String,
    /// Its roles (the link's tags).
    pub(crate) tags: Vec<String>,
    /// Unnamed apps started so far (the next is `app<n>`).
    pub(crate) apps: AtomicUsize,
    /// The log scope of the bed it belongs to: its calls log there,
    /// whichever thread makes them.
    pub(crate) log_scope: Option<u64>,
    /// Where it is.
    pub(crate) place: Place,
}

/// Where a node is: each verb matches this once.
pub(crate) enum Place {
    /// On this host's engine, in a namespace of its own.
    Local(Local),
    /// On a lab server: its commands, apps and link changes go there.
    Lab(Arc<dyn NodeService>),
}

/// What a node on this host has.
pub(crate) struct Local {
    /// Its container, owner of the namespace.
    pub(crate) container: Container,
    /// The host PID owning its namespace.
    pub(crate) pid: i32,
    pub(crate) mac: Mac,
    /// Set once the tap is made (right after the container).
    pub(crate) tap: Option<OwnedFd>,
    /// With [`crate::Link::relay`]: the relay and the socket end QEMU gets.
    pub(crate) relay: Option<(Relay, OwnedFd)>,
    /// The link's routes, re-applied when `eth0` is set up again.
    pub(crate) routes: Vec<NetCmd>,
    /// The tools container for `execute` and friends.
    pub(crate) tools: Arc<Tools>,
    /// This host's engine and namespaces.
    pub(crate) shared: Arc<Shared>,
}

impl Node {
    /// A node of a bed on a lab server, named `name` there.
    pub(crate) fn remote(
        index: usize,
        name: String,
        tags: Vec<String>,
        service: Arc<dyn NodeService>,
    ) -> Node {
        Node::new(index, name, tags, Place::Lab(service))
    }

    pub(crate) fn new(index: usize, name: String, tags: Vec<String>, place: Place) -> Node {
        Node {
            index,
            name,
            tags,
            apps: AtomicUsize::new(0),
            log_scope: crate::logging::current_scope(),
            place,
        }
    }

    /// Whether the node is on a lab server (its pid, tap and container
    /// are not on this host).
    pub fn is_remote(&self) -> bool {
        matches!(self.place, Place::Lab(_))
    }

    /// The node on this host, or an error saying `what` needs one.
    fn here(&self, what: &str) -> Result<&Local> {
        match &self.place {
            Place::Local(l) => Ok(l),
            Place::Lab(_) => Err(local_only(what, &self.name)),
        }
    }

    fn local(&self) -> Option<&Local> {
        match &self.place {
            Place::Local(l) => Some(l),
            Place::Lab(_) => None,
        }
    }

    pub(crate) fn local_mut(&mut self) -> Option<&mut Local> {
        match &mut self.place {
            Place::Local(l) => Some(l),
            Place::Lab(_) => None,
        }
    }

    /// The link index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's name: its link's name, or `node<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its roles ([`crate::Link::tag`]).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The node container's name (`alpy-<run>-<node>`); `None` on a lab.
    pub fn container_name(&self) -> Option<&str> {
        self.local().map(|l| l.container.name())
    }

    /// The node container's id; `None` on a lab.
    pub fn id(&self) -> Option<&str> {
        self.local().map(|l| l.container.id())
    }

    /// The host PID of the process owning the namespace; `None` on a lab.
    pub fn pid(&self) -> Option<i32> {
        self.local().map(|l| l.pid)
    }

    /// The MAC of the node's `eth0`; `None` on a lab (which chose it).
    pub fn mac(&self) -> Option<Mac> {
        self.local().map(|l| l.mac)
    }

    /// The tap's fd (QEMU inherits it; tests may read and write frames).
    pub fn tap(&self) -> Option<BorrowedFd<'_>> {
        self.local()?.tap.as_ref().map(|f| f.as_fd())
    }

    /// What QEMU's NIC for this link uses: the tap, or with
    /// [`crate::Link::relay`] the relay's datagram socket (`true`).
    pub fn dut_end(&self) -> Option<(BorrowedFd<'_>, bool)> {
        match &self.local()?.relay {
            Some((_, fd)) => Some((fd.as_fd(), true)),
            None => self.tap().map(|t| (t, false)),
        }
    }

    /// The link's relay, with [`crate::Link::relay`].
    pub fn relay(&self) -> Option<&Relay> {
        self.local()?.relay.as_ref().map(|(r, _)| r)
    }

    /// A duplicate of the tap's fd.
    pub fn tap_dup(&self) -> Result<OwnedFd> {
        match &self.here("its tap")?.tap {
            Some(f) => netns::dup(f),
            None => Err(Error::Closed(format!("the tap of node {}", self.name))),
        }
    }

    fn app_spec(&self, here: &Local, app: &App) -> ContainerSpec {
        let app_name = match &app.name {
            Some(n) => n.clone(),
            None => format!("app{}", self.apps.fetch_add(1, Ordering::Relaxed)),
        };
        app_spec(
            &here.shared,
            &self.name,
            here.container.id(),
            app,
            &app_name,
        )
    }
}

/// The spec of app `app_name` in node `node` (whose container is
/// `container_id`).
pub(crate) fn app_spec(
    shared: &Shared,
    node: &str,
    container_id: &str,
    app: &App,
    app_name: &str,
) -> ContainerSpec {
    let mut spec = shared.spec(
        &app.image,
        shared.run.name(&format!("{node}-{app_name}")),
        app.cmd.clone(),
    );
    spec.network_mode = Some(format!("container:{container_id}"));
    spec.cap_add = app.cap_add.clone();
    spec.env = app.env.clone();
    spec.binds = app.binds.clone();
    spec.labels.insert("alpy.role".into(), "app".into());
    spec.labels.insert("alpy.node".into(), node.to_string());
    spec
}

/// The tools container of node `node` (whose container is `container_id`),
/// not started yet.
pub(crate) fn tools_for(shared: &Arc<Shared>, node: &str, container_id: &str) -> Arc<Tools> {
    let app = App::new(TOOLS_IMAGE)
        .cmd(["sleep", "infinity"])
        .cap("NET_ADMIN")
        .cap("NET_RAW");
    let spec = app_spec(shared, node, container_id, &app, "sh");
    Tools::new(Arc::clone(&shared.docker), spec, node.to_string())
}

impl Node {
    fn app_log(here: &Local, spec: &ContainerSpec) -> Option<PathBuf> {
        // `alpy-<run>-<node>-<app>` → `<node>-<app>.log`
        let short = spec.name.splitn(3, '-').nth(2).unwrap_or(&spec.name);
        here.shared.log_file(short)
    }

    /// Runs an app in this node's namespace to completion; returns its exit
    /// status and output (check it with [`Output::checked`]).
    pub fn run_app(&self, app: &App, timeout: Duration) -> Result<Output> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        let here = match &self.place {
            Place::Lab(r) => return r.run_app(&self.name, app, timeout),
            Place::Local(l) => l,
        };
        let spec = self.app_spec(here, app);
        let mut c = Container::run(
            &here.shared.docker,
            &spec,
            Node::app_log(here, &spec).as_deref(),
        )?
        .journaled_as_app(&self.name, spec.cmd.join(" "));
        let out = c.wait(timeout);
        c.close()?;
        out
    }

    /// Starts an app in this node's namespace in the background. Close the
    /// returned guard to stop it and collect its logs. An app that exits
    /// within its [`App::startup_grace`] is an error with its exit code and
    /// last log lines.
    pub fn spawn_app(&self, app: &App) -> Result<Container> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        let here = match &self.place {
            Place::Lab(r) => {
                let id = r.start_app(&self.name, app)?;
                let name = app.name.clone().unwrap_or_else(|| id.clone());
                return Ok(Container::remote(
                    Arc::clone(r),
                    id,
                    format!("{}-{name}", self.name),
                ));
            }
            Place::Local(l) => l,
        };
        let spec = self.app_spec(here, app);
        let c = Container::run(
            &here.shared.docker,
            &spec,
            Node::app_log(here, &spec).as_deref(),
        )?
        .journaled_as_app(&self.name, spec.cmd.join(" "));
        c.ensure_running_for(app.startup_grace)?;
        Ok(c)
    }

    /// The id of the tools container kept in the node's namespace (the
    /// one [`Node::execute`] runs in), started on first use and removed
    /// with the node: for `docker exec` from another process, as `alpy
    /// exec` does through a bed's supervisor. Not for a node on a lab
    /// server.
    pub fn tools_container_id(&self) -> Result<String> {
        self.here("its tools container")?
            .tools
            .with(|shell| Ok(shell.id().to_string()))
    }

    /// Waits until something in this node's namespace listens on TCP
    /// `port`, without connecting to it (a one-shot server such as
    /// `iperf3 -s -1` would take a probe connection for its one client).
    pub fn wait_for_listener(&self, port: u16, timeout: Duration) -> Result<()> {
        let cmd = format!("ss -Hltn 'sport = :{port}' | grep -q .");
        self.wait_until_succeeds(&cmd, timeout).map(drop)
    }

    /// Runs `ip`/`tc` commands in the node's namespace.
    pub fn configure(&self, cmds: Vec<NetCmd>) -> Result<()> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        let here = self.here("ip and tc commands")?;
        here.shared.in_node(here.pid, cmds)
    }

    /// Applies delay, jitter, loss and rate to what the node sends to the
    /// DUT (replacing any earlier impairment): in the link's relay if it has
    /// one, else with `tc` on `eth0`.
    pub fn impair(&self, imp: &Impairment) -> Result<()> {
        self.impair_direction(Direction::ToDut, imp)
    }

    /// Applies an impairment to one direction of the link, or to both.
    /// Frames towards the node can only be shaped by the link's relay
    /// ([`crate::Link::relay`]).
    pub fn impair_direction(&self, dir: Direction, imp: &Impairment) -> Result<()> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        if let Place::Lab(r) = &self.place {
            let change = LinkChange::Impair {
                direction: dir,
                impairment: imp.clone(),
            };
            return r.change_link(&self.name, &change);
        }
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
        let _scope = crate::logging::enter_for_call(self.log_scope);
        if let Place::Lab(r) = &self.place {
            return r.change_link(&self.name, &LinkChange::Clear);
        }
        if let Some(r) = self.relay() {
            r.set_direction(Direction::Both, &Impairment::default());
            return Ok(());
        }
        // `replace` with the default qdisc is idempotent, unlike `del`.
        self.configure(vec![NetCmd::tc(&format!(
            "qdisc replace dev {TAP_NAME} root pfifo"
        ))])
    }

    /// Sets `eth0` up or down (seen from the node side). Up again, the
    /// link's gateways and routes come back with it (the kernel drops
    /// them on down), and its IPv6 addresses were kept.
    pub fn set_link(&self, up: bool) -> Result<()> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        let here = match &self.place {
            Place::Lab(r) => return r.change_link(&self.name, &LinkChange::Carrier { up }),
            Place::Local(l) => l,
        };
        let state = if up { "up" } else { "down" };
        let mut cmds = vec![NetCmd::ip(&format!("link set dev {TAP_NAME} {state}"))];
        if up {
            cmds.extend(here.routes.iter().cloned());
        }
        self.configure(cmds)
    }

    /// Applies `change` (what a lab's supervisor does for a remote node).
    pub fn change_link(&self, change: &LinkChange) -> Result<()> {
        match change {
            LinkChange::Impair {
                direction,
                impairment,
            } => self.impair_direction(*direction, impairment),
            LinkChange::Clear => self.clear_impairment(),
            LinkChange::Carrier { up } => self.set_link(*up),
        }
    }

    /// Stops the relay, closes the tap fd and removes the tools container
    /// and the node's container, those two at once (the engine lets the
    /// namespace's owner go first).
    pub(crate) fn close(self) -> Result<()> {
        let mut here = match self.place {
            Place::Lab(_) => return Ok(()),
            Place::Local(l) => l,
        };
        let relayed = match here.relay.take() {
            Some((r, _)) => r.close(),
            None => Ok(()),
        };
        here.tap = None;
        let tools = here.tools;
        let container = here.container;
        let (shell, removed) = std::thread::scope(|s| {
            let shell = s.spawn(crate::logging::inherit(move || tools.close()));
            let removed = container.close();
            (join_scoped(shell, "a tools close thread"), removed)
        });
        shell.and(relayed).and(removed)
    }
}

/// A node's commands run in its namespace, in the tools container kept for
/// them (see [`Commands`]).
///
/// ```no_run
/// use alpy::Commands;
/// # fn f(bed: &alpy::TestBed) -> alpy::Result<()> {
/// let out = bed.node(0)?.execute("ping -c 1 -W 2 192.168.2.2")?;
/// println!("{} {}", out.status, out.stdout_str());
/// # Ok(()) }
/// ```
impl Commands for Node {
    fn target(&self) -> String {
        format!("node {}", self.name)
    }

    fn log_scope(&self) -> Option<u64> {
        self.log_scope
    }

    fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let _scope = crate::logging::enter_for_call(self.log_scope);
        if let Place::Lab(r) = &self.place {
            log::debug!(target: "alpy::node", "[{} on the lab] $ {cmd}", self.name);
            let out = r.execute(&self.name, &["sh", "-c", cmd], timeout)?;
            log::debug!(target: "alpy::node", "[{}] {} ({} bytes out)", self.name, out.status, out.stdout.len());
            return Ok(out);
        }
        log::debug!(target: "alpy::node", "[{}] $ {cmd}", self.name);
        let out = self
            .here("commands")?
            .tools
            .with(|shell| shell.exec(&["sh", "-c", cmd], timeout))?;
        log::debug!(target: "alpy::node", "[{}] {} ({} bytes out)", self.name, out.status, out.stdout.len());
        Ok(out)
    }
}
