//! What one op produced, in the names every report uses: its `Sample`s
//! (the caller-visible op and each Redis command it issued), how each ended
//! (`Outcome`, with every Redis error classified once into an `ErrorClass`)
//! and the workload events it counted (`Counter`). Workloads fill a `Trace`,
//! the recorder aggregates it, the reports name what it holds.

use serde::Serialize;

/// The op a rule without `.<op>` refers to, and under which every
/// caller-visible op is also recorded.
pub const CALLER_OP: &str = "caller";

/// The op name of a caller-visible op vs a Redis command: Redis commands are
/// recorded as `redis_<command>`.
pub fn is_redis_op(op: &str) -> bool {
    op.starts_with("redis_")
}

/// `http_<code>`, made once per code for the life of the process.
fn status_name(code: u16) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| (0..1000).map(|c| format!("http_{c}")).collect());
    &names[usize::from(code.min(999))]
}

/// Why an op failed, in the stable names reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Timeout,
    Refused,
    Reset,
    Oom,
    Readonly,
    Moved,
    Loading,
    Masterdown,
    Clusterdown,
    Tryagain,
    /// The simulated origin failed or was overloaded.
    Origin,
    /// No connection could be made (an HTTP target).
    Connect,
    /// An HTTP status the request does not expect, exactly (`http_503`).
    Http(u16),
    /// The family of unexpected statuses (`http_5xx`): the recorder files
    /// every `Http` error under its family too.
    HttpFamily(u8),
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Refused => "refused",
            ErrorClass::Reset => "reset",
            ErrorClass::Oom => "oom",
            ErrorClass::Readonly => "readonly",
            ErrorClass::Moved => "moved",
            ErrorClass::Loading => "loading",
            ErrorClass::Masterdown => "masterdown",
            ErrorClass::Clusterdown => "clusterdown",
            ErrorClass::Tryagain => "tryagain",
            ErrorClass::Origin => "origin",
            ErrorClass::Connect => "connect",
            ErrorClass::Http(code) => status_name(code),
            ErrorClass::HttpFamily(f) => match f {
                1 => "http_1xx",
                2 => "http_2xx",
                3 => "http_3xx",
                4 => "http_4xx",
                _ => "http_5xx",
            },
            ErrorClass::Other => "other",
        }
    }

    /// The family an exact class belongs to, if any.
    pub fn family(self) -> Option<ErrorClass> {
        match self {
            ErrorClass::Http(code) => Some(ErrorClass::HttpFamily((code / 100).clamp(1, 5) as u8)),
            _ => None,
        }
    }

    /// Classifies a redis-rs error once, for every report.
    pub fn of(err: &redis::RedisError) -> ErrorClass {
        if err.is_timeout() {
            return ErrorClass::Timeout;
        }
        if err.is_connection_refusal() {
            return ErrorClass::Refused;
        }
        match err.code() {
            Some("OOM") => return ErrorClass::Oom,
            Some("READONLY") => return ErrorClass::Readonly,
            Some("MOVED") | Some("ASK") => return ErrorClass::Moved,
            Some("LOADING") => return ErrorClass::Loading,
            Some("MASTERDOWN") => return ErrorClass::Masterdown,
            Some("CLUSTERDOWN") => return ErrorClass::Clusterdown,
            Some("TRYAGAIN") => return ErrorClass::Tryagain,
            _ => {}
        }
        if err.is_connection_dropped() || err.is_io_error() {
            return ErrorClass::Reset;
        }
        ErrorClass::Other
    }
}

/// How one op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Err(ErrorClass),
}

/// One op, timed in µs since `t0`.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub op: &'static str,
    pub intended_us: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub outcome: Outcome,
}

impl Sample {
    /// Latency as the caller saw it: from the intended start to the end.
    pub fn latency_us(&self) -> u64 {
        self.end_us.saturating_sub(self.intended_us).max(1)
    }
}

/// A workload event counted per phase and per second, by the stable name
/// reports give it. Each workload declares its own (`COUNTERS`); the two
/// below are counted by every workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counter(pub &'static str);

impl Counter {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// Ops whose error reached the caller.
pub const CALLER_ERRORS: Counter = Counter("caller_errors");
/// Failed Redis commands (timeouts, refused, reset, ...).
pub const REDIS_ERRORS: Counter = Counter("redis_errors");

/// What one op produced: its samples (the caller op and the Redis commands
/// it issued) and the counters it bumped.
#[derive(Debug, Default)]
pub struct Trace {
    pub samples: Vec<Sample>,
    pub counters: Vec<Counter>,
}

impl Trace {
    pub fn clear(&mut self) {
        self.samples.clear();
        self.counters.clear();
    }
}
