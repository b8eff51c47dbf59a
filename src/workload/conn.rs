//! One virtual user's Redis connection: connects lazily (directly, through
//! Sentinel, or to a Cluster), reconnects after a dropped connection, bounds
//! every command by the op timeout (connecting included) and records each
//! command as a `redis_<command>` sample.

use crate::redis_admin::access::access;
use crate::topology::ClientSpec;
use crate::vocab::outcome::{ErrorClass, Outcome, Sample, Trace};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Where connections come from.
enum Source {
    Direct(Box<redis::Client>),
    /// Each user asks the sentinels itself, as each application instance would.
    Sentinel(Box<SentinelClient>),
    Cluster(Box<ClusterClient>),
}

enum Live {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A jittered exponential reconnect backoff ("full jitter"): after a
/// dropped connection the next connect waits a random time below `base`,
/// after each failed connect below twice the last bound, up to `max`; an
/// op waits for it within its timeout. Without one, every client reconnects
/// at once: the herd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

/// Where a client with a backoff is in it.
struct Retry {
    backoff: Backoff,
    failures: u32,
    /// No connect before this, µs since t0.
    next_us: u64,
    rng: rand::rngs::SmallRng,
}

impl Retry {
    /// Waits a random share of the current bound from now on.
    fn defer(&mut self, now_us: u64) {
        use rand::Rng;
        let bound = self
            .backoff
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.backoff.max);
        let wait = self.rng.gen_range(0..=bound.as_micros() as u64);
        self.next_us = now_us + wait;
    }
}

pub struct RedisConn {
    source: Source,
    conn: Option<Live>,
    retry: Option<Retry>,
    /// The breaker epoch when this connection was made.
    epoch: u64,
    timeout: Duration,
    t0: Instant,
}

/// TCP_NODELAY on every connection: redis-rs leaves Nagle on by default,
/// and on a multiplexed connection a command written while an earlier one
/// is unacknowledged then waits for the peer's delayed ACK (about 40 ms),
/// a latency the harness would report as Redis's. (CI: a docker cluster's
/// GET p50 was 44 ms, 0.6 ms on a quiet run.)
fn nodelay() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// `addr` as connection info with `nodelay`, reached as its run says
/// (`redis_admin::access`: TLS, an ACL user).
fn info(addr: SocketAddr) -> redis::ConnectionInfo {
    access(addr).info(addr).set_tcp_settings(nodelay())
}

/// A client of the node at `addr`, reached as its run says (a pub/sub
/// subscriber's, say).
pub(crate) fn client_for(addr: SocketAddr) -> redis::Client {
    direct(addr)
}

fn direct(addr: SocketAddr) -> redis::Client {
    access(addr)
        .client(info(addr))
        .expect("a socket address makes a valid Redis URL")
}

/// A Sentinel client: the sentinels and the nodes they name are reached
/// the same way (TLS, the ACL user), as the run's access says.
fn sentinel(sentinels: &[SocketAddr], master: &str) -> SentinelClient {
    let access = access(sentinels[0]);
    let addrs = sentinels.iter().map(|a| access.addr(*a));
    let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
        .expect("sentinel addresses make a client")
        .set_client_to_redis_tcp_settings(nodelay())
        .set_client_to_sentinel_tcp_settings(nodelay());
    if let Some((user, password)) = &access.user {
        b = b
            .set_client_to_redis_username(user)
            .set_client_to_redis_password(password.expose())
            .set_client_to_sentinel_username(user)
            .set_client_to_sentinel_password(password.expose());
    }
    if let Some(certs) = access.certs() {
        b = b
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_certificates(certs.clone())
            .set_client_to_sentinel_certificates(certs);
    }
    b.build().expect("sentinel addresses make valid URLs")
}

fn cluster(nodes: &[SocketAddr], timeout: Duration) -> ClusterClient {
    let access = access(nodes[0]);
    let mut b = ClusterClient::builder(nodes.iter().map(|a| info(*a)))
        .tcp_settings(nodelay())
        .connection_timeout(timeout);
    if let Some((user, password)) = &access.user {
        b = b.username(user).password(password.expose());
    }
    if let Some(certs) = access.certs() {
        b = b.certs(certs);
    }
    b.build().expect("cluster node addresses make valid URLs")
}

impl RedisConn {
    pub fn new(spec: &ClientSpec, timeout: Duration, t0: Instant) -> Self {
        let source = match spec {
            ClientSpec::Direct(addr) => Source::Direct(Box::new(direct(*addr))),
            ClientSpec::Sentinel { sentinels, master } => {
                Source::Sentinel(Box::new(sentinel(sentinels, master)))
            }
            ClientSpec::Cluster { nodes } => Source::Cluster(Box::new(cluster(nodes, timeout))),
        };
        RedisConn {
            source,
            conn: None,
            retry: None,
            epoch: 0,
            timeout,
            t0,
        }
    }

    /// Reconnects with `backoff` (seeded by `seed`) instead of at once.
    pub fn with_backoff(mut self, backoff: Option<Backoff>, seed: u64) -> Self {
        use rand::SeedableRng;
        self.retry = backoff.map(|backoff| Retry {
            backoff,
            failures: 0,
            next_us: 0,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        });
        self
    }

    /// Connects if there is no connection, after the backoff's wait.
    async fn ensure(&mut self) -> RedisResult<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(r) = &self.retry {
            let wait = r.next_us.saturating_sub(self.now_us());
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
        }
        match self.open().await {
            Ok(live) => {
                self.conn = Some(live);
                if let Some(r) = &mut self.retry {
                    r.failures = 0;
                }
                Ok(())
            }
            Err(e) => {
                let now = self.now_us();
                if let Some(r) = &mut self.retry {
                    r.failures += 1;
                    r.defer(now);
                }
                Err(e)
            }
        }
    }

    /// The connection is gone: with a backoff, the next connect waits.
    fn drop_conn(&mut self) {
        self.conn = None;
        let now = self.now_us();
        if let Some(r) = &mut self.retry {
            r.defer(now);
        }
    }

    /// Drops a connection made before breaker epoch `epoch`: after the
    /// breaker opened, pooled connections are presumed dead, as a pool that
    /// is invalidated on a circuit opening would treat them.
    pub fn invalidate_before(&mut self, epoch: u64) {
        if self.epoch < epoch {
            self.conn = None;
            self.epoch = epoch;
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    async fn open(&mut self) -> RedisResult<Live> {
        // The op timeout around every call is the only response timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        Ok(match &mut self.source {
            Source::Direct(client) => Live::Single(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Source::Sentinel(client) => {
                Live::Single(client.get_async_connection_with_config(&config).await?)
            }
            Source::Cluster(client) => Live::Cluster(client.get_async_connection().await?),
        })
    }

    async fn run<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        self.ensure().await?;
        match self.conn.as_mut().expect("connected above") {
            Live::Single(c) => cmd.query_async(c).await,
            Live::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn run_pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> RedisResult<T> {
        self.ensure().await?;
        match self.conn.as_mut().expect("connected above") {
            Live::Single(c) => pipe.query_async(c).await,
            Live::Cluster(c) => pipe.query_async(c).await,
        }
    }

    /// Runs `pipe` (a MULTI/EXEC when atomic) as one command: within the op
    /// timeout, recorded as `op` in `trace`.
    pub async fn query_pipe<T: FromRedisValue>(
        &mut self,
        op: &'static str,
        pipe: &redis::Pipeline,
        trace: &mut Trace,
    ) -> Result<T, ErrorClass> {
        let start_us = self.now_us();
        let result = tokio::time::timeout(self.timeout, self.run_pipe::<T>(pipe)).await;
        self.settle(op, start_us, result, trace)
    }

    /// Runs `cmd` within the op timeout and records it as `op` in `trace`.
    pub async fn query<T: FromRedisValue>(
        &mut self,
        op: &'static str,
        cmd: &redis::Cmd,
        trace: &mut Trace,
    ) -> Result<T, ErrorClass> {
        let start_us = self.now_us();
        let result = tokio::time::timeout(self.timeout, self.run::<T>(cmd)).await;
        self.settle(op, start_us, result, trace)
    }

    /// Classifies the outcome of one command (dropping a connection that
    /// cannot be trusted any more) and records its sample.
    fn settle<T>(
        &mut self,
        op: &'static str,
        start_us: u64,
        result: Result<RedisResult<T>, tokio::time::error::Elapsed>,
        trace: &mut Trace,
    ) -> Result<T, ErrorClass> {
        let result = match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let class = ErrorClass::of(&e);
                if e.is_unrecoverable_error()
                    || e.is_io_error()
                    || matches!(
                        class,
                        ErrorClass::Refused | ErrorClass::Reset | ErrorClass::Readonly
                    )
                {
                    // A connect that failed has deferred the next already.
                    if self.conn.is_some() {
                        self.drop_conn();
                    }
                }
                Err(class)
            }
            Err(_elapsed) => Err(ErrorClass::Timeout),
        };
        let end_us = self.now_us();
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(c) => Outcome::Err(*c),
        };
        trace.samples.push(Sample {
            op,
            intended_us: start_us,
            start_us,
            end_us,
            outcome,
        });
        result
    }
}
