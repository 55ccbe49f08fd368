//! Board power against real parts: a PoE switch that is Debian's `snmpd`
//! (with an extension that powers QEMU VMs on and off), SNMPv2c and v3,
//! external power commands, and one request at a time per switch.

mod common;
#[path = "board/sim.rs"]
mod sim;

use std::time::Duration;

use alpy::board::power::{
    CommandPower, PortPower, Power, PowerDriver, QmpPower, SnmpAuth, SnmpPoe,
};

#[test]
fn snmp_v2c_switches_a_board_off_and_on() {
    let rack = sim::SimRack::start("v2c", 1);
    let power = Power::new(
        "board-1",
        Box::new(SnmpPoe::new(
            &rack.agent(),
            1,
            1,
            SnmpAuth::v2c(sim::COMMUNITY),
        )),
    );
    let vm = QmpPower::new(rack.qmp(1));
    assert_eq!(power.status().unwrap(), PortPower::On);
    power.off().unwrap();
    // The agent reads the VM's real state, and QEMU says it stopped.
    assert_eq!(power.status().unwrap(), PortPower::Off);
    assert_eq!(vm.status().unwrap(), PortPower::Off, "the VM still runs");
    power.on().unwrap();
    assert_eq!(power.status().unwrap(), PortPower::On);
    assert_eq!(
        vm.status().unwrap(),
        PortPower::On,
        "the VM did not start again"
    );
    let log = rack.agent_log();
    assert!(
        log.contains("begin set 1.1 2") && log.contains("begin set 1.1 1"),
        "{log}"
    );
}

#[test]
fn snmp_v3_auth_priv_works_and_wrong_credentials_name_the_board_and_agent() {
    let rack = sim::SimRack::start("v3", 1);
    let (user, auth, privacy) = sim::V3;
    let v3 = SnmpAuth::v3_auth_priv(user, "SHA", auth, "AES", privacy);
    let power = Power::new("board-v3", Box::new(SnmpPoe::new(&rack.agent(), 1, 1, v3)));
    power.off().unwrap();
    assert_eq!(power.status().unwrap(), PortPower::Off);
    power.on().unwrap();
    assert_eq!(power.status().unwrap(), PortPower::On);

    // A wrong community: the agent drops the request without a word.
    let mut wrong = SnmpPoe::new(&rack.agent(), 1, 1, SnmpAuth::v2c("not-the-community"));
    wrong.timeout = Duration::from_millis(500);
    let e = Power::new("board-7", Box::new(wrong))
        .off()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("board board-7") && e.contains(&format!("SNMP agent {}", rack.agent())),
        "{e}"
    );
    assert!(e.contains("community"), "the error says what to check: {e}");
    assert!(
        !e.contains("not-the-community"),
        "a secret in an error: {e}"
    );
    // A wrong v3 pass phrase.
    let mut bad = SnmpPoe::new(
        &rack.agent(),
        1,
        1,
        SnmpAuth::v3_auth_priv(user, "SHA", "wrong-phrase-1", "AES", privacy),
    );
    bad.timeout = Duration::from_millis(500);
    let e = Power::new("board-8", Box::new(bad))
        .status()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("board board-8") && e.contains("SNMP agent"),
        "{e}"
    );
    assert!(
        !e.contains("wrong-phrase-1") && !e.contains(privacy),
        "a secret in an error: {e}"
    );
    // The board is untouched by the refused requests.
    assert_eq!(QmpPower::new(rack.qmp(1)).status().unwrap(), PortPower::On);
}

#[test]
fn power_requests_to_one_switch_run_one_after_another() {
    // An external power switch that takes one session at a time: each
    // request logs its start and end, 0.3 s apart.
    let dir = std::env::temp_dir().join(format!("alpy-pdu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("pdu.log");
    let script = dir.join("pdu");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"begin $1 $2\" >>{log}\nsleep 0.3\necho \"end $1 $2\" >>{log}\necho on\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    let switch = format!("pdu-{}", std::process::id());
    let threads: Vec<_> = (1..=3)
        .map(|i| {
            let outlet = i.to_string();
            let driver = CommandPower::new(
                &switch,
                &[&s, "on", &outlet],
                &[&s, "off", &outlet],
                &[&s, "status", &outlet],
            );
            std::thread::spawn(move || Power::new(&format!("board-{i}"), Box::new(driver)).on())
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    // A PDU tool's arguments (a password, often) stay out of errors.
    let secret_argv = CommandPower::new(
        &switch,
        &["false", "--password=hunter2"],
        &["false"],
        &["false"],
    );
    let e = Power::new("board-x", Box::new(secret_argv))
        .on()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("board board-x") && e.contains("false") && !e.contains("hunter2"),
        "{e}"
    );
    for pair in lines.chunks(2) {
        let (b, e) = (pair[0], pair[1]);
        assert!(
            b.starts_with("begin") && e.starts_with("end") && b[5..] == e[3..],
            "requests overlapped:\n{text}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Each kind of console port reaches one board's shell, one after
/// another: ser2net's raw, RFC 2217 and telnet ports, then the serial
/// device itself (ser2net opens it only while a client is connected).
#[test]
fn every_console_kind_reaches_the_guest_s_prompt() {
    use alpy::board::console::{BoardConsole, ConsolePort};
    let rack = sim::SimRack::start("consoles", 1);
    let (raw, rfc) = rack.consoles[0];
    let tel = rack.telnets[0];
    for (board, port) in [
        ("board-raw", ConsolePort::Tcp(format!("127.0.0.1:{raw}"))),
        (
            "board-rfc",
            ConsolePort::Rfc2217 {
                addr: format!("127.0.0.1:{rfc}"),
                baud: 115200,
            },
        ),
        ("board-tel", ConsolePort::Telnet(format!("127.0.0.1:{tel}"))),
        (
            "board-tty",
            ConsolePort::Serial {
                path: sim::serial_pty(&rack.qmp(1)).into(),
                baud: 115200,
            },
        ),
    ] {
        let mut con = BoardConsole::open(board, &port, Duration::from_secs(10), None).unwrap();
        let c = con.console();
        // The guest booted while nobody listened: ask for a prompt.
        c.send_line("").unwrap();
        c.expect(
            &alpy::vm::console::Pattern::exact("guest# "),
            Duration::from_secs(90),
        )
        .unwrap_or_else(|e| panic!("{port}: {e}"));
        c.send_line("echo $((6*7))x").unwrap();
        c.expect(
            &alpy::vm::console::Pattern::exact("42x"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{port}: {e}"));
        con.close().unwrap();
    }
    // While one client has the port, another is told so (after trying
    // for its timeout), for each kind ser2net serves.
    let raw_port = ConsolePort::Tcp(format!("127.0.0.1:{raw}"));
    let held = BoardConsole::open("holder", &raw_port, Duration::from_secs(10), None).unwrap();
    for port in [
        ConsolePort::Telnet(format!("127.0.0.1:{tel}")),
        ConsolePort::Rfc2217 {
            addr: format!("127.0.0.1:{rfc}"),
            baud: 115200,
        },
    ] {
        let e = BoardConsole::open("second", &port, Duration::from_secs(1), None)
            .err()
            .unwrap_or_else(|| panic!("{port}: a second client got the port"))
            .to_string();
        assert!(
            e.contains("another client") && e.contains("already in use"),
            "{port}: {e}"
        );
    }
    held.close().unwrap();
}

#[test]
fn a_console_port_that_refuses_names_the_board_and_the_port() {
    use alpy::board::console::{BoardConsole, ConsolePort};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there now.
    let e = BoardConsole::open(
        "board-9",
        &ConsolePort::Tcp(format!("127.0.0.1:{port}")),
        Duration::from_secs(2),
        None,
    )
    .err()
    .expect("a refused connection")
    .to_string();
    assert!(
        e.contains("board board-9")
            && e.contains(&format!("127.0.0.1:{port}"))
            && e.contains("refused"),
        "{e}"
    );
    // A raw TCP port is not an RFC 2217 one: no confirmation comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = std::thread::spawn(move || {
        let held = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    let e = BoardConsole::open(
        "board-9",
        &ConsolePort::Rfc2217 {
            addr: addr.to_string(),
            baud: 115200,
        },
        Duration::from_secs(1),
        None,
    )
    .err()
    .expect("no RFC 2217 confirmation")
    .to_string();
    assert!(
        e.contains("did not confirm") && e.contains("board board-9"),
        "{e}"
    );
}

#[test]
fn a_board_boots_by_power_cycle_to_its_shell_and_says_when_its_prompt_never_comes() {
    use alpy::board::console::ConsolePort;
    use alpy::board::Board;
    use alpy::Commands;
    let rack = sim::SimRack::start("boot", 1);
    let (_, rfc) = rack.consoles[0];
    let power = || {
        Power::new(
            "board-1",
            Box::new(SnmpPoe::new(
                &rack.agent(),
                1,
                1,
                SnmpAuth::v2c(sim::COMMUNITY),
            )),
        )
    };
    let port = ConsolePort::Rfc2217 {
        addr: format!("127.0.0.1:{rfc}"),
        baud: 115200,
    };
    let transcript = rack.dir.join("board-1.console");
    let mut board = Board::new("board-1", power(), port.clone())
        .prompt("guest# ")
        .transcript(&transcript);
    board.boot(Duration::from_secs(120)).unwrap();
    assert_eq!(
        board
            .shell()
            .unwrap()
            .succeed("echo $((6*7))")
            .unwrap()
            .trim(),
        "42"
    );
    // It was a power cycle (off, then on), and the console saw the boot.
    let log = rack.agent_log();
    let off = log.find("begin set 1.1 2").expect("powered off");
    assert!(
        log[off..].contains("begin set 1.1 1"),
        "powered on after: {log}"
    );
    let seen = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        seen.contains("alpy guest ready"),
        "the console missed the boot: {seen}"
    );
    board.close().unwrap();
    assert_eq!(
        QmpPower::new(rack.qmp(1)).status().unwrap(),
        PortPower::Off,
        "close powers it off"
    );

    // A prompt that never comes: the error names the board and shows what
    // the console did say.
    let mut wrong = Board::new("board-1", power(), port).prompt("router> ");
    let e = wrong.boot(Duration::from_secs(25)).unwrap_err().to_string();
    assert!(
        e.contains("board board-1 after its power cycle") && e.contains("router> "),
        "{e}"
    );
    assert!(e.contains("guest"), "the console's last lines: {e}");
    wrong.close().unwrap();
}

/// The forwarding check, one source for a VM and a board: boot, the
/// machine forwards, a ping crosses it, and both of its NICs' captures
/// show the echo request (host time stamps, in order).
fn forwards_ipv4(bed: &mut alpy::TestBed) {
    use alpy::Commands;
    bed.boot(Duration::from_secs(120)).unwrap();
    assert_eq!(bed.power_state(), alpy::PowerState::Running);
    let forwarding = bed
        .shell()
        .unwrap()
        .succeed("cat /proc/sys/net/ipv4/ip_forward")
        .unwrap();
    assert_eq!(forwarding.trim(), "1");
    bed.node(0)
        .unwrap()
        .execute("ping -c 3 -i 0.2 -W 5 192.168.2.2")
        .unwrap()
        .checked("ping through the machine")
        .unwrap();
    let to = "192.168.2.2".parse().unwrap();
    let request = alpy::pcap::Filter::new().ip_dst(to).icmp_type(8);
    let seen = |nic: usize| {
        let cap = bed.capture(nic).unwrap();
        cap.frames()
            .iter()
            .filter(|f| request.matches(f))
            .map(|f| f.timestamp)
            .collect::<Vec<_>>()
    };
    let (came, left) = (seen(0), seen(1));
    assert!(came.len() >= 3, "NIC 0 saw {} echo requests", came.len());
    assert!(left.len() >= 3, "NIC 1 saw {} echo requests", left.len());
    // Stamps are host time: now, and forwarded after they came.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        now - came[0] < Duration::from_secs(300),
        "{:?} is not host time",
        came[0]
    );
    assert!(
        left[0] >= came[0],
        "left {:?} before it came {:?}",
        left[0],
        came[0]
    );
}

/// A simulated board's spec: its PoE port over SNMP, its console on
/// ser2net (RFC 2217), its ports `ports` (TOML values).
fn board_spec(rack: &sim::SimRack, i: usize, ports: &[String]) -> alpy::board::BoardSpec {
    alpy::board::BoardSpec::from_toml(&format!(
        r#"
        name = "router-{i}"
        class = "guest-router"
        ports = [{ports}]
        console = {{ kind = "rfc2217", addr = "127.0.0.1:{rfc}" }}
        power = {{ driver = "snmp", agent = "{agent}", port = {i}, community = "{community}" }}
        "#,
        ports = ports.join(", "),
        rfc = rack.consoles[i - 1].1,
        agent = rack.agent(),
        community = sim::COMMUNITY,
    ))
    .unwrap()
}

#[test]
fn a_board_in_a_test_bed_forwards_as_the_same_vm_does() {
    let rack = sim::SimRack::start_with("bed", 1, 2, common::ROUTER_APPEND);
    let ports: Vec<String> = rack.ports[0].iter().map(|p| format!("{p:?}")).collect();
    let mut bed = common::router_links("board-bed")
        .board("dut", board_spec(&rack, 1, &ports))
        .start()
        .unwrap();
    // Started: the console is open and the board held off until boot.
    assert_eq!(bed.power_state(), alpy::PowerState::Paused);
    assert_eq!(QmpPower::new(rack.qmp(1)).status().unwrap(), PortPower::Off);
    forwards_ipv4(&mut bed);
    let e = bed.machine("dut").unwrap().set_link(0, false).unwrap_err();
    assert!(e.to_string().contains("is a board"), "{e}");
    let dir = bed.artifacts_dir().to_path_buf();
    bed.close().unwrap();
    assert_eq!(
        QmpPower::new(rack.qmp(1)).status().unwrap(),
        PortPower::Off,
        "close powers the board off"
    );

    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(console.contains("alpy guest ready"), "{console}");

    // The same source against the same guest as a VM.
    let mut vm = common::router_bed("board-bed-vm").start().unwrap();
    forwards_ipv4(&mut vm);
    vm.close().unwrap();
}

#[test]
fn warm_start_and_too_few_ports_are_refused_for_a_board() {
    let spec = |ports: &str| {
        alpy::board::BoardSpec::from_toml(&format!(
            r#"
            name = "fw-7"
            class = "fw"
            ports = [{ports}]
            console = {{ kind = "tcp", addr = "127.0.0.1:9" }}
            power = {{ driver = "qmp", socket = "/nonexistent/fw-7.qmp" }}
            "#
        ))
        .unwrap()
    };
    let warm = common::router_links("board-warm")
        .board("dut", spec(r#""eth8", "eth9""#))
        .warm_start(alpy::WarmStart::new("fw", |_| Ok(())))
        .start()
        .err()
        .expect("warm start on a board")
        .to_string();
    assert!(
        warm.contains("fw-7") && warm.contains("warm start") && warm.contains("power cycle"),
        "{warm}"
    );
    let few = common::router_links("board-ports")
        .board("dut", spec(r#""eth8""#))
        .start()
        .err()
        .expect("two links on one port")
        .to_string();
    assert!(
        few.contains("fw-7") && few.contains("1 port(s)") && few.contains("NIC 1"),
        "{few}"
    );
    let down = common::router_links("board-down")
        .link(alpy::Link::new().name("spare").down())
        .board("dut", spec(r#""eth7", "eth8", "eth9""#))
        .start()
        .err()
        .expect("a board's link that starts down")
        .to_string();
    assert!(
        down.contains("spare") && down.contains("fw-7") && down.contains("loss 100%"),
        "{down}"
    );
}
