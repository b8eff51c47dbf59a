//! How a run's nodes are reached: TLS with the run's own CA, an ACL user,
//! or neither. A run grants its access to every address of its topology
//! (the nodes' real addresses and their proxies) when it provisions it and
//! revokes it when it stops, so every path to a node — the harness's admin
//! commands, telemetry, the workloads' clients — connects the same way
//! without each call site carrying credentials.
//!
//! The password is a [`Secret`]: it prints as `***`, and only
//! [`Secret::expose`] hands it to a Redis connection or a service's
//! environment.

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo, TlsCertificates};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// A password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, for a connection or a service's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How to reach the nodes of one topology.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// TLS, trusting this CA (PEM).
    pub tls_ca: Option<Arc<[u8]>>,
    /// The ACL user and its password.
    pub user: Option<(String, Secret)>,
}

impl Access {
    pub fn is_open(&self) -> bool {
        self.tls_ca.is_none() && self.user.is_none()
    }

    /// The certificates a client trusts, with TLS on.
    pub fn certs(&self) -> Option<TlsCertificates> {
        self.tls_ca.as_ref().map(|ca| TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_vec()),
        })
    }

    /// The user and password for a connection, if any.
    pub fn redis_settings(&self) -> RedisConnectionInfo {
        let mut r = RedisConnectionInfo::default();
        if let Some((user, password)) = &self.user {
            r = r.set_username(user).set_password(password.expose());
        }
        r
    }

    /// Where `addr` is, plain or TLS (the certificate names 127.0.0.1).
    pub fn addr(&self, addr: SocketAddr) -> ConnectionAddr {
        let host = addr.ip().to_string();
        match self.tls_ca {
            Some(_) => ConnectionAddr::TcpTls {
                host,
                port: addr.port(),
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host, addr.port()),
        }
    }

    /// A client for `info` (made by `info`), trusting the CA if TLS is on.
    pub fn client(&self, info: ConnectionInfo) -> redis::RedisResult<redis::Client> {
        match self.certs() {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        }
    }

    /// Connection info for `addr`.
    pub fn info(&self, addr: SocketAddr) -> ConnectionInfo {
        redis::IntoConnectionInfo::into_connection_info(self.addr(addr))
            .expect("an address makes connection info")
            .set_redis_settings(self.redis_settings())
    }
}

fn book() -> &'static Mutex<HashMap<SocketAddr, Access>> {
    static BOOK: OnceLock<Mutex<HashMap<SocketAddr, Access>>> = OnceLock::new();
    BOOK.get_or_init(Default::default)
}

/// `addr` is reached with `access` from now on (an open access is the
/// default and needs no grant).
pub fn grant(addr: SocketAddr, access: &Access) {
    if !access.is_open() {
        let mut b = book().lock().unwrap_or_else(|p| p.into_inner());
        b.insert(addr, access.clone());
    }
}

/// `addr` is no longer this run's (its port may be reused).
pub fn revoke(addr: SocketAddr) {
    book()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&addr);
}

/// How `addr` is reached.
pub fn access(addr: SocketAddr) -> Access {
    book()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&addr)
        .cloned()
        .unwrap_or_default()
}

/// A client for `addr`, with its access.
pub fn client(addr: SocketAddr) -> redis::RedisResult<redis::Client> {
    let access = access(addr);
    access.client(access.info(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2-very-secret");
        let access = Access {
            tls_ca: None,
            user: Some(("app".into(), s.clone())),
        };
        for text in [format!("{s}"), format!("{s:?}"), format!("{access:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn granted_addresses_use_their_access_and_revoked_ones_are_open() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let access = Access {
            tls_ca: Some(Arc::from(&b"pem"[..])),
            user: Some(("app".into(), Secret::new("pw"))),
        };
        grant(addr, &access);
        assert_eq!(super::access(addr), access);
        assert!(matches!(access.addr(addr), ConnectionAddr::TcpTls { .. }));
        revoke(addr);
        assert!(super::access(addr).is_open());
    }
}
