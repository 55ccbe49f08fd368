//! A program on a pseudo-terminal, driven like a user at a keyboard.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process whose standard streams are a pty's slave side.
pub struct Pty {
    master: std::fs::File,
    pub child: Child,
    /// Everything read so far.
    pub seen: Vec<u8>,
}

impl Pty {
    /// Starts `cmd` on a new pty (24x80).
    pub fn spawn(mut cmd: Command) -> Pty {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty"));
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // The pty becomes the child's controlling terminal, as in a shell.
        use std::os::unix::process::CommandExt;
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        // Reads with a deadline: poll before each read.
        Pty {
            master,
            child,
            seen: Vec::new(),
        }
    }

    /// Types `data`.
    pub fn send(&mut self, data: &[u8]) {
        self.master.write_all(data).expect("write to the pty");
    }

    /// Reads until `needle` has been seen (in everything read so far),
    /// panicking with what was seen after `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if String::from_utf8_lossy(&self.seen).contains(needle) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} on the pty within {timeout:?}; saw:\n{}",
                String::from_utf8_lossy(&self.seen)
            );
            if !self.read_some(left.min(Duration::from_millis(200))) {
                assert!(
                    String::from_utf8_lossy(&self.seen).contains(needle),
                    "the pty closed before {needle:?}; saw:\n{}",
                    String::from_utf8_lossy(&self.seen)
                );
                return;
            }
        }
    }

    /// Reads what arrives within `wait`; false once the pty has closed.
    fn read_some(&mut self, wait: Duration) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(self.master.as_raw_fd()) },
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => true,
            Ok(_) => {
                let mut buf = [0u8; 4096];
                match self.master.read(&mut buf) {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        self.seen.extend_from_slice(&buf[..n]);
                        true
                    }
                }
            }
            Err(_) => false,
        }
    }

    /// Waits for the child to exit (reading its last output), within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the pty's child") {
                while self.read_some(Duration::from_millis(50)) {}
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the pty's child did not exit within {timeout:?}; saw:\n{}",
                String::from_utf8_lossy(&self.seen)
            );
            self.read_some(Duration::from_millis(100));
        }
    }

    /// Everything seen, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
