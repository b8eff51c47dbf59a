//! What a node runs with: the redis-server binary and the arguments that
//! render a topology plan into one node's configuration (ports, directory,
//! memory, persistence, cluster or sentinel mode).

use super::plan::TopologyPlan;
use super::security::Security;
use crate::vocab::topo::Persistence;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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

/// The server's arguments. `host_dir` is the node's directory as gameday
/// sees it, `dir` as the server sees it (`/data` in a container).
pub(super) fn server_args(
    port: u16,
    bus: Option<u16>,
    (host_dir, dir): (&Path, &Path),
    plan: &TopologyPlan,
    security: &Security,
    flavor: Flavor,
) -> std::io::Result<Vec<String>> {
    let log = dir.join("redis.log").display().to_string();
    security.write_files(host_dir)?;
    if let Flavor::Sentinel { peer_source } = flavor {
        return sentinel_args(port, (host_dir, dir), &log, peer_source, security);
    }
    // The ACL user, if any, and otherwise an empty config file to start
    // with: `CONFIG REWRITE` (by the assembly, and by sentinels on
    // failover) then persists what was set at run time, so a restarted node
    // comes back with its role and announces. The file is the node's own
    // (mode 0600): a password never goes on a command line.
    write_private(&host_dir.join("redis.conf"), &security.acl_lines(false))?;
    let (port, dir_s) = (port.to_string(), dir.display().to_string());
    let mut args = vec![dir.join("redis.conf").display().to_string()];
    args.extend(port_args(&port, dir, security, flavor));
    args.extend(words(&[
        // DEBUG SLEEP, for the `debug_sleep` fault; local connections only.
        "--enable-debug-command",
        "local",
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir_s,
        "--logfile",
        &log,
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        // Start a replica's full sync at once instead of waiting 5 s for
        // more replicas to join it.
        "--repl-diskless-sync-delay",
        "0",
    ]));
    args.extend(words(match plan.persistence {
        Persistence::None => &["--save", "", "--appendonly", "no"],
        Persistence::Aof => &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        Persistence::Rdb => &["--save", "1 1", "--appendonly", "no"],
    }));
    if let Some(bytes) = plan.maxmemory {
        args.extend(words(&["--maxmemory", &bytes.to_string()]));
    }
    if let Some(policy) = plan.maxmemory_policy {
        args.extend(words(&["--maxmemory-policy", policy.as_str()]));
    }
    if let (Flavor::ClusterNode { node_timeout_ms }, Some(bus)) = (flavor, bus) {
        let nodes_conf = dir.join("nodes.conf").display().to_string();
        args.extend(words(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &nodes_conf,
            "--cluster-node-timeout",
            &node_timeout_ms.to_string(),
            "--cluster-port",
            &bus.to_string(),
        ]));
    }
    Ok(args)
}

/// The client port: plain, or with TLS the port speaks TLS only (and the
/// cluster bus too).
fn port_args(port: &str, dir: &Path, security: &Security, flavor: Flavor) -> Vec<String> {
    if security.files.is_none() {
        return words(&["--port", port]).collect();
    }
    let mut args: Vec<String> = words(&["--port", "0", "--tls-port", port]).collect();
    for (k, v) in security.tls_directives(dir) {
        args.extend([format!("--{k}"), v]);
    }
    if matches!(flavor, Flavor::ClusterNode { .. }) {
        args.extend(words(&["--tls-cluster", "yes"]));
    }
    args
}

/// Sentinel rewrites its configuration file, so it needs one of its own.
fn sentinel_args(
    port: u16,
    (host_dir, dir): (&Path, &Path),
    log: &str,
    peer_source: Option<Ipv4Addr>,
    security: &Security,
) -> std::io::Result<Vec<String>> {
    let source = peer_source
        .map(|s| format!("bind-source-addr {s}\n"))
        .unwrap_or_default();
    let ports = match security.files {
        Some(_) => format!("port 0\ntls-port {port}\n"),
        None => format!("port {port}\n"),
    };
    let tls: String = security
        .tls_directives(dir)
        .into_iter()
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect();
    write_private(
        &host_dir.join("sentinel.conf"),
        &format!(
            "{ports}bind 127.0.0.1\ndir {}\nlogfile {log}\ndaemonize no\n{source}{tls}{}",
            dir.display(),
            security.acl_lines(true)
        ),
    )?;
    Ok(vec![
        dir.join("sentinel.conf").display().to_string(),
        "--sentinel".into(),
    ])
}

fn words<'a>(list: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    list.iter().map(|w| w.to_string())
}

/// Writes a node's configuration or key, readable by its owner only.
pub(super) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
