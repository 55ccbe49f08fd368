//! Nodes: one Docker container per DUT link, owning the network namespace
//! that holds the link's tap (`eth0`), plus app containers that join it and
//! link impairment and state.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::docker::{Container, ContainerSpec, Docker, Output};
use crate::error::{Error, Result};
use crate::impair::Relay;
use crate::netns::{self, NetCmd, NetMode};
use crate::run::{owner_labels, RunId};

/// The image of node containers.
pub const NODE_IMAGE: &str = "alpy/node";
/// The image of the helper container (needs `ip`, `tc`, `nsenter`).
pub const HELPER_IMAGE: &str = "alpy/tools";
/// The name of the tap inside each node.
pub const TAP_NAME: &str = "eth0";

/// The node side of one link: addresses, gateways, routes, MAC.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// Addresses with prefix length, IPv4 or IPv6 (`192.168.1.2/24`).
    pub addrs: Vec<String>,
    /// IPv4 default gateway.
    pub gateway: Option<String>,
    /// IPv6 default gateway.
    pub gateway6: Option<String>,
    /// Extra routes: (destination prefix, next hop).
    pub routes: Vec<(String, String)>,
    /// The tap's MAC; derived from the run id and link index if `None`.
    pub mac: Option<String>,
    /// Put a user-space relay between the tap and the DUT, so that
    /// impairment works without the kernel's netem (see [`crate::impair`]).
    pub relay: bool,
}

impl Link {
    /// An unconfigured link.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address (`192.168.1.2/24` or `2001:db8:1::2/64`).
    pub fn node_addr(mut self, cidr: &str) -> Self {
        self.addrs.push(cidr.to_string());
        self
    }

    /// Sets the default gateway (IPv4 or IPv6, by its form).
    pub fn gateway(mut self, addr: &str) -> Self {
        if addr.contains(':') {
            self.gateway6 = Some(addr.to_string());
        } else {
            self.gateway = Some(addr.to_string());
        }
        self
    }

    /// Adds a route to `dest` via `via`.
    pub fn route(mut self, dest: &str, via: &str) -> Self {
        self.routes.push((dest.to_string(), via.to_string()));
        self
    }

    /// Sets the node-side MAC address.
    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.to_string());
        self
    }

    /// Impairs this link in user space (a relay between tap and DUT)
    /// instead of with `tc netem`, which some host kernels lack.
    pub fn relay(mut self) -> Self {
        self.relay = true;
        self
    }

    /// The commands that configure `eth0` for this link.
    fn commands(&self, mac: &str) -> Vec<NetCmd> {
        let mut c = Vec::new();
        let v6 = self.addrs.iter().any(|a| a.contains(':')) || self.gateway6.is_some();
        if v6 {
            // Docker disables IPv6 in containers; enable it on the tap.
            c.push(NetCmd::Sysctl(
                format!("net.ipv6.conf.{TAP_NAME}.disable_ipv6"),
                "0".into(),
            ));
        }
        c.push(NetCmd::ip(&format!(
            "link set dev {TAP_NAME} address {mac}"
        )));
        c.push(NetCmd::ip(&format!("link set dev {TAP_NAME} up")));
        for a in &self.addrs {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            c.push(NetCmd::ip(&format!("addr add {a} dev {TAP_NAME}{nodad}")));
        }
        if let Some(g) = &self.gateway {
            c.push(NetCmd::ip(&format!(
                "route add default via {g} dev {TAP_NAME}"
            )));
        }
        if let Some(g) = &self.gateway6 {
            // The family follows from the gateway's address (`ip -batch` takes no options).
            c.push(NetCmd::ip(&format!(
                "route add default via {g} dev {TAP_NAME}"
            )));
        }
        for (dest, via) in &self.routes {
            c.push(NetCmd::ip(&format!(
                "route add {dest} via {via} dev {TAP_NAME}"
            )));
        }
        c
    }
}

/// A deterministic, locally administered MAC for link `index` of a run.
pub fn default_mac(run: &RunId, index: usize, dut_side: bool) -> String {
    let h = run.as_str();
    let b = |i: usize| h.get(i..i + 2).unwrap_or("00");
    let first = if dut_side { "52:54" } else { "02:a1" };
    format!("{first}:{}:{}:{}:{:02x}", b(0), b(2), b(4), index)
}

/// Link impairment, applied with `tc` on a node's `eth0` (egress from the
/// node towards the DUT).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impairment {
    /// Added delay.
    pub delay: Option<Duration>,
    /// Jitter around the delay.
    pub jitter: Option<Duration>,
    /// Packet loss in percent.
    pub loss_percent: Option<f64>,
    /// Rate limit in kbit/s.
    pub rate_kbit: Option<u64>,
}

impl Impairment {
    fn commands(&self) -> Vec<NetCmd> {
        let netem_needed =
            self.delay.is_some() || self.jitter.is_some() || self.loss_percent.is_some();
        if !netem_needed {
            if let Some(rate) = self.rate_kbit {
                // A pure rate limit needs no netem: tbf is more widely built.
                return vec![NetCmd::tc(&format!(
                    "qdisc replace dev {TAP_NAME} root tbf rate {rate}kbit burst 16kb latency 400ms"
                ))];
            }
            return Vec::new();
        }
        let mut s = format!("qdisc replace dev {TAP_NAME} root netem");
        if let Some(d) = self.delay {
            s.push_str(&format!(" delay {}us", d.as_micros()));
            if let Some(j) = self.jitter {
                s.push_str(&format!(" {}us", j.as_micros()));
            }
        }
        if let Some(l) = self.loss_percent {
            s.push_str(&format!(" loss {l}%"));
        }
        if let Some(r) = self.rate_kbit {
            s.push_str(&format!(" rate {r}kbit"));
        }
        vec![NetCmd::tc(&s)]
    }
}

/// A program to run in a container that joins a node's namespace.
#[derive(Debug, Clone)]
pub struct App {
    image: String,
    cmd: Vec<String>,
    cap_add: Vec<String>,
    env: Vec<String>,
    binds: Vec<String>,
}

impl App {
    /// An app from `image` with its default command.
    pub fn new(image: &str) -> Self {
        App {
            image: image.to_string(),
            cmd: Vec::new(),
            cap_add: Vec::new(),
            env: Vec::new(),
            binds: Vec::new(),
        }
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
}

/// What all nodes of a test bed share.
struct Shared {
    docker: Arc<Docker>,
    run: RunId,
    mode: NetMode,
    log_dir: Option<PathBuf>,
    helper: Mutex<Option<Container>>,
    /// Helper mode: a private directory shared with the helper, holding
    /// the socket taps are passed through and the script that makes them.
    helper_dir: Option<PathBuf>,
    apps: AtomicUsize,
}

/// The helper's view of [`Shared::helper_dir`].
const HELPER_DIR: &str = "/alpy-net";
/// Creates a tap in the current namespace and passes its fd back.
const MKTAP_PY: &str = include_str!("helper/mktap.py");

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

    /// Runs a shell script in the helper container (started on first use).
    fn helper_script(&self, script: &str) -> Result<()> {
        let mut guard = self.helper.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut spec = self.spec(
                HELPER_IMAGE,
                self.run.name("helper"),
                vec!["sleep".into(), "infinity".into()],
            );
            spec.network_mode = Some("host".into());
            spec.pid_mode = Some("host".into());
            // Just what nsenter, TUNSETIFF and sysctl writes need; not
            // --privileged, which fails where the engine lacks some caps.
            spec.cap_add = ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
                .map(String::from)
                .to_vec();
            spec.devices = vec!["/dev/net/tun".into()];
            spec.security_opt = vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()];
            spec.unmask_proc = true;
            if let Some(dir) = &self.helper_dir {
                spec.binds = vec![format!("{}:{HELPER_DIR}", dir.display())];
            }
            spec.labels.insert("alpy.role".into(), "helper".into());
            *guard = Some(Container::run(&self.docker, &spec, None)?);
        }
        let helper = guard
            .as_ref()
            .ok_or_else(|| Error::Net("no helper".into()))?;
        log::debug!(target: "alpy::node", "helper script:\n{script}");
        helper
            .exec(&["sh", "-ec", script], Duration::from_secs(60))?
            .checked("the namespace helper script")
            .map(drop)
    }

    /// Runs commands in node `pid`'s namespace, by whichever mode.
    fn in_node(&self, pid: i32, cmds: Vec<NetCmd>) -> Result<()> {
        match self.mode {
            NetMode::Direct => netns::in_netns(pid, move || netns::run_here(&cmds)),
            NetMode::Helper => self.helper_script(&nsenter_script(pid, &cmds)),
        }
    }
}

/// A private (0700) directory for the helper, removed with the nodes.
fn make_helper_dir(run: &RunId) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(run.name("net"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let owner = dir.join("owner");
    std::fs::write(&owner, crate::run::owner_file_text(run))
        .map_err(|e| Error::io(format!("write {}", owner.display()), e))?;
    let script = dir.join("mktap.py");
    std::fs::write(&script, MKTAP_PY)
        .map_err(|e| Error::io(format!("write {}", script.display()), e))?;
    Ok(dir)
}

/// Accepts `count` connections, each passing one fd tagged with a node index.
fn receive_fds(
    listener: &UnixListener,
    count: usize,
    timeout: Duration,
) -> Result<Vec<(usize, OwnedFd)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    listener
        .set_nonblocking(false)
        .map_err(|e| Error::io("configure the fd socket", e))?;
    while out.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: format!("the helper to pass {count} tap fds (got {})", out.len()),
                timeout,
                tail: String::new(),
            });
        }
        let (stream, _) = listener
            .accept()
            .map_err(|e| Error::io("accept a tap fd", e))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Error::io("configure the fd socket", e))?;
        let mut buf = [0u8; 32];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::Net(format!("receive a tap fd: {e}")))?;
        let mut fd = None;
        for c in msg
            .cmsgs()
            .map_err(|e| Error::Net(format!("read a tap fd message: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS fds are new and ours to own.
                fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        let n = msg.bytes;
        let Some(fd) = fd else {
            // A wake-up connection after a failed script: stop waiting.
            return Err(Error::Net(
                "the helper script failed before passing every tap".into(),
            ));
        };
        let tag = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::Net("the helper sent a tap with a bad tag".into()))?;
        out.push((tag, fd));
    }
    Ok(out)
}

fn nsenter_script(pid: i32, cmds: &[NetCmd]) -> String {
    let body: Vec<String> = cmds.iter().map(NetCmd::to_shell).collect();
    format!(
        "nsenter -t {pid} -n sh -ec '{}'\n",
        body.join("; ").replace('\'', "'\\''")
    )
}

/// The nodes of one test bed. Close them with [`Nodes::close`].
pub struct Nodes {
    shared: Arc<Shared>,
    nodes: Vec<Node>,
    closed: bool,
    containers_took: Duration,
    taps_took: Duration,
}

/// One node: a container whose namespace holds the link's tap.
pub struct Node {
    index: usize,
    container: Option<Container>,
    pid: i32,
    mac: String,
    tap: Option<OwnedFd>,
    /// With [`Link::relay`]: the relay and the socket end QEMU gets.
    relay: Option<(Relay, OwnedFd)>,
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

impl Nodes {
    /// Creates one node per link, concurrently, each with its tap `eth0`
    /// up and configured.
    pub fn create(
        docker: &Arc<Docker>,
        run: &RunId,
        links: &[Link],
        opts: &NodeOptions,
    ) -> Result<Nodes> {
        let mode = match opts.mode {
            Some(m) => m,
            None => NetMode::detect()?,
        };
        let shared = Arc::new(Shared {
            docker: Arc::clone(docker),
            run: run.clone(),
            mode,
            log_dir: opts.log_dir.clone(),
            helper: Mutex::new(None),
            helper_dir: match mode {
                NetMode::Direct => None,
                NetMode::Helper => Some(make_helper_dir(run)?),
            },
            apps: AtomicUsize::new(0),
        });
        log::info!(target: "alpy::node", "creating {} nodes ({mode:?})", links.len());
        let t0 = std::time::Instant::now();
        // Containers first, all at once (the helper too, if needed).
        let containers: Vec<Result<(Container, i32)>> = std::thread::scope(|s| {
            let helper =
                (mode == NetMode::Helper).then(|| s.spawn(|| shared.helper_script("true")));
            let handles: Vec<_> = (0..links.len())
                .map(|i| {
                    let shared = &shared;
                    s.spawn(move || {
                        let name = shared.run.name(&format!("node{i}"));
                        let mut spec = shared.spec(
                            opts.image.as_deref().unwrap_or(NODE_IMAGE),
                            name.clone(),
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
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Net("node thread panicked".into())))
                })
                .collect();
            if let Some(h) = helper {
                if let Err(e) = h
                    .join()
                    .unwrap_or_else(|_| Err(Error::Net("helper thread panicked".into())))
                {
                    out.push(Err(e));
                }
            }
            out
        });
        let mut nodes = Nodes {
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
                    pid,
                    mac: links
                        .get(i)
                        .and_then(|l| l.mac.clone())
                        .unwrap_or_else(|| default_mac(run, i, false)),
                    container: Some(c),
                    tap: None,
                    relay: None,
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
        match mode {
            NetMode::Direct => nodes.taps_direct(links)?,
            NetMode::Helper => nodes.taps_helper(links)?,
        }
        for (n, link) in nodes.nodes.iter_mut().zip(links) {
            if link.relay {
                let (dut_end, relay_end) = std::os::unix::net::UnixDatagram::pair()
                    .map_err(|e| Error::io("create a relay socket pair", e))?;
                let relay =
                    Relay::start(n.tap_dup()?, relay_end.into(), &format!("link{}", n.index))?;
                n.relay = Some((relay, dut_end.into()));
            }
        }
        nodes.taps_took = t1.elapsed();
        Ok(nodes)
    }

    fn taps_direct(&mut self, links: &[Link]) -> Result<()> {
        for (n, link) in self.nodes.iter_mut().zip(links) {
            let cmds = link.commands(&n.mac);
            let fd = netns::in_netns(n.pid, move || {
                let fd = netns::open_tap(TAP_NAME)?;
                netns::run_here(&cmds)?;
                Ok(fd)
            })?;
            n.tap = Some(fd);
        }
        Ok(())
    }

    fn taps_helper(&mut self, links: &[Link]) -> Result<()> {
        let dir = self
            .shared
            .helper_dir
            .clone()
            .ok_or_else(|| Error::Net("helper mode without its directory".into()))?;
        let sock_path = dir.join("fd.sock");
        let _ = std::fs::remove_file(&sock_path);
        let listener = UnixListener::bind(&sock_path)
            .map_err(|e| Error::io(format!("listen on {}", sock_path.display()), e))?;
        // One helper exec for all nodes: make each tap inside its node and
        // pass the fd back, then configure it.
        let mut script = String::new();
        for (n, link) in self.nodes.iter().zip(links) {
            script.push_str(&format!(
                "nsenter -t {pid} -n python3 {HELPER_DIR}/mktap.py {HELPER_DIR}/fd.sock {TAP_NAME} {i}\n",
                pid = n.pid,
                i = n.index
            ));
            script.push_str(&nsenter_script(n.pid, &link.commands(&n.mac)));
        }
        let count = self.nodes.len();
        let fds = std::thread::scope(|s| {
            let receiver = s.spawn(|| receive_fds(&listener, count, Duration::from_secs(60)));
            let ran = self.shared.helper_script(&script);
            // Unblock the receiver if the script failed before sending all.
            if ran.is_err() {
                let _ = std::os::unix::net::UnixStream::connect(&sock_path);
            }
            let fds = receiver
                .join()
                .unwrap_or_else(|_| Err(Error::Net("fd receiver panicked".into())));
            ran.and(fds)
        })?;
        let _ = std::fs::remove_file(&sock_path);
        for (tag, fd) in fds {
            let node = self
                .nodes
                .iter_mut()
                .find(|n| n.index == tag)
                .ok_or_else(|| {
                    Error::Net(format!("the helper sent a tap for unknown node {tag}"))
                })?;
            node.tap = Some(fd);
        }
        Ok(())
    }

    /// How long creating the containers took, and then the taps with their
    /// configuration.
    pub fn timings(&self) -> (Duration, Duration) {
        (self.containers_took, self.taps_took)
    }

    /// How namespace work is done for these nodes.
    pub fn mode(&self) -> NetMode {
        self.shared.mode
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`, mutably (to take its tap).
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
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
        let helper = self
            .shared
            .helper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let mut hs: Vec<_> = nodes
                .into_iter()
                .map(|n| s.spawn(move || n.close()))
                .collect();
            if let Some(h) = helper {
                hs.push(s.spawn(move || h.close()));
            }
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Net("close thread panicked".into())))
                })
                .collect()
        });
        if let Some(dir) = &self.shared.helper_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(drop)
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
            .ok_or_else(|| Error::Net("node is closed".into()))
    }

    /// The link index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node container's name.
    pub fn name(&self) -> &str {
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
    pub fn mac(&self) -> &str {
        &self.mac
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
            None => Err(Error::Net("the node has no tap".into())),
        }
    }

    fn app_spec(&self, app: &App) -> Result<ContainerSpec> {
        let n = self.shared.apps.fetch_add(1, Ordering::Relaxed);
        let mut spec = self.shared.spec(
            &app.image,
            self.shared.run.name(&format!("node{}-app{n}", self.index)),
            app.cmd.clone(),
        );
        spec.network_mode = Some(format!("container:{}", self.container()?.id()));
        spec.cap_add = app.cap_add.clone();
        spec.env = app.env.clone();
        spec.binds = app.binds.clone();
        spec.labels.insert("alpy.role".into(), "app".into());
        Ok(spec)
    }

    /// Runs an app in this node's namespace to completion; returns its exit
    /// status and output (check it with [`Output::checked`]).
    pub fn run_app(&self, app: &App, timeout: Duration) -> Result<Output> {
        let spec = self.app_spec(app)?;
        let log = self.shared.log_file(&spec.name);
        let mut c = Container::run(&self.shared.docker, &spec, log.as_deref())?;
        let out = c.wait(timeout);
        c.close()?;
        out
    }

    /// Starts an app in this node's namespace in the background. Close the
    /// returned guard to stop it and collect its logs.
    pub fn spawn_app(&self, app: &App) -> Result<Container> {
        let spec = self.app_spec(app)?;
        let log = self.shared.log_file(&spec.name);
        Container::run(&self.shared.docker, &spec, log.as_deref())
    }

    /// Runs `ip`/`tc` commands in the node's namespace.
    pub fn configure(&self, cmds: Vec<NetCmd>) -> Result<()> {
        self.shared.in_node(self.pid, cmds)
    }

    /// Applies delay, jitter, loss and rate to what the node sends to the
    /// DUT (replacing any earlier impairment): in the link's relay if it has
    /// one, else with `tc` on `eth0`.
    pub fn impair(&self, imp: &Impairment) -> Result<()> {
        if let Some(r) = self.relay() {
            r.set(imp);
            return Ok(());
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
                    "the host kernel has no netem (CONFIG_NET_SCH_NETEM): {imp:?} needs it ({m})"
                ))
            }
            e => e,
        })
    }

    /// Removes any impairment.
    pub fn clear_impairment(&self) -> Result<()> {
        if let Some(r) = self.relay() {
            r.set(&Impairment::default());
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

    /// Stops the relay, closes the tap fd and removes the container.
    pub fn close(mut self) -> Result<()> {
        let relayed = match self.relay.take() {
            Some((r, _)) => r.close(),
            None => Ok(()),
        };
        self.tap = None;
        let removed = match self.container.take() {
            Some(c) => c.close(),
            None => Ok(()),
        };
        relayed.and(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_commands() {
        let l = Link::new()
            .node_addr("192.168.1.2/24")
            .node_addr("2001:db8:1::2/64")
            .gateway("192.168.1.1")
            .gateway("2001:db8:1::1")
            .route("10.9.0.0/16", "192.168.1.1");
        let cmds: Vec<String> = l
            .commands("02:a1:00:00:00:00")
            .iter()
            .map(NetCmd::to_shell)
            .collect();
        assert_eq!(
            cmds,
            [
                "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
                "ip link set dev eth0 address 02:a1:00:00:00:00",
                "ip link set dev eth0 up",
                "ip addr add 192.168.1.2/24 dev eth0",
                "ip addr add 2001:db8:1::2/64 dev eth0 nodad",
                "ip route add default via 192.168.1.1 dev eth0",
                "ip route add default via 2001:db8:1::1 dev eth0",
                "ip route add 10.9.0.0/16 via 192.168.1.1 dev eth0",
            ]
        );
    }

    #[test]
    fn impairment_commands() {
        let only_rate = Impairment {
            rate_kbit: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            only_rate.commands()[0].to_shell(),
            "tc qdisc replace dev eth0 root tbf rate 1000kbit burst 16kb latency 400ms"
        );
        let delay = Impairment {
            delay: Some(Duration::from_millis(100)),
            jitter: Some(Duration::from_millis(5)),
            loss_percent: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            delay.commands()[0].to_shell(),
            "tc qdisc replace dev eth0 root netem delay 100000us 5000us loss 1.5%"
        );
    }

    #[test]
    fn macs_are_deterministic() {
        let run = RunId::new();
        assert_eq!(default_mac(&run, 1, false), default_mac(&run, 1, false));
        assert_ne!(default_mac(&run, 0, false), default_mac(&run, 1, false));
        assert!(default_mac(&run, 0, true).starts_with("52:54:"));
    }
}
