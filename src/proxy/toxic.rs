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

/// Which commands a command-aware toxic acts on: those named in `commands`
/// (any, when empty; case-insensitive) whose first key matches the glob
/// `keys` (any, when empty), and of those either one in `every` on each
/// connection or, when `every` is 0, each with `probability`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMatch {
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub keys: String,
    #[serde(default = "always")]
    pub probability: f64,
    #[serde(default)]
    pub every: u64,
}

fn always() -> f64 {
    1.0
}

/// Every command.
impl Default for CommandMatch {
    fn default() -> CommandMatch {
        CommandMatch {
            commands: Vec::new(),
            keys: String::new(),
            probability: 1.0,
            every: 0,
        }
    }
}

/// The errors `redis_error` can answer with: the codes Redis itself
/// replies with under those conditions.
pub const REDIS_ERRORS: &[&str] = &[
    "OOM",
    "LOADING",
    "READONLY",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
];

/// One toxic's behaviour and parameters, in Toxiproxy's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// gameday's extension, not in Toxiproxy: the matching commands are
    /// answered with the Redis error `error` (one of `REDIS_ERRORS`) instead
    /// of being run. The proxy reads the commands (RESP) of the client →
    /// server direction whatever `stream` says; replies keep their order.
    RedisError {
        error: String,
        #[serde(flatten)]
        matching: CommandMatch,
    },
    /// gameday's extension, not in Toxiproxy: the matching commands are
    /// held `latency` ms before they reach the server ("slow writes, fast
    /// reads"); the commands behind them on the same connection wait their
    /// turn, as on a real connection.
    SlowCommands {
        #[serde(default)]
        latency: u64,
        #[serde(flatten)]
        matching: CommandMatch,
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
            ToxicKind::RedisError { .. } => "redis_error",
            ToxicKind::SlowCommands { .. } => "slow_commands",
        }
    }

    /// What the attributes cannot mean, if anything: an error Redis does not
    /// answer with, a probability outside 0..1, a key glob that is no glob.
    pub fn check(&self) -> Result<(), String> {
        let matching = match self {
            ToxicKind::RedisError { error, matching } => {
                if !REDIS_ERRORS.contains(&error.as_str()) {
                    return Err(format!(
                        "unknown Redis error `{error}`: one of {}",
                        REDIS_ERRORS.join(", ")
                    ));
                }
                matching
            }
            ToxicKind::SlowCommands { matching, .. } => matching,
            _ => return Ok(()),
        };
        if !(0.0..=1.0).contains(&matching.probability) {
            return Err(format!(
                "probability {} is outside 0..1",
                matching.probability
            ));
        }
        glob::Pattern::new(&matching.keys)
            .map(|_| ())
            .map_err(|e| format!("`keys` is not a glob: {e}"))
    }

    /// Whether the toxic reads the commands, not the bytes.
    pub fn reads_commands(&self) -> bool {
        matches!(
            self,
            ToxicKind::RedisError { .. } | ToxicKind::SlowCommands { .. }
        )
    }
}

/// gameday's extension, not in Toxiproxy: which connections a toxic acts
/// on, by where they come from. Nodes and sentinels make their peer
/// connections (replication, monitoring, the cluster bus) from
/// `PEER_SOURCE`; every other connection is a client's. Left out of the
/// wire format when `all`, so a Toxiproxy client sees its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    #[default]
    All,
    Peers,
    Clients,
}

impl Path {
    pub fn is_all(&self) -> bool {
        *self == Path::All
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Path::All => "all",
            Path::Peers => "peers",
            Path::Clients => "clients",
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
    #[serde(default, skip_serializing_if = "Path::is_all")]
    pub path: Path,
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
    #[serde(default)]
    pub path: Path,
}

impl NewToxic {
    /// A request body read as Toxiproxy reads it: missing or null
    /// `attributes` are the type's zero values.
    pub fn from_json(mut body: serde_json::Value) -> Result<NewToxic, serde_json::Error> {
        if let Some(fields) = body.as_object_mut() {
            if fields
                .get("attributes")
                .is_none_or(serde_json::Value::is_null)
            {
                fields.insert("attributes".into(), serde_json::json!({}));
            }
        }
        serde_json::from_value(body)
    }

    pub fn into_toxic(self) -> Toxic {
        let stream = self.stream.unwrap_or_default();
        // An empty name (the Go client always sends one) is no name.
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{}_{}", self.kind.type_name(), stream.as_str()));
        Toxic {
            name,
            kind: self.kind,
            stream,
            toxicity: self.toxicity.unwrap_or(1.0),
            path: self.path,
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
            ToxicKind::RedisError {
                error: "OOM".into(),
                matching: CommandMatch {
                    commands: vec!["GET".into()],
                    keys: "user:*".into(),
                    probability: 0.25,
                    every: 0,
                },
            },
            ToxicKind::SlowCommands {
                latency: 20,
                matching: CommandMatch {
                    every: 3,
                    ..CommandMatch::default()
                },
            },
        ]
    }

    #[test]
    fn every_toxic_round_trips_through_json() {
        for (i, kind) in all_kinds().into_iter().enumerate() {
            let toxic = Toxic {
                name: format!("{}_downstream", kind.type_name()),
                kind: kind.clone(),
                stream: Stream::Downstream,
                toxicity: 0.5,
                path: [Path::All, Path::Peers, Path::Clients][i % 3],
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
            path: Path::All,
        };
        assert_eq!(
            serde_json::to_value(&toxic).unwrap(),
            json!({"name": "lat", "type": "latency", "stream": "upstream", "toxicity": 1.0,
                   "attributes": {"latency": 50, "jitter": 0}})
        );
        let peers = Toxic {
            path: Path::Peers,
            ..toxic
        };
        assert_eq!(serde_json::to_value(&peers).unwrap()["path"], "peers");
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
    fn command_toxics_take_their_attributes_flat() {
        let t: NewToxic = serde_json::from_value(json!({"type": "redis_error",
            "attributes": {"error": "READONLY", "commands": ["set"], "every": 2}}))
        .unwrap();
        let ToxicKind::RedisError { error, matching } = t.kind else {
            panic!("{:?}", t.kind)
        };
        assert_eq!(error, "READONLY");
        assert_eq!(matching.commands, ["set"]);
        assert_eq!((matching.every, matching.probability), (2, 1.0));
        assert!(matching.keys.is_empty());
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
    fn empty_names_and_missing_attributes_are_toxiproxy_defaults() {
        let t = NewToxic::from_json(json!({"name": "", "type": "timeout"}))
            .unwrap()
            .into_toxic();
        assert_eq!(t.name, "timeout_downstream");
        assert_eq!(t.kind, ToxicKind::Timeout { timeout: 0 });
        let t = NewToxic::from_json(
            json!({"type": "bandwidth", "attributes": null, "stream": "upstream"}),
        )
        .unwrap()
        .into_toxic();
        assert_eq!(
            (t.name.as_str(), &t.kind),
            ("bandwidth_upstream", &ToxicKind::Bandwidth { rate: 0 })
        );
    }

    #[test]
    fn unknown_toxic_type_is_refused() {
        let err = serde_json::from_value::<NewToxic>(json!({"type": "gremlin", "attributes": {}}));
        assert!(err.is_err());
    }
}
