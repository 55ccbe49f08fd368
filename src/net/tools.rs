//! The tools container a local node keeps for `execute` and friends. It is
//! started in the background as soon as the node exists (so the first verb
//! on a node does not pay for it), or by that first verb if it comes
//! sooner; it is removed with the node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::container::Container;
use crate::net::docker::{ContainerSpec, Docker};
use crate::util::lock;

/// Where a node's tools container is in its life.
enum State {
    /// Not started yet: the background start or the first verb starts it.
    NotStarted,
    Running(Container),
    /// The node is closing or closed: nothing may start any more.
    Closed,
}

/// One node's tools container and what starting it takes.
pub(crate) struct Tools {
    state: Mutex<State>,
    docker: Arc<Docker>,
    spec: ContainerSpec,
    node: String,
}

impl Tools {
    pub(crate) fn new(docker: Arc<Docker>, spec: ContainerSpec, node: String) -> Arc<Tools> {
        Arc::new(Tools {
            state: Mutex::new(State::NotStarted),
            docker,
            spec,
            node,
        })
    }

    /// Calls `f` with the running container, starting it first if needed
    /// (under the lock: a start already under way is waited for, and
    /// concurrent callers start one).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Container) -> Result<T>) -> Result<T> {
        let mut state = lock(&self.state);
        if let State::NotStarted = *state {
            *state = State::Running(self.start()?);
        }
        match &*state {
            State::Running(c) => f(c),
            State::NotStarted | State::Closed => Err(Error::Closed(format!(
                "the tools container of node {}",
                self.node
            ))),
        }
    }

    fn start(&self) -> Result<Container> {
        let c = Container::run(&self.docker, &self.spec, None)?;
        c.ensure_running_for(Duration::ZERO)?;
        Ok(c)
    }

    /// Starts the tools containers of `all`, one after the other (node 0
    /// first: the likeliest to be used first), on a thread of the caller's
    /// log scope; a failure is logged, and the first verb on that node
    /// tries again and reports it.
    pub(crate) fn start_in_background(all: Vec<Arc<Tools>>) {
        let spawned = std::thread::Builder::new()
            .name("alpy-tools".into())
            .spawn(crate::logging::inherit(move || {
                for tools in all {
                    if let Err(e) = tools.with(|_| Ok(())) {
                        log::debug!(target: "alpy::node",
                            "starting node {}'s tools container in the background: {e}", tools.node);
                    }
                }
            }));
        if let Err(e) = spawned {
            log::debug!(target: "alpy::node", "no background start of tools containers: {e}");
        }
    }

    /// Removes the container if it runs (its own process only sleeps, so
    /// it has no logs to keep); nothing starts after this.
    pub(crate) fn close(&self) -> Result<()> {
        match std::mem::replace(&mut *lock(&self.state), State::Closed) {
            State::Running(c) => c.discard(),
            State::NotStarted | State::Closed => Ok(()),
        }
    }
}
