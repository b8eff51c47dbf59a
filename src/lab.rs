//! A lab: a topology with a proxy on every path, assembled and ready. A run
//! starts one before its load; `gameday up` starts one for exploring by
//! hand. Stopping it deletes its proxies (which matters on an external
//! Toxiproxy) and stops every process.

use crate::proxy::control::ProxyControl;
use crate::proxy::EmbeddedProxy;
use crate::run::RunError;
use crate::scenario::plan::{Target, TopologyPlan};
use crate::scenario::raw::Backend;
use crate::topology::{ClientSpec, Endpoint, Port, ProxyMap, Role, Topology};
use std::net::SocketAddr;
use tokio::sync::watch;

/// One endpoint with the proxy in front of it.
#[derive(Debug, Clone)]
pub struct Wired {
    pub endpoint: Endpoint,
    pub proxy: String,
    pub proxy_addr: SocketAddr,
}

pub struct Lab {
    pub topology: Topology,
    _embedded: Option<EmbeddedProxy>,
    pub control: ProxyControl,
    /// `embedded` or `external`.
    pub proxy_kind: &'static str,
    pub proxy_version: String,
    pub wired: Vec<Wired>,
    pub client: ClientSpec,
}

impl Lab {
    /// Provisions, wires and assembles; on any failure, releases what it
    /// had started. `run_id` prefixes the proxy names.
    pub async fn start(
        plan: &TopologyPlan,
        backend: Backend,
        toxiproxy_url: Option<&str>,
        run_id: &str,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Lab, RunError> {
        let topology = tokio::select! {
            t = Topology::provision(plan, backend, run_id) => t?,
            _ = shutdown.wait_for(|s| *s) => return Err(RunError::Interrupted),
        };
        let (embedded, control, proxy_kind) = match toxiproxy_url {
            Some(url) => (None, ProxyControl::connect_async(url).await?, "external"),
            None => {
                let e = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(|e| {
                        RunError::Provision(format!("cannot start the embedded proxy: {e}"))
                    })?;
                let c = ProxyControl::connect_async(&e.url()).await?;
                (Some(e), c, "embedded")
            }
        };
        let proxy_version = control.call(|c| c.version()).await?;
        let mut lab = Lab {
            client: ClientSpec::Direct(topology.primary().addr),
            topology,
            _embedded: embedded,
            control,
            proxy_kind,
            proxy_version,
            wired: Vec::new(),
        };
        if let Err(e) = lab.wire(run_id, &mut shutdown).await {
            lab.stop().await;
            return Err(e);
        }
        Ok(lab)
    }

    async fn wire(
        &mut self,
        run_id: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        for endpoint in self.topology.endpoints() {
            let name = format!("gameday-{run_id}-{}", endpoint.name);
            let (n, upstream) = (name.clone(), endpoint.addr);
            let proxy_addr = self
                .control
                .call(move |c| c.create_proxy(&n, upstream))
                .await?;
            self.wired.push(Wired {
                endpoint,
                proxy: name,
                proxy_addr,
            });
        }
        let map = self.proxy_map();
        tokio::select! {
            r = self.topology.assemble(&map) => r?,
            _ = shutdown.wait_for(|s| *s) => return Err(RunError::Interrupted),
        }
        self.client = self.topology.client_spec(&map);
        Ok(())
    }

    /// Where each endpoint's proxy listens.
    pub fn proxy_map(&self) -> ProxyMap {
        self.wired
            .iter()
            .map(|w| (w.endpoint.name.clone(), w.proxy_addr))
            .collect()
    }

    /// The client-path proxies a fault target names.
    pub fn targets(&self, target: &Target) -> Vec<String> {
        self.wired
            .iter()
            .filter(|w| w.endpoint.port == Port::Client)
            .filter(|w| match target {
                Target::Primary => w.endpoint.role == Role::Primary,
                Target::Replicas => w.endpoint.role == Role::Replica,
                Target::Sentinels => w.endpoint.role == Role::Sentinel,
                Target::All => w.endpoint.role != Role::Sentinel,
                Target::Node(id) => &w.endpoint.node == id,
            })
            .map(|w| w.proxy.clone())
            .collect()
    }

    /// Deletes the proxies and stops every process.
    pub async fn stop(self) {
        for w in &self.wired {
            let name = w.proxy.clone();
            let _ = self.control.call(move |c| c.delete(&name)).await;
        }
        self.topology.stop().await;
    }
}
