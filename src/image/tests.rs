use std::path::Path;

use super::recipe::{Init, Output, Recipe};

fn parse(text: &str) -> Result<Recipe, String> {
    Recipe::parse(text, Path::new("/nonexistent"))
}

#[test]
fn a_small_recipe_gets_defaults() {
    let r = parse("name = \"box\"\n[output]\nkind = \"initramfs\"\n").unwrap();
    assert_eq!(r.kernel, "linux-image-amd64");
    assert_eq!(r.init, Init::Busybox);
    assert_eq!(r.login.user, "root");
    assert!(r.login.password.is_none());
    assert_eq!(r.output, Output::Initramfs {});
    assert!(r.prune.iter().any(|p| p == "usr/share/doc"));
}

#[test]
fn outputs_take_their_own_keys() {
    let r = parse("name = \"b\"\n[output]\nkind = \"disk\"\n").unwrap();
    assert_eq!(r.output, Output::Disk { size_mib: 512 });
    let r = parse("name = \"b\"\n[output]\nkind = \"uefi-disk\"\nkernel_args = \"x=1\"\n").unwrap();
    assert_eq!(
        r.output,
        Output::UefiDisk {
            kernel_args: "x=1".into()
        }
    );
    let e = parse("name = \"b\"\n[output]\nkind = \"initramfs\"\nsize_mib = 3\n").unwrap_err();
    assert!(e.contains("size_mib"), "{e}");
}

#[test]
fn errors_say_where_and_what() {
    let e =
        parse("name = \"b\"\npackages = [\"x\"]\npackges = 1\n[output]\nkind = \"initramfs\"\n")
            .unwrap_err();
    assert!(e.starts_with("3:1: ") && e.contains("packges"), "{e}");
    let e = parse("name = \"b\"\n[output]\nkind = \"iso\"\n").unwrap_err();
    assert!(e.contains("iso") && e.contains("initramfs"), "{e}");
    let e = parse("name = \"b\"\n").unwrap_err();
    assert!(e.contains("output"), "{e}");
}

#[test]
fn bad_values_are_refused_with_the_fix() {
    for (text, want) in [
        ("name = \"../x\"", "name"),
        ("name = \"\"", "name"),
        (
            "name = \"b\"\npackages = [\"-oDebug=1\"]",
            "Debian package name",
        ),
        ("name = \"b\"\npackages = [\"a b\"]", "Debian package name"),
        ("name = \"b\"\nmodules = [\"/lib/x.ko\"]", "module"),
        ("name = \"b\"\nmodules = [\"../x\"]", "module"),
        ("name = \"b\"\ndirs = [\"/a/../../etc\"]", "leaves the root"),
        ("name = \"b\"\nfiles = \"nope\"", "not a directory"),
        (
            "name = \"b\"\npackages = [\"nginx=1.2\"]",
            "Debian package name",
        ),
        ("name = \"b\"\nprune = [\"/\"]", "whole root"),
        ("name = \"apt\"", "alpy's own cache"),
    ] {
        let e = parse(&format!("{text}\n[output]\nkind = \"initramfs\"\n")).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn a_recipe_file_error_names_the_file() {
    let e = Recipe::load(Path::new("/nonexistent/recipe.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/recipe.toml"), "{e}");
}

#[test]
fn the_shipped_recipes_parse() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    for r in [
        "images/guest/recipe.toml",
        "rabbit/image/recipe.toml",
        "examples/dnsbox/recipe.toml",
    ] {
        Recipe::load(&top.join(r)).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
}

#[test]
fn the_guide_s_full_example_parses_and_names_only_documented_keys() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(top.join("docs/IMAGES.md")).unwrap();
    let example = doc
        .split("## A full example")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a toml block under 'A full example'");
    let files = std::env::temp_dir().join(format!("alpy-image-doc-{}", std::process::id()));
    std::fs::create_dir_all(files.join("rootfs")).unwrap();
    let r = Recipe::parse(example, &files);
    std::fs::remove_dir_all(&files).ok();
    let r = r.unwrap_or_else(|e| panic!("docs/IMAGES.md's example: {e}"));
    assert_eq!(r.login.password.as_deref(), Some("edge"));
    // Every key of the example is in the reference table, and the table
    // has no key the example lacks.
    let value: toml::Table = toml::from_str(example).unwrap();
    let mut keys: Vec<String> = Vec::new();
    for (k, v) in &value {
        match v.as_table() {
            Some(t) => keys.extend(t.keys().map(|k2| format!("{k}.{k2}"))),
            None => keys.push(k.clone()),
        }
    }
    let table: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|k| !["initramfs", "disk", "uefi-disk"].contains(k))
        .collect();
    for k in &keys {
        assert!(
            table.contains(&k.as_str()),
            "{k} is not in the reference table"
        );
    }
    // (One output kind per recipe: the other kinds' keys are checked by
    // `outputs_take_their_own_keys`.)
    for k in table
        .iter()
        .filter(|k| !k.starts_with("output.") || **k == "output.kind")
    {
        assert!(
            keys.iter().any(|x| x == k),
            "the table's {k} is not in the full example"
        );
    }
}

#[test]
fn uefi_kernel_args_cannot_change_grub_s_script() {
    for bad in ["a=\\\"x", "a=$x", "a; b", "a\\nb", "a}"] {
        let text =
            format!("name = \"b\"\n[output]\nkind = \"uefi-disk\"\nkernel_args = \"{bad}\"\n");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("kernel_args"), "{bad}: {e}");
    }
    parse("name = \"b\"\n[output]\nkind = \"uefi-disk\"\nkernel_args = \"alpy.config=X quiet\"\n")
        .unwrap();
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("alpy-image-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn paths_through_a_link_in_the_image_are_refused() {
    let root = temp("inside");
    std::fs::create_dir_all(root.join("var")).unwrap();
    std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
    let e = super::root::inside(&root, "/var/run/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/var/run -> /run"), "{e}");
    assert_eq!(
        super::root::inside(&root, "var/lib/x").unwrap(),
        root.join("var/lib/x")
    );
    assert!(super::root::inside(&root, "a/../../etc").is_err());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn the_hash_follows_the_files_contents_modes_and_links() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp("hash");
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/a"), "one").unwrap();
    let recipe = Recipe::parse(
        "name = \"h\"\nfiles = \"rootfs\"\n[output]\nkind = \"initramfs\"\n",
        &dir,
    )
    .unwrap();
    let pins = vec!["busybox-static_1.deb SHA256:aa".to_string()];
    let hash = || super::content_hash(&recipe, &pins).unwrap();
    let h0 = hash();
    assert_eq!(h0, hash(), "the same inputs give the same hash");
    std::fs::write(dir.join("rootfs/etc/a"), "two").unwrap();
    let h1 = hash();
    assert_ne!(h0, h1, "a file's content");
    std::fs::set_permissions(
        dir.join("rootfs/etc/a"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let h2 = hash();
    assert_ne!(h1, h2, "a file's mode");
    std::os::unix::fs::symlink("a", dir.join("rootfs/etc/b")).unwrap();
    let h3 = hash();
    assert_ne!(h2, h3, "a new link");
    std::fs::remove_file(dir.join("rootfs/etc/b")).unwrap();
    std::os::unix::fs::symlink("c", dir.join("rootfs/etc/b")).unwrap();
    assert_ne!(h3, hash(), "a link's target");
    let other = vec!["busybox-static_2.deb SHA256:bb".to_string()];
    assert_ne!(
        super::content_hash(&recipe, &other).unwrap(),
        hash(),
        "a package's version"
    );
    std::fs::remove_dir_all(&dir).ok();
}
