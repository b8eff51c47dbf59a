//! The internals the integration tests drive directly (fixtures: nodes,
//! labs, the proxy's client, the conductor), behind the `testing` feature.
//! Not a stable interface.

pub use crate::conductor::{conduct, Scheduled, Stage};
pub use crate::fault::{Env, Fault, FaultKind, FaultPlan, FaultRecord, Target};
pub use crate::lab::Lab;
pub use crate::proxy::control::{NetFault, ProxyControl};
pub use crate::proxy::toxic::{Path, Stream, ToxicKind};
pub use crate::recorder::Recorder;
pub use crate::redis_admin::access::{access, Access, Secret};
pub use crate::topology::plan::TopologyPlan;
pub use crate::topology::process::{free_port, RedisProcess};
pub use crate::topology::security::{AuthPlan, SecurityPlan};
pub use crate::topology::Port;
pub use crate::vocab::outcome::{Counter, Outcome, Sample, Trace};
pub use crate::vocab::topo::{
    Backend, MaxmemoryPolicy, Persistence, Role, TopologyKind, PEER_SOURCE,
};
pub use crate::workload::conn::RedisConn;
pub use crate::workload::lock::GcPause;
