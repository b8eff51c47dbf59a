//! One proxied connection: client ⇄ upstream, one task per direction, with
//! the proxy's current toxics applied to every chunk.
//!
//! A direction reads chunks as they arrive and stamps each with the time it
//! may be delivered (arrival + latency), so a latency toxic delays every
//! chunk by the same amount without serialising them: throughput under
//! latency stays what the upstream can do, as with Toxiproxy.

use super::commands::CommandReader;
use super::toxic::{Path, Stream, Toxic, ToxicKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

/// The toxics of a proxy, as every link sees them.
pub type ToxicSet = Arc<Vec<Toxic>>;

const CHUNK: usize = 32 * 1024;
const MAX_PENDING: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a link needs from its proxy.
pub struct LinkCtx {
    /// As the proxy's definition names it: resolved per connection, as
    /// Toxiproxy dials, and refused unless it is a loopback address.
    pub upstream: String,
    /// The proxy's name, for the log line of a refused upstream.
    pub proxy: String,
    /// Counts the connections closed because the upstream was no loopback
    /// address (or did not resolve).
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    pub toxics: watch::Receiver<ToxicSet>,
    /// Changes when the proxy is disabled or deleted: every link then closes.
    pub kill: watch::Receiver<u64>,
    pub seed: u64,
}

#[derive(Debug)]
enum Event {
    /// One direction saw end of stream and passed it on.
    Finished,
    /// Close the whole connection now.
    Close,
}

/// Whether each toxic applies to this connection, rolled once per toxic name
/// against its `toxicity`.
#[derive(Clone)]
struct Rolls {
    rolled: Arc<Mutex<HashMap<String, bool>>>,
    rng: Arc<Mutex<SmallRng>>,
    /// The client's address: a partition applies to some sources only.
    peer: Option<std::net::IpAddr>,
}

impl Rolls {
    fn applies(&self, toxic: &Toxic) -> bool {
        // The command toxics refuse or slow what clients ask; the nodes'
        // and sentinels' own connections (replication, monitoring) come
        // from PEER_SOURCE and are left alone.
        if toxic.kind.reads_commands()
            && self.peer == Some(std::net::IpAddr::V4(crate::vocab::topo::PEER_SOURCE))
        {
            return false;
        }
        let from_peer = self.peer == Some(std::net::IpAddr::V4(crate::vocab::topo::PEER_SOURCE));
        match toxic.path {
            Path::All => {}
            Path::Peers if from_peer => {}
            Path::Clients if !from_peer => {}
            Path::Peers | Path::Clients => return false,
        }
        if let ToxicKind::Partition { source } = toxic.kind {
            let from = std::net::IpAddr::V4(std::net::Ipv4Addr::from(source));
            if self.peer != Some(from) {
                return false;
            }
        }
        if toxic.toxicity >= 1.0 {
            return true;
        }
        let mut rolled = self.rolled.lock().expect("rolls lock");
        *rolled.entry(toxic.name.clone()).or_insert_with(|| {
            let roll: f32 = self.rng.lock().expect("rng lock").gen();
            roll < toxic.toxicity
        })
    }

    fn active(&self, set: &ToxicSet, stream: Option<Stream>) -> Vec<Toxic> {
        set.iter()
            .filter(|t| stream.is_none_or(|s| on_stream(t, s)) && self.applies(t))
            .cloned()
            .collect()
    }
}

/// Whether `toxic` acts on direction `s`: the toxics that read commands
/// act on the commands, client → server, whatever their `stream`.
fn on_stream(toxic: &Toxic, s: Stream) -> bool {
    if toxic.kind.reads_commands() {
        s == Stream::Upstream
    } else {
        toxic.stream == s
    }
}

/// Serves one accepted client until either side closes, a toxic closes it,
/// or the proxy is disabled.
// A hot pump: it runs per connection for the connection's life, and its
// select over both directions, the toxic set and the reset signal reads
// best as one loop; split, every step would pass the same six handles.
pub async fn run_link(client: TcpStream, mut ctx: LinkCtx) {
    let Some(upstream) = dial_target(&ctx).await else {
        ctx.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        // Upstream unreachable: dropping the client closes it, as Toxiproxy does.
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let client_fd = client.as_raw_fd();
    let peer = client.peer_addr().ok().map(|a| a.ip());
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let rolls = Rolls {
        rolled: Arc::default(),
        rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(ctx.seed))),
        peer,
    };
    let (events_tx, mut events) = mpsc::channel(4);
    let (reset_tx, reset_rx) = watch::channel(false);
    let mut up = tokio::spawn(direction(
        Ends {
            rd: client_rd,
            wr: server_wr,
            stream: Stream::Upstream,
        },
        ctx.toxics.clone(),
        rolls.clone(),
        events_tx.clone(),
        reset_rx.clone(),
        ctx.seed ^ 0x5eed,
    ));
    let mut down = tokio::spawn(direction(
        Ends {
            rd: server_rd,
            wr: client_wr,
            stream: Stream::Downstream,
        },
        ctx.toxics.clone(),
        rolls.clone(),
        events_tx,
        reset_rx,
        ctx.seed ^ 0xd0,
    ));

    let mut finished = 0;
    let mut reset_since: HashMap<String, Instant> = HashMap::new();
    let reset = loop {
        let reset_at = reset_deadline(&rolls, &ctx.toxics.borrow(), &mut reset_since);
        tokio::select! {
            _ = ctx.kill.changed() => break false,
            ev = events.recv() => match ev {
                Some(Event::Finished) => {
                    finished += 1;
                    if finished == 2 { break false; }
                }
                Some(Event::Close) | None => break false,
            },
            changed = ctx.toxics.changed() => if changed.is_err() { break false },
            _ = sleep_until(reset_at.unwrap_or_else(far_future)), if reset_at.is_some() => {
                // SO_LINGER 0 turns the close below into a TCP RST to the client.
                set_linger_zero(client_fd);
                break true;
            }
        }
    };
    if reset {
        // The directions forget their write halves (dropping one would send
        // a FIN first), so the last drop closes the socket with an RST.
        let _ = reset_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            let _ = (&mut up).await;
            let _ = (&mut down).await;
        })
        .await;
    }
    // Dropping both halves of each socket closes it.
    up.abort();
    down.abort();
    let _ = up.await;
    let _ = down.await;
}

/// The upstream's loopback address, resolved now; `None` (and a log line)
/// when it resolves to none: gameday sends traffic to loopback only.
async fn dial_target(ctx: &LinkCtx) -> Option<SocketAddr> {
    let resolved: Vec<SocketAddr> = match tokio::net::lookup_host(ctx.upstream.as_str()).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            log::error!(
                "proxy {}: upstream `{}` does not resolve ({e}): connection closed",
                ctx.proxy,
                ctx.upstream
            );
            return None;
        }
    };
    let found = resolved.iter().copied().find(|a| a.ip().is_loopback());
    if found.is_none() {
        log::error!(
            "proxy {}: upstream `{}` is not a loopback address: connection closed (gameday only proxies 127.0.0.1 / ::1)",
            ctx.proxy,
            ctx.upstream
        );
    }
    found
}

fn reset_deadline(
    rolls: &Rolls,
    set: &ToxicSet,
    since: &mut HashMap<String, Instant>,
) -> Option<Instant> {
    let active = rolls.active(set, None);
    since.retain(|name, _| active.iter().any(|t| &t.name == name));
    active
        .iter()
        .filter_map(|t| match t.kind {
            ToxicKind::ResetPeer { timeout } => {
                let start = *since.entry(t.name.clone()).or_insert_with(Instant::now);
                Some(start + Duration::from_millis(timeout))
            }
            _ => None,
        })
        .min()
}

fn set_linger_zero(fd: RawFd) {
    // SAFETY: the fd belongs to a socket whose halves are still alive (the
    // direction tasks are aborted only after this call).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&borrowed).set_linger(Some(Duration::ZERO));
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

struct Chunk {
    data: Vec<u8>,
    due: Instant,
}

/// Per-direction state of the toxics that count or time something.
#[derive(Default)]
struct Tally {
    since: HashMap<String, Instant>,
    passed: HashMap<String, u64>,
    /// When the bandwidth toxic's schedule lets the next byte go.
    paced: Option<Instant>,
}

/// A pause in a bandwidth-limited stream longer than this starts a new
/// schedule (a shorter one is the timer's lateness).
const BURST_GAP: Duration = Duration::from_millis(100);

/// The two sockets a direction copies between.
struct Ends {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    stream: Stream,
}

/// Copies one direction, applying the toxics in force to each chunk.
// A hot pump: every byte of the direction passes through this loop, which
// keeps its buffers, due times and toxic state in locals on purpose.
async fn direction(
    ends: Ends,
    mut toxics: watch::Receiver<ToxicSet>,
    rolls: Rolls,
    events: mpsc::Sender<Event>,
    mut reset: watch::Receiver<bool>,
    seed: u64,
) {
    let Ends {
        mut rd,
        mut wr,
        stream,
    } = ends;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pending: VecDeque<Chunk> = VecDeque::new();
    let mut tally = Tally::default();
    let mut eof = false;
    let mut buf = vec![0u8; CHUNK];
    let mut commands = (stream == Stream::Upstream).then(CommandReader::default);
    // Delayed chunks wait on a timerfd: tokio's timer ticks in whole
    // milliseconds, which would add up to a millisecond to every delay.
    let mut precise = tokio_timerfd::Delay::new(std::time::Instant::now()).ok();
    loop {
        let active = rolls.active(&toxics.borrow(), Some(stream));
        tally
            .since
            .retain(|n, _| active.iter().any(|t| &t.name == n));
        tally
            .passed
            .retain(|n, _| active.iter().any(|t| &t.name == n));
        for t in &active {
            tally
                .since
                .entry(t.name.clone())
                .or_insert_with(Instant::now);
        }
        let stall = active.iter().find_map(|t| match t.kind {
            ToxicKind::Timeout { timeout } => Some((t.name.clone(), timeout)),
            ToxicKind::Partition { .. } => Some((t.name.clone(), 0)),
            _ => None,
        });
        let close_at = stall
            .as_ref()
            .filter(|(_, ms)| *ms > 0)
            .map(|(name, ms)| tally.since[name] + Duration::from_millis(*ms));
        if eof && pending.is_empty() {
            finish(&mut wr, &active).await;
            let _ = events.send(Event::Finished).await;
            return;
        }
        if active.is_empty()
            && pending.is_empty()
            && !eof
            && commands.as_ref().is_none_or(CommandReader::nothing_carried)
        {
            let halves = (&mut rd, &mut wr);
            match pass_through(halves, &mut buf, commands.as_mut(), &mut toxics, &mut reset).await {
                Passed::Changed => continue,
                Passed::Eof => {
                    eof = true;
                    continue;
                }
                Passed::Reset => {
                    wr.forget();
                    return;
                }
                Passed::Failed => {
                    let _ = events.send(Event::Close).await;
                    return;
                }
                Passed::Gone => return,
            }
        }
        let next_due = pending.front().map(|c| c.due).filter(|_| stall.is_none());
        if next_due.is_some_and(|due| due <= Instant::now()) {
            // Already due: no trip through the timer, whose ticks are 1 ms.
            let chunk = pending.pop_front().expect("a due chunk");
            if !deliver(&mut wr, chunk.data, &active, &mut tally, &mut rng).await {
                let _ = events.send(Event::Close).await;
                return;
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = reset.changed() => {
                wr.forget();
                return;
            }
            changed = toxics.changed() => if changed.is_err() { return },
            _ = sleep_until(close_at.unwrap_or_else(far_future)), if close_at.is_some() => {
                let _ = events.send(Event::Close).await;
                return;
            }
            _ = until_due(&mut precise, next_due.unwrap_or_else(far_future)), if next_due.is_some() => {
                let chunk = pending.pop_front().expect("a due chunk");
                if !deliver(&mut wr, chunk.data, &active, &mut tally, &mut rng).await {
                    let _ = events.send(Event::Close).await;
                    return;
                }
            }
            read = rd.read(&mut buf), if !eof && pending.len() < MAX_PENDING => match read {
                Ok(0) => {
                    eof = true;
                    if let Some(rest) = commands.as_mut().and_then(CommandReader::rest) {
                        let due = Instant::now() + latency_of(&active, &mut rng);
                        pending.push_back(Chunk { data: rest, due });
                    }
                }
                Ok(n) => {
                    let due = Instant::now() + latency_of(&active, &mut rng);
                    match commands.as_mut() {
                        Some(reader) => {
                            for (data, held) in reader.read(&buf[..n], &active, &mut rng) {
                                pending.push_back(Chunk { data, due: due + held });
                            }
                        }
                        None => pending.push_back(Chunk { data: buf[..n].to_vec(), due }),
                    }
                }
                Err(_) => {
                    let _ = events.send(Event::Close).await;
                    return;
                }
            },
        }
    }
}

/// How the path with no toxics ended.
enum Passed {
    /// The toxics changed: back to the toxic pipeline, same connection.
    Changed,
    Eof,
    Reset,
    Failed,
    /// The proxy is gone.
    Gone,
}

/// The path with no toxic in force: each read is written on straight from
/// the buffer (no copy, no due time, no timer) until the toxics change.
// A hot pump: with no toxics, every byte of the direction passes here.
async fn pass_through(
    (rd, wr): (&mut OwnedReadHalf, &mut OwnedWriteHalf),
    buf: &mut [u8],
    mut commands: Option<&mut CommandReader>,
    toxics: &mut watch::Receiver<ToxicSet>,
    reset: &mut watch::Receiver<bool>,
) -> Passed {
    loop {
        tokio::select! {
            biased;
            _ = reset.changed() => return Passed::Reset,
            changed = toxics.changed() => {
                return if changed.is_ok() { Passed::Changed } else { Passed::Gone };
            }
            read = rd.read(buf) => match read {
                Ok(0) => return Passed::Eof,
                Ok(n) => {
                    if let Some(reader) = commands.as_deref_mut() {
                        reader.scan(&buf[..n]);
                    }
                    if wr.write_all(&buf[..n]).await.is_err() {
                        return Passed::Failed;
                    }
                }
                Err(_) => return Passed::Failed,
            },
        }
    }
}

/// Sleeps until `due` on the timerfd when there is one (to the
/// microsecond), else on tokio's timer.
async fn until_due(precise: &mut Option<tokio_timerfd::Delay>, due: Instant) {
    if let Some(delay) = precise {
        delay.reset(due.into_std());
        if delay.await.is_ok() {
            return;
        }
    }
    sleep_until(due).await;
}

fn latency_of(active: &[Toxic], rng: &mut SmallRng) -> Duration {
    let mut total_us: i64 = 0;
    for t in active {
        if let ToxicKind::Latency { latency, jitter } = t.kind {
            let jitter_us = (jitter * 1000) as i64;
            let offset = if jitter_us > 0 {
                rng.gen_range(-jitter_us..=jitter_us)
            } else {
                0
            };
            total_us += (latency * 1000) as i64 + offset;
        }
    }
    Duration::from_micros(total_us.max(0) as u64)
}

/// Writes one chunk through the shaping toxics. Returns false when the
/// connection must close (write failed or a data limit was reached).
async fn deliver(
    wr: &mut OwnedWriteHalf,
    mut data: Vec<u8>,
    active: &[Toxic],
    tally: &mut Tally,
    rng: &mut SmallRng,
) -> bool {
    let mut limit_hit = false;
    for t in active {
        if let ToxicKind::LimitData { bytes } = t.kind {
            let passed = tally.passed.entry(t.name.clone()).or_insert(0);
            let room = bytes.saturating_sub(*passed) as usize;
            if data.len() >= room {
                data.truncate(room);
                limit_hit = true;
            }
            *passed += data.len() as u64;
        }
    }
    let rate = active.iter().find_map(|t| match t.kind {
        ToxicKind::Bandwidth { rate } => Some(rate),
        _ => None,
    });
    let slicer = active.iter().find_map(|t| match t.kind {
        ToxicKind::Slicer {
            average_size,
            size_variation,
            delay,
        } => Some((average_size.max(1), size_variation, delay)),
        _ => None,
    });
    let mut offset = 0;
    while offset < data.len() {
        let mut piece = data.len() - offset;
        if let Some((avg, var, _)) = slicer {
            let var = var.min(avg - 1);
            piece = piece.min(rng.gen_range(avg - var..=avg + var) as usize);
        }
        if let Some(rate) = rate {
            // At most 100 ms worth of data per write, then wait out its cost.
            piece = piece.min((rate as usize * 100).max(1));
        }
        let started = Instant::now();
        if wr.write_all(&data[offset..offset + piece]).await.is_err() {
            return false;
        }
        offset += piece;
        if let Some(rate) = rate {
            // Paced against a schedule, not by a sleep after each write: the
            // write's own time and the timer's lateness count against the
            // piece's share, so the rate holds from 10 KB/s to 100 MB/s.
            let cost = Duration::from_secs_f64(piece as f64 / (rate.max(1) as f64 * 1000.0));
            let base = match tally.paced {
                // Still in the same burst: go on from the schedule.
                Some(due) if started.saturating_duration_since(due) < BURST_GAP => due,
                _ => started,
            };
            let due = base + cost;
            tally.paced = Some(due);
            sleep_until(due).await;
        }
        if let Some((_, _, delay_us)) = slicer {
            if offset < data.len() {
                sleep(Duration::from_micros(delay_us)).await;
            }
        }
    }
    !limit_hit
}

/// Passes end of stream on, after the slow_close delay if one applies.
async fn finish(wr: &mut OwnedWriteHalf, active: &[Toxic]) {
    for t in active {
        if let ToxicKind::SlowClose { delay } = t.kind {
            sleep(Duration::from_millis(delay)).await;
        }
    }
    let _ = wr.shutdown().await;
}
