//! Appliances as vendors ship them: alpy's UEFI disk-image guest (GPT,
//! ESP, Debian's signed shim and GRUB) on a SATA disk, with Secure Boot,
//! eight links and a day-0 config drive that the guest reads at boot.

mod common;

use alpy::Commands;
use alpy::Disk;
use std::path::PathBuf;
use std::time::Duration;

use alpy::nic::{DutNic, NicModel};
use alpy::vm::DiskBus;
use alpy::ConfigDrive;

const BOOT: Duration = Duration::from_secs(300);
const UUID: &str = "6a2b4c1e-0000-4000-8000-00000000a1a1";

/// The disk built by `images/uefi-guest/build`.
fn uefi_disk() -> PathBuf {
    let disk = alpy::internal::cache::cache_dir()
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

/// The NIC of each link: a mix of what vendor images expect.
fn nic_of(i: usize) -> (DutNic, &'static str) {
    match i {
        0 => (
            DutNic::new().model(NicModel::VirtioNet).mtu(9000),
            "virtio_net",
        ),
        1 => (DutNic::new().model(NicModel::E1000e), "e1000e"),
        2 => (DutNic::new().model(NicModel::Vmxnet3), "vmxnet3"),
        3 => (DutNic::new().model(NicModel::Rtl8139), "8139cp"),
        _ => (DutNic::new(), "e1000"),
    }
}

fn vendor_bed(name: &str, links: usize, firmware: alpy::vm::Firmware) -> alpy::TestBed {
    let run = alpy::internal::run::RunId::new();
    let macs: Vec<String> = (0..links)
        .map(|i| alpy::internal::link::default_mac(&run, i, true).to_string())
        .collect();
    let drive = ConfigDrive::vfat("ALPYCFG").file("day0.sh", day0(&macs));
    let mut b = alpy::TestBed::builder(name)
        .run_id(run)
        .dut(
            alpy::Dut::new()
                .disk(
                    alpy::Disk::new(uefi_disk())
                        .format("raw")
                        .bus(DiskBus::Sata),
                )
                .firmware(firmware)
                .memory_mib(4096)
                .cpu_model("Nehalem")
                .smbios("type=1,manufacturer=Acme,product=FW-9000,serial=A1")
                .uuid(UUID)
                .aux_serial()
                .config_drive(drive),
        )
        .prompt(common::GUEST_PROMPT)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(BOOT);
    for i in 0..links {
        b = b.link(
            alpy::Link::new()
                .name(&format!("port{i}"))
                .node_addr(format!("10.0.{i}.2/24").as_str())
                .dut_nic(nic_of(i).0),
        );
    }
    b.start().expect("start the vendor-style bed")
}

#[test]
fn secure_boot_sata_eight_links_and_a_config_drive() {
    let mut bed = vendor_bed("vendor", 8, alpy::vm::Firmware::secure_boot());
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
    // Identity, CPU and memory as asked.
    let dmi = sh
        .succeed("cat /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name /sys/class/dmi/id/product_uuid")
        .unwrap();
    assert_eq!(dmi, format!("Acme\nFW-9000\n{UUID}\n"));
    let cpu = sh.succeed("grep -m1 'model name' /proc/cpuinfo").unwrap();
    assert!(cpu.contains("Nehalem"), "{cpu}");
    let mem_kib: u64 = sh
        .succeed("awk '/MemTotal/ {print $2}' /proc/meminfo")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(mem_kib > 3_500_000, "4 GiB asked, {mem_kib} KiB seen");
    // Each link's NIC model, and the virtio link's MTU.
    for i in 0..8 {
        let mac = bed.dut_mac(i).to_string();
        let (_, driver) = nic_of(i);
        let seen = bed
            .shell()
            .unwrap()
            .succeed(&format!(
                "for f in /sys/class/net/*/address; do [ \"$(cat $f)\" = {mac} ] && basename $(readlink $(dirname $f)/device/driver); done; true"
            ))
            .unwrap();
        assert_eq!(seen.trim(), driver, "link {i} ({mac})");
    }
    let sh = &mut bed.shell().unwrap();
    let mtu = sh
        .succeed("for f in /sys/class/net/*; do [ -e $f/device/driver ] && basename $(readlink $f/device/driver) | grep -q virtio && cat $f/mtu; done; true")
        .unwrap();
    assert_eq!(mtu.trim(), "9000", "host_mtu offered to the virtio guest");
    // The second serial port writes to its own log.
    sh.succeed("echo aux-port-says-hi > /dev/ttyS1").unwrap();
    for i in 0..8 {
        bed.node(i)
            .unwrap()
            .wait_until_succeeds(
                &format!("ping -c 1 -W 2 10.0.{i}.1"),
                Duration::from_secs(30),
            )
            .unwrap();
    }
    let aux = bed.artifacts_dir().join("serial1.log");
    let left = bed.close_checked().unwrap();
    assert!(left.is_empty(), "{left}");
    let aux = std::fs::read_to_string(&aux).unwrap();
    assert!(aux.contains("aux-port-says-hi"), "{aux}");
}

/// `leftovers()` sees what a run leaves: here a container of the run that
/// nothing removes, and a process whose command line names the run.
#[test]
fn leftovers_name_what_a_run_left() {
    let run = alpy::internal::run::RunId::new();
    let docker = common::docker();
    let mut spec = common::spec("alpy/node", "left", &["sleep", "60"]);
    spec.labels = alpy::internal::run::owner_labels(&run);
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
    let left = alpy::internal::leftovers::leftovers(&run).unwrap();
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
    let left = alpy::internal::leftovers::leftovers(&run).unwrap();
    assert!(left.is_empty(), "{left}");
    assert_eq!(left.to_string(), "nothing is left");
}

/// Every disk bus, a CD-ROM and an ISO config drive, seen by the guest.
#[test]
fn every_disk_bus_and_an_iso_config_drive_reach_the_guest() {
    let (kernel, initrd) = common::guest();
    let dir = common::temp_dir("buses");
    let data = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        p
    };
    let iso = ConfigDrive::iso("MEDIA")
        .file("readme.txt", "on the cd")
        .build(&dir)
        .unwrap();
    let iso_copy = dir.join("media.iso");
    std::fs::rename(&iso, &iso_copy).unwrap();
    let dut = alpy::Dut::kernel(kernel, Some(initrd))
        .append("console=ttyS0,115200 quiet panic=-1 alpy.config=DAY0")
        .disk(Disk::new(data("ide.raw")).format("raw").bus(DiskBus::Ide))
        .disk(Disk::new(data("scsi.raw")).format("raw").bus(DiskBus::Scsi))
        .disk(Disk::new(data("nvme.raw")).format("raw").bus(DiskBus::Nvme))
        .disk(Disk::new(data("virtio.raw")).format("raw"))
        .disk(Disk::cdrom(&iso_copy).bus(DiskBus::Ide))
        .config_drive(ConfigDrive::iso("DAY0").file("day0.sh", "hostname from-iso\n"));
    let mut bed = alpy::TestBed::builder("buses")
        .dut(dut)
        .prompt(common::GUEST_PROMPT)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .start()
        .unwrap();
    bed.boot(BOOT).unwrap();
    let sh = &mut bed.shell().unwrap();
    let blocks = sh
        .succeed(
            "for b in /sys/block/*; do echo $(basename $b) $(readlink -f $b | cut -d/ -f5-7); done",
        )
        .unwrap();
    for (dev, bus) in [
        ("sda", "ata"),
        ("sdb", "virtio"),
        ("nvme0n1", "nvme"),
        ("vda", "virtio"),
        ("sr0", "ata"),
        ("sr1", "ata"),
    ] {
        assert!(
            blocks
                .lines()
                .any(|l| l.starts_with(dev) && l.contains(bus)),
            "{dev} on {bus}:\n{blocks}"
        );
    }
    assert_eq!(
        sh.succeed("hostname").unwrap(),
        "from-iso\n",
        "the ISO config drive"
    );
    let cd = sh
        .succeed("mkdir -p /cd && mount -o ro $(findfs LABEL=MEDIA) /cd && cat /cd/readme.txt")
        .unwrap();
    assert!(cd.contains("on the cd"), "{cd}");
    let left = bed.close_checked().unwrap();
    assert!(left.is_empty(), "{left}");
}
