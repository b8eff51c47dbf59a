//! `NodeHandle`: a cloneable handle on one node for the faults that act on
//! the node itself (kill, stop, pause, resume, start again), shared with
//! the `RedisProcess` that owns it.

use super::local::spawn_process;
use super::process::{lock, log_tail, READY_TIMEOUT};
use super::TopologyError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testcontainers::{ContainerAsync, GenericImage};
use tokio::time::Instant;

/// How a fault reaches a node.
#[derive(Clone)]
pub(super) enum HandleKind {
    Process {
        child: Arc<Mutex<Child>>,
        args: Arc<Vec<String>>,
    },
    Container(Arc<ContainerAsync<GenericImage>>),
    /// A node gameday does not run (external): commands only.
    Remote,
}

/// A cloneable handle on one node, for the faults that act on the node
/// itself: kill, stop, pause, resume, start again. `addr` is where admin
/// commands go (`CLIENT PAUSE`, `DEBUG SLEEP`).
#[derive(Clone)]
pub struct NodeHandle {
    pub id: String,
    pub addr: SocketAddr,
    pub(super) log: PathBuf,
    pub(super) kind: HandleKind,
}

impl NodeHandle {
    /// A node reached by address only (the external backend).
    pub fn remote(id: &str, addr: SocketAddr) -> NodeHandle {
        NodeHandle {
            id: id.to_string(),
            addr,
            log: PathBuf::new(),
            kind: HandleKind::Remote,
        }
    }

    /// Whether kill, stop, pause and start work on this node.
    pub fn owned(&self) -> bool {
        !matches!(self.kind, HandleKind::Remote)
    }

    fn docker_err(
        &self,
        action: &'static str,
    ) -> impl Fn(testcontainers::TestcontainersError) -> TopologyError + '_ {
        move |source| TopologyError::Docker {
            node: self.id.clone(),
            action,
            source: Box::new(source),
        }
    }

    fn unsupported(&self, action: &'static str) -> TopologyError {
        TopologyError::NotRun {
            node: self.id.clone(),
            action,
        }
    }

    /// SIGKILL (a container is stopped with no grace period); returns once
    /// the process is gone.
    pub async fn kill(&self) -> Result<(), TopologyError> {
        match &self.kind {
            HandleKind::Process { child, .. } => {
                let mut c = lock(child);
                let _ = c.kill();
                let _ = c.wait();
                Ok(())
            }
            HandleKind::Container(c) => c
                .stop_with_timeout(Some(0))
                .await
                .map_err(self.docker_err("kill")),
            HandleKind::Remote => Err(self.unsupported("kill")),
        }
    }

    /// SIGTERM and wait (up to 10 s) for a clean shutdown: Redis writes its
    /// RDB (if `save` is set) or flushes its AOF first.
    pub async fn stop(&self) -> Result<(), TopologyError> {
        match &self.kind {
            HandleKind::Process { child, .. } => {
                let pid = lock(child).id() as i32;
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if lock(child).try_wait().ok().flatten().is_some() {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return self.kill().await;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            HandleKind::Container(c) => c
                .stop_with_timeout(Some(10))
                .await
                .map_err(self.docker_err("stop")),
            HandleKind::Remote => Err(self.unsupported("stop")),
        }
    }

    /// Starts a killed or stopped node again, same port, same directory and
    /// config file, and waits until it answers PING.
    pub async fn start_again(&self) -> Result<(), TopologyError> {
        match &self.kind {
            HandleKind::Process { child, args } => {
                // Spawned from this (runtime worker) thread, so that
                // PR_SET_PDEATHSIG follows a thread that lives as long as
                // the run.
                *lock(child) = spawn_process(args)?;
            }
            HandleKind::Container(c) => c.start().await.map_err(self.docker_err("start again"))?,
            HandleKind::Remote => return Err(self.unsupported("start")),
        }
        self.wait_ready().await
    }

    /// SIGSTOP (docker pause): alive, silent.
    pub async fn pause(&self) -> Result<(), TopologyError> {
        self.signal_or(libc::SIGSTOP, true).await
    }

    /// SIGCONT (docker unpause).
    pub async fn resume(&self) -> Result<(), TopologyError> {
        self.signal_or(libc::SIGCONT, false).await
    }

    async fn signal_or(&self, signal: i32, pause: bool) -> Result<(), TopologyError> {
        match &self.kind {
            HandleKind::Process { child, .. } => {
                let pid = lock(child).id() as i32;
                // SAFETY: plain kill(2) on our own child's pid.
                if unsafe { libc::kill(pid, signal) } != 0 {
                    return Err(TopologyError::Io {
                        node: self.id.clone(),
                        what: "signal",
                        source: std::io::Error::last_os_error(),
                    });
                }
                Ok(())
            }
            HandleKind::Container(c) => {
                let r = if pause {
                    c.pause().await
                } else {
                    c.unpause().await
                };
                r.map_err(self.docker_err("pause"))
            }
            HandleKind::Remote => Err(self.unsupported("pause")),
        }
    }

    async fn exited(&self) -> Option<String> {
        match &self.kind {
            HandleKind::Process { child, .. } => {
                lock(child).try_wait().ok().flatten().map(|s| s.to_string())
            }
            HandleKind::Container(c) => match c.is_running().await {
                Ok(false) => Some(format!(
                    "container exited with {:?}",
                    c.exit_code().await.ok().flatten()
                )),
                _ => None,
            },
            HandleKind::Remote => None,
        }
    }

    /// Polls PING until the node answers, it exits, or READY_TIMEOUT passes.
    pub async fn wait_ready(&self) -> Result<(), TopologyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = crate::redis_admin::access::client(self.addr).map_err(|source| {
            TopologyError::Command {
                node: self.id.clone(),
                source,
            }
        })?;
        loop {
            if let Some(status) = self.exited().await {
                return Err(TopologyError::Exited {
                    node: self.id.clone(),
                    status,
                    log: log_tail(&self.log),
                });
            }
            if let Ok(Ok(mut conn)) = tokio::time::timeout(
                Duration::from_millis(500),
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(TopologyError::NoPing {
                    node: self.id.clone(),
                    addr: self.addr,
                    limit: READY_TIMEOUT,
                    log: log_tail(&self.log),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
