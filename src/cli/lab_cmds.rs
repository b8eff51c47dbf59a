//! The lab commands: `gameday up` (a topology to explore by hand) and
//! `gameday clean` (what dead gameday processes left behind).

use super::shutdown_signal;
use crate::vocab::topo::Backend;
use anyhow::Context;

/// The `[topology]` of a scenario that drives `lab` as an external
/// topology, for pasting: every client endpoint with its proxy.
fn external_snippet(lab: &crate::lab::Lab) -> String {
    use std::fmt::Write;
    let mut out = String::from("\n# a scenario drives this lab with:\n");
    let _ = writeln!(out, "[topology]");
    let _ = writeln!(out, "kind = \"{}\"", lab.topology.kind.as_str());
    let _ = writeln!(out, "backend = \"external\"");
    let _ = writeln!(out, "toxiproxy_url = \"{}\"", lab.control.url());
    if let crate::topology::ClientSpec::Sentinel { master, .. } = &lab.client {
        let _ = writeln!(out, "master_name = \"{master}\"");
    }
    for w in &lab.wired {
        if w.endpoint.port != crate::topology::Port::Client {
            continue;
        }
        let role = w.endpoint.role.as_str();
        let _ = writeln!(out, "[[topology.endpoint]]");
        let _ = writeln!(
            out,
            "node = \"{}\"\nrole = \"{role}\"\naddr = \"{}\"\nproxy = \"{}\"",
            w.endpoint.node, w.proxy_addr, w.proxy
        );
    }
    out.push_str("# (end)\n\n");
    out
}

/// Prints a line of `gameday up`'s output. A reader that went away (a
/// closed pipe) must not take the lab down with a panic: the lab serves
/// until Ctrl-C either way.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(super) async fn up(
    kind: crate::vocab::topo::TopologyKind,
    backend: Backend,
    url: Option<String>,
) -> anyhow::Result<u8> {
    if let Some(url) = &url {
        crate::proxy::control::check_url(url).context("--toxiproxy-url")?;
    }
    let mut shutdown = shutdown_signal()?;
    let plan = crate::topology::plan::TopologyPlan {
        backend,
        toxiproxy_url: url,
        ..crate::topology::plan::TopologyPlan::of_kind(kind)
    };
    let started = std::time::Instant::now();
    let run_id = format!("up-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let lab = match crate::lab::Lab::start(&plan, &run_id, shutdown.clone()).await {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("gameday up: {e}");
            return Ok(e.exit_code());
        }
    };
    say!(
        "{} topology ready in {:.1}s",
        kind.as_str(),
        started.elapsed().as_secs_f64()
    );
    say!(
        "Toxiproxy API: {} ({} {})",
        lab.control.url(),
        lab.proxy_kind,
        lab.proxy_version
    );
    say!(
        "{:<16} {:<8} {:<22} {:<22} proxy",
        "endpoint",
        "role",
        "real address",
        "clients use"
    );
    for w in &lab.wired {
        let role = w.endpoint.role.as_str();
        say!(
            "{:<16} {:<8} {:<22} {:<22} {}",
            w.endpoint.name,
            role,
            w.endpoint.addr.to_string(),
            w.proxy_addr.to_string(),
            w.proxy
        );
    }
    match &lab.client {
        crate::topology::ClientSpec::Direct(a) => {
            say!("\nredis-cli -h {} -p {}", a.ip(), a.port())
        }
        crate::topology::ClientSpec::Sentinel { sentinels, master } => say!(
            "\nredis-cli -h {} -p {} SENTINEL get-master-addr-by-name {master}",
            sentinels[0].ip(),
            sentinels[0].port()
        ),
        crate::topology::ClientSpec::Cluster { nodes } => {
            say!("\nredis-cli -c -h {} -p {}", nodes[0].ip(), nodes[0].port())
        }
    }
    say!("\nA service under test reads (the proxied endpoints only):");
    for (k, v) in lab.client.env() {
        say!("export {k}={v}");
    }
    say!("{}", external_snippet(&lab).trim_end());
    say!("faults: e.g. curl -X POST {}/proxies/<proxy>/toxics -d '{{\"type\":\"latency\",\"attributes\":{{\"latency\":100}}}}'", lab.control.url());
    say!("Ctrl-C stops everything.");
    let _ = shutdown.wait_for(|s| *s).await;
    lab.stop().await;
    eprintln!("gameday up: stopped, nothing left running");
    Ok(0)
}

/// `gameday clean`: every orphan of a dead gameday removed, one line each.
pub(super) async fn clean(url: Option<String>) -> anyhow::Result<u8> {
    if let Some(url) = &url {
        crate::proxy::control::check_url(url).context("--toxiproxy-url")?;
    }
    match crate::clean::orphans(url.as_deref()).await {
        Ok(done) if done.is_empty() => {
            say!("gameday clean: nothing left by dead gameday processes")
        }
        Ok(done) => {
            for line in &done {
                say!("removed {line}");
            }
            say!("gameday clean: {} removed", done.len());
        }
        Err(e) => {
            eprintln!("gameday clean: {e}");
            return Ok(3);
        }
    }
    Ok(0)
}
