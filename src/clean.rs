//! `gameday clean`, and the sweep every `run` and `up` makes at start: undo
//! what gameday processes killed too hard to tidy up (SIGKILL, OOM, a lost
//! machine) left behind — containers, temporary directories, and toxics and
//! proxies on a borrowed Toxiproxy. Only things carrying the owner tag of a
//! process that no longer runs are touched (`vocab::owner`); the work of a
//! live gameday, and anything not named as gameday's, is left alone.

use crate::proxy::control::{ControlError, ProxyControl};
use crate::topology::process::TEMP_PREFIX;
use crate::topology::OWNER_LABEL;
use crate::vocab::owner::{owner_of, Owner};
use std::collections::HashMap;
use std::time::Duration;
use testcontainers::bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use testcontainers::bollard::Docker;

/// How long the sweep waits for a Docker engine before deciding there is
/// none (then there is nothing of it to clean).
const DOCKER_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("docker: {0}")]
    Docker(String),
    #[error(transparent)]
    Toxiproxy(#[from] ControlError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Removes every orphan of a dead gameday: containers, temporary
/// directories and, with `toxiproxy_url`, what it left on that Toxiproxy.
/// Returns a line for each thing removed.
pub async fn orphans(toxiproxy_url: Option<&str>) -> Result<Vec<String>, CleanError> {
    let mut done = containers().await?;
    done.extend(temp_dirs()?);
    if let Some(url) = toxiproxy_url {
        let control = ProxyControl::connect_async(url).await?;
        done.extend(control.call(|c| c.clean_orphans()).await?);
    }
    Ok(done)
}

/// Whether a container's labels name a dead owner. Containers of gameday
/// builds before the owner tag carry only `gameday.pid`: dead when no such
/// process runs.
fn dead_owner(labels: &HashMap<String, String>) -> bool {
    match labels.get(OWNER_LABEL).and_then(|t| Owner::parse(t)) {
        Some(owner) => !owner.is_alive(),
        None => labels
            .get("gameday.pid")
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()),
    }
}

/// Removes the containers of dead gameday processes (running or not).
async fn containers() -> Result<Vec<String>, CleanError> {
    let err = |e: testcontainers::bollard::errors::Error| CleanError::Docker(e.to_string());
    let Ok(docker) = Docker::connect_with_local_defaults() else {
        return Ok(Vec::new());
    };
    // No engine answering means no containers to clean.
    match tokio::time::timeout(DOCKER_WAIT, docker.ping()).await {
        Ok(Ok(_)) => {}
        _ => return Ok(Vec::new()),
    }
    let filters = HashMap::from([("label".to_string(), vec!["gameday.pid".to_string()])]);
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(err)?;
    let mut done = Vec::new();
    for c in listed {
        let labels = c.labels.unwrap_or_default();
        let Some(id) = c.id.filter(|_| dead_owner(&labels)) else {
            continue;
        };
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(&id, Some(remove)).await {
            Ok(()) => {}
            // Removed meanwhile (by another sweep): nothing left to do.
            Err(e) if e.to_string().contains("404") => continue,
            Err(e) => return Err(err(e)),
        }
        let node = labels.get("gameday.node").map_or("?", String::as_str);
        let run = labels.get("gameday.run").map_or("?", String::as_str);
        done.push(format!(
            "container {} (node {node} of run {run})",
            short(&id)
        ));
    }
    Ok(done)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Removes the nodes' temporary directories left by dead owners.
fn temp_dirs() -> Result<Vec<String>, CleanError> {
    let tmp = std::env::temp_dir();
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| CleanError::Io { path, source }
    };
    let mut done = Vec::new();
    for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = owner_of(TEMP_PREFIX, &name).is_some_and(|o| !o.is_alive());
        if !dead || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => done.push(format!("directory {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_owners_labels_count() {
        let me = Owner::me().tag();
        let live = HashMap::from([(OWNER_LABEL.to_string(), me)]);
        assert!(!dead_owner(&live));
        let gone = Owner {
            pid: u32::MAX - 1,
            ..Owner::me().clone()
        };
        let dead = HashMap::from([(OWNER_LABEL.to_string(), gone.tag())]);
        assert!(dead_owner(&dead));
        let old_live = HashMap::from([("gameday.pid".to_string(), std::process::id().to_string())]);
        assert!(!dead_owner(&old_live));
        assert!(!dead_owner(&HashMap::new()), "not gameday's: left alone");
    }

    #[test]
    fn a_dead_owners_directory_goes_and_a_live_ones_stays() {
        let gone = Owner {
            pid: u32::MAX - 1,
            ..Owner::me().clone()
        };
        let tmp = std::env::temp_dir();
        let dead = tmp.join(format!("{TEMP_PREFIX}-{}-redis-0-test", gone.tag()));
        let live = tmp.join(crate::vocab::owner::tagged(TEMP_PREFIX, "redis-0-test"));
        let foreign = tmp.join("gameday-not-a-tag-test");
        for d in [&dead, &live, &foreign] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("redis.log"), "x").unwrap();
        }
        let done = temp_dirs().unwrap();
        assert!(done.iter().any(|l| l.contains(&dead.display().to_string())));
        assert!(!dead.exists());
        assert!(live.exists() && foreign.exists());
        std::fs::remove_dir_all(&live).unwrap();
        std::fs::remove_dir_all(&foreign).unwrap();
    }
}
