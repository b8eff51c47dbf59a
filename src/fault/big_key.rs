//! `big_key`: one huge key on each target node, read whole while the fault
//! lasts, then deleted. A hash of `fields` fields (read with `HGETALL`) or
//! a string of `size` bytes (read with `GET`); each read runs in the
//! server's main thread, so every other command waits for it, which the
//! workload's latencies in the fault phase show. At the end the key goes
//! with `DEL` (freed in the main thread: one more stall, for a hash) or
//! `UNLINK` (freed in the background). The record keeps how many reads
//! ran, how long the server spent on each (a hash: from `INFO
//! commandstats`, which no workload's HGETALL shares; a string: the read
//! as gameday's admin connection timed it, transfer included), the
//! slowest as the client saw it, and how long the delete took.

use super::memory::{connect, err, slot_tag};
use super::{Env, FaultCtx, Notes};
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, Checked};
use crate::vocab::resp;
use crate::vocab::units::{Bytes, Dur};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The keys of `kind = "big_key"`.
pub const KEYS: &[&str] = &["fields", "size", "every", "delete"];

/// How the big key goes at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delete {
    Del,
    Unlink,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BigKey {
    /// A hash of this many fields, or
    pub fields: Option<u64>,
    /// a string of this many bytes.
    pub size: Option<u64>,
    /// The pause between two reads.
    pub every: Duration,
    pub delete: Delete,
}

#[derive(Debug, Deserialize)]
pub struct Raw {
    fields: Option<u64>,
    size: Option<Bytes>,
    every: Option<Dur>,
    delete: Option<Delete>,
}

impl Raw {
    pub fn plan(self, ctx: &FaultCtx) -> Checked<BigKey> {
        let name = ctx.name.get_ref();
        check(
            ctx.name,
            self.fields.is_some() != self.size.is_some(),
            format!("fault `{name}` of kind `big_key` needs `fields` (a hash) or `size` (a string), one of them"),
        )?;
        check(
            ctx.name,
            self.fields.is_none_or(|f| (1..=10_000_000).contains(&f)),
            format!("fault `{name}`: `fields` must be between 1 and 10000000"),
        )?;
        check(
            ctx.name,
            self.size.is_none_or(|s| s.0 >= 1024 && s.0 <= 512 << 20),
            format!("fault `{name}`: `size` must be between 1kb and 512mb (Redis's limit)"),
        )?;
        Ok(BigKey {
            fields: self.fields,
            size: self.size.map(|b| b.0),
            every: self.every.map_or(Duration::from_millis(500), |d| d.0),
            delete: self.delete.unwrap_or(Delete::Del),
        })
    }
}

/// What the big key did on one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BigKeyOutcome {
    pub node: String,
    pub reads: u64,
    /// The server's time per read (see the module docs).
    pub read_ms: f64,
    /// The slowest read, as gameday's admin connection timed it.
    pub slowest_read_ms: f64,
    pub delete_ms: f64,
}

/// The readers, one per node, until `remove`.
pub struct Active {
    stop: watch::Sender<bool>,
    readers: Vec<tokio::task::JoinHandle<Result<BigKeyOutcome, TopologyError>>>,
}

/// Fields per HSET, and bytes per APPEND, while building the key.
const BATCH: u64 = 1000;
const CHUNK: usize = 1 << 20;

pub async fn apply(env: &Env, b: &BigKey) -> Result<Active, TopologyError> {
    let (stop, rx) = watch::channel(false);
    let mut readers = Vec::new();
    for n in &env.nodes {
        let key = build(n, b, &env.prefix).await?;
        let (n, b, rx) = (n.clone(), b.clone(), rx.clone());
        readers.push(tokio::spawn(async move { read(n, key, b, rx).await }));
    }
    Ok(Active { stop, readers })
}

impl Active {
    pub async fn remove(self, notes: &Notes) -> Result<(), TopologyError> {
        let _ = self.stop.send(true);
        let mut outcomes = Vec::new();
        for r in self.readers {
            match r.await {
                Ok(o) => outcomes.push(o?),
                Err(_) => continue,
            }
        }
        notes.note(|r| r.big_keys = outcomes);
        Ok(())
    }
}

/// Makes the key, in batches between the load's commands; returns it.
async fn build(n: &NodeHandle, b: &BigKey, prefix: &str) -> Result<String, TopologyError> {
    let mut c = connect(n).await?;
    let tag = slot_tag(&mut c)
        .await
        .map(|t| format!("{{{t}}}"))
        .unwrap_or_default();
    let key = format!("{prefix}bigkey:{tag}");
    let e = |x| err(n, x);
    if let Some(fields) = b.fields {
        let mut i = 0;
        while i < fields {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for f in i..(i + BATCH).min(fields) {
                cmd.arg(f).arg("v");
            }
            cmd.query_async::<()>(&mut c).await.map_err(e)?;
            i += BATCH;
        }
    } else if let Some(size) = b.size {
        let chunk = vec![b'x'; CHUNK];
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            redis::cmd("APPEND")
                .arg(&key)
                .arg(&chunk[..n])
                .query_async::<()>(&mut c)
                .await
                .map_err(e)?;
            left -= n;
        }
    }
    Ok(key)
}

/// Reads the key whole every `every` until told to stop, then deletes it.
async fn read(
    n: NodeHandle,
    key: String,
    b: BigKey,
    mut stop: watch::Receiver<bool>,
) -> Result<BigKeyOutcome, TopologyError> {
    let mut c = connect(&n).await?;
    let mut o = BigKeyOutcome {
        node: n.id.clone(),
        ..BigKeyOutcome::default()
    };
    let cmd = if b.fields.is_some() { "HGETALL" } else { "GET" };
    let mut raw = Drain::open(&n).await?;
    let request = resp::command(&[cmd.as_bytes(), key.as_bytes()]);
    let before = server_usec(&mut c, cmd).await;
    let mut client_ms = 0.0;
    while !*stop.borrow() {
        let t = Instant::now();
        raw.call(&request).await.map_err(|x| err(&n, x))?;
        o.reads += 1;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        client_ms += ms;
        o.slowest_read_ms = o.slowest_read_ms.max(ms);
        tokio::select! {
            _ = tokio::time::sleep(b.every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    o.read_ms = match (before, server_usec(&mut c, cmd).await) {
        (Some(a), Some(z)) if b.fields.is_some() && o.reads > 0 => (z - a) / 1e3 / o.reads as f64,
        _ => client_ms / o.reads.max(1) as f64,
    };
    let t = Instant::now();
    let how = match b.delete {
        Delete::Del => "DEL",
        Delete::Unlink => "UNLINK",
    };
    redis::cmd(how)
        .arg(&key)
        .query_async::<()>(&mut c)
        .await
        .map_err(|x| err(&n, x))?;
    o.delete_ms = t.elapsed().as_secs_f64() * 1e3;
    Ok(o)
}

/// A plain connection that sends a command and passes over its reply's
/// bytes to the reply's end without building it: a client library's
/// parse of 400 000 elements (seconds, in a debug build) would otherwise
/// set the pace of the reads, not the server.
struct Drain {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Drain {
    async fn open(n: &NodeHandle) -> Result<Drain, TopologyError> {
        let sock = TcpStream::connect(n.addr)
            .await
            .map_err(|x| err(n, redis::RedisError::from(x)))?;
        Ok(Drain {
            sock,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Sends `request` and reads its whole reply; an error reply is an error.
    async fn call(&mut self, request: &[u8]) -> redis::RedisResult<()> {
        self.sock.write_all(request).await?;
        let mut frames = resp::Frames::default();
        let mut ends = Vec::new();
        let mut first = None;
        loop {
            let n = self.sock.read(&mut self.buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            first = first.or(Some(self.buf[0]));
            frames
                .feed(&self.buf[..n], &mut ends)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.0))?;
            if !ends.is_empty() {
                break;
            }
        }
        if first == Some(b'-') {
            let text = String::from_utf8_lossy(&self.buf[..ends[0].min(200)]).into_owned();
            return Err((
                redis::ErrorKind::Client,
                "the server answered with an error",
                text,
            )
                .into());
        }
        Ok(())
    }
}

/// The server's total µs spent in `cmd` so far (`INFO commandstats`; a
/// command never called has no line: 0).
async fn server_usec(c: &mut redis::aio::MultiplexedConnection, cmd: &str) -> Option<f64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .ok()?;
    let Some(line) =
        crate::redis_admin::info_field(&info, &format!("cmdstat_{}", cmd.to_lowercase()))
    else {
        return Some(0.0);
    };
    line.split(',')
        .find_map(|kv| kv.strip_prefix("usec="))
        .and_then(|v| v.parse().ok())
}
