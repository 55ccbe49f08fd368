//! Appliances as vendors ship them: alpy's UEFI disk-image guest (GPT,
//! ESP, Debian's signed shim and GRUB) on a SATA disk, with Secure Boot,
//! eight links and a day-0 config drive that the guest reads at boot.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use alpy::bed::config_drive::ConfigDrive;
use alpy::vm::qemu::DiskBus;

const BOOT: Duration = Duration::from_secs(300);

/// The disk built by `images/uefi-guest/build`.
fn uefi_disk() -> PathBuf {
    let disk = alpy::cache::cache_dir()
        .expect("a cache directory")
        .join("uefi-guest/disk.raw");
    assert!(
        disk.is_file(),
        "{} missing: run scripts/setup",
        disk.display()
    );
    disk
}

/// A day-0 script that names the guest and gives the NIC with each MAC
/// its address (as a vendor's first configuration binds by MAC).
fn day0(macs: &[String]) -> String {
    let mut s = String::from("hostname fw-day0\n");
    for (i, mac) in macs.iter().enumerate() {
        s.push_str(&format!(
            "for f in /sys/class/net/*/address; do [ \"$(cat $f)\" = {mac} ] && ifc=$(basename $(dirname $f)); done\n\
             ip link set $ifc up; ip addr add 10.0.{i}.1/24 dev $ifc\n"
        ));
    }
    s
}

fn vendor_bed(name: &str, links: usize, firmware: alpy::vm::firmware::Firmware) -> alpy::TestBed {
    let run = alpy::run::RunId::new();
    let macs: Vec<String> = (0..links)
        .map(|i| alpy::net::link::default_mac(&run, i, true).to_string())
        .collect();
    let drive = ConfigDrive::vfat("ALPYCFG").file("day0.sh", day0(&macs));
    let mut b = alpy::TestBed::builder(name)
        .run_id(run)
        .dut(
            alpy::Dut::disk_image_on(uefi_disk(), Some("raw"), DiskBus::Sata)
                .firmware(firmware)
                .memory_mib(512)
                .config_drive(drive),
        )
        .prompt(common::GUEST_PROMPT)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(BOOT);
    for i in 0..links {
        b = b.link(
            alpy::Link::new()
                .name(&format!("port{i}"))
                .node_addr(format!("10.0.{i}.2/24").as_str()),
        );
    }
    b.start().expect("start the vendor-style bed")
}

#[test]
fn secure_boot_sata_eight_links_and_a_config_drive() {
    let mut bed = vendor_bed("vendor", 8, alpy::vm::firmware::Firmware::secure_boot());
    bed.boot(BOOT).unwrap();
    let cmd = bed.qemu_command().unwrap_or_default().to_string();
    assert!(
        cmd.contains("smm=on") && cmd.contains("bus=sata.0,bootindex=1"),
        "{cmd}"
    );
    assert!(
        cmd.contains("romfile=,") || cmd.contains("romfile= "),
        "{cmd}"
    );
    let sh = &mut bed.shell().unwrap();
    let sb = sh.succeed("dmesg | grep -i 'secure boot'").unwrap();
    assert!(sb.contains("Secure boot enabled"), "{sb}");
    assert_eq!(
        sh.succeed("hostname").unwrap().trim(),
        "fw-day0",
        "the day-0 config drive was not applied"
    );
    let disk = sh.succeed("readlink -f /sys/block/sda").unwrap();
    assert!(disk.contains("/ata"), "the boot disk is on SATA: {disk}");
    for i in 0..8 {
        bed.node(i)
            .unwrap()
            .wait_until_succeeds(
                &format!("ping -c 1 -W 2 10.0.{i}.1"),
                Duration::from_secs(30),
            )
            .unwrap();
    }
    let left = bed.close_checked().unwrap();
    assert!(left.is_empty(), "{left}");
}

/// `leftovers()` sees what a run leaves: here a container of the run that
/// nothing removes, and a process whose command line names the run.
#[test]
fn leftovers_name_what_a_run_left() {
    let run = alpy::run::RunId::new();
    let docker = common::docker();
    let mut spec = common::spec("alpy/node", "left", &["sleep", "60"]);
    spec.labels = alpy::run::owner_labels(&run);
    spec.name = run.name("left");
    let c = alpy::net::Container::run(&docker, &spec, None).unwrap();
    use std::os::unix::process::CommandExt;
    let mut sleeper = std::process::Command::new("sh")
        .args(["-c", &format!("sleep 60; : {run}")])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let left = alpy::bed::leftovers::leftovers(&run).unwrap();
    let text = left.to_string();
    assert!(
        left.containers.len() == 1 && text.contains(&run.name("left")),
        "{text}"
    );
    assert!(
        left.processes
            .iter()
            .any(|p| p.starts_with(&sleeper.id().to_string())),
        "{text}"
    );
    let group = nix::unistd::Pid::from_raw(sleeper.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    sleeper.wait().unwrap();
    c.close().unwrap();
    let left = alpy::bed::leftovers::leftovers(&run).unwrap();
    assert!(left.is_empty(), "{left}");
    assert_eq!(left.to_string(), "nothing is left");
}
