//! A lab on a board. A board session's `POST /lab` sends a topology
//! whose `[dut]` says `lab_board = { class, tags }` instead of a VM: the
//! lab checks that against the board the session holds and puts the
//! board's configured `[[board]]` table in its place, so `alpy up` powers
//! the board, opens its console and joins its ports to the nodes. When
//! the session lets the board go, its teardown takes that lab's bed down
//! first (before the class's script, and before anyone else is lent the
//! board), so no bed of an old holder keeps its console or its ports.

use std::time::{Duration, Instant};

use alpy::lab::wire::{BoardRequest, LabStatus};

use crate::api::Shared;
use crate::config::Config;
use crate::safety::{Lent, Refusal};

/// The board `name` as a lab's DUT, if the configuration has it.
pub fn lent<'a>(cfg: &'a Config, name: &str) -> Option<Lent<'a>> {
    Some(Lent {
        spec: cfg.boards.iter().find(|b| b.name == name)?,
        table: cfg.board_tables.get(name)?,
    })
}

/// A VM's keys: a topology sent for a board names none of them.
const VM_KEYS: &[&str] = &[
    "kernel",
    "initrd",
    "append",
    "disks",
    "uefi",
    "nic_model",
    "memory_mib",
    "cpus",
    "machine",
    "warm",
    "extra_args",
    "firmware",
    "firmware_code",
    "firmware_vars",
    "cpu",
    "smbios",
    "uuid",
    "aux_serials",
    "nic_rom",
    "config_drive",
    "tags",
];

/// Takes `[dut] lab_board` out of topology `t`, checked against the
/// board the session holds (`lent`): the board's table, to put in its
/// place once the rest is checked. Refused: `lab_board` from a session
/// that holds no board (or in a `[[machine]]`), a board session's
/// topology without it, one the held board does not fit, VM keys beside
/// it.
pub fn take_lab_board(
    t: &mut toml::Table,
    lent: Option<&Lent<'_>>,
) -> Result<Option<toml::Value>, Refusal> {
    let elsewhere = crate::safety::machine_sections(t)
        .into_iter()
        .find(|(name, m)| name != "dut" && m.contains_key("lab_board"));
    if let Some((name, _)) = elsewhere {
        return Err(format!(
            "{name}.lab_board: a lab lends a board as the [dut] of a one-machine bed only"
        ));
    }
    if lent.is_some() && t.contains_key("machine") {
        return Err(
            "[[machine]]: a board session's lab is its board alone ([dut] with \
             lab_board); a lab of several machines needs a session of its own"
                .into(),
        );
    }
    let dut = t.get_mut("dut").and_then(|d| d.as_table_mut());
    let asked = dut.and_then(|d| d.remove("lab_board").map(|w| (w, d)));
    match (lent, asked) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(
            "dut.lab_board: this session reserves no board. A bed on a lab's \
             board needs a session that reserves one (POST /session {\"board\": {\"class\": ..}}); \
             alpy's client makes one when the builder or topology names lab_board"
                .into(),
        ),
        (Some(b), None) => Err(format!(
            "this session holds board {} (class {}): its lab's DUT is that board; write \
             [dut] lab_board = {{ class = \"{}\" }} instead of a VM (a lab of VMs needs a \
             session of its own)",
            b.spec.name, b.spec.class, b.spec.class
        )),
        (Some(b), Some((want, dut))) => {
            let want: BoardRequest = want
                .try_into()
                .map_err(|e: toml::de::Error| format!("dut.lab_board: {}", e.message()))?;
            if !want.fits(&b.spec.class, &b.spec.tags) {
                return Err(format!(
                    "dut.lab_board asks for {want}, but this session holds board {} of class \
                     {} (tags {:?}): ask for the board in POST /session as in the topology",
                    b.spec.name, b.spec.class, b.spec.tags
                ));
            }
            if let Some(k) = VM_KEYS.iter().find(|k| dut.contains_key(**k)) {
                return Err(format!(
                    "dut.{k}: beside lab_board a topology names no VM (the lab's board takes \
                     its place)"
                ));
            }
            Ok(Some(b.table.clone()))
        }
    }
}

/// Takes down the labs whose beds run on board `board` (a lab still
/// coming up is waited for, one being destroyed watched until it is
/// gone). An error if one is still there after the time a lab may take
/// to come up and go down.
pub async fn take_down_labs_on(app: &Shared, board: &str) -> Result<(), String> {
    let limit = Duration::from_secs(app.cfg.limits.lab_up_timeout_s + 180);
    let deadline = Instant::now() + limit;
    loop {
        let name = board.to_string();
        let labs = app
            .db(move |db| db.labs_on_board(&name))
            .await
            .map_err(|e| format!("list the board's labs: {}", e.1))?;
        let Some(l) = labs.first() else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "lab {} on board {board} is still {:?} after {}s: its bed may still hold the \
                 board's console and ports (see the server's log)",
                l.lab_id,
                l.status,
                limit.as_secs()
            ));
        }
        match l.status {
            LabStatus::Starting | LabStatus::Destroying => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => {
                tracing::info!(board = %board, lab = %l.lab_id, "taking down the lab on the board let go");
                let note = format!("board {board} was let go");
                crate::lab_destroy::destroy_now(app, l, Some(&note)).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> alpy::board::BoardSpec {
        alpy::board::BoardSpec::from_toml(
            r#"
            name = "fw-1"
            class = "fw"
            tags = ["rev-b"]
            ports = ["eth8"]
            console = { kind = "tcp", addr = "127.0.0.1:9" }
            power = { driver = "snmp", agent = "127.0.0.1:161", port = 1, community = "s3cret" }
            "#,
        )
        .unwrap()
    }

    fn take(topology: &str, lent: Option<&Lent<'_>>) -> Result<Option<toml::Value>, Refusal> {
        let mut t: toml::Table = topology.parse().unwrap();
        take_lab_board(&mut t, lent)
    }

    #[test]
    fn the_held_board_takes_the_place_of_lab_board() {
        let spec = spec();
        let table = toml::Value::String("the board's table".into());
        let lent = Lent {
            spec: &spec,
            table: &table,
        };
        let ok = "[dut]\nlab_board = { class = \"fw\", tags = [\"rev-b\"] }\nprompt = \"# \"\n";
        assert_eq!(take(ok, Some(&lent)).unwrap(), Some(table.clone()));
        let other = take("[dut]\nlab_board = { class = \"lb\" }\n", Some(&lent)).unwrap_err();
        assert!(
            other.contains("fw-1") && other.contains("a board of lb"),
            "{other}"
        );
        let vm = take("[dut]\nkernel = \"store:k\"\n", Some(&lent)).unwrap_err();
        assert!(vm.contains("holds board fw-1"), "{vm}");
        let both = take(
            "[dut]\nlab_board = { class = \"fw\" }\nkernel = \"store:k\"\n",
            Some(&lent),
        )
        .unwrap_err();
        assert!(both.contains("dut.kernel"), "{both}");
        let typo = take("[dut]\nlab_board = { klass = \"fw\" }\n", Some(&lent)).unwrap_err();
        assert!(typo.contains("klass"), "{typo}");
        let none = take("[dut]\nlab_board = { class = \"fw\" }\n", None).unwrap_err();
        assert!(none.contains("reserves no board"), "{none}");
        let more = take(
            "[dut]\nlab_board = { class = \"fw\" }\n[[machine]]\nkernel = \"store:k\"\n",
            Some(&lent),
        )
        .unwrap_err();
        assert!(more.contains("[[machine]]"), "{more}");
        let tags = take(
            "[dut]\nlab_board = { class = \"fw\" }\ntags = [\"edge\"]\n",
            Some(&lent),
        )
        .unwrap_err();
        assert!(tags.contains("dut.tags"), "{tags}");
        let machine = take("[[machine]]\nlab_board = { class = \"fw\" }\n", None).unwrap_err();
        assert!(machine.contains("machine[0].lab_board"), "{machine}");
        assert_eq!(take("[dut]\nkernel = \"store:k\"\n", None).unwrap(), None);
    }
}
