//! A lab: a topology with a proxy on every path, assembled and ready. A run
//! starts one before its load; `gameday up` starts one for exploring by
//! hand. Stopping it deletes its proxies (which matters on an external
//! Toxiproxy) and stops every process.

use crate::failover::FailoverCtx;
use crate::proxy::control::{ProxyControl, ProxyState};
use crate::proxy::server::loopback_addr;
use crate::proxy::EmbeddedProxy;
use crate::run::RunError;
use crate::scenario::plan::{ExternalEndpoint, Target, TopologyPlan};
use crate::scenario::raw::{Backend, TopologyKind};
use crate::topology::process::NodeHandle;
use crate::topology::{external, ClientSpec, Endpoint, Port, ProxyMap, Role, Topology};
use std::net::SocketAddr;
use tokio::sync::watch;

/// One endpoint with the proxy in front of it.
#[derive(Debug, Clone)]
pub struct Wired {
    pub endpoint: Endpoint,
    pub proxy: String,
    pub proxy_addr: SocketAddr,
    /// gameday created this proxy (and deletes it); false for the proxies
    /// of an external topology, which are only borrowed.
    pub owned: bool,
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
    pub backend: Backend,
    run_id: String,
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
        let toxiproxy_url = toxiproxy_url.or(plan.toxiproxy_url.as_deref());
        let borrows_proxies = backend == Backend::External
            && plan.external.endpoints.iter().any(|e| e.proxy.is_some());
        if backend == Backend::External && plan.external.endpoints.is_empty() {
            return Err(RunError::Unsupported(
                "the external backend needs the scenario to list the topology's endpoints ([[topology.endpoint]] with node, role and addr)".into(),
            ));
        }
        if borrows_proxies && toxiproxy_url.is_none() {
            return Err(RunError::Unsupported(
                "the endpoints name Toxiproxy proxies (`proxy = ...`): say where its API is with `toxiproxy_url` in [topology] or --toxiproxy-url".into(),
            ));
        }
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
            client: ClientSpec::Direct(SocketAddr::from(([127, 0, 0, 1], 0))),
            topology,
            _embedded: embedded,
            control,
            proxy_kind,
            proxy_version,
            wired: Vec::new(),
            backend,
            run_id: run_id.to_string(),
        };
        let wired = if backend == Backend::External {
            tokio::select! {
                r = lab.attach() => r,
                _ = shutdown.wait_for(|s| *s) => Err(RunError::Interrupted),
            }
        } else {
            lab.wire(run_id, &mut shutdown).await
        };
        if let Err(e) = wired {
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
                owned: true,
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

    /// Attaches to an external topology: borrows the proxies its endpoints
    /// name (which must be idle: enabled, no toxics) or puts gameday's own in
    /// front, then checks the topology through them (`external::verify`).
    async fn attach(&mut self) -> Result<(), RunError> {
        let plan = self.topology.plan.clone();
        for e in &plan.external.endpoints {
            let (proxy, proxy_addr, upstream, owned) = match &e.proxy {
                Some(name) => {
                    let n = name.clone();
                    let state = self.control.call(move |c| c.inspect(&n)).await?;
                    let upstream = borrowed_upstream(e, name, &state)?;
                    (name.clone(), e.addr, upstream, false)
                }
                None => {
                    let name = format!("gameday-{}-{}", self.run_id, e.node);
                    let (n, upstream) = (name.clone(), e.addr);
                    let at = self
                        .control
                        .call(move |c| c.create_proxy(&n, upstream))
                        .await?;
                    (name, at, e.addr, true)
                }
            };
            self.wired.push(Wired {
                endpoint: Endpoint {
                    name: e.node.clone(),
                    node: e.node.clone(),
                    role: e.role,
                    port: Port::Client,
                    addr: upstream,
                },
                proxy,
                proxy_addr,
                owned,
            });
        }
        // Clients, and the checks, go through the proxies.
        let mut through = plan.clone();
        for (e, w) in through.external.endpoints.iter_mut().zip(&self.wired) {
            e.addr = w.proxy_addr;
        }
        external::verify(&through).await?;
        let addrs = |role: Role| -> Vec<SocketAddr> {
            self.wired
                .iter()
                .filter(|w| w.endpoint.role == role)
                .map(|w| w.proxy_addr)
                .collect()
        };
        self.client = match plan.kind {
            TopologyKind::Standalone | TopologyKind::Replicated => {
                ClientSpec::Direct(addrs(Role::Primary)[0])
            }
            TopologyKind::Sentinel => ClientSpec::Sentinel {
                sentinels: addrs(Role::Sentinel),
                master: plan.master_name.clone(),
            },
            TopologyKind::Cluster => ClientSpec::Cluster {
                nodes: addrs(Role::Primary),
            },
        };
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
        self.proxies_of(target, false)
    }

    /// Every proxy in front of the nodes a target names, cluster bus
    /// proxies included: where a `partition` cuts.
    pub fn peer_targets(&self, target: &Target) -> Vec<String> {
        self.proxies_of(target, true)
    }

    fn proxies_of(&self, target: &Target, with_bus: bool) -> Vec<String> {
        self.wired
            .iter()
            .filter(|w| with_bus || w.endpoint.port == Port::Client)
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

    /// Every node and sentinel with the address telemetry asks: the real
    /// address of a node gameday runs (never faulted), the client address of
    /// an external one.
    pub fn telemetry_targets(&self) -> Vec<(String, SocketAddr)> {
        if self.backend == Backend::External {
            return self
                .wired
                .iter()
                .map(|w| (w.endpoint.node.clone(), w.proxy_addr))
                .collect();
        }
        self.topology
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.addr))
            .collect()
    }

    /// What a `failover` fault needs of this lab: sentinel and cluster
    /// topologies gameday runs only. Probe keys go under `prefix`.
    pub fn failover_ctx(&self, prefix: &str) -> Option<FailoverCtx> {
        let kind = self.topology.kind;
        if self.backend == Backend::External
            || !matches!(kind, TopologyKind::Sentinel | TopologyKind::Cluster)
        {
            return None;
        }
        let proxy_of = |id: &str| {
            self.wired
                .iter()
                .find(|w| w.endpoint.port == Port::Client && w.endpoint.node == id)
                .map(|w| w.proxy_addr)
        };
        Some(FailoverCtx {
            kind,
            master_name: self.topology.plan.master_name.clone(),
            sentinels: self
                .topology
                .with_role(Role::Sentinel)
                .map(|n| n.addr)
                .collect(),
            nodes: self
                .topology
                .nodes
                .iter()
                .filter(|n| n.role != Role::Sentinel)
                .filter_map(|n| Some((n.handle(), proxy_of(&n.id)?)))
                .collect(),
            client: self.client.clone(),
            prefix: prefix.to_string(),
        })
    }

    /// The sentinels gameday runs, with their own addresses.
    pub fn sentinels(&self) -> Vec<(String, SocketAddr)> {
        self.topology
            .with_role(Role::Sentinel)
            .map(|n| (n.id.clone(), n.addr))
            .collect()
    }

    /// Handles on the nodes a target names (sentinels only when named):
    /// the processes or containers gameday runs, or, on an external
    /// topology, the endpoints' addresses (commands only).
    pub fn target_nodes(&self, target: &Target) -> Vec<NodeHandle> {
        let wanted = |role: Role, node: &str| match target {
            Target::Primary => role == Role::Primary,
            Target::Replicas => role == Role::Replica,
            Target::Sentinels => role == Role::Sentinel,
            Target::All => role != Role::Sentinel,
            Target::Node(id) => id == node,
        };
        if self.backend == Backend::External {
            return self
                .wired
                .iter()
                .filter(|w| {
                    w.endpoint.port == Port::Client && wanted(w.endpoint.role, &w.endpoint.node)
                })
                .map(|w| NodeHandle::remote(&w.endpoint.node, w.proxy_addr))
                .collect();
        }
        self.topology
            .nodes
            .iter()
            .filter(|n| wanted(n.role, &n.id))
            .map(|n| n.handle())
            .collect()
    }

    /// On an external topology, deletes the keys this run wrote (under
    /// `gameday:<run id>:`); then deletes the proxies gameday created and
    /// stops every process it started.
    pub async fn stop(self) {
        if self.backend == Backend::External {
            let through: Vec<ExternalEndpoint> = self
                .wired
                .iter()
                .map(|w| ExternalEndpoint {
                    node: w.endpoint.node.clone(),
                    role: w.endpoint.role,
                    addr: w.proxy_addr,
                    proxy: None,
                })
                .collect();
            let prefix = format!("gameday:{}:", self.run_id);
            external::remove_keys(&through, &prefix).await;
        }
        for w in self.wired.iter().filter(|w| w.owned) {
            let name = w.proxy.clone();
            let _ = self.control.call(move |c| c.delete(&name)).await;
        }
        self.topology.stop().await;
    }
}

/// Checks a proxy an external endpoint names: it listens where the
/// endpoint says, forwards to a loopback address, and is idle (enabled, no
/// toxics), so that the baseline is clean and clearing faults at the end
/// removes nothing that was there before. Returns the upstream address.
fn borrowed_upstream(
    e: &ExternalEndpoint,
    name: &str,
    state: &ProxyState,
) -> Result<SocketAddr, RunError> {
    let fail =
        |what: String| RunError::Provision(format!("endpoint {}: proxy `{name}` {what}", e.node));
    let listen_port = state
        .listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok());
    if listen_port != Some(e.addr.port()) {
        return Err(fail(format!(
            "listens on {}, not on {} as the scenario says",
            state.listen, e.addr
        )));
    }
    let upstream = loopback_addr(&state.upstream, "upstream").map_err(|err| {
        fail(format!(
            "forwards to a place gameday will not send traffic to: {}",
            err.message
        ))
    })?;
    if !state.enabled {
        return Err(fail(
            "is disabled; enable it before the run (the baseline would be an outage)".into(),
        ));
    }
    if state.toxics > 0 {
        return Err(fail(format!(
            "already has {} toxic(s); remove them before the run (gameday clears a proxy's toxics when its faults end)",
            state.toxics
        )));
    }
    Ok(upstream)
}
