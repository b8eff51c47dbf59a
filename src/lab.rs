//! A lab: a topology with a proxy on every path, assembled and ready. A run
//! starts one before its load; `gameday up` starts one for exploring by
//! hand. Stopping it deletes its proxies (which matters on an external
//! Toxiproxy) and stops every process.

use crate::fault::failover::FailoverCtx;
use crate::fault::Target;
use crate::proxy::control::ControlError;
use crate::proxy::control::{ProxyControl, ProxyState, NAME_PREFIX};
use crate::proxy::server::{loopback_addr, ApiError};
use crate::proxy::EmbeddedProxy;
use crate::redis_admin::access::{grant, revoke};
use crate::topology::handle::NodeHandle;
use crate::topology::plan::{ExternalEndpoint, TopologyPlan};
use crate::topology::TopologyError;
use crate::topology::{external, ClientSpec, Endpoint, Port, ProxyMap, Topology};
use crate::vocab::topo::Role;
use crate::vocab::topo::{Backend, TopologyKind};
use std::net::SocketAddr;
use tokio::sync::watch;

/// Why a lab could not be made ready. Whatever had started is released
/// before this is returned.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the external backend needs the scenario to list the topology's endpoints ([[topology.endpoint]] with node, role and addr)")]
    NoEndpoints,
    #[error("the endpoints name Toxiproxy proxies (`proxy = ...`): say where its API is with `toxiproxy_url` in [topology] or --toxiproxy-url")]
    NoToxiproxyUrl,
    #[error("cannot provision the topology: cannot start the embedded proxy: {0}")]
    EmbeddedProxy(#[source] std::io::Error),
    #[error("cannot provision the topology: endpoint {node}: proxy `{proxy}` {problem}")]
    Borrowed {
        node: String,
        proxy: String,
        problem: BorrowProblem,
    },
    #[error("{}", describe(.0))]
    Topology(#[from] TopologyError),
    #[error("fault proxy: {0}")]
    Proxy(#[from] ControlError),
    #[error("interrupted before the load started; nothing was left running")]
    Interrupted,
}

impl LabError {
    /// The exit code: 2 for what the scenario or command line must change,
    /// 130 when interrupted, 3 when the infrastructure failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            LabError::NoEndpoints
            | LabError::NoToxiproxyUrl
            | LabError::Topology(TopologyError::NotRun { .. }) => 2,
            LabError::Interrupted => 130,
            _ => 3,
        }
    }
}

fn describe(e: &TopologyError) -> String {
    match e {
        TopologyError::NotRun { .. } => e.to_string(),
        other => format!("cannot provision the topology: {other}"),
    }
}

/// What is wrong with a proxy an external endpoint names.
#[derive(Debug, thiserror::Error)]
pub enum BorrowProblem {
    #[error("listens on {listen}, not on {want} as the scenario says")]
    ListensElsewhere { listen: String, want: SocketAddr },
    #[error("forwards to {upstream}, where gameday will not send traffic: {source}")]
    Upstream {
        upstream: String,
        #[source]
        source: ApiError,
    },
    #[error("is disabled; enable it before the run (the baseline would be an outage)")]
    Disabled,
    #[error("already has {0} toxic(s); remove them before the run (gameday clears a proxy's toxics when its faults end)")]
    HasToxics(usize),
}

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
        run_id: &str,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Lab, LabError> {
        sweep_orphans(plan.toxiproxy_url.as_deref()).await;
        let backend = plan.backend;
        let provision = Topology::provision(plan, backend, run_id);
        tokio::pin!(provision);
        let topology = tokio::select! {
            t = &mut provision => t?,
            _ = shutdown.wait_for(|s| *s) => {
                // Dropping the provisioning midway would leave a started
                // container's removal to a detached task that may not run
                // before gameday exits: the nodes come up, then go in order.
                if let Ok(t) = provision.await {
                    t.stop().await;
                }
                return Err(LabError::Interrupted);
            }
        };
        let toxiproxy_url = plan.toxiproxy_url.as_deref();
        let borrows_proxies = backend == Backend::External
            && plan.external.endpoints.iter().any(|e| e.proxy.is_some());
        if backend == Backend::External && plan.external.endpoints.is_empty() {
            return Err(LabError::NoEndpoints);
        }
        if borrows_proxies && toxiproxy_url.is_none() {
            return Err(LabError::NoToxiproxyUrl);
        }
        let (embedded, control, proxy_kind) = match toxiproxy_url {
            Some(url) => (None, ProxyControl::connect_async(url).await?, "external"),
            None => {
                let e = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(LabError::EmbeddedProxy)?;
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
                _ = shutdown.wait_for(|s| *s) => Err(LabError::Interrupted),
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
    ) -> Result<(), LabError> {
        for endpoint in self.topology.endpoints() {
            let name = proxy_name(run_id, &endpoint.name);
            let (n, upstream) = (name.clone(), endpoint.addr);
            let proxy_addr = self
                .control
                .call(move |c| c.create_proxy(&n, upstream))
                .await?;
            grant(proxy_addr, &self.topology.security.access);
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
            _ = shutdown.wait_for(|s| *s) => return Err(LabError::Interrupted),
        }
        self.client = self.topology.client_spec(&map);
        Ok(())
    }

    /// Attaches to an external topology: borrows the proxies its endpoints
    /// name (which must be idle: enabled, no toxics) or puts gameday's own in
    /// front, then checks the topology through them (`external::verify`).
    async fn attach(&mut self) -> Result<(), LabError> {
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
                    let name = proxy_name(&self.run_id, &e.node);
                    let (n, upstream) = (name.clone(), e.addr);
                    let at = self
                        .control
                        .call(move |c| c.create_proxy(&n, upstream))
                        .await?;
                    (name, at, e.addr, true)
                }
            };
            // Revoked by `stop`.
            grant(proxy_addr, &self.topology.security.access);
            grant(upstream, &self.topology.security.access);
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
        for w in &self.wired {
            revoke(w.proxy_addr);
            if self.backend == Backend::External {
                revoke(w.endpoint.addr);
            }
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
) -> Result<SocketAddr, LabError> {
    let fail = |problem: BorrowProblem| LabError::Borrowed {
        node: e.node.clone(),
        proxy: name.to_string(),
        problem,
    };
    let listen_port = state
        .listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok());
    if listen_port != Some(e.addr.port()) {
        return Err(fail(BorrowProblem::ListensElsewhere {
            listen: state.listen.clone(),
            want: e.addr,
        }));
    }
    let upstream = loopback_addr(&state.upstream, "upstream").map_err(|source| {
        fail(BorrowProblem::Upstream {
            upstream: state.upstream.clone(),
            source,
        })
    })?;
    if !state.enabled {
        return Err(fail(BorrowProblem::Disabled));
    }
    if state.toxics > 0 {
        return Err(fail(BorrowProblem::HasToxics(state.toxics)));
    }
    Ok(upstream)
}

impl Lab {
    /// The topology as summary.json records it.
    pub fn topology_summary(
        &self,
        kind: crate::vocab::topo::TopologyKind,
    ) -> crate::report::summary::TopologySummary {
        crate::report::summary::TopologySummary {
            kind: kind.as_str().into(),
            image: self.topology.image().map(String::from),
            nodes: self
                .wired
                .iter()
                .map(|w| crate::report::summary::NodeSummary {
                    id: w.endpoint.name.clone(),
                    role: w.endpoint.role.as_str().into(),
                    addr: w.endpoint.addr.to_string(),
                    proxy: w.proxy.clone(),
                    proxy_addr: w.proxy_addr.to_string(),
                })
                .collect(),
        }
    }

    /// The proxy as summary.json records it.
    pub fn proxy_summary(&self) -> crate::report::summary::ProxySummary {
        crate::report::summary::ProxySummary {
            kind: self.proxy_kind.into(),
            url: self.control.url().into(),
            version: self.proxy_version.clone(),
        }
    }
}

/// The name of gameday's proxy for `endpoint`: tagged with its owner, so
/// `gameday clean` can delete it from a borrowed Toxiproxy after a SIGKILL.
fn proxy_name(run_id: &str, endpoint: &str) -> String {
    crate::vocab::owner::tagged(NAME_PREFIX, &format!("{run_id}-{endpoint}"))
}

/// What dead gameday processes left behind goes before a lab starts
/// (`gameday clean`'s sweep); each removal is printed. A sweep that fails
/// is reported and does not stop the run.
async fn sweep_orphans(toxiproxy_url: Option<&str>) {
    match crate::clean::orphans(toxiproxy_url).await {
        Ok(done) => {
            for line in done {
                eprintln!("gameday: removed {line}, left by a dead gameday");
            }
        }
        Err(e) => eprintln!("gameday: could not clean up after dead gameday processes: {e}"),
    }
}
