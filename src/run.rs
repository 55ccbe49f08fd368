//! Run identity: every test bed has a run id, and every resource it creates
//! carries labels naming the run, the owner process and the host boot, so a
//! later run can tell a dead owner's leftovers from a live neighbour's.

use std::collections::HashMap;
use std::io::Read;

/// Label with the run id.
pub const LABEL_RUN: &str = "alpy.run";
/// Label with the owner's PID.
pub const LABEL_OWNER_PID: &str = "alpy.owner-pid";
/// Label with the owner's start time (clock ticks since boot), which tells a
/// reused PID from the original owner.
pub const LABEL_OWNER_START: &str = "alpy.owner-start";
/// Label with the host's boot id.
pub const LABEL_BOOT_ID: &str = "alpy.boot-id";

/// A short random id that names everything one test bed creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// A fresh random id: 10 hex digits.
    pub fn new() -> Self {
        let mut b = [0u8; 5];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .is_ok();
        if !ok {
            // Fall back on time and PID: unique enough for names on one host.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
                ^ (u64::from(std::process::id()) << 20);
            b.copy_from_slice(&t.to_le_bytes()[..5]);
        }
        RunId(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A resource name derived from the run id: `alpy-<id>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("alpy-{}-{suffix}", self.0)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host's boot id, or an empty string where it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if there is no such process or it is a
/// zombie (dead, waiting to be reaped).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The owner labels as `key=value` lines, for files that must be reapable.
pub fn owner_file_text(run: &RunId) -> String {
    let mut lines: Vec<String> = owner_labels(run)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// Parses [`owner_file_text`].
pub fn parse_owner_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The labels that mark a resource of run `run` as owned by this process.
pub fn owner_labels(run: &RunId) -> HashMap<String, String> {
    let pid = std::process::id();
    HashMap::from([
        (LABEL_RUN.to_string(), run.to_string()),
        (LABEL_OWNER_PID.to_string(), pid.to_string()),
        (
            LABEL_OWNER_START.to_string(),
            process_start_time(pid).unwrap_or(0).to_string(),
        ),
        (LABEL_BOOT_ID.to_string(), boot_id()),
    ])
}

/// Whether the owner named by these labels is still alive on this host.
/// Resources with no owner labels are never considered dead (not ours).
pub fn owner_alive(labels: &HashMap<String, String>) -> bool {
    let (Some(pid), Some(boot)) = (labels.get(LABEL_OWNER_PID), labels.get(LABEL_BOOT_ID)) else {
        return true;
    };
    if *boot != boot_id() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return true;
    };
    match process_start_time(pid) {
        None => false,
        Some(start) => labels
            .get(LABEL_OWNER_START)
            .and_then(|s| s.parse::<u64>().ok())
            .is_none_or(|want| want == 0 || want == start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_name_things() {
        let a = RunId::new();
        let b = RunId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 10);
        assert_eq!(a.name("node0"), format!("alpy-{a}-node0"));
    }

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let run = RunId::new();
        let mut labels = owner_labels(&run);
        assert!(owner_alive(&labels));
        // Same PID, other start time: a reused PID, so the owner is dead.
        labels.insert(LABEL_OWNER_START.into(), "1".into());
        assert!(!owner_alive(&labels));
        let mut labels = owner_labels(&run);
        labels.insert(LABEL_BOOT_ID.into(), "another-boot".into());
        assert!(!owner_alive(&labels));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut labels = owner_labels(&run);
        labels.insert(LABEL_OWNER_PID.into(), pid.to_string());
        assert!(!owner_alive(&labels));
    }

    #[test]
    fn owner_file_round_trips() {
        let run = RunId::new();
        assert_eq!(parse_owner_file(&owner_file_text(&run)), owner_labels(&run));
    }

    #[test]
    fn zombies_are_dead() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for yet: a zombie once it exits.
        let t0 = std::time::Instant::now();
        while process_start_time(pid).is_some() && t0.elapsed().as_secs() < 5 {
            std::thread::yield_now();
        }
        assert!(process_start_time(pid).is_none());
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "still a zombie"
        );
        drop(child);
    }

    #[test]
    fn foreign_resources_count_as_alive() {
        assert!(owner_alive(&HashMap::new()));
    }
}
