//! Roles: the nodes a test addresses together (`Link::tag`), and one
//! command run on all of them at once.

use std::time::Duration;

use crate::bed::testbed::TestBed;
use crate::commands::{Commands, COMMAND_TIMEOUT};
use crate::error::{Error, Result};
use crate::net::Node;
use crate::output::Output;

/// The members of one role, in link order.
///
/// ```no_run
/// use alpy::Commands;
/// # fn f(bed: &alpy::TestBed) -> alpy::Result<()> {
/// // Every node tagged "clients" pings the server, all at once.
/// for (node, out) in bed.role("clients")?.succeed("ping -c 1 -W 2 192.168.2.2")? {
///     println!("{node}: {}", out.lines().count());
/// }
/// # Ok(()) }
/// ```
pub struct Role<'b> {
    name: String,
    members: Vec<&'b Node>,
}

impl<'b> Role<'b> {
    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its members.
    pub fn members(&self) -> &[&'b Node] {
        &self.members
    }

    /// The members' names.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|n| n.name()).collect()
    }

    /// Runs `cmd` on every member at once, within `timeout` each; returns
    /// each member's name and output, whatever its exit code. An error
    /// (not a non-zero exit: a member that could not run it at all) names
    /// the member.
    pub fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Vec<(String, Output)>> {
        let results: Vec<(String, Result<Output>)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .members
                .iter()
                .map(|n| {
                    let h = s.spawn(crate::logging::inherit(move || {
                        n.execute_within(cmd, timeout)
                    }));
                    (n.name().to_string(), h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, h)| (name, crate::util::join_scoped(h, "a role member's thread")))
                .collect()
        });
        results
            .into_iter()
            .map(|(name, r)| match r {
                Ok(out) => Ok((name, out)),
                Err(e) => Err(Error::CommandFailed {
                    what: format!("`{cmd}` on node {name} of role {}", self.name),
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
        let failed: Vec<String> = outs
            .iter()
            .filter(|(_, o)| !o.status.success())
            .map(|(name, o)| format!("node {name}: {}\n{}", o.status, o.tail()))
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
    /// The nodes tagged `name` ([`crate::Link::tag`]);
    /// [`Error::NotFound`], naming the roles there are, if none is.
    pub fn role(&self, name: &str) -> Result<Role<'_>> {
        let nodes = self.nodes()?;
        let members: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.tags().iter().any(|t| t == name))
            .collect();
        if members.is_empty() {
            let mut roles: Vec<&str> = nodes
                .iter()
                .flat_map(|n| n.tags().iter().map(String::as_str))
                .collect();
            roles.sort_unstable();
            roles.dedup();
            return Err(Error::NotFound {
                what: format!("role {name:?}"),
                hint: if roles.is_empty() {
                    "no node has a role: give links one with Link::tag(..) or `tags = [..]`".into()
                } else {
                    format!("the roles here: {}", roles.join(", "))
                },
            });
        }
        Ok(Role {
            name: name.to_string(),
            members,
        })
    }
}
