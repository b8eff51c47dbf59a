//! The process backend: `redis-server` started on a free loopback port in
//! its own temporary directory. The process is killed and the directory
//! removed on drop — on success, failure, panic and Ctrl-C alike — and the
//! kernel kills it too if gameday itself dies (PR_SET_PDEATHSIG).

use super::{Role, TopologyError};
use crate::scenario::plan::TopologyPlan;
use crate::scenario::raw::{MaxmemoryPolicy, Persistence};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;

/// The redis-server binary: `GAMEDAY_REDIS_SERVER`, else `redis-server` on PATH.
pub fn redis_server_bin() -> PathBuf {
    std::env::var_os("GAMEDAY_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "redis-server".into())
}

/// What kind of process a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A plain redis-server.
    Node,
    /// A redis-server with cluster mode on and its bus on its own port.
    ClusterNode { node_timeout_ms: u64 },
    /// redis-server in sentinel mode (`--sentinel`), monitoring nothing yet.
    Sentinel,
}

/// A running redis-server owned by this run.
pub struct RedisProcess {
    pub id: String,
    pub role: Role,
    pub addr: SocketAddr,
    /// The cluster bus address, for cluster nodes.
    pub bus: Option<SocketAddr>,
    child: Child,
    dir: tempfile::TempDir,
}

/// A free loopback port (the OS picks; a race with another process is
/// caught when the server fails to bind, and retried).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn policy_name(p: MaxmemoryPolicy) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn server_args(
    port: u16,
    bus: Option<u16>,
    dir: &Path,
    plan: &TopologyPlan,
    flavor: Flavor,
) -> std::io::Result<Vec<String>> {
    let log = dir.join("redis.log").display().to_string();
    if flavor == Flavor::Sentinel {
        // Sentinel rewrites its configuration file, so it needs one of its own.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {log}\ndaemonize no\n",
                dir.display()
            ),
        )?;
        return Ok(vec![conf.display().to_string(), "--sentinel".into()]);
    }
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--logfile".into(),
        log,
        "--daemonize".into(),
        "no".into(),
        "--protected-mode".into(),
        "yes".into(),
        // Start a replica's full sync at once instead of waiting 5 s for
        // more replicas to join it.
        "--repl-diskless-sync-delay".into(),
        "0".into(),
    ];
    match plan.persistence {
        Persistence::None => args.extend([
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ]),
        Persistence::Aof => args.extend([
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "everysec".into(),
        ]),
        Persistence::Rdb => args.extend([
            "--save".into(),
            "1 1".into(),
            "--appendonly".into(),
            "no".into(),
        ]),
    }
    if let Some(bytes) = plan.maxmemory {
        args.extend(["--maxmemory".into(), bytes.to_string()]);
    }
    if let Some(policy) = plan.maxmemory_policy {
        args.extend(["--maxmemory-policy".into(), policy_name(policy)]);
    }
    if let (Flavor::ClusterNode { node_timeout_ms }, Some(bus)) = (flavor, bus) {
        args.extend([
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            dir.join("nodes.conf").display().to_string(),
            "--cluster-node-timeout".into(),
            node_timeout_ms.to_string(),
            "--cluster-port".into(),
            bus.to_string(),
        ]);
    }
    Ok(args)
}

impl RedisProcess {
    /// Starts a plain node and waits until it answers PING.
    pub async fn start(id: &str, role: Role, plan: &TopologyPlan) -> Result<Self, TopologyError> {
        Self::start_as(id, role, plan, Flavor::Node).await
    }

    /// Starts a process of `flavor` and waits until it answers PING.
    pub async fn start_as(
        id: &str,
        role: Role,
        plan: &TopologyPlan,
        flavor: Flavor,
    ) -> Result<Self, TopologyError> {
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(id, role, plan, flavor).await {
                Ok(p) => return Ok(p),
                Err(TopologyError::Exited { log, .. })
                    if log.contains("Address already in use") =>
                {
                    last_err = Some(TopologyError::Provision(format!(
                        "node {id}: no free port after {PORT_ATTEMPTS} attempts"
                    )));
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
        flavor: Flavor,
    ) -> Result<Self, TopologyError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("gameday-{id}-"))
            .tempdir()
            .map_err(|e| {
                TopologyError::Provision(format!(
                    "node {id}: cannot create a temporary directory: {e}"
                ))
            })?;
        let port = free_port()
            .map_err(|e| TopologyError::Provision(format!("node {id}: no free port: {e}")))?;
        let bus =
            match flavor {
                Flavor::ClusterNode { .. } => Some(free_port().map_err(|e| {
                    TopologyError::Provision(format!("node {id}: no free port: {e}"))
                })?),
                _ => None,
            };
        let args = server_args(port, bus, dir.path(), plan, flavor).map_err(|e| {
            TopologyError::Provision(format!("node {id}: cannot write its configuration: {e}"))
        })?;
        let bin = redis_server_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // SIGKILL this child if the thread that spawned it dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            TopologyError::Provision(format!(
                "cannot start `{}`: {e} (install Redis, e.g. `apt-get install redis-server`, or set GAMEDAY_REDIS_SERVER)",
                bin.display()
            ))
        })?;
        let mut node = RedisProcess {
            id: id.to_string(),
            role,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            bus: bus.map(|b| SocketAddr::from((Ipv4Addr::LOCALHOST, b))),
            child,
            dir,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> Result<(), TopologyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("redis://{}/", self.addr);
        let client =
            redis::Client::open(url).map_err(|e| TopologyError::Provision(e.to_string()))?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TopologyError::Exited {
                    node: self.id.clone(),
                    status: status.to_string(),
                    log: self.log_tail(),
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
                return Err(TopologyError::Provision(format!(
                    "node {} did not answer PING on {} within {}s; log:\n{}",
                    self.id,
                    self.addr,
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The TempDir field removes the directory after this.
    }
}
