//! The proxies of the embedded Toxiproxy-compatible server: their listeners,
//! their toxics and the operations the HTTP API exposes. Everything here is
//! loopback-only: a proxy neither listens on nor forwards to any other address.

use super::link::{run_link, LinkCtx, ToxicSet};
use super::toxic::{NewToxic, Toxic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An API error: the HTTP status and the message Toxiproxy clients show.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn not_found(what: &str) -> Self {
        Self::new(404, format!("{what} not found"))
    }
}

/// A proxy as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

/// The body of `POST /proxies` and `POST /populate` entries.
#[derive(Debug, Clone, Deserialize)]
pub struct NewProxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The body of `POST /proxies/{name}`: any subset of the fields.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyUpdate {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
}

struct Proxy {
    name: String,
    listen: SocketAddr,
    upstream: String,
    toxics: watch::Sender<ToxicSet>,
    kill: watch::Sender<u64>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn view(&self) -> ProxyView {
        ProxyView {
            name: self.name.clone(),
            listen: self.listen.to_string(),
            upstream: self.upstream.clone(),
            enabled: self.accept.is_some(),
            toxics: self.toxics.borrow().as_ref().clone(),
        }
    }

    /// Stops accepting and cuts every link. The listener closes when the
    /// returned task has finished: await it (`closed`) before anything
    /// binds the port again.
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.kill.send_modify(|g| *g += 1);
        let accept = self.accept.take()?;
        accept.abort();
        Some(accept)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

/// Waits until a stopped accept loop has dropped its listener.
async fn closed(accept: Option<JoinHandle<()>>) {
    if let Some(accept) = accept {
        let _ = accept.await;
    }
}

/// The registry behind the API. `changes` lets one change at a time
/// through, so that a proxy stays listed (and readable) while it rebinds.
#[derive(Default)]
pub struct ProxyServer {
    proxies: Mutex<BTreeMap<String, Proxy>>,
    changes: tokio::sync::Mutex<()>,
    links: Arc<AtomicU64>,
    /// Connections closed because their proxy's upstream was no loopback
    /// address when dialled.
    refused: Arc<AtomicU64>,
}

/// An upstream as a definition may name it: `host:port`, resolved only when
/// a connection dials it (as Toxiproxy does), where a non-loopback address
/// closes the connection.
fn check_upstream(text: &str) -> Result<(), ApiError> {
    let port = text.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
    match port {
        Some(Ok(_)) => Ok(()),
        _ => Err(ApiError::new(
            400,
            format!("upstream `{text}` is not host:port"),
        )),
    }
}

/// Resolves `addr` and insists that it is a loopback address.
pub fn loopback_addr(addr: &str, what: &str) -> Result<SocketAddr, ApiError> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| ApiError::new(400, format!("{what} `{addr}` cannot be resolved: {e}")))?
        .collect();
    resolved.iter().copied().find(|a| a.ip().is_loopback()).ok_or_else(|| {
        ApiError::new(
            400,
            format!("{what} `{addr}` is not a loopback address: gameday only proxies 127.0.0.1 / ::1"),
        )
    })
}

impl ProxyServer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Proxy>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> BTreeMap<String, ProxyView> {
        self.lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.view()))
            .collect()
    }

    /// Connections closed so far because an upstream was no loopback
    /// address.
    pub fn refused_dials(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn get(&self, name: &str) -> Result<ProxyView, ApiError> {
        self.lock()
            .get(name)
            .map(Proxy::view)
            .ok_or_else(|| ApiError::not_found("proxy"))
    }

    pub async fn create(&self, new: NewProxy) -> Result<ProxyView, ApiError> {
        let _change = self.changes.lock().await;
        self.create_now(new).await
    }

    async fn create_now(&self, new: NewProxy) -> Result<ProxyView, ApiError> {
        if new.name.is_empty() {
            return Err(ApiError::new(400, "missing required field: name"));
        }
        if self.lock().contains_key(&new.name) {
            return Err(ApiError::new(409, "proxy already exists"));
        }
        check_upstream(&new.upstream)?;
        let listen = loopback_addr(&new.listen, "listen")?;
        let (toxics, _) = watch::channel(Arc::new(Vec::new()));
        let (kill, _) = watch::channel(0);
        let proxy = Proxy {
            name: new.name.clone(),
            listen,
            upstream: new.upstream,
            toxics,
            kill,
            accept: None,
        };
        self.lock().insert(new.name.clone(), proxy);
        if new.enabled {
            if let Err(e) = self.start(&new.name).await {
                self.lock().remove(&new.name);
                return Err(e);
            }
        }
        self.get(&new.name)
    }

    /// Binds the listener (keeping the port across disable/enable) and
    /// starts accepting. The proxy stays listed while the port is bound.
    async fn start(&self, name: &str) -> Result<(), ApiError> {
        let (listen, upstream, toxics, kill) = {
            let map = self.lock();
            let proxy = map.get(name).ok_or_else(|| ApiError::not_found("proxy"))?;
            if proxy.accept.is_some() {
                return Ok(());
            }
            let toxics = proxy.toxics.subscribe();
            (
                proxy.listen,
                proxy.upstream.clone(),
                toxics,
                proxy.kill.subscribe(),
            )
        };
        let listener = super::plane::bind(listen).map_err(|e| {
            ApiError::new(500, format!("proxy {name} cannot listen on {listen}: {e}"))
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        let links = self.links.clone();
        let refused = self.refused.clone();
        let proxy_name = name.to_string();
        let accept = super::plane::acceptor().spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = LinkCtx {
                    upstream: upstream.clone(),
                    proxy: proxy_name.clone(),
                    refused: refused.clone(),
                    toxics: toxics.clone(),
                    kill: kill.clone(),
                    seed: links.fetch_add(1, Ordering::Relaxed),
                };
                // Moved to the link's own thread, whose reactor then owns it.
                let Ok(client) = client.into_std() else {
                    continue;
                };
                super::plane::next_link().spawn(async move {
                    if let Ok(client) = TcpStream::from_std(client) {
                        run_link(client, ctx).await;
                    }
                });
            }
        });
        let mut map = self.lock();
        let proxy = map
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found("proxy"))?;
        proxy.listen = bound;
        proxy.accept = Some(accept);
        Ok(())
    }

    /// Creates the proxies of `list` that are new, replaces those whose
    /// definition changed and leaves identical ones alone (enabled as the
    /// entry says). Every entry is checked before anything changes, so an
    /// invalid one changes nothing; a proxy that cannot bind undoes the
    /// proxies this call created.
    pub async fn populate(&self, list: Vec<NewProxy>) -> Result<Vec<ProxyView>, ApiError> {
        let _change = self.changes.lock().await;
        for (i, new) in list.iter().enumerate() {
            let at = |e: ApiError| ApiError::new(e.status, format!("entry {i}: {}", e.message));
            if new.name.is_empty() {
                return Err(at(ApiError::new(400, "missing required field: name")));
            }
            check_upstream(&new.upstream).map_err(at)?;
            loopback_addr(&new.listen, "listen").map_err(at)?;
            if list[..i].iter().any(|other| other.name == new.name) {
                return Err(at(ApiError::new(
                    400,
                    format!("proxy {} given twice", new.name),
                )));
            }
        }
        let mut out = Vec::with_capacity(list.len());
        let mut created = Vec::new();
        for new in list {
            let name = new.name.clone();
            let result = self.populate_one(new).await;
            match result {
                Ok((view, fresh)) => {
                    if fresh {
                        created.push(name);
                    }
                    out.push(view);
                }
                Err(e) => {
                    for name in created {
                        let _ = self.delete_now(&name).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// One entry of `populate`; true when it created the proxy anew.
    async fn populate_one(&self, new: NewProxy) -> Result<(ProxyView, bool), ApiError> {
        let existing = self.get(&new.name).ok();
        let same = existing.as_ref().is_some_and(|p| {
            p.upstream == new.upstream
                && (p.listen == new.listen
                    || new.listen.ends_with(":0")
                    || loopback_addr(&new.listen, "listen")
                        .is_ok_and(|a| a.to_string() == p.listen))
        });
        if same {
            let enable = ProxyUpdate {
                enabled: Some(new.enabled),
                listen: None,
                upstream: None,
            };
            return Ok((self.update_now(&new.name, enable).await?, false));
        }
        if existing.is_none() {
            return Ok((self.create_now(new).await?, true));
        }
        // Changed: replaced in place (Toxiproxy's new proxy has no toxics),
        // so that it stays listed even if its new port cannot be bound.
        self.with_toxics(&new.name, |t| {
            t.clear();
            Ok(())
        })?;
        let change = ProxyUpdate {
            enabled: Some(new.enabled),
            listen: Some(new.listen),
            upstream: Some(new.upstream),
        };
        Ok((self.update_now(&new.name, change).await?, false))
    }

    pub async fn update(&self, name: &str, update: ProxyUpdate) -> Result<ProxyView, ApiError> {
        let _change = self.changes.lock().await;
        self.update_now(name, update).await
    }

    async fn update_now(&self, name: &str, update: ProxyUpdate) -> Result<ProxyView, ApiError> {
        let upstream = match &update.upstream {
            Some(text) => {
                check_upstream(text)?;
                Some(text.clone())
            }
            None => None,
        };
        let listen = match &update.listen {
            Some(text) => Some(loopback_addr(text, "listen")?),
            None => None,
        };
        let restart = upstream.is_some() || listen.is_some();
        let (stopped, enabled) = {
            let mut map = self.lock();
            let proxy = map
                .get_mut(name)
                .ok_or_else(|| ApiError::not_found("proxy"))?;
            if let Some(text) = upstream {
                proxy.upstream = text;
            }
            if let Some(addr) = listen {
                proxy.listen = addr;
            }
            let enabled = update.enabled.unwrap_or(proxy.accept.is_some());
            let stopped = if restart || !enabled {
                proxy.stop()
            } else {
                None
            };
            (stopped, enabled)
        };
        closed(stopped).await;
        if enabled {
            self.start(name).await?;
        }
        self.get(name)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let _change = self.changes.lock().await;
        self.delete_now(name).await
    }

    async fn delete_now(&self, name: &str) -> Result<(), ApiError> {
        let mut proxy = self
            .lock()
            .remove(name)
            .ok_or_else(|| ApiError::not_found("proxy"))?;
        closed(proxy.stop()).await;
        Ok(())
    }

    /// Drops every proxy at once, without waiting for their listeners.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ApiError> {
        let _change = self.changes.lock().await;
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in names {
            self.with_toxics(&name, |t| {
                t.clear();
                Ok(())
            })?;
            let enable = ProxyUpdate {
                enabled: Some(true),
                listen: None,
                upstream: None,
            };
            self.update_now(&name, enable).await?;
        }
        Ok(())
    }

    fn with_toxics<T>(
        &self,
        proxy: &str,
        f: impl FnOnce(&mut Vec<Toxic>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let map = self.lock();
        let proxy = map.get(proxy).ok_or_else(|| ApiError::not_found("proxy"))?;
        let mut toxics = proxy.toxics.borrow().as_ref().clone();
        let out = f(&mut toxics)?;
        proxy.toxics.send_replace(Arc::new(toxics));
        Ok(out)
    }

    pub fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ApiError> {
        Ok(self.get(proxy)?.toxics)
    }

    pub fn toxic(&self, proxy: &str, toxic: &str) -> Result<Toxic, ApiError> {
        self.toxics(proxy)?
            .into_iter()
            .find(|t| t.name == toxic)
            .ok_or_else(|| ApiError::not_found("toxic"))
    }

    pub fn add_toxic(&self, proxy: &str, body: serde_json::Value) -> Result<Toxic, ApiError> {
        let new =
            NewToxic::from_json(body).map_err(|e| ApiError::new(400, format!("bad toxic: {e}")))?;
        let toxic = new.into_toxic();
        check_toxicity(toxic.toxicity)?;
        toxic.kind.check().map_err(|e| ApiError::new(400, e))?;
        self.with_toxics(proxy, |list| {
            if list.iter().any(|t| t.name == toxic.name) {
                return Err(ApiError::new(409, "toxic already exists"));
            }
            list.push(toxic.clone());
            Ok(toxic)
        })
    }

    /// Updates a toxic's attributes, stream or toxicity; omitted fields keep
    /// their value.
    pub fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<Toxic, ApiError> {
        self.with_toxics(proxy, |list| {
            let slot = list
                .iter_mut()
                .find(|t| t.name == name)
                .ok_or_else(|| ApiError::not_found("toxic"))?;
            if !patch.is_object() {
                return Err(ApiError::new(400, "a toxic update is a JSON object"));
            }
            let mut merged = serde_json::to_value(&*slot).expect("a toxic serializes");
            let mut patch = patch;
            // Toxiproxy changes a toxic's attributes and toxicity only.
            if let Some(fields) = patch.as_object_mut() {
                fields.retain(|k, _| k == "attributes" || k == "toxicity");
            }
            merge_json(&mut merged, patch);
            merged["name"] = name.into();
            let updated: Toxic = serde_json::from_value(merged)
                .map_err(|e| ApiError::new(400, format!("bad toxic: {e}")))?;
            check_toxicity(updated.toxicity)?;
            updated.kind.check().map_err(|e| ApiError::new(400, e))?;
            *slot = updated.clone();
            Ok(updated)
        })
    }

    pub fn delete_toxic(&self, proxy: &str, name: &str) -> Result<(), ApiError> {
        self.with_toxics(proxy, |list| {
            let before = list.len();
            list.retain(|t| t.name != name);
            if list.len() == before {
                return Err(ApiError::not_found("toxic"));
            }
            Ok(())
        })
    }
}

fn check_toxicity(toxicity: f32) -> Result<(), ApiError> {
    if (0.0..=1.0).contains(&toxicity) {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            format!("toxicity {toxicity} is outside 0..1"),
        ))
    }
}

fn merge_json(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge_json(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
