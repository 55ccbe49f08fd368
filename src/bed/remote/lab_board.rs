//! A DUT that is a lab's board on a lab and the builder's VM here: one
//! test source for both. [`TestBedBuilder::lab_board`] (or
//! `REMOTE_LAB_BOARD`, or a topology's `[dut] lab_board`) names the
//! board's class; with `REMOTE_LAB_URL` set the bed's session reserves a
//! board of it (its class's setup script runs first), the topology sent
//! to the lab says `lab_board` instead of the VM's files, and the lab puts
//! the board it lends in the VM's place. Without `REMOTE_LAB_URL` the VM
//! boots here and the request is only logged.

use crate::bed::builder::TestBedBuilder;
use crate::bed::remote::wire::BoardRequest;
use crate::bed::remote::LabClient;
use crate::error::{Error, Result};
use crate::settings::Settings;

impl TestBedBuilder {
    /// On a lab server (`REMOTE_LAB_URL`), the DUT is a board the lab
    /// lends that fits `want` (by class and tags) instead of the VM given
    /// to [`TestBedBuilder::dut`], which still boots when the bed runs
    /// here. The bed's session waits in the lab's queue for such a board;
    /// the lab powers it on, waits for the login or prompt and hands the
    /// bed over with the same API (console, shell, nodes on the board's
    /// ports, captures with host time stamps). What needs QEMU (QMP, a
    /// warm start's snapshot) does not apply to a board: a
    /// [`crate::WarmStart`]'s preparation runs after each boot instead.
    /// `REMOTE_LAB_BOARD=CLASS` does the same for a builder that does not
    /// call this.
    ///
    /// ```no_run
    /// use alpy::lab::wire::BoardRequest;
    /// use alpy::{Dut, Link, TestBed};
    /// # fn main() -> alpy::Result<()> {
    /// let mut bed = TestBed::builder("forward")
    ///     .dut(Dut::kernel("fw.bzImage", None))
    ///     .lab_board(BoardRequest { class: Some("fw-9000".into()), tags: vec![] })
    ///     .link(Link::new().node_addr("10.0.1.2/24").gateway("10.0.1.1"))
    ///     .prompt("fw# ")
    ///     .start()?;
    /// bed.boot(std::time::Duration::from_secs(300))?;
    /// # Ok(()) }
    /// ```
    pub fn lab_board(mut self, want: BoardRequest) -> Self {
        self.lab_board = Some(want);
        self
    }

    /// The board the bed's DUT is on the lab `REMOTE_LAB_URL` names: the
    /// builder's, else `REMOTE_LAB_BOARD`'s class (none here, without a
    /// lab). Only a bed of one machine can have one.
    pub(crate) fn board_wanted(&self) -> Result<Option<BoardRequest>> {
        let want = self.lab_board.clone().or_else(|| {
            self.settings.lab_board().map(|class| BoardRequest {
                class: Some(class.to_string()),
                tags: Vec::new(),
            })
        });
        if let (Some(w), None) = (&want, self.settings.lab_url()) {
            log::info!(target: "alpy::lab", "test bed {}: {w} on a lab; here (no REMOTE_LAB_URL) the DUT is the builder's VM", self.name);
            return Ok(None);
        }
        if want.is_some() && self.is_network() {
            return Err(Error::Config(format!(
                "test bed {}: a lab board (lab_board, REMOTE_LAB_BOARD) can be the DUT of a \
                 one-machine bed only; this one has several machines or segments",
                self.name
            )));
        }
        Ok(want)
    }
}

impl LabClient {
    /// The session a bed runs in on the lab `settings` name, if any: one
    /// that reserves a board fitting `board`, or one for a lab of VMs.
    pub(crate) fn for_bed(
        settings: &Settings,
        board: Option<BoardRequest>,
    ) -> Result<Option<LabClient>> {
        match board {
            None => LabClient::from_settings(settings),
            Some(want) => match super::client::url_and_token(settings)? {
                Some((url, token)) => {
                    log::info!(target: "alpy::lab", "reserving {want} at {url}");
                    LabClient::reserve_board(url, token, &want).map(Some)
                }
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dut, Link, TestBed};

    #[test]
    fn the_builder_s_board_wins_over_the_environment_s_class() {
        let env = Settings::default()
            .set("REMOTE_LAB_BOARD", "from-env")
            .set("REMOTE_LAB_URL", "http://127.0.0.1:9");
        let mut b = TestBed::builder("t").dut(Dut::kernel("k", None));
        b.settings = env.clone();
        let got = b.board_wanted().unwrap().unwrap();
        assert_eq!(got.class.as_deref(), Some("from-env"));
        let mut b = TestBed::builder("t")
            .dut(Dut::kernel("k", None))
            .lab_board(BoardRequest {
                class: Some("mine".into()),
                tags: vec!["rev-b".into()],
            });
        b.settings = env;
        let got = b.board_wanted().unwrap().unwrap();
        assert_eq!(got.class.as_deref(), Some("mine"));
        assert_eq!(got.tags, ["rev-b"]);
        let mut none = TestBed::builder("t").dut(Dut::kernel("k", None));
        none.settings = Settings::default().set("REMOTE_LAB_URL", "http://127.0.0.1:9");
        assert!(none.board_wanted().unwrap().is_none());
        // Here, without a lab, the VM runs.
        let mut here = TestBed::builder("t").dut(Dut::kernel("k", None));
        here.settings = Settings::default().set("REMOTE_LAB_BOARD", "fw");
        assert!(here.board_wanted().unwrap().is_none());
    }

    #[test]
    fn a_bed_of_several_machines_cannot_ask_for_a_lab_board() {
        let pair = |settings: Settings| {
            let mut b = TestBed::builder("pair")
                .machine("a", Dut::kernel("k", None))
                .machine("b", Dut::kernel("k", None))
                .link(Link::new().on("a:0"))
                .lab_board(BoardRequest::default());
            b.settings = settings;
            b
        };
        let on_lab = Settings::default().set("REMOTE_LAB_URL", "http://127.0.0.1:9");
        let e = pair(on_lab).board_wanted().unwrap_err().to_string();
        assert!(e.contains("one-machine bed"), "{e}");
        // Here, a suite's REMOTE_LAB_BOARD does not stop its other beds.
        assert!(pair(Settings::default()).board_wanted().unwrap().is_none());
    }
}
