//! Toxics in Toxiproxy 2.x's wire shape: one closed enum, tagged by `type`
//! with its parameters under `attributes`, so the same values travel through
//! the HTTP API, the scenario plan and the link that applies them.

use serde::{Deserialize, Serialize};

/// Which direction of a connection a toxic acts on. `upstream` is client →
/// server, `downstream` is server → client, as in Toxiproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Upstream,
    #[default]
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// One toxic's behaviour and parameters, in Toxiproxy's units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "attributes", rename_all = "snake_case")]
pub enum ToxicKind {
    /// Delay every chunk by `latency` ms ± `jitter` ms.
    Latency {
        #[serde(default)]
        latency: u64,
        #[serde(default)]
        jitter: u64,
    },
    /// Limit throughput to `rate` KB/s.
    Bandwidth {
        #[serde(default)]
        rate: u64,
    },
    /// Delay the close of the connection by `delay` ms.
    SlowClose {
        #[serde(default)]
        delay: u64,
    },
    /// Let no data through; close after `timeout` ms (0 = hold forever).
    Timeout {
        #[serde(default)]
        timeout: u64,
    },
    /// Reset the connection (TCP RST) after `timeout` ms.
    ResetPeer {
        #[serde(default)]
        timeout: u64,
    },
    /// Cut data into pieces of `average_size` ± `size_variation` bytes,
    /// `delay` µs apart.
    Slicer {
        #[serde(default)]
        average_size: u64,
        #[serde(default)]
        size_variation: u64,
        #[serde(default)]
        delay: u64,
    },
    /// Close the connection once `bytes` bytes have passed.
    LimitData {
        #[serde(default)]
        bytes: u64,
    },
    /// gameday's extension, not in Toxiproxy: hold all data (like `timeout`
    /// 0) of the connections that come from the IPv4 address `source` (as a
    /// number, since Toxiproxy's attributes are numbers: 127.0.0.2 is
    /// 2130706434), and only those. Nodes and sentinels make their peer
    /// connections from a source address of their own (`bind-source-addr`),
    /// so this cuts a node off from its peers while clients still reach it.
    Partition {
        #[serde(default)]
        source: u32,
    },
}

impl ToxicKind {
    /// The `type` string of the wire format.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
            ToxicKind::Partition { .. } => "partition",
        }
    }
}

/// A toxic as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(flatten)]
    pub kind: ToxicKind,
    pub stream: Stream,
    pub toxicity: f32,
}

/// The body of `POST /proxies/{name}/toxics`: name, stream and toxicity may
/// be left out, as Toxiproxy allows.
#[derive(Debug, Clone, Deserialize)]
pub struct NewToxic {
    pub name: Option<String>,
    #[serde(flatten)]
    pub kind: ToxicKind,
    pub stream: Option<Stream>,
    pub toxicity: Option<f32>,
}

impl NewToxic {
    pub fn into_toxic(self) -> Toxic {
        let stream = self.stream.unwrap_or_default();
        let name = self
            .name
            .unwrap_or_else(|| format!("{}_{}", self.kind.type_name(), stream.as_str()));
        Toxic {
            name,
            kind: self.kind,
            stream,
            toxicity: self.toxicity.unwrap_or(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all_kinds() -> Vec<ToxicKind> {
        vec![
            ToxicKind::Latency {
                latency: 50,
                jitter: 5,
            },
            ToxicKind::Bandwidth { rate: 100 },
            ToxicKind::SlowClose { delay: 200 },
            ToxicKind::Timeout { timeout: 0 },
            ToxicKind::ResetPeer { timeout: 10 },
            ToxicKind::Partition { source: 2130706434 },
            ToxicKind::Slicer {
                average_size: 64,
                size_variation: 8,
                delay: 10,
            },
            ToxicKind::LimitData { bytes: 2048 },
        ]
    }

    #[test]
    fn every_toxic_round_trips_through_json() {
        for kind in all_kinds() {
            let toxic = Toxic {
                name: format!("{}_downstream", kind.type_name()),
                kind: kind.clone(),
                stream: Stream::Downstream,
                toxicity: 0.5,
            };
            let text = serde_json::to_string(&toxic).unwrap();
            let back: Toxic = serde_json::from_str(&text).unwrap();
            assert_eq!(back, toxic, "{text}");
        }
    }

    #[test]
    fn wire_shape_matches_toxiproxy() {
        let toxic = Toxic {
            name: "lat".into(),
            kind: ToxicKind::Latency {
                latency: 50,
                jitter: 0,
            },
            stream: Stream::Upstream,
            toxicity: 1.0,
        };
        assert_eq!(
            serde_json::to_value(&toxic).unwrap(),
            json!({"name": "lat", "type": "latency", "stream": "upstream", "toxicity": 1.0,
                   "attributes": {"latency": 50, "jitter": 0}})
        );
        let slicer: Toxic = serde_json::from_value(json!({"name": "s", "type": "slicer",
            "stream": "downstream", "toxicity": 1,
            "attributes": {"average_size": 10, "size_variation": 2, "delay": 100}}))
        .unwrap();
        assert_eq!(
            slicer.kind,
            ToxicKind::Slicer {
                average_size: 10,
                size_variation: 2,
                delay: 100
            }
        );
    }

    #[test]
    fn new_toxic_fills_toxiproxy_defaults() {
        let new: NewToxic =
            serde_json::from_value(json!({"type": "bandwidth", "attributes": {"rate": 7}}))
                .unwrap();
        let toxic = new.into_toxic();
        assert_eq!(toxic.name, "bandwidth_downstream");
        assert_eq!(toxic.stream, Stream::Downstream);
        assert_eq!(toxic.toxicity, 1.0);
    }

    #[test]
    fn unknown_toxic_type_is_refused() {
        let err = serde_json::from_value::<NewToxic>(json!({"type": "gremlin", "attributes": {}}));
        assert!(err.is_err());
    }
}
