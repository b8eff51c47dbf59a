//! The reference shop: a small real service backed by Redis, for game days.
//! gameday starts it (or finds it running) and drives its HTTP API while
//! Redis fails behind it.
//!
//! Redis, from the environment gameday sets (exactly one of):
//! - `REDIS_URL` (`redis://127.0.0.1:6379`): standalone or replicated;
//! - `REDIS_SENTINELS` (`127.0.0.1:26379,...`) with `REDIS_MASTER_NAME`;
//! - `REDIS_CLUSTER_NODES` (`127.0.0.1:7000,...`);
//!
//! and, when the topology has TLS or an ACL user, `REDIS_CA_FILE` (TLS,
//! trusting that CA; `REDIS_URL` is then `rediss://`), `REDIS_USERNAME`
//! and `REDIS_PASSWORD`.
//!
//! Its own settings:
//! - `SHOP_ADDR`: where it listens (default `127.0.0.1:8080`, loopback only);
//! - `SHOP_MODE`: `naive` or `resilient` (the default), see below;
//! - `SHOP_CHECKOUT_ON_REDIS_ERROR`: `open` (the default) or `closed`, the
//!   resilient checkout's declared policy when the rate limiter cannot ask
//!   Redis;
//! - `SHOP_DB_LATENCY`: the simulated database's latency in ms (default 3).
//!
//! Endpoints: `GET /product/{id}` (cache-aside over the database, TTL with
//! jitter), `POST /login` and `GET /me` (sessions), `POST /checkout`
//! (rate-limited per user), `POST /reserve/{sku}` (a short lock),
//! `GET /healthz` (never touches Redis), `GET /stats` (database calls) and
//! `GET /debug/sleep/{ms}` (answers after `ms`: a known latency, for tests).
//!
//! `naive` uses Redis as if it never failed: no timeouts, no breaker, no
//! fallback; a Redis error is a 500 and a slow Redis is a slow shop.
//! `resilient` bounds every command (50 ms), opens a breaker after 5
//! failures in a row (1 s), serves products from the database when Redis
//! cannot (`X-Cache: fallback`), and applies its declared policy to
//! checkout.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Naive,
    Resilient,
}

/// Where Redis is, as the environment says.
enum Target {
    Url(String),
    Sentinel { nodes: Vec<String>, master: String },
    Cluster(Vec<String>),
}

/// Redis as the shop uses it: one shared connection, made again after it
/// fails; in resilient mode every command is bounded.
struct Redis {
    target: Target,
    secure: Secure,
    sentinel: tokio::sync::Mutex<Option<SentinelClient>>,
    /// One connect at a time; the others wait for its connection.
    connecting: tokio::sync::Mutex<()>,
    shared: Mutex<Option<ConnHandle>>,
    timeout: Option<Duration>,
}

/// A clonable connection (both kinds multiplex).
#[derive(Clone)]
enum ConnHandle {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
const BREAKER_FAILURES: u32 = 5;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
const TTL_SECS: u64 = 30;
const CHECKOUTS_PER_SEC: i64 = 20;

/// TLS and the ACL user, as the environment says.
#[derive(Default)]
struct Secure {
    ca: Option<Vec<u8>>,
    user: Option<(String, String)>,
}

impl Secure {
    fn from_env() -> Result<Secure, String> {
        let ca = match std::env::var("REDIS_CA_FILE") {
            Ok(path) => {
                Some(std::fs::read(&path).map_err(|e| format!("REDIS_CA_FILE {path}: {e}"))?)
            }
            Err(_) => None,
        };
        let user = match (
            std::env::var("REDIS_USERNAME"),
            std::env::var("REDIS_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => Some((u, p)),
            _ => None,
        };
        Ok(Secure { ca, user })
    }

    fn scheme(&self) -> &'static str {
        if self.ca.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `url` with the user's credentials.
    fn info(&self, url: &str) -> RedisResult<redis::ConnectionInfo> {
        let info = redis::IntoConnectionInfo::into_connection_info(url)?;
        let mut settings = info.redis_settings().clone();
        if let Some((u, p)) = &self.user {
            settings = settings.set_username(u).set_password(p);
        }
        Ok(info.set_redis_settings(settings))
    }

    fn certs(&self) -> Option<redis::TlsCertificates> {
        self.ca.as_ref().map(|ca| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        })
    }
}

impl Redis {
    fn from_env(mode: Mode) -> Result<Redis, String> {
        let secure = Secure::from_env()?;
        let scheme = secure.scheme();
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|a| format!("{scheme}://{a}/"))
                .collect()
        };
        let target = if let Ok(u) = std::env::var("REDIS_URL") {
            Target::Url(u)
        } else if let Ok(s) = std::env::var("REDIS_SENTINELS") {
            let master = std::env::var("REDIS_MASTER_NAME")
                .map_err(|_| "REDIS_SENTINELS needs REDIS_MASTER_NAME".to_string())?;
            Target::Sentinel {
                nodes: list(s),
                master,
            }
        } else if let Ok(n) = std::env::var("REDIS_CLUSTER_NODES") {
            Target::Cluster(list(n))
        } else {
            return Err(
                "set REDIS_URL, REDIS_SENTINELS (+ REDIS_MASTER_NAME) or REDIS_CLUSTER_NODES"
                    .into(),
            );
        };
        Ok(Redis {
            target,
            secure,
            sentinel: tokio::sync::Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            shared: Mutex::new(None),
            timeout: (mode == Mode::Resilient).then_some(COMMAND_TIMEOUT),
        })
    }

    fn config(&self) -> AsyncConnectionConfig {
        // Naive: nothing is bounded, as with a client left at "no timeout".
        AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
    }

    async fn connect(&self) -> RedisResult<ConnHandle> {
        Ok(match &self.target {
            Target::Url(u) => {
                let info = self.secure.info(u)?;
                let client = match self.secure.certs() {
                    Some(certs) => redis::Client::build_with_tls(info, certs)?,
                    None => redis::Client::open(info)?,
                };
                ConnHandle::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&self.config())
                        .await?,
                )
            }
            Target::Sentinel { nodes, master } => {
                let mut slot = self.sentinel.lock().await;
                if slot.is_none() {
                    *slot = Some(self.sentinel_client(nodes, master)?);
                }
                let client = slot.as_mut().expect("built above");
                ConnHandle::Single(
                    client
                        .get_async_connection_with_config(&self.config())
                        .await?,
                )
            }
            Target::Cluster(nodes) => {
                let forever = Duration::from_secs(3600);
                let mut b = ClusterClient::builder(nodes.clone())
                    .connection_timeout(self.timeout.unwrap_or(forever))
                    .response_timeout(self.timeout.unwrap_or(forever));
                if let Some((u, p)) = &self.secure.user {
                    b = b.username(u).password(p);
                }
                if let Some(certs) = self.secure.certs() {
                    b = b.certs(certs);
                }
                let client = b.build()?;
                ConnHandle::Cluster(client.get_async_connection().await?)
            }
        })
    }

    /// Sentinels and the primary they name, reached the same way.
    fn sentinel_client(&self, nodes: &[String], master: &str) -> RedisResult<SentinelClient> {
        let addrs: Vec<redis::ConnectionAddr> = nodes
            .iter()
            .map(|n| self.secure.info(n).map(|i| i.addr().clone()))
            .collect::<RedisResult<_>>()?;
        let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
        if let Some((u, p)) = &self.secure.user {
            b = b
                .set_client_to_redis_username(u)
                .set_client_to_redis_password(p)
                .set_client_to_sentinel_username(u)
                .set_client_to_sentinel_password(p);
        }
        if let Some(certs) = self.secure.certs() {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
        b.build()
    }

    async fn handle(&self) -> RedisResult<ConnHandle> {
        if let Some(c) = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let c = self.connect().await?;
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Runs one command; a failed connection is dropped, to be made again.
    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let run = async {
            let result = match self.handle().await? {
                ConnHandle::Single(mut c) => cmd.query_async(&mut c).await,
                ConnHandle::Cluster(mut c) => cmd.query_async(&mut c).await,
            };
            if let Err(e) = &result {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
            result
        };
        let result = bounded(self.timeout, run).await;
        if result
            .as_ref()
            .is_err_and(|e| e.is_timeout() || e.is_io_error())
        {
            *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }
}

/// Consecutive failures open it for a cooldown; then one call may try.
#[derive(Default)]
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    fn allows(&self) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *open = None;
                true
            }
            None => true,
        }
    }

    fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= BREAKER_FAILURES {
            self.failures.store(0, Ordering::Relaxed);
            *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + BREAKER_COOLDOWN);
        }
    }
}

/// Redis could not be used for this request (an error, or the breaker).
#[derive(Debug)]
struct Unavailable;

struct Shop {
    mode: Mode,
    redis: Redis,
    breaker: Breaker,
    checkout_fail_open: bool,
    db_latency: Duration,
    db_calls: AtomicU64,
    seq: AtomicU64,
}

type Shared = State<Arc<Shop>>;

impl Shop {
    /// A command through the breaker (resilient) or straight (naive).
    async fn redis<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Unavailable> {
        if self.mode == Mode::Resilient && !self.breaker.allows() {
            return Err(Unavailable);
        }
        let r = self.redis.query(cmd).await;
        if self.mode == Mode::Resilient {
            self.breaker.record(r.is_ok());
        }
        r.map_err(|e| {
            eprintln!("shop: redis: {e}");
            Unavailable
        })
    }

    /// The simulated database: a few ms, counted.
    async fn db_product(&self, id: &str) -> String {
        self.db_calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.db_latency).await;
        format!("{{\"id\":\"{id}\",\"name\":\"product {id}\",\"price\":42}}")
    }

    fn token(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{:x}{:x}", t, n)
    }
}

fn with_cache(body: String, cache: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert("x-cache", HeaderValue::from_static(cache));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn unavailable(what: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{what}: redis error\n"),
    )
        .into_response()
}

async fn product(State(s): Shared, Path(id): Path<String>) -> Response {
    let key = format!("shop:product:{id}");
    match s.redis::<Option<String>>(redis::cmd("GET").arg(&key)).await {
        Ok(Some(v)) => with_cache(v, "hit"),
        Ok(None) => {
            let v = s.db_product(&id).await;
            // TTL with ±10% jitter, so keys loaded together do not expire together.
            let jitter = s.seq.fetch_add(1, Ordering::Relaxed) % 7;
            let ttl = TTL_SECS * 9 / 10 + jitter;
            let set = s
                .redis::<()>(redis::cmd("SET").arg(&key).arg(&v).arg("EX").arg(ttl))
                .await;
            if set.is_err() && s.mode == Mode::Naive {
                return unavailable("product");
            }
            with_cache(v, "miss")
        }
        Err(Unavailable) if s.mode == Mode::Resilient => {
            with_cache(s.db_product(&id).await, "fallback")
        }
        Err(Unavailable) => unavailable("product"),
    }
}

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

async fn login(State(s): Shared, Json(l): Json<Login>) -> Response {
    let sid = s.token();
    let set = redis::cmd("SET")
        .arg(format!("shop:session:{sid}"))
        .arg(&l.user)
        .arg("EX")
        .arg(1800)
        .clone();
    match s.redis::<()>(&set).await {
        Ok(()) => Json(serde_json::json!({ "session": sid })).into_response(),
        // A session that was not stored cannot be honoured: say so.
        Err(Unavailable) if s.mode == Mode::Resilient => {
            (StatusCode::SERVICE_UNAVAILABLE, "sessions unavailable\n").into_response()
        }
        Err(Unavailable) => unavailable("login"),
    }
}

async fn me(State(s): Shared, headers: HeaderMap) -> Response {
    let Some(sid) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (StatusCode::UNAUTHORIZED, "no session\n").into_response();
    };
    match s
        .redis::<Option<String>>(redis::cmd("GET").arg(format!("shop:session:{sid}")))
        .await
    {
        Ok(Some(user)) => Json(serde_json::json!({ "user": user })).into_response(),
        Ok(None) => (StatusCode::UNAUTHORIZED, "unknown session\n").into_response(),
        Err(Unavailable) if s.mode == Mode::Resilient => {
            (StatusCode::SERVICE_UNAVAILABLE, "sessions unavailable\n").into_response()
        }
        Err(Unavailable) => unavailable("me"),
    }
}

#[derive(serde::Deserialize)]
struct Checkout {
    user: String,
    #[serde(default)]
    sku: String,
}

async fn checkout(State(s): Shared, Json(c): Json<Checkout>) -> Response {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let key = format!("shop:ratelimit:{}:{second}", c.user);
    let mut pipe = redis::pipe();
    pipe.atomic().incr(&key, 1).expire(&key, 2).ignore();
    let counted = if s.mode == Mode::Resilient && !s.breaker.allows() {
        Err(Unavailable)
    } else {
        let r: RedisResult<(i64,)> = match s.redis.handle().await {
            Ok(ConnHandle::Single(mut conn)) => {
                bounded(s.redis.timeout, pipe.query_async(&mut conn)).await
            }
            Ok(ConnHandle::Cluster(mut conn)) => {
                bounded(s.redis.timeout, pipe.query_async(&mut conn)).await
            }
            Err(e) => Err(e),
        };
        if r.is_err() {
            *s.redis.shared.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if s.mode == Mode::Resilient {
            s.breaker.record(r.is_ok());
        }
        r.map(|(n,)| n).map_err(|e| {
            eprintln!("shop: redis: {e}");
            Unavailable
        })
    };
    let order = || Json(serde_json::json!({ "user": c.user, "sku": c.sku, "ok": true }));
    match counted {
        Ok(n) if n > CHECKOUTS_PER_SEC => {
            (StatusCode::TOO_MANY_REQUESTS, "slow down\n").into_response()
        }
        Ok(_) => order().into_response(),
        Err(Unavailable) if s.mode == Mode::Resilient && s.checkout_fail_open => {
            let mut r = order().into_response();
            r.headers_mut()
                .insert("x-ratelimit", HeaderValue::from_static("degraded"));
            r
        }
        Err(Unavailable) if s.mode == Mode::Resilient => {
            (StatusCode::SERVICE_UNAVAILABLE, "checkout paused\n").into_response()
        }
        Err(Unavailable) => unavailable("checkout"),
    }
}

async fn bounded<T>(
    timeout: Option<Duration>,
    f: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match timeout {
        None => f.await,
        Some(t) => tokio::time::timeout(t, f).await.unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis command timed out",
            )))
        }),
    }
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

async fn reserve(State(s): Shared, Path(sku): Path<String>) -> Response {
    let key = format!("shop:lock:{sku}");
    let token = s.token();
    let take = redis::cmd("SET")
        .arg(&key)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(2000)
        .clone();
    match s.redis::<Option<String>>(&take).await {
        Ok(Some(_)) => {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let release = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(&key)
                .arg(&token)
                .clone();
            let _ = s.redis::<i64>(&release).await;
            Json(serde_json::json!({ "sku": sku, "reserved": true })).into_response()
        }
        Ok(None) => (StatusCode::CONFLICT, "being reserved\n").into_response(),
        Err(Unavailable) if s.mode == Mode::Resilient => (
            StatusCode::SERVICE_UNAVAILABLE,
            "reservations unavailable\n",
        )
            .into_response(),
        Err(Unavailable) => unavailable("reserve"),
    }
}

async fn stats(State(s): Shared) -> Response {
    Json(serde_json::json!({
        "mode": format!("{:?}", s.mode).to_lowercase(),
        "db_calls": s.db_calls.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn sleep_ms(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    "slept\n"
}

fn settings() -> Result<(SocketAddr, Arc<Shop>), String> {
    let mode = match std::env::var("SHOP_MODE").as_deref() {
        Ok("naive") => Mode::Naive,
        Ok("resilient") | Err(_) => Mode::Resilient,
        Ok(other) => {
            return Err(format!(
                "SHOP_MODE must be naive or resilient, not `{other}`"
            ))
        }
    };
    let addr: SocketAddr = std::env::var("SHOP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| format!("SHOP_ADDR: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("SHOP_ADDR must be a loopback address, not {addr}"));
    }
    let checkout_fail_open = match std::env::var("SHOP_CHECKOUT_ON_REDIS_ERROR").as_deref() {
        Ok("open") | Err(_) => true,
        Ok("closed") => false,
        Ok(other) => {
            return Err(format!(
                "SHOP_CHECKOUT_ON_REDIS_ERROR must be open or closed, not `{other}`"
            ))
        }
    };
    let db_ms: u64 = std::env::var("SHOP_DB_LATENCY")
        .unwrap_or_else(|_| "3".into())
        .parse()
        .map_err(|e| format!("SHOP_DB_LATENCY: {e}"))?;
    let shop = Shop {
        mode,
        redis: Redis::from_env(mode)?,
        breaker: Breaker::default(),
        checkout_fail_open,
        db_latency: Duration::from_millis(db_ms),
        db_calls: AtomicU64::new(0),
        seq: AtomicU64::new(0),
    };
    Ok((addr, Arc::new(shop)))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (addr, shop) = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shop: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mode = shop.mode;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/product/{id}", get(product))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/checkout", post(checkout))
        .route("/reserve/{sku}", post(reserve))
        .route("/stats", get(stats))
        .route("/debug/sleep/{ms}", get(sleep_ms))
        .with_state(shop);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shop: cannot listen on {addr}: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    // Boots without Redis: the first request connects.
    eprintln!("shop: {mode:?} mode, listening on {addr}");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("shop: stopping");
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        eprintln!("shop: {e}");
        return std::process::ExitCode::from(3);
    }
    std::process::ExitCode::SUCCESS
}
