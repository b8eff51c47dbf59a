//! Truthful faults: each fault, applied through the same client gameday
//! uses, does to a real redis-server connection what it says, within the
//! stated tolerance.

use gameday::testing::RedisProcess;
use gameday::testing::Role;
use gameday::testing::TopologyPlan;
use gameday::testing::{NetFault, ProxyControl};
use gameday::testing::{Path, Stream, ToxicKind};
use gameday::EmbeddedProxy;
use redis::aio::MultiplexedConnection;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct Rig {
    redis: RedisProcess,
    _proxy: EmbeddedProxy,
    control: ProxyControl,
    /// Where clients connect: the proxy in front of the server.
    pub(crate) addr: SocketAddr,
}

pub(crate) async fn rig() -> Rig {
    let redis = RedisProcess::start("faults", Role::Primary, &TopologyPlan::standalone())
        .await
        .unwrap();
    let proxy = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let control = ProxyControl::connect_async(&proxy.url()).await.unwrap();
    let upstream = redis.addr;
    let addr = control
        .call(move |c| c.create_proxy("p", upstream))
        .await
        .unwrap();
    Rig {
        redis,
        _proxy: proxy,
        control,
        addr,
    }
}

impl Rig {
    pub(crate) async fn apply(&self, fault: NetFault) {
        self.control
            .call(move |c| c.apply("p", &fault))
            .await
            .unwrap();
    }
    pub(crate) async fn clear(&self, fault: NetFault) {
        self.control
            .call(move |c| c.clear("p", &fault))
            .await
            .unwrap();
    }
}

fn toxic(kind: ToxicKind) -> NetFault {
    NetFault::Toxic {
        kind,
        streams: vec![Stream::Downstream],
        toxicity: 1.0,
        path: Default::default(),
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> redis::RedisResult<MultiplexedConnection> {
    // No client-side response timeout: the tests time things themselves.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(format!("redis://{addr}/"))?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn ping(conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    redis::cmd("PING").query_async(conn).await
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_toxic_delays_ping_by_50ms_within_5ms() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut conn = connect(rig.addr).await.unwrap();
    ping(&mut conn).await.unwrap();
    rig.apply(toxic(ToxicKind::Latency {
        latency: 50,
        jitter: 0,
    }))
    .await;
    let mut times = Vec::new();
    for _ in 0..11 {
        let start = Instant::now();
        ping(&mut conn).await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median >= Duration::from_millis(45) && median <= Duration::from_millis(55),
        "median PING {median:?}, expected 50ms ± 5ms (all: {times:?})"
    );
    rig.clear(toxic(ToxicKind::Latency {
        latency: 50,
        jitter: 0,
    }))
    .await;
    let start = Instant::now();
    ping(&mut conn).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(20),
        "latency gone after removal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn down_refuses_new_connections_and_cuts_open_ones() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut open = connect(rig.addr).await.unwrap();
    ping(&mut open).await.unwrap();
    rig.apply(NetFault::Down).await;
    assert!(ping(&mut open).await.is_err(), "an open connection is cut");
    let err = TcpStream::connect(rig.addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    rig.clear(NetFault::Down).await;
    let mut fresh = connect(rig.addr).await.unwrap();
    assert_eq!(ping(&mut fresh).await.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_toxic_stalls_and_then_closes() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut conn = connect(rig.addr).await.unwrap();
    ping(&mut conn).await.unwrap();
    rig.apply(toxic(ToxicKind::Timeout { timeout: 0 })).await;
    let stalled = tokio::time::timeout(Duration::from_millis(500), ping(&mut conn)).await;
    assert!(stalled.is_err(), "timeout=0 holds every reply: {stalled:?}");
    rig.clear(toxic(ToxicKind::Timeout { timeout: 0 })).await;

    // With a timeout, the connection is closed after it.
    rig.apply(toxic(ToxicKind::Timeout { timeout: 200 })).await;
    let mut raw = TcpStream::connect(rig.addr).await.unwrap();
    raw.write_all(b"PING\r\n").await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut buf))
        .await
        .expect("closed in time");
    let waited = start.elapsed();
    assert!(matches!(n, Ok(0) | Err(_)), "no data, then closed: {n:?}");
    assert!(
        waited >= Duration::from_millis(180) && waited <= Duration::from_millis(400),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_peer_resets_the_connection() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut raw = TcpStream::connect(rig.addr).await.unwrap();
    raw.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = raw.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    rig.apply(toxic(ToxicKind::ResetPeer { timeout: 0 })).await;
    let result = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut buf))
        .await
        .expect("reset in time");
    let err = result.expect_err("a reset, not data or a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread")]
async fn bandwidth_limits_throughput_within_20_percent() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let size = 400_000usize;
    let mut direct = connect(rig.redis.addr).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(vec![b'x'; size])
        .query_async(&mut direct)
        .await
        .unwrap();
    let mut conn = connect(rig.addr).await.unwrap();
    rig.apply(toxic(ToxicKind::Bandwidth { rate: 200 })).await;
    let start = Instant::now();
    let value: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query_async(&mut conn)
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(value.len(), size);
    let kb_per_s = size as f64 / 1000.0 / secs;
    assert!(
        (160.0..=240.0).contains(&kb_per_s),
        "measured {kb_per_s:.0} KB/s for a 200 KB/s limit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slicer_limit_data_and_slow_close_do_what_they_say() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut direct = connect(rig.redis.addr).await.unwrap();
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(payload.clone())
        .query_async(&mut direct)
        .await
        .unwrap();

    // slicer: ~100 pieces of 100 bytes, 1 ms apart; the bytes arrive intact.
    let mut conn = connect(rig.addr).await.unwrap();
    let slicer = toxic(ToxicKind::Slicer {
        average_size: 100,
        size_variation: 10,
        delay: 1000,
    });
    rig.apply(slicer.clone()).await;
    let start = Instant::now();
    let got: Vec<u8> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, payload);
    assert!(
        start.elapsed() >= Duration::from_millis(80),
        "sliced with delays: {:?}",
        start.elapsed()
    );
    rig.clear(slicer).await;

    // limit_data: the connection closes after 100 bytes.
    let limit = toxic(ToxicKind::LimitData { bytes: 100 });
    rig.apply(limit.clone()).await;
    let mut raw = TcpStream::connect(rig.addr).await.unwrap();
    raw.write_all(b"GET k\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut got))
        .await
        .expect("closed");
    assert_eq!(got.len(), 100, "exactly the limit passes");
    rig.clear(limit).await;

    // slow_close: the close reaches the client 300 ms after Redis closed.
    rig.apply(toxic(ToxicKind::SlowClose { delay: 300 })).await;
    let mut raw = TcpStream::connect(rig.addr).await.unwrap();
    raw.write_all(b"QUIT\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = raw.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    let start = Instant::now();
    let n = raw.read(&mut buf).await.unwrap();
    assert_eq!(n, 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited <= Duration::from_millis(450),
        "close delayed {waited:?}"
    );
}

/// A raw PING from a chosen source address through the proxy; `None` when
/// no answer came within 300 ms.
async fn ping_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> Option<Duration> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 7];
    match tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => {
            assert_eq!(&buf, b"+PONG\r\n");
            Some(start.elapsed())
        }
        _ => None,
    }
}

/// A latency toxic kept to one path delays that path's connections only:
/// `peers` those from PEER_SOURCE (replication, monitoring), `clients` the
/// rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_toxic_on_one_path_leaves_the_other_alone() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let peer = gameday::testing::PEER_SOURCE;
    let client = std::net::Ipv4Addr::LOCALHOST;
    for (path, slowed, spared) in [(Path::Peers, peer, client), (Path::Clients, client, peer)] {
        let fault = NetFault::Toxic {
            kind: ToxicKind::Latency {
                latency: 150,
                jitter: 0,
            },
            streams: vec![Stream::Downstream],
            toxicity: 1.0,
            path,
        };
        rig.apply(fault.clone()).await;
        let slow = ping_from(slowed, rig.addr).await.expect("answered");
        let fast = ping_from(spared, rig.addr).await.expect("answered");
        assert!(slow >= Duration::from_millis(150), "{path:?}: {slow:?}");
        assert!(fast < Duration::from_millis(100), "{path:?}: {fast:?}");
        rig.clear(fault).await;
    }
    drop(rig.redis);
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_holds_peer_connections_only_and_releases_them_on_heal() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let peer = gameday::testing::PEER_SOURCE;
    let client = std::net::Ipv4Addr::LOCALHOST;
    let fault = NetFault::Toxic {
        kind: ToxicKind::Partition {
            source: u32::from(peer),
        },
        streams: vec![Stream::Upstream, Stream::Downstream],
        toxicity: 1.0,
        path: Default::default(),
    };
    assert!(ping_from(peer, rig.addr).await.is_some());
    rig.apply(fault.clone()).await;
    assert!(
        ping_from(client, rig.addr).await.is_some(),
        "clients still pass"
    );
    assert!(ping_from(peer, rig.addr).await.is_none(), "peers are held");
    // A peer connection opened during the partition is held, not dropped:
    // its PING is answered once the partition heals.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((peer, 0))).unwrap();
    let mut held = socket.connect(rig.addr).await.unwrap();
    held.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 7];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), held.read_exact(&mut buf))
            .await
            .is_err(),
        "held during the partition"
    );
    rig.clear(fault).await;
    tokio::time::timeout(Duration::from_secs(2), held.read_exact(&mut buf))
        .await
        .expect("released on heal")
        .unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    drop(rig.redis);
}
