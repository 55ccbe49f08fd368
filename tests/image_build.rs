//! `alpy image build` beyond the shipped recipes: a systemd appliance (its
//! own unit enabled in `files`, modules loaded by systemd, a password
//! login on the serial console), booted for real.

use std::path::Path;
use std::time::Duration;

use alpy::image::{Boot, Plan, Recipe};
use alpy::{Commands, Dut, Login, TestBed};

#[test]
fn a_systemd_recipe_boots_to_a_login_and_runs_its_service() {
    alpy::logging::init();
    let recipe =
        Recipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/image/sysd/recipe.toml"))
            .unwrap();
    let built = Plan::new(&recipe, &alpy::settings::Settings::from_env())
        .unwrap()
        .build()
        .unwrap();
    let Boot::Initramfs { initrd } = built.boot else {
        panic!("the recipe makes an initramfs: {:?}", built.boot)
    };
    let mut bed = TestBed::builder("sysd")
        .dut(
            Dut::kernel(built.kernel, Some(initrd))
                .append("console=ttyS0,115200")
                .memory_mib(512),
        )
        .login(Login::new("root").password("sysd").prompt("# "))
        .console_timeout(Duration::from_secs(240))
        .poweroff(alpy::PowerOff::Console("systemctl poweroff -f -f".into()))
        .start()
        .unwrap();
    bed.boot(Duration::from_secs(240)).unwrap();
    let sh = bed.shell().unwrap();
    assert_eq!(sh.succeed("cat /proc/1/comm").unwrap().trim(), "systemd");
    sh.wait_until_succeeds("test -e /run/hello", Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        sh.succeed("cat /run/hello").unwrap().trim(),
        "hello from systemd"
    );
    // systemd-modules-load read the recipe's modules.
    assert!(sh
        .succeed("cat /etc/modules-load.d/alpy.conf")
        .unwrap()
        .contains("e1000"));
    sh.succeed("grep -q '^e1000 ' /proc/modules").unwrap();
    assert_eq!(sh.succeed("hostname").unwrap().trim(), "sysd");
    bed.close().unwrap();
}
