//! A test bed's builder written as a topology file (TOML), for a lab
//! server: the DUT's table (see `Dut::topology_table`), the login, prompt
//! and power-off, and one `[[link]]` per link. What a topology cannot say
//! (a warm start's preparation, a node image) stays with the client: the
//! test bed runs the preparation itself once the lab is up.

use toml::{Table, Value};

use crate::bed::builder::{PowerOff, TestBedBuilder};
use crate::bed::dut::Dut;
use crate::bed::remote::wire::BoardRequest;
use crate::error::{Error, Result};
use crate::net::{Direction, Link};
use crate::vm::login::Login;

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

/// The topology file that describes `b` (whose DUT is `dut`).
/// With `board`, the DUT is a board the lab lends (`lab_board`), and the
/// VM's keys stay here.
pub(crate) fn builder_topology(
    b: &TestBedBuilder,
    dut: &Dut,
    board: Option<&BoardRequest>,
) -> Result<Table> {
    if b.node_image.is_some() {
        return Err(Error::Config(
            "a node image cannot be chosen for a bed on a lab server (REMOTE_LAB_URL is set): \
             the lab's nodes use its own image"
                .into(),
        ));
    }
    let mut d = match board {
        None => dut.topology_table()?,
        Some(want) => {
            let value = Value::try_from(want)
                .map_err(|e| Error::Internal(format!("encode the board request: {e}")))?;
            Table::from_iter([("lab_board".to_string(), value)])
        }
    };
    if let Some(p) = &b.prompt {
        d.insert("prompt".into(), s(p));
    }
    if let Some(l) = &b.login {
        d.insert("login".into(), Value::Table(login_table(l)));
    }
    let poweroff = match &b.poweroff {
        PowerOff::AcpiButton => "acpi".to_string(),
        PowerOff::Console(cmd) => format!("console:{cmd}"),
    };
    d.insert("poweroff".into(), s(poweroff));
    let mut t = Table::new();
    t.insert("name".into(), s(&b.name));
    t.insert("dut".into(), Value::Table(d));
    let links: Vec<Value> = b.links.iter().map(link_table).collect();
    t.insert("link".into(), Value::Array(links));
    Ok(t)
}

fn login_table(l: &Login) -> Table {
    let mut t = Table::new();
    t.insert("user".into(), s(&l.user));
    if let Some(p) = &l.password {
        t.insert("password".into(), s(p));
    }
    t.insert("prompt".into(), s(&l.shell_prompt));
    t.insert("login_prompt".into(), s(&l.login_prompt));
    t.insert("password_prompt".into(), s(&l.password_prompt));
    if let Some(d) = l.step_timeout {
        t.insert("step_timeout_s".into(), Value::Float(d.as_secs_f64()));
    }
    t
}

fn link_table(l: &Link) -> Value {
    let mut t = Table::new();
    if let Some(n) = &l.link_name {
        t.insert("name".into(), s(n));
    }
    if !l.addrs.is_empty() {
        t.insert(
            "addrs".into(),
            Value::Array(l.addrs.iter().map(s).collect()),
        );
    }
    if let Some(g) = l.gateway {
        t.insert("gateway".into(), s(g));
    }
    if let Some(g) = l.gateway6 {
        t.insert("gateway6".into(), s(g));
    }
    if !l.routes.is_empty() {
        let routes = l
            .routes
            .iter()
            .map(|(dest, via)| {
                let mut r = Table::new();
                r.insert("dest".into(), s(dest));
                r.insert("via".into(), s(via));
                Value::Table(r)
            })
            .collect();
        t.insert("routes".into(), Value::Array(routes));
    }
    if let Some(m) = l.mac {
        t.insert("mac".into(), s(m));
    }
    if l.relay {
        t.insert("relay".into(), Value::Boolean(true));
    }
    if !l.tags.is_empty() {
        t.insert("tags".into(), Value::Array(l.tags.iter().map(s).collect()));
    }
    if let Some((dir, imp)) = &l.impairment {
        let mut i = Table::new();
        let ms = |d: std::time::Duration| Value::Float(d.as_secs_f64() * 1000.0);
        if let Some(d) = imp.delay {
            i.insert("delay_ms".into(), ms(d));
        }
        if let Some(j) = imp.jitter {
            i.insert("jitter_ms".into(), ms(j));
        }
        if let Some(p) = imp.loss_percent {
            i.insert("loss_percent".into(), Value::Float(p));
        }
        if let Some(r) = imp.rate_kbit {
            i.insert("rate_kbit".into(), Value::Integer(r as i64));
        }
        let dir = match dir {
            Direction::ToDut => "to_dut",
            Direction::ToNode => "to_node",
            Direction::Both => "both",
        };
        i.insert("direction".into(), s(dir));
        t.insert("impair".into(), Value::Table(i));
    }
    if l.down {
        t.insert("up".into(), Value::Boolean(false));
    }
    let n = &l.dut_nic;
    if n.model.is_some() || n.mac.is_some() || n.mtu.is_some() || n.rom != Default::default() {
        let mut nic = Table::new();
        if let Some(m) = &n.model {
            nic.insert("model".into(), s(m.device()));
        }
        if let Some(m) = n.mac {
            nic.insert("mac".into(), s(m));
        }
        if let Some(m) = n.mtu {
            nic.insert("mtu".into(), Value::Integer(m.into()));
        }
        if n.rom != Default::default() {
            nic.insert("rom".into(), s(crate::bed::dut::rom_name(&n.rom)));
        }
        t.insert("nic".into(), Value::Table(nic));
    }
    Value::Table(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dut, TestBed};

    /// What the builder says survives the trip through a topology file.
    #[test]
    fn a_builder_reads_back_as_the_same_topology() {
        let dir = std::env::temp_dir().join(format!("alpy-topology-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("vmlinuz");
        std::fs::write(&kernel, b"k").unwrap();
        let b = TestBed::builder("remote-shape")
            .dut(
                Dut::kernel(&kernel, None)
                    .append("console=ttyS0,115200")
                    .memory_mib(512)
                    .extra_arg("-no-reboot"),
            )
            .login(
                Login::new("root")
                    .password("rabbit")
                    .prompt("rabbit# ")
                    .login_prompt("fw login: ")
                    .password_prompt("Passcode: ")
                    .steps_within(std::time::Duration::from_millis(2500)),
            )
            .link(
                Link::new()
                    .node_addr("192.168.1.2/24")
                    .gateway("192.168.1.1"),
            )
            .link(Link::new().name("server").node_addr("192.168.2.2/24"));
        let dut = b.dut.clone().unwrap();
        let text = toml::to_string(&builder_topology(&b, &dut, None).unwrap()).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(&path, &text).unwrap();
        let t = crate::Topology::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let back = t.builder().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back.links.len(), 2);
        assert_eq!(back.links[0].addrs, b.links[0].addrs);
        assert_eq!(back.links[0].gateway, b.links[0].gateway);
        assert_eq!(back.links[1].link_name.as_deref(), Some("server"));
        assert_eq!(back.login, b.login);
        assert_eq!(back.poweroff, PowerOff::AcpiButton);
        let d = back.dut.unwrap();
        assert_eq!(d.config().memory_mib, 512);
        assert_eq!(d.config().extra_args, vec!["-no-reboot".to_string()]);
        assert_eq!(d.config().append.as_deref(), Some("console=ttyS0,115200"));
    }
}

#[cfg(test)]
mod lab_board_tests {
    use super::*;
    use crate::{Dut, Link, TestBed};

    #[test]
    fn a_lab_board_replaces_the_vm_s_keys() {
        let b = TestBed::builder("t")
            .dut(Dut::kernel("/k", None).memory_mib(512))
            .prompt("fw# ")
            .link(Link::new().node_addr("10.0.1.2/24"));
        let dut = b.dut.clone().unwrap();
        let want = BoardRequest {
            class: Some("fw".into()),
            tags: vec!["rev-b".into()],
        };
        let t = builder_topology(&b, &dut, Some(&want)).unwrap();
        let d = t["dut"].as_table().unwrap();
        assert_eq!(d["lab_board"]["class"].as_str(), Some("fw"));
        assert_eq!(d["lab_board"]["tags"][0].as_str(), Some("rev-b"));
        assert_eq!(d["prompt"].as_str(), Some("fw# "));
        assert!(
            !d.contains_key("kernel") && !d.contains_key("memory_mib"),
            "{d}"
        );
        assert_eq!(t["link"].as_array().unwrap().len(), 1);
    }
}
