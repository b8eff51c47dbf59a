//! The team's service as gameday runs it: started after the lab is ready
//! with the proxied endpoints (and only those) in its environment, its
//! output in `app.log`, polled until healthy, and stopped at the end with
//! SIGTERM, then SIGKILL after a grace period. It runs in a process group
//! of its own, so its children stop with it, and the kernel kills it if
//! gameday dies (PR_SET_PDEATHSIG).

use crate::topology::{ClientSpec, ENDPOINT_VARS};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The command the scenario names, resolved before anything starts.
#[derive(Debug, Clone)]
pub struct CommandPlan {
    /// As written (`command = [...]`).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("target command `{program}` {problem}")]
    NotFound { program: String, problem: String },
    #[error("cannot start the target `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the target's log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the target exited ({status}) before it was healthy; {} ends with:\n{tail}", log.display())]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the target was not healthy within {}s: GET {url} {last}{}", timeout.as_secs_f64(), tail_of(log, tail))]
    Unhealthy {
        url: String,
        timeout: Duration,
        last: String,
        log: Option<PathBuf>,
        tail: String,
    },
    #[error("something already listens on {addr}, where the target is to listen: stop it, or leave out `command` to drive a service you run yourself")]
    PortTaken { addr: std::net::SocketAddr },
    #[error("interrupted while waiting for the target to be healthy")]
    Interrupted,
}

fn tail_of(log: &Option<PathBuf>, tail: &str) -> String {
    match log {
        Some(p) => format!("; {} ends with:\n{tail}", p.display()),
        None => String::new(),
    }
}

impl CommandPlan {
    /// Where the program is: a path with a `/` is taken relative to the
    /// current directory; a bare name is looked up in PATH.
    pub fn resolve(&self) -> Result<PathBuf, ServiceError> {
        let program = &self.argv[0];
        let not_found = |problem: &str| ServiceError::NotFound {
            program: program.clone(),
            problem: problem.into(),
        };
        let executable = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let p = PathBuf::from(program);
            if !p.exists() {
                let cwd = std::env::current_dir().unwrap_or_default();
                return Err(not_found(&format!(
                    "does not exist (relative paths are taken from the current directory, {}; for the shop, run `cargo build --release --examples` first)",
                    cwd.display()
                )));
            }
            if !executable(&p) {
                return Err(not_found("is not an executable file"));
            }
            return Ok(p);
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(program))
            .find(|p| executable(p))
            .ok_or_else(|| not_found("is not in PATH"))
    }
}

/// A running service.
pub struct Service {
    child: Child,
    log: PathBuf,
    grace: Duration,
}

/// The last lines of `path`.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Service {
    /// Starts `cmd` with the endpoints of `client`, its output to `log`.
    /// Call from a runtime worker thread: PR_SET_PDEATHSIG follows the
    /// thread that spawns.
    pub fn start(
        cmd: &CommandPlan,
        client: &ClientSpec,
        log: &Path,
        grace: Duration,
    ) -> Result<Service, ServiceError> {
        let program = cmd.resolve()?;
        let log_err = |source| ServiceError::Log {
            path: log.to_path_buf(),
            source,
        };
        let out = std::fs::File::create(log).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let mut c = Command::new(&program);
        c.args(&cmd.argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for var in ENDPOINT_VARS {
            c.env_remove(var);
        }
        c.envs(client.env());
        secure_env(&mut c, client, log)?;
        c.envs(cmd.env.iter().map(|(k, v)| (k, v)));
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // SIGKILL this child if the thread that spawned it dies.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c.spawn().map_err(|source| ServiceError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        Ok(Service {
            child,
            log: log.to_path_buf(),
            grace,
        })
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // The group the service leads: its children stop with it.
        // SAFETY: kill(2) with a negative pid signals the process group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), sig);
        }
    }

    /// SIGTERM, then SIGKILL once the grace period is over; returns once
    /// the service is gone.
    pub async fn stop(mut self) {
        if self.exited().is_none() {
            self.signal(libc::SIGTERM);
            let until = Instant::now() + self.grace;
            while self.exited().is_none() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kill_now();
    }

    fn kill_now(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    /// A service is never left running: whatever unwinds drops it.
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Polls `url` until it answers 200, for up to `timeout`; a started
/// service that exits meanwhile fails at once, with its log.
pub async fn wait_healthy(
    url: &str,
    timeout: Duration,
    mut service: Option<&mut Service>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a plain HTTP client");
    let until = Instant::now() + timeout;
    let mut last;
    loop {
        if let Some(s) = service.as_deref_mut() {
            if let Some(status) = s.exited() {
                return Err(ServiceError::Exited {
                    status,
                    tail: log_tail(&s.log),
                    log: s.log.clone(),
                });
            }
        }
        match http.get(url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = format!("failed: {e}"),
        }
        if Instant::now() >= until {
            let log = service.as_deref().map(|s| s.log.clone());
            let tail = log.as_deref().map(log_tail).unwrap_or_default();
            return Err(ServiceError::Unhealthy {
                url: url.to_string(),
                timeout,
                last,
                log,
                tail,
            });
        }
        if *shutdown.borrow() {
            return Err(ServiceError::Interrupted);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `tls` or `auth`, what the service needs besides the endpoints:
/// `REDIS_USERNAME` and `REDIS_PASSWORD` (only in its environment), and
/// `REDIS_CA_FILE`, the run's CA written beside app.log (a certificate is
/// public). TLS endpoints are `rediss://` in `REDIS_URL`.
fn secure_env(c: &mut Command, client: &ClientSpec, log: &Path) -> Result<(), ServiceError> {
    let access = crate::redis_admin::access::access(client.first_addr());
    if let Some((user, password)) = &access.user {
        c.env("REDIS_USERNAME", user);
        c.env("REDIS_PASSWORD", password.expose());
    }
    if let Some(ca) = &access.tls_ca {
        let path = log.with_file_name("redis-ca.crt");
        std::fs::write(&path, ca).map_err(|source| ServiceError::Log {
            path: path.clone(),
            source,
        })?;
        c.env("REDIS_CA_FILE", &path);
    }
    Ok(())
}
