//! Faults on the target nodes themselves: `kill` (SIGKILL; a container
//! stopped without grace), `restart` (SIGTERM, a clean shutdown), `pause`
//! (SIGSTOP; docker pause), `client_pause` (`CLIENT PAUSE <for> ALL`) and
//! `debug_sleep` (`DEBUG SLEEP <for>`). Each lasts the fault's `for`: the
//! node is started again, resumed, or waited for until it answers.

use super::{Env, Window};
use crate::redis_admin;
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use tokio::task::JoinHandle;

/// Node faults take no parameters: only target, at and for.
pub const KEYS: &[&str] = &[];

/// Why kill, restart and pause cannot act on an external node.
pub const NEEDS_OWNED: &str =
    "names nodes gameday does not run: kill, restart and pause need the process or docker backend";

/// What happens to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// SIGKILL (container stop without grace); started again, same port and
    /// data directory, at the end.
    Kill,
    /// SIGTERM, a clean shutdown (RDB written / AOF flushed as configured);
    /// started again at the end.
    Restart,
    /// SIGSTOP (docker pause): alive but silent; SIGCONT at the end.
    Pause,
    /// `CLIENT PAUSE <for> ALL`; over by itself at the end.
    ClientPause,
    /// `DEBUG SLEEP <for>`: the server blocks, then wakes by itself.
    DebugSleep,
}

impl NodeFault {
    /// Whether the fault needs the node's process or container (not only
    /// its address).
    pub fn needs_owned(self) -> bool {
        matches!(
            self,
            NodeFault::Kill | NodeFault::Restart | NodeFault::Pause
        )
    }
}

/// A node fault in force on some nodes.
pub struct Active {
    fault: NodeFault,
    nodes: Vec<NodeHandle>,
    /// `debug_sleep`: the commands that answer when the sleep is over.
    sleepers: Vec<JoinHandle<Result<(), TopologyError>>>,
}

/// Turns the fault on for every target node.
pub async fn apply(env: &Env, fault: &NodeFault, w: &Window) -> Result<Active, TopologyError> {
    let mut sleepers = Vec::new();
    for n in &env.nodes {
        match fault {
            NodeFault::Kill => n.kill().await?,
            NodeFault::Restart => n.stop().await?,
            NodeFault::Pause => n.pause().await?,
            // Redis blocks even CLIENT UNPAUSE while all clients are paused,
            // so the pause is set for exactly the fault's length.
            NodeFault::ClientPause => {
                let ms = w.duration.as_millis().to_string();
                redis_admin::blocking::<()>(
                    n.addr,
                    &redis_admin::cmd(&["CLIENT", "PAUSE", &ms, "ALL"]),
                )
                .await
                .map_err(|source| node_err(n, source))?
            }
            NodeFault::DebugSleep => {
                let (n, secs) = (n.clone(), format!("{:.3}", w.duration.as_secs_f64()));
                sleepers.push(tokio::spawn(async move {
                    redis_admin::blocking::<()>(
                        n.addr,
                        &redis_admin::cmd(&["DEBUG", "SLEEP", &secs]),
                    )
                    .await
                    .map_err(|source| node_err(&n, source))
                }));
            }
        }
    }
    Ok(Active {
        fault: *fault,
        nodes: env.nodes.clone(),
        sleepers,
    })
}

fn node_err(n: &NodeHandle, source: redis_admin::AdminError) -> TopologyError {
    TopologyError::Node {
        node: n.id.clone(),
        source,
    }
}

impl Active {
    /// Ends the fault: start the node again, resume it, or wait until it
    /// answers again on its own (client_pause, debug_sleep).
    pub async fn remove(self, _env: &Env) -> Result<(), TopologyError> {
        for s in self.sleepers {
            s.await??;
        }
        for n in &self.nodes {
            match self.fault {
                NodeFault::Kill | NodeFault::Restart => n.start_again().await?,
                NodeFault::Pause => n.resume().await?,
                NodeFault::ClientPause | NodeFault::DebugSleep => n.wait_ready().await?,
            }
        }
        Ok(())
    }
}
