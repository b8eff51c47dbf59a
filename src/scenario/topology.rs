//! `[topology]`: the kind and the settings of the nodes gameday starts, or
//! the endpoints of an external topology, checked with the place of each
//! culprit.

use super::raw::{RawEndpoint, RawTopology};
use super::{VResult, Validator};
use crate::proxy::control::check_url;
use crate::proxy::server::loopback_addr;
use crate::topology::plan::{ExternalEndpoint, ExternalPlan, TopologyPlan};
use crate::topology::security::{AuthPlan, SecurityPlan};
use crate::vocab::topo::{Backend, Role, TopologyKind, SENTINEL_MASTER};
use std::ops::Range;
use toml::Spanned;

/// A key that applies to some topology kinds only, with where it is written.
type KindKey<'a> = (&'a str, Option<Range<usize>>, &'a [TopologyKind]);

impl Validator<'_> {
    pub(super) fn topology(&self, t: RawTopology) -> VResult<TopologyPlan> {
        let kind = t.kind;
        self.only_for_kinds(&t)?;
        let backend = t.backend.unwrap_or(Backend::Process);
        let master_name = match &t.master_name {
            Some(m) => {
                let ok =
                    !m.get_ref().is_empty() && m.get_ref().chars().all(|c| c.is_ascii_graphic());
                self.check(m, ok, "`master_name` must be non-empty, without spaces")?;
                m.get_ref().clone()
            }
            None => SENTINEL_MASTER.to_string(),
        };
        if let Some(url) = &t.toxiproxy_url {
            check_url(url.get_ref())
                .map_err(|e| self.err(url.span(), format!("`toxiproxy_url`: {e}")))?;
        }
        let external = self.external(&t, backend)?;
        let security = self.security(&t, backend)?;
        let defaults = TopologyPlan::of_kind(kind);
        let count = |s: &Option<Spanned<i64>>, key: &str, min: i64, max: i64, default: usize| {
            self.count(s.as_ref(), key, min..=max, default)
        };
        Ok(TopologyPlan {
            kind,
            backend,
            image: t.image,
            maxmemory: t.maxmemory.map(|b| b.0),
            maxmemory_policy: t.maxmemory_policy,
            persistence: t.persistence.unwrap_or_default(),
            replicas: count(&t.replicas, "replicas", 1, 5, defaults.replicas)?,
            down_after: self.positive_dur(
                t.down_after.as_ref(),
                "down_after",
                defaults.down_after,
            )?,
            failover_timeout: self.positive_dur(
                t.failover_timeout.as_ref(),
                "failover_timeout",
                defaults.failover_timeout,
            )?,
            masters: count(&t.masters, "masters", 3, 9, defaults.masters)?,
            replicas_per_master: count(
                &t.replicas_per_master,
                "replicas_per_master",
                0,
                3,
                defaults.replicas_per_master,
            )?,
            cluster_node_timeout: self.positive_dur(
                t.cluster_node_timeout.as_ref(),
                "cluster_node_timeout",
                defaults.cluster_node_timeout,
            )?,
            master_name,
            toxiproxy_url: t.toxiproxy_url.map(|u| u.into_inner()),
            external,
            security,
        })
    }

    /// `tls`, `ca_file` and `auth`. A password is never written in a
    /// scenario: `password_env` names the variable that holds it.
    fn security(&self, t: &RawTopology, backend: Backend) -> VResult<SecurityPlan> {
        let tls = t.tls.as_ref().is_some_and(|b| *b.get_ref());
        if let Some(ca) = &t.ca_file {
            self.check(
                ca,
                backend == Backend::External && tls,
                "`ca_file` needs backend = \"external\" and tls = true (an owned topology's CA is made per run)",
            )?;
        }
        let auth = match &t.auth {
            None => None,
            Some(a) => {
                let a = a.get_ref();
                let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
                self.check(
                    &a.user,
                    word(a.user.get_ref()),
                    "`user` must be non-empty, without spaces",
                )?;
                let var = a.password_env.get_ref();
                let is_var = !var.is_empty()
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !var.starts_with(|c: char| c.is_ascii_digit());
                self.check(
                    &a.password_env,
                    is_var,
                    "`password_env` must name an environment variable (letters, digits, _)",
                )?;
                Some(AuthPlan {
                    user: a.user.get_ref().clone(),
                    password_env: var.clone(),
                })
            }
        };
        Ok(SecurityPlan {
            tls,
            ca_file: t.ca_file.as_ref().map(|c| c.get_ref().into()),
            auth,
        })
    }

    /// The keys that apply to some topology kinds only.
    fn only_for_kinds(&self, t: &RawTopology) -> VResult<()> {
        let kind = t.kind;
        let name = kind.as_str();
        use TopologyKind::*;
        let kind_keys: [KindKey; 7] = [
            (
                "replicas",
                t.replicas.as_ref().map(|s| s.span()),
                &[Replicated, Sentinel],
            ),
            (
                "down_after",
                t.down_after.as_ref().map(|s| s.span()),
                &[Sentinel],
            ),
            (
                "failover_timeout",
                t.failover_timeout.as_ref().map(|s| s.span()),
                &[Sentinel],
            ),
            ("masters", t.masters.as_ref().map(|s| s.span()), &[Cluster]),
            (
                "replicas_per_master",
                t.replicas_per_master.as_ref().map(|s| s.span()),
                &[Cluster],
            ),
            (
                "cluster_node_timeout",
                t.cluster_node_timeout.as_ref().map(|s| s.span()),
                &[Cluster],
            ),
            (
                "master_name",
                t.master_name.as_ref().map(|s| s.span()),
                &[Sentinel],
            ),
        ];
        for (key, at, kinds) in kind_keys {
            if let Some(at) = at.filter(|_| !kinds.contains(&kind)) {
                let allowed: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                return Err(self.err(
                    at,
                    format!(
                        "`{key}` applies to {} topologies, not {name}",
                        allowed.join(" and ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A count within `range`, else `default`.
    fn count(
        &self,
        s: Option<&Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: usize,
    ) -> VResult<usize> {
        match s {
            Some(v) => {
                let n = *v.get_ref();
                self.check(
                    v,
                    range.contains(&n),
                    format!(
                        "`{key}` must be between {} and {}, not {n}",
                        range.start(),
                        range.end()
                    ),
                )?;
                Ok(n as usize)
            }
            None => Ok(default),
        }
    }

    /// Where `key = ` first starts a line, for keys kept without a span.
    fn key_span(&self, key: &str) -> Range<usize> {
        let mut at = 0;
        for line in self.text.split_inclusive('\n') {
            let rest = line.trim_start();
            if rest
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                let start = at + (line.len() - rest.len());
                return start..start + key.len();
            }
            at += line.len();
        }
        0..0
    }

    /// The `[[topology.endpoint]]` list and `allow_destructive`: required
    /// and checked for the external backend, refused for the others (whose
    /// nodes gameday starts itself).
    fn external(&self, t: &RawTopology, backend: Backend) -> VResult<ExternalPlan> {
        if backend != Backend::External {
            if let Some(e) = t.endpoints.first() {
                return Err(self.err(
                    e.span(),
                    "`[[topology.endpoint]]` describes an existing topology: it needs backend = \"external\"",
                ));
            }
            if let Some(a) = &t.allow_destructive {
                return Err(self.err(
                    a.span(),
                    "`allow_destructive` applies to the external backend only",
                ));
            }
            return Ok(ExternalPlan::default());
        }
        // What gameday would start has no meaning for an existing topology.
        let started_here = [
            ("image", t.image.is_some()),
            ("maxmemory", t.maxmemory.is_some()),
            ("maxmemory_policy", t.maxmemory_policy.is_some()),
            ("persistence", t.persistence.is_some()),
            ("replicas", t.replicas.is_some()),
            ("down_after", t.down_after.is_some()),
            ("failover_timeout", t.failover_timeout.is_some()),
            ("masters", t.masters.is_some()),
            ("replicas_per_master", t.replicas_per_master.is_some()),
            ("cluster_node_timeout", t.cluster_node_timeout.is_some()),
        ];
        if let Some((key, _)) = started_here.iter().find(|(_, present)| *present) {
            return Err(self.err(
                self.key_span(key),
                format!("`{key}` configures nodes gameday starts; an external topology is described by its `[[topology.endpoint]]` entries only"),
            ));
        }
        if t.endpoints.is_empty() {
            return Err(self.err(
                self.key_span("backend"),
                "the external backend needs the topology's endpoints: add `[[topology.endpoint]]` entries with node, role and addr",
            ));
        }
        let mut endpoints: Vec<ExternalEndpoint> = Vec::new();
        for e in &t.endpoints {
            let endpoint = self.endpoint(e, t.kind, &endpoints)?;
            endpoints.push(endpoint);
        }
        self.endpoint_roles(t, &endpoints)?;
        Ok(ExternalPlan {
            endpoints,
            allow_destructive: t.allow_destructive.as_ref().is_some_and(|a| *a.get_ref()),
        })
    }

    /// The roles and proxies an external topology of this kind needs.
    fn endpoint_roles(&self, t: &RawTopology, endpoints: &[ExternalEndpoint]) -> VResult<()> {
        use TopologyKind::*;
        let name = t.kind.as_str();
        let count = |role: Role| endpoints.iter().filter(|e| e.role == role).count();
        let first = t.endpoints[0].span();
        let need = |ok: bool, what: &str| -> VResult<()> {
            if ok {
                Ok(())
            } else {
                Err(self.err(first.clone(), format!("a {name} topology needs {what}")))
            }
        };
        match t.kind {
            Standalone | Replicated => {
                need(count(Role::Primary) == 1, "exactly one primary endpoint")?
            }
            Sentinel => {
                need(
                    count(Role::Primary) == 1,
                    "exactly one primary endpoint (the current primary)",
                )?;
                need(count(Role::Sentinel) >= 1, "at least one sentinel endpoint")?;
            }
            Cluster => need(count(Role::Primary) >= 1, "at least one primary endpoint")?,
        }
        let proxied = endpoints.iter().filter(|e| e.proxy.is_some()).count();
        need(
            proxied == 0 || proxied == endpoints.len(),
            "a `proxy` on every endpoint or on none",
        )?;
        // Sentinels and cluster nodes hand out node addresses: gameday's own
        // proxies would be bypassed after the first answer.
        need(
            proxied == endpoints.len() || matches!(t.kind, Standalone | Replicated),
            "a Toxiproxy in front of every node, announced by the nodes, with each endpoint naming its `proxy` (see docker-compose.yml); gameday's own proxies would be bypassed once the servers hand out node addresses",
        )?;
        Ok(())
    }

    /// One `[[topology.endpoint]]`, checked against the topology's kind and
    /// the endpoints before it.
    fn endpoint(
        &self,
        e: &Spanned<RawEndpoint>,
        kind: TopologyKind,
        endpoints: &[ExternalEndpoint],
    ) -> VResult<ExternalEndpoint> {
        use TopologyKind::*;
        let name = kind.as_str();
        let raw = e.get_ref();
        let node = raw.node.get_ref();
        let node_ok = !node.is_empty()
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        self.check(
            &raw.node,
            node_ok,
            "`node` must be non-empty and use only letters, digits, `-`, `_` and `.`",
        )?;
        self.check(
            &raw.node,
            !endpoints.iter().any(|x| &x.node == node),
            format!("two endpoints are named `{node}`"),
        )?;
        let addr = loopback_addr(raw.addr.get_ref(), "`addr`")
            .map_err(|err| self.err(raw.addr.span(), err.message))?;
        self.check(
            &raw.addr,
            addr.port() != 0 && !endpoints.iter().any(|x| x.addr == addr),
            format!("`addr` {addr} is port 0 or listed twice"),
        )?;
        if let Some(p) = &raw.proxy {
            self.check(
                p,
                !p.get_ref().is_empty()
                    && !endpoints
                        .iter()
                        .any(|x| x.proxy.as_ref() == Some(p.get_ref())),
                format!("`proxy` `{}` is empty or named twice", p.get_ref()),
            )?;
        }
        let fits = matches!(
            (kind, raw.role),
            (Standalone, Role::Primary)
                | (Replicated | Cluster, Role::Primary | Role::Replica)
                | (Sentinel, _)
        );
        self.check(
            e,
            fits,
            format!("a {name} topology has no {} nodes", raw.role.as_str()),
        )?;
        Ok(ExternalEndpoint {
            node: node.clone(),
            role: raw.role,
            addr,
            proxy: raw.proxy.as_ref().map(|p| p.get_ref().clone()),
        })
    }
}
