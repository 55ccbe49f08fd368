//! The property: a random string in any string field of a QEMU
//! configuration either is refused, or gives a command line that, parsed
//! back as QEMU parses it, has exactly the options and keys of a benign
//! value.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::vm::qemu::{Accel, ControlFds, Disk, DiskBus, DiskMode, Media, Nic, NicModel, NicRom};

const FDS: ControlFds = ControlFds { qmp: 3, serial: 4 };

/// The options whose value QEMU reads as a `key=value` list.
const KEYVAL: &[&str] = &[
    "-machine", "-drive", "-device", "-netdev", "-object", "-chardev", "-mon", "-global",
];

/// How many string fields [`with_field`] fills.
const FIELDS: usize = 15;

fn base() -> QemuConfig {
    QemuConfig {
        machine: "pc".into(),
        cpu: Some("qemu64".into()),
        uuid: Some("6a2b4c1e-0000-4000-8000-00000000a1a1".into()),
        smbios: vec!["type=1,manufacturer=Acme".into()],
        kernel: Some("/k/vmlinuz".into()),
        initrd: Some("/k/initrd".into()),
        append: Some("console=ttyS0".into()),
        serial_log: Some("/a/console-qemu.log".into()),
        aux_serials: vec!["/a/serial1.log".into()],
        disks: vec![Disk {
            path: "/img/a.img".into(),
            format: Some("raw".into()),
            bus: DiskBus::Virtio,
            media: Media::Disk,
            mode: DiskMode::Snapshot,
            bootindex: None,
        }],
        nics: vec![Nic {
            model: NicModel::Other("e1000".into()),
            mac: Some("52:54:00:00:00:01".into()),
            tap_fd: 7,
            dgram: false,
            pcap: Some("/a/link0.pcap".into()),
            mtu: None,
            rom: NicRom::File("/r/efi-e1000.rom".into()),
        }],
        ..Default::default()
    }
}

/// `base()` with field `f` set to `s`; the name of the field.
fn with_field(f: usize, s: &str) -> (QemuConfig, &'static str) {
    let mut c = base();
    let name = match f {
        0 => {
            c.machine = s.into();
            "machine"
        }
        1 => {
            c.cpu = Some(s.into());
            "cpu"
        }
        2 => {
            c.uuid = Some(s.into());
            "uuid"
        }
        3 => {
            c.smbios = vec![s.into()];
            "smbios"
        }
        4 => {
            c.smbios = vec![format!("type=1,serial={s}")];
            "smbios serial"
        }
        5 => {
            c.disks[0].format = Some(s.into());
            "disk format"
        }
        6 => {
            c.disks[0].path = PathBuf::from(s);
            "disk path"
        }
        7 => {
            c.nics[0].model = NicModel::Other(s.into());
            "nic model"
        }
        8 => {
            c.nics[0].mac = Some(s.into());
            "mac"
        }
        9 => {
            c.nics[0].pcap = Some(PathBuf::from(s));
            "pcap"
        }
        10 => {
            c.nics[0].rom = NicRom::File(PathBuf::from(s));
            "rom"
        }
        11 => {
            c.kernel = Some(PathBuf::from(s));
            "kernel"
        }
        12 => {
            c.append = Some(s.into());
            "append"
        }
        13 => {
            c.serial_log = Some(PathBuf::from(s));
            "serial log"
        }
        _ => {
            c.aux_serials = vec![PathBuf::from(s)];
            "aux serial"
        }
    };
    (c, name)
}

/// The keys of a `key=value` list, as QEMU splits it.
fn keys(v: &str) -> Vec<String> {
    // A first part without `=` is the option's implied key (the machine
    // type, the device driver); a later one is `key=on`.
    split_opts(v)
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p.split_once('=') {
            Some((k, _)) => k.to_string(),
            None if i == 0 => "(implied)".to_string(),
            None => p,
        })
        .collect()
}

/// Compares `argv` with the benign one, option by option.
fn same_shape(argv: &[String], benign: &[String]) -> std::result::Result<(), String> {
    if argv.len() != benign.len() {
        return Err(format!("{} arguments, not {}", argv.len(), benign.len()));
    }
    let mut i = 0;
    while i < benign.len() {
        let flag = &benign[i];
        if argv[i] != *flag {
            return Err(format!("argument {i} is {:?}, not {flag:?}", argv[i]));
        }
        let takes_value = !matches!(flag.as_str(), "-nodefaults" | "-no-user-config" | "-S");
        if takes_value {
            let (v, b) = (&argv[i + 1], &benign[i + 1]);
            if KEYVAL.contains(&flag.as_str()) && keys(v) != keys(b) {
                return Err(format!(
                    "{flag} {v:?} has keys {:?}, not {:?}",
                    keys(v),
                    keys(b)
                ));
            }
            if flag == "-cpu" && split_opts(v).len() != 1 {
                return Err(format!("-cpu {v:?} adds CPU features"));
            }
            if flag == "-smbios" {
                let k = keys(v);
                if k.iter().any(|k| k == "file" || k == "path")
                    || k.first().map(String::as_str) != Some("type")
                {
                    return Err(format!("-smbios {v:?} has keys {k:?}"));
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9,=./: +_-]{0,24}",
        "(raw|pc|type=1|file=/etc/shadow|,|,,|=|-drive|qemu64)([,=a-z/]{0,6}(file=/x|,snapshot=off|,firmware=/y|,,)){0,3}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn no_string_field_adds_an_option(f in 0..FIELDS, s in nasty()) {
        let benign = base().args(Accel::Tcg, FDS).unwrap();
        let (cfg, name) = with_field(f, &s);
        if let Ok(argv) = cfg.args(Accel::Tcg, FDS) {
            if let Err(why) = same_shape(&argv, &benign) {
                return Err(TestCaseError::fail(format!("{name} = {s:?}: {why}")));
            }
        }
    }
}

#[test]
fn the_injections_found_are_refused() {
    let cases = [
        (5, "raw,file=/etc/shadow"),
        (3, "file=/etc/passwd"),
        (3, "type=1,file=/etc/passwd"),
        (3, "type=11,path=/etc/passwd"),
        (0, "pc,firmware=/etc/shadow"),
        (1, "qemu64,+vmx"),
        (7, "e1000,romfile=/etc/shadow"),
        (8, "52:54:00:00:00:01,romfile=/x"),
        (2, "x,file=/y"),
    ];
    for (f, s) in cases {
        let (cfg, name) = with_field(f, s);
        let e = cfg.args(Accel::Tcg, FDS).unwrap_err().to_string();
        assert!(e.contains(&format!("{s:?}")), "{name}: {e}");
    }
}

#[test]
fn free_text_passes_escaped() {
    let (cfg, _) = with_field(4, "A1,,file=/x");
    let argv = cfg.args(Accel::Tcg, FDS).unwrap();
    assert!(
        argv.contains(&"type=1,serial=A1,,file=/x".to_string()),
        "{argv:?}"
    );
    let (cfg, _) = with_field(6, "/img/a,b.img");
    let argv = cfg.args(Accel::Tcg, FDS).unwrap();
    assert!(
        argv.iter()
            .any(|a| a.contains("file=/img/a,,b.img,snapshot=on")),
        "{argv:?}"
    );
}
