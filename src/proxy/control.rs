//! The client side of the fault proxy: how gameday creates proxies and turns
//! faults on and off. It speaks only Toxiproxy's HTTP API through the
//! `toxiproxy_rust` client, so the embedded server and a real Toxiproxy
//! (`--toxiproxy-url`) are interchangeable. Every change is read back from
//! the server, so a fault counts as applied only once the server shows it.

use super::server::{loopback_addr, ApiError};
use super::toxic::{Path, Stream, ToxicKind};
use crate::vocab::owner;
use std::net::SocketAddr;
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("toxiproxy URL `{0}` is not of the form http://127.0.0.1:8474")]
    BadUrl(String),
    #[error("toxiproxy URL `{url}`: {source}")]
    NotLoopback {
        url: String,
        #[source]
        source: ApiError,
    },
    #[error("no Toxiproxy API answers at {0}")]
    Unreachable(String),
    #[error("toxiproxy at {url}: {what}: {detail}")]
    Api {
        url: String,
        what: String,
        detail: String,
    },
}

/// A network fault on one proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum NetFault {
    /// The proxy is disabled: new connections are refused, open ones cut.
    Down,
    /// A toxic on one or both streams.
    Toxic {
        kind: ToxicKind,
        streams: Vec<Stream>,
        toxicity: f32,
        /// The connections it acts on (gameday's extension).
        path: Path,
    },
}

/// A proxy as the server shows it.
#[derive(Debug, Clone)]
pub struct ProxyState {
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: usize,
}

/// Checks a Toxiproxy API URL without connecting: its form, and that it
/// names a loopback address.
pub fn check_url(url: &str) -> Result<SocketAddr, ControlError> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    if hostport.contains('/') || hostport.is_empty() {
        return Err(ControlError::BadUrl(url.into()));
    }
    loopback_addr(hostport, "toxiproxy URL").map_err(|source| ControlError::NotLoopback {
        url: url.into(),
        source,
    })
}

/// A handle on one Toxiproxy API (embedded or external). Its calls block, so
/// async code runs them through `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct ProxyControl {
    client: Client,
    /// For the requests sent in Toxiproxy's wire shape (toxics, enable),
    /// kept for the connection pool: a fresh client costs tens of ms.
    http: reqwest::blocking::Client,
    url: String,
    addr: SocketAddr,
}

impl ProxyControl {
    /// Connects to the API at `url` (`http://127.0.0.1:8474` or `127.0.0.1:8474`).
    pub fn connect(url: &str) -> Result<Self, ControlError> {
        let addr = check_url(url)?;
        let client = Client::new(addr);
        if !client.is_running() {
            return Err(ControlError::Unreachable(url.into()));
        }
        Ok(ProxyControl {
            client,
            http: reqwest::blocking::Client::new(),
            url: format!("http://{addr}"),
            addr,
        })
    }

    /// Runs `f` on a blocking thread: the client's HTTP calls block, and
    /// must not run on the async runtime's threads.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ProxyControl) -> Result<T, ControlError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let me = self.clone();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .unwrap_or_else(|e| {
                Err(ControlError::Api {
                    url,
                    what: "proxy control".into(),
                    detail: e.to_string(),
                })
            })
    }

    /// `connect` on a blocking thread.
    pub async fn connect_async(url: &str) -> Result<Self, ControlError> {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || Self::connect(&url))
            .await
            .unwrap_or_else(|e| Err(ControlError::Unreachable(e.to_string())))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn api_err(&self, what: impl Into<String>, detail: impl ToString) -> ControlError {
        ControlError::Api {
            url: self.url.clone(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The server's version string: `{"version": "..."}` since Toxiproxy
    /// 2.6, plain text before.
    pub fn version(&self) -> Result<String, ControlError> {
        let body = self
            .client
            .version()
            .map_err(|e| self.api_err("version", e))?;
        Ok(serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .unwrap_or(body))
    }

    /// Creates (or replaces) a proxy in front of `upstream`, listening on a
    /// free loopback port; returns the address clients must use.
    pub fn create_proxy(
        &self,
        name: &str,
        upstream: SocketAddr,
    ) -> Result<SocketAddr, ControlError> {
        let pack = ProxyPack::new(name.into(), "127.0.0.1:0".into(), upstream.to_string());
        let created = self
            .client
            .populate(vec![pack])
            .map_err(|e| self.api_err(format!("create proxy {name}"), e))?;
        let listen = created
            .first()
            .map(|p| p.proxy_pack.listen.clone())
            .ok_or_else(|| {
                self.api_err(format!("create proxy {name}"), "no proxy in the answer")
            })?;
        let addr: SocketAddr = listen.parse().map_err(|_| {
            self.api_err(format!("create proxy {name}"), format!("listen `{listen}`"))
        })?;
        if !addr.ip().is_loopback() || addr.port() == 0 {
            return Err(self.api_err(format!("create proxy {name}"), format!("listens on {addr}")));
        }
        Ok(addr)
    }

    /// `GET /proxies/{name}` read as plain JSON: the toxics of gameday's
    /// own kinds carry attributes that are not numbers, which the typed
    /// client cannot read.
    fn show(&self, name: &str) -> Result<serde_json::Value, ControlError> {
        let what = format!("proxy {name}");
        let resp = self
            .http
            .get(format!("http://{}/proxies/{name}", self.addr))
            .send()
            .map_err(|e| self.api_err(&what, e))?;
        if !resp.status().is_success() {
            return Err(self.api_err(what, resp.text().unwrap_or_default()));
        }
        resp.json().map_err(|e| self.api_err(what, e))
    }

    /// The names of the toxics proxy `name` carries.
    fn toxic_names(proxy: &serde_json::Value) -> Vec<&str> {
        proxy["toxics"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default()
    }

    /// `DELETE` of `path` on the API; a 404 counts as done when `gone_ok`.
    fn remove_at(&self, path: &str, what: &str, gone_ok: bool) -> Result<(), ControlError> {
        let resp = self
            .http
            .delete(format!("http://{}{path}", self.addr))
            .send()
            .map_err(|e| self.api_err(what, e))?;
        let status = resp.status();
        if status.is_success() || (gone_ok && status.as_u16() == 404) {
            Ok(())
        } else {
            Err(self.api_err(what, resp.text().unwrap_or_default()))
        }
    }

    /// Turns `fault` on for proxy `name` and checks that the server shows it.
    /// The change itself is one request in Toxiproxy's wire shape, so the
    /// fault is in force as soon as the server answers it.
    pub fn apply(&self, name: &str, fault: &NetFault) -> Result<(), ControlError> {
        match fault {
            NetFault::Down => {
                self.mark_down(name)?;
                self.set_enabled(name, false)?
            }
            NetFault::Toxic {
                kind,
                streams,
                toxicity,
                path,
            } => {
                for stream in streams {
                    self.post_toxic(name, kind, *stream, *toxicity, *path)?;
                }
            }
        }
        self.verify(name, fault, true)
    }

    /// `POST /proxies/{name}` with `{"enabled": ...}`.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ControlError> {
        let what = format!("{} {name}", if enabled { "enable" } else { "disable" });
        let body = serde_json::json!({ "enabled": enabled });
        self.post_json(&format!("/proxies/{name}"), &body, &what)
    }

    /// Turns `fault` off again (re-enable, remove the toxics) and checks
    /// that the server shows it gone.
    pub fn clear(&self, name: &str, fault: &NetFault) -> Result<(), ControlError> {
        self.take_off(name, fault)?;
        self.confirm_off(name, fault)
    }

    /// Turns `fault` off; the server's answer acknowledges it. The fault is
    /// gone from then on: `confirm_off` reads it back.
    pub fn take_off(&self, name: &str, fault: &NetFault) -> Result<(), ControlError> {
        match fault {
            NetFault::Down => {
                self.set_enabled(name, true)?;
                let what = format!("remove the down marker of {name}");
                self.remove_at(
                    &format!("/proxies/{name}/toxics/{}", down_marker()),
                    &what,
                    true,
                )
            }
            NetFault::Toxic { kind, streams, .. } => {
                for stream in streams {
                    let toxic = toxic_name(kind, *stream);
                    let what = format!("remove toxic {toxic} of {name}");
                    self.remove_at(&format!("/proxies/{name}/toxics/{toxic}"), &what, true)?;
                }
                Ok(())
            }
        }
    }

    /// Checks that the server shows `fault` off on proxy `name`.
    pub fn confirm_off(&self, name: &str, fault: &NetFault) -> Result<(), ControlError> {
        self.verify(name, fault, false)
    }

    /// What the server says of proxy `name`: where it listens, where it
    /// forwards, whether it is enabled, and how many toxics it carries.
    pub fn inspect(&self, name: &str) -> Result<ProxyState, ControlError> {
        let proxy = self.show(name)?;
        let text = |key: &str| proxy[key].as_str().unwrap_or_default().to_string();
        Ok(ProxyState {
            listen: text("listen"),
            upstream: text("upstream"),
            enabled: proxy["enabled"].as_bool().unwrap_or(false),
            toxics: Self::toxic_names(&proxy).len(),
        })
    }

    /// Removes the proxy.
    pub fn delete(&self, name: &str) -> Result<(), ControlError> {
        self.remove_at(
            &format!("/proxies/{name}"),
            &format!("delete {name}"),
            false,
        )
    }

    /// Undoes what dead gameday processes left on this Toxiproxy: their
    /// toxics are removed, proxies they disabled are enabled again, proxies
    /// they created are deleted. Names without a tag, and the work of live
    /// processes, are left alone. Returns a line for each thing undone.
    pub fn clean_orphans(&self) -> Result<Vec<String>, ControlError> {
        let what = "list proxies";
        let resp = self
            .http
            .get(format!("http://{}/proxies", self.addr))
            .send()
            .map_err(|e| self.api_err(what, e))?;
        let proxies: serde_json::Map<String, serde_json::Value> =
            resp.json().map_err(|e| self.api_err(what, e))?;
        let orphan = |name: &str| owner::owner_of(NAME_PREFIX, name).is_some_and(|o| !o.is_alive());
        let mut done = Vec::new();
        for (name, proxy) in &proxies {
            if orphan(name) {
                self.delete(name)?;
                done.push(format!("proxy {name} (deleted)"));
                continue;
            }
            for toxic in Self::toxic_names(proxy).into_iter().filter(|t| orphan(t)) {
                if toxic.ends_with(&format!("-{DOWN}")) {
                    self.set_enabled(name, true)?;
                    done.push(format!("proxy {name} (enabled again)"));
                }
                let what = format!("remove toxic {toxic} of {name}");
                self.remove_at(&format!("/proxies/{name}/toxics/{toxic}"), &what, true)?;
                done.push(format!("toxic {toxic} of proxy {name}"));
            }
        }
        Ok(done)
    }

    /// Before disabling a proxy, a toxic that does nothing (toxicity 0)
    /// records who disabled it: a Toxiproxy keeps no other trace, and
    /// `gameday clean` enables a proxy whose marker's owner is dead.
    fn mark_down(&self, proxy: &str) -> Result<(), ControlError> {
        let body = serde_json::json!({
            "name": down_marker(),
            "type": "latency",
            "stream": "downstream",
            "toxicity": 0.0,
            "attributes": { "latency": 0, "jitter": 0 },
        });
        self.post_json(
            &format!("/proxies/{proxy}/toxics"),
            &body,
            "mark proxy down",
        )
    }

    /// `POST` of a JSON body to `path`; a refusal is an error.
    fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<(), ControlError> {
        let resp = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .json(body)
            .send()
            .map_err(|e| self.api_err(what, e))?;
        if !resp.status().is_success() {
            return Err(self.api_err(what, resp.text().unwrap_or_default()));
        }
        Ok(())
    }

    fn post_toxic(
        &self,
        proxy: &str,
        kind: &ToxicKind,
        stream: Stream,
        toxicity: f32,
        path: Path,
    ) -> Result<(), ControlError> {
        // `{"type": ..., "attributes": {...}}`, then the rest of the toxic.
        let mut body = serde_json::to_value(kind).map_err(|e| self.api_err("toxic", e))?;
        body["name"] = toxic_name(kind, stream).into();
        body["stream"] = stream.as_str().into();
        body["toxicity"] = toxicity.into();
        if !path.is_all() {
            body["path"] = path.as_str().into();
        }
        let what = format!("add {} toxic", kind.type_name());
        self.post_json(&format!("/proxies/{proxy}/toxics"), &body, &what)
    }

    fn verify(&self, name: &str, fault: &NetFault, on: bool) -> Result<(), ControlError> {
        let proxy = self.show(name)?;
        // On: every stream's toxic shows; off: none does.
        let as_wanted = match fault {
            NetFault::Down => (proxy["enabled"] == false) == on,
            NetFault::Toxic { kind, streams, .. } => {
                let toxics = Self::toxic_names(&proxy);
                let mut shown = streams.iter().map(|s| {
                    let wanted = toxic_name(kind, *s);
                    toxics.contains(&wanted.as_str())
                });
                if on {
                    shown.all(|x| x)
                } else {
                    !shown.any(|x| x)
                }
            }
        };
        if as_wanted {
            Ok(())
        } else {
            let state = if on { "on" } else { "off" };
            Err(self.api_err(
                format!("proxy {name}"),
                format!("fault not {state} after the call"),
            ))
        }
    }
}

/// The prefix of every name gameday gives a toxic or a proxy on a Toxiproxy.
pub const NAME_PREFIX: &str = "gameday";

/// The name of gameday's toxic of `kind` on `stream`: its owner tag, then
/// Toxiproxy's own `<type>_<stream>` (see `vocab::owner`).
fn toxic_name(kind: &ToxicKind, stream: Stream) -> String {
    owner::tagged(
        NAME_PREFIX,
        &format!("{}_{}", kind.type_name(), stream.as_str()),
    )
}

/// The name of the marker toxic on a proxy gameday disabled.
fn down_marker() -> String {
    owner::tagged(NAME_PREFIX, DOWN)
}

/// What follows the tag in a down marker's name.
pub const DOWN: &str = "down";
