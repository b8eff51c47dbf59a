//! The docker backend's launch: the same `redis-server` command in a
//! container (testcontainers), with host networking so it listens on
//! 127.0.0.1, the node's directory bind-mounted at `/data`, and labels
//! naming the run, the node and the gameday process that owns it.

use super::plan::TopologyPlan;
use super::TopologyError;
use crate::vocab::owner::Owner;
use std::path::Path;
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The label naming the gameday process a container belongs to (see
/// `vocab::owner`); `gameday clean` removes containers whose owner is dead.
pub const OWNER_LABEL: &str = "gameday.owner";

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

/// `name:tag` (the tag defaults to `latest`).
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// Starts one node's container and waits until testcontainers has it.
pub(super) async fn start_container(
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
        .with_label(OWNER_LABEL, Owner::me().tag())
        .with_mount(Mount::bind_mount(host_dir.display().to_string(), "/data"))
        .start()
        .await
        .map_err(|source| TopologyError::Container {
            node: id.to_string(),
            image: image.to_string(),
            source: Box::new(source),
        })
}
