//! One Redis node (server, cluster node or sentinel) on a free loopback
//! port with its own temporary directory, run by either backend:
//!
//! - `process`: `redis-server` from PATH. Killed and its directory removed
//!   on drop — on success, failure, panic and Ctrl-C alike — and killed by
//!   the kernel too if gameday itself dies (PR_SET_PDEATHSIG).
//! - `docker`: the same command in a container (testcontainers), with host
//!   networking so it listens on 127.0.0.1, the directory bind-mounted at
//!   `/data`, and labels naming the run. `shutdown` removes the container;
//!   dropping it asks testcontainers to.

use super::config::{server_args, Flavor};
use super::container::start_container;
use super::handle::{HandleKind, NodeHandle};
use super::local::spawn_process;
use super::security::Security;
use super::TopologyError;
use crate::redis_admin::access::{grant, revoke};
use crate::topology::plan::TopologyPlan;
use crate::vocab::owner;
use crate::vocab::topo::Role;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testcontainers::{ContainerAsync, GenericImage};

/// The prefix of a node's temporary directory, which then carries its
/// owner's tag (`vocab::owner`) for `gameday clean`.
pub const TEMP_PREFIX: &str = "gameday";

pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;

/// Who runs the nodes.
#[derive(Debug, Clone)]
pub enum Launcher {
    Process,
    Docker {
        image: String,
        run_id: String,
    },
    /// Nobody: the nodes already run (the external backend).
    External,
}

/// What runs a node. Shared with the node's `NodeHandle`s, through which
/// faults kill, stop, pause and start it again during a run.
#[derive(Clone)]
enum Runner {
    Child(Arc<Mutex<Child>>),
    Container(Option<Arc<ContainerAsync<GenericImage>>>),
}

/// A running Redis node owned by this run.
pub struct RedisProcess {
    pub id: String,
    pub role: Role,
    pub addr: SocketAddr,
    /// The cluster bus address, for cluster nodes.
    pub bus: Option<SocketAddr>,
    runner: Runner,
    dir: tempfile::TempDir,
    /// The server's arguments, to start it again the same way.
    args: Arc<Vec<String>>,
}

/// A free loopback port (the OS picks; a race with another process is
/// caught when the server fails to bind, and retried).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl RedisProcess {
    /// Starts a plain node and waits until it answers PING.
    pub async fn start(id: &str, role: Role, plan: &TopologyPlan) -> Result<Self, TopologyError> {
        let open = Security::default();
        Self::start_as(id, role, plan, (Flavor::Node, &open), &Launcher::Process).await
    }

    /// Starts a node of `flavor`, secured as `security` says, with
    /// `launcher` and waits until it answers PING.
    pub async fn start_as(
        id: &str,
        role: Role,
        plan: &TopologyPlan,
        (flavor, security): (Flavor, &Security),
        launcher: &Launcher,
    ) -> Result<Self, TopologyError> {
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(id, role, plan, (flavor, security), launcher).await {
                Ok(p) => return Ok(p),
                Err(TopologyError::Exited { log, .. })
                    if log.contains("Address already in use") =>
                {
                    last_err = Some(TopologyError::NoFreePort {
                        node: id.to_string(),
                        attempts: PORT_ATTEMPTS,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn try_start(
        id: &str,
        role: Role,
        plan: &TopologyPlan,
        (flavor, security): (Flavor, &Security),
        launcher: &Launcher,
    ) -> Result<Self, TopologyError> {
        let dir = tempfile::Builder::new()
            .prefix(&owner::tagged(TEMP_PREFIX, &format!("{id}-")))
            .tempdir()
            .map_err(io_err(id, "cannot create a temporary directory"))?;
        let port = free_port().map_err(io_err(id, "no free port"))?;
        let bus = match flavor {
            Flavor::ClusterNode { .. } => Some(free_port().map_err(io_err(id, "no free port"))?),
            _ => None,
        };
        let server_dir = match launcher {
            Launcher::Process => dir.path().to_path_buf(),
            Launcher::Docker { .. } => PathBuf::from("/data"),
            Launcher::External => {
                return Err(TopologyError::NotRun {
                    node: id.to_string(),
                    action: "start",
                })
            }
        };
        let args = server_args(port, bus, (dir.path(), &server_dir), plan, security, flavor)
            .map_err(io_err(id, "cannot write its configuration"))?;
        let runner = match launcher {
            Launcher::Process => Runner::Child(Arc::new(Mutex::new(spawn_process(&args)?))),
            Launcher::Docker { image, run_id } => Runner::Container(Some(Arc::new(
                start_container(id, image, run_id, dir.path(), args.clone()).await?,
            ))),
            Launcher::External => unreachable!("refused above"),
        };
        let mut node = RedisProcess {
            id: id.to_string(),
            role,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            bus: bus.map(|b| SocketAddr::from((Ipv4Addr::LOCALHOST, b))),
            runner,
            dir,
            args: Arc::new(args),
        };
        // Revoked when the node drops.
        grant(node.addr, &security.access);
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> Result<(), TopologyError> {
        self.handle().wait_ready().await
    }

    /// A handle for acting on the node while the run goes on.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            id: self.id.clone(),
            addr: self.addr,
            log: self.log_path(),
            kind: match &self.runner {
                Runner::Child(c) => HandleKind::Process {
                    child: c.clone(),
                    args: self.args.clone(),
                },
                Runner::Container(Some(c)) => HandleKind::Container(c.clone()),
                Runner::Container(None) => HandleKind::Remote,
            },
        }
    }

    /// The process id (0 for a container), for tests and benchmarks.
    pub fn pid(&self) -> u32 {
        match &self.runner {
            Runner::Child(child) => lock(child).id(),
            Runner::Container(_) => 0,
        }
    }

    /// The container id, on the docker backend, for tests.
    #[cfg(feature = "testing")]
    pub fn container_id(&self) -> Option<String> {
        match &self.runner {
            Runner::Container(Some(c)) => Some(c.id().to_string()),
            _ => None,
        }
    }

    /// Stops the node and waits until it is gone (a container is removed).
    pub async fn shutdown(mut self) {
        if let Runner::Container(c) = &mut self.runner {
            if let Some(c) = c.take() {
                match Arc::try_unwrap(c) {
                    Ok(c) => {
                        let _ = c.rm().await;
                    }
                    // A handle outlived the run: testcontainers removes the
                    // container when the last one drops.
                    Err(shared) => {
                        let _ = shared.stop_with_timeout(Some(0)).await;
                    }
                }
            }
        }
    }

    #[cfg(feature = "testing")]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }
}

/// An I/O failure of node `id` while doing `what`.
pub(super) fn io_err(id: &str, what: &'static str) -> impl Fn(std::io::Error) -> TopologyError {
    let node = id.to_string();
    move |source| TopologyError::Io {
        node: node.clone(),
        what,
        source,
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // A container not removed by `shutdown` is removed by
        // testcontainers' own drop. The TempDir field removes the directory.
        if let Runner::Child(child) = &self.runner {
            let mut c = lock(child);
            let _ = c.kill();
            let _ = c.wait();
        }
        revoke(self.addr);
    }
}
