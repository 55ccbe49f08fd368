//! Benchmark of firmware boot with many NICs: alpy's UEFI disk-image guest
//! (OVMF, shim, GRUB) with 0 and 8 links, with and without the NICs'
//! option ROMs (iPXE), and with 8 virtio-net NICs. Prints, per case, the medians of the time from
//! resuming the DUT to OVMF starting the boot loader (`BdsDxe: starting`)
//! and to the guest's shell prompt.
//!
//! ```text
//! cargo run --release --example bench_boot -- [RUNS]     # default 3 runs per case
//! ```
//! Needs `scripts/setup` (it builds the UEFI guest).

use std::time::{Duration, Instant};

use alpy::nic::{NicModel, NicRom};
use alpy::vm::DiskBus;
use alpy::ConfigDrive;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (to the boot loader, to the prompt) in seconds.
fn boot_once(links: usize, rom: NicRom, model: NicModel) -> alpy::Result<(f64, f64)> {
    let disk = alpy::internal::cache::cache_dir()?.join("uefi-guest/disk.raw");
    let dut = alpy::Dut::new()
        .disk(alpy::Disk::new(disk).format("raw").bus(DiskBus::Sata))
        .uefi()
        .memory_mib(512)
        .nic_rom(rom)
        .nic_model(model)
        // The guest looks for its config drive; an empty one costs nothing.
        .config_drive(ConfigDrive::vfat("ALPYCFG").file("day0.sh", "true\n"));
    let mut b = alpy::TestBed::builder("bench-boot")
        .dut(dut)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()));
    for _ in 0..links {
        b = b.link(alpy::Link::new());
    }
    let mut bed = b.start()?;
    let t0 = Instant::now();
    bed.resume()?;
    let timeout = Duration::from_secs(300);
    let console = bed.console()?;
    console.expect(&alpy::vm::Pattern::exact("BdsDxe: starting"), timeout)?;
    let loader = t0.elapsed().as_secs_f64();
    console.expect(&alpy::vm::Pattern::exact("guest# "), timeout)?;
    let prompt = t0.elapsed().as_secs_f64();
    bed.close()?;
    Ok((loader, prompt))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alpy::logging::init();
    let runs: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(3);
    println!(
        "{:<28} {:>12} {:>12}",
        "case (median of runs)", "loader s", "prompt s"
    );
    for (links, rom, model, label) in [
        (0, NicRom::None, NicModel::E1000, "0 NICs"),
        (
            8,
            NicRom::None,
            NicModel::E1000,
            "8 e1000, no ROMs (default)",
        ),
        (
            8,
            NicRom::QemuDefault,
            NicModel::E1000,
            "8 e1000 with iPXE ROMs",
        ),
        (
            8,
            NicRom::None,
            NicModel::VirtioNet,
            "8 virtio-net, no ROMs",
        ),
    ] {
        let mut loader = Vec::new();
        let mut prompt = Vec::new();
        for _ in 0..runs {
            let (l, p) = boot_once(links, rom.clone(), model.clone())?;
            loader.push(l);
            prompt.push(p);
        }
        println!(
            "{label:<28} {:>12.2} {:>12.2}   (runs: {})",
            median(loader),
            median(prompt.clone()),
            prompt
                .iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
