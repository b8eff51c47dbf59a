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

use super::{Role, TopologyError};
use crate::scenario::plan::TopologyPlan;
use crate::scenario::raw::{MaxmemoryPolicy, Persistence};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
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
    /// redis-server in sentinel mode (`--sentinel`), monitoring nothing yet,
    /// connecting to its peers from `peer_source` when set.
    Sentinel { peer_source: Option<Ipv4Addr> },
}

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

/// The default image for real users; CI names a local one through
/// `GAMEDAY_REDIS_IMAGE` (see ci/docker.sh).
pub const DEFAULT_IMAGE: &str = "redis:7.2-alpine";

/// The image a docker run uses: `GAMEDAY_REDIS_IMAGE`, else the scenario's
/// `image`, else the official one.
pub fn resolve_image(plan: &TopologyPlan) -> String {
    std::env::var("GAMEDAY_REDIS_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| plan.image.clone())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
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

fn policy_name(p: MaxmemoryPolicy) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The server's arguments. `host_dir` is the node's directory as gameday
/// sees it, `dir` as the server sees it (`/data` in a container).
fn server_args(
    port: u16,
    bus: Option<u16>,
    host_dir: &Path,
    dir: &Path,
    plan: &TopologyPlan,
    flavor: Flavor,
) -> std::io::Result<Vec<String>> {
    let log = dir.join("redis.log").display().to_string();
    if let Flavor::Sentinel { peer_source } = flavor {
        // Sentinel rewrites its configuration file, so it needs one of its own.
        let source = peer_source
            .map(|s| format!("bind-source-addr {s}\n"))
            .unwrap_or_default();
        std::fs::write(
            host_dir.join("sentinel.conf"),
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {log}\ndaemonize no\n{source}",
                dir.display()
            ),
        )?;
        return Ok(vec![
            dir.join("sentinel.conf").display().to_string(),
            "--sentinel".into(),
        ]);
    }
    // An empty config file to start with: `CONFIG REWRITE` (by the
    // assembly, and by sentinels on failover) then persists what was set at
    // run time, so a restarted node comes back with its role and announces.
    std::fs::write(host_dir.join("redis.conf"), "")?;
    let mut args: Vec<String> = vec![
        dir.join("redis.conf").display().to_string(),
        // DEBUG SLEEP, for the `debug_sleep` fault; local connections only.
        "--enable-debug-command".into(),
        "local".into(),
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
        Self::start_as(id, role, plan, Flavor::Node, &Launcher::Process).await
    }

    /// Starts a node of `flavor` with `launcher` and waits until it answers PING.
    pub async fn start_as(
        id: &str,
        role: Role,
        plan: &TopologyPlan,
        flavor: Flavor,
        launcher: &Launcher,
    ) -> Result<Self, TopologyError> {
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(id, role, plan, flavor, launcher).await {
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
        launcher: &Launcher,
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
        let server_dir = match launcher {
            Launcher::Process => dir.path().to_path_buf(),
            Launcher::Docker { .. } => PathBuf::from("/data"),
            Launcher::External => {
                return Err(TopologyError::Unsupported(format!(
                    "node {id}: the external backend starts no nodes"
                )))
            }
        };
        let args = server_args(port, bus, dir.path(), &server_dir, plan, flavor).map_err(|e| {
            TopologyError::Provision(format!("node {id}: cannot write its configuration: {e}"))
        })?;
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

    /// The process id (the container's main process on the docker backend).
    pub fn pid(&self) -> u32 {
        match &self.runner {
            Runner::Child(child) => lock(child).id(),
            Runner::Container(_) => 0,
        }
    }

    /// The container id, on the docker backend.
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// How a fault reaches a node.
#[derive(Clone)]
enum HandleKind {
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
    log: PathBuf,
    kind: HandleKind,
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

    fn unsupported(&self, what: &str) -> TopologyError {
        TopologyError::Unsupported(format!(
            "node {}: cannot {what} a node gameday does not run",
            self.id
        ))
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
                .map_err(|e| TopologyError::Provision(format!("node {}: kill: {e}", self.id))),
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
                .map_err(|e| TopologyError::Provision(format!("node {}: stop: {e}", self.id))),
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
            HandleKind::Container(c) => c.start().await.map_err(|e| {
                TopologyError::Provision(format!("node {}: start again: {e}", self.id))
            })?,
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
                    return Err(TopologyError::Provision(format!(
                        "node {}: signal {signal}: {}",
                        self.id,
                        std::io::Error::last_os_error()
                    )));
                }
                Ok(())
            }
            HandleKind::Container(c) => {
                let r = if pause {
                    c.pause().await
                } else {
                    c.unpause().await
                };
                r.map_err(|e| TopologyError::Provision(format!("node {}: pause: {e}", self.id)))
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
        let url = format!("redis://{}/", self.addr);
        let client =
            redis::Client::open(url).map_err(|e| TopologyError::Provision(e.to_string()))?;
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
                return Err(TopologyError::Provision(format!(
                    "node {} did not answer PING on {} within {}s; log:\n{}",
                    self.id,
                    self.addr,
                    READY_TIMEOUT.as_secs(),
                    log_tail(&self.log)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
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
    }
}

fn spawn_process(args: &[String]) -> Result<Child, TopologyError> {
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
    cmd.spawn().map_err(|e| {
        TopologyError::Provision(format!(
            "cannot start `{}`: {e} (install Redis, e.g. `apt-get install redis-server`, or set GAMEDAY_REDIS_SERVER)",
            bin.display()
        ))
    })
}

/// `name:tag` (the tag defaults to `latest`).
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

async fn start_container(
    id: &str,
    image: &str,
    run_id: &str,
    host_dir: &Path,
    args: Vec<String>,
) -> Result<ContainerAsync<GenericImage>, TopologyError> {
    let (name, tag) = split_image(image);
    let mut cmd = vec!["redis-server".to_string()];
    cmd.extend(args);
    GenericImage::new(name, tag)
        .with_cmd(cmd)
        .with_network("host")
        .with_label("gameday.run", run_id)
        .with_label("gameday.node", id)
        .with_label("gameday.pid", std::process::id().to_string())
        .with_mount(Mount::bind_mount(host_dir.display().to_string(), "/data"))
        .start()
        .await
        .map_err(|e| {
            TopologyError::Provision(format!(
                "node {id}: cannot start a container from `{image}`: {e} (is a Docker engine running, and is the image present or pullable? ci/docker.sh builds a local one; name it with GAMEDAY_REDIS_IMAGE)"
            ))
        })
}
