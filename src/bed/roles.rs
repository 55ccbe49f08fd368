//! Roles: the machines (`Dut::tag`) and nodes (`Link::tag`) a test
//! addresses together, and one command run on all of them at once.

use std::sync::Mutex;
use std::time::Duration;

use crate::bed::testbed::TestBed;
use crate::commands::{Commands, COMMAND_TIMEOUT};
use crate::error::{Error, Result};
use crate::net::Node;
use crate::output::Output;
use crate::vm::remote_shell::RemoteShell;

/// The members of one role, in link order.
///
/// ```no_run
/// use alpy::Commands;
/// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
/// // Every node tagged "clients" pings the server, all at once.
/// for (node, out) in bed.role("clients")?.succeed("ping -c 1 -W 2 192.168.2.2")? {
///     println!("{node}: {}", out.lines().count());
/// }
/// # Ok(()) }
/// ```
pub struct Role<'b> {
    name: String,
    members: Vec<Member<'b>>,
}

/// One member of a role: a node, or a machine's shell.
enum Member<'b> {
    Node(&'b Node),
    /// In a mutex: the shell is used from the member's own thread.
    Machine(String, Mutex<RemoteShell<'b>>),
}

impl Member<'_> {
    fn name(&self) -> &str {
        match self {
            Member::Node(n) => n.name(),
            Member::Machine(name, _) => name,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Member::Node(_) => "node",
            Member::Machine(..) => "machine",
        }
    }

    fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        match self {
            Member::Node(n) => n.execute_within(cmd, timeout),
            Member::Machine(_, shell) => crate::util::lock(shell).execute_within(cmd, timeout),
        }
    }
}

impl<'b> Role<'b> {
    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its nodes (its machines are in [`Role::names`]).
    pub fn nodes(&self) -> Vec<&'b Node> {
        self.members
            .iter()
            .filter_map(|m| match m {
                Member::Node(n) => Some(*n),
                Member::Machine(..) => None,
            })
            .collect()
    }

    /// The members' names: machines first, then nodes in link order.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(Member::name).collect()
    }

    /// Runs `cmd` on every member at once, within `timeout` each; returns
    /// each member's name and output, whatever its exit code. An error
    /// (not a non-zero exit: a member that could not run it at all) names
    /// the member.
    pub fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Vec<(String, Output)>> {
        let results: Vec<(&Member, Result<Output>)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .members
                .iter()
                .map(|m| {
                    let h = s.spawn(crate::logging::inherit(move || {
                        m.execute_within(cmd, timeout)
                    }));
                    (m, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(m, h)| (m, crate::util::join_scoped(h, "a role member's thread")))
                .collect()
        });
        results
            .into_iter()
            .map(|(m, r)| match r {
                Ok(out) => Ok((m.name().to_string(), out)),
                Err(e) => Err(Error::CommandFailed {
                    what: format!("`{cmd}` on {} {} of role {}", m.kind(), m.name(), self.name),
                    status: "not run".into(),
                    output: e.to_string(),
                }),
            })
            .collect()
    }

    /// [`Role::execute_within`] the default command timeout.
    pub fn execute(&self, cmd: &str) -> Result<Vec<(String, Output)>> {
        self.execute_within(cmd, COMMAND_TIMEOUT)
    }

    /// Runs `cmd` on every member at once; returns each member's name and
    /// standard output. If any member exits non-zero, the error names
    /// every member that failed, with its exit code and output's tail.
    pub fn succeed(&self, cmd: &str) -> Result<Vec<(String, String)>> {
        let outs = self.execute(cmd)?;
        let kinds: std::collections::HashMap<&str, &str> =
            self.members.iter().map(|m| (m.name(), m.kind())).collect();
        let failed: Vec<String> = outs
            .iter()
            .filter(|(_, o)| !o.status.success())
            .map(|(name, o)| {
                let kind = kinds.get(name.as_str()).copied().unwrap_or("member");
                format!("{kind} {name}: {}\n{}", o.status, o.tail())
            })
            .collect();
        if !failed.is_empty() {
            return Err(Error::CommandFailed {
                what: format!(
                    "`{cmd}` on role {} ({} of {} members)",
                    self.name,
                    failed.len(),
                    outs.len()
                ),
                status: "a non-zero exit".into(),
                output: failed.join("\n"),
            });
        }
        Ok(outs
            .into_iter()
            .map(|(name, o)| (name, o.stdout_str()))
            .collect())
    }
}

impl TestBed {
    /// The machines ([`crate::Dut::tag`]) and nodes ([`crate::Link::tag`])
    /// tagged `name`; [`Error::NotFound`], naming the roles there are, if
    /// none is. A machine's shell is attached for it (boot first).
    pub fn role(&mut self, name: &str) -> Result<Role<'_>> {
        let nodes = self
            .nodes
            .as_ref()
            .ok_or_else(|| Error::Closed(format!("the nodes of test bed {}", self.name)))?;
        let has = |tags: &[String]| tags.iter().any(|t| t == name);
        let mut roles: Vec<&str> = nodes
            .iter()
            .flat_map(|n| n.tags().iter().map(String::as_str))
            .chain(
                self.machines
                    .iter()
                    .flat_map(|m| m.tags.iter().map(String::as_str)),
            )
            .collect();
        roles.sort_unstable();
        roles.dedup();
        if !nodes.iter().any(|n| has(n.tags())) && !self.machines.iter().any(|m| has(&m.tags)) {
            return Err(Error::NotFound {
                what: format!("role {name:?}"),
                hint: if roles.is_empty() {
                    "nothing has a role: tag links (Link::tag, `tags = [..]`) or machines \
                     (Dut::tag)"
                        .into()
                } else {
                    format!("the roles here: {}", roles.join(", "))
                },
            });
        }
        let mut members = Vec::new();
        for m in self.machines.iter_mut().filter(|m| has(&m.tags)) {
            let name = m.name.clone();
            members.push(Member::Machine(name, Mutex::new(m.shell()?)));
        }
        members.extend(nodes.iter().filter(|n| has(n.tags())).map(Member::Node));
        Ok(Role {
            name: name.to_string(),
            members,
        })
    }
}
