//! Creating and removing the nodes of a test bed: one container per link,
//! all at once, each with its tap born inside and configured, the helper
//! (no root) and the watchdog (cleanup after a killed owner).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::container::Container;
use crate::net::docker::Docker;
use crate::net::helper::{Helper, TapJob};
use crate::net::impair::Relay;
use crate::net::link::{default_mac, fixed_mac, Link};
use crate::net::netns::{self, NetMode};
use crate::net::node::{tools_for, Local, Node, Place, Shared, NODE_IMAGE};
use crate::net::tools::Tools;
use crate::net::watchdog::Watchdog;
use crate::net::TAP_NAME;
use crate::run::RunId;
use crate::util::join_scoped;

/// The nodes of one test bed. Close them with [`Nodes::close`].
pub struct Nodes {
    /// Removes the run's containers if this process dies (disarmed on close).
    watchdog: Option<Watchdog>,
    /// `None` for the nodes of a bed on a lab server.
    shared: Option<Arc<Shared>>,
    nodes: Vec<Node>,
    closed: bool,
    containers_took: Duration,
    taps_took: Duration,
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
    /// Node MACs by link index only ([`crate::net::link::fixed_mac`]), not
    /// by run.
    pub fixed_macs: bool,
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
                .map(|h| s.spawn(crate::logging::inherit(move || h.ensure_started())));
            let handles: Vec<_> = (0..links.len())
                .map(|i| {
                    let shared = &shared;
                    s.spawn(crate::logging::inherit(move || {
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
                    }))
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
            shared: Some(Arc::clone(&shared)),
            nodes: Vec::new(),
            closed: false,
            containers_took: Duration::ZERO,
            taps_took: Duration::ZERO,
        };
        let mut first_err = None;
        for (i, c) in containers.into_iter().enumerate() {
            match c {
                Ok((c, pid)) => {
                    let name = node_name(links, i);
                    let link = links.get(i);
                    let local = Local {
                        tools: tools_for(&shared, &name, c.id()),
                        container: c,
                        pid,
                        mac: link.and_then(|l| l.mac).unwrap_or_else(|| {
                            if opts.fixed_macs {
                                fixed_mac(i, false)
                            } else {
                                default_mac(run, i, false)
                            }
                        }),
                        tap: None,
                        relay: None,
                        routes: link.map(Link::route_commands).unwrap_or_default(),
                        shared: Arc::clone(&shared),
                    };
                    let tags = link.map(|l| l.tags.clone()).unwrap_or_default();
                    nodes
                        .nodes
                        .push(Node::new(i, name, tags, Place::Local(local)));
                }
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
                if let Some(l) = n.local_mut() {
                    l.relay = Some((relay, dut_end.into()));
                }
            }
        }
        nodes.taps_took = t1.elapsed();
        let all = nodes
            .nodes
            .iter_mut()
            .filter_map(|n| n.local_mut().map(|l| Arc::clone(&l.tools)))
            .collect();
        Tools::start_in_background(all);
        Ok(nodes)
    }

    fn make_taps(&mut self, links: &[Link]) -> Result<()> {
        let helper = self.shared.as_ref().and_then(|s| s.helper.as_ref());
        let mut here: Vec<(usize, &mut Local)> = self
            .nodes
            .iter_mut()
            .filter_map(|n| {
                let i = n.index;
                n.local_mut().map(|l| (i, l))
            })
            .collect();
        if let Some(helper) = helper {
            let jobs: Vec<TapJob> = here
                .iter()
                .zip(links)
                .map(|((i, l), link)| TapJob {
                    index: *i,
                    pid: l.pid,
                    cmds: link.commands(l.mac),
                })
                .collect();
            for (tag, fd) in helper.make_taps(&jobs)? {
                let (_, l) = here.iter_mut().find(|(i, _)| *i == tag).ok_or_else(|| {
                    Error::Internal(format!("the helper sent a tap for unknown node {tag}"))
                })?;
                l.tap = Some(fd);
            }
            return Ok(());
        }
        for ((_, l), link) in here.iter_mut().zip(links) {
            let cmds = link.commands(l.mac);
            let fd = netns::in_netns(l.pid, move || {
                let fd = netns::open_tap(TAP_NAME)?;
                netns::run_here(&cmds)?;
                Ok(fd)
            })?;
            l.tap = Some(fd);
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

    /// How namespace work is done for these nodes (`None`: they are on a
    /// lab server).
    pub fn mode(&self) -> Option<NetMode> {
        self.shared.as_ref().map(|s| s.mode)
    }

    /// The nodes of a bed on a lab server, one per link, named as a local
    /// bed names them.
    pub(crate) fn remote(links: &[Link], service: Arc<dyn crate::net::NodeService>) -> Nodes {
        Nodes {
            watchdog: None,
            shared: None,
            nodes: (0..links.len())
                .map(|i| {
                    let tags = links.get(i).map(|l| l.tags.clone()).unwrap_or_default();
                    Node::remote(i, node_name(links, i), tags, Arc::clone(&service))
                })
                .collect(),
            closed: false,
            containers_took: Duration::ZERO,
            taps_took: Duration::ZERO,
        }
    }

    /// Node `i`, or [`Error::NotFound`] naming the nodes there are.
    pub fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .ok_or_else(|| self.not_found(&i.to_string()))
    }

    /// The node `key` names: an index (`0`) or a name (`"client"`).
    pub fn get(&self, key: impl NodeKey) -> Result<&Node> {
        key.find(self)
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
            .map(|n| format!("{} (index {})", n.name, n.index))
            .collect();
        let hint = match names.len() {
            0 => "this test bed has no nodes".to_string(),
            1 => format!("this test bed has one node: {}", names[0]),
            n => format!("this test bed has {n} nodes: {}", names.join(", ")),
        };
        Error::NotFound {
            what: format!("node {what}"),
            hint,
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
        let mut results =
            crate::logging::each_at_once(nodes, "a node close thread", |n: Node| n.close());
        if let Some(h) = self.shared.as_ref().and_then(|s| s.helper.as_ref()) {
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

/// What names a node: its index (`0`) or its name (`"client"`, its link's
/// name, or `node<i>` for an unnamed link).
pub trait NodeKey {
    /// The node of `nodes` this key names.
    fn find<'a>(&self, nodes: &'a Nodes) -> Result<&'a Node>;
}

macro_rules! index_key {
    ($($t:ty),*) => {$(
        impl NodeKey for $t {
            fn find<'a>(&self, nodes: &'a Nodes) -> Result<&'a Node> {
                // A negative index is a mistake, not a name: `-1` is a
                // valid link name, and must not be found by `node(-1)`.
                match usize::try_from(*self) {
                    Ok(i) => nodes.node(i),
                    Err(_) => Err(nodes.not_found(&format!("index {self} (indexes count from 0)"))),
                }
            }
        }
    )*};
}
index_key!(usize, u32, i32);

impl NodeKey for &str {
    fn find<'a>(&self, nodes: &'a Nodes) -> Result<&'a Node> {
        nodes.by_name(self)
    }
}

impl NodeKey for &String {
    fn find<'a>(&self, nodes: &'a Nodes) -> Result<&'a Node> {
        nodes.by_name(self)
    }
}
