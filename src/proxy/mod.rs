//! The fault proxy: an embedded server speaking Toxiproxy 2.x's HTTP API
//! (`server` + `api`), the byte pump that applies toxics (`link`, which
//! reads the commands with `commands` for the toxics that act on them), and the
//! client side gameday drives it with (`control`), which works the same
//! against a real Toxiproxy.

pub mod api;
mod commands;
pub mod control;
pub mod link;
mod plane;
pub mod server;
pub mod toxic;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An embedded proxy server running on a loopback port; stops on drop,
/// closing every proxy and connection it holds.
pub struct EmbeddedProxy {
    pub addr: SocketAddr,
    pub server: Arc<server::ProxyServer>,
    task: JoinHandle<()>,
}

impl EmbeddedProxy {
    /// Starts the API on `listen` (which must be a loopback address; port 0
    /// picks a free one).
    pub async fn start(listen: SocketAddr) -> std::io::Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the proxy API must listen on a loopback address, not {listen}"),
            ));
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let server = server::ProxyServer::new();
        let app = api::router(server.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(EmbeddedProxy { addr, server, task })
    }

    /// The API's base URL, for `--toxiproxy-url`-style clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EmbeddedProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.server.clear();
    }
}

/// Creates the proxies a Toxiproxy config file lists (`-config` in
/// toxiproxy-server): a JSON array of `{name, listen, upstream, enabled}`.
/// Every address must be loopback, as for proxies made through the API.
pub async fn populate_from_file(
    proxy: &EmbeddedProxy,
    path: &Path,
) -> anyhow::Result<Vec<server::ProxyView>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the proxy config {}", path.display()))?;
    let list: Vec<server::NewProxy> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a Toxiproxy config (a JSON list of {{name, listen, upstream}})",
            path.display()
        )
    })?;
    proxy
        .server
        .populate(list)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))
}
