//! Builds and set-up must not trust the host's dpkg state.
//!
//! Each test builds a throwaway view of the host: a private mount namespace
//! (`unshare --mount`) in which `/var/lib/dpkg/status` is a copy with fake
//! entries, as a machine image with backports or hand-built packages has.
//! Nothing on the host changes. Needs root (CI runs as root); without it the
//! tests say they skipped (and fail when `ALPY_NO_SKIPS` is set, as in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOP: &str = env!("CARGO_MANIFEST_DIR");
/// Newer than anything a repository serves.
const FAKE_VERSION: &str = "1:99.0-alpy-fake";

/// A copy of the host's dpkg status without the packages in `drop`, with a
/// fake installed entry at [`FAKE_VERSION`] for each of `fake`.
fn fake_status(dir: &Path, drop: &[&str], fake: &[&str]) -> PathBuf {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").expect("read dpkg status");
    let mut out = String::new();
    for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let name = stanza
            .lines()
            .find_map(|l| l.strip_prefix("Package: "))
            .unwrap_or("");
        if drop.contains(&name) || fake.contains(&name) {
            continue;
        }
        out.push_str(stanza.trim_end());
        out.push_str("\n\n");
    }
    for name in fake {
        out.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\n\
             Section: misc\nMaintainer: alpy tests <nobody@invalid>\nArchitecture: amd64\n\
             Version: {FAKE_VERSION}\nDescription: fake entry: newer than the repositories\n\n"
        ));
    }
    let path = dir.join("status");
    std::fs::write(&path, out).expect("write fake status");
    path
}

/// Runs `script` (bash) with the fake status mounted over the real one, in
/// a mount namespace of its own, from the source tree.
fn with_status(status: &Path, script: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c"])
        .arg(format!(
            "set -euo pipefail; mount --bind {} /var/lib/dpkg/status; cd {TOP}; {script}",
            status.display()
        ))
        .output()
        .expect("run unshare")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alpy-dpkg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The package set a guest build resolves to (file names and checksums).
const PINS: &str =
    ". images/lib.sh; repo_pins busybox-static libjansson4 nftables \"$(repo_kernel_package)\"";

#[test]
fn a_newer_installed_package_never_reaches_a_build() {
    if !common::needs_root("mount a fake dpkg status") {
        return;
    }
    let dir = temp("newer");
    let status = fake_status(&dir, &[], &["busybox-static", "libjansson4"]);
    // The situation is real: the host's apt now believes in versions that
    // no repository has, and asking it for them fails as it did for users.
    let plain = with_status(
        &status,
        "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; cd \"$d\"; apt-get download -q libjansson4",
    );
    assert!(!plain.status.success(), "{}", text(&plain));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains(FAKE_VERSION),
        "{}",
        text(&plain)
    );
    // The builds' resolver takes what the repositories serve...
    let dl = dir.join("debs");
    std::fs::create_dir_all(&dl).unwrap();
    let got = with_status(
        &status,
        &format!(
            ". images/lib.sh; repo_download {} busybox-static libjansson4; ls {}",
            dl.display(),
            dl.display()
        ),
    );
    assert!(got.status.success(), "{}", text(&got));
    let listing = String::from_utf8_lossy(&got.stdout);
    assert!(listing.contains("busybox-static_") && listing.contains("libjansson4_"));
    assert!(!listing.contains("99.0-alpy-fake"), "{listing}");
    // ...and resolves the same package set as on a host without the fakes:
    // two machines with different installed packages build the same guest.
    let clean_dir = temp("clean");
    let clean = fake_status(&clean_dir, &["busybox-static", "libjansson4"], &[]);
    let (a, b) = (with_status(&status, PINS), with_status(&clean, PINS));
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    assert_eq!(a.stdout, b.stdout, "package sets differ");
    assert!(String::from_utf8_lossy(&a.stdout).lines().count() >= 4);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&clean_dir).ok();
}

/// The hash `alpy image build --check` wants for `recipe` (it exits 3: the
/// image is not built in the empty cache).
fn wanted_hash(status: &Path, recipe: &Path, cache: &Path) -> String {
    let o = with_status(
        status,
        &format!(
            "ALPY_CACHE={} {} image build {} --check",
            cache.display(),
            env!("CARGO_BIN_EXE_alpy"),
            recipe.display()
        ),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    err.split("(want ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no wanted hash in {}", text(&o)))
        .to_string()
}

#[test]
fn an_image_recipe_resolves_the_same_packages_whatever_the_host_has() {
    if !common::needs_root("mount a fake dpkg status") {
        return;
    }
    let dir = temp("recipe");
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        "name = \"dpkg-probe\"\npackages = [\"nftables\", \"busybox-static\"]\n\
         [output]\nkind = \"initramfs\"\n",
    )
    .unwrap();
    let pkgs = ["busybox-static", "libjansson4", "nftables"];
    std::fs::create_dir_all(dir.join("newer")).unwrap();
    std::fs::create_dir_all(dir.join("without")).unwrap();
    let newer = fake_status(&dir.join("newer"), &[], &pkgs);
    let without = fake_status(&dir.join("without"), &pkgs, &[]);
    // The image's hash covers the packages' files and checksums: two hosts
    // that have these packages in other versions, or not at all, build the
    // same image from the same repositories.
    let cache = dir.join("cache");
    let a = wanted_hash(&newer, &recipe, &cache);
    let b = wanted_hash(&without, &recipe, &cache);
    assert_eq!(a, b, "the host's dpkg state changed the image");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn setup_pins_qemu_utils_to_the_version_of_qemu_system() {
    if !common::needs_root("mount a fake dpkg status") {
        return;
    }
    let dir = temp("qemu");
    // A qemu-utils newer than the repositories' (as from backports), and no
    // qemu-system-x86: installing it naively makes apt remove qemu-utils.
    let qemu_system = [
        "qemu-system-x86",
        "qemu-system-common",
        "qemu-system-data",
        "qemu-system-gui",
    ];
    let status = fake_status(&dir, &qemu_system, &["qemu-utils"]);
    let reqs = dir.join("requirements");
    std::fs::write(&reqs, "alpy-no-such-qemu qemu-system-x86 the DUT\n").unwrap();
    let plan = with_status(
        &status,
        &format!(
            "ALPY_REQUIREMENTS={} scripts/setup --dry-run",
            reqs.display()
        ),
    );
    assert!(plan.status.success(), "{}", text(&plan));
    let out = String::from_utf8_lossy(&plan.stdout).to_string();
    let err = String::from_utf8_lossy(&plan.stderr).to_string();
    let version = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("qemu-system-x86="))
        .unwrap_or_else(|| panic!("no pinned qemu-system-x86 in {out}"))
        .to_string();
    assert!(
        out.contains(&format!("qemu-utils={version}")),
        "qemu-utils is not pinned to {version}: {out}"
    );
    assert!(
        err.contains(&format!(
            "qemu-utils {FAKE_VERSION} is replaced by {version}"
        )),
        "{err}"
    );
    // apt itself accepts the plan in that state: a downgrade, no removal.
    let sim = with_status(
        &status,
        &format!(
            "apt-get install -s --no-install-recommends --allow-downgrades \
             -o APT::Get::Remove=false qemu-system-x86={version} qemu-utils={version}"
        ),
    );
    let sim_out = String::from_utf8_lossy(&sim.stdout);
    assert!(sim.status.success(), "{}", text(&sim));
    assert!(!sim_out.contains("Remv "), "{sim_out}");
    assert!(
        sim_out.contains(&format!("Inst qemu-utils [{FAKE_VERSION}] ({version}")),
        "{sim_out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
