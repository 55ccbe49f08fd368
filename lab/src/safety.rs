//! What an uploaded topology may use. A remote lab boots only files of the
//! server's image store (`kernel = "store:NAME"`), runs only Docker images
//! on its allow-list, takes no raw QEMU arguments and no ROM files, stays
//! within the configured memory, vCPUs and serial ports, and keeps extra
//! files inside the lab's own directory. Anything that names a host path
//! is refused with a 400 that says what to write instead. Every string
//! that reaches QEMU's command line is checked by alpy itself
//! (`alpy::internal::argv_check`), here before the lab starts.

use std::path::{Component, Path, PathBuf};

use crate::config::{Config, Limits};

/// A refusal, for a 400.
pub type Refusal = String;

/// The QEMU arguments an uploaded topology may add: flags that open no
/// file and reach nothing outside the guest.
pub const SAFE_QEMU_ARGS: &[&str] = &["-no-reboot"];

/// Whether an app asked for through the API may run: an allow-listed
/// image, no host bind mounts, no capabilities beyond `caps` (the
/// configuration's `app_caps`).
pub fn check_app(
    app: &alpy::App,
    docker_images: &[String],
    caps: &[String],
) -> Result<(), Refusal> {
    if !docker_images.iter().any(|a| a == app.image()) {
        return Err(format!(
            "app image {:?}: not on this lab's Docker allow-list ({})",
            app.image(),
            docker_images.join(", ")
        ));
    }
    if let Some(b) = app.binds().first() {
        return Err(format!(
            "app bind {b:?}: a remote lab mounts no host path into an app"
        ));
    }
    if let Some(c) = app.caps().iter().find(|c| !caps.contains(c)) {
        return Err(format!(
            "app capability {c:?}: this lab grants only {} (its operator sets app_caps)",
            caps.join(", ")
        ));
    }
    Ok(())
}

/// The board a board session holds, which its lab's `[dut]` becomes.
pub struct Lent<'a> {
    /// The board.
    pub spec: &'a alpy::board::BoardSpec,
    /// Its `[[board]]` table as configured (secrets and all).
    pub table: &'a toml::Value,
}

/// The topology with store names replaced by the store's paths (and,
/// for a session that holds board `lent`, its `[dut] lab_board` by the
/// board's table), checked by alpy's own parser as if it were at `at`.
/// Returns (text, name).
pub fn check_topology(
    text: &str,
    cfg: &Config,
    at: &Path,
    lent: Option<&Lent<'_>>,
) -> Result<(String, String), Refusal> {
    let (store, docker_images) = (&cfg.store, &cfg.docker_images);
    let mut t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("topology: {}", e.message()))?;
    let board = crate::lab_board::take_lab_board(&mut t, lent)?;
    let names = || {
        if store.is_empty() {
            "the store is empty".to_string()
        } else {
            format!(
                "the store has {}",
                store.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    let from_store = |key: &str, v: &mut toml::Value| -> Result<(), Refusal> {
        let s = v.as_str().unwrap_or_default().to_string();
        let name = s.strip_prefix("store:").ok_or_else(|| {
            format!(
                "{key} = {s:?}: a remote lab boots only files of its image store: write \"store:NAME\" ({})",
                names()
            )
        })?;
        let path = store.get(name).ok_or_else(|| {
            format!(
                "{key} = {s:?}: no {name:?} in the image store ({})",
                names()
            )
        })?;
        *v = toml::Value::String(path.to_string_lossy().into_owned());
        Ok(())
    };
    for (key, v) in alpy::internal::topology::boot_files_mut(&mut t) {
        from_store(&key, v)?;
    }
    let sections = machine_sections(&t);
    if sections.is_empty() {
        return Err("topology: [dut] (or [[machine]] sections) missing".into());
    }
    if sections.len() > cfg.limits.max_machines {
        return Err(format!(
            "topology: {} machines: this lab allows at most {} (limits.max_machines)",
            sections.len(),
            cfg.limits.max_machines
        ));
    }
    for (name, section) in &sections {
        check_machine(name, section, &cfg.limits)?;
    }
    check_totals(&sections, &cfg.limits)?;
    if let Some(links) = t.get("link").and_then(|l| l.as_array()) {
        for (i, l) in links.iter().enumerate() {
            let nic_rom = l.get("nic").and_then(|n| n.get("rom"));
            if !rom_ok(nic_rom) {
                return Err(format!(
                    "link[{i}].nic.rom: a remote lab takes \"none\" or \"default\", not a ROM file"
                ));
            }
            for (j, app) in l
                .get("apps")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                let image = app
                    .get("image")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default();
                if !docker_images.iter().any(|a| a == image) {
                    return Err(format!(
                        "link[{i}].apps[{j}].image = {image:?}: not on this lab's Docker allow-list ({})",
                        docker_images.join(", ")
                    ));
                }
            }
        }
    }
    let mut text = toml::to_string(&t).map_err(|e| format!("topology: {e}"))?;
    if text.contains("{cache}") {
        return Err("topology: {cache} names the lab host's cache: use \"store:NAME\"".into());
    }
    if let (Some(table), Some(dut)) = (board, t.get_mut("dut").and_then(|d| d.as_table_mut())) {
        dut.insert("board".into(), table);
        text = toml::to_string(&t).map_err(|e| format!("topology: {e}"))?;
    }
    let parsed = alpy::Topology::parse(at, &text).map_err(|e| format!("topology: {e}"))?;
    if parsed.name.chars().any(char::is_control) {
        return Err(format!(
            "topology: name {:?} holds a control character",
            parsed.name
        ));
    }
    parsed
        .check_machine()
        .map_err(|e| format!("topology: {e}"))?;
    // Apps as the bed will run them: images and capabilities within the
    // lab's allow-lists, as for an app asked for through the API.
    for i in 0..parsed.link_count() {
        for (j, (app, _)) in parsed.apps(i).iter().enumerate() {
            check_app(app, &cfg.docker_images, &cfg.app_caps)
                .map_err(|e| format!("link {i}, app {j}: {e}"))?;
        }
    }
    Ok((text, parsed.name))
}

/// A topology's machine sections, named as refusals name them: `dut`,
/// then `machine[i]`.
pub fn machine_sections(t: &toml::Table) -> Vec<(String, &toml::Table)> {
    let mut sections: Vec<(String, &toml::Table)> = Vec::new();
    if let Some(d) = t.get("dut").and_then(|d| d.as_table()) {
        sections.push(("dut".into(), d));
    }
    for (i, m) in t
        .get("machine")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(m) = m.as_table() {
            sections.push((format!("machine[{i}]"), m));
        }
    }
    sections
}

/// One machine section (`dut`, `machine[i]`): no board of its own,
/// sizes within the limits, no raw QEMU arguments but the safe ones, no
/// ROM file.
fn check_machine(name: &str, dut: &toml::Table, limits: &Limits) -> Result<(), Refusal> {
    // A board's power may be a host command, its console a host device,
    // its ports host interfaces: only the lab's configuration names them.
    if dut.contains_key("board") {
        return Err(format!(
            "{name}.board: a remote lab lends its own boards (their power, console and ports \
             are its configuration's): reserve one by class with POST /session \
             {{\"board\": {{\"class\": ..}}}} instead of describing one"
        ));
    }
    check_sizes(name, dut, limits)?;
    for arg in dut
        .get("extra_args")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let arg = arg.as_str().unwrap_or_default();
        if !SAFE_QEMU_ARGS.contains(&arg) {
            return Err(format!(
                "{name}.extra_args: {arg:?}: a remote lab takes no raw QEMU arguments but {} (others could open host files); use the topology's own keys",
                SAFE_QEMU_ARGS.join(", ")
            ));
        }
    }
    if !rom_ok(dut.get("nic_rom")) {
        return Err(format!(
            "{name}.nic_rom: a remote lab takes \"none\" or \"default\", not a ROM file"
        ));
    }
    Ok(())
}

/// Whether a NIC ROM names no file.
fn rom_ok(v: Option<&toml::Value>) -> bool {
    v.and_then(|v| v.as_str())
        .is_none_or(|r| r == "none" || r == "default")
}

/// Memory, vCPUs and serial ports within the configured limits.
fn check_sizes(name: &str, dut: &toml::Table, limits: &Limits) -> Result<(), Refusal> {
    let int = |k: &str| dut.get(k).and_then(|v| v.as_integer());
    let caps = [
        ("memory_mib", limits.max_memory_mib, "limits.max_memory_mib"),
        ("cpus", limits.max_cpus, "limits.max_cpus"),
        ("aux_serials", limits.max_serials, "limits.max_serials"),
    ];
    for (key, max, setting) in caps {
        if let Some(n) = int(key) {
            if n < 0 || n as u64 > max {
                return Err(format!(
                    "{name}.{key} = {n}: this lab allows at most {max} ({setting})"
                ));
            }
        }
    }
    Ok(())
}

/// The lab's machines together within the memory and vCPU limits (each
/// machine that sets none counts QEMU's default).
fn check_totals(sections: &[(String, &toml::Table)], limits: &Limits) -> Result<(), Refusal> {
    let default = alpy::internal::qemu::QemuConfig::default();
    let total = |key: &str, default: u32| -> u64 {
        sections
            .iter()
            .map(|(_, m)| {
                m.get(key)
                    .and_then(|v| v.as_integer())
                    .map_or(u64::from(default), |n| u64::try_from(n).unwrap_or(0))
            })
            .sum()
    };
    let totals = [
        (
            "memory_mib",
            total("memory_mib", default.memory_mib),
            limits.max_memory_mib,
            "limits.max_memory_mib",
        ),
        (
            "cpus",
            total("cpus", default.cpus),
            limits.max_cpus,
            "limits.max_cpus",
        ),
    ];
    for (key, sum, max, setting) in totals {
        if sum > max {
            return Err(format!(
                "topology: its {} machines ask for {sum} {key} together: this lab allows at \
                 most {max} per lab ({setting})",
                sections.len()
            ));
        }
    }
    Ok(())
}

/// Where extra file `name` goes in `dir`: relative, without `..`, its
/// directories kept.
pub fn extra_file_path(dir: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let p = Path::new(name);
    let inside = !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(format!(
            "extra file {name:?}: give a relative path without `..` (it stays inside the lab's directory)"
        ));
    }
    Ok(dir.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let mut c: Config = toml::from_str("docker_images = [\"alpy/tools\"]").unwrap();
        c.store
            .insert("k".to_string(), PathBuf::from("/proc/self/exe"));
        c.limits.max_memory_mib = 2048;
        c.limits.max_cpus = 2;
        c
    }

    #[test]
    fn host_paths_are_refused_and_store_names_resolved() {
        let at = Path::new("/x/topology.toml");
        let c = cfg();
        let e = check_topology("[dut]\nkernel = \"/etc/shadow\"\n", &c, at, None).unwrap_err();
        assert!(e.contains("image store") && e.contains("store:NAME"), "{e}");
        let e = check_topology("[dut]\nkernel = \"store:nope\"\n", &c, at, None).unwrap_err();
        assert!(e.contains("no \"nope\""), "{e}");
        // Every machine's files come from the store, and its limits hold.
        let e = check_topology(
            "[dut]\nkernel = \"store:k\"\n[[machine]]\nname = \"r2\"\nkernel = \"/etc/shadow\"\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(
            e.contains("machine[0].kernel") && e.contains("store:NAME"),
            "{e}"
        );
        let e = check_topology(
            "[[machine]]\nname = \"r1\"\nkernel = \"store:k\"\n\
             [[machine]]\nname = \"r2\"\nkernel = \"store:k\"\nextra_args = [\"-drive\"]\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(
            e.contains("machine[1].extra_args") && e.contains("raw QEMU"),
            "{e}"
        );
        let e = check_topology(
            "[[machine]]\nname = \"r1\"\nkernel = \"store:k\"\nmemory_mib = 99999\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(e.contains("machine[0].memory_mib"), "{e}");
        let (text, _) = check_topology(
            "[[machine]]\nname = \"r1\"\nkernel = \"store:k\"\n\
             [[machine]]\nname = \"r2\"\nkernel = \"store:k\"\n\
             [[link]]\nname = \"core\"\nendpoints = [\"r1:0\", \"r2:0\"]\n",
            &c,
            at,
            None,
        )
        .unwrap();
        assert!(!text.contains("store:"), "store names resolved: {text}");
        let mut many = String::new();
        for i in 0..9 {
            many.push_str(&format!(
                "[[machine]]\nname = \"m{i}\"\nkernel = \"store:k\"\n"
            ));
        }
        let e = check_topology(&many, &c, at, None).unwrap_err();
        assert!(e.contains("limits.max_machines"), "{e}");
        let e = check_topology(
            "[dut]\nkernel = \"store:k\"\nextra_args = [\"-drive\"]\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(e.contains("raw QEMU"), "{e}");
        let e = check_topology(
            "[dut]\nkernel = \"store:k\"\n[[link]]\napps = [{ image = \"evil/miner\" }]\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(e.contains("allow-list"), "{e}");
        // A topology app's capabilities are the lab's to grant.
        let app = |caps: &str| {
            format!("[dut]\nkernel = \"store:k\"\n[[link]]\napps = [{{ image = \"alpy/tools\", caps = {caps} }}]\n")
        };
        let e = check_topology(&app("[\"SYS_ADMIN\"]"), &c, at, None).unwrap_err();
        assert!(e.contains("SYS_ADMIN") && e.contains("app_caps"), "{e}");
        check_topology(&app("[\"NET_ADMIN\"]"), &c, at, None).unwrap();
        let (text, name) =
            check_topology("name = \"t\"\n[dut]\nkernel = \"store:k\"\n", &c, at, None).unwrap();
        assert!(text.contains("/proc/self/exe") && name == "t", "{text}");
    }

    #[test]
    fn sizes_and_names_are_bounded() {
        let at = Path::new("/x/topology.toml");
        let c = cfg();
        for (line, needle) in [
            ("memory_mib = 999999999", "max_memory_mib"),
            ("cpus = 10000", "max_cpus"),
            ("aux_serials = 100000000", "max_serials"),
        ] {
            let e = check_topology(
                &format!("[dut]\nkernel = \"store:k\"\n{line}\n"),
                &c,
                at,
                None,
            )
            .unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        // Each within the limit, together past it (2048 MiB, 2 vCPUs).
        let two = |each: &str| {
            format!(
                "[[machine]]\nname = \"a\"\nkernel = \"store:k\"\n{each}\n\
                     [[machine]]\nname = \"b\"\nkernel = \"store:k\"\n{each}\n"
            )
        };
        let e = check_topology(&two("memory_mib = 1536"), &c, at, None).unwrap_err();
        assert!(
            e.contains("3072 memory_mib together") && e.contains("max_memory_mib"),
            "{e}"
        );
        let e = check_topology(&two("cpus = 2"), &c, at, None).unwrap_err();
        assert!(
            e.contains("4 cpus together") && e.contains("max_cpus"),
            "{e}"
        );
        check_topology(&two("memory_mib = 1024"), &c, at, None).unwrap();
        let e = check_topology(
            "name = \"a\\nforged\"\n[dut]\nkernel = \"store:k\"\n",
            &c,
            at,
            None,
        )
        .unwrap_err();
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn app_capabilities_are_the_configured_ones() {
        let images = vec!["frr".to_string()];
        let zebra = alpy::App::new("frr").cap("SYS_ADMIN").cap("NET_ADMIN");
        let e = check_app(&zebra, &images, &cfg().app_caps).unwrap_err();
        assert!(e.contains("SYS_ADMIN") && e.contains("app_caps"), "{e}");
        let mut c = cfg();
        c.app_caps.push("SYS_ADMIN".into());
        check_app(&zebra, &images, &c.app_caps).unwrap();
        let mounted = alpy::App::new("frr").bind("/etc:/host-etc");
        assert!(check_app(&mounted, &images, &c.app_caps).is_err());
    }

    #[test]
    fn extra_files_stay_inside() {
        let d = Path::new("/lab/files");
        assert!(extra_file_path(d, "../../etc/passwd").is_err());
        assert!(extra_file_path(d, "/etc/passwd").is_err());
        assert!(extra_file_path(d, "a/./b").is_ok());
        assert_eq!(
            extra_file_path(d, "cfg/r1.conf").unwrap(),
            Path::new("/lab/files/cfg/r1.conf")
        );
    }
}
