//! Tests of topology parsing: positions of errors, a good file.

use super::*;
use crate::net::Direction;

fn err(text: &str) -> String {
    Topology::parse(Path::new("/nonexistent/t.toml"), text)
        .unwrap_err()
        .to_string()
}

const DUT: &str = "[dut]\nkernel = \"/proc/self/exe\"\nprompt = \"# \"\n";

#[test]
fn errors_name_file_line_and_column() {
    let e = err(&format!("{DUT}[[link]]\nnmae = \"x\"\n"));
    assert!(
        e.contains("/nonexistent/t.toml:5:1") && e.contains("unknown field `nmae`"),
        "{e}"
    );
    let e = err(&format!("{DUT}[[link]]\naddrs = [\"192.168.1.300/24\"]\n"));
    assert!(
        e.contains("t.toml:5:10") && e.contains("bad address"),
        "{e}"
    );
    let e = err(&format!(
        "{DUT}[[link]]\nname = \"a\"\n[[link]]\nname = \"a\"\n"
    ));
    assert!(
        e.contains("t.toml:7:8") && e.contains("duplicate link name"),
        "{e}"
    );
    let e = err("[dut]\nkernel = \"no-such-kernel\"\n");
    assert!(
        e.contains("t.toml:2:10") && e.contains("does not exist"),
        "{e}"
    );
    let e = err(&format!("{DUT}[[link]]\nmac = \"02:a1\"\n"));
    assert!(e.contains("t.toml:5:7") && e.contains("bad MAC"), "{e}");
    let e = err("[dut]\nkernel = \"/proc/self/exe\"\npoweroff = \"halt\"\n");
    assert!(
        e.contains("t.toml:3:12") && e.contains("console:COMMAND"),
        "{e}"
    );
}

#[test]
fn a_good_file_gives_a_builder() {
    let text = format!(
        "name = \"ok\"\n{DUT}[[link]]\nname = \"c\"\naddrs = [\"10.0.0.2/24\"]\ngateway = \"10.0.0.1\"\napps = [{{ image = \"alpy/tools\", cmd = [\"true\"], caps = [\"NET_ADMIN\"] }}]\n"
    );
    let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
    assert_eq!((t.name.as_str(), t.link_count()), ("ok", 1));
    assert_eq!(t.apps(0).len(), 1);
    assert_eq!(t.apps(0)[0].0.caps(), ["NET_ADMIN"]);
    t.builder().unwrap();
    let dot = t.drawing().dot();
    assert!(
        dot.starts_with("graph \"ok\" {") && dot.contains("dut -- n0 [label=\"nic0\"]"),
        "{dot}"
    );
    assert!(dot.contains("c\\n10.0.0.2/24"), "{dot}");
}

#[test]
fn links_may_be_impaired_and_down() {
    let text = format!(
        "{DUT}[[link]]\nname = \"w\"\nrelay = true\nimpair = {{ delay_ms = 20, loss_percent = 1.5, direction = \"both\" }}\nup = false\n"
    );
    let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
    let b = t.builder().unwrap();
    let l = &b.links[0];
    assert!(l.down && l.relay);
    let (dir, imp) = l.impairment.clone().unwrap();
    assert_eq!(dir, Direction::Both);
    assert_eq!(imp.delay, Some(Duration::from_millis(20)));
    assert_eq!(imp.loss_percent, Some(1.5));
    let d = t.drawing();
    assert!(d.dot().contains("style=dotted"), "{}", d.dot());
    let svg = d.svg();
    assert!(
        svg.contains("nic0 (down)") && svg.contains("loss 1.5% both ways"),
        "{svg}"
    );

    let e = err(&format!(
        "{DUT}[[link]]\nimpair = {{ delay_ms = 5, direction = \"to_node\" }}\n"
    ));
    assert!(
        e.contains("t.toml:5:38") && e.contains("needs the link's relay"),
        "{e}"
    );
    let e = err(&format!(
        "{DUT}[[link]]\nimpair = {{ direction = \"up\" }}\n"
    ));
    assert!(
        e.contains("t.toml:5:24") && e.contains("bad direction"),
        "{e}"
    );
    let e = err(&format!(
        "{DUT}[[link]]\nimpair = {{ loss_percent = 150 }}\n"
    ));
    assert!(
        e.contains("t.toml:5:27") && e.contains("between 0 and 100"),
        "{e}"
    );
    for v in ["inf", "1e300", "-5", "nan"] {
        let e = err(&format!("{DUT}[[link]]\nimpair = {{ delay_ms = {v} }}\n"));
        assert!(
            e.contains("impair.delay_ms") && e.contains("an hour"),
            "{e}"
        );
    }
    let e = err(&format!("{DUT}[[link]]\nimpair = {{ dealy_ms = 5 }}\n"));
    assert!(
        e.contains("t.toml:5") && e.contains("unknown field `dealy_ms`"),
        "{e}"
    );
}

#[test]
fn vendor_options_parse_and_errors_say_where() {
    let text = "[dut]\ndisks = [{ path = \"/proc/self/exe\", bus = \"sata\" }, { path = \"/proc/self/exe\", cdrom = true }]\n\
        firmware = \"uefi\"\ncpu = \"Nehalem\"\nsmbios = [\"type=1,serial=A1\"]\nuuid = \"6a2b4c1e-0000-4000-8000-00000000a1a1\"\naux_serials = 1\nnic_rom = \"default\"\n\
        [dut.config_drive]\nlabel = \"CFG\"\nformat = \"iso\"\nfiles = { \"day0.sh\" = \"true\" }\n\
        [[link]]\nnic = { model = \"vmxnet3\", mac = \"52:54:00:aa:00:00\", mtu = 1400, rom = \"none\" }\n";
    let t = Topology::parse(Path::new("/x/t.toml"), text).unwrap();
    let b = t.builder().unwrap();
    let dut = b.dut.as_ref().unwrap();
    assert!(dut.is_uefi() && dut.disk_count() == 2 && dut.machine_name() == "q35");
    assert_eq!(b.links[0].dut_nic.mtu, Some(1400));
    assert_eq!(
        b.links[0].dut_nic.model,
        Some(crate::nic::NicModel::Vmxnet3)
    );

    let e = err("[dut]\nkernel = \"/proc/self/exe\"\nfirmware = \"coreboot\"\n");
    assert!(
        e.contains("t.toml:3:12") && e.contains("bad firmware"),
        "{e}"
    );
    let e = err("[dut]\ndisks = [{ path = \"/proc/self/exe\", bus = \"floppy\" }]\n");
    assert!(
        e.contains("t.toml:2:43") && e.contains("unknown disk bus"),
        "{e}"
    );
    let e = err(&format!("{DUT}[[link]]\nnic = {{ rom = \"ipxe.rom\" }}\n"));
    assert!(e.contains("t.toml:5:15") && e.contains("bad rom"), "{e}");
    let e = err(&format!(
        "{DUT}[dut.config_drive]\nlabel = \"CFG\"\nfiles = {{ \"../x\" = \"y\" }}\n"
    ));
    assert!(
        e.contains("t.toml:5:9") && e.contains("without `..`"),
        "{e}"
    );
    let e = err("[dut]\nkernel = \"/proc/self/exe\"\nfirmware = \"uefi\"\nfirmware_code = \"/nonexistent/CODE.fd\"\nfirmware_vars = \"/nonexistent/VARS.fd\"\n");
    assert!(e.contains("t.toml:4:17") && e.contains("is missing"), "{e}");
}

#[test]
fn a_login_has_its_prompts_and_step_timeout() {
    let dut = DUT.replace(
        "[dut]\n",
        "[dut]\nlogin = { user = \"admin\", login_prompt = \"fw login: \", password = \"x\", password_prompt = \"Passcode: \", prompt = \"fw> \", step_timeout_s = 30 }\n",
    );
    let text = format!("name = \"l\"\n{dut}");
    let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
    let login = t.builder().unwrap().login.unwrap();
    assert_eq!(login.login_prompt, "fw login: ");
    assert_eq!(login.password_prompt, "Passcode: ");
    assert_eq!(login.shell_prompt, "fw> ");
    assert_eq!(login.step_timeout, Some(std::time::Duration::from_secs(30)));
    let bad = text.replace("step_timeout_s = 30", "step_timeout_s = 0");
    let e = err(&bad);
    assert!(
        e.contains("t.toml:3:") && e.contains("step_timeout_s = 0"),
        "{e}"
    );
}

#[test]
fn links_have_roles() {
    let text = format!("name = \"r\"\n{DUT}[[link]]\nname = \"c\"\ntags = [\"clients\", \"v4\"]\n");
    let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
    assert_eq!(t.builder().unwrap().links[0].tags, ["clients", "v4"]);
    let e = err(&text.replace("\"v4\"", "\"no spaces\""));
    assert!(
        e.contains("t.toml:7:20") && e.contains("bad role \"no spaces\""),
        "{e}"
    );
}

const BOARD: &str = "[dut]\nprompt = \"# \"\n[dut.board]\nname = \"fw-1\"\nclass = \"fw\"\nports = [\"eth9\"]\nconsole = { kind = \"tcp\", addr = \"127.0.0.1:7001\" }\npower = { driver = \"snmp\", agent = \"127.0.0.1\", port = 1, community = \"s3cret-community\" }\n";

#[test]
fn a_board_section_is_a_board_machine() {
    let t = Topology::parse(
        Path::new("/x/t.toml"),
        &format!("{BOARD}[[link]]\naddrs = [\"10.0.0.2/24\"]\n"),
    )
    .unwrap();
    let b = t.builder().unwrap();
    let specs = b.machine_specs();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].name, "dut");
    match &specs[0].kind {
        crate::bed::machine_kind::MachineKind::Board(spec) => {
            assert_eq!((spec.name.as_str(), spec.class.as_str()), ("fw-1", "fw"));
            assert_eq!(spec.ports.len(), 1);
        }
        other => panic!("a VM: {other:?}"),
    }
    assert_eq!(b.prompt.as_deref(), Some("# "));
}

#[test]
fn a_board_section_refuses_a_vm_s_keys_and_names_its_mistakes_without_secrets() {
    let e = err(&BOARD.replace("prompt", "memory_mib = 512\nprompt"));
    assert!(
        e.contains("t.toml:4:1") && e.contains("memory_mib is a VM's key"),
        "{e}"
    );
    let e = err(&BOARD.replace("class = \"fw\"", "clas = \"fw\""));
    assert!(
        e.contains("t.toml:") && e.contains("unknown field `clas`"),
        "{e}"
    );
    let e = err(&BOARD.replace("port = 1,", "port = \"s3cret-port\","));
    assert!(!e.contains("s3cret"), "a value in the error: {e}");
    // Checks a VM's section gets apply to a board's too.
    let e = err(&BOARD.replace("prompt = \"# \"", "poweroff = \"halt\""));
    assert!(e.contains("console:COMMAND"), "{e}");
    let e = err(&BOARD.replace("prompt = \"# \"", "tags = [\"edge\"]"));
    assert!(e.contains("board.tags"), "{e}");
}

#[test]
fn lab_board_names_the_board_a_lab_puts_in_the_vm_s_place() {
    let t = Topology::parse(
        Path::new("/x/t.toml"),
        &format!("{DUT}lab_board = {{ class = \"fw\", tags = [\"rev-b\"] }}\n[[link]]\n"),
    )
    .unwrap();
    let b = t.builder().unwrap();
    // Here the VM boots; on a lab, a board of the class takes its place.
    assert!(b.machine_specs()[0].kind.vm().is_some());
    let want = b.lab_board.clone().expect("the builder's lab board");
    assert_eq!(want.class.as_deref(), Some("fw"));
    assert_eq!(want.tags, ["rev-b"]);
    let e = err(&format!("{DUT}lab_board = {{ klass = \"fw\" }}\n"));
    assert!(e.contains("t.toml:4") && e.contains("klass"), "{e}");
    let e = err(
        "[[machine]]\nname = \"a\"\nkernel = \"/proc/self/exe\"\nlab_board = { class = \"fw\" }\n",
    );
    assert!(e.contains("lab_board is for the [dut]"), "{e}");
}
