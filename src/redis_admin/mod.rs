//! The harness's own path to a node (L1): connect to its real address —
//! never a proxy, so never faulted — run one command, read an INFO field.
//! Provisioning, node faults, failovers, memory pressure and telemetry all
//! speak to nodes through here.

pub mod access;
pub mod cluster;

use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a node may take to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admin command may take to be answered. Generous on purpose:
/// on a loaded machine an assembly command (SENTINEL MONITOR, CONFIG
/// REWRITE) can take longer than redis-rs's default 500 ms, and every wait
/// that polls with these commands has its own deadline.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An admin command that did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{addr} did not accept a connection within {}s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { addr: SocketAddr },
    #[error("{addr}: {source}")]
    Redis {
        addr: SocketAddr,
        #[source]
        source: redis::RedisError,
    },
}

fn redis_err(addr: SocketAddr) -> impl Fn(redis::RedisError) -> AdminError {
    move |source| AdminError::Redis { addr, source }
}

/// A connection to `addr`, its commands answered within `RESPONSE_TIMEOUT`.
pub async fn connect(addr: SocketAddr) -> Result<MultiplexedConnection, AdminError> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    connect_with(addr, config).await
}

async fn connect_with(
    addr: SocketAddr,
    config: redis::AsyncConnectionConfig,
) -> Result<MultiplexedConnection, AdminError> {
    let config = config.set_connection_timeout(Some(CONNECT_TIMEOUT));
    let client = access::client(addr).map_err(redis_err(addr))?;
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| AdminError::ConnectTimeout { addr })?
    .map_err(redis_err(addr))
}

/// Runs one command on `addr`.
pub async fn run<T: FromRedisValue>(addr: SocketAddr, cmd: &Cmd) -> Result<T, AdminError> {
    let mut conn = connect(addr).await?;
    cmd.query_async(&mut conn).await.map_err(redis_err(addr))
}

/// Runs one command that answers only when it is done (`DEBUG SLEEP`,
/// `CLIENT PAUSE` on a busy server): no response timeout.
pub async fn blocking<T: FromRedisValue>(addr: SocketAddr, cmd: &Cmd) -> Result<T, AdminError> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = connect_with(addr, config).await?;
    cmd.query_async(&mut conn).await.map_err(redis_err(addr))
}

/// Runs one command on `addr` if it answers within `limit`; `None` when it
/// does not (a probe: a down or paused node is an answer too).
pub async fn ask<T: FromRedisValue>(addr: SocketAddr, cmd: &Cmd, limit: Duration) -> Option<T> {
    let probe = async {
        let client = access::client(addr).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async::<T>(&mut conn).await.ok()
    };
    tokio::time::timeout(limit, probe).await.ok().flatten()
}

/// A command from its words.
pub fn cmd(parts: &[&str]) -> Cmd {
    let mut c = redis::cmd(parts[0]);
    for p in &parts[1..] {
        c.arg(*p);
    }
    c
}

/// The value of `key` in an `INFO` answer (`role`, `connected_slaves`, ...).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_by_their_whole_name() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=1\r\n";
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "connected_slaves"), Some("2"));
        assert_eq!(info_field(info, "connected"), None);
        assert_eq!(info_field(info, "missing"), None);
    }
}
