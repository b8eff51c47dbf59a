//! One virtual user's Redis connection: connects lazily, reconnects after a
//! dropped connection, bounds every command by the op timeout (connecting
//! included) and records each command as a `redis_<command>` sample.

use crate::recorder::{ErrorClass, Outcome, Sample, Trace};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

pub struct RedisConn {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    /// The breaker epoch when this connection was made.
    epoch: u64,
    timeout: Duration,
    t0: Instant,
}

impl RedisConn {
    pub fn new(addr: SocketAddr, timeout: Duration, t0: Instant) -> Self {
        let client = redis::Client::open(format!("redis://{addr}/"))
            .expect("a socket address makes a valid Redis URL");
        RedisConn {
            client,
            conn: None,
            epoch: 0,
            timeout,
            t0,
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

    async fn run<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, redis::RedisError> {
        if self.conn.is_none() {
            // The op timeout around every call is the only response timeout.
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(None);
            self.conn = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let conn = self.conn.as_mut().expect("connected above");
        cmd.query_async(conn).await
    }

    /// Runs `cmd` within the op timeout and records it as `op` in `trace`.
    pub async fn query<T: FromRedisValue>(
        &mut self,
        op: &'static str,
        cmd: &redis::Cmd,
        trace: &mut Trace,
    ) -> Result<T, ErrorClass> {
        let start_us = self.now_us();
        let result = match tokio::time::timeout(self.timeout, self.run::<T>(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let class = ErrorClass::of(&e);
                if e.is_unrecoverable_error()
                    || e.is_io_error()
                    || matches!(class, ErrorClass::Refused | ErrorClass::Reset)
                {
                    self.conn = None;
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
