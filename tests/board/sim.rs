//! A rack built from real parts on this machine: boards are QEMU VMs
//! running the test guest; their PoE switch is Debian's `snmpd` with the
//! `poe_switch.py` extension, which maps each PoE port to a VM's QMP
//! socket. Everything is removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alpy::board::power::{PortPower, PowerDriver, SnmpAuth, SnmpPoe};

/// The v2c community with write access.
pub const COMMUNITY: &str = "alpy-rw-community";
/// The SNMPv3 user, its SHA pass phrase and its AES pass phrase.
pub const V3: (&str, &str, &str) = ("alpyv3", "alpy-auth-phrase", "alpy-priv-phrase");

/// What each board of a rack boots.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// A root disk (qcow2), written to a snapshot only.
    pub disk: Option<PathBuf>,
    pub append: String,
    /// QEMU's NIC device.
    pub nic: &'static str,
    pub memory_mib: u32,
}

pub struct SimRack {
    pub dir: PathBuf,
    pub port: u16,
    /// Each board's console on ser2net: (raw TCP port, RFC 2217 port).
    pub consoles: Vec<(u16, u16)>,
    /// Each board's console on ser2net's plain telnet port.
    pub telnets: Vec<u16>,
    /// Each board's ports: the host side of its NICs' taps.
    pub ports: Vec<Vec<String>>,
    vms: Vec<Child>,
    snmpd: Option<Child>,
    ser2net: Option<Child>,
}

fn free_tcp_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    s.local_addr().expect("its address").port()
}

/// The pty QEMU gave a VM's first serial port, from QMP.
pub fn serial_pty(qmp: &Path) -> String {
    let s = std::os::unix::net::UnixStream::connect(qmp).expect("connect to QMP");
    let mut q = alpy::vm::qmp::Qmp::handshake(s, Duration::from_secs(10)).expect("QMP handshake");
    let devs = q.execute("query-chardev", None).expect("query-chardev");
    devs.as_array()
        .into_iter()
        .flatten()
        .find(|d| d["label"] == "s0")
        .and_then(|d| d["filename"].as_str())
        .and_then(|f| f.strip_prefix("pty:"))
        .unwrap_or_else(|| panic!("no pty in {devs}"))
        .to_string()
}

/// Children die with the test (a killed test leaves no VM or daemon).
fn dies_with_us(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    s.local_addr().expect("its address").port()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[allow(dead_code)] // each test binary uses some of the ways to start
impl SimRack {
    /// A switch with `boards` PoE ports (1.1, 1.2, ...), each powering a VM.
    pub fn start(name: &str, boards: usize) -> SimRack {
        SimRack::start_with(name, boards, 0, "console=ttyS0,115200 quiet")
    }

    /// As [`SimRack::start`], each board with `nics` e1000 NICs whose
    /// host sides are taps (its ports, [`SimRack::ports`]), booted with
    /// kernel arguments `append`.
    pub fn start_with(name: &str, boards: usize, nics: usize, append: &str) -> SimRack {
        let (kernel, initrd) = crate::common::guest();
        let guest = Guest {
            kernel,
            initrd,
            disk: None,
            append: append.to_string(),
            nic: "e1000",
            memory_mib: 128,
        };
        SimRack::start_guest(name, boards, nics, &guest)
    }

    /// As [`SimRack::start_with`], each board booting `guest`.
    pub fn start_guest(name: &str, boards: usize, nics: usize, guest: &Guest) -> SimRack {
        let dir = std::env::temp_dir().join(format!("alpy-rack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("persist")).unwrap();
        let mut rack = SimRack {
            dir: dir.clone(),
            port: free_udp_port(),
            consoles: Vec::new(),
            telnets: Vec::new(),
            ports: Vec::new(),
            vms: Vec::new(),
            snmpd: None,
            ser2net: None,
        };
        let mut ports = serde_json::Map::new();
        for i in 1..=boards {
            let qmp = dir.join(format!("vm{i}.qmp"));
            // Tap names are the host's: unique per process and board.
            let taps: Vec<String> = (0..nics)
                .map(|n| format!("ab{:x}b{i}n{n}", std::process::id() & 0xfffff))
                .collect();
            let mut nic_args = Vec::new();
            for (n, tap) in taps.iter().enumerate() {
                nic_args.push("-netdev".to_string());
                nic_args.push(format!("tap,id=n{n},ifname={tap},script=no,downscript=no"));
                nic_args.push("-device".to_string());
                nic_args.push(format!("{},netdev=n{n},romfile=", guest.nic));
            }
            if let Some(disk) = &guest.disk {
                // The image is shared: each board writes to a snapshot.
                nic_args.push("-drive".to_string());
                nic_args.push(format!(
                    "file={},if=virtio,format=qcow2,snapshot=on",
                    disk.display()
                ));
            }
            rack.ports.push(taps);
            let vm = dies_with_us(&mut Command::new("qemu-system-x86_64"))
                .args([
                    "-nodefaults",
                    "-no-user-config",
                    "-display",
                    "none",
                    "-machine",
                    "pc,accel=tcg",
                    "-m",
                    &guest.memory_mib.to_string(),
                ])
                .arg("-kernel")
                .arg(&guest.kernel)
                .arg("-initrd")
                .arg(&guest.initrd)
                .args(["-append", &guest.append])
                .args(&nic_args)
                .args(["-chardev", "pty,id=s0", "-serial", "chardev:s0"])
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", qmp.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a board's QEMU");
            rack.vms.push(vm);
            wait_for("a board's QMP socket", Duration::from_secs(10), || {
                qmp.exists()
            });
            ports.insert(
                format!("1.{i}"),
                serde_json::Value::String(qmp.display().to_string()),
            );
        }
        std::fs::write(
            dir.join("ports.json"),
            serde_json::Value::Object(ports).to_string(),
        )
        .unwrap();
        // The console server: each board's serial port on a raw TCP port
        // and on a telnet port with RFC 2217 (one client at a time).
        let mut yaml = String::new();
        for i in 1..=boards {
            let pty = serial_pty(&rack.qmp(i));
            let raw = free_tcp_port();
            let rfc = std::iter::repeat_with(free_tcp_port)
                .find(|p| *p != raw)
                .unwrap();
            let tel = std::iter::repeat_with(free_tcp_port)
                .find(|p| *p != raw && *p != rfc)
                .unwrap();
            for (name, accepter) in [
                ("raw", format!("tcp,127.0.0.1,{raw}")),
                ("rfc", format!("telnet(rfc2217),tcp,127.0.0.1,{rfc}")),
                ("tel", format!("telnet,tcp,127.0.0.1,{tel}")),
            ] {
                yaml.push_str(&format!(
                    "connection: &b{i}{name}\n  accepter: {accepter}\n  connector: serialdev,{pty},115200n81,local\n  options:\n    kickolduser: true\n"
                ));
            }
            rack.consoles.push((raw, rfc));
            rack.telnets.push(tel);
        }
        std::fs::write(dir.join("ser2net.yaml"), yaml).unwrap();
        let ser2net = dies_with_us(&mut Command::new("ser2net"))
            .arg("-n")
            .arg("-c")
            .arg(dir.join("ser2net.yaml"))
            .arg("-P")
            .arg(dir.join("ser2net.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("ser2net.log")).unwrap())
            .spawn()
            .expect("start ser2net (scripts/setup installs it)");
        rack.ser2net = Some(ser2net);
        let last = rack.consoles.last().map(|c| c.0);
        wait_for("ser2net to listen", Duration::from_secs(10), || {
            last.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        // Beside this file, from alpy's tests and from alpy-lab's.
        let ext = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("tests/board/poe_switch.py"))
            .find(|p| p.is_file())
            .expect("tests/board/poe_switch.py in the workspace");
        let (user, auth, privacy) = V3;
        std::fs::write(
            dir.join("snmpd.conf"),
            format!(
                "agentAddress udp:127.0.0.1:{port}\n\
                 rwcommunity {COMMUNITY} 127.0.0.1\n\
                 createUser {user} SHA \"{auth}\" AES \"{privacy}\"\n\
                 rwuser {user} priv\n\
                 pass_persist .1.3.6.1.2.1.105.1.1.1.3 {ext}\n",
                port = rack.port,
                ext = ext.display()
            ),
        )
        .unwrap();
        let snmpd = dies_with_us(&mut Command::new("snmpd"))
            .args(["-f", "-C", "-I", "-smux", "-c"])
            .arg(dir.join("snmpd.conf"))
            .arg("-Lf")
            .arg(dir.join("snmpd.log"))
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .env("ALPY_POE_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmpd (scripts/setup installs it)");
        rack.snmpd = Some(snmpd);
        let probe = SnmpPoe::new(&rack.agent(), 1, 1, SnmpAuth::v2c(COMMUNITY));
        let log = dir.join("snmpd.log");
        wait_for(
            &format!("snmpd to answer (its log: {})", log.display()),
            Duration::from_secs(20),
            || matches!(probe.status(), Ok(PortPower::On)),
        );
        rack
    }

    /// The agent's address.
    pub fn agent(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Port `i`'s QMP socket.
    pub fn qmp(&self, i: usize) -> PathBuf {
        self.dir.join(format!("vm{i}.qmp"))
    }

    /// What the extension logged (one line per request, set's start and end).
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for SimRack {
    fn drop(&mut self) {
        for c in self
            .vms
            .iter_mut()
            .chain(self.snmpd.as_mut())
            .chain(self.ser2net.as_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "the simulated rack's files (agent and snmpd logs) are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
