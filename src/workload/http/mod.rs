//! `[target] kind = "http"`: the team's own service as the workload.
//! gameday starts it (`command`, with the proxied endpoints in its
//! environment) or finds it running, waits until `health` answers 200,
//! then drives its HTTP API: each `[[target.request]]` is an op, drawn by
//! weight, its `{key}` drawn from `keys` as in cache-aside. A response
//! with a status the request does not expect is an error of class
//! `http_<status>` (filed under its family too, `http_4xx`/`http_5xx`); a
//! request that got no response is `timeout`, `connect` or `reset`. Each
//! `count_header` is counted per value as the phase metric
//! `header.<name>.<value>`.

pub mod request;
pub mod service;

use super::cache_aside::Distribution;
use super::{keys_of, Done, Oracle, Setup, Spec, Workload};
use crate::proxy::server::loopback_addr;
use crate::recorder::PhaseStats;
use crate::topology::{ClientSpec, ENDPOINT_VARS};
use crate::vocab::check::{
    check, invalid, positive_dur, positive_f64_or, positive_int_or, Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS};
use crate::vocab::units::Dur;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use request::{transport_class, RawRequest, RequestPlan};
use serde::Deserialize;
use service::{wait_healthy, CommandPlan, Service, ServiceError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use toml::Spanned;

pub const SPEC: Spec = Spec {
    name: "http",
    section: "target",
    // Its ops are its requests' names, and its metrics the counted
    // headers: both come from the scenario (`HttpPlan::ops`, `metrics`).
    ops: &[],
    metrics: &[],
    counters: &[],
    keys: keys_of::<Raw>,
};

/// A header value list, or one name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Names {
    One(String),
    Many(Vec<String>),
}

/// The `[target]` keys of `kind = "http"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    base_url: Spanned<String>,
    command: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    health: Option<Spanned<String>>,
    health_timeout: Option<Spanned<Dur>>,
    stop_grace: Option<Spanned<Dur>>,
    keys: Option<Spanned<i64>>,
    distribution: Option<Distribution>,
    zipf_exponent: Option<Spanned<f64>>,
    count_header: Option<Spanned<Names>>,
    #[serde(default, rename = "request")]
    requests: Vec<RawRequest>,
}

/// A validated HTTP target.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// `http://host:port[/prefix]`, no trailing `/`.
    pub base_url: String,
    /// Where `base_url` listens.
    pub addr: SocketAddr,
    pub command: Option<CommandPlan>,
    /// The health check's path.
    pub health: String,
    pub health_timeout: Duration,
    /// SIGTERM → SIGKILL.
    pub stop_grace: Duration,
    pub keys: u64,
    pub distribution: Distribution,
    pub zipf_exponent: f64,
    /// Lower-case header names counted per value.
    pub count_headers: Vec<String>,
    pub requests: Vec<RequestPlan>,
    /// The requests' names: the ops rules may name.
    pub ops: &'static [&'static str],
    /// `header.<name>.*` per counted header.
    pub metrics: &'static [(&'static str, Dim)],
}

impl Raw {
    pub fn plan(self) -> Checked<HttpPlan> {
        let (base_url, addr) = base_url(&self.base_url)?;
        let command = self.command()?;
        let health = self.health()?;
        let distribution = self.distribution.unwrap_or_default();
        if let Some(z) = &self.zipf_exponent {
            check(
                z,
                distribution == Distribution::Zipf,
                "`zipf_exponent` applies only with distribution = \"zipf\"",
            )?;
        }
        let count_headers = self.count_headers()?;
        if self.requests.is_empty() {
            return Err(invalid(
                self.base_url.span(),
                "a target needs at least one [[target.request]] (name, method, path)",
            ));
        }
        let mut requests: Vec<RequestPlan> = Vec::new();
        for r in &self.requests {
            let plan = r.plan()?;
            if requests.iter().any(|q| q.name == plan.name) {
                return Err(r.name_invalid(format!("two requests are named `{}`", plan.name)));
            }
            requests.push(plan);
        }
        let ops: Vec<&'static str> = requests.iter().map(|r| r.name).collect();
        let metrics: Vec<(&'static str, Dim)> =
            std::iter::once((CALLER_ERRORS.as_str(), Dim::Count))
                .chain(count_headers.iter().map(|h| {
                    (
                        &*Box::leak(format!("header.{h}.*").into_boxed_str()),
                        Dim::Count,
                    )
                }))
                .collect();
        Ok(HttpPlan {
            base_url,
            addr,
            command,
            health,
            health_timeout: positive_dur(
                self.health_timeout.as_ref(),
                "health_timeout",
                Duration::from_secs(30),
            )?,
            stop_grace: positive_dur(
                self.stop_grace.as_ref(),
                "stop_grace",
                Duration::from_secs(5),
            )?,
            keys: positive_int_or(self.keys.as_ref(), "keys", 10_000)?,
            distribution,
            zipf_exponent: positive_f64_or(
                self.zipf_exponent.as_ref(),
                0.99,
                false,
                "`zipf_exponent` must be above 0",
            )?,
            count_headers,
            requests,
            ops: Box::leak(ops.into_boxed_slice()),
            metrics: Box::leak(metrics.into_boxed_slice()),
        })
    }

    fn health(&self) -> Checked<String> {
        Ok(match &self.health {
            Some(h) => {
                check(
                    h,
                    h.get_ref().starts_with('/'),
                    format!(
                        "`health` is a path starting with `/`, not `{}`",
                        h.get_ref()
                    ),
                )?;
                h.get_ref().clone()
            }
            None => "/healthz".into(),
        })
    }

    /// The `count_header` names, lower case.
    fn count_headers(&self) -> Checked<Vec<String>> {
        Ok(match &self.count_header {
            None => Vec::new(),
            Some(h) => {
                let list = match h.get_ref() {
                    Names::One(n) => vec![n.clone()],
                    Names::Many(l) => l.clone(),
                };
                for n in &list {
                    let ok = !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    check(h, ok, format!("`count_header`: `{n}` is not a header name (letters, digits, `-`, `_`)"))?;
                }
                list.into_iter().map(|n| n.to_ascii_lowercase()).collect()
            }
        })
    }

    fn command(&self) -> Checked<Option<CommandPlan>> {
        let env: Vec<(String, String)> = match &self.env {
            None => Vec::new(),
            Some(e) => {
                check(
                    e,
                    self.command.is_some(),
                    "`env` is for a service gameday starts: it needs `command`",
                )?;
                if let Some(k) = e
                    .get_ref()
                    .keys()
                    .find(|k| ENDPOINT_VARS.contains(&k.as_str()))
                {
                    return Err(invalid(
                        e.span(),
                        format!("`env` may not set {k}: gameday passes the proxied endpoints itself (a direct address would bypass every fault)"),
                    ));
                }
                e.get_ref().clone().into_iter().collect()
            }
        };
        let Some(c) = &self.command else {
            return Ok(None);
        };
        check(
            c,
            !c.get_ref().is_empty() && !c.get_ref()[0].is_empty(),
            "`command` is an argv list: [\"program\", \"arg\", ...]",
        )?;
        Ok(Some(CommandPlan {
            argv: c.get_ref().clone(),
            env,
        }))
    }
}

/// `http://<loopback>:<port>[/prefix]`, without a trailing `/`.
fn base_url(s: &Spanned<String>) -> Checked<(String, SocketAddr)> {
    let url = s.get_ref().trim_end_matches('/');
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid(
            s.span(),
            format!("`base_url` must be http://<loopback address>:<port>, not `{url}`"),
        ));
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    check(
        s,
        hostport.contains(':'),
        format!("`base_url` `{url}` needs a port"),
    )?;
    let addr = loopback_addr(hostport, "base_url").map_err(|e| {
        invalid(
            s.span(),
            format!("{e}: gameday sends load to loopback addresses only"),
        )
    })?;
    Ok((url.to_string(), addr))
}

impl HttpPlan {
    /// Before anything starts: the command must exist.
    pub fn preflight(&self) -> Result<(), ServiceError> {
        match &self.command {
            Some(c) => c.resolve().map(drop),
            None => Ok(()),
        }
    }

    /// Starts the service (with `command`; its output to `dir/app.log`)
    /// with the endpoints of `client`, then waits until it is healthy.
    pub async fn start(
        &self,
        client: &ClientSpec,
        dir: &Path,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<Service>, ServiceError> {
        if self.command.is_some() && std::net::TcpStream::connect(self.addr).is_ok() {
            // Another process already answers there: the health check and
            // the load would reach it, not the service gameday starts.
            return Err(ServiceError::PortTaken { addr: self.addr });
        }
        let mut service = match &self.command {
            Some(cmd) => Some(Service::start(
                cmd,
                client,
                &dir.join("app.log"),
                self.stop_grace,
            )?),
            None => None,
        };
        let url = format!("{}{}", self.base_url, self.health);
        wait_healthy(&url, self.health_timeout, service.as_mut(), shutdown).await?;
        Ok(service)
    }
}

/// Distinct values counted per header; more share `other`.
const HEADER_VALUES: usize = 32;

pub struct Http {
    plan: HttpPlan,
    client: reqwest::Client,
    seed: u64,
    zipf: Option<Zipf<f64>>,
    total_weight: u64,
    /// The counter of each (header, value) seen.
    seen: Mutex<BTreeMap<(usize, String), Counter>>,
}

pub struct User {
    rng: SmallRng,
    index: usize,
    seq: u64,
    path: String,
    body: String,
}

impl Http {
    pub fn new(plan: HttpPlan, s: &Setup) -> Http {
        let shortest = plan
            .requests
            .iter()
            .map(|r| r.timeout)
            .min()
            .unwrap_or(Duration::from_secs(2));
        let client = reqwest::Client::builder()
            // Never through an HTTP proxy from the environment: loopback only.
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(shortest)
            .pool_max_idle_per_host(s.users)
            .build()
            .expect("a plain HTTP client");
        let zipf = (plan.distribution == Distribution::Zipf)
            .then(|| Zipf::new(plan.keys, plan.zipf_exponent).expect("validated zipf parameters"));
        Http {
            total_weight: plan.requests.iter().map(|r| r.weight as u64).sum(),
            plan,
            client,
            seed: s.seed,
            zipf,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> &RequestPlan {
        let mut n = rng.gen_range(0..self.total_weight);
        for r in &self.plan.requests {
            if n < r.weight as u64 {
                return r;
            }
            n -= r.weight as u64;
        }
        self.plan.requests.last().expect("at least one request")
    }

    fn pick_key(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.plan.keys) - 1,
            None => rng.gen_range(0..self.plan.keys),
        }
    }

    /// The counter of `value` of counted header `i`.
    fn header_counter(&self, i: usize, value: &[u8]) -> Counter {
        let clean: String = String::from_utf8_lossy(value)
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = seen.get(&(i, clean.clone())) {
            return *c;
        }
        let distinct = seen.keys().filter(|(h, _)| *h == i).count();
        let value = if distinct >= HEADER_VALUES {
            "other".to_string()
        } else {
            clean
        };
        let name = format!("header.{}.{value}", self.plan.count_headers[i]);
        *seen
            .entry((i, value))
            .or_insert_with(|| Counter(Box::leak(name.into_boxed_str())))
    }
}

impl Workload for Http {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(index as u64),
            ),
            index,
            seq: 0,
            path: String::new(),
            body: String::new(),
        }
    }

    /// One request; its latency runs until the whole body has arrived.
    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        let req = self.pick(&mut user.rng);
        let key = self.pick_key(&mut user.rng);
        user.seq += 1;
        req.path.render(&mut user.path, key, user.index, user.seq);
        let url = format!("{}{}", self.plan.base_url, user.path);
        let mut call = self
            .client
            .request(req.method.clone(), url)
            .timeout(req.timeout);
        for (k, v) in &req.headers {
            call = call.header(k, v);
        }
        if let Some(body) = &req.body {
            body.render(&mut user.body, key, user.index, user.seq);
            if !req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                call = call.header("content-type", "application/json");
            }
            call = call.body(user.body.clone());
        }
        let outcome = match call.send().await {
            Ok(resp) => {
                for (i, h) in self.plan.count_headers.iter().enumerate() {
                    if let Some(v) = resp.headers().get(h.as_str()) {
                        trace.counters.push(self.header_counter(i, v.as_bytes()));
                    }
                }
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Err(e) => Outcome::Err(transport_class(&e)),
                    Ok(_) if req.expect.accepts(status) => Outcome::Ok,
                    Ok(_) => Outcome::Err(request::status_class(status)),
                }
            }
            Err(e) => Outcome::Err(transport_class(&e)),
        };
        if let Outcome::Err(_) = outcome {
            // Failed requests, as every workload counts its callers' errors.
            trace.counters.push(CALLER_ERRORS);
        }
        Done::new(req.name, outcome)
    }
}

impl Oracle for Http {
    fn caller_ops(&self) -> &'static [&'static str] {
        self.plan.ops
    }

    /// The failed requests, and the counted headers per value seen in the
    /// run.
    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        std::iter::once(&CALLER_ERRORS)
            .chain(seen.values())
            .map(|c| (c.as_str().to_string(), phase.counter(*c) as f64))
            .collect()
    }
}
