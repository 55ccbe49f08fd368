//! Every key of a topology file, with its type, default and meaning: the
//! reference `docs/TOPOLOGY.md` is generated from ([`markdown`]). A unit
//! test asks the file's schema (its serde structs, through the
//! unknown-key error each section gives) for the keys it accepts and
//! fails when this table lacks one or has one too many, so the reference
//! cannot drift from what alpy reads.

/// One key: (section, key, type, default, meaning).
type Key = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The sections, in the reference's order: (section, how it is written,
/// what it is).
const SECTIONS: &[(&str, &str, &str)] = &[
    ("", "top level", "The bed."),
    ("dut", "`[dut]`, `[[machine]]`", "A machine: `[dut]` for one, `[[machine]]` (each with a `name`) for several."),
    ("dut.login", "`login = { .. }`", "Log in on the console instead of waiting for a shell prompt."),
    ("dut.disks", "`disks = [{ .. }]`", "The machine's disks, in order."),
    ("dut.config_drive", "`config_drive = { .. }`", "A small drive of inline files (cloud-init, a vendor's day-0 file)."),
    ("link", "`[[link]]`", "A link: a node (a container on the machine's next NIC), or with `endpoints` a segment joining machine NICs."),
    ("link.routes", "`routes = [{ .. }]`", "Static routes in the node."),
    ("link.impair", "`impair = { .. }`", "Impairment of the link (in the kernel, or in user space with `relay`)."),
    ("link.nic", "`nic = { .. }`", "The machine NIC of this link."),
    ("link.apps", "`apps = [{ .. }]`", "Containers that join the node's network namespace."),
];

const KEYS: &[Key] = &[
    ("", "name", "string", "the file's name", "The bed's name: artifacts directory, containers, logs."),
    ("", "dut", "table", "-", "The one machine of a one-machine bed."),
    ("", "machine", "array of tables", "[]", "Named machines, after `dut` if there is one."),
    ("", "link", "array of tables", "[]", "The links, in order: link `i` is the machine's NIC `i`."),
    ("dut", "name", "string", "`dut`; `machineN`", "A `[[machine]]`'s name (letters, digits, `-`, `_`)."),
    ("dut", "tags", "array of strings", "[]", "Roles: `bed.role(\"routers\")` finds the machine by them."),
    ("dut", "kernel", "path", "-", "A kernel to boot directly (with `initrd`, `append`); `{cache}` is the cache directory; relative to the file; `store:NAME` on a lab."),
    ("dut", "initrd", "path", "-", "The kernel's initramfs."),
    ("dut", "append", "string", "-", "The kernel's command line (`console=ttyS0,115200` for a console)."),
    ("dut", "disks", "array of tables", "[]", "Disk images (see `dut.disks`); a machine boots from a kernel or its first disk."),
    ("dut", "uefi", "bool", "false", "Boot with OVMF (UEFI) instead of SeaBIOS (`firmware` says more)."),
    ("dut", "nic_model", "string", "`e1000`", "The NICs' model: `e1000`, `e1000e`, `virtio`, `vmxnet3`, `rtl8139`, or any QEMU model."),
    ("dut", "memory_mib", "integer", "256", "Guest memory in MiB."),
    ("dut", "cpus", "integer", "1", "vCPUs."),
    ("dut", "machine", "string", "`pc` (`q35` with UEFI)", "QEMU's machine type."),
    ("dut", "prompt", "string", "-", "The shell prompt that says the machine is ready (or use `login`)."),
    ("dut", "login", "table", "-", "Log in on the console (see `dut.login`)."),
    ("dut", "poweroff", "string", "`acpi`", "How to power off: `acpi`, or `console:COMMAND` typed at the prompt."),
    ("dut", "warm", "string", "-", "Warm start: a version string; the machine is snapshotted once ready and later beds with the same version (and inputs) start from the snapshot."),
    ("dut", "extra_args", "array of strings", "[]", "Extra QEMU arguments, as they are (a lab refuses them: a topology there cannot add a QEMU option)."),
    ("dut", "firmware", "string", "`bios` (`uefi` with `firmware_code`)", "`bios`, `uefi` (OVMF) or `secure-boot` (OVMF with Microsoft's keys enrolled)."),
    ("dut", "firmware_code", "path", "the firmware's", "An OVMF code image of one's own."),
    ("dut", "firmware_vars", "path", "the firmware's", "An OVMF variable store template of one's own (copied per bed)."),
    ("dut", "cpu", "string", "QEMU's", "The CPU model (`host` under KVM, `Skylake-Client`, ...)."),
    ("dut", "smbios", "array of strings", "[]", "SMBIOS tables as QEMU's `-smbios` values (`type=1,serial=ABC`), checked."),
    ("dut", "uuid", "string", "-", "The machine's UUID."),
    ("dut", "aux_serials", "integer", "0", "Serial ports beyond the console (up to the lab's limit)."),
    ("dut", "nic_rom", "string", "none", "The NICs' option ROM: none (no PXE), `default` (QEMU's), or a file."),
    ("dut", "config_drive", "table", "-", "A drive of inline files (see `dut.config_drive`)."),
    ("dut", "board", "table", "-", "A board instead of a VM: its `name`, `class`, `power`, `console`, `ports` (and `tags`, `ssh`), the keys of alpy-lab's `[[board]]`; a VM's keys are then refused, and its roles are `board.tags`. Powered on at boot, off at close; no warm start. A lab refuses an uploaded board (reserve one by class)."),
    ("dut", "lab_board", "table", "-", "On a lab (`REMOTE_LAB_URL`), a board the lab lends takes this VM's place: `{ class = \"fw-9000\", tags = [\"rev-b\"] }`. The VM's keys stay, for runs here; the bed's session reserves such a board. `[dut]` of a one-machine bed only."),
    ("dut.login", "user", "string", "-", "The user name typed at the login prompt."),
    ("dut.login", "password", "string", "-", "The password, if one is asked."),
    ("dut.login", "prompt", "string", "`# `", "The shell prompt after logging in."),
    ("dut.login", "login_prompt", "string", "`login: `", "What the console shows when it wants the user name."),
    ("dut.login", "password_prompt", "string", "`Password: `", "What it shows when it wants the password."),
    ("dut.login", "step_timeout_s", "number", "the boot timeout", "Seconds each step after the login prompt may take."),
    ("dut.disks", "path", "path", "-", "The image (relative to the file; `store:NAME` on a lab). Used through an overlay: the image is never written."),
    ("dut.disks", "format", "string", "from the file", "`raw`, `qcow2`, `qcow`, `qed`, `vmdk`, `vdi`, `vhdx`, `vpc`."),
    ("dut.disks", "bus", "string", "`virtio`", "`virtio`, `ide`, `sata`, `scsi`, `nvme`."),
    ("dut.disks", "cdrom", "bool", "false", "An optical drive (an ISO)."),
    ("dut.config_drive", "format", "string", "`vfat`", "`vfat` or `iso` (ISO 9660)."),
    ("dut.config_drive", "label", "string", "-", "The file system's label (`cidata`, `config-2`, ...)."),
    ("dut.config_drive", "bus", "string", "`virtio`", "As a disk's `bus`."),
    ("dut.config_drive", "files", "table of strings", "{}", "File name → contents, inline (a topology never reads host files for it)."),
    ("link", "name", "string", "`nodeN`", "The node's name: `bed.node(\"client\")`."),
    ("link", "addrs", "array of strings", "[]", "The node's addresses, `192.168.1.2/24`, `2001:db8::2/64`."),
    ("link", "gateway", "string", "-", "The node's IPv4 default route."),
    ("link", "gateway6", "string", "-", "The node's IPv6 default route."),
    ("link", "routes", "array of tables", "[]", "Static routes (see `link.routes`)."),
    ("link", "mac", "string", "random, fixed per run", "The machine NIC's MAC."),
    ("link", "relay", "bool", "false", "Relay the link in user space: impairment both ways without netem."),
    ("link", "impair", "table", "-", "Delay, jitter, loss, rate (see `link.impair`)."),
    ("link", "up", "bool", "true", "Start with carrier; `bed.set_dut_link(i, true)` raises it later."),
    ("link", "nic", "table", "-", "The machine NIC of this link (see `link.nic`)."),
    ("link", "apps", "array of tables", "[]", "Containers in the node's namespace (see `link.apps`)."),
    ("link", "tags", "array of strings", "[]", "The node's roles: `bed.role(\"clients\")`."),
    ("link", "endpoint", "string", "the next NIC of the first machine", "The machine NIC the node is on: `\"r1:0\"`."),
    ("link", "segment", "string", "-", "Put the node on a segment (a link with `endpoints`) by name."),
    ("link", "endpoints", "array of strings", "-", "Makes the link a segment joining machine NICs (`[\"r1:1\", \"r2:0\"]`), with no node of its own."),
    ("link.routes", "dest", "string", "-", "The destination network, `10.20.0.0/16`."),
    ("link.routes", "via", "string", "-", "The next hop."),
    ("link.impair", "delay_ms", "number", "0", "Added delay."),
    ("link.impair", "jitter_ms", "number", "0", "Delay variation."),
    ("link.impair", "loss_percent", "number", "0", "Frames dropped, 0-100."),
    ("link.impair", "rate_kbit", "integer", "-", "Rate limit."),
    ("link.impair", "direction", "string", "`to_dut`", "`to_dut`, `to_node` or `both` (`both` and `to_node` need `relay`)."),
    ("link.nic", "model", "string", "the machine's `nic_model`", "This NIC's model."),
    ("link.nic", "mac", "string", "random, fixed per run", "This NIC's MAC."),
    ("link.nic", "mtu", "integer", "QEMU's", "This NIC's MTU as the guest sees it (`host_mtu`, virtio)."),
    ("link.nic", "rom", "string", "the machine's `nic_rom`", "This NIC's option ROM."),
    ("link.apps", "name", "string", "the image's", "The app's name: its container is `alpy-<run>-<node>-<name>`."),
    ("link.apps", "image", "string", "-", "The Docker image (`alpy/tools`; a lab allows only its own list)."),
    ("link.apps", "cmd", "array of strings", "the image's", "The command."),
    ("link.apps", "background", "bool", "false", "Keep it running for the bed's life (else it runs to completion at start)."),
    ("link.apps", "caps", "array of strings", "[]", "Linux capabilities to add (`NET_ADMIN` for a DHCP client); a lab allows only its `app_caps`."),
];

/// The reference, as Markdown (what `docs/TOPOLOGY.md` holds).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Topology file keys\n\n\
         Generated from alpy's topology schema (`src/bed/topology_keys.rs`; a test\n\
         fails when a key alpy reads is missing here). Paths are relative to the\n\
         file. An unknown key is an error that names the file, line and column.\n\
         Examples: `topologies/` and the crate documentation of `alpy::Topology`.\n",
    );
    for (section, written, what) in SECTIONS {
        let title = if section.is_empty() {
            "Top level"
        } else {
            section
        };
        out.push_str(&format!("\n## {title}\n\n{written}: {what}\n\n"));
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for (_, key, kind, default, meaning) in KEYS.iter().filter(|k| k.0 == *section) {
            out.push_str(&format!("| `{key}` | {kind} | {default} | {meaning} |\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the schema accepts in `section`: what its unknown-key
    /// error lists.
    fn accepted(section: &str) -> Vec<String> {
        let probe = match section {
            "" => "zzz = 1\n".to_string(),
            "dut" => "[dut]\nzzz = 1\n".into(),
            "link" => "[[link]]\nzzz = 1\n".into(),
            s => {
                let (table, sub) = s.split_once('.').unwrap();
                let array = matches!(sub, "disks" | "routes" | "apps");
                let header = if array {
                    format!("[[{table}.{sub}]]")
                } else {
                    format!("[{table}.{sub}]")
                };
                let outer = if table == "link" { "[[link]]" } else { "[dut]" };
                format!("{outer}\n{header}\nzzz = 1\n")
            }
        };
        let e = toml::from_str::<super::super::topology_file::TopologyFile>(&probe)
            .unwrap_err()
            .to_string();
        let list = e
            .split_once("expected one of ")
            .or_else(|| e.split_once("expected "))
            .unwrap_or_else(|| panic!("{section}: {e}"))
            .1;
        // "`a`, `b` or `c`" (and the line's context after it).
        let list = list.lines().next().unwrap_or_default();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_reference_has_every_key_the_schema_reads_and_no_other() {
        for (section, _, _) in SECTIONS {
            let mut schema = accepted(section);
            schema.sort();
            let mut listed: Vec<String> = KEYS
                .iter()
                .filter(|k| k.0 == *section)
                .map(|k| k.1.to_string())
                .collect();
            listed.sort();
            assert_eq!(
                listed, schema,
                "section {section:?}: the reference against the schema"
            );
        }
        assert!(KEYS.iter().all(|k| SECTIONS.iter().any(|s| s.0 == k.0)));
        let md = markdown();
        assert!(md.contains("| `warm` | string |"), "{md}");
    }
}
