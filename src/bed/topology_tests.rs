//! Tests of topology parsing: positions of errors, a good file.

use super::*;

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
        "name = \"ok\"\n{DUT}[[link]]\nname = \"c\"\naddrs = [\"10.0.0.2/24\"]\ngateway = \"10.0.0.1\"\napps = [{{ image = \"alpy/tools\", cmd = [\"true\"] }}]\n"
    );
    let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
    assert_eq!((t.name.as_str(), t.link_count()), ("ok", 1));
    assert_eq!(t.apps(0).len(), 1);
    t.builder().unwrap();
    let dot = t.dot();
    assert!(
        dot.starts_with("graph \"ok\" {") && dot.contains("dut -- n0 [label=\"nic0\"]"),
        "{dot}"
    );
    assert!(dot.contains("c\\n10.0.0.2/24"), "{dot}");
}
