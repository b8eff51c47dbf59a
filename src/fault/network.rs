//! Network faults: `down` (the proxy disabled: connections refused, open
//! ones cut) and the Toxiproxy toxics `latency`, `bandwidth`, `timeout`,
//! `slow_close`, `reset_peer`, `slicer` and `limit_data`, on the client
//! paths of the targets. Every change goes through the proxy client, which
//! reads it back before it counts.

use super::FaultCtx;
use crate::proxy::control::{ControlError, NetFault, ProxyControl};
use crate::proxy::toxic::{Path, Stream, ToxicKind};
use crate::vocab::check::{check, fraction, invalid, positive_int, Checked};
use crate::vocab::units::Dur;
use serde::Deserialize;
use toml::Spanned;

/// Which direction a toxic acts on.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StreamName {
    Upstream,
    #[default]
    Downstream,
    Both,
}

/// The toxic parameters of a `[[fault]]`, named as Toxiproxy names its
/// attributes (durations written with units).
#[derive(Debug, Deserialize)]
pub struct Raw {
    stream: Option<StreamName>,
    toxicity: Option<Spanned<f64>>,
    latency: Option<Dur>,
    jitter: Option<Dur>,
    /// bandwidth, in KB/s as Toxiproxy counts it.
    rate: Option<Spanned<i64>>,
    timeout: Option<Dur>,
    delay: Option<Dur>,
    average_size: Option<Spanned<i64>>,
    size_variation: Option<Spanned<i64>>,
    bytes: Option<Spanned<i64>>,
    /// Which connections: all (default), the nodes' peer connections only
    /// (replication, monitoring, the cluster bus), or the clients' only.
    path: Option<Path>,
}

/// Why a fault cannot be kept to one path.
pub const PATH_NEEDS: &str = "cannot tell peer connections from clients' here: `path` needs nodes gameday runs on Redis 7.0 or later (bind-source-addr), behind gameday's own proxy";

/// The network fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    Down,
    Latency,
    Bandwidth,
    Timeout,
    SlowClose,
    ResetPeer,
    Slicer,
    LimitData,
}

impl NetKind {
    /// The keys of each kind: its toxic's attributes, `stream`,
    /// `toxicity` and `path` (a `down` takes none).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            NetKind::Down => &[],
            NetKind::Latency => &["latency", "jitter", "stream", "toxicity", "path"],
            NetKind::Bandwidth => &["rate", "stream", "toxicity", "path"],
            NetKind::Timeout | NetKind::ResetPeer => &["timeout", "stream", "toxicity", "path"],
            NetKind::SlowClose => &["delay", "stream", "toxicity", "path"],
            NetKind::Slicer => &[
                "average_size",
                "size_variation",
                "delay",
                "stream",
                "toxicity",
                "path",
            ],
            NetKind::LimitData => &["bytes", "stream", "toxicity", "path"],
        }
    }
}

impl Raw {
    /// The fault `ctx.kind` describes; each toxic needs its defining key.
    pub fn plan(self, ctx: &FaultCtx, net: NetKind) -> Checked<NetFault> {
        let ms = |d: Option<Dur>| d.map_or(0, |d| d.0.as_millis() as u64);
        let need = |present: bool, key: &str| {
            check(
                ctx.name,
                present,
                format!(
                    "fault `{}` of kind `{}` needs `{key}`",
                    ctx.name.get_ref(),
                    ctx.kind.as_str()
                ),
            )
        };
        let kind = match net {
            NetKind::Down => return Ok(NetFault::Down),
            NetKind::Latency => {
                need(self.latency.is_some(), "latency")?;
                ToxicKind::Latency {
                    latency: ms(self.latency),
                    jitter: ms(self.jitter),
                }
            }
            NetKind::Bandwidth => ToxicKind::Bandwidth {
                rate: required(&self.rate, "rate", ctx)?,
            },
            NetKind::Timeout => ToxicKind::Timeout {
                timeout: ms(self.timeout),
            },
            NetKind::ResetPeer => ToxicKind::ResetPeer {
                timeout: ms(self.timeout),
            },
            NetKind::SlowClose => {
                need(self.delay.is_some(), "delay")?;
                ToxicKind::SlowClose {
                    delay: ms(self.delay),
                }
            }
            NetKind::Slicer => self.slicer(ctx)?,
            NetKind::LimitData => ToxicKind::LimitData {
                bytes: required(&self.bytes, "bytes", ctx)?,
            },
        };
        Ok(NetFault::Toxic {
            kind,
            streams: match self.stream.unwrap_or_default() {
                StreamName::Upstream => vec![Stream::Upstream],
                StreamName::Downstream => vec![Stream::Downstream],
                StreamName::Both => vec![Stream::Upstream, Stream::Downstream],
            },
            toxicity: match &self.toxicity {
                Some(t) => fraction(t, "toxicity")? as f32,
                None => 1.0,
            },
            path: self.path.unwrap_or_default(),
        })
    }

    fn slicer(&self, ctx: &FaultCtx) -> Checked<ToxicKind> {
        let average_size = required(&self.average_size, "average_size", ctx)?;
        let size_variation = match &self.size_variation {
            Some(v) => {
                check(
                    v,
                    (0..average_size as i64).contains(v.get_ref()),
                    "`size_variation` must be at least 0 and below `average_size`",
                )?;
                *v.get_ref() as u64
            }
            None => 0,
        };
        Ok(ToxicKind::Slicer {
            average_size,
            size_variation,
            delay: self.delay.map_or(0, |d| d.0.as_micros() as u64),
        })
    }
}

/// A whole-number parameter the kind cannot do without.
fn required(v: &Option<Spanned<i64>>, key: &str, ctx: &FaultCtx) -> Checked<u64> {
    match v {
        Some(v) => positive_int(v, key),
        None => Err(invalid(
            ctx.name.span(),
            format!(
                "fault `{}` of kind `{}` needs `{key}`",
                ctx.name.get_ref(),
                ctx.kind.as_str()
            ),
        )),
    }
}

/// A network fault in force on some proxies.
pub struct Active {
    fault: NetFault,
    proxies: Vec<String>,
}

/// Puts `fault` on every proxy in front of the targets.
pub async fn apply(env: &super::Env, fault: &NetFault) -> Result<Active, ControlError> {
    switch_on(&env.control, &env.proxies, fault).await?;
    Ok(Active {
        fault: fault.clone(),
        proxies: env.proxies.clone(),
    })
}

impl Active {
    pub(super) fn new(fault: NetFault, proxies: Vec<String>) -> Active {
        Active { fault, proxies }
    }

    /// Takes the fault off every proxy it was put on. Each proxy's answer
    /// acknowledges it gone, so recovery can begin at once; `Unconfirmed`
    /// then reads every proxy back.
    pub async fn remove(self, env: &super::Env) -> Result<Unconfirmed, ControlError> {
        for name in &self.proxies {
            let (n, f) = (name.clone(), self.fault.clone());
            env.control.call(move |c| c.take_off(&n, &f)).await?;
        }
        Ok(Unconfirmed(self))
    }
}

/// A network fault taken off, not yet read back.
pub struct Unconfirmed(Active);

impl Unconfirmed {
    /// Checks that every proxy shows the fault gone.
    pub async fn confirm(self, env: &super::Env) -> Result<(), ControlError> {
        for name in &self.0.proxies {
            let (n, f) = (name.clone(), self.0.fault.clone());
            env.control.call(move |c| c.confirm_off(&n, &f)).await?;
        }
        Ok(())
    }
}

/// Puts `fault` on each proxy, one after the other.
pub(super) async fn switch_on(
    control: &ProxyControl,
    proxies: &[String],
    fault: &NetFault,
) -> Result<(), ControlError> {
    for name in proxies {
        let (n, f) = (name.clone(), fault.clone());
        control.call(move |c| c.apply(&n, &f)).await?;
    }
    Ok(())
}
